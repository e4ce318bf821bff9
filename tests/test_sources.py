"""The three source kinds behind one interface, each against the real thing: files on disk, a PostgreSQL
database, and an HTTP API on loopback that injects faults. Each must land what the export files land."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import requests
from sqlalchemy import Engine

from salespulse.config import Settings
from salespulse.crm_api import CrmApiServer
from salespulse.generator import CrmDataset
from salespulse.ingest import ingest_from_source
from salespulse.model import ENTITIES, get_entity
from salespulse.schema import create_schema
from salespulse.sources import (
    ApiError,
    ApiSource,
    FileSource,
    PermanentSourceError,
    RetryPolicy,
    Source,
    SqlSource,
    Window,
    api_source_from_uri,
    normalize_header,
    parse_retry_after,
    source_from_settings,
)
from salespulse.warehouse import get_engine, read_frame
from tests.helpers import extract_frame, ingest_all

AS_OF = date(2026, 11, 1)
FAST = RetryPolicy(max_retries=8, backoff=0.01, max_wait=0.2)


def _engine(url: str) -> Engine:
    engine = get_engine(url)
    create_schema(engine)
    return engine


def core_checksum(engine: Engine) -> dict[str, tuple[int, int]]:
    """Row count and a content hash of every core table, independent of run ids and load times."""
    out = {}
    for entity in ENTITIES:
        frame = read_frame(engine, f"select {', '.join(entity.column_names)} from core.{entity.core_table}")
        frame = frame.sort_values(list(entity.key)).reset_index(drop=True)
        for column in frame.columns:  # the same instant reads back as a date or a timestamp per engine
            if column.endswith(("_at", "_date", "_start")):
                frame[column] = pd.to_datetime(frame[column]).dt.strftime("%Y-%m-%d %H:%M:%S.%f")
        out[entity.name] = (len(frame), int(pd.util.hash_pandas_object(frame.astype(str), index=False).sum()))
    return out


@pytest.fixture(scope="module")
def file_load_checksum(small_exports: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    engine = _engine(f"duckdb:///{tmp_path_factory.mktemp('reference') / 'w.duckdb'}")
    ingest_all(engine, FileSource(small_exports), AS_OF, "reference")
    return core_checksum(engine)


# --- files ------------------------------------------------------------------------------------------


def test_csv_variants_read_the_same_rows(small_crm: CrmDataset, tmp_path: Path) -> None:
    """Semicolons, gzip, a BOM, loose headers and a folder of daily drops all read as the model's columns."""
    customers = small_crm["customers"]
    loose = customers.rename(columns={"customer_id": " Customer ID", "customer_name": "Customer-Name"})
    (tmp_path / "semicolon").mkdir()
    with gzip.open(tmp_path / "semicolon" / "customers.csv.gz", "wt", encoding="utf-8-sig") as handle:
        loose.to_csv(handle, index=False, sep=";")
    drops = tmp_path / "drops" / "customers"
    drops.mkdir(parents=True)
    half = len(customers) // 2
    customers.iloc[:half].to_csv(drops / "2026-10-01.csv", index=False)
    customers.iloc[half:].to_csv(drops / "2026-10-02.csv", index=False)

    window = Window(until=pd.Timestamp("2100-01-01"))
    entity = get_entity("customers")
    for folder in (tmp_path / "semicolon", tmp_path / "drops"):
        frame = extract_frame(FileSource(folder), entity, window)
        assert list(frame.columns) == entity.column_names, folder
        assert len(frame) == len(customers), folder
        assert sorted(frame["customer_name"].dropna()) == sorted(customers["customer_name"].dropna())
    assert frame["customer_name"].str.contains(r"[\u4e00-\u9fff]").any()  # Chinese names survive


def test_the_window_keeps_rows_whose_updated_at_cannot_be_read(tmp_path: Path) -> None:
    pd.DataFrame(
        {"product_id": ["P1", "P2", "P3", "P4"], "updated_at": ["2026-01-05", "2026-02-05", "garbage", ""]}
    ).to_csv(tmp_path / "products.csv", index=False)
    window = Window(after=pd.Timestamp("2026-02-01"), until=pd.Timestamp("2026-03-01"))
    frame = extract_frame(FileSource(tmp_path), get_entity("products"), window)
    assert sorted(frame["product_id"]) == ["P2", "P3", "P4"]


def test_normalize_header() -> None:
    assert normalize_header("\ufeff Customer ID ") == "customer_id"
    assert normalize_header("customer-name") == "customer_name"
    assert normalize_header("customerId") == normalize_header("CustomerID") == "customer_id"
    assert normalize_header("updated_at") == "updated_at"


def test_a_new_source_column_is_kept_in_raw_and_reported(small_exports: Path, tmp_path: Path, duckdb_url):
    engine = _engine(duckdb_url)
    products = pd.read_parquet(small_exports / "products.parquet").assign(Supplier_Region="华东")
    products.to_parquet(tmp_path / "products.parquet")
    result = ingest_from_source(engine, FileSource(tmp_path), "products", AS_OF, "r1")
    assert result.extra_columns == ("supplier_region",)
    audit = read_frame(engine, "select extra_columns from audit.load_batches")
    assert audit["extra_columns"].tolist() == ["supplier_region"]
    extra = read_frame(engine, "select _extra from raw.products")["_extra"].map(json.loads)
    assert len(extra) == len(products) and (extra.map(lambda e: e["supplier_region"]) == "华东").all()
    # Reported as new once: the next batch still keeps it, but does not announce it again.
    assert result.new_columns == ("supplier_region",)
    later = ingest_from_source(engine, FileSource(tmp_path), "products", date(2026, 12, 1), "r2")
    assert (later.extra_columns, later.new_columns) == (("supplier_region",), ())


# --- a CRM database ---------------------------------------------------------------------------------


def test_a_crm_database_loads_like_the_export_files(
    small_crm: CrmDataset, postgres_url: str, warehouse_url: str, file_load_checksum: dict
) -> None:
    """The generator fills a source schema in a real PostgreSQL; the warehouse is DuckDB, then PostgreSQL."""
    source_engine = get_engine(postgres_url)
    small_crm.write_to_database(source_engine, schema="crm")
    source_engine.dispose()
    source = SqlSource(postgres_url, schema="crm", chunk_rows=700)  # small chunks: several per entity
    assert "postgres@" not in source.description and source.description.startswith("sql:")
    warehouse = _engine(warehouse_url)
    results = ingest_all(warehouse, source, AS_OF, "from-db")
    assert all(r.rows_read == r.rows_loaded + r.rows_quarantined + r.rows_duplicate for r in results)
    assert core_checksum(warehouse) == file_load_checksum


# --- a CRM REST API ---------------------------------------------------------------------------------


@pytest.fixture
def api(small_crm: CrmDataset):
    with CrmApiServer(small_crm.tables, token="s3cret", retry_after=0.05, slow_seconds=1.0) as server:
        yield server


@pytest.mark.parametrize("pagination", ["cursor", "page"])
def test_an_api_load_completes_through_injected_faults(
    api: CrmApiServer, pagination: str, warehouse_url: str, file_load_checksum: dict
) -> None:
    faults = ["429", "500", "timeout", "503", "drop", "502", "429"]
    api.set_faults(faults)
    source = ApiSource(api.url, token="s3cret", page_size=150, pagination=pagination, timeout=0.4, retry=FAST)
    warehouse = _engine(warehouse_url)
    results = ingest_all(warehouse, source, AS_OF, "from-api")
    assert api.stats["faults"] == len(faults)
    assert source.retries_done >= len(faults)  # more only if a slow machine timed out a healthy page
    assert core_checksum(warehouse) == file_load_checksum
    assert all(r.rows_read == r.rows_loaded + r.rows_quarantined + r.rows_duplicate for r in results)
    names = read_frame(warehouse, "select customer_name from core.dim_customer")["customer_name"]
    assert names.str.contains(r"[\u4e00-\u9fff]").any()


@pytest.mark.parametrize(("fault", "message"), [("404", "HTTP 404"), ("401", "HTTP 401")])
def test_a_permanent_client_error_fails_at_once_with_its_status(
    api: CrmApiServer, fault: str, message: str
) -> None:
    api.set_faults([fault])
    source = ApiSource(api.url, token="s3cret", retry=FAST)
    with pytest.raises(PermanentSourceError, match=f"failed for good with {message}"):
        extract_frame(source, get_entity("customers"), Window(until=pd.Timestamp(AS_OF)))
    assert api.stats["requests"] == 1  # no retry


def test_a_wrong_token_is_refused(api: CrmApiServer) -> None:
    source = ApiSource(api.url, token="wrong", retry=FAST)
    with pytest.raises(PermanentSourceError, match="HTTP 401.*bearer token"):
        extract_frame(source, get_entity("customers"), Window(until=pd.Timestamp(AS_OF)))


def test_retries_are_bounded(api: CrmApiServer) -> None:
    api.set_faults(["503"] * 10)
    source = ApiSource(api.url, token="s3cret", retry=RetryPolicy(max_retries=2, backoff=0.01))
    with pytest.raises(ApiError, match="still failing after 2 retries: HTTP 503") as failure:
        extract_frame(source, get_entity("customers"), Window(until=pd.Timestamp(AS_OF)))
    assert not isinstance(failure.value, PermanentSourceError)  # Airflow's task retries may try again
    assert api.stats["requests"] == 3


def test_retry_after_is_honoured(api: CrmApiServer) -> None:
    waits: list[float] = []
    api.retry_after = 1.0
    api.set_faults(["429"])
    source = ApiSource(api.url, token="s3cret", retry=FAST, sleep=waits.append)
    source.retry = RetryPolicy(max_retries=2, backoff=0.01, max_wait=5.0)
    frame = extract_frame(source, get_entity("products"), Window(until=pd.Timestamp(AS_OF)))
    assert waits == [1.0] and len(frame) > 0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_faults_can_be_set_over_http(api: CrmApiServer) -> None:
    headers = {"Authorization": "Bearer s3cret"}
    reply = requests.post(f"{api.url}/_admin/faults", json=["500", "429"], headers=headers, timeout=5)
    assert reply.json() == {"faults": ["500", "429"]}
    bad = requests.post(f"{api.url}/_admin/faults", json=["explode"], headers=headers, timeout=5)
    assert bad.status_code == 400 and "explode" in bad.json()["error"]


def test_the_api_window_is_applied_by_the_server(api: CrmApiServer, small_crm: CrmDataset) -> None:
    window = Window(after=pd.Timestamp("2026-06-01"), until=pd.Timestamp("2026-07-01"))
    frame = extract_frame(ApiSource(api.url, token="s3cret", page_size=50), get_entity("orders"), window)
    updated = pd.to_datetime(small_crm["orders"]["updated_at"])
    assert len(frame) == ((updated >= window.after) & (updated < window.until)).sum() > 50


# --- configuration ----------------------------------------------------------------------------------


def source_from_env(env: dict[str, str]) -> Source:
    """The source the settings read from ``env`` name: how a worker builds it."""
    return source_from_settings(Settings.from_env(env))


def test_sources_are_configured_from_airflow_connections(tmp_path: Path) -> None:
    api = source_from_env(
        {
            "SALESPULSE_SOURCE": "api",
            # pragma: allowlist nextline secret (a test's fake credential)
            "AIRFLOW_CONN_SALESPULSE_CRM_API": "http://:tok@crm.local:8443/base?page_size=250&scheme=https",
        }
    )
    assert isinstance(api, ApiSource)
    assert (api.base_url, api.token, api.page_size) == ("https://crm.local:8443/base", "tok", 250)
    assert "tok" not in api.description
    # pragma: allowlist nextline secret (a test's fake credential)
    faked = {"AIRFLOW_CONN_SALESPULSE_CRM_API": "http://:tok@crm.local/"}
    assert "tok" not in repr(Settings.from_env(faked))
    database = source_from_env(
        {"SALESPULSE_SOURCE": "sql", "AIRFLOW_CONN_SALESPULSE_CRM_DB": "postgres://u:pw@db:5432/crm"}
    )
    assert isinstance(database, SqlSource) and database.url.startswith("postgresql+psycopg://")
    assert "pw" not in database.description
    files = source_from_env({"SALESPULSE_EXPORT_DIR": str(tmp_path)})
    assert isinstance(files, FileSource) and files.folder == tmp_path
    with pytest.raises(ValueError, match="AIRFLOW_CONN_SALESPULSE_CRM_API"):
        source_from_env({"SALESPULSE_SOURCE": "api"})
    with pytest.raises(ValueError, match="pagination"):
        api_source_from_uri("http://h/?pagination=offset")
    with pytest.raises(ValueError, match="SALESPULSE_SOURCE must be one of"):
        source_from_env({"SALESPULSE_SOURCE": "ftp"})


# --- through Airflow --------------------------------------------------------------------------------


@pytest.mark.airflow
def test_the_ingest_dag_reads_the_api_through_faults_and_stops_on_a_refusal(
    airflow_db: Path, small_crm: CrmDataset, duckdb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real DAG, configured by an Airflow connection URI: transient faults are retried inside the task;
    a 404 fails the task at once (no Airflow retry) and the asset is not updated."""
    import os

    from airflow.dag_processing.dagbag import DagBag

    with CrmApiServer(small_crm.tables, token="dag-token", retry_after=0.05, slow_seconds=1.0) as server:
        host_port = server.url.removeprefix("http://")
        monkeypatch.setenv("SALESPULSE_SOURCE", "api")
        monkeypatch.setenv(
            "AIRFLOW_CONN_SALESPULSE_CRM_API",
            # pragma: allowlist nextline secret (a test's fake credential)
            f"http://:dag-token@{host_port}/?page_size=400&timeout=0.5&backoff=0.01",
        )
        monkeypatch.setenv("WAREHOUSE_URL", duckdb_url)
        monkeypatch.setenv("SALESPULSE_DATA_DIR", str(tmp_path / "data"))
        dag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).dags["ingest_crm"]

        server.set_faults(["429", "503", "timeout", "drop"])
        run = dag.test(logical_date=pd.Timestamp("2026-10-01", tz="UTC"), run_conf={"as_of": "2026-10-01"})
        assert str(getattr(run.state, "value", run.state)) == "success"
        assert server.stats["faults"] == 4
        audit = read_frame(get_engine(duckdb_url), "select entity, source, rows_read from audit.load_batches")
        assert len(audit) == len(ENTITIES) and set(audit["source"]) == {f"api:{server.url}"}

        server.set_faults(["404"])
        run = dag.test(logical_date=pd.Timestamp("2026-11-01", tz="UTC"), run_conf={"as_of": "2026-11-01"})
        states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in run.get_task_instances()}
        assert states["ingest_customers"] == "failed" and states["publish_core"] == "upstream_failed"
        tries = {ti.task_id: ti.try_number for ti in run.get_task_instances()}
        assert tries["ingest_customers"] == 1
