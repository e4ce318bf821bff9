"""Several files over time (a yearly export each): an attribute that means "first" keeps its earliest
value, while the rest follow the newest version. On DuckDB and PostgreSQL."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from salespulse.ingest import ingest_from_source
from salespulse.schema import create_schema
from salespulse.sources import FileSource
from salespulse.warehouse import get_engine, read_frame


def _customers(signup: str, name: str, updated: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "customer_name": [name, "Zhang Wei 张伟"],
            "email": ["a@example.com", "z@example.com"],
            "country_code": ["GB", "CN"],
            "region": ["EMEA", "APAC"],
            "signup_date": [pd.Timestamp(signup), pd.Timestamp("2014-01-10")],
            "updated_at": [pd.Timestamp(updated), pd.Timestamp(updated)],
        }
    )


def test_a_later_file_does_not_move_a_first_date_but_does_update_the_rest(
    warehouse_url: str, tmp_path: Path
) -> None:
    engine = get_engine(warehouse_url)
    create_schema(engine)
    # 2014's file saw C1's first purchase in March 2014; 2015's file, read on its own, sees June 2015.
    files = [
        (date(2015, 1, 1), _customers("2014-03-01", "Acme", "2014-12-31 23:00")),
        (date(2016, 1, 1), _customers("2015-06-01", "Acme Ltd", "2015-12-31 23:00")),
    ]
    for number, (as_of, frame) in enumerate(files):
        folder = tmp_path / f"year{number}"
        folder.mkdir()
        frame.to_parquet(folder / "customers.parquet")
        result = ingest_from_source(engine, FileSource(folder), "customers", as_of, f"run{number}")
        assert result.rows_loaded == 2
    core = read_frame(
        engine, "select customer_id, customer_name, signup_date from core.dim_customer order by 1"
    )
    assert core["customer_name"].tolist() == ["Acme Ltd", "Zhang Wei 张伟"]  # the newest version's name
    assert [str(d)[:10] for d in core["signup_date"]] == ["2014-03-01", "2014-01-10"]  # the first signup kept

    # A correction to an earlier date is taken; loading the same file again changes nothing.
    folder = tmp_path / "correction"
    folder.mkdir()
    _customers("2013-11-20", "Acme Ltd", "2016-02-01 09:00").to_parquet(folder / "customers.parquet")
    for _ in range(2):
        ingest_from_source(engine, FileSource(folder), "customers", date(2016, 3, 1), "correction")
    core = read_frame(engine, "select signup_date from core.dim_customer where customer_id = 'C1'")
    assert str(core["signup_date"].iloc[0])[:10] == "2013-11-20"
    engine.dispose()


def test_a_file_older_than_the_watermark_is_reported_not_skipped_in_silence(
    warehouse_url: str, tmp_path: Path
) -> None:
    """2015's export loaded first; 2014's arrives later. An incremental load reads nothing from it (its rows
    predate the watermark), says so in the result and the step audit, and a full refresh loads them."""
    from salespulse.config import Settings
    from salespulse.steps.ingest import ingest_entity
    from salespulse.steps.prepare import prepare_warehouse

    folder = tmp_path / "exports"
    folder.mkdir()
    settings = Settings(warehouse_url=warehouse_url, data_dir=tmp_path, export_dir=folder)
    prepare_warehouse(settings)
    _customers("2015-02-01", "Acme", "2015-12-31 23:00").to_parquet(folder / "customers.parquet")
    assert ingest_entity(settings, "customers", date(2016, 1, 1), "y2015").rows_loaded == 2

    late = _customers("2014-03-01", "Acme", "2014-12-31 23:00").assign(customer_id=["C3", "C4"])
    late.to_parquet(folder / "customers.parquet")
    result = ingest_entity(settings, "customers", date(2016, 2, 1), "late")
    assert (result.rows_read, result.rows_before_watermark) == (0, 2)
    engine = get_engine(warehouse_url)
    note = read_frame(engine, "select detail from audit.step_runs where run_id = 'late'")["detail"].iloc[0]
    assert note.startswith("nothing new, but 2 rows in files:") and "full refresh" in note

    refreshed = ingest_entity(settings, "customers", date(2016, 2, 1), "late", full_refresh=True)
    assert refreshed.rows_loaded == 2
    ids = read_frame(engine, "select customer_id from core.dim_customer order by 1")["customer_id"].tolist()
    assert ids == ["C1", "C2", "C3", "C4"]
    engine.dispose()
