"""Validations that share a Data Docs folder take turns: concurrent ingest tasks and backfills cannot race
on Great Expectations' file stores. A load in parts keeps every part's result and renders its pages once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from salespulse.generator import DEFAULT_END, generate_crm
from salespulse.ingest import coerce_types
from salespulse.model import get_entity
from salespulse.quality import DataDocs, GateResult, docs_lock, validate_batch

PARAMETERS = {
    "as_of": pd.Timestamp(DEFAULT_END) + pd.Timedelta(days=1),
    "fresh_after": pd.Timestamp(DEFAULT_END) - pd.Timedelta(days=30),
}


def _products() -> pd.DataFrame:
    typed, _ = coerce_types(generate_crm(n_customers=30, seed=1)["products"], get_entity("products"))
    return typed


def test_a_validation_waits_while_another_holds_the_docs_folder(tmp_path: Path) -> None:
    docs = tmp_path / "gx"
    results: list[GateResult] = []
    worker = threading.Thread(
        target=lambda: results.append(validate_batch("products", _products(), PARAMETERS, docs_root=docs))
    )
    with docs_lock(docs):
        worker.start()
        time.sleep(1.5)
        assert worker.is_alive() and results == []  # blocked on the lock, not running beside it
    worker.join(timeout=120)
    assert not worker.is_alive() and len(results) == 1
    assert results[0].data_docs and Path(results[0].data_docs.removeprefix("file://")).exists()


PROCESS = """
import sys
sys.path.insert(0, {tests!r})
from test_quality_lock import PARAMETERS, _products
from salespulse.quality import validate_batch
frame = _products()
for _ in range(4):
    validate_batch("products", frame, PARAMETERS, docs_root={docs!r})
print("ok")
"""


def test_two_processes_validating_into_one_folder_both_succeed(tmp_path: Path) -> None:
    """The race the lock removes: two workers, each validating four batches into the same folder."""
    code = PROCESS.format(tests=str(Path(__file__).parent), docs=str(tmp_path / "gx"))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outcomes = [worker.communicate(timeout=300) for worker in workers]
    for worker, (out, err) in zip(workers, outcomes, strict=True):
        assert worker.returncode == 0 and out.strip().endswith("ok"), err[-3000:]
    validations = list((tmp_path / "gx" / "gx" / "uncommitted" / "validations").rglob("*.json"))
    assert len(validations) == 8


def _pages(docs: Path) -> list[Path]:
    return sorted((docs / "gx" / "uncommitted" / "data_docs").rglob("validations/**/*.html"))


def test_a_load_in_parts_renders_every_parts_page_once_at_its_last_part(tmp_path: Path) -> None:
    docs = DataDocs(tmp_path / "gx")
    frame = _products()
    for part in range(2):
        gate = validate_batch("products", frame, PARAMETERS, docs_root=docs, render_docs=False)
        assert gate.data_docs is None and len(docs.unrendered) == part + 1
    assert _pages(docs.root) == []
    last = validate_batch("products", frame, PARAMETERS, docs_root=docs, render_docs=True)
    assert last.data_docs and docs.unrendered == []
    assert len(_pages(docs.root)) == 3
    assert len(list((docs.root / "gx" / "uncommitted" / "validations").rglob("*.json"))) == 3


def test_a_part_that_stops_the_load_renders_its_pages_at_once(tmp_path: Path) -> None:
    """The alert about a stopped load links to Data Docs; the page must be there, last part or not."""
    crm = generate_crm(n_customers=30, seed=1)
    orders, _ = coerce_types(crm["orders"], get_entity("orders"))
    known = {"known_customer_ids": set(crm["customers"]["customer_id"])}
    docs = DataDocs(tmp_path / "gx")
    validate_batch("orders", orders, PARAMETERS, docs_root=docs, render_docs=False, references=known)
    # None of these customers is known: far more than 5% of the orders, so the batch is broken.
    unknown = {"known_customer_ids": set()}
    stopped = validate_batch(
        "orders", orders, PARAMETERS, docs_root=docs, render_docs=False, references=unknown
    )
    assert not stopped.passed
    assert stopped.data_docs and docs.unrendered == []
    assert len(_pages(docs.root)) == 2


def test_a_load_in_parts_that_fails_after_validating_still_renders_those_parts(
    small_exports: Path, duckdb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Part 2 is validated, then its write fails: the error is the write's, and the pages of both validated
    parts are there (the next load would not render them: it knows only its own parts)."""
    from salespulse import ingest
    from salespulse.schema import create_schema
    from salespulse.sources import FileSource
    from salespulse.warehouse import get_engine

    engine = get_engine(duckdb_url)
    create_schema(engine)
    source, docs = FileSource(small_exports), tmp_path / "gx"
    ingest.ingest_from_source(engine, source, "customers", date(2026, 11, 1), "r", docs_root=docs)
    delete_batch = ingest._delete_batch

    def fail_at_part_two(conn, entity, as_of, batch):  # type: ignore[no-untyped-def]
        if batch.part == 2:
            raise ConnectionError("the warehouse went away")
        delete_batch(conn, entity, as_of, batch)

    monkeypatch.setattr(ingest, "_delete_batch", fail_at_part_two)
    before = len(_pages(docs))
    with pytest.raises(ConnectionError, match="went away"):
        ingest.ingest_from_source(
            engine, source, "orders", date(2026, 11, 1), "r", docs_root=docs, max_batch_rows=700
        )
    assert len(_pages(docs)) == before + 2
    engine.dispose()
