"""DAG integrity: every DAG imports, is documented, owned, tagged and retried; assets wire the chain."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from salespulse.ingest import SourceSchemaError
from salespulse.mapping import MappingError
from salespulse.model import ENTITIES
from salespulse.sources import PermanentSourceError

CHAIN = ["ingest_crm", "customer_segments", "sales_forecast", "variance_report"]


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])


def test_every_dag_file_imports_without_errors(dag_bag) -> None:
    assert dag_bag.import_errors == {}
    assert sorted(dag_bag.dag_ids) == sorted(CHAIN)


@pytest.mark.parametrize("dag_id", CHAIN)
def test_dag_has_owner_tags_retries_and_docs(dag_bag, dag_id: str) -> None:
    dag = dag_bag.dags[dag_id]
    assert "salespulse" in dag.tags
    assert dag.doc_md and dag_id in dag.doc_md
    assert dag.catchup is False
    for task in dag.tasks:
        assert task.owner == "salespulse-data-eng", task.task_id
        assert task.retries >= 1, task.task_id
        assert task.on_failure_callback, task.task_id


def test_ingest_loads_every_entity_parents_first(dag_bag) -> None:
    dag = dag_bag.dags["ingest_crm"]
    order = [f"ingest_{e.name}" for e in ENTITIES]
    assert set(order) <= set(dag.task_ids)
    for parent, child in zip(order, order[1:], strict=False):
        assert parent in dag.get_task(child).upstream_task_ids
    assert order[-1] in dag.get_task("publish_core").upstream_task_ids


def test_the_chain_is_wired_by_assets(dag_bag) -> None:
    from salespulse_airflow import assets

    produced_by = {
        "ingest_crm": assets.CRM_CORE,
        "customer_segments": assets.CUSTOMER_SEGMENTS,
        "sales_forecast": assets.SALES_FORECASTS,
        "variance_report": assets.VARIANCE_REPORT,
    }
    for upstream, downstream in zip(CHAIN, CHAIN[1:], strict=False):
        asset = produced_by[upstream]
        outlets = [o for t in dag_bag.dags[upstream].tasks for o in t.outlets]
        assert asset in outlets, upstream
        condition = dag_bag.dags[downstream].timetable.asset_condition
        assert list(condition.objects) == [asset], downstream


def test_forecasts_fan_out_over_mapped_partitions_and_publish_once(dag_bag) -> None:
    dag = dag_bag.dags["sales_forecast"]
    mapped = dag.get_task("forecast_partition")
    assert type(mapped).__name__.endswith("MappedOperator")
    assert mapped.upstream_task_ids == {"prepare_series"}
    publish = dag.get_task("publish_snapshot")
    assert publish.upstream_task_ids == {"forecast_partition"}
    assert [o.name for o in publish.outlets] == ["sales_forecasts"]
    assert all(not t.outlets for t in dag.tasks if t.task_id != "publish_snapshot")


def test_the_variance_report_runs_monthly_and_on_new_forecasts(dag_bag) -> None:
    """The 06:00 UTC run on the 1st reports the month just ended; a new snapshot also triggers a run; the
    alert waits for both the facts and the rendered report."""
    dag = dag_bag.dags["variance_report"]
    timetable = dag.timetable
    assert type(timetable).__name__ == "AssetOrTimeSchedule"
    assert timetable.timetable.expression == "0 6 1 * *"
    assert [a.name for a in timetable.asset_condition.objects] == ["sales_forecasts"]
    assert dag.get_task("alert_flagged").upstream_task_ids == {"build_variance", "render_report"}
    assert dag.get_task("render_report").upstream_task_ids == {"build_variance"}


def _event(as_of: str) -> SimpleNamespace:
    return SimpleNamespace(extra={"as_of": as_of})


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"params": {"as_of": "2026-03-01"}, "logical_date": datetime(2026, 5, 1)}, date(2026, 3, 1)),
        (
            {
                "params": {"as_of": None},
                "triggering_asset_events": {"a": [_event("2026-02-01"), _event("2026-04-01")]},
                "logical_date": None,
            },
            date(2026, 4, 1),
        ),
        ({"params": {}, "logical_date": datetime(2026, 5, 2, tzinfo=UTC)}, date(2026, 5, 2)),
        (
            {"params": {}, "logical_date": None, "dag_run": SimpleNamespace(run_after=datetime(2026, 6, 3))},
            date(2026, 6, 3),
        ),
    ],
)
def test_as_of_date_comes_from_params_then_asset_events_then_the_schedule(
    context: dict, expected: date
) -> None:
    from salespulse_airflow.runtime import as_of_from_context

    assert as_of_from_context(context) == expected


def test_run_step_passes_the_as_of_date_and_publishes_the_summary_with_the_asset_event() -> None:
    from salespulse_airflow import assets
    from salespulse_airflow.runtime import run_step

    @dataclass(frozen=True)
    class Summary:
        customers_scored: int
        churn_warnings: tuple[str, ...]

    calls = []

    def step(settings, as_of: date, run_id: str) -> Summary:
        calls.append((as_of, run_id))
        return Summary(7, ("C1",))

    event = SimpleNamespace(extra=None)
    context = {
        "params": {"as_of": "2026-03-01"},
        "run_id": "manual__x",
        "outlet_events": {assets.CUSTOMER_SEGMENTS: event},
    }
    # The task returns the whole summary (tuples as lists, for XCom); the event leaves the lists out.
    assert run_step(step, assets.CUSTOMER_SEGMENTS, context) == {
        "customers_scored": 7,
        "churn_warnings": ["C1"],
    }
    assert calls == [(date(2026, 3, 1), "manual__x")]
    assert event.extra == {"as_of": "2026-03-01", "run_id": "manual__x", "customers_scored": 7}


def test_parsing_the_dag_files_loads_no_heavy_library() -> None:
    """The dag-processor parses every file often and under a timeout: pandas, Great Expectations, the models
    and DuckDB load inside the tasks, never when a DAG file is parsed (``python -m bench.dag_parse`` times
    it). Checked in a fresh interpreter, since this test process has them all loaded already."""
    root = Path(__file__).resolve().parents[1]
    heavy = ("pandas", "great_expectations", "sklearn", "statsmodels", "scipy", "duckdb", "matplotlib")
    probe = (
        f"import runpy, sys\nsys.path[:0] = [{str(root / 'include')!r}, {str(root / 'plugins')!r}]\n"
        + "".join(f"runpy.run_path({str(p)!r})\n" for p in sorted((root / "dags").glob("*.py")))
        + f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=os.environ.copy())
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("make_error", "env", "params", "named"),
    [
        (lambda: MappingError("mapping.yaml: entity 'orders': no column 'Datum'"), {}, {}, "MappingError"),
        (
            lambda: SourceSchemaError("orders: required column order_date missing"),
            {},
            {},
            "SourceSchemaError",
        ),
        (lambda: PermanentSourceError("HTTP 401: check the bearer token"), {}, {}, "PermanentSourceError"),
        (None, {"SALESPULSE_FORECAST_HORIZON": "six"}, {}, "ConfigurationError"),
        (None, {}, {"as_of": "yesterday"}, "ConfigurationError"),
    ],
)
def test_what_a_retry_cannot_fix_fails_at_once_with_one_alert(
    make_error, env, params, named, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from salespulse_airflow import assets, notifiers, runtime

    sent = []
    monkeypatch.setattr(notifiers, "send_alert", lambda alert, context: sent.append(alert) or [])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    calls = []

    def step(settings, as_of: date, run_id: str) -> None:
        calls.append(as_of)
        raise make_error()

    context = {
        "params": {"as_of": "2026-03-01", **params},
        "run_id": "manual__x",
        "ti": SimpleNamespace(dag_id="customer_segments", task_id="build_segments"),
        "outlet_events": {assets.CUSTOMER_SEGMENTS: SimpleNamespace(extra=None)},
    }
    with pytest.raises(AirflowFailException, match=named):
        runtime.run_step(step, assets.CUSTOMER_SEGMENTS, context)
    assert len(sent) == 1 and sent[0].payload["error_type"] == named
    assert "not retried" in sent[0].subject and "customer_segments.build_segments" in sent[0].subject
    assert len(calls) == (1 if make_error else 0)  # a bad setting or date stops before the step runs


def test_a_transient_error_is_left_to_airflows_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    from salespulse_airflow import notifiers, runtime

    sent = []
    monkeypatch.setattr(notifiers, "send_alert", lambda alert, context: sent.append(alert) or [])

    def step(settings, as_of: date, run_id: str) -> None:
        raise ConnectionError("warehouse-db:5432 refused the connection")

    with pytest.raises(ConnectionError):
        runtime.run_unpublished_step(step, {"params": {"as_of": "2026-03-01"}, "run_id": "manual__x"})
    assert sent == []


def test_the_warehouse_comes_from_the_airflow_connection_wherever_airflow_keeps_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resolved through Airflow's own Connection API, which reads the UI's database, AIRFLOW_CONN_*
    variables and secrets backends alike; WAREHOUSE_URL still wins."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    from salespulse_airflow import runtime

    # pragma: allowlist nextline secret (a test's fake credential)
    fake = "bi:s3cret@warehouse-db:5432/warehouse"
    stored = {"salespulse_warehouse": f"postgres://{fake}"}

    def get(conn_id: str) -> SimpleNamespace:
        if conn_id not in stored:
            raise AirflowNotFoundException(conn_id)
        return SimpleNamespace(get_uri=lambda: stored[conn_id])

    monkeypatch.setattr(Connection, "get", staticmethod(get))
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SALESPULSE_WAREHOUSE", raising=False)
    assert runtime.settings().warehouse_url == f"postgresql+psycopg://{fake}"
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql+psycopg://other@h/db")
    assert runtime.settings().warehouse_url == "postgresql+psycopg://other@h/db"
    monkeypatch.delenv("WAREHOUSE_URL")
    stored.clear()
    assert runtime.settings().dialect == "duckdb"  # nothing configured: the embedded default


@pytest.mark.parametrize(("executor", "refused"), [("LocalExecutor", False), ("CeleryExecutor", True)])
def test_an_embedded_warehouse_is_refused_under_a_distributed_executor(
    executor: str, refused: bool, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from salespulse.errors import ConfigurationError
    from salespulse_airflow import runtime

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{tmp_path / 'w.duckdb'}")
    if refused:
        with pytest.raises(ConfigurationError, match="embedded DuckDB.*CeleryExecutor.*salespulse_warehouse"):
            runtime.settings()
    else:
        assert runtime.settings().dialect == "duckdb"
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql+psycopg://u@h/db")
    assert runtime.settings().dialect == "postgresql"  # a shared warehouse is fine under any executor
