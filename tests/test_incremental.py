"""Incremental loads by watermark: they read only what changed, advance only after a commit, re-run and
backfill to the same warehouse, and end where one full load would."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine

from salespulse import ingest
from salespulse.generator import CrmDataset
from salespulse.ingest import ingest_from_source
from salespulse.model import ENTITIES
from salespulse.quality import DataQualityError
from salespulse.schema import create_schema
from salespulse.sources import FileSource
from salespulse.warehouse import get_engine, read_frame
from tests.helpers import ingest_all
from tests.test_sources import core_checksum

DATES = [date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)]


def _engine(url: str) -> Engine:
    engine = get_engine(url)
    create_schema(engine)
    return engine


def _audit(engine: Engine) -> pd.DataFrame:
    audit = read_frame(engine, "select * from audit.load_batches order by entity, as_of_date")
    audit["as_of_date"] = pd.to_datetime(audit["as_of_date"]).dt.date
    return audit


def _raw_counts(engine: Engine) -> dict[str, int]:
    return {
        e.name: int(read_frame(engine, f"select count(*) as n from raw.{e.name}").n.iloc[0]) for e in ENTITIES
    }


@pytest.fixture(scope="module")
def full_load_at_last_date(small_exports: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    engine = _engine(f"duckdb:///{tmp_path_factory.mktemp('full') / 'w.duckdb'}")
    ingest_all(engine, FileSource(small_exports), DATES[-1], "full", full_refresh=True)
    return core_checksum(engine)


def test_each_run_reads_only_what_changed_and_ends_where_a_full_load_does(
    small_crm: CrmDataset, small_exports: Path, warehouse_url: str, full_load_at_last_date: dict
) -> None:
    engine = _engine(warehouse_url)
    for day in DATES:
        ingest_all(engine, FileSource(small_exports), day, f"run-{day}")
    audit = _audit(engine)
    orders = audit[audit.entity == "orders"].reset_index(drop=True)
    updated = pd.to_datetime(small_crm["orders"]["updated_at"])
    assert pd.isna(orders.watermark_before[0]) and orders.full_refresh[0]
    for i in (1, 2):
        # Each window starts where the previous batch's watermark stopped and ends at the run's date.
        assert orders.watermark_before[i] == orders.watermark_after[i - 1]
        assert not orders.full_refresh[i]
        start, end = pd.Timestamp(orders.watermark_before[i]), pd.Timestamp(DATES[i])
        assert orders.rows_read[i] == ((updated >= start) & (updated < end)).sum()
    assert orders.rows_read[1] < orders.rows_read[0] / 5  # a month of changes, not the history
    assert pd.Timestamp(orders.watermark_after[2]) == updated[updated < pd.Timestamp(DATES[2])].max()
    assert core_checksum(engine) == full_load_at_last_date


def test_the_same_date_loaded_twice_leaves_identical_counts_and_checksums(
    small_exports: Path, warehouse_url: str
) -> None:
    engine = _engine(warehouse_url)
    source = FileSource(small_exports)
    ingest_all(engine, source, DATES[0], "first")
    ingest_all(engine, source, DATES[1], "second")
    before = (core_checksum(engine), _raw_counts(engine), _audit(engine).drop(columns=_VOLATILE))
    ingest_all(engine, source, DATES[1], "second-again")
    after = (core_checksum(engine), _raw_counts(engine), _audit(engine).drop(columns=_VOLATILE))
    assert before[0] == after[0] and before[1] == after[1]
    pd.testing.assert_frame_equal(before[2], after[2])


_VOLATILE = [
    "batch_id",
    "run_id",
    "started_at",
    "finished_at",
    "extract_seconds",
    "validate_seconds",
    "write_seconds",
]


def test_a_backfill_out_of_order_ends_like_loading_in_order(
    small_exports: Path, duckdb_url: str, tmp_path: Path
) -> None:
    source = FileSource(small_exports)
    in_order = _engine(duckdb_url)
    for day in DATES:
        ingest_all(in_order, source, day, f"run-{day}")
    shuffled = _engine(f"duckdb:///{tmp_path / 'shuffled.duckdb'}")
    for day in (DATES[0], DATES[2], DATES[1], DATES[2]):  # a missed day backfilled, then the latest re-run
        ingest_all(shuffled, source, day, f"run-{day}")
    assert core_checksum(shuffled) == core_checksum(in_order)


def test_the_watermark_does_not_move_when_a_load_fails(
    small_exports: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(warehouse_url)
    source = FileSource(small_exports)
    ingest_all(engine, source, DATES[0], "first")
    before = _audit(engine)

    def crash(*args, **kwargs):
        raise OSError("worker lost in the middle of the merge")

    real = ingest.run_sql_file
    monkeypatch.setattr(ingest, "run_sql_file", crash)
    with pytest.raises(OSError):
        ingest_from_source(engine, source, "customers", DATES[1], "crashed")
    monkeypatch.setattr(ingest, "run_sql_file", real)
    pd.testing.assert_frame_equal(_audit(engine), before)  # no batch, no new watermark
    assert read_frame(engine, "select count(*) as n from raw.customers where _run_id = 'crashed'").n[0] == 0

    # A critical batch-level failure keeps its validation history but moves no watermark either.
    from salespulse import quality

    document = quality.load_suite_document("customers")
    document["expectations"].append(
        {
            "type": "expect_table_row_count_to_be_between",
            "kwargs": {"min_value": 10**9},
            "meta": {"rule": "impossible_volume"},
            "severity": "critical",
        }
    )
    monkeypatch.setattr(quality, "load_suite_document", lambda entity: document)
    monkeypatch.setattr(ingest, "load_suite_document", lambda entity: document)
    with pytest.raises(DataQualityError, match="impossible_volume"):
        ingest_from_source(engine, source, "customers", DATES[1], "refused")
    pd.testing.assert_frame_equal(_audit(engine), before)
    monkeypatch.undo()

    retried = ingest_from_source(engine, source, "customers", DATES[1], "retried")
    assert retried.watermark_before == before[before.entity == "customers"].watermark_after.iloc[0]


def test_full_refresh_reads_everything_again(small_exports: Path, duckdb_url: str, small_crm: CrmDataset):
    engine = _engine(duckdb_url)
    source = FileSource(small_exports)
    ingest_all(engine, source, DATES[0], "first")
    ingest_from_source(engine, source, "customers", DATES[1], "incremental")
    incremental = ingest_from_source(engine, source, "orders", DATES[1], "incremental")
    full = ingest_from_source(engine, source, "orders", DATES[1], "full", full_refresh=True)
    updated = pd.to_datetime(small_crm["orders"]["updated_at"])
    assert full.rows_read == (updated < pd.Timestamp(DATES[1])).sum() > incremental.rows_read
    assert full.watermark_before is None


def test_late_updates_win_and_a_look_back_overlap_changes_nothing(
    small_crm: CrmDataset, tmp_path: Path, duckdb_url: str
) -> None:
    """A customer renamed after the first load arrives in the next window and wins; re-reading an hour
    before the watermark (for rows that commit late) reads some rows twice but leaves core the same."""
    small_crm.write_exports(tmp_path, formats=("parquet",))
    engine = _engine(duckdb_url)
    source = FileSource(tmp_path)
    ingest_all(engine, source, DATES[0], "first")
    customers = small_crm["customers"].copy()
    renamed = customers["updated_at"] < pd.Timestamp(DATES[0])
    target = customers.index[renamed][0]
    customers.loc[target, ["customer_name", "updated_at"]] = ["王小明 (renamed)", pd.Timestamp("2026-09-15")]
    customers.to_parquet(tmp_path / "customers.parquet", index=False)

    result = ingest_from_source(engine, source, "customers", DATES[1], "second", lookback=timedelta(hours=1))
    row = read_frame(
        engine,
        "select customer_name from core.dim_customer where customer_id = :id",
        {"id": customers.loc[target, "customer_id"]},
    )
    assert row.customer_name.tolist() == ["王小明 (renamed)"]
    assert result.rows_read == result.rows_loaded + result.rows_quarantined + result.rows_duplicate
    once = core_checksum(engine)
    ingest_from_source(engine, source, "customers", DATES[1], "again", lookback=timedelta(days=400))
    assert core_checksum(engine) == once


def test_a_large_extract_loads_in_parts_and_reruns_to_the_same_warehouse(
    small_exports: Path, warehouse_url: str, tmp_path: Path
) -> None:
    """Cut into parts of at most 700 orders (spilled to disk, loaded oldest first, one transaction and one
    watermark each), the load ends where one batch does; re-run cut differently, it leaves no stale part."""
    source = FileSource(small_exports)
    whole = _engine(f"duckdb:///{tmp_path / 'whole.duckdb'}")
    for name in ("customers", "orders"):
        ingest_from_source(whole, source, name, DATES[1], "whole")
    engine = _engine(warehouse_url)
    ingest_from_source(engine, source, "customers", DATES[1], "parts")
    result = ingest_from_source(engine, source, "orders", DATES[1], "parts", max_batch_rows=700)
    parts = _audit(engine).query("entity == 'orders'").sort_values("batch_id").reset_index(drop=True)
    assert len(parts) >= 3 and (parts.rows_read <= 700).all()
    assert parts.rows_read.sum() == result.rows_read
    assert pd.isna(parts.watermark_before[0])
    for i in range(1, len(parts)):  # each part starts where the previous one's newest row was
        assert parts.watermark_before[i] == parts.watermark_after[i - 1]
        assert parts.watermark_after[i] >= parts.watermark_before[i]
    assert (parts.rows_read == parts.rows_loaded + parts.rows_quarantined + parts.rows_duplicate).all()
    assert core_checksum(engine)["orders"] == core_checksum(whole)["orders"]

    ingest_from_source(engine, source, "orders", DATES[1], "again", max_batch_rows=1_500)
    ingest_from_source(engine, source, "orders", DATES[1], "once")
    assert _audit(engine).query("entity == 'orders'").batch_id.tolist() == [f"orders@{DATES[1]}"]
    raw = read_frame(engine, "select count(*) as n from raw.orders").n.iloc[0]
    assert raw == result.rows_loaded + result.rows_quarantined
    assert core_checksum(engine)["orders"] == core_checksum(whole)["orders"]


def test_slices_never_split_an_instant_and_put_unreadable_times_last() -> None:
    from salespulse.slices import Spill

    stamps = ["2026-01-01"] * 3 + ["2026-01-02"] * 2 + ["2026-01-03"] + [None, "not a time"]
    chunks = [
        pd.DataFrame({"k": range(4), "updated_at": stamps[:4]}),
        pd.DataFrame({"k": range(4, 8), "updated_at": stamps[4:]}),
    ]
    with Spill(chunks) as spill:
        parts = spill.slices(max_rows=2)
        assert [p.rows for p in parts] == [3, 2, 3]  # the 3-row instant is not split
        read = [sorted(spill.read(p)["k"]) for p in parts]
    assert read == [[0, 1, 2], [3, 4], [5, 6, 7]]
    assert parts[0].lower is None and parts[-1].upper is None


def test_the_watermark_never_passes_the_as_of_date(duckdb_url: str) -> None:
    """A row the source's window let through (it could not date it) but pandas reads as a future time does
    not carry the watermark past the as-of date, where it would hide every row until then."""
    from salespulse.ingest import BatchInfo, load_entity

    engine = _engine(duckdb_url)
    products = pd.DataFrame(
        {
            "product_id": ["P1", "P2"],
            "product_name": ["fine", "from the future"],
            "category": ["Hardware", "Hardware"],
            "list_price": [1.0, 2.0],
            "updated_at": ["2026-10-15 08:00:00", "2099-01-01T00:00:00"],
        }
    )
    result = load_entity(engine, "products", products, DATES[2], "r1", "test", batch=BatchInfo())
    assert result.watermark_after == pd.Timestamp("2026-10-15 08:00:00")
