"""The funnel forecast of the deals open on the as-of date (:mod:`salespulse.funnel`): stage rates,
sales-cycle length, and the run's statistical snapshot adjusted by the pipeline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd
from sqlalchemy import Engine

from salespulse.config import Settings
from salespulse.funnel import FunnelRules, combine, funnel_forecast, monthly_bookings
from salespulse.steps.base import record_step, warehouse
from salespulse.warehouse import read_frame, read_sql_file, replace_rows


@dataclass(frozen=True)
class FunnelSummary:
    open_deals: int
    open_deals_in_horizon: int
    pipeline_amount: float
    expected_bookings: float
    win_rates: Mapping[str, float | None]
    median_won_cycle_days: float | None
    rows: int
    skipped: str | None = None  # why there is no funnel forecast for the date (no deals known)


def funnel_rules(settings: Settings) -> FunnelRules:
    return FunnelRules(
        lookback_days=settings.funnel_lookback_days,
        min_deals=settings.funnel_min_deals,
        horizon=settings.forecast_horizon,
        funnel_months=settings.funnel_months,
    )


def build_funnel(settings: Settings, as_of: date, run_id: str) -> FunnelSummary:
    """The funnel forecast of the deals open on ``as_of``, stage rates and sales-cycle length, combined with
    the latest statistical snapshot made by then. Re-running the as-of date replaces its rows."""
    started = datetime.now()
    rules = funnel_rules(settings)
    with warehouse(settings) as engine:
        params = {"as_of": as_of}
        opportunities = read_sql_file(engine, "core/select_opportunities_created_before.sql", params)
        customers = read_frame(
            engine, "select customer_id, region, segment, sales_owner from core.dim_customer"
        )
        statistical = read_sql_file(engine, "marts/select_latest_forecast_snapshot.sql", params)
        statistical = statistical[["series_id", "period_start", "forecast"]]
        statistical["period_start"] = pd.to_datetime(statistical["period_start"])
        if opportunities.empty:
            return _skip(engine, as_of, run_id, started, f"no opportunities created before {as_of}")
        forecast, rates, cycles = funnel_forecast(opportunities, customers, as_of, rules)
        combined = combine(forecast, statistical, monthly_bookings(opportunities, customers, as_of), rules)
        stamp = {"as_of_date": as_of, "run_id": run_id, "created_at": datetime.now()}
        with engine.begin() as conn:
            for table, frame in (
                ("marts.funnel_forecast", combined),
                ("marts.funnel_stage_rates", rates),
                ("marts.funnel_cycle", cycles),
            ):
                replace_rows(conn, table, {"as_of_date": as_of}, frame.assign(**stamp))
        total = combined[combined["series_id"] == "total:all"]
        detail = f"open_deals={int(total['open_deals'].sum())}"
        record_step(engine, run_id, "build_funnel", as_of, len(combined), detail, started)
    won = cycles.loc[cycles["outcome"] == "won"].iloc[0]
    return FunnelSummary(
        open_deals=int(rates["open_deals"].sum()),
        open_deals_in_horizon=int(total["open_deals"].sum()),
        pipeline_amount=round(float(total["pipeline_amount"].sum()), 2),
        expected_bookings=round(float(total["expected_bookings"].sum()), 2),
        win_rates={
            r.stage: None if pd.isna(r.win_rate) else round(float(r.win_rate), 3) for r in rates.itertuples()
        },
        median_won_cycle_days=None if pd.isna(won["median_days"]) else float(won["median_days"]),
        rows=len(combined),
    )


def _skip(engine: Engine, as_of: date, run_id: str, started: datetime, reason: str) -> FunnelSummary:
    """No funnel forecast for the date: its earlier rows go, and the audit says why."""
    with engine.begin() as conn:
        for table in ("marts.funnel_forecast", "marts.funnel_stage_rates", "marts.funnel_cycle"):
            replace_rows(conn, table, {"as_of_date": as_of})
    record_step(engine, run_id, "build_funnel", as_of, 0, f"skipped: {reason}", started)
    return FunnelSummary(0, 0, 0.0, 0.0, {}, None, 0, skipped=reason)
