"""Shared fixtures.

Airflow reads its configuration when it is first imported, so the environment is set here, before
any test module imports it: every test session gets a throwaway Airflow home, never the developer's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Generator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from salespulse.generator import CrmDataset, generate_crm
from salespulse_cli.local_airflow import airflow_env
from salespulse_cli.scheduler_topology import scratch_database

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="salespulse-test-airflow-"))
os.environ.update(airflow_env(home=_AIRFLOW_HOME))

POSTGRES_ADMIN_URL = os.environ.get(
    "SALESPULSE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata database (SQLite) in the session's Airflow home."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
    )
    return _AIRFLOW_HOME


@pytest.fixture
def duckdb_url(tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"


@contextmanager
def fresh_postgres_database() -> Generator[str, None, None]:
    """A fresh, empty PostgreSQL database, dropped afterwards.

    Without a reachable server the test is skipped on a laptop but fails in CI (CI=true).
    """
    with ExitStack() as stack:
        try:
            url = stack.enter_context(scratch_database(POSTGRES_ADMIN_URL))
        except OperationalError as exc:
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(f"PostgreSQL is required in CI but {POSTGRES_ADMIN_URL} is unreachable: {exc}")
            pytest.skip(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}")
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    with fresh_postgres_database() as url:
        yield url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what a test needs from its fixtures, so ``make test-fast`` can leave it out: PostgreSQL
    (``postgres``) and a migrated Airflow database (``airflow``)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "postgres_url" in fixtures or "postgres" in getattr(getattr(item, "callspec", None), "id", ""):
            item.add_marker(pytest.mark.postgres)
        if "airflow_db" in fixtures:
            item.add_marker(pytest.mark.airflow)


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse_url(request: pytest.FixtureRequest) -> str:
    """Runs a test once on the embedded default (DuckDB) and once on the production warehouse (PostgreSQL)."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture(scope="session")
def small_crm() -> CrmDataset:
    """A small generated CRM: 400 customers, a known seed, the default defect rate."""
    return generate_crm(n_customers=400, seed=11)


@pytest.fixture(scope="session")
def small_exports(small_crm: CrmDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("exports")
    small_crm.write_exports(folder)
    return folder


_BAD_INPUT: Counter[str] = Counter()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Adds up the bad-input suite's outcomes from the reports (with ``-n``, they come from the workers)."""
    if report.when == "teardown":
        _BAD_INPUT.update(value for key, value in report.user_properties if key == "bad_input")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The bad-input suite's tally, when it ran: kinds tried, handled, silent, unclear."""
    if sum(_BAD_INPUT.values()):
        from tests.test_bad_input import summary_line

        terminalreporter.write_line(summary_line(_BAD_INPUT))
