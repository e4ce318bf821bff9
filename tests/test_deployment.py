"""No Docker engine here to run docker-compose: keep the production shape consistent with the tests."""

from __future__ import annotations

import re

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


def test_compose_runs_celery_with_a_postgres_warehouse_and_the_project_mounted() -> None:
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
    assert {"./dags", "./plugins", "./include"} <= mounts
    # Data Docs and variance reports land in a folder the host can open.
    data_mount = dict(volume.split(":")[:2] for volume in common["volumes"])["./.data"]
    assert env["SALESPULSE_DATA_DIR"] == data_mount
    assert common["build"] == "."
    assert services["airflow-worker"]["command"] == "celery worker"


def test_no_secret_is_committed_in_the_env_example() -> None:
    example = (REPO_ROOT / ".env.example").read_text()
    for line in example.splitlines():
        if "PASSWORD" in line and "=" in line and not line.startswith("#"):
            assert line.split("=", 1)[1] in ("CHANGE_ME", ""), line
    assert ".env" in (REPO_ROOT / ".gitignore").read_text().splitlines()


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
