"""The static HTML report of the month an as-of date reports (:mod:`salespulse.report` draws it): what it
shows is read here, as known on the as-of date."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd
from sqlalchemy import Engine

from salespulse.config import Settings
from salespulse.periods import last_complete_month, months_before
from salespulse.report import HISTORY_MONTHS, ReportData, render_report
from salespulse.steps.base import record_step, warehouse
from salespulse.variance import actuals_with_zeros
from salespulse.warehouse import read_frame, read_sql_file


@dataclass(frozen=True)
class ReportSummary:
    period: str  # the reported month, ISO
    report: str  # the page's path
    charts: tuple[str, ...]


def load_report_data(engine: Engine, as_of: date, period: date) -> ReportData:
    """Everything the page shows, as known on ``as_of``."""
    params = {"as_of": as_of, "period": period}
    history_start = months_before(period, HISTORY_MONTHS - 1)
    variance = read_frame(engine, "select * from marts.fct_variance where period_start <= :period", params)
    actuals = actuals_with_zeros(read_sql_file(engine, "marts/select_monthly_actuals.sql", params), as_of)
    actuals = actuals.rename(columns={"actual": "revenue"})
    actuals = actuals[pd.to_datetime(actuals["period_start"]) >= pd.Timestamp(history_start)]
    forecast = read_sql_file(engine, "marts/select_latest_forecast_snapshot.sql", params)
    snapshots = read_frame(
        engine,
        "select distinct snapshot_date from marts.customer_rfm where snapshot_date <= :as_of order by 1",
        params,
    )["snapshot_date"].tolist()
    segment_mix = read_frame(
        engine,
        "select snapshot_date, rfm_segment, customers from reporting.segment_summary "
        "where snapshot_date <= :as_of order by snapshot_date",
        params,
    )
    migration = pd.DataFrame(columns=["from_group", "to_group", "customers"])
    if len(snapshots) >= 2:
        migration = read_sql_file(
            engine,
            "marts/select_segment_migration.sql",
            {"earlier": snapshots[-2], "later": snapshots[-1]},
        )
    drivers = read_frame(
        engine,
        "select * from marts.fct_revenue_drivers where report_as_of = :as_of order by series_id",
        params,
    )
    return ReportData(
        as_of=as_of,
        period=period,
        variance=variance,
        actuals=actuals,
        forecast=forecast,
        segment_mix=segment_mix,
        migration=migration,
        # Per load date (the batches' as-of date), so a report re-rendered later shows the same trend.
        data_quality=read_sql_file(engine, "reporting/select_data_quality_by_load.sql", params),
        drivers=drivers,
        churn_warnings=int(read_sql_file(engine, "marts/count_churn_warnings.sql", params)["n"].iloc[0]),
        quarterly=read_frame(
            engine, "select * from marts.fct_quarterly_review where period_start = :period", params
        ),
    )


def render_variance_report(settings: Settings, as_of: date, run_id: str) -> ReportSummary:
    """The static HTML report (and its PNG charts) of the month ``as_of`` reports, under the data folder."""
    started = datetime.now()
    period = last_complete_month(as_of)
    with warehouse(settings) as engine:
        data = load_report_data(engine, as_of, period)
        page = render_report(
            data, settings.reports_dir / f"{period:%Y-%m}", run_id, lead=min(settings.variance_horizons)
        )
        charts = tuple(sorted(p.name for p in page.parent.glob("*.png")))
        record_step(engine, run_id, "render_report", as_of, len(charts), f"report={page}", started)
    return ReportSummary(period.isoformat(), str(page), charts)
