"""Airflow's production topology, started natively for a test: the API server, scheduler, dag-processor,
triggerer and a Celery worker, with PostgreSQL as the metadata database and Redis as the broker; or, with
no broker, the same without the worker under the LocalExecutor (what ``airflow standalone`` runs).

Each component is a process of its own (``python -m airflow ...``) in a new session, so stopping it by its
PID also stops what it forked (the worker's pool, the API server's workers, task processes). Its output
goes to ``<home>/processes/<component>.log`` (task logs are under ``<home>/logs``), shown when a test
fails. Nothing here is Docker: the same commands, typed by hand, run the same topology
(docs/operations.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Generator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from salespulse_cli.local_airflow import airflow_env

T = TypeVar("T")

COMPONENTS: dict[str, list[str]] = {
    "api-server": ["api-server", "--workers", "1"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def topology_environment(
    home: Path, metadata_url: str, warehouse_url: str, api_port: int, broker_url: str | None, queue: str
) -> dict[str, str]:
    """The settings every component shares: what the compose file's ``x-airflow-common`` sets, pointed at
    services on this machine. ``metadata_url`` is a SQLAlchemy URL with the psycopg (3) driver. A
    PostgreSQL warehouse becomes the ``salespulse_warehouse`` connection the tasks resolve through Airflow;
    a DuckDB file is ``WAREHOUSE_URL``. With a broker the executor is Celery (tasks on ``queue``, which only
    this topology's worker reads, so a shared Redis is safe); without one it is the LocalExecutor."""
    from cryptography.fernet import Fernet

    env = {
        **airflow_env(home=home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "120",
    }
    warehouse = make_url(warehouse_url)
    if warehouse.get_backend_name() == "duckdb":
        env["WAREHOUSE_URL"] = warehouse_url
    else:
        connection = warehouse.set(drivername="postgresql").render_as_string(hide_password=False)
        env["AIRFLOW_CONN_SALESPULSE_WAREHOUSE"] = connection
    if broker_url is None:
        return env | {"AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__CORE__PARALLELISM": "4"}
    return env | {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_url}",
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "3600",
    }


@dataclass
class Topology:
    """The running components; :meth:`stop` ends each of them by PID."""

    home: Path
    env: dict[str, str]
    queue: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        home: Path,
        metadata_url: str,
        warehouse_url: str,
        settings: Mapping[str, str],
        broker_url: str | None = None,
    ) -> Topology:
        """A topology on this machine's services, with this process's environment, the shared Airflow
        settings and the pipeline's ``settings`` (``SALESPULSE_*``): Celery with ``broker_url``, else the
        LocalExecutor."""
        queue = f"salespulse-{uuid.uuid4().hex[:8]}"
        env = {
            **{k: v for k, v in os.environ.items() if k != "WAREHOUSE_URL"},
            **topology_environment(home, metadata_url, warehouse_url, free_port(), broker_url, queue),
            **settings,
        }
        return cls(home=home, env=env, queue=queue)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.env['AIRFLOW__API__PORT']}"

    def airflow(self, *args: str, timeout: float = 300) -> str:
        """Run one ``airflow`` CLI command against this topology; its output, or an error with it."""
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{output}")
        return done.stdout

    def start(self) -> None:
        started = time.monotonic()
        (self.home / "processes").mkdir(parents=True, exist_ok=True)
        self.airflow("db", "migrate", timeout=600)
        self.timings["migrate_s"] = time.monotonic() - started
        components = dict(COMPONENTS)
        if self.env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor":
            worker = ["celery", "worker", "--queues", self.queue, "--concurrency", "2", "--without-mingle"]
            components["celery-worker"] = [*worker, "--without-gossip"]
        for name, args in components.items():
            log = (self.home / "processes" / f"{name}.log").open("wb")
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_for("the API server", lambda: self.request("GET", "/api/v2/version"), timeout=240)
        self.timings["api_ready_s"] = time.monotonic() - started

    @contextmanager
    def running(self, dag_ids: tuple[str, ...]) -> Generator[Engine]:
        """Start the components, unpause ``dag_ids`` once parsed, and yield an engine on Airflow's metadata
        database; at the end, whatever happened, stop every component by its PID."""
        started = time.monotonic()
        metadata = create_engine(self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        try:
            self.start()
            self.unpause_when_parsed(dag_ids)
            self.timings["ready_s"] = time.monotonic() - started
            yield metadata
        finally:
            self.timings["killed_after_sigterm"] = float(len(self.stop()))
            metadata.dispose()

    def stop(self) -> list[str]:
        """SIGTERM each component's process group (its PID), SIGKILL what is left after 30 s; returns the
        components that had to be killed."""
        for process in self.processes.values():
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        killed = []
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                killed.append(name)
            # Children the component forked (pool workers, task processes) go with its group.
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        return killed

    def alive(self) -> list[str]:
        """Process groups of this topology that still exist."""
        names = []
        for name, process in self.processes.items():
            try:
                os.killpg(process.pid, 0)
                names.append(name)
            except ProcessLookupError:
                pass
        return names

    def logs(self, lines: int = 40) -> str:
        parts = []
        for name in self.processes:
            path = self.home / "processes" / f"{name}.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            parts.append(f"----- {name} (last {lines} lines) -----\n" + "\n".join(text))
        return "\n".join(parts)

    def check_running(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"components exited: {dead}\n{self.logs()}")

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float, every: float = 2) -> T:
        deadline = time.monotonic() + timeout
        while True:
            self.check_running()
            try:
                result = probe()
            except (OSError, ValueError):
                result = None
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not reached after {timeout:.0f} s\n{self.logs()}")
            time.sleep(every)

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One call to the public REST API, with a token from the simple auth manager."""
        headers = {"Content-Type": "application/json"}
        if not path.startswith("/auth/"):
            headers["Authorization"] = f"Bearer {self._token()}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def unpause_when_parsed(self, dag_ids: tuple[str, ...], timeout: float = 240) -> None:
        """Wait until the dag-processor has parsed ``dag_ids``, then unpause them."""
        self.wait_for(
            f"{', '.join(dag_ids)} parsed",
            lambda: (
                {d["dag_id"] for d in self.request("GET", "/api/v2/dags?limit=100")["dags"]} >= set(dag_ids)
            ),
            timeout=timeout,
        )
        for dag_id in dag_ids:
            self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any]) -> str:
        """A manual run with no logical date (the UI's default), as the REST API makes it; its run id."""
        run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        return str(run["dag_run_id"])

    def backfill(self, dag_id: str, first: date, last: date) -> None:
        """``airflow backfill create`` over ``[first, last]``, one run at a time: the dates stay in order."""
        self.airflow(
            "backfill", "create", "--dag-id", dag_id, "--from-date", first.isoformat(),
            "--to-date", last.isoformat(), "--max-active-runs", "1",
        )  # fmt: skip

    def wait_for_runs(
        self, metadata: Engine, dag_ids: tuple[str, ...], successes: int, timeout: float
    ) -> pd.DataFrame:
        """Wait until each DAG has ``successes`` successful runs; fail at once when a run fails. Returns
        Airflow's ``dag_run`` rows of those DAGs."""

        def done() -> bool:
            runs = dag_runs(metadata)
            failed = runs[runs["state"] == "failed"]
            if len(failed):
                raise RuntimeError(f"DAG runs failed:\n{failed[['dag_id', 'run_id']]}\n{self.logs()}")
            succeeded = runs[runs["state"] == "success"].groupby("dag_id").size()
            return all(succeeded.get(dag_id, 0) >= successes for dag_id in dag_ids)

        self.wait_for(f"{successes} successful run(s) of {', '.join(dag_ids)}", done, timeout, every=5)
        return dag_runs(metadata)

    def _token(self) -> str:
        return str(self.request("GET", "/auth/token")["access_token"])


@contextmanager
def scratch_database(admin_url: str, prefix: str = "salespulse_test") -> Generator[str]:
    """A new, empty UTF-8 PostgreSQL database named ``<prefix>_<random>``, dropped on exit; its URL.
    ``admin_url`` is a URL of a user that may create databases. Raises OperationalError when the server
    cannot be reached."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            name = f"{prefix}_{uuid.uuid4().hex[:12]}"
            conn.execute(text(f"create database \"{name}\" encoding 'UTF8' template template0"))
            try:
                yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
            finally:
                conn.execute(text(f'drop database if exists "{name}" with (force)'))
    finally:
        admin.dispose()


def dag_runs(metadata: Engine) -> pd.DataFrame:
    """Airflow's ``dag_run`` rows, oldest start first."""
    query = (
        "select dag_id, run_id, run_type, state, conf, logical_date, start_date, end_date "
        "from dag_run order by start_date"
    )
    return pd.read_sql(text(query), metadata)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
