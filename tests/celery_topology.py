"""Airflow's production topology, started natively for a test: the API server, scheduler, dag-processor,
triggerer and a Celery worker, with PostgreSQL as the metadata database and Redis as the broker.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

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


def celery_environment(
    home: Path, metadata_url: str, broker_url: str, queue: str, api_port: int
) -> dict[str, str]:
    """The settings every component shares: what the compose file's ``x-airflow-common`` sets, pointed at
    services on this machine. ``metadata_url`` is a SQLAlchemy URL with the psycopg (3) driver."""
    from cryptography.fernet import Fernet

    return {
        **airflow_env(home=home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_url}",
        # Tasks go to this queue and only this test's worker listens on it, so a shared Redis is safe.
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
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
        worker = ["celery", "worker", "--queues", self.queue, "--concurrency", "2", "--without-mingle"]
        for name, args in {**COMPONENTS, "celery-worker": [*worker, "--without-gossip"]}.items():
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

    def _token(self) -> str:
        return str(self.request("GET", "/auth/token")["access_token"])


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
