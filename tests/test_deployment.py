"""No Docker engine here to run docker-compose: keep the production shape consistent with the tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from salespulse.config import REPO_ROOT


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", line.strip())
        if match:
            pins[re.sub(r"\[.*\]", "", match.group(1)).lower()] = match.group(2)
    return pins


def test_every_direct_requirement_is_pinned_and_locked() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert all("==" in line for line in lines), lines
    locked = {
        line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
        for line in (REPO_ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    for name, version in _pins().items():
        assert locked.get(name.replace("_", "-")) == version, name


def test_the_image_is_the_pinned_airflow_plus_the_pinned_stack() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM apache/airflow:(\S+)-python(\S+)$", dockerfile, re.MULTILINE)
    assert base is not None
    assert base.group(1) == _pins()["apache-airflow"]
    assert base.group(2) == "3.11"
    assert "-r /opt/airflow/project/requirements.txt -c /opt/airflow/project/constraints.txt" in dockerfile
    # SalesPulse itself is installed, not put on PYTHONPATH: its SQL and suites come as package data.
    assert "pip install --no-cache-dir --no-deps /opt/airflow/project" in dockerfile
    assert "PYTHONPATH" not in dockerfile


def test_compose_runs_celery_with_a_postgres_warehouse_and_the_dags_mounted() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert {
        "postgres",
        "redis",
        "warehouse-db",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-init",
    } <= set(services)
    common = compose["x-airflow-common"]
    env = common["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert env["AIRFLOW_CONN_SALESPULSE_WAREHOUSE"].startswith("postgres://")
    assert "@warehouse-db:5432/" in env["AIRFLOW_CONN_SALESPULSE_WAREHOUSE"]
    mounts = {volume.split(":")[0] for volume in common["volumes"]}
    assert {"./dags", "./plugins"} <= mounts and "./include" not in mounts  # include/ is in the image
    # Data Docs and variance reports land in a folder the host can open.
    data_mount = dict(volume.split(":")[:2] for volume in common["volumes"])["./.data"]
    assert env["SALESPULSE_DATA_DIR"] == data_mount
    assert common["build"] == "."
    assert services["airflow-worker"]["command"] == "celery worker"


def test_compose_names_only_drivers_executors_and_auth_managers_that_are_installed() -> None:
    """Each setting the services read must resolve to code the pinned image has."""
    import importlib

    from sqlalchemy.engine import make_url

    env = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())["x-airflow-common"]["environment"]
    url = re.sub(r"\$\{[^}]*\}", "secret", env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    make_url(url).get_dialect()  # the driver named in the URL is importable
    backend = re.sub(r"\$\{[^}]*\}", "secret", env["AIRFLOW__CELERY__RESULT_BACKEND"]).removeprefix("db+")
    make_url(backend).get_dialect()
    module, _, name = env["AIRFLOW__CORE__AUTH_MANAGER"].rpartition(".")
    assert hasattr(importlib.import_module(module), name)
    importlib.import_module("airflow.providers.celery.executors.celery_executor")
    importlib.import_module("asyncpg")


def test_compose_refuses_to_start_without_its_secrets_and_publishes_no_warehouse_port() -> None:
    text = (REPO_ROOT / "docker-compose.yaml").read_text()
    for secret in (
        "POSTGRES_PASSWORD",
        "WAREHOUSE_PASSWORD",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
    ):
        assert re.search(r"\$\{" + secret + r":\?[^}]+\}", text), secret
        assert not re.search(r"\$\{" + secret + r":-", text), f"{secret} has a default"
    services = yaml.safe_load(text)["services"]
    assert "ports" not in services["warehouse-db"] and "ports" not in services["postgres"]


def test_the_installed_package_carries_its_sql_suites_and_mappings(tmp_path: Path) -> None:
    """What the image does: ``pip install .``, then run from somewhere else with no checkout in sight. The
    warehouse SQL, the expectation suites and the shipped mappings come from site-packages, and the data
    folder defaults to the working directory, not to a path computed from the checkout."""
    project, target, elsewhere = tmp_path / "project", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # What the Dockerfile copies, and nothing a local build left behind (egg-info, build/).
    for folder in ("include", "plugins"):
        shutil.copytree(
            REPO_ROOT / folder, project / folder, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
        )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, project / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(project)],
        check=True, capture_output=True,
    )  # fmt: skip
    installed = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    shipped = {
        f"salespulse/{package}/{p.relative_to(REPO_ROOT / 'include' / package).as_posix()}"
        for package in ("sql", "expectations", "mappings")
        for p in (REPO_ROOT / "include" / package).rglob("*")
        if p.suffix in {".sql", ".json", ".yaml"}
    }
    assert {name.split("/")[1] for name in shipped} == {"sql", "expectations", "mappings"}
    assert shipped <= installed, shipped - installed
    probe = """
import json
import salespulse.config as c, salespulse.warehouse as w, salespulse.quality as q, salespulse.mapping as m
print(json.dumps({
    "module": c.__file__, "in_checkout": c.IN_CHECKOUT, "sql": str(c.SQL_DIR),
    "statements": len(w.load_sql("core/create_views.sql")),
    "suite": q.load_suite_document("orders")["name"],
    "mapping": m.load_mapping("online_retail").name,
    "data_dir": str(c.Settings.from_env({}).data_dir),
}))
"""
    # -S: no site-packages .pth files, so the checkout's editable install is not on the path; the
    # dependencies come from the virtualenv's site-packages after the installed copy.
    site_packages = next(p for p in sys.path if p.endswith("site-packages"))
    out = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        cwd=elsewhere,
        env={"PYTHONPATH": f"{target}{os.pathsep}{site_packages}", "PATH": os.environ["PATH"]},
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["module"].startswith(str(target)) and found["sql"].startswith(str(target))
    assert found["in_checkout"] is False
    assert found["statements"] > 0 and found["suite"] == "salespulse.orders"
    assert found["mapping"] == "online_retail"
    assert found["data_dir"] == str((elsewhere / ".data").resolve())
