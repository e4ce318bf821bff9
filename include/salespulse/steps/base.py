"""What every step shares: an engine for the step's duration, its record in ``audit.step_runs``,
JSON-friendly values for the summaries that travel as asset events and XCom, and the series levels."""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, text

from salespulse.config import Settings
from salespulse.threads import thread_budget
from salespulse.warehouse import bulk_insert, delete_keys, get_engine, read_sql_file, replace_rows

log = logging.getLogger(__name__)


@contextmanager
def warehouse(settings: Settings) -> Generator[Engine]:
    """An engine for the duration of one step, disposed after so an embedded DuckDB file is released; the
    step runs within the task's thread budget (:mod:`salespulse.threads`), DuckDB's threads included."""
    engine = get_engine(
        settings.warehouse_url, settings.duckdb_memory_limit, settings.duckdb_lock_timeout, settings.threads
    )
    try:
        with thread_budget(settings.threads):
            yield engine
    finally:
        engine.dispose()


def record_step(
    engine: Engine, run_id: str, step: str, as_of: date, rows: int, detail: str, started: datetime
) -> None:
    """One row per (run, step) in ``audit.step_runs``; a re-run replaces it."""
    row = {
        "run_id": run_id,
        "step": step,
        "as_of_date": as_of,
        "rows_written": rows,
        "detail": detail,
        "started_at": started,
        "finished_at": datetime.now(),
    }
    with engine.begin() as conn:
        replace_rows(conn, "audit.step_runs", {"run_id": run_id, "step": step}, pd.DataFrame([row]))


def plain(value: Any) -> Any:
    """A JSON-friendly scalar: no NaN, no numpy types, dates as ISO strings."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp | date):
        return value.isoformat()[:10]
    return value


def plain_records(frame: pd.DataFrame) -> tuple[dict[str, Any], ...]:
    """The rows of ``frame`` as JSON-friendly dicts."""
    return tuple({k: plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records"))


def write_series_levels(conn: Connection, levels: Sequence[str]) -> None:
    """Make ``marts.series_levels`` say ``levels`` (``SALESPULSE_FORECAST_LEVELS``): the levels below the
    total that ``marts.sales_by_level`` splits revenue by. The forecast and variance steps both set it from
    their settings before they read the view."""
    rows = pd.DataFrame(
        [
            {"level": level, "attribute": attribute, "position": position}
            for level in levels
            for position, attribute in enumerate(level.split("*"))
        ],
        columns=["level", "attribute", "position"],
    )
    conn.execute(text("delete from marts.series_levels"))
    bulk_insert(conn, "marts", "series_levels", rows)


def skip_single_member_levels(conn: Connection, run_id: str) -> list[str]:
    """Drop the series of levels with one member (they repeat the total) and say so; returns those levels."""
    single = read_sql_file(conn, "marts/select_single_member_levels.sql")
    levels = single["level"].astype(str).tolist()
    for level, member in single.itertuples(index=False):
        log.info("level %r has one member (%r), whose series is the total's: not forecast", level, member)
    if levels:
        delete_keys(conn, "marts.sales_series", {"run_id": run_id}, "level", levels)
    return levels
