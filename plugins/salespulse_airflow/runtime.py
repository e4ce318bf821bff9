"""What every SalesPulse task needs from Airflow: defaults, the run's as-of date, asset events.

Every DAG file imports this module when it is parsed, so it imports nothing heavy at the top: the steps,
pandas, Great Expectations and the models load inside the tasks that use them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Generator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pendulum
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from salespulse.alerts import (
    Alert,
    churn_alert,
    permanent_failure_alert,
    quality_alert,
    schema_drift_alert,
    variance_alert,
)
from salespulse.config import WAREHOUSE_CONN_ENV, Settings
from salespulse.errors import ConfigurationError, PermanentError

if TYPE_CHECKING:
    from salespulse.steps.segments import SegmentsSummary

log = logging.getLogger(__name__)

DEFAULT_START_DATE = "2000-01-01"


def start_date(env: Mapping[str, str] = os.environ) -> pendulum.DateTime:
    """The DAGs' start date: ``SALESPULSE_START_DATE`` (an ISO date), by default early enough for any CRM's
    history. Airflow creates no task for a logical date before it, so a late start date would make a
    backfill or a manual run of an older as-of date succeed having done nothing."""
    raw = env.get("SALESPULSE_START_DATE") or DEFAULT_START_DATE
    try:
        return pendulum.datetime(*date.fromisoformat(raw.strip()).timetuple()[:3], tz="UTC")
    except ValueError as exc:
        raise ValueError(f"SALESPULSE_START_DATE must be a date such as 2015-01-01, got {raw!r}") from exc


def ingest_schedule(env: Mapping[str, str] = os.environ) -> str | None:
    """When ``ingest_crm`` runs by itself: ``SALESPULSE_INGEST_SCHEDULE``, a cron expression or preset
    (default ``@daily``), or ``none`` for runs that are only triggered (the UI, the API, ``dags trigger``).
    Backfills step through this schedule: ``@monthly`` backfills a history one month-start at a time."""
    raw = (env.get("SALESPULSE_INGEST_SCHEDULE") or "@daily").strip()
    return None if raw.lower() == "none" else raw


START_DATE = start_date()
PARAMS: dict[str, Any] = {"as_of": None}


def on_task_failure(context: Mapping[str, Any]) -> None:
    """Log one structured line per failed task, naming the DAG, the run and the error."""
    ti = context.get("ti")
    log.error(
        "salespulse task failed: dag=%s task=%s run=%s error=%s",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        context.get("run_id"),
        context.get("exception"),
    )


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "salespulse-data-eng",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "on_failure_callback": on_task_failure,
}


# What every SalesPulse DAG shares; each DAG adds its schedule, tags and docs.
DAG_DEFAULTS: dict[str, Any] = {
    "start_date": START_DATE,
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
    "params": PARAMS,
}


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise ConfigurationError(f"as_of must be a date such as 2026-11-01, got {value!r}") from exc


def as_of_from_context(context: Mapping[str, Any]) -> date:
    """The date the run works as of, from the first source that has one.

    1. ``params.as_of`` (a manual run or backfill says which date it means);
    2. the newest ``as_of`` carried by the asset events that triggered this run;
    3. the logical date (time-scheduled runs);
    4. the moment the run was scheduled for (asset-triggered runs have no logical date).
    """
    params = context.get("params") or {}
    if params.get("as_of"):
        return _to_date(params["as_of"])
    triggering = context.get("triggering_asset_events") or {}
    event_dates = [
        _to_date(event.extra["as_of"])
        for events in triggering.values()
        for event in events
        if (event.extra or {}).get("as_of")
    ]
    if event_dates:
        return max(event_dates)
    if context.get("logical_date"):
        return _to_date(context["logical_date"])
    dag_run = context.get("dag_run")
    return _to_date(getattr(dag_run, "run_after", None) or pendulum.now("UTC"))


def publish(context: Mapping[str, Any], asset: Asset, as_of: date, summary: Mapping[str, Any]) -> None:
    """Attach the as-of date and a summary to the asset event this task emits."""
    context["outlet_events"][asset].extra = {
        "as_of": as_of.isoformat(),
        "run_id": context["run_id"],
        **summary,
    }


S = TypeVar("S")


@contextmanager
def fail_fast(context: Mapping[str, Any]) -> Generator[None]:
    """Turn an error a retry cannot fix (:class:`salespulse.errors.PermanentError`: a setting, a mapping, a
    source's schema or refusal) into a failure without retries, logged and sent as one alert. Other
    errors pass through to Airflow's retries."""
    try:
        yield
    except PermanentError as error:
        from salespulse_airflow.notifiers import send_alert

        ti = context.get("ti")
        dag_id, task_id = getattr(ti, "dag_id", "?"), getattr(ti, "task_id", "?")
        try:
            as_of = as_of_from_context(context).isoformat()
        except PermanentError:
            as_of = str((context.get("params") or {}).get("as_of"))
        log.error("%s.%s failed for good (not retried): %s: %s", dag_id, task_id, type(error).__name__, error)
        alert = permanent_failure_alert(
            dag_id=dag_id, task_id=task_id, run_id=str(context.get("run_id")), as_of=as_of, error=error
        )
        send_alert(alert, context)
        raise AirflowFailException(f"{type(error).__name__}: {error}") from error


def payload(summary: Any) -> dict[str, Any]:
    """A step's frozen summary as the plain dict a task returns (XCom) and an asset event carries."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(summary).items()}


def run_step(
    step: Callable[[Settings, date, str], S],
    asset: Asset,
    context: Mapping[str, Any],
    alert: Callable[[S, Mapping[str, Any]], Alert | None] | None = None,
) -> dict[str, Any]:
    """Run one pipeline step as of the run's date and attach its summary (lists left out) to the asset
    event it emits; if ``alert`` makes a message from the summary, send it through the notifiers."""
    from salespulse_airflow.notifiers import send_alert

    with fail_fast(context):
        as_of = as_of_from_context(context)
        summary = step(settings(), as_of, context["run_id"])
    result = payload(summary)
    publish(context, asset, as_of, {k: v for k, v in result.items() if not isinstance(v, list)})
    if alert is not None and (message := alert(summary, context)) is not None:
        send_alert(message, context)
    return result


def run_unpublished_step(
    step: Callable[[Settings, date, str], Any], context: Mapping[str, Any]
) -> dict[str, Any]:
    """Run a step that emits no asset (a part of a DAG, or the report) as of the run's date. A step whose
    summary says it was skipped (an optional input the source does not provide) marks the task skipped,
    with the reason in the log."""
    with fail_fast(context):
        result = payload(step(settings(), as_of_from_context(context), context["run_id"]))
    if result.get("skipped"):
        raise AirflowSkipException(str(result["skipped"]))
    return result


def prepare_warehouse(context: Mapping[str, Any]) -> date:
    """Set the warehouse up and say the run's as-of date (the ingest DAG's first task)."""
    from salespulse.steps import prepare

    with fail_fast(context):
        prepare.prepare_warehouse(settings())
        return as_of_from_context(context)


def send_variance_alert(
    variance: Mapping[str, Any], report: Mapping[str, Any], context: Mapping[str, Any]
) -> list[str]:
    """One summary alert per variance run when rows were flagged; returns the channels it reached."""
    from salespulse_airflow.notifiers import send_alert

    ti = context.get("ti")
    alert = variance_alert(
        dag_id=getattr(ti, "dag_id", "variance_report"),
        run_id=context["run_id"],
        period=variance["period"],
        flagged=variance.get("flagged", []),
        total=variance.get("flagged_rows", 0),
        facts=variance.get("fact_rows", 0),
        flags=variance.get("flags", {}),
        report=report.get("report"),
    )
    return [] if alert is None else send_alert(alert, context)


def churn_warning_alert(summary: SegmentsSummary, context: Mapping[str, Any]) -> Alert | None:
    """The customer_segments DAG's alert: valuable customers whose churn risk crossed the threshold."""
    ti = context.get("ti")
    return churn_alert(
        dag_id=getattr(ti, "dag_id", "customer_segments"),
        run_id=context["run_id"],
        as_of=as_of_from_context(context).isoformat(),
        warnings=list(summary.churn_warnings[:20]),
        total=summary.churn_warning_count,
    )


WAREHOUSE_CONN_ID = "salespulse_warehouse"
# Executors that run tasks on other machines or pods, where an embedded DuckDB file cannot be shared.
DISTRIBUTED_EXECUTORS = ("CeleryExecutor", "KubernetesExecutor", "CeleryKubernetesExecutor", "EdgeExecutor")


def settings() -> Settings:
    """Settings from the worker's environment, with the warehouse resolved through Airflow.

    ``WAREHOUSE_URL`` wins; otherwise the Airflow connection ``salespulse_warehouse`` wherever Airflow keeps
    it (the UI's metadata database, an ``AIRFLOW_CONN_*`` variable, a secrets backend); otherwise the
    embedded DuckDB file. An embedded DuckDB under an executor that spreads tasks over machines is refused
    with a ConfigurationError, rather than every worker writing a warehouse of its own."""
    from airflow.configuration import conf

    env = dict(os.environ)
    if not env.get("WAREHOUSE_URL"):
        uri = _connection_uri(WAREHOUSE_CONN_ID)
        if uri:
            env[WAREHOUSE_CONN_ENV] = uri
    resolved = Settings.from_env(env)
    executor = conf.get("core", "executor", fallback="")
    if resolved.dialect == "duckdb" and any(name in executor for name in DISTRIBUTED_EXECUTORS):
        raise ConfigurationError(
            f"the warehouse is an embedded DuckDB file ({resolved.warehouse_url}) but the executor is "
            f"{executor}, which runs tasks on several machines: define the Airflow connection "
            f"{WAREHOUSE_CONN_ID!r} (PostgreSQL) or set WAREHOUSE_URL"
        )
    return resolved


def _connection_uri(conn_id: str) -> str | None:
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return str(Connection.get(conn_id).get_uri())
    except AirflowNotFoundException:
        return None


def full_refresh_from_context(context: Mapping[str, Any]) -> bool:
    """``params.full_refresh`` of a manual run: reload everything, ignoring the watermark."""
    return bool((context.get("params") or {}).get("full_refresh", False))


def ingest_with_quality_alerts(entity: str, as_of: date, context: Mapping[str, Any]) -> dict[str, Any]:
    """Load one entity; send one alert when its validation had failures.

    A critical failure fails the task without retries (the data will not fix itself on a retry, and each
    retry would alert again), so the asset the DAG emits at its end is not updated. So does a source that
    refuses for good (a 4xx from the API, a missing required column, a broken mapping); a source that
    keeps failing transiently past its own retries is left to Airflow's task retries.
    """
    from salespulse.quality import DataQualityError
    from salespulse.steps.ingest import ingest_entity
    from salespulse_airflow.notifiers import send_alert

    ti = context.get("ti")
    dag_id = getattr(ti, "dag_id", "ingest_crm")
    try:
        with fail_fast(context):
            result = ingest_entity(
                settings(), entity, as_of, context["run_id"], full_refresh=full_refresh_from_context(context)
            )
    except DataQualityError as error:
        alert = quality_alert(
            dag_id=dag_id,
            run_id=context["run_id"],
            entity=entity,
            as_of=as_of.isoformat(),
            failures=error.failures,
            rows={"read": error.rows_read or 0, "loaded": 0},
            data_docs=error.data_docs,
        )
        send_alert(alert, context)
        raise AirflowFailException(str(error)) from error
    if result.failures:
        alert = quality_alert(
            dag_id=dag_id,
            run_id=context["run_id"],
            entity=entity,
            as_of=as_of.isoformat(),
            failures=list(result.failures),
            rows={
                "read": result.rows_read,
                "loaded": result.rows_loaded,
                "quarantined": result.rows_quarantined,
                "duplicates": result.rows_duplicate,
            },
            data_docs=result.data_docs,
        )
        send_alert(alert, context)
    if result.new_columns:
        drift = schema_drift_alert(
            dag_id=dag_id,
            run_id=context["run_id"],
            entity=entity,
            as_of=as_of.isoformat(),
            new_columns=list(result.new_columns),
            source=result.source,
        )
        send_alert(drift, context)
    return result.as_dict()
