"""``salespulse run``: the pipeline's steps for a range of monthly as-of dates, in order, without a scheduler.

The same step functions the DAG tasks call, in the DAGs' order, one as-of date after another (variance
compares a month with the forecasts made at earlier dates, so the order matters).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date
from functools import partial
from pathlib import Path

from salespulse.config import Settings
from salespulse.model import load_order
from salespulse.periods import months_before

STEPS = ("ingest", "segments", "forecast", "variance", "report")


def monthly_as_of_dates(start: date, end: date) -> list[date]:
    """The first days of the months from ``start`` (itself if it is a first, else the next one) to ``end``."""
    first = start if start.day == 1 else months_before(start, -1)
    dates = []
    while first <= end:
        dates.append(first)
        first = months_before(first, -1)
    return dates


def parse_steps(raw: str) -> tuple[str, ...]:
    steps = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        raise ValueError(f"unknown step {unknown[0] if unknown else raw!r}; the steps are {', '.join(STEPS)}")
    return tuple(s for s in STEPS if s in steps)


def with_mapping(settings: Settings, mapping: str | Path) -> Settings:
    """The settings with the source replaced by a mapping file (a path, or a name in include/mappings/)."""
    return replace(settings, source=replace(settings.source, kind="mapping", mapping=str(mapping)))


def run_range(
    settings: Settings,
    as_of_dates: Sequence[date],
    steps: Sequence[str] = STEPS,
    say: Callable[[str], None] = print,
    full_refresh: bool = False,
) -> None:
    """Run ``steps`` for each as-of date in order, reporting each step as it ends. ``full_refresh`` reads
    everything before the first date, ignoring the watermarks (the later dates read what changed)."""
    from salespulse.steps.prepare import prepare_warehouse

    prepare_warehouse(settings)
    for number, as_of in enumerate(as_of_dates):
        run_id = f"cli__{as_of.isoformat()}"
        runners: dict[str, Callable[[Settings, date, str], str]] = {
            **STEP_RUNNERS,
            "ingest": partial(_ingest, full_refresh=full_refresh and number == 0),
        }
        for step in steps:
            started = time.perf_counter()
            outcome = runners[step](settings, as_of, run_id)
            say(f"{as_of}  {step:<9} {outcome} ({time.perf_counter() - started:.1f} s)")


def _ingest(settings: Settings, as_of: date, run_id: str, full_refresh: bool = False) -> str:
    from salespulse.steps.ingest import ingest_entity

    parts = []
    for entity in load_order():
        result = ingest_entity(settings, entity.name, as_of, run_id, full_refresh=full_refresh)
        if not result.provided:
            parts.append(f"{entity.name} not provided")
        elif result.rows_before_watermark:
            parts.append(
                f"{entity.name} 0 ({result.rows_before_watermark:,} older rows not loaded: --full-refresh)"
            )
        else:
            held = f", {result.rows_quarantined:,} quarantined" if result.rows_quarantined else ""
            parts.append(f"{entity.name} {result.rows_loaded:,}{held}")
    return "loaded " + "; ".join(parts)


def _segments(settings: Settings, as_of: date, run_id: str) -> str:
    from salespulse.steps.segments import build_segments

    summary = build_segments(settings, as_of, run_id)
    return f"{summary.customers_scored:,} customers scored, {summary.churn_warning_count:,} churn warnings"


def _forecast(settings: Settings, as_of: date, run_id: str) -> str:
    from salespulse.steps import forecast, funnel

    plan = forecast.prepare_forecasts(settings, as_of, run_id)
    for partition in plan.partitions:
        forecast.forecast_partition(settings, as_of, run_id, partition)
    published = forecast.publish_forecasts(settings, as_of, run_id)
    deals = funnel.build_funnel(settings, as_of, run_id)
    pipeline = f"funnel skipped: {deals.skipped}" if deals.skipped else f"{deals.open_deals:,} open deals"
    skipped = plan.single_member_levels
    levels = f"; one member, skipped: {', '.join(skipped)}" if skipped else ""
    return f"{published.series:,} series forecast ({published.models}){levels}; {pipeline}"


def _variance(settings: Settings, as_of: date, run_id: str) -> str:
    from salespulse.steps.variance import build_variance

    summary = build_variance(settings, as_of, run_id)
    return f"{summary.period[:7]}: {summary.fact_rows:,} comparisons, {summary.flagged_rows:,} flagged"


def _report(settings: Settings, as_of: date, run_id: str) -> str:
    from salespulse.steps.report import render_variance_report

    return f"report {render_variance_report(settings, as_of, run_id).report}"


STEP_RUNNERS: dict[str, Callable[[Settings, date, str], str]] = {
    "ingest": _ingest,
    "segments": _segments,
    "forecast": _forecast,
    "variance": _variance,
    "report": _report,
}
