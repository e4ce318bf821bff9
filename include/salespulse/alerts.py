"""What an alert says. Delivery (email, Slack, webhooks) is Airflow's job, in ``plugins/``.

One alert per failed validation, never one per row: it names the DAG, the run, the entity, each
failed expectation with what was observed against what was expected, the rows quarantined, and
where the Data Docs are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Alert:
    subject: str
    text: str
    payload: dict[str, Any] = field(default_factory=dict)


def quality_alert(
    *,
    dag_id: str,
    run_id: str,
    entity: str,
    as_of: str,
    failures: Sequence[Mapping[str, Any]],
    rows: Mapping[str, int] | None = None,
    data_docs: str | None = None,
) -> Alert:
    """The message for one validation with failed expectations."""
    stopped = any(f["action"] == "load stopped" for f in failures)
    critical = sum(1 for f in failures if f["severity"] == "critical")
    outcome = "load STOPPED, downstream not updated" if stopped else "loaded; failing rows quarantined"
    if not critical:
        outcome = "loaded with warnings"
    subject = (
        f"[SalesPulse] data quality: {entity} as of {as_of}: {len(failures)} check(s) failed"
        f" ({critical} critical) - {'load stopped' if stopped else 'loaded'}"
    )
    lines = [
        f"DAG: {dag_id}",
        f"Run: {run_id}",
        f"Entity: {entity} (as of {as_of})",
        f"Outcome: {outcome}",
    ]
    if rows:
        lines.append(
            "Rows: " + ", ".join(f"{name} {count:,}" for name, count in rows.items() if count is not None)
        )
    lines.append("Failed expectations:")
    for f in failures:
        count = f.get("unexpected_count")
        share = f.get("unexpected_percent")
        counted = f"; {count:,} rows ({share:.2f}%)" if count is not None and share is not None else ""
        column = f" on {f['column']}" if f.get("column") else ""
        lines.append(
            f"  - [{f['severity']}] {f['rule']}{column}: observed {f['observed']}; expected {f['expected']}"
            f"{counted} -> {f['action']}"
        )
    if data_docs:
        lines.append(f"Data Docs: {data_docs}")
    payload = {
        "kind": "data_quality",
        "dag_id": dag_id,
        "run_id": run_id,
        "entity": entity,
        "as_of": as_of,
        "load_stopped": stopped,
        "rows": dict(rows or {}),
        "failures": [dict(f) for f in failures],
        "data_docs": data_docs,
    }
    return Alert(subject=subject, text="\n".join(lines), payload=payload)


def schema_drift_alert(
    *, dag_id: str, run_id: str, entity: str, as_of: str, new_columns: Sequence[str], source: str
) -> Alert:
    """One message when a source starts sending columns the model does not know (they are kept, not lost)."""
    names = ", ".join(new_columns)
    subject = f"[SalesPulse] schema drift: {entity} as of {as_of}: {len(new_columns)} new source column(s)"
    lines = [
        f"DAG: {dag_id}",
        f"Run: {run_id}",
        f"Entity: {entity} (as of {as_of}), source {source}",
        f"New columns: {names}",
        f"They are kept as JSON in raw.{entity}._extra and named in audit.load_batches.extra_columns;",
        "map them onto the model (include/salespulse/model.py or a mapping file) to use them.",
    ]
    payload = {
        "kind": "schema_drift",
        "dag_id": dag_id,
        "run_id": run_id,
        "entity": entity,
        "as_of": as_of,
        "source": source,
        "new_columns": list(new_columns),
    }
    return Alert(subject=subject, text="\n".join(lines), payload=payload)


def churn_alert(
    *, dag_id: str, run_id: str, as_of: str, warnings: Sequence[Mapping[str, Any]], total: int
) -> Alert | None:
    """One message per run listing the valuable customers whose churn risk crossed the threshold."""
    if not total:
        return None
    subject = f"[SalesPulse] churn warning as of {as_of}: {total} high-value customer(s) newly at risk"
    lines = [f"DAG: {dag_id}", f"Run: {run_id}", f"Customers newly above the churn threshold: {total}", ""]
    for w in warnings:
        before = w.get("previous_probability")
        was = "new score" if before is None else f"was {before:.0%}"
        clv = w.get("clv_12m")
        value = "" if clv is None else f"; 12-month CLV {clv:,.0f}"
        lines.append(f"  - {w['customer_id']}: churn risk {w['churn_probability']:.0%} ({was}){value}")
    if total > len(warnings):
        lines.append(f"  ... and {total - len(warnings)} more in reporting.churn_warnings")
    payload = {
        "kind": "churn_warning",
        "dag_id": dag_id,
        "run_id": run_id,
        "as_of": as_of,
        "total": total,
        "warnings": [dict(w) for w in warnings],
    }
    return Alert(subject=subject, text="\n".join(lines), payload=payload)


def variance_alert(
    *,
    dag_id: str,
    run_id: str,
    period: str,
    flagged: Sequence[Mapping[str, Any]],
    total: int,
    facts: int,
    flags: Mapping[str, int],
    report: str | None = None,
) -> Alert | None:
    """One message per variance run: how many rows were flagged, by which rule, and the largest of them."""
    if not total:
        return None
    subject = f"[SalesPulse] variance {period}: {total} of {facts} forecast comparison(s) flagged"
    lines = [
        f"DAG: {dag_id}",
        f"Run: {run_id}",
        f"Month: {period}",
        "Flags raised: " + ", ".join(f"{name} {count}" for name, count in flags.items()),
        "",
        "Largest flagged variances (error = actual - forecast; + means sales beat the forecast):",
    ]
    for row in flagged:
        pct = row.get("variance_pct")
        shown = "n/a" if pct is None else f"{pct:+.1%}"
        lines.append(
            f"  - {row['series_id']} h={row['horizon']}: actual {row['actual']:,.0f} vs forecast "
            f"{row['forecast']:,.0f} ({shown}): {row.get('flag_reasons') or ''}"
        )
    if total > len(flagged):
        lines.append(f"  ... and {total - len(flagged)} more in reporting.variance_flags")
    if report:
        lines.append(f"Report: {report}")
    payload = {
        "kind": "variance",
        "dag_id": dag_id,
        "run_id": run_id,
        "period": period,
        "total": total,
        "facts": facts,
        "flags": dict(flags),
        "flagged": [dict(row) for row in flagged],
        "report": report,
    }
    return Alert(subject=subject, text="\n".join(lines), payload=payload)


def permanent_failure_alert(
    *, dag_id: str, task_id: str, run_id: str, as_of: str, error: BaseException
) -> Alert:
    """A task failed on something a retry cannot fix (a setting, a mapping, a source's schema or refusal):
    it was not retried, and this says what to change."""
    kind = type(error).__name__
    subject = f"[SalesPulse] {dag_id}.{task_id} failed as of {as_of}: {kind} (not retried)"
    lines = [
        f"DAG: {dag_id}",
        f"Task: {task_id}",
        f"Run: {run_id} (as of {as_of})",
        f"Error: {kind}: {error}",
        "A retry cannot fix this, so the task was failed at once: correct the setting, the mapping or the"
        " source, then clear the task.",
    ]
    payload = {
        "kind": "permanent_failure",
        "dag_id": dag_id,
        "task_id": task_id,
        "run_id": run_id,
        "as_of": as_of,
        "error_type": kind,
        "error": str(error),
    }
    return Alert(subject=subject, text="\n".join(lines), payload=payload)
