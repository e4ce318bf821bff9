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

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from salespulse.config import EXPECTATIONS_DIR

log = logging.getLogger(__name__)
ROW_ID = "_row"
DATASOURCE = "salespulse_batches"


class DataQualityError(RuntimeError):
    """A critical expectation failed at batch level: the batch must not be used downstream."""

    def __init__(self, entity: str, failures: list[dict[str, Any]], rows_read: int | None = None):
        self.entity = entity
        self.failures = failures
        self.rows_read = rows_read
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
def _context() -> Any:
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _batch_definition(entity: str) -> Any:
    context = _context()
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


def validate_batch(
    entity: str,
    frame: pd.DataFrame,
    parameters: Mapping[str, Any],
    run_id: str = "",
    as_of: date | None = None,
) -> GateResult:
    """Validate ``frame`` against the entity's suite; never mutates ``frame``."""
    document = load_suite_document(entity)
    suite = gx.ExpectationSuite(**document)
    batch_frame = frame.reset_index(drop=True).assign(**{ROW_ID: range(len(frame))})
    batch = _batch_definition(entity).get_batch(batch_parameters={"dataframe": batch_frame})
    outcome = batch.validate(
        suite,
        expectation_parameters={k: _jsonable(v) if k == "as_of" else v for k, v in parameters.items()},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_ID]},
    )
    validated_at = datetime.now()
    history: list[dict[str, Any]] = []
    rules_by_row: dict[int, list[str]] = {}
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
            for failing in result["unexpected_index_list"]:
                rules_by_row.setdefault(int(failing[ROW_ID]), []).append(rule)
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
    failed = pd.Series("", index=range(len(frame)), dtype=object)
    for row, rules in rules_by_row.items():
        failed.iloc[row] = ";".join(sorted(set(rules)))
    history_frame = pd.DataFrame(history)
    history_frame["run_id"] = run_id
    history_frame["as_of_date"] = as_of
    for failure in failures:
        log.warning(
            "%s: data-quality %s %s (%s)", entity, failure["severity"], failure["rule"], failure["action"]
        )
    return GateResult(entity, suite.name, history_frame, failed, failures)
