"""Run the real DAGs on this machine with no scheduler: an Airflow home inside the repository (SQLite
metadata, gitignored) and ``dag.test()`` for each DAG of the chain and each as-of date.

Airflow reads its configuration when first imported, so :func:`configure_airflow` sets the environment
before anything imports it; the import of the DAGs themselves happens in :func:`run_chain`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from salespulse.config import REPO_ROOT

CHAIN = ("ingest_crm", "customer_segments", "sales_forecast", "variance_report")


def airflow_env(root: Path = REPO_ROOT, home: Path | None = None) -> dict[str, str]:
    """Environment that makes Airflow use this repository's DAGs and plugins and a local home."""
    return {
        "AIRFLOW_HOME": str(home or root / ".airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
    }


def configure_airflow(home: Path | None = None) -> dict[str, str]:
    """Set the Airflow environment in this process (before Airflow is imported) and migrate its database."""
    env = airflow_env(home=home)
    for key, value in env.items():
        os.environ.setdefault(key, value)
    Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        env={**os.environ},
        stdout=subprocess.DEVNULL,
    )
    return env


def month_starts_before(end: date, months: int) -> list[date]:
    """``months`` consecutive first-of-month dates, the last one the month after ``end``."""
    year, month = end.year, end.month + 1
    if month == 13:
        year, month = year + 1, 1
    dates = []
    for _ in range(months):
        dates.append(date(year, month, 1))
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return sorted(dates)


def run_chain(as_of_dates: Sequence[date], dag_ids: Sequence[str] = CHAIN) -> dict[str, list[str]]:
    """Run each DAG of the chain for each as-of date with ``dag.test()``; fail loudly if any run fails, and
    if a run ran no task (Airflow marks such a run successful: a date before the DAGs' start date)."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    states: dict[str, list[str]] = {dag_id: [] for dag_id in dag_ids}
    for as_of in as_of_dates:
        logical = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
        for dag_id in dag_ids:
            dag_run = bag.dags[dag_id].test(logical_date=logical, run_conf={"as_of": as_of.isoformat()})
            state = str(getattr(dag_run.state, "value", dag_run.state))
            states[dag_id].append(state)
            if state != "success":
                raise RuntimeError(f"{dag_id} for as-of {as_of} ended in state {state!r}")
            with create_session() as session:
                if not dag_run.get_task_instances(session=session):
                    raise RuntimeError(
                        f"{dag_id} for as-of {as_of} ran no task: the date is before the DAG's start date "
                        f"{bag.dags[dag_id].start_date:%Y-%m-%d} (SALESPULSE_START_DATE)"
                    )
    return states
