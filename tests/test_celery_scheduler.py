"""The DAGs under a real scheduler with the CeleryExecutor, as docker-compose runs them, without Docker.

Airflow 3.3's API server, scheduler, dag-processor, triggerer and a Celery worker run as processes of their
own; PostgreSQL (127.0.0.1:5432) keeps Airflow's metadata and the warehouse, each in a database made for this
test, and Redis (127.0.0.1:6379) is the broker. The CRM is generated for 2014-2016, years before today.

The test triggers ``ingest_crm`` once through the REST API (as-of 2016-11-01), then backfills 2016-12-01 with
``airflow backfill create``. Nothing else starts the chain: the asset events must run ``customer_segments ->
sales_forecast -> variance_report`` for each date, the forecast partitions must run as mapped tasks on the
worker, and the warehouse must hold what the source says. Every component is stopped by its PID at the end.

SALESPULSE_START_DATE lies in the future here, so the scheduler starts no run of its own when the DAGs
are unpaused (a time-scheduled DAG runs its latest tick at once); triggered, backfilled and
asset-triggered runs do not depend on it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from salespulse.generator import CrmDataset, generate_crm
from salespulse.warehouse import get_engine, read_frame
from salespulse_cli.scheduler_topology import Topology
from tests.conftest import fresh_postgres_database
from tests.helpers import expected_revenue

pytestmark = [pytest.mark.airflow, pytest.mark.postgres, pytest.mark.scheduler]

CHAIN = ("ingest_crm", "customer_segments", "sales_forecast", "variance_report")
TRIGGERED = date(2016, 11, 1)  # through the REST API
BACKFILLED = date(2016, 12, 1)  # through `airflow backfill create`
PARTITIONS = 3
REDIS_URL = os.environ.get("SALESPULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass(frozen=True)
class SchedulerRun:
    runs: pd.DataFrame  # Airflow's dag_run rows of the four DAGs
    task_instances: pd.DataFrame
    warehouse: Engine
    crm: CrmDataset
    data_dir: Path
    queue: str
    timings: dict[str, float]
    stopped_alive: list[str]  # components whose process group still existed after stop()


def _require_redis() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"Redis is required in CI but {REDIS_URL} is unreachable: {exc}")
        pytest.skip(f"Redis unreachable at {REDIS_URL}")


@pytest.fixture(scope="module")
def scheduler_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulerRun]:
    _require_redis()
    started = time.monotonic()
    home = tmp_path_factory.mktemp("celery-airflow")
    data_dir = home / "data"
    crm = generate_crm(n_customers=150, seed=3, start=date(2014, 1, 1), end=date(2016, 11, 30))
    crm.write_exports(data_dir / "exports")
    with fresh_postgres_database() as metadata_url, fresh_postgres_database() as warehouse_url:
        settings = {
            "SALESPULSE_START_DATE": "2099-01-01",
            "SALESPULSE_INGEST_SCHEDULE": "@monthly",
            "SALESPULSE_EXPORT_DIR": str(data_dir / "exports"),
            "SALESPULSE_DATA_DIR": str(data_dir),
            "SALESPULSE_FORECAST_PARTITIONS": str(PARTITIONS),
            "SALESPULSE_FORECAST_HORIZON": "3",
        }
        topology = Topology.create(home, metadata_url, warehouse_url, settings, REDIS_URL)
        with topology.running(CHAIN) as metadata:
            chain_started = time.monotonic()
            topology.trigger("ingest_crm", {"as_of": TRIGGERED.isoformat()})
            topology.wait_for_runs(metadata, CHAIN, successes=1, timeout=900)
            topology.timings["first_chain_s"] = time.monotonic() - chain_started
            backfill_started = time.monotonic()
            topology.backfill("ingest_crm", BACKFILLED, BACKFILLED)
            runs = topology.wait_for_runs(metadata, CHAIN, successes=2, timeout=900)
            topology.timings["backfill_chain_s"] = time.monotonic() - backfill_started
            task_instances = pd.read_sql(
                text("select dag_id, run_id, task_id, map_index, state, queue, hostname from task_instance"),
                metadata,
            )
        topology.timings["wall_s"] = time.monotonic() - started
        print(f"\ncelery scheduler test timings: {topology.timings}")
        warehouse = get_engine(warehouse_url)
        yield SchedulerRun(
            runs, task_instances, warehouse, crm, data_dir, topology.queue, topology.timings, topology.alive()
        )
        warehouse.dispose()


def test_one_trigger_and_one_backfill_run_the_whole_chain_through_asset_events(
    scheduler_run: SchedulerRun,
) -> None:
    runs = scheduler_run.runs
    assert set(runs["state"]) == {"success"}
    by_dag = runs.groupby("dag_id")["run_type"].apply(sorted).to_dict()
    assert by_dag == {
        "ingest_crm": ["backfill", "manual"],
        "customer_segments": ["asset_triggered"] * 2,
        "sales_forecast": ["asset_triggered"] * 2,
        "variance_report": ["asset_triggered"] * 2,
    }
    # Each DAG's runs worked on the triggered date, then on the backfilled one (the audit names the Airflow
    # run and its as-of date), and each run started after the one before it ended.
    steps = read_frame(
        scheduler_run.warehouse,
        "select run_id, as_of_date from audit.step_runs "
        "union select run_id, as_of_date from audit.load_batches",
    )
    as_of = dict(zip(steps["run_id"], steps["as_of_date"].astype(str).str[:10], strict=True))
    for dag_id in CHAIN:
        ordered = runs[runs["dag_id"] == dag_id].sort_values("start_date")
        assert [as_of.get(run_id) for run_id in ordered["run_id"]] == [
            TRIGGERED.isoformat(),
            BACKFILLED.isoformat(),
        ], dag_id
        assert ordered["start_date"].iloc[1] > ordered["end_date"].iloc[0], dag_id


def test_every_task_ran_on_the_celery_worker_and_the_forecast_partitions_were_mapped(
    scheduler_run: SchedulerRun,
) -> None:
    tis = scheduler_run.task_instances
    assert set(tis["state"]) == {"success"}, tis[tis["state"] != "success"]
    assert set(tis["queue"]) == {scheduler_run.queue}
    assert tis["hostname"].str.len().gt(0).all()
    partitions = tis[(tis["dag_id"] == "sales_forecast") & (tis["task_id"] == "forecast_partition")]
    assert (
        sorted(partitions.groupby("run_id")["map_index"].apply(sorted).tolist())
        == [list(range(PARTITIONS))] * 2
    )


def test_the_warehouse_holds_both_dates_and_the_variance_of_november(scheduler_run: SchedulerRun) -> None:
    engine = scheduler_run.warehouse
    batches = read_frame(engine, "select distinct as_of_date from audit.load_batches")
    dates = sorted(batches["as_of_date"].astype(str).str[:10])
    assert dates == [TRIGGERED.isoformat(), BACKFILLED.isoformat()]
    snapshots = read_frame(engine, "select distinct as_of_date from marts.forecast_snapshot")
    assert len(snapshots) == 2
    scored = read_frame(engine, "select distinct snapshot_date from marts.customer_rfm")
    assert len(scored) == 2
    series = read_frame(
        engine,
        "select sum(revenue) as revenue from marts.sales_series where grain = 'month' and level = 'total'",
    )
    assert float(series["revenue"].iloc[0]) == pytest.approx(
        expected_revenue(scheduler_run.crm, BACKFILLED), rel=1e-9
    )
    variance = read_frame(
        engine, "select * from reporting.variance where series_id = 'total:all' and horizon = 1"
    )
    assert variance["period_start"].astype(str).str[:7].tolist() == ["2016-11"]
    assert variance["actual"].iloc[0] == pytest.approx(
        expected_revenue(scheduler_run.crm, BACKFILLED) - expected_revenue(scheduler_run.crm, TRIGGERED),
        rel=1e-9,
    )
    assert (scheduler_run.data_dir / "reports" / "2016-11").is_dir()


def test_every_component_was_stopped_by_its_pid(scheduler_run: SchedulerRun) -> None:
    assert scheduler_run.stopped_alive == []
