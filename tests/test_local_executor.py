"""The embedded default under a real scheduler: Airflow's LocalExecutor (what ``airflow standalone`` runs)
with the DuckDB warehouse file. Tasks run side by side, and a DuckDB file takes one writing process at a
time, so the forecast partitions, started together, must take turns on the file instead of failing.

Airflow's metadata lives in a PostgreSQL database made for the test (the LocalExecutor does not run on
SQLite); the API server, scheduler, dag-processor and triggerer are stopped by their PIDs at the end.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

from salespulse.generator import generate_crm
from salespulse.warehouse import get_engine, read_frame
from salespulse_cli.local_airflow import CHAIN
from salespulse_cli.scheduler_topology import Topology
from tests.conftest import fresh_postgres_database

pytestmark = [pytest.mark.airflow, pytest.mark.postgres, pytest.mark.scheduler]

AS_OF = date(2016, 11, 1)
PARTITIONS = 3


def test_the_chain_runs_on_the_duckdb_file_under_the_local_executor(tmp_path: Path) -> None:
    crm = generate_crm(n_customers=150, seed=3, start=date(2014, 1, 1), end=date(2016, 11, 30))
    crm.write_exports(tmp_path / "exports")
    warehouse_url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    settings = {
        "SALESPULSE_START_DATE": "2099-01-01",  # no run of the scheduler's own
        "SALESPULSE_EXPORT_DIR": str(tmp_path / "exports"),
        "SALESPULSE_DATA_DIR": str(tmp_path / "data"),
        "SALESPULSE_FORECAST_PARTITIONS": str(PARTITIONS),
        "SALESPULSE_FORECAST_HORIZON": "3",
    }
    with fresh_postgres_database() as metadata_url:
        topology = Topology.create(tmp_path / "airflow", metadata_url, warehouse_url, settings)
        started = time.monotonic()
        with topology.running(CHAIN) as metadata:
            topology.trigger("ingest_crm", {"as_of": AS_OF.isoformat()})
            runs = topology.wait_for_runs(metadata, CHAIN, successes=1, timeout=900)
            tis = pd.read_sql(
                text("select task_id, map_index, state, try_number, start_date, end_date from task_instance"),
                metadata,
            )
        print(f"\nlocal executor test: {time.monotonic() - started:.0f} s")

    assert topology.env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor" and topology.alive() == []
    assert set(runs["state"]) == {"success"} and len(runs) == len(CHAIN)
    assert set(tis["state"]) == {"success"}
    # No task needed a retry: none failed on the file's lock.
    assert set(tis["try_number"]) == {1}
    partitions = tis[tis["task_id"] == "forecast_partition"].sort_values("start_date")
    assert sorted(partitions["map_index"]) == list(range(PARTITIONS))
    # They were started side by side (one began before another ended), and some waited for the file.
    overlapping = partitions["start_date"].iloc[1:].to_numpy() < partitions["end_date"].iloc[:-1].to_numpy()
    assert overlapping.any(), partitions
    task_logs = (tmp_path / "airflow" / "logs").rglob("*.log")
    assert any("held by another process; waiting" in log.read_text() for log in task_logs)
    engine = get_engine(warehouse_url)
    snapshot = read_frame(engine, "select count(distinct series_id) as n from marts.forecast_snapshot")
    engine.dispose()
    assert int(snapshot["n"].iloc[0]) > 5
