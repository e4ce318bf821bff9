"""kill -9 in the middle of a load cut into parts, at several points, the first time and on a re-run of the
same date: between parts, and inside a part's transaction just before the core merge, just after the merge
statement and after the audit row, before the commit. After every kill each core row's batch still has its
audit row and its raw rows, and a run after the kill leaves the warehouse as a load that was never killed."""

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
import logging, os, signal, sys
from datetime import date
from pathlib import Path
import salespulse.ingest as ingest
from salespulse.ingest import ingest_from_source
from salespulse.sources import FileSource
from salespulse.warehouse import get_engine

class Parts(logging.Handler):
    def emit(self, record):
        if record.getMessage().startswith("loaded "):
            print("part committed", flush=True)

logging.getLogger("salespulse.ingest").addHandler(Parts())
logging.getLogger("salespulse.ingest").setLevel(logging.INFO)

# Inside the transaction: "<when>:<file or table>:<n>" kills this process at the n-th time the merge runs
# or the table is written, before or after; nothing has been committed for that part yet.
when, target, nth = (sys.argv[4].split(":") + ["", "", "0"])[:3] if len(sys.argv) > 4 else ("", "", "0")
calls = {"n": 0}

def killing(function, name_of):
    def wrapped(conn, *args, **kwargs):
        hit = name_of(*args) == target and when in ("before", "after")
        calls["n"] += hit
        if hit and calls["n"] == int(nth) and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        out = function(conn, *args, **kwargs)
        if hit and calls["n"] == int(nth) and when == "after":
            conn.exec_driver_sql("select 1")  # the statement ran; the part's transaction is still open
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    return wrapped

ingest.run_sql_file = killing(ingest.run_sql_file, lambda path, *rest: path)
ingest.bulk_insert = killing(ingest.bulk_insert, lambda schema, table, *rest: f"{schema}.{table}")
engine = get_engine(sys.argv[1])
source = FileSource(Path(sys.argv[2]))
result = ingest_from_source(engine, source, "customers", date(2026, 11, 1), sys.argv[3], max_batch_rows=250)
print("done", result.rows_read, result.rows_loaded, flush=True)
"""


def _load(url: str, exports: Path, run_id: str, kill_after: int | None, inside: str = "") -> int:
    """Load the customers in parts of 250 rows; with ``kill_after``, SIGKILL the process as soon as that
    many parts have committed (it may be inside the next part's transaction by then); with ``inside``
    (``before|after:<sql file or schema.table>:<n>``) the process kills itself at that point of a part's
    transaction."""
    child = subprocess.Popen(
        [sys.executable, "-c", LOAD, url, str(exports), run_id, inside], stdout=subprocess.PIPE, text=True
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
    kills = (
        ("first", 1, ""),
        ("first-in-merge", None, "after:core/merge_entity.sql:2"),
        ("first-again", 2, ""),
        ("rerun", 1, ""),
        ("rerun-before-merge", None, "before:core/merge_entity.sql:1"),
        ("rerun-after-audit", None, "after:audit.load_batches:3"),
        ("rerun-again", 3, ""),
    )
    for run, kill_after, inside in kills:
        committed = _load(warehouse_url, tmp_path / "x", run, kill_after, inside)
        lineage = _lineage(warehouse_url)
        states.append((run, committed, lineage))
        assert lineage["without_audit"] == 0 and lineage["without_raw"] == 0, states
        if inside:  # the kill came from inside: the parts before it committed, the one it was in did not
            assert committed == int(inside.rsplit(":", 1)[1]) - 1, states

    assert _load(warehouse_url, tmp_path / "x", "complete", None) >= 4
    final = _lineage(warehouse_url)
    engine = get_engine(warehouse_url)
    audit = read_frame(engine, "select * from audit.load_batches")
    engine.dispose()
    assert final == {"without_audit": 0, "without_raw": 0, "core_rows": 1000}
    # One audit row per part of the last run, and they add up to what was read.
    assert audit["batch_id"].str.startswith("customers@2026-11-01#").all()
    assert int(audit["rows_read"].sum()) == 1000 == int(audit["rows_loaded"].sum())
