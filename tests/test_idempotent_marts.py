"""Re-running an as-of date replaces that date's rows in every mart, so no table or reporting view doubles.

The steps run in the DAG's order for two monthly as-of dates; the second date is then run again under a new
run id, as a retried DAG run or a manual re-run would. On DuckDB and PostgreSQL.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import text

from salespulse.config import Settings
from salespulse.model import load_order
from salespulse.steps.ingest import ingest_entity
from salespulse.steps.prepare import prepare_warehouse
from salespulse.warehouse import get_engine, read_frame
from tests.helpers import run_after_ingest, table_counts

FIRST, SECOND = date(2026, 10, 1), date(2026, 11, 1)


@pytest.mark.chain
def test_rerunning_an_as_of_date_replaces_its_rows_in_every_mart_and_view(
    small_exports: Path, warehouse_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        warehouse_url=warehouse_url, data_dir=tmp_path, export_dir=small_exports, forecast_horizon=3
    )
    prepare_warehouse(settings)
    for as_of, run_id in ((FIRST, "first"), (SECOND, "second")):
        for entity in load_order():
            ingest_entity(settings, entity.name, as_of, f"load-{run_id}")
        run_after_ingest(settings, as_of, run_id)
    engine = get_engine(warehouse_url)
    before = table_counts(engine, ("marts", "reporting"))

    run_after_ingest(settings, SECOND, "second-again")

    after = table_counts(engine, ("marts", "reporting"))
    assert after == before
    assert before["marts.forecast_snapshot"] > 0 and before["marts.funnel_stage_rates"] > 0
    assert after["marts.forecast_partitions"] == after["marts.forecast_staging"] == 0  # work tables
    # No row of the superseded run is left anywhere; the first date's rows are untouched.
    with engine.connect() as conn:
        tables = read_frame(
            conn,
            "select table_name from information_schema.columns "
            "where table_schema = 'marts' and column_name = 'run_id'",
        )["table_name"]
        runs = {
            table: set(conn.execute(text(f"select distinct run_id from marts.{table}")).scalars())
            for table in tables
        }
    assert {table for table, ids in runs.items() if "second" in ids} == set()
    for table in (
        "forecast_snapshot",
        "forecast_backtest",
        "funnel_forecast",
        "funnel_stage_rates",
        "customer_rfm",
    ):
        assert runs[table] == {"first", "second-again"}, table
    snapshot_dates = read_frame(engine, "select distinct as_of_date from marts.forecast_snapshot")
    assert len(snapshot_dates) == 2
    engine.dispose()
