"""The data-quality gate: Great Expectations suites run on each extracted batch.

Each entity has one suite in ``include/expectations/<entity>.json`` (GX's own format). An
expectation's ``severity`` says what a failure does:

- ``critical`` row-level rule: the failing rows are quarantined with the rule's name; the other rows
  go on. If the rule has ``mostly`` and the batch misses it, the whole batch stops too: an extract
  in which that many rows are bad is broken, not dirty.
- ``critical`` table-level rule: the batch does not load and the gate fails.
- ``warning``: recorded in the history and reported; the rows go on.

Every expectation's outcome becomes one history row, whether it passed or not.
"""

from __future__ import annotations

import fcntl
import json
import logging
from collections.abc import Callable, Generator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.execution_engine import pandas_execution_engine

from salespulse.config import EXPECTATIONS_DIR
from salespulse.rules import net_amount

log = logging.getLogger(__name__)
ROW_ID = "_row"
DATASOURCE = "salespulse_batches"

# GX fingerprints every pandas batch below 1 GB (an MD5 over pandas' hash of every cell) for a batch marker
# this project never reads; twice per validation, that was 40% of the gate's time on 1.26M order lines.
# Validation results keep their load time; only the fingerprint goes. tests/test_gate.py fails if a GX
# upgrade renames the setting.
pandas_execution_engine.HASH_THRESHOLD = 0


def _known(column: str, reference: str) -> Callable[[pd.DataFrame, Mapping[str, Any]], pd.Series]:
    """Whether each value of ``column`` is among the reference keys; null where the value itself is null.

    Membership is computed here, once and vectorised, rather than by handing GX the whole key set as a
    value_set: GX copies an expectation's configuration many times per validation, so a large value_set
    made the gate slower with every customer the business gained.
    """

    def compute(frame: pd.DataFrame, refs: Mapping[str, Any]) -> pd.Series:
        known = frame[column].isin(refs[reference])
        return known.astype(object).where(frame[column].notna(), None)

    return compute


# Columns some rules check that the source does not carry as such. Prefixed with "_", never landed.
DERIVED_COLUMNS: dict[str, dict[str, Callable[[pd.DataFrame, Mapping[str, Any]], pd.Series]]] = {
    "customers": {
        "_email_normalized": lambda frame, refs: frame["email"].str.strip().str.lower(),
        "_phone_normalized": lambda frame, refs: frame["phone"].str.replace(r"\D", "", regex=True),
    },
    "orders": {
        "_customer_known": _known("customer_id", "known_customer_ids"),
        "_customer_signup_date": lambda frame, refs: pd.to_datetime(
            frame["customer_id"].map(refs.get("customer_signup", {}))
        ),
    },
    "order_lines": {
        "_order_known": _known("order_id", "known_order_ids"),
        "_product_known": _known("product_id", "known_product_ids"),
        "_line_amount": lambda frame, refs: net_amount(frame),
    },
    "interactions": {"_customer_known": _known("customer_id", "known_customer_ids")},
    "opportunities": {"_customer_known": _known("customer_id", "known_customer_ids")},
}


class DataQualityError(RuntimeError):
    """A critical expectation failed at batch level: the batch must not be used downstream."""

    def __init__(
        self,
        entity: str,
        failures: list[dict[str, Any]],
        rows_read: int | None = None,
        data_docs: str | None = None,
    ):
        self.entity = entity
        self.failures = failures
        self.rows_read = rows_read
        self.data_docs = data_docs
        stopped = [f["rule"] for f in failures if f["action"] == "load stopped"]
        super().__init__(f"{entity}: critical data-quality failure(s) stopped the load: {stopped}")


@dataclass
class GateResult:
    """What the gate decided about one batch."""

    entity: str
    suite_name: str
    history: pd.DataFrame
    failed_rules: pd.Series  # per input row: '' when the row passed, else the broken rules joined by ';'
    failures: list[dict[str, Any]] = field(default_factory=list)  # one per failed expectation
    data_docs: str | None = None

    @property
    def critical_failures(self) -> list[str]:
        return [f["rule"] for f in self.failures if f["action"] == "load stopped"]

    @property
    def quarantined(self) -> pd.Series:
        return self.failed_rules != ""

    @property
    def passed(self) -> bool:
        return not self.critical_failures


def load_suite_document(entity: str) -> dict[str, Any]:
    path = EXPECTATIONS_DIR / f"{entity}.json"
    if not path.exists():
        raise FileNotFoundError(f"no expectation suite for entity {entity!r} at {path}")
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def _ephemeral_context() -> Any:
    """An in-memory GX context, for validations that keep no results (one per process is enough)."""
    context: Any = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _file_context(docs_root: Path) -> Any:
    """A file context under ``docs_root`` (validation results kept, Data Docs built), opened afresh for each
    validation: another process may have changed its stores since (about 35 ms)."""
    context: Any = gx.get_context(mode="file", project_root_dir=str(docs_root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


@contextmanager
def docs_lock(docs_root: Path) -> Generator[None]:
    """One validation at a time per Data Docs folder, across processes: GX's file context keeps suites,
    checkpoints and results as files, and two tasks writing them at once fail with GX's freshness errors.
    An exclusive ``flock`` on a file in the folder (local disks; on a shared network folder, give each
    worker its own ``SALESPULSE_DATA_DIR``)."""
    docs_root.mkdir(parents=True, exist_ok=True)
    with open(docs_root / ".salespulse.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _batch_definition(context: Any, entity: str) -> Any:
    try:
        source = context.data_sources.get(DATASOURCE)
    except (KeyError, ValueError):
        source = context.data_sources.add_pandas(DATASOURCE)
    try:
        asset = source.get_asset(entity)
    except LookupError:
        asset = source.add_dataframe_asset(entity)
    try:
        return asset.get_batch_definition("whole_batch")
    except (KeyError, ValueError, LookupError):
        return asset.add_batch_definition_whole_dataframe("whole_batch")


class DataDocs:
    """A Data Docs folder: GX's file context (suites, checkpoints, validation results) and its HTML site.

    Every validation's result is stored as it is made. Rendering pages costs about half a second a time,
    most of it GX compiling its page templates anew, so a load in many parts renders once: the pages of
    every part validated so far, at its last part or at its first failing one (``validate_batch``'s
    ``render_docs``)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.unrendered: list[Any] = []  # GX ValidationResultIdentifiers stored but not yet rendered

    def render(self) -> str:
        """Render the pages of the stored results not rendered yet (and their suites and the index)."""
        keys = [*self.unrendered, *{key.expectation_suite_identifier for key in self.unrendered}]
        with docs_lock(self.root):
            context = _file_context(self.root)
            if keys:
                context.build_data_docs(resource_identifiers=keys)
            site: str = context.get_docs_sites_urls()[0]["site_url"]
        self.unrendered.clear()
        return site


def _run_suite(
    entity: str, suite: Any, batch_frame: pd.DataFrame, parameters: dict[str, Any], docs: DataDocs | None
) -> Any:
    """Validate; with a docs folder, through a checkpoint that stores the result (its pages left to
    ``DataDocs.render``)."""
    # Every failing row's id (to quarantine it), never its values: validation results, Data Docs and the
    # alerts linking to them must not carry emails, phones or names in clear.
    result_format = {
        "result_format": "COMPLETE",
        "unexpected_index_column_names": [ROW_ID],
        "exclude_unexpected_values": True,
        "return_unexpected_index_query": False,
    }
    if docs is None:
        definition = _batch_definition(_ephemeral_context(), entity)
        batch = definition.get_batch(batch_parameters={"dataframe": batch_frame})
        return batch.validate(suite, expectation_parameters=parameters, result_format=result_format)
    with docs_lock(docs.root):
        context = _file_context(docs.root)
        definition = _batch_definition(context, entity)
        suite = context.suites.add_or_update(suite)
        validation = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"salespulse.{entity}", data=definition, suite=suite)
        )
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=f"salespulse.{entity}",
                validation_definitions=[validation],
                actions=[],
                result_format=result_format,
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": batch_frame}, expectation_parameters=parameters)
    ((key, outcome),) = run.run_results.items()
    docs.unrendered.append(key)
    return outcome


def _jsonable(value: Any) -> Any:
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    return value


def _expected(kwargs: Mapping[str, Any], parameters: Mapping[str, Any]) -> str:
    """What the expectation asked for, with runtime parameters filled in, for people to read."""
    parts = []
    for key, value in kwargs.items():
        if key in ("column", "result_format", "batch_id"):
            continue
        if isinstance(value, dict) and "$PARAMETER" in value:
            value = parameters.get(value["$PARAMETER"])
            if isinstance(value, list) and len(value) > 5:
                value = f"one of {len(value):,} known values"
        elif isinstance(value, list) and len(value) > 8:
            value = f"one of {len(value)} allowed values"
        parts.append(f"{key}={_jsonable(value)}")
    return ", ".join(parts)


def _observed(result: Mapping[str, Any]) -> str | None:
    if "observed_value" in result:
        return json.dumps(_jsonable(result["observed_value"]), default=str, ensure_ascii=False)
    if result.get("unexpected_percent") is not None:
        return f"{result['unexpected_percent']:.4f}% unexpected"
    return None


def _without_baseline(expectation: Mapping[str, Any], parameters: Mapping[str, Any]) -> bool:
    """True when every runtime parameter the expectation uses is missing: there is no baseline yet."""
    names = [
        v["$PARAMETER"] for v in expectation["kwargs"].values() if isinstance(v, dict) and "$PARAMETER" in v
    ]
    return bool(names) and all(parameters.get(name) is None for name in names)


_INT64_EXACT = 2**53  # integers up to this size are exact as float64


def _vectorisable(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Columns recast so that GX's pandas engine compares them vectorised: it checks values row by row
    (a Python call per value) unless a column is plain int64, float64 or datetime64[ns].

    - nullable integers: int64 without nulls, float64 with them (GX's map rules skip nulls anyway), as
      long as every value is exact as a float;
    - datetimes at another resolution (Parquet and Arrow give microseconds): nanoseconds, when every value
      is inside the nanosecond range (years 1678-2261); outside it, left as they are, slow but right.
    """
    recast: dict[str, pd.Series] = {}
    for name in frame.columns:
        column = frame[name]
        if str(column.dtype) == "Int64":
            present = column.dropna()
            if len(present) == len(column):
                recast[name] = column.astype("int64")
            elif present.empty or present.abs().max() <= _INT64_EXACT:
                recast[name] = column.astype("float64")
        elif isinstance(column.dtype, np.dtype) and column.dtype.kind == "M" and column.dtype != "M8[ns]":
            present = column.dropna()
            if present.empty or (present.min() >= pd.Timestamp.min and present.max() <= pd.Timestamp.max):
                recast[name] = column.astype("datetime64[ns]")
    return recast


def _row_ids(unexpected_index_list: list[Any]) -> list[int]:
    """The batch row ids in GX's list of failing rows (each entry a {ROW_ID: id or ids})."""
    ids: list[int] = []
    for failing in unexpected_index_list:
        value = failing[ROW_ID]
        if isinstance(value, list | tuple):
            ids.extend(int(v) for v in value)
        else:
            ids.append(int(value))
    return ids


def _failed_rules(rows: int, rows_by_rule: Mapping[str, list[int]]) -> pd.Series:
    """Per batch row, the critical rules it broke joined by ';' in name order ('' for a clean row)."""
    failed = np.full(rows, "", dtype=object)
    for rule in sorted(rows_by_rule):
        hit = np.unique(np.asarray(rows_by_rule[rule], dtype=np.int64))
        before = failed[hit]
        failed[hit] = np.where(before == "", rule, before + ";" + rule)
    return pd.Series(failed, index=range(rows), dtype=object)


def validate_batch(
    entity: str,
    frame: pd.DataFrame,
    parameters: Mapping[str, Any],
    run_id: str = "",
    as_of: date | None = None,
    references: Mapping[str, Any] | None = None,
    docs_root: Path | DataDocs | None = None,
    render_docs: bool = True,
) -> GateResult:
    """Validate ``frame`` against the entity's suite; never mutates ``frame``.

    With ``docs_root`` the result is stored in GX's file context there; its Data Docs pages are rendered
    now, unless ``render_docs`` is false and the gate passes (a part of a load whose later parts follow:
    pass the same ``DataDocs`` to each, and the last renders them all).

    Expectations whose runtime parameters are all missing (a volume check on the first load, say) are
    skipped: a check with no baseline cannot fail honestly.
    """
    document = dict(load_suite_document(entity))
    document["expectations"] = [e for e in document["expectations"] if not _without_baseline(e, parameters)]
    suite = gx.ExpectationSuite(**document)
    derived = {
        name: compute(frame, references or {}) for name, compute in DERIVED_COLUMNS.get(entity, {}).items()
    }
    batch_frame = (
        frame.assign(**_vectorisable(frame), **derived)
        .reset_index(drop=True)
        .assign(**{ROW_ID: range(len(frame))})
    )
    docs = DataDocs(docs_root) if isinstance(docs_root, str | Path) else docs_root
    outcome = _run_suite(entity, suite, batch_frame, {k: _jsonable(v) for k, v in parameters.items()}, docs)
    validated_at = datetime.now()
    history: list[dict[str, Any]] = []
    rules_by_row: dict[str, list[int]] = {}  # rule -> the rows it failed
    failures: list[dict[str, Any]] = []
    for item in outcome.results:
        config = item.expectation_config
        kwargs = config.kwargs
        rule = config.meta.get("rule", config.type)
        severity = str(getattr(config.severity, "value", config.severity))
        result = item.result or {}
        if item.exception_info and item.exception_info.get("raised_exception"):
            raise RuntimeError(f"{entity}: expectation {rule} could not run: {item.exception_info}")
        history.append(
            {
                "entity": entity,
                "suite_name": suite.name,
                "rule_name": rule,
                "expectation_type": config.type,
                "column_name": kwargs.get("column"),
                "severity": severity,
                "success": bool(item.success),
                "element_count": result.get("element_count"),
                "unexpected_count": result.get("unexpected_count"),
                "unexpected_percent": result.get("unexpected_percent"),
                "observed_value": _observed(result),
                "validated_at": validated_at,
            }
        )
        row_level = "unexpected_index_list" in result
        bad_rows = bool(result.get("unexpected_count")) and row_level
        if severity == "critical" and bad_rows:
            rules_by_row.setdefault(rule, []).extend(_row_ids(result["unexpected_index_list"]))
        if item.success and not (severity == "critical" and bad_rows):
            continue
        if severity != "critical":
            action = "recorded"
        elif row_level and (item.success or kwargs.get("mostly") in (None, 1, 1.0)):
            action = "rows quarantined"
        else:
            action = "load stopped"
        failures.append(
            {
                "rule": rule,
                "severity": severity,
                "expectation_type": config.type,
                "column": kwargs.get("column"),
                "unexpected_count": result.get("unexpected_count"),
                "unexpected_percent": result.get("unexpected_percent"),
                "observed": _observed(result),
                "expected": _expected(kwargs, parameters),
                "action": action,
            }
        )
    failed = _failed_rules(len(frame), rules_by_row)
    history_frame = pd.DataFrame(history)
    history_frame["run_id"] = run_id
    history_frame["as_of_date"] = as_of
    for failure in failures:
        log.warning(
            "%s: data-quality %s %s (%s)", entity, failure["severity"], failure["rule"], failure["action"]
        )
    data_docs = None
    if docs is not None and (render_docs or any(f["action"] == "load stopped" for f in failures)):
        data_docs = docs.render()
        log.info("%s: Data Docs updated at %s", entity, data_docs)
    return GateResult(entity, suite.name, history_frame, failed, failures, data_docs)
