"""The warehouse: engines, SQL files, bulk loads and reads, for DuckDB and PostgreSQL alike.

SQL lives in ``include/sql/<layer>/<verb>_<object>.sql``. Values are always bound parameters;
the few identifiers a template needs (``$core_table``) come from :mod:`salespulse.model` and are
checked against a strict pattern before they are substituted. Creating the schema, its documentation and
its grants is :mod:`salespulse.schema`, built on this module.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Template
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from sqlalchemy import Connection, Engine, TextClause, bindparam, create_engine, event, text
from sqlalchemy.engine import make_url

from salespulse.config import SQL_DIR

log = logging.getLogger(__name__)
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
LAYERS = ("raw", "core", "quality", "audit", "marts", "reporting")
COPY_CHUNK_ROWS = 200_000


def get_engine(
    url: str, memory_limit: str = "1GB", lock_timeout: float = 600.0, threads: int | None = None
) -> Engine:
    """An engine for a SQLAlchemy URL; DuckDB files get their folder created.

    An embedded DuckDB shares the worker's memory, so its buffer pool is capped at ``memory_limit``
    (``SALESPULSE_DUCKDB_MEMORY_LIMIT`` in the settings); past the cap it spills to disk.

    A DuckDB file takes one writing process at a time. Under a scheduler that runs tasks side by side on one
    machine (Airflow's LocalExecutor; the forecast partitions are mapped tasks), a connection waits for
    the process that holds the file, up to ``lock_timeout`` seconds (``SALESPULSE_DUCKDB_LOCK_TIMEOUT``),
    so the tasks take turns instead of failing; past it, the error says which setting to change.

    ``threads`` caps DuckDB's worker threads (the task's thread budget, :mod:`salespulse.threads`);
    None leaves DuckDB's default, one per core.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "duckdb":
        return create_engine(url, future=True)
    if parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True, connect_args={"config": {"memory_limit": memory_limit}})
    event.listen(engine, "do_connect", functools.partial(_connect_when_unlocked, timeout=lock_timeout))
    if threads is not None:
        # Set on each new connection rather than in the connect configuration: DuckDB refuses a second
        # connection to a file that one process holds with a different configuration.
        event.listen(engine, "connect", functools.partial(_set_threads, threads=int(threads)))
    return engine


def _set_threads(dbapi_connection: Any, record: Any, *, threads: int) -> None:
    dbapi_connection.execute(f"set threads = {threads}")


def _connect_when_unlocked(dialect: Any, record: Any, cargs: Any, cparams: Any, *, timeout: float) -> Any:
    """Open a DuckDB connection, waiting (with backoff) while another process holds the file's lock."""
    deadline, pause = time.monotonic() + timeout, 0.1
    while True:
        try:
            return dialect.connect(*cargs, **cparams)
        except duckdb.IOException as error:
            if "lock" not in str(error).lower():
                raise
            if time.monotonic() >= deadline:
                raise WarehouseBusy(
                    f"the DuckDB warehouse {cargs[0] if cargs else ''} stayed locked by another process for "
                    f"{timeout:.0f} s (SALESPULSE_DUCKDB_LOCK_TIMEOUT); tasks that write in parallel need "
                    f"the PostgreSQL warehouse: {str(error).splitlines()[0]}"
                ) from error
            if pause == 0.1:
                log.warning(
                    "the DuckDB warehouse is held by another process; waiting up to %.0f s (PostgreSQL "
                    "lets tasks write side by side)",
                    timeout,
                )
            time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
            pause = min(pause * 2, 5.0)


class WarehouseBusy(RuntimeError):
    """The embedded warehouse stayed locked by another process: transient, so Airflow retries it."""


def dialect_of(conn: Connection | Engine) -> str:
    return conn.dialect.name


def check_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return name


def quote_identifier(name: str) -> str:
    """Any name (a CSV header, an API field, a mapping's column) as a quoted SQL identifier, quotes
    doubled, so a header such as ``a" , (select ...) as "b`` is a column name like any other. The one
    helper for names that come from data; names of our own are checked by :func:`check_identifier`."""
    if not name or "\x00" in name:
        raise ValueError(f"a column name must be non-empty text without NUL characters, got {name!r}")
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: Any) -> str:
    """A SQL literal for the few statements that take no bound parameters (DuckDB table functions, COMMENT,
    macros). Strings are quoted with their single quotes doubled."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def load_sql(relative_path: str, identifiers: Mapping[str, str] | None = None) -> list[str]:
    """Read a SQL file, fill its identifier placeholders, and split it into statements."""
    path = SQL_DIR / relative_path
    sql = path.read_text(encoding="utf-8")
    if identifiers:
        sql = Template(sql).substitute(identifiers)
    return split_statements(sql)


def split_statements(sql: str) -> list[str]:
    """Split on semicolons that end a line; our SQL files keep no semicolons inside literals."""
    without_comments = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", without_comments) if s.strip()]


def _bound(relative_path: str, clause: TextClause, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The values of the parameters ``clause`` names, from ``params``; a missing one is an error naming
    the file (extra values are left out, so one dict can serve several statements)."""
    names = set(clause.compile().params)
    bound = {k: v for k, v in (params or {}).items() if k in names}
    missing = names - bound.keys()
    if missing:
        raise KeyError(f"{relative_path}: no value for parameter(s) {sorted(missing)}")
    return bound


def run_sql_file(
    conn: Connection,
    relative_path: str,
    params: Mapping[str, Any] | None = None,
    identifiers: Mapping[str, str] | None = None,
) -> int:
    """Run every statement of a SQL file; returns the rows affected by the last one."""
    rowcount = 0
    for statement in load_sql(relative_path, identifiers):
        clause = text(statement)
        result = conn.execute(clause, _bound(relative_path, clause, params))
        rowcount = result.rowcount if result.rowcount is not None else 0
    return rowcount


def bulk_insert(conn: Connection, schema: str, table: str, frame: pd.DataFrame) -> int:
    """Append a DataFrame to ``schema.table`` with the engine's fast path, inside the caller's transaction.

    DuckDB scans an Arrow table in place. PostgreSQL receives COPY in CSV that Arrow's C++ writer
    produces, chunk by chunk: about 2.7x the rows/s of pandas' own CSV writer (``make bench``), and
    it writes whole-number floats as integers, so a nullable integer column loads into ``bigint``.
    Null is an empty field, an empty string is ``""``: the two stay apart.
    """
    if frame.empty:
        return 0
    qualified = f"{check_identifier(schema)}.{check_identifier(table)}"
    columns = ", ".join(check_identifier(c) for c in frame.columns)
    driver = conn.connection.driver_connection
    arrow_frame = pa.Table.from_pandas(frame, preserve_index=False)
    if dialect_of(conn) == "duckdb":
        view_name = f"_salespulse_load_{table}"
        driver.register(view_name, arrow_frame)  # type: ignore[union-attr]
        try:
            driver.execute(  # type: ignore[union-attr]
                f"insert into {qualified} ({columns}) select {columns} from {view_name}"
            )
        finally:
            driver.unregister(view_name)  # type: ignore[union-attr]
    elif dialect_of(conn) == "postgresql":
        options = pa_csv.WriteOptions(include_header=False)
        copy_sql = f"copy {qualified} ({columns}) from stdin with (format csv)"
        with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:  # type: ignore[union-attr]
            for batch in arrow_frame.to_batches(max_chunksize=COPY_CHUNK_ROWS):
                buffer = io.BytesIO()
                pa_csv.write_csv(batch, buffer, write_options=options)
                copy.write(buffer.getbuffer())
    else:
        frame.to_sql(table, conn, schema=schema, if_exists="append", index=False, method="multi")
    return len(frame)


def read_frame(conn: Connection | Engine, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Run one query with bound parameters and return a DataFrame."""
    statement = sql
    if isinstance(conn, Engine):
        with conn.connect() as connection:
            return pd.read_sql(text(statement), connection, params=dict(params or {}))
    return pd.read_sql(text(statement), conn, params=dict(params or {}))


def read_sql_file(
    conn: Connection | Engine, relative_path: str, params: Mapping[str, Any] | None = None, bulk: bool = False
) -> pd.DataFrame:
    """The rows of the one query in a SQL file, with bound parameters (only the ones it names).

    ``bulk``: a large result (millions of rows). On DuckDB it comes as columns straight from DuckDB's own
    result (dates as datetime64, text as pandas strings), not row by row through SQLAlchemy: the segments
    step's 12.4M order lines at a million customers took 26.7 s through ``pd.read_sql`` and 7.5 s so."""
    (statement,) = load_sql(relative_path)
    bound = _bound(relative_path, text(statement), params)
    if not bulk:
        return read_frame(conn, statement, bound)
    if isinstance(conn, Engine):
        with conn.connect() as connection:
            return _read_bulk(connection, statement, bound)
    return _read_bulk(conn, statement, bound)


def _read_bulk(conn: Connection, statement: str, params: Mapping[str, Any]) -> pd.DataFrame:
    if conn.dialect.name != "duckdb":
        return read_frame(conn, statement, params)
    compiled = text(statement).bindparams(**params).compile(dialect=conn.dialect)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(compiled.string, [compiled.params[name] for name in compiled.positiontup or ()])
    return cursor.df()


def replace_rows(
    conn: Connection, table: str, where: Mapping[str, Any], frame: pd.DataFrame | None = None
) -> int:
    """Delete the rows of ``schema.table`` that match ``where`` (column = value, all of them) and append
    ``frame`` in their place, in the caller's transaction: how a step re-run replaces its own rows."""
    schema, name = (check_identifier(part) for part in table.split("."))
    condition = " and ".join(f"{check_identifier(column)} = :{column}" for column in where)
    conn.execute(text(f"delete from {schema}.{name} where {condition}"), dict(where))
    return 0 if frame is None else bulk_insert(conn, schema, name, frame)


def delete_keys(
    conn: Connection, table: str, where: Mapping[str, Any], column: str, keys: Sequence[Any]
) -> None:
    """Delete the rows of ``schema.table`` matching ``where`` whose ``column`` is one of ``keys``, in chunks
    of 500 keys (a bound list per statement)."""
    schema, name = (check_identifier(part) for part in table.split("."))
    condition = " and ".join(f"{check_identifier(c)} = :{c}" for c in where)
    statement = text(
        f"delete from {schema}.{name} where {condition} and {check_identifier(column)} in :keys"
    ).bindparams(bindparam("keys", expanding=True))
    for start in range(0, len(keys), 500):
        conn.execute(statement, {**where, "keys": list(keys[start : start + 500])})


def read_matching(
    conn: Connection, table: str, key: str, candidates: pd.Series, columns: tuple[str, ...] = ()
) -> pd.DataFrame:
    """The rows of ``table`` whose ``key`` is among ``candidates``: the warehouse does the join, so a
    batch's reference check reads only the keys it mentions, not a whole dimension."""
    check_identifier(key)
    qualified = ".".join(check_identifier(part) for part in table.split("."))
    selected = ", ".join(f"t.{check_identifier(c)}" for c in (key, *columns))
    probe = pd.DataFrame({"k": pd.Series(candidates.dropna().unique(), dtype=object).astype(str)})
    if dialect_of(conn) == "duckdb":
        driver = conn.connection.driver_connection
        driver.register("_salespulse_probe", pa.Table.from_pandas(probe, preserve_index=False))  # type: ignore[union-attr]
        try:
            sql = f"select {selected} from {qualified} t join _salespulse_probe p on t.{key} = p.k"
            return driver.execute(sql).df()  # type: ignore[union-attr]
        finally:
            driver.unregister("_salespulse_probe")  # type: ignore[union-attr]
    conn.execute(text("create temporary table if not exists _salespulse_probe (k varchar)"))
    conn.execute(text("truncate _salespulse_probe"))
    bulk_insert(conn, "pg_temp", "_salespulse_probe", probe)
    return read_frame(
        conn, f"select {selected} from {qualified} t join pg_temp._salespulse_probe p on t.{key} = p.k"
    )
