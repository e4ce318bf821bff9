"""Variance of the last complete month (:mod:`salespulse.variance`): actual vs the forecast first made at
each lead vs target, with rolling accuracy and flags; then its drivers (:mod:`salespulse.drivers`):
price / volume / mix and the customer bridge against the month before."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from salespulse.config import Settings
from salespulse.drivers import drivers_by_level
from salespulse.periods import last_complete_month, month_start, months_before
from salespulse.steps.base import plain, plain_records, record_step, warehouse, write_series_levels
from salespulse.steps.quarterly import store_quarterly_review
from salespulse.variance import (
    FLAG_COLUMNS,
    VarianceRules,
    actuals_with_zeros,
    first_forecasts,
    variance_facts,
    window_start,
)
from salespulse.warehouse import read_sql_file, replace_rows

# What the variance alert lists: the largest flagged rows, at most ALERT_ROWS of them.
ALERT_COLUMNS = ["series_id", "horizon", "actual", "forecast", "target", "variance_abs", "variance_pct"]
ALERT_COLUMNS += ["flag_reasons"]
ALERT_ROWS = 15


@dataclass(frozen=True)
class VarianceSummary:
    period: str  # the reported month, ISO
    fact_rows: int
    within_95: int
    flagged_rows: int
    flags: Mapping[str, int]  # rows per flag
    total_variance_pct: float | None  # the total's, at the shortest lead
    flagged: tuple[Mapping[str, Any], ...]  # the largest ALERT_ROWS flagged rows
    driver_rows: int
    bridge_rows: int


def variance_rules(settings: Settings) -> VarianceRules:
    return VarianceRules(
        horizons=settings.variance_horizons,
        window=settings.variance_window,
        tracking_z_threshold=settings.tracking_z_threshold,
        target_pct_threshold=settings.target_pct_threshold,
        materiality_share=settings.materiality_share,
        materiality_amount=settings.materiality_amount,
        season_length=settings.season_length,
    )


def build_variance(settings: Settings, as_of: date, run_id: str) -> VarianceSummary:
    """Variance facts of the last complete month before ``as_of``: actual vs the forecast first made h months
    ahead vs target, rolling accuracy and flags. Re-running replaces that month's rows and no other's."""
    started = datetime.now()
    rules = variance_rules(settings)
    period = last_complete_month(as_of)
    with warehouse(settings) as engine:
        with engine.begin() as conn:
            write_series_levels(conn, settings.forecast_levels)
        actuals = actuals_with_zeros(
            read_sql_file(engine, "marts/select_monthly_actuals.sql", {"period": period}), as_of
        )
        snapshots = read_sql_file(
            engine,
            "marts/select_forecast_snapshots_between.sql",
            {"start": window_start(period, rules), "period": period, "as_of": as_of},
        )
        targets = read_sql_file(engine, "core/select_sales_targets.sql", {"period": period})
        facts = variance_facts(actuals, first_forecasts(snapshots, rules.horizons), targets, period, rules)
        with engine.begin() as conn:
            stamped = facts.assign(report_as_of=as_of, run_id=run_id, created_at=started)
            replace_rows(conn, "marts.fct_variance", {"period_start": period}, stamped)
        driver_rows, bridge_rows = store_revenue_drivers(engine, as_of, run_id, started)
        quarter_rows = store_quarterly_review(engine, as_of, run_id, started)
        total = facts[(facts["series_id"] == "total:all") & (facts["horizon"] == min(rules.horizons))]
        flagged = facts.loc[facts["flagged"].astype(bool)].sort_values(
            "variance_abs", key=abs, ascending=False
        )
        detail = f"period={period}; flagged={len(flagged)}; quarterly_review={quarter_rows}"
        record_step(engine, run_id, "build_variance", as_of, len(facts), detail, started)
    return VarianceSummary(
        period=period.isoformat(),
        fact_rows=len(facts),
        within_95=int(facts["within_interval_95"].sum()),
        flagged_rows=len(flagged),
        flags={c.removeprefix("flag_"): int(facts[c].sum()) for c in FLAG_COLUMNS},
        total_variance_pct=None if total.empty else plain(total["variance_pct"].iloc[0]),
        flagged=plain_records(flagged[ALERT_COLUMNS].head(ALERT_ROWS)),
        driver_rows=driver_rows,
        bridge_rows=bridge_rows,
    )


def store_revenue_drivers(engine: Engine, as_of: date, run_id: str, created_at: datetime) -> tuple[int, int]:
    """Price / volume / mix and the customer bridge from the month before the last complete month to it,
    per level and member; a re-run of the same as-of date replaces its rows. Returns the rows of each."""
    period = pd.Timestamp(last_complete_month(as_of))
    baseline = pd.Timestamp(months_before(as_of, 2))
    sales = read_sql_file(
        engine,
        "core/select_completed_sales_between.sql",
        {"start": baseline.date(), "end": month_start(as_of)},
    )
    sales["period_start"] = pd.to_datetime(sales["order_date"]).dt.to_period("M").dt.to_timestamp()
    pvm, bridge = drivers_by_level(sales.drop(columns="order_date"), period, baseline)
    stamp = {
        "report_as_of": as_of,
        "period_start": period.date(),
        "baseline_start": baseline.date(),
        "run_id": run_id,
        "created_at": created_at,
    }
    with engine.begin() as conn:
        for table, frame in (("marts.fct_revenue_drivers", pvm), ("marts.fct_customer_bridge", bridge)):
            replace_rows(conn, table, {"report_as_of": as_of}, frame.assign(**stamp) if len(frame) else None)
    return len(pvm), len(bridge)
