"""Where CRM data comes from: export files, a CRM database, a CRM REST API, or a user's files and a mapping.

Every source answers one question the same way: the rows of an entity updated in a window
``[after, until)`` of ``updated_at``, as DataFrames in chunks. The loader (:mod:`salespulse.ingest`)
decides the window from the watermark it keeps in the warehouse, so every source is incremental.
Rows whose ``updated_at`` is missing or unreadable are always included, so the gate quarantines them by
name instead of losing them.

Configured by :func:`source_from_settings` from :class:`salespulse.config.SourceSettings` (see
``.env.example``):

- ``files`` (default): ``SALESPULSE_EXPORT_DIR`` holds ``<entity>.parquet``, ``<entity>.csv`` or
  ``<entity>.csv.gz``, or a folder ``<entity>/`` of such files (daily drops). CSV is read as UTF-8 text with
  the delimiter sniffed (``SALESPULSE_CSV_DELIMITER`` forces one); headers are matched loosely
  (``Customer ID`` is ``customer_id``).
- ``sql``: ``AIRFLOW_CONN_SALESPULSE_CRM_DB``, a database URI; tables ``<schema>.<entity>`` with
  ``SALESPULSE_CRM_DB_SCHEMA`` (default ``crm``).
- ``api``: ``AIRFLOW_CONN_SALESPULSE_CRM_API``, e.g. ``http://:TOKEN@crm.example.com:443/?page_size=1000``;
  the password is the bearer token; query options ``page_size``, ``pagination`` (cursor|page), ``timeout``,
  ``max_retries``, ``backoff``, ``scheme`` (https).
- ``mapping``: ``SALESPULSE_MAPPING``, a mapping file (see :mod:`salespulse.mapping`).
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import duckdb
import pandas as pd
import requests
from sqlalchemy import create_engine, text

from salespulse.config import SOURCE_KINDS, Settings, sqlalchemy_url_from_airflow_uri
from salespulse.csvfiles import rejected_lines, sniff_csv, strict_reader
from salespulse.errors import (
    ConfigurationError,
    EntityNotProvided,
    PermanentError,
    SourceError,
    UnreadableFile,
)
from salespulse.mapping import load_mapping
from salespulse.model import Entity
from salespulse.warehouse import check_identifier, quote_identifier, sql_literal

log = logging.getLogger(__name__)

CHUNK_ROWS = 500_000


@dataclass(frozen=True)
class Window:
    """Rows with ``after <= updated_at < until``; ``after`` None means from the beginning."""

    until: pd.Timestamp
    after: pd.Timestamp | None = None
    # Rows dated at or after this (a day past the load's wall clock) are read too, to be counted and set
    # aside by the loader: a row dated 2099 must not sit unseen in the source until 2099.
    future: pd.Timestamp | None = None

    def sql_condition(self, column: str = "updated_at", placeholder: str = "?") -> tuple[str, list[Any]]:
        """A condition for DuckDB over a column that may still be text; unreadable values pass."""
        value = f"try_cast({column} as timestamp)"
        condition = f"({value} is null or ({value} < {placeholder}"
        params: list[Any] = [self.until.to_pydatetime()]
        if self.after is not None:
            condition += f" and {value} >= {placeholder}"
            params.append(self.after.to_pydatetime())
        condition += ")"
        if self.future is not None:
            condition += f" or {value} >= {placeholder}"
            params.append(self.future.to_pydatetime())
        return condition + ")", params

    def before_condition(self, column: str = "updated_at") -> tuple[str, list[Any]]:
        """Rows older than the window's start: loaded by an earlier batch, or a file that arrived late."""
        if self.after is None:
            return "false", []
        return f"(try_cast({column} as timestamp) < ?)", [self.after.to_pydatetime()]


class Source(Protocol):
    """A CRM data source. ``description`` names it in the audit, without secrets."""

    @property
    def description(self) -> str: ...

    def extract(self, entity: Entity, window: Window) -> Iterator[pd.DataFrame]: ...


def normalize_header(name: str) -> str:
    """``" Customer ID"``, ``"customer-id"`` and ``"customerId"`` all become ``customer_id``; a UTF-8 BOM
    is dropped."""
    cleaned = name.replace("\ufeff", "").strip()
    cleaned = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", cleaned)  # camelCase, as JSON APIs write it
    cleaned = re.sub(r"[^0-9a-zA-Z]+", "_", cleaned).strip("_")
    return cleaned.lower()


def header_renames(headers: list[str]) -> dict[str, str]:
    """Each file header and the name it is loaded under (:func:`normalize_header`); a header with nothing
    left after normalising (``"!!!"``) becomes ``column_<position>``."""
    return {h: normalize_header(h) or f"column_{i + 1}" for i, h in enumerate(headers)}


def rename_projection(renames: Mapping[str, str]) -> str:
    """``"<header>" as "<name>", ...``: both quoted, whatever the file's headers contain."""
    return ", ".join(f"{quote_identifier(h)} as {quote_identifier(n)}" for h, n in renames.items())


# --- files -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileSource:
    """A folder of CRM export files, read by DuckDB in chunks (Parquet, CSV, gzip'd CSV)."""

    folder: Path
    delimiter: str | None = None
    encoding: str = "utf-8"
    prefer: str = "parquet"
    chunk_rows: int = CHUNK_ROWS

    @property
    def description(self) -> str:
        return f"files:{self.folder}"

    def files_for(self, entity: Entity) -> list[Path]:
        """The entity's file, or every file in its folder; Parquet before CSV when both exist."""
        order = ("parquet", "csv", "csv.gz") if self.prefer == "parquet" else ("csv", "csv.gz", "parquet")
        for suffix in order:
            single = self.folder / f"{entity.name}.{suffix}"
            if single.exists():
                return [single]
        folder = self.folder / entity.name
        if folder.is_dir():
            for suffix in order:
                found = sorted(folder.glob(f"*.{suffix}"))
                if found:
                    return found
        raise EntityNotProvided(
            f"no export for {entity.name!r} in {self.folder}: expected {entity.name}.parquet, "
            f"{entity.name}.csv, {entity.name}.csv.gz or a folder {entity.name}/ of them"
        )

    def _reader(self, files: list[Path]) -> str:
        names = "[" + ", ".join(sql_literal(str(f)) for f in files) + "]"
        if files[0].suffix == ".parquet":
            return f"read_parquet({names}, union_by_name = true)"
        readers = [self._csv_reader(f) for f in files]
        return (
            readers[0]
            if len(readers) == 1
            else "(" + " union all by name ".join(f"select * from {r}" for r in readers) + ")"
        )

    def _csv_reader(self, path: Path) -> str:
        """One CSV file, read strictly (:func:`salespulse.csvfiles.strict_reader`): a line with too many
        or too few fields or an unclosed quote is set aside in DuckDB's rejects table and comes to the
        loader as an :data:`UNREADABLE_LINE` row."""
        delimiter, header = sniff_csv(path, self.encoding, self.delimiter)
        return strict_reader(path, delimiter, header, self.encoding)

    def count_before(self, entity: Entity, window: Window) -> int:
        """How many of the files' rows are older than the window (none are read by an incremental load)."""
        files = self.files_for(entity)
        con = duckdb.connect()
        try:
            reader_sql = self._reader(files)
            renames = header_renames(con.sql(f"select * from {reader_sql}").columns)
            if "updated_at" not in renames.values():
                return 0
            projection = rename_projection(renames)
            condition, params = window.before_condition()
            sql = f"select count(*) from (select {projection} from {reader_sql}) where {condition}"
            counted = con.execute(sql, params).fetchone()
            return int(counted[0]) if counted else 0
        finally:
            con.close()

    def extract(self, entity: Entity, window: Window) -> Iterator[pd.DataFrame]:
        files = self.files_for(entity)
        parquet = files[0].suffix == ".parquet"
        con = duckdb.connect()
        try:
            reader_sql = self._reader(files)
            relation = con.sql(f"select * from {reader_sql}")
            renames = header_renames(relation.columns)
            projection = rename_projection(renames)
            condition, params = window.sql_condition() if "updated_at" in renames.values() else ("true", [])
            batches = con.sql(
                f"select * from (select {projection} from {reader_sql}) where {condition}",
                params=params,
            ).to_arrow_reader(self.chunk_rows)
            empty = True
            for batch in batches:
                empty = False
                yield batch.to_pandas()
            rejected = None if parquet else rejected_lines(con)
            if rejected is not None:
                empty = False
                yield _unreadable_rows(rejected, renames)
            if empty:
                yield pd.DataFrame(columns=list(renames.values()))
        except duckdb.Error as exc:
            names = [str(f) for f in files]
            if parquet and "magic bytes" in str(exc):
                raise UnreadableFile(
                    f"{entity.name}: {names}: not a Parquet file, or a truncated one ({exc})"
                ) from exc
            raise SourceError(f"{entity.name}: cannot read {names}: {exc}") from exc
        finally:
            con.close()


# A CSV line that could not be split into the header's fields comes to the loader as a row of its own:
# this column says where and what, the rest is empty, and the loader quarantines it as
# ``unreadable_line`` with the line's text, so rows_read still counts it.
UNREADABLE_LINE = "_unreadable_line"


def _unreadable_rows(rejected: pd.DataFrame, renames: Mapping[str, str]) -> pd.DataFrame:
    log.warning(
        "%d CSV line(s) could not be read and will be quarantined: %s",
        len(rejected), "; ".join(rejected["where"].head(5)),
    )  # fmt: skip
    frame = pd.DataFrame(None, index=range(len(rejected)), columns=list(renames.values()), dtype=object)
    frame[UNREADABLE_LINE] = (rejected["where"] + ": " + rejected["text"]).to_numpy()
    return frame


# --- a mapping over a user's files ------------------------------------------------------------------


@dataclass(frozen=True)
class MappedSource:
    """A user's own files, turned into the model by a mapping file."""

    mapping_path: Path
    source_dir: Path | None = None
    chunk_rows: int = CHUNK_ROWS

    @property
    def description(self) -> str:
        return f"mapping:{Path(self.mapping_path).stem}"

    def extract(self, entity: Entity, window: Window) -> Iterator[pd.DataFrame]:
        mapping = load_mapping(self.mapping_path, self.source_dir)
        if entity.name not in mapping.entities:
            raise EntityNotProvided(
                f"{mapping.path} maps no {entity.name!r}; it maps {sorted(mapping.entities)}"
            )
        condition, params = window.sql_condition()
        yield from mapping.iter_entity(entity.name, condition, params, self.chunk_rows)

    def count_before(self, entity: Entity, window: Window) -> int:
        """How many mapped rows are older than the window (none are read by an incremental load)."""
        mapping = load_mapping(self.mapping_path, self.source_dir)
        if entity.name not in mapping.entities:
            return 0
        condition, params = window.before_condition()
        return sum(
            len(chunk) for chunk in mapping.iter_entity(entity.name, condition, params, self.chunk_rows)
        )


# --- a CRM database ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlSource:
    """Tables ``<schema>.<entity>`` in the CRM's database (or a replica), read through SQLAlchemy."""

    url: str
    schema: str = "crm"
    chunk_rows: int = CHUNK_ROWS

    @property
    def description(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"sql:{parts.scheme}://{host}{port}{parts.path}/{self.schema}"

    def extract(self, entity: Entity, window: Window) -> Iterator[pd.DataFrame]:
        table = f"{check_identifier(self.schema)}.{check_identifier(entity.name)}"
        sql = f"select * from {table} where (updated_at is null or (updated_at < :until"
        params: dict[str, Any] = {"until": window.until.to_pydatetime()}
        if window.after is not None:
            sql += " and updated_at >= :after"
            params["after"] = window.after.to_pydatetime()
        sql += ")) order by updated_at"
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                streaming = conn.execution_options(stream_results=True)
                empty = True
                for chunk in pd.read_sql(text(sql), streaming, params=params, chunksize=self.chunk_rows):
                    empty = False
                    yield chunk.rename(columns=normalize_header)
                if empty:
                    yield pd.read_sql(text(f"select * from {table} where false"), conn).rename(
                        columns=normalize_header
                    )
        except Exception as exc:
            if isinstance(exc, SourceError):
                raise
            raise SourceError(f"{entity.name}: cannot read {table} from {self.description}: {exc}") from exc
        finally:
            engine.dispose()


# --- a CRM REST API ---------------------------------------------------------------------------------


class ApiError(SourceError):
    """The API kept failing past the retries (429, 5xx, timeouts): worth another try later."""


class PermanentSourceError(PermanentError, ApiError):
    """The API refused the request for good (a 4xx other than 429): retrying will not help."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter; a 429's Retry-After is honoured up to a cap."""

    max_retries: int = 5
    backoff: float = 0.5
    max_wait: float = 60.0

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_wait)
        return min(self.backoff * 2**attempt * (0.5 + random.random() / 2), self.max_wait)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds, or as an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        moment = email.utils.parsedate_to_datetime(value)
        return max(0.0, moment.timestamp() - time.time())


@dataclass
class ApiSource:
    """A paginated JSON API, ``GET {base}/v1/{entity}?updated_since=&updated_before=&limit=``, bearer token.

    Pages come as ``{"data": [...], "next_cursor": ...}`` (cursor) or ``{"data": [...], "pages": n}`` (page).
    429 (after Retry-After), 5xx, timeouts and dropped connections are retried with backoff; any other
    4xx fails at once with the status and the API's message.
    """

    base_url: str
    token: str | None = None
    page_size: int = 1000
    pagination: str = "cursor"
    timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    retries_done: int = 0

    @property
    def description(self) -> str:
        return f"api:{self.base_url.rstrip('/')}"

    def _get(self, session: requests.Session, url: str, params: Mapping[str, Any]) -> dict[str, Any]:
        for attempt in range(self.retry.max_retries + 1):
            retry_after = None
            try:
                response = session.get(url, params=params, timeout=self.timeout)
            except (requests.Timeout, requests.ConnectionError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return response.json()
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code == 429:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                elif response.status_code < 500:
                    raise PermanentSourceError(f"GET {url} failed for good with {problem}")
            if attempt == self.retry.max_retries:
                raise ApiError(f"GET {url} still failing after {self.retry.max_retries} retries: {problem}")
            wait = self.retry.wait(attempt, retry_after)
            log.warning("GET %s: %s; retry %d in %.2fs", url, problem, attempt + 1, wait)
            self.retries_done += 1
            self.sleep(wait)
        raise AssertionError("unreachable")

    def extract(self, entity: Entity, window: Window) -> Iterator[pd.DataFrame]:
        url = f"{self.base_url.rstrip('/')}/v1/{entity.name}"
        params: dict[str, Any] = {"updated_before": window.until.isoformat(), "limit": self.page_size}
        if window.after is not None:
            params["updated_since"] = window.after.isoformat()
        with requests.Session() as session:
            if self.token:
                session.headers["Authorization"] = f"Bearer {self.token}"
            session.headers["Accept"] = "application/json"
            page, rows = 1, []
            while True:
                if self.pagination == "page":
                    params["page"] = page
                body = self._get(session, url, params)
                rows.extend(body.get("data", []))
                if len(rows) >= self.page_size * 50:  # hand on a chunk every 50 pages
                    yield pd.DataFrame.from_records(rows)
                    rows = []
                if self.pagination == "page":
                    if page >= int(body.get("pages", page)) or not body.get("data"):
                        break
                    page += 1
                else:
                    cursor = body.get("next_cursor")
                    if not cursor:
                        break
                    params["cursor"] = cursor
            yield pd.DataFrame.from_records(rows)


# --- configuration ----------------------------------------------------------------------------------


def api_source_from_uri(uri: str) -> ApiSource:
    """An Airflow HTTP connection URI: ``http://:TOKEN@host:port/base?page_size=500&scheme=https``."""
    parts = urlsplit(uri)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    scheme = options.pop("scheme", "https" if parts.scheme == "https" else "http")
    host = parts.hostname or "localhost"
    base = f"{scheme}://{host}{':' + str(parts.port) if parts.port else ''}{parts.path.rstrip('/')}"
    retry = RetryPolicy(
        max_retries=int(options.get("max_retries", 5)), backoff=float(options.get("backoff", 0.5))
    )
    pagination = options.get("pagination", "cursor")
    if pagination not in ("cursor", "page"):
        raise ConfigurationError(f"pagination must be 'cursor' or 'page', got {pagination!r}")
    return ApiSource(
        base_url=base,
        token=parts.password or None,
        page_size=int(options.get("page_size", 1000)),
        pagination=pagination,
        timeout=float(options.get("timeout", 30)),
        retry=retry,
    )


def source_from_settings(settings: Settings) -> Source:
    """The source ``settings.source`` names: files, sql, api or mapping."""
    config = settings.source
    if config.kind == "files":
        return FileSource(
            folder=settings.export_dir.resolve(),
            delimiter=config.csv_delimiter,
            prefer=settings.source_format,
        )
    if config.kind == "sql":
        if not config.crm_db_uri:
            raise ConfigurationError(
                "SALESPULSE_SOURCE=sql needs AIRFLOW_CONN_SALESPULSE_CRM_DB (a database URI)"
            )
        return SqlSource(url=sqlalchemy_url_from_airflow_uri(config.crm_db_uri), schema=config.crm_db_schema)
    if config.kind == "api":
        if not config.crm_api_uri:
            raise ConfigurationError(
                "SALESPULSE_SOURCE=api needs AIRFLOW_CONN_SALESPULSE_CRM_API (http://:TOKEN@host/)"
            )
        return api_source_from_uri(config.crm_api_uri)
    if config.kind == "mapping":
        if not config.mapping:
            raise ConfigurationError(
                "SALESPULSE_SOURCE=mapping needs SALESPULSE_MAPPING (a mapping file or name)"
            )
        return MappedSource(Path(config.mapping), config.source_dir)
    raise ConfigurationError(f"SALESPULSE_SOURCE must be one of {SOURCE_KINDS}, got {config.kind!r}")
