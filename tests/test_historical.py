"""Any as-of date through Airflow: a CRM whose history ends years ago runs through the real DAGs, and a date
the DAGs cannot run for fails loudly instead of succeeding with no task."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pendulum
import pytest

from salespulse.generator import generate_crm
from salespulse.warehouse import get_engine, read_frame
from salespulse_airflow.runtime import DEFAULT_START_DATE, ingest_schedule, start_date
from salespulse_cli.local_airflow import run_chain


def test_the_start_date_is_early_by_default_and_configurable() -> None:
    assert start_date({}) == pendulum.datetime(2000, 1, 1, tz="UTC")
    assert DEFAULT_START_DATE == "2000-01-01"
    assert start_date({"SALESPULSE_START_DATE": "2014-03-01"}) == pendulum.datetime(2014, 3, 1, tz="UTC")
    with pytest.raises(ValueError, match="SALESPULSE_START_DATE must be a date"):
        start_date({"SALESPULSE_START_DATE": "March 2014"})


def test_a_crm_from_years_ago_runs_through_the_dags_for_its_own_dates(
    airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = generate_crm(n_customers=150, seed=3, start=date(2014, 1, 1), end=date(2016, 11, 30))
    crm.write_exports(tmp_path / "exports")
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    monkeypatch.setenv("WAREHOUSE_URL", url)
    monkeypatch.setenv("SALESPULSE_EXPORT_DIR", str(tmp_path / "exports"))
    monkeypatch.setenv("SALESPULSE_DATA_DIR", str(tmp_path))

    states = run_chain([date(2016, 12, 1)], ("ingest_crm", "customer_segments"))

    assert states == {"ingest_crm": ["success"], "customer_segments": ["success"]}
    engine = get_engine(url)
    batches = read_frame(engine, "select entity, as_of_date, rows_loaded from audit.load_batches")
    assert set(batches["as_of_date"].astype(str).str[:10]) == {"2016-12-01"}
    assert batches.set_index("entity")["rows_loaded"]["customers"] > 100
    scored = read_frame(engine, "select snapshot_date, count(*) as n from marts.customer_rfm group by 1")
    assert (
        scored["snapshot_date"].astype(str).str[:10].tolist() == ["2016-12-01"] and scored["n"].iloc[0] > 50
    )
    engine.dispose()


def test_a_date_before_the_start_date_fails_instead_of_succeeding_with_no_task(airflow_db: Path) -> None:
    with pytest.raises(RuntimeError, match="ran no task: the date is before the DAG's start date 2000-01-01"):
        run_chain([date(1999, 6, 1)], ("customer_segments",))


def test_the_ingest_schedule_is_a_setting_and_none_means_triggered_runs_only() -> None:
    assert ingest_schedule({}) == "@daily"
    assert ingest_schedule({"SALESPULSE_INGEST_SCHEDULE": " @monthly "}) == "@monthly"
    assert ingest_schedule({"SALESPULSE_INGEST_SCHEDULE": "0 5 * * 1"}) == "0 5 * * 1"
    assert ingest_schedule({"SALESPULSE_INGEST_SCHEDULE": "None"}) is None
