"""Ingest CRM data: extract incrementally, de-duplicate, gate, land in raw, merge into core.

One call loads one entity as of one date, in one transaction: the raw batch, its quarantined
rows, the validation history, the core merge and the audit row (with the watermark) commit
together or not at all. Loading the same entity and as-of date again replaces that batch with
the same window, so re-runs and backfills leave the warehouse as it was. Every source row is
accounted for::

    rows_read = rows_loaded + rows_quarantined + rows_duplicate

The window of a batch as of day D is ``[watermark, D)`` of ``updated_at``, where the watermark is
the newest ``updated_at`` the previous committed batch (as of a day before D) read, minus an
optional look-back for sources whose rows commit late. Overlapping windows are safe: the merge
keeps the last update of each business key.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, Engine, text

from salespulse.errors import EntityNotProvided, PermanentError
from salespulse.mapping import COPY_COLUMN
from salespulse.model import LOAD_METADATA, Entity, get_entity
from salespulse.quality import DataDocs, DataQualityError, GateResult, load_suite_document, validate_batch
from salespulse.slices import Spill
from salespulse.sources import UNREADABLE_LINE, Source, Window, normalize_header
from salespulse.warehouse import bulk_insert, check_identifier, read_frame, read_matching, run_sql_file

log = logging.getLogger(__name__)

# Reference keys for the referential checks, and where they come from in core.
_KNOWN_KEYS = {
    "known_customer_ids": ("core.dim_customer", "customer_id"),
    "known_order_ids": ("core.fct_order", "order_id"),
    "known_product_ids": ("core.dim_product", "product_id"),
}
_REFERENCES = {
    "orders": ("known_customer_ids",),
    "order_lines": ("known_order_ids", "known_product_ids"),
    "interactions": ("known_customer_ids",),
    "opportunities": ("known_customer_ids",),
}


# The largest extract loaded as one batch; a larger one is loaded in parts (SALESPULSE_MAX_BATCH_ROWS).
MAX_BATCH_ROWS = 500_000


class SourceSchemaError(PermanentError, ValueError):
    """The source lacks a column the model requires."""


@dataclass(frozen=True)
class LoadResult:
    entity: str
    batch_id: str
    rows_read: int
    rows_duplicate: int
    rows_quarantined: int
    rows_loaded: int
    failures: tuple[dict[str, Any], ...] = ()
    data_docs: str | None = None
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    extra_columns: tuple[str, ...] = ()
    new_columns: tuple[str, ...] = ()  # extra columns the entity's previous batch did not have
    source: str = ""
    provided: bool = True  # False: the source has nothing for this (optional) entity
    # An incremental batch that read nothing while the source holds rows older than the watermark (a file
    # that arrived late, an older year's export): how many, so they are reported, not skipped in silence.
    rows_before_watermark: int = 0
    # Rows of the source dated more than a day after the load ran (a wrong clock, a typo such as 2099): no
    # load reads them until that date, so they are counted and warned about every time.
    rows_in_future: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "batch_id": self.batch_id,
            "rows_read": self.rows_read,
            "rows_duplicate": self.rows_duplicate,
            "rows_quarantined": self.rows_quarantined,
            "rows_loaded": self.rows_loaded,
            "failures": list(self.failures),
            "data_docs": self.data_docs,
            "watermark_before": self.watermark_before.isoformat() if self.watermark_before else None,
            "watermark_after": self.watermark_after.isoformat() if self.watermark_after else None,
            "extra_columns": list(self.extra_columns),
            "new_columns": list(self.new_columns),
            "source": self.source,
            "provided": self.provided,
            "rows_before_watermark": self.rows_before_watermark,
            "rows_in_future": self.rows_in_future,
        }


@dataclass(frozen=True)
class BatchInfo:
    """How a batch was extracted, for the audit. A large extract is loaded in parts (slices by
    updated_at), each a batch ``<entity>@<date>#<part>`` of its own; part 0 means the whole extract."""

    full_refresh: bool = True
    watermark_before: datetime | None = None
    extract_seconds: float = 0.0
    part: int = 0
    parts: int = 0

    def batch_id(self, entity: str, as_of: date) -> str:
        base = batch_id_for(entity, as_of)
        return f"{base}#{self.part}" if self.part else base

    @property
    def last_part(self) -> bool:
        return self.part == self.parts


def _one_writer_per_entity(conn: Connection, entity: Entity) -> None:
    """PostgreSQL: loads of one entity write one at a time (a transaction-scoped advisory lock), so two
    ingests of the same date at once (a backfill overlapping a re-run) both succeed, one after the other,
    instead of one failing on the other's new keys. DuckDB takes one writing process anyway."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("select pg_advisory_xact_lock(hashtext(:name))"), {"name": f"salespulse:{entity.name}"}
        )


def batch_id_for(entity: str, as_of: date) -> str:
    """One batch per entity and as-of date: loading the same date again replaces it."""
    return f"{entity}@{as_of.isoformat()}"


def conform_source_columns(frame: pd.DataFrame, entity: Entity) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Match a source's columns to the model: headers normalized, required columns checked, and columns
    the model does not know (schema drift) folded into ``_extra`` as JSON, so raw keeps them."""
    frame = frame.rename(columns=normalize_header)
    if len(frame.columns) == 0 and len(frame) == 0:
        return frame, ()  # an API with nothing new sends no columns at all
    missing = [c for c in entity.required_columns if c not in frame.columns]
    if missing:
        raise SourceSchemaError(f"{entity.name}: the source lacks required column(s) {missing}")
    extra = tuple(c for c in frame.columns if c not in entity.column_names)
    if extra:
        log.warning(
            "%s: source has column(s) the model does not know, kept in raw._extra: %s", entity.name, extra
        )
        frame = frame.assign(_extra=_original_rows(frame[list(extra)])).drop(columns=list(extra))
    return frame, extra


def _as_text(raw: pd.Series) -> pd.Series:
    """Text as the source meant it. A numeric column read as floats (Parquet or Excel ids such as
    CustomerID) keeps whole numbers' integer text: 18102.0 is "18102", not a new id "18102.0"."""
    text = raw.astype(object).where(raw.notna(), None)
    if pd.api.types.is_float_dtype(raw):
        whole = raw.notna() & (raw.abs() < 2**53) & (raw == np.floor(raw))
        text = text.where(~whole, raw.where(whole, 0).astype("int64").astype(str))
        text = text.where(whole | raw.isna(), raw.astype(str))
    return text


# Numbers past this are no amount, quantity or rate a CRM holds: a 23-digit quantity or 1e308 price is
# quarantined (``range_<column>``) instead of overflowing a sum or an integer column.
NUMBER_LIMIT = 1e15


def with_rule(problems: pd.Series, bad: pd.Series | np.ndarray, rule: str) -> pd.Series:
    """Each row's broken rules (``a;b``), with ``rule`` added where ``bad``."""
    if not np.any(bad):
        return problems
    return problems.where(~bad, problems + np.where(problems == "", "", ";") + rule)


def _clean_text(values: pd.Series, trim: bool) -> tuple[pd.Series, np.ndarray]:
    """Text with a NUL character made null (its row is marked ``type_<column>``), and with ``trim`` (ids)
    surrounding whitespace removed, whitespace alone made null; and where the trimming made it null.
    In Arrow's kernels: a Python function per value took a third of the load's typing time."""
    try:
        text = pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all text (ints from a Parquet id column)
        return _clean_text_slowly(values, trim)
    nul = pc.fill_null(pc.match_substring(text, "\x00"), False)
    text = pc.if_else(nul, pa.scalar(None, pa.string()), text)
    blank = np.zeros(len(values), dtype=bool)
    if trim:
        trimmed = pc.utf8_trim_whitespace(text)
        empty = pc.fill_null(pc.equal(trimmed, ""), False)
        blank = empty.to_numpy(zero_copy_only=False)
        text = pc.if_else(empty, pa.scalar(None, pa.string()), trimmed)
    cleaned = pd.Series(text.to_numpy(zero_copy_only=False), index=values.index, dtype=object)
    return cleaned.where(cleaned.notna(), None), blank


def _clean_text_slowly(values: pd.Series, trim: bool) -> tuple[pd.Series, np.ndarray]:
    nul = values.map(lambda v: isinstance(v, str) and "\x00" in v).to_numpy(dtype=bool)
    values = values.where(~nul, None)
    blank = np.zeros(len(values), dtype=bool)
    if trim:
        stripped = values.map(lambda v: (v.strip() or None) if isinstance(v, str) else v)
        blank = (values.notna() & stripped.isna()).to_numpy()
        values = stripped.astype(object).where(stripped.notna(), None)
    return values, blank


def coerce_types(frame: pd.DataFrame, entity: Entity) -> tuple[pd.DataFrame, pd.Series]:
    """Cast columns to the model's types. A value that will not cast becomes null in the typed frame,
    and its row is marked with the reason, so it is quarantined rather than silently dropped:

    - ``type_<column>``: not a value of the column's type. Dates and times are read as ISO 8601 only
      (``2026-04-03``, ``2026-04-03 10:30``, ``...T10:30:00Z``, ``...+02:00``), never guessed: ``03.04.2026``
      is quarantined unless a mapping declares its format. A time with a zone is converted to UTC; one
      without is taken as UTC.
    - ``finite_<column>``: ``inf``, ``-inf`` or ``Infinity``; ``range_<column>``: beyond ±1e15.
    - Ids (the entity's key and every ``*_id`` column) lose surrounding whitespace: ``" C0000028 "`` is
      ``C0000028``, not a second customer; an id that is only whitespace is missing.
    - Text holding a NUL character (``\x00``, binary garbage; PostgreSQL cannot store it) is
      ``type_<column>`` too; the quarantine keeps it escaped.
    """
    typed = pd.DataFrame(index=frame.index)
    problems = pd.Series("", index=frame.index, dtype=object)
    for column in entity.columns:
        if column.name not in frame:
            typed[column.name] = pd.Series(None, index=frame.index, dtype=object)
            continue
        raw = frame[column.name]
        if column.kind == "string":
            is_id = column.name in entity.key or column.name.endswith("_id")
            values, blank = _clean_text(_as_text(raw), trim=is_id)
            raw = raw.where(~blank, None)  # whitespace alone is a missing id, not a bad one
        elif column.kind in ("date", "timestamp"):
            values = _timestamps(raw)
        elif column.kind in ("int", "float"):
            numbers = pd.to_numeric(raw, errors="coerce").astype("float64")
            infinite = np.isinf(numbers)
            huge = ~infinite & (numbers.abs() >= NUMBER_LIMIT)
            problems = with_rule(problems, infinite, f"finite_{column.name}")
            problems = with_rule(problems, huge, f"range_{column.name}")
            numbers = numbers.where(~(infinite | huge))
            if column.kind == "int":
                whole = numbers.isna() | (numbers == np.floor(numbers))
                values = numbers.where(whole).astype("Int64")
            else:
                values = numbers
            raw = raw.where(~(infinite | huge), None)  # already marked with the sharper rule
        else:
            values = raw.map({True: True, False: False, "true": True, "false": False}).astype("boolean")
        problems = with_rule(problems, raw.notna() & values.isna(), f"type_{column.name}")
        typed[column.name] = values
    return typed, problems


def _timestamps(raw: pd.Series) -> pd.Series:
    """ISO 8601 text, datetimes or dates as naive UTC timestamps; anything else NaT (quarantined)."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(raw):
        parsed = pd.to_datetime(raw, utc=True)
    else:
        parsed = pd.to_datetime(raw.astype(object), errors="coerce", format="ISO8601", utc=True)
    return parsed.dt.tz_localize(None).astype("datetime64[us]")


def gate_inputs(
    conn: Connection,
    entity: Entity,
    as_of: date,
    frame: pd.DataFrame,
    incremental: bool = False,
    batch: BatchInfo | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The runtime parameters and reference data this entity's suite needs, read before the load.

    Reference keys come from core, which holds the latest state, so a backfill of an earlier date checks
    against keys known today; only the keys the batch (``frame``) mentions are read.
    Baselines: volume from this entity's earlier loads of the same kind in the audit (incremental
    batches are compared with incremental ones, full extracts with full ones), mean line amount from
    core as it stands before this load. A part of a sliced extract has no volume
    baseline (its size is the slicer's choice), and only the last part, the newest rows, is checked for
    freshness.
    """
    batch = batch or BatchInfo()
    document = load_suite_document(entity.name)
    meta = document.get("meta", {})
    used = {
        v["$PARAMETER"]
        for expectation in document["expectations"]
        for v in expectation["kwargs"].values()
        if isinstance(v, dict) and "$PARAMETER" in v
    }
    parameters: dict[str, Any] = {"as_of": pd.Timestamp(as_of)}
    references: dict[str, Any] = {}
    for name in _REFERENCES.get(entity.name, ()):
        table, column = _KNOWN_KEYS[name]
        references[name] = set(read_matching(conn, table, column, frame[column])[column])
    if "fresh_after" in used and batch.last_part:
        parameters["fresh_after"] = pd.Timestamp(as_of) - pd.Timedelta(days=meta.get("freshness_sla_days", 7))
    if {"volume_min", "volume_max"} & used and not batch.part:
        history = read_frame(
            conn,
            "select rows_read from audit.load_batches where entity = :entity and as_of_date < :as_of "
            "and (watermark_before is not null) = :incremental order by as_of_date desc limit 5",
            {"entity": entity.name, "as_of": as_of, "incremental": incremental},
        )
        if len(history):
            typical = float(history["rows_read"].median())
            tolerance = float(meta.get("volume_tolerance", 0.5))
            parameters["volume_min"] = int(typical * (1 - tolerance))
            parameters["volume_max"] = int(typical * (1 + tolerance)) + 1
    if {"line_amount_mean_min", "line_amount_mean_max"} & used:
        baseline = read_frame(
            conn,
            "select avg(net_amount) as mean_amount from core.order_line_amounts",
        )["mean_amount"].iloc[0]
        if baseline is not None and not pd.isna(baseline):
            tolerance = float(meta.get("mean_tolerance", 0.25))
            parameters["line_amount_mean_min"] = float(baseline) * (1 - tolerance)
            parameters["line_amount_mean_max"] = float(baseline) * (1 + tolerance)
    if entity.name == "orders":
        signups = read_matching(
            conn, "core.dim_customer", "customer_id", frame["customer_id"], ("signup_date",)
        )
        references["customer_signup"] = dict(zip(signups["customer_id"], signups["signup_date"], strict=True))
    return parameters, references


def deduplicate(frame: pd.DataFrame, entity: Entity) -> tuple[pd.DataFrame, int]:
    """Keep the latest version of each business key (by updated_at).

    Rows without a key are kept, so that the gate quarantines them by name. A version whose updated_at
    cannot be read counts as the latest: it is kept and quarantined (``type_updated_at``), so an older
    version never silently takes the place of a newer one, and core keeps its last good state."""
    keyed = frame[list(entity.key)].notna().all(axis=1)
    with_key = frame[keyed].sort_values(entity.updated_at, kind="stable", na_position="last")
    latest = with_key[~with_key.duplicated(list(entity.key), keep="last")]
    kept = pd.concat([latest, frame[~keyed]]).sort_index()
    return kept, len(frame) - len(kept)


def _record_keys(frame: pd.DataFrame, entity: Entity) -> pd.Series:
    parts = [frame[k].astype(str).where(frame[k].notna(), "") for k in entity.key]
    key = parts[0]
    for part in parts[1:]:
        key = key + "#" + part
    return key


def _original_rows(frame: pd.DataFrame) -> list[str]:
    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return [json.dumps(r, default=str, ensure_ascii=False) for r in records]


def _new_columns(conn: Connection, entity: Entity, as_of: date, extra: tuple[str, ...]) -> tuple[str, ...]:
    """The unknown source columns this batch has and the entity's previous batch did not."""
    if not extra:
        return ()
    previous = read_frame(
        conn,
        "select extra_columns from audit.load_batches where entity = :entity and as_of_date < :as_of "
        "order by as_of_date desc, watermark_after desc nulls last limit 1",
        {"entity": entity.name, "as_of": as_of},
    )
    seen = (
        set()
        if previous.empty or previous["extra_columns"].isna().iloc[0]
        else set(str(previous["extra_columns"].iloc[0]).split(","))
    )
    return tuple(c for c in extra if c not in seen)


def _delete_batch(conn: Connection, entity: Entity, as_of: date, batch: BatchInfo) -> None:
    """Remove what an earlier run of the same date left of this batch, in the transaction that reloads it.

    A whole extract removes the whole batch and every part of it. A part removes only itself, so a run
    killed between parts leaves every core row's batch with its audit and raw rows (the parts not yet
    re-run keep their earlier ones); the last part also removes what no part of this run replaces: the
    whole batch of an earlier run loaded in one piece, or parts beyond this run's count."""
    raw_table = check_identifier(entity.name)
    base = batch_id_for(entity.name, as_of)
    params: dict[str, Any] = {"base": base, "parts": f"{base}#", "n": len(base) + 1}
    params |= {"batch_id": batch.batch_id(entity.name, as_of), "count": batch.parts}
    if not batch.part:
        condition = "({column} = :base or left({column}, :n) = :parts)"
    elif batch.last_part:
        # (CASE, so the cast only sees this batch's part numbers.)
        part = "case when left({column}, :n) = :parts then cast(substr({column}, :n + 1) as integer) end"
        stale = f"({part} > :count)"
        condition = f"({{column}} = :batch_id or {{column}} = :base or {stale})"
    else:
        condition = "{column} = :batch_id"
    clause = condition.format(column="_batch_id")
    conn.execute(text(f"delete from raw.{raw_table} where {clause}"), params)
    for table in ("quality.quarantine", "quality.validation_results", "audit.load_batches"):
        conn.execute(text(f"delete from {table} where {condition.format(column='batch_id')}"), params)


def load_entity(
    engine: Engine,
    entity_name: str,
    source_frame: pd.DataFrame,
    as_of: date,
    run_id: str,
    source: str,
    docs_root: Path | DataDocs | None = None,
    batch: BatchInfo | None = None,
) -> LoadResult:
    """Gate one entity's extract and load it, as of ``as_of`` (rows updated before that day).

    ``batch`` says how the rows were extracted (window, timing); without it they count as a full extract.
    """
    entity = get_entity(entity_name)
    batch = batch or BatchInfo()
    started = datetime.now()
    batch_id = batch.batch_id(entity.name, as_of)
    source_frame = source_frame.reset_index(drop=True)
    copies = source_frame.pop(COPY_COLUMN) if COPY_COLUMN in source_frame else None
    unreadable = source_frame.pop(UNREADABLE_LINE) if UNREADABLE_LINE in source_frame else None
    source_frame, extra_columns = conform_source_columns(source_frame, entity)
    rows_read = len(source_frame)
    typed, type_problems = coerce_types(source_frame, entity)
    if unreadable is not None:
        # A line the CSV reader could not split into fields (sources.UNREADABLE_LINE): its text is kept.
        type_problems = with_rule(type_problems, unreadable.notna().to_numpy(), "unreadable_line")
    if copies is not None:
        # A row equal in everything but a made-up key to one before it (mapping.COPY_COLUMN).
        again = pd.to_numeric(copies, errors="coerce").fillna(1).to_numpy() > 1
        type_problems = with_rule(type_problems, again, "exact_duplicate")
    if "_extra" in source_frame:
        typed["_extra"] = source_frame["_extra"]
    # The newest update read, never past the as-of date: a row the source's filter let through as
    # unreadable but pandas reads as a future time must not push the watermark past rows not yet read.
    updated = typed[entity.updated_at]
    newest = updated[updated < pd.Timestamp(as_of)].max() if rows_read else None
    watermark_after = batch.watermark_before if newest is None or pd.isna(newest) else newest.to_pydatetime()
    if batch.watermark_before is not None and watermark_after is not None:
        watermark_after = max(watermark_after, batch.watermark_before)
    source_rows = source_frame.drop(columns=["_extra"], errors="ignore")
    if unreadable is not None and unreadable.notna().any():
        source_rows = source_rows.assign(line=unreadable)
    deduped, rows_duplicate = deduplicate(typed, entity)
    type_problems = type_problems.loc[deduped.index]
    source_rows = source_rows.loc[deduped.index]

    validate_started = time.perf_counter()
    with engine.connect() as conn:
        parameters, references = gate_inputs(conn, entity, as_of, deduped, not batch.full_refresh, batch)
        new_columns = _new_columns(conn, entity, as_of, extra_columns)
    gate: GateResult = validate_batch(
        entity.name,
        deduped,
        parameters,
        run_id=run_id,
        as_of=as_of,
        references=references,
        docs_root=docs_root,
        render_docs=batch.last_part,
    )
    history = gate.history.assign(batch_id=batch_id)
    validate_seconds = time.perf_counter() - validate_started
    write_started = time.perf_counter()
    if not gate.passed:
        # Keep the history of the failed validation, then stop: nothing of this batch reaches core.
        with engine.begin() as conn:
            _one_writer_per_entity(conn, entity)
            _delete_batch(conn, entity, as_of, batch)
            bulk_insert(conn, "quality", "validation_results", history)
        raise DataQualityError(entity.name, gate.failures, rows_read=rows_read, data_docs=gate.data_docs)
    reasons = gate.failed_rules.to_numpy(dtype=object)
    extra = type_problems.to_numpy(dtype=object)
    reasons = np.where(extra == "", reasons, np.where(reasons == "", extra, reasons + ";" + extra))
    quarantined = reasons != ""

    with engine.begin() as conn:
        _one_writer_per_entity(conn, entity)
        _delete_batch(conn, entity, as_of, batch)
        bulk_insert(conn, "quality", "validation_results", history)
        loaded_at = datetime.now()
        landed = deduped.reset_index(drop=True).assign(
            _batch_id=batch_id, _run_id=run_id, _source=source, _loaded_at=loaded_at, _quarantined=quarantined
        )
        if "_extra" not in landed:
            landed["_extra"] = None
        bulk_insert(conn, "raw", entity.name, landed[[*entity.column_names, *LOAD_METADATA]])
        if quarantined.any():
            held = source_rows[quarantined]
            quarantine = pd.DataFrame(
                {
                    "run_id": run_id,
                    "batch_id": batch_id,
                    "entity": entity.name,
                    "record_key": _record_keys(deduped[quarantined], entity).to_numpy(),
                    "failed_rules": reasons[quarantined],
                    "original_row": _original_rows(held),
                    "as_of_date": as_of,
                    "quarantined_at": loaded_at,
                }
            )
            bulk_insert(conn, "quality", "quarantine", quarantine)
        key_match = " and ".join(
            f"incoming.{check_identifier(k)} = core.{entity.core_table}.{check_identifier(k)}"
            for k in entity.key
        )
        run_sql_file(
            conn,
            "core/merge_entity.sql",
            {"batch_id": batch_id},
            identifiers={
                "core_table": check_identifier(entity.core_table),
                "raw_table": check_identifier(entity.name),
                "key_match": key_match,
                "columns": ", ".join(entity.column_names),
                "incoming_columns": ", ".join(f"incoming.{c}" for c in entity.column_names),
            },
        )
        keys = [check_identifier(k) for k in entity.key]
        for column in (c.name for c in entity.columns if c.keep == "earliest"):
            run_sql_file(
                conn,
                "core/keep_earliest.sql",
                {"batch_id": batch_id},
                identifiers={
                    "core_table": check_identifier(entity.core_table),
                    "raw_table": check_identifier(entity.name),
                    "column": check_identifier(column),
                    "history_keys": ", ".join(f"history.{k}" for k in keys),
                    "incoming_keys": ", ".join(f"incoming.{k}" for k in keys),
                    "batch_history_match": " and ".join(f"batch_keys.{k} = history.{k}" for k in keys),
                    "earliest_match": " and ".join(
                        f"core.{entity.core_table}.{k} = earliest.{k}" for k in keys
                    ),
                },
            )
        result = LoadResult(
            entity=entity.name,
            batch_id=batch_id,
            rows_read=rows_read,
            rows_duplicate=rows_duplicate,
            rows_quarantined=int(quarantined.sum()),
            rows_loaded=int((~quarantined).sum()),
            failures=tuple(gate.failures),
            data_docs=gate.data_docs,
            watermark_before=batch.watermark_before,
            watermark_after=watermark_after,
            extra_columns=extra_columns,
            new_columns=new_columns,
            source=source,
        )
        if result.rows_read != result.rows_loaded + result.rows_quarantined + result.rows_duplicate:
            raise AssertionError(f"{entity.name}: load does not reconcile: {result.as_dict()}")
        audit = pd.DataFrame(
            [
                {
                    "batch_id": batch_id,
                    "run_id": run_id,
                    "entity": entity.name,
                    "source": source,
                    "as_of_date": as_of,
                    "rows_read": result.rows_read,
                    "rows_duplicate": result.rows_duplicate,
                    "rows_quarantined": result.rows_quarantined,
                    "rows_loaded": result.rows_loaded,
                    "started_at": started,
                    "finished_at": datetime.now(),
                    "full_refresh": batch.full_refresh,
                    "watermark_before": batch.watermark_before,
                    "watermark_after": watermark_after,
                    "extra_columns": ",".join(extra_columns) or None,
                    "extract_seconds": batch.extract_seconds,
                    "validate_seconds": validate_seconds,
                    "write_seconds": time.perf_counter() - write_started,
                }
            ]
        )
        bulk_insert(conn, "audit", "load_batches", audit)
    log.info("loaded %s", result.as_dict())
    return result


def previous_watermark(conn: Connection, entity: Entity, as_of: date) -> datetime | None:
    """The watermark the last committed batch before ``as_of`` left; None if there is none (load all)."""
    found = read_frame(
        conn,
        "select watermark_after from audit.load_batches where entity = :entity and as_of_date < :as_of "
        "order by as_of_date desc, watermark_after desc nulls last limit 1",
        {"entity": entity.name, "as_of": as_of},
    )
    if found.empty or pd.isna(found["watermark_after"].iloc[0]):
        return None
    return pd.Timestamp(found["watermark_after"].iloc[0]).to_pydatetime()


def _render_what_is_left(docs: DataDocs | None, entity: Entity) -> None:
    """A load in parts that ended early (a failed write, a lost connection) still gets the pages of the
    parts it validated; a failure to render is logged, never put in place of the load's own error."""
    if docs is None or not docs.unrendered:
        return
    try:
        docs.render()
    except Exception:
        log.exception("%s: Data Docs of %d validated part(s) not rendered", entity.name, len(docs.unrendered))


def ingest_from_source(
    engine: Engine,
    source: Source,
    entity_name: str,
    as_of: date,
    run_id: str,
    full_refresh: bool = False,
    lookback: timedelta = timedelta(0),
    docs_root: Path | None = None,
    max_batch_rows: int = MAX_BATCH_ROWS,
) -> LoadResult:
    """Extract one entity's rows changed since the watermark (all of them on a full refresh) and load them.

    An extract of up to ``max_batch_rows`` rows is one batch. A larger one is spilled to disk as it streams
    in and loaded in parts cut by ``updated_at`` (:mod:`salespulse.slices`), oldest first, each part its own
    transaction and watermark, so memory stays bounded however large the extract.
    """
    entity = get_entity(entity_name)
    watermark = None
    if not full_refresh:
        with engine.connect() as conn:
            watermark = previous_watermark(conn, entity, as_of)
    after = None if watermark is None else pd.Timestamp(watermark) - pd.Timedelta(lookback)
    future = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() + pd.Timedelta(days=2)
    window = Window(until=pd.Timestamp(as_of), after=after, future=max(future, pd.Timestamp(as_of)))
    started = time.perf_counter()
    set_aside = FutureRows(entity, window.future)
    chunks = set_aside.filter(iter(source.extract(entity, window)))
    held: list[pd.DataFrame] = []
    rows = 0
    description = source.description
    try:
        for chunk in chunks:
            held.append(chunk)
            rows += len(chunk)
            if rows > max_batch_rows:
                break
    except EntityNotProvided as missing:
        if entity.required:
            raise SourceSchemaError(f"{entity.name} is required, but {missing}") from missing
        log.warning("%s: not provided by %s (%s); nothing loaded", entity.name, description, missing)
        return LoadResult(
            entity.name, f"{entity.name}@{as_of}", 0, 0, 0, 0, source=description, provided=False
        )
    if rows <= max_batch_rows:
        # A source may yield no chunk at all for an empty window (a mapping whose filter matches nothing).
        frame = held[0] if len(held) == 1 else pd.DataFrame(columns=entity.column_names)
        if len(held) > 1:
            frame = pd.concat(held, ignore_index=True)
        info = BatchInfo(watermark is None, watermark, time.perf_counter() - started)
        log.info("%s: read %d rows from %s in %s", entity.name, len(frame), description, window)
        result = set_aside.report(
            load_entity(engine, entity.name, frame, as_of, run_id, description, docs_root, info)
        )
        counter = getattr(source, "count_before", None)
        if (
            frame.empty
            and window.after is not None
            and counter is not None
            and (older := counter(entity, window))
        ):
            log.warning(
                "%s: nothing new in %s, but %d rows there predate the watermark %s and were not loaded; "
                "load them with a full refresh",
                entity.name, description, older, window.after,
            )  # fmt: skip
            result = replace(result, rows_before_watermark=older)
        return result

    with Spill(itertools.chain(held, chunks)) as spill:
        del held
        parts = spill.slices(max_batch_rows)
        extract_seconds = time.perf_counter() - started
        log.info(
            "%s: read %d rows from %s in %s; loading in %d parts",
            entity.name,
            spill.rows,
            description,
            window,
            len(parts),
        )
        results: list[LoadResult] = []
        docs = DataDocs(docs_root) if docs_root is not None else None  # rendered once, at the last part
        try:
            for part in parts:
                part_started = time.perf_counter()
                frame = spill.read(part)
                info = BatchInfo(
                    full_refresh=watermark is None,
                    watermark_before=watermark if part.number == 1 else results[-1].watermark_after,
                    extract_seconds=extract_seconds
                    if part.number == 1
                    else time.perf_counter() - part_started,
                    part=part.number,
                    parts=len(parts),
                )
                results.append(
                    load_entity(engine, entity.name, frame, as_of, run_id, description, docs, info)
                )
                del frame
        finally:
            _render_what_is_left(docs, entity)
    return set_aside.report(
        LoadResult(
            entity=entity.name,
            batch_id=f"{batch_id_for(entity.name, as_of)}#1-{len(results)}",
            rows_read=sum(r.rows_read for r in results),
            rows_duplicate=sum(r.rows_duplicate for r in results),
            rows_quarantined=sum(r.rows_quarantined for r in results),
            rows_loaded=sum(r.rows_loaded for r in results),
            failures=tuple(f for r in results for f in r.failures),
            data_docs=results[-1].data_docs,
            watermark_before=watermark,
            watermark_after=results[-1].watermark_after,
            extra_columns=tuple(dict.fromkeys(c for r in results for c in r.extra_columns)),
            new_columns=tuple(dict.fromkeys(c for r in results for c in r.new_columns)),
            source=description,
        )
    )


class FutureRows:
    """Sets aside, and counts, the extract's rows dated after ``cutoff`` (the window reads them for this):
    they are not loaded, and the load's result and log say how many there are."""

    def __init__(self, entity: Entity, cutoff: pd.Timestamp | None) -> None:
        self.entity, self.cutoff, self.count = entity, cutoff, 0

    def filter(self, chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for chunk in chunks:
            column = self.entity.updated_at
            if self.cutoff is not None and column in chunk and len(chunk):
                future = (_timestamps(chunk[column]) >= self.cutoff).to_numpy()
                if future.any():
                    self.count += int(future.sum())
                    chunk = chunk[~future]
            yield chunk

    def report(self, result: LoadResult) -> LoadResult:
        if not self.count:
            return result
        log.warning(
            "%s: %d source rows are dated after %s (a wrong clock or a typo?); they were not loaded and "
            "will not be until that date",
            self.entity.name, self.count, self.cutoff,
        )  # fmt: skip
        return replace(result, rows_in_future=self.count)
