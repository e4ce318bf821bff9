"""Alerts reach people: a real SMTP server and a real HTTP receiver on loopback, fed by the real ingest DAG.

Bad inputs tried here: negative unit prices on a few order lines (rows quarantined, run goes on), and a
third of all orders pointing at customers that do not exist (the load stops, nothing downstream updates).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from aiosmtpd.controller import Controller

from salespulse.alerts import quality_alert
from salespulse.generator import CrmDataset, generate_crm

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[_Mailbox, int]]:
    with socket.socket() as probe:  # the controller checks its own port, so it needs a real one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailbox = _Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


@pytest.fixture
def http_receiver() -> Iterator[tuple[list[tuple[str, dict]], int]]:
    received: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body.decode("utf-8"))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def alert_channels(smtp_server, http_receiver, monkeypatch: pytest.MonkeyPatch):
    mailbox, smtp_port = smtp_server
    received, http_port = http_receiver
    monkeypatch.setenv(
        "AIRFLOW_CONN_SALESPULSE_SMTP",
        f"smtp://127.0.0.1:{smtp_port}?from_email=salespulse%40example.com&to=data-team%40example.com"
        "&disable_tls=true&disable_ssl=true",
    )
    monkeypatch.setenv("AIRFLOW_CONN_SALESPULSE_WEBHOOK", f"http://127.0.0.1:{http_port}/webhook")
    monkeypatch.setenv("AIRFLOW_CONN_SALESPULSE_SLACK", f"http://127.0.0.1:{http_port}/slack")
    return mailbox, received


def _exports(dataset: CrmDataset, folder: Path) -> Path:
    dataset.write_exports(folder, formats=("parquet",))
    return folder


def _run_ingest(warehouse_url: str, exports: Path, monkeypatch: pytest.MonkeyPatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("SALESPULSE_EXPORT_DIR", str(exports))
    monkeypatch.setenv("SALESPULSE_DATA_DIR", str(exports.parent / "data"))
    dag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).dags["ingest_crm"]
    return dag.test(logical_date=AS_OF, run_conf={"as_of": AS_OF.date().isoformat()})


def _asset_events(run_id: str) -> int:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(
            select(func.count()).select_from(AssetEvent).where(AssetEvent.source_run_id == run_id)
        )


def test_the_message_names_run_entity_rules_observed_and_expected() -> None:
    alert = quality_alert(
        dag_id="ingest_crm",
        run_id="manual__1",
        entity="orders",
        as_of="2026-11-01",
        failures=[
            {"rule": "order_date_not_in_future", "severity": "critical", "column": "order_date",
             "unexpected_count": 3, "unexpected_percent": 0.5, "observed": "0.5000% unexpected",
             "expected": "max_value=2026-11-01T00:00:00", "action": "rows quarantined"},
            {"rule": "email_format", "severity": "warning", "column": "email", "unexpected_count": 7,
             "unexpected_percent": 1.0, "observed": "1.0000% unexpected", "expected": "regex=...",
             "action": "recorded"},
        ],
        rows={"read": 600, "loaded": 597, "quarantined": 3},
        data_docs="file:///tmp/docs/index.html",
    )  # fmt: skip
    assert alert.subject.startswith(
        "[SalesPulse] data quality: orders as of 2026-11-01: 2 check(s) failed (1 critical)"
    )
    needles = [
        "DAG: ingest_crm",
        "Run: manual__1",
        "quarantined 3",
        "order_date_not_in_future on order_date",
        "expected max_value=2026-11-01",
        "3 rows (0.50%)",
        "[warning] email_format",
        "Data Docs: file:///tmp/docs/index.html",
    ]
    for needle in needles:
        assert needle in alert.text, needle
    assert alert.payload["load_stopped"] is False
    assert len(alert.payload["failures"]) == 2


@pytest.mark.airflow
def test_one_readable_message_per_failed_validation_on_every_channel(
    airflow_db, alert_channels, duckdb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailbox, received = alert_channels
    dataset = generate_crm(300, seed=21, defect_rate=0)
    lines = dataset["order_lines"]
    lines.loc[lines.index[:4], "unit_price"] = -5.0
    dag_run = _run_ingest(duckdb_url, _exports(dataset, tmp_path / "exports"), monkeypatch)

    assert str(getattr(dag_run.state, "value", dag_run.state)) == "success"
    assert _asset_events(dag_run.run_id) >= 1  # the good run updates crm_core
    assert len(mailbox.messages) == 1
    email = mailbox.messages[0]
    assert email["To"] == "data-team@example.com"
    assert "order_lines" in email["Subject"] and "1 critical" in email["Subject"]
    body = (
        email.get_payload(decode=True)
        if not email.is_multipart()
        else email.get_payload()[0].get_payload(decode=True)
    )
    text = body.decode("utf-8")
    assert "unit_price_not_negative on unit_price" in text and "quarantined 4" in text
    assert dag_run.run_id in text
    docs = text.split("Data Docs: ", 1)[1].split("<")[0].strip()
    assert docs.startswith("file://") and docs.endswith("index.html")
    index = Path(docs.removeprefix("file://"))
    assert index.is_relative_to(tmp_path) and index.exists()
    assert "salespulse.order_lines" in index.read_text(encoding="utf-8")

    by_path = dict(received)
    assert [path for path, _ in received].count("/webhook") == 1
    assert [path for path, _ in received].count("/slack") == 1
    webhook = by_path["/webhook"]
    assert webhook["entity"] == "order_lines" and webhook["rows"]["quarantined"] == 4
    assert webhook["failures"][0]["rule"] == "unit_price_not_negative"
    assert webhook["failures"][0]["unexpected_count"] == 4
    assert "unit_price_not_negative" in by_path["/slack"]["text"]


@pytest.mark.airflow
def test_a_critical_failure_stops_the_load_alerts_once_and_updates_no_asset(
    airflow_db, alert_channels, duckdb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailbox, received = alert_channels
    dataset = generate_crm(300, seed=22, defect_rate=0)
    orders = dataset["orders"]
    broken = np.arange(0, len(orders), 3)
    orders.loc[orders.index[broken], "customer_id"] = "X-UNKNOWN"
    dag_run = _run_ingest(duckdb_url, _exports(dataset, tmp_path / "exports"), monkeypatch)

    assert str(getattr(dag_run.state, "value", dag_run.state)) == "failed"
    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}
    assert states["ingest_orders"] == "failed"
    assert states["publish_core"] == "upstream_failed"
    assert states["ingest_customers"] == "success"
    assert _asset_events(dag_run.run_id) == 0  # crm_core not updated: customer_segments is not triggered

    assert len(mailbox.messages) == 1  # one alert, not one per retry or per row
    assert "orders" in mailbox.messages[0]["Subject"] and "load stopped" in mailbox.messages[0]["Subject"]
    webhook = [payload for path, payload in received if path == "/webhook"]
    assert len(webhook) == 1 and webhook[0]["load_stopped"] is True
    stopped = [f for f in webhook[0]["failures"] if f["action"] == "load stopped"]
    assert [f["rule"] for f in stopped] == ["order_customer_known"]
    assert "mostly=0.95" in stopped[0]["expected"]


@pytest.mark.airflow
def test_churn_warnings_reach_the_webhook_once_per_run(
    airflow_db, alert_channels, duckdb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    mailbox, received = alert_channels
    dataset = generate_crm(600, seed=23, defect_rate=0)
    _run_ingest(duckdb_url, _exports(dataset, tmp_path / "exports"), monkeypatch)
    dag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).dags["customer_segments"]
    # The first snapshot has nothing to compare with, so it warns of nobody; the next one does.
    earlier = AS_OF - timedelta(days=61)
    dag.test(logical_date=earlier, run_conf={"as_of": earlier.date().isoformat()})
    assert not [p for _, p in received if p.get("kind") == "churn_warning"]
    received.clear()
    mailbox.messages.clear()
    dag_run = dag.test(logical_date=AS_OF, run_conf={"as_of": AS_OF.date().isoformat()})

    assert str(getattr(dag_run.state, "value", dag_run.state)) == "success"
    churn = [
        payload for path, payload in received if path == "/webhook" and payload["kind"] == "churn_warning"
    ]
    assert len(churn) == 1 and len(mailbox.messages) == 1
    assert churn[0]["total"] >= 1
    assert all(w["value_tier"] == "high" and w["churn_probability"] >= 0.5 for w in churn[0]["warnings"])
    assert "churn warning" in mailbox.messages[0]["Subject"]


@pytest.mark.airflow
def test_a_new_source_column_is_announced_once(
    airflow_db, alert_channels, duckdb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailbox, received = alert_channels
    dataset = generate_crm(300, seed=23, defect_rate=0)
    dataset.tables["products"] = dataset["products"].assign(supplier_region="华东")
    dag_run = _run_ingest(duckdb_url, _exports(dataset, tmp_path / "exports"), monkeypatch)

    assert str(getattr(dag_run.state, "value", dag_run.state)) == "success"
    drift = [
        payload for path, payload in received if path == "/webhook" and payload["kind"] == "schema_drift"
    ]
    assert len(drift) == 1
    assert drift[0]["entity"] == "products" and drift[0]["new_columns"] == ["supplier_region"]
    subjects = [m["Subject"] for m in mailbox.messages if "schema drift" in m["Subject"]]
    assert subjects == [f"[SalesPulse] schema drift: products as of {AS_OF.date()}: 1 new source column(s)"]


@pytest.mark.airflow
def test_flagged_variances_reach_every_channel_in_one_summary_per_run(
    airflow_db, alert_channels, duckdb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variance_report DAG on June 2026 of the hand-worked example (tests/test_variance.py): four flagged
    comparisons (each series' target missed at both leads), one message per channel naming them and the
    report."""
    from airflow.dag_processing.dagbag import DagBag

    from salespulse.schema import create_schema
    from salespulse.warehouse import bulk_insert, get_engine
    from tests.test_variance import EMEA, _load_core, _snapshot_rows

    mailbox, received = alert_channels
    engine = get_engine(duckdb_url)
    create_schema(engine)
    _load_core(engine, EMEA)
    with engine.begin() as conn:
        bulk_insert(conn, "marts", "forecast_snapshot", _snapshot_rows(["region:EMEA", "sales_owner:王芳"]))
    engine.dispose()
    monkeypatch.setenv("WAREHOUSE_URL", duckdb_url)
    monkeypatch.setenv("SALESPULSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SALESPULSE_VARIANCE_WINDOW", "4")
    dag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).dags["variance_report"]
    dag_run = dag.test(logical_date=datetime(2026, 7, 1, 6, tzinfo=UTC), run_conf={"as_of": "2026-07-01"})

    assert str(getattr(dag_run.state, "value", dag_run.state)) == "success"
    webhook = [payload for path, payload in received if path == "/webhook"]
    slack = [payload for path, payload in received if path == "/slack"]
    assert len(webhook) == 1 and len(slack) == 1 and len(mailbox.messages) == 1
    alert = webhook[0]
    assert alert["kind"] == "variance" and alert["period"] == "2026-06-01"
    assert alert["total"] == 4 and alert["facts"] == 4
    assert alert["flags"] == {"forecast": 0, "interval": 0, "tracking_signal": 0, "target": 4}
    assert {row["series_id"] for row in alert["flagged"]} == {"region:EMEA", "sales_owner:王芳"}
    assert alert["report"].endswith("reports/2026-06/index.html") and Path(alert["report"]).exists()
    assert "sales_owner:王芳" in slack[0]["text"]
    assert mailbox.messages[0]["Subject"].startswith("[SalesPulse] variance 2026-06-01: 4 of 4")
