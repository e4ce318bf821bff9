"""kill -9 in the middle of a load cut into parts, at several points, the first time and on a re-run of the
same date: after every kill each core row's batch still has its audit row and its raw rows, and a run
after the kill leaves the warehouse as a load that was never killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from salespulse.generator import generate_crm
from salespulse.schema import create_schema
from salespulse.warehouse import get_engine, read_frame

LOAD = """
import logging, sys
from datetime import date
from pathlib import Path
from salespulse.ingest import ingest_from_source
from salespulse.sources import FileSource
from salespulse.warehouse import get_engine

class Parts(logging.Handler):
    def emit(self, record):
        if record.getMessage().startswith("loaded "):
            print("part committed", flush=True)

logging.getLogger("salespulse.ingest").addHandler(Parts())
logging.getLogger("salespulse.ingest").setLevel(logging.INFO)
engine = get_engine(sys.argv[1])
source = FileSource(Path(sys.argv[2]))
result = ingest_from_source(engine, source, "customers", date(2026, 11, 1), sys.argv[3], max_batch_rows=250)
print("done", result.rows_read, result.rows_loaded, flush=True)
"""


def _load(url: str, exports: Path, run_id: str, kill_after: int | None) -> int:
    """Load the customers in parts of 250 rows; with ``kill_after``, SIGKILL the process as soon as that
    many parts have committed (it may be inside the next part's transaction by then)."""
    child = subprocess.Popen(
        [sys.executable, "-c", LOAD, url, str(exports), run_id], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    committed = 0
    for line in child.stdout:
        committed += line.startswith("part committed")
        if kill_after is not None and committed >= kill_after:
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait(timeout=300)
    return committed


def _lineage(url: str) -> dict[str, int]:
    """Core rows whose batch has no audit row, or no raw rows; and the core row count."""
    engine = get_engine(url)
    core = read_frame(engine, "select _batch_id, count(*) as n from core.dim_customer group by 1")
    audit = set(read_frame(engine, "select batch_id from audit.load_batches")["batch_id"])
    raw = set(read_frame(engine, "select distinct _batch_id from raw.customers")["_batch_id"])
    engine.dispose()
    return {
        "without_audit": int(core.loc[~core["_batch_id"].isin(audit), "n"].sum()),
        "without_raw": int(core.loc[~core["_batch_id"].isin(raw), "n"].sum()),
        "core_rows": int(core["n"].sum()),
    }


@pytest.mark.chain
def test_every_core_row_keeps_its_lineage_at_every_kill_point(tmp_path: Path, warehouse_url: str) -> None:
    generate_crm(n_customers=1000, seed=13, defect_rate=0).write_exports(tmp_path / "x", ("parquet",))
    engine = get_engine(warehouse_url)
    create_schema(engine)
    engine.dispose()

    states = []
    for run, kill_after in (("first", 1), ("first-again", 2), ("rerun", 1), ("rerun-again", 3)):
        committed = _load(warehouse_url, tmp_path / "x", run, kill_after)
        lineage = _lineage(warehouse_url)
        states.append((run, committed, lineage))
        assert lineage["without_audit"] == 0 and lineage["without_raw"] == 0, states

    assert _load(warehouse_url, tmp_path / "x", "complete", None) >= 4
    final = _lineage(warehouse_url)
    engine = get_engine(warehouse_url)
    audit = read_frame(engine, "select * from audit.load_batches")
    engine.dispose()
    assert final == {"without_audit": 0, "without_raw": 0, "core_rows": 1000}
    # One audit row per part of the last run, and they add up to what was read.
    assert audit["batch_id"].str.startswith("customers@2026-11-01#").all()
    assert int(audit["rows_read"].sum()) == 1000 == int(audit["rows_loaded"].sum())
