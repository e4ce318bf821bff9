"""The quarterly review of the last complete month (:mod:`salespulse.quarterly`), stored beside its variance
facts by the variance step."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
from sqlalchemy import Engine

from salespulse.periods import last_complete_month
from salespulse.quarterly import forecast_origins, quarterly_review, review_quarters
from salespulse.warehouse import read_sql_file, replace_rows

SNAPSHOT_COLUMNS = ["series_id", "level", "member", "period_start", "as_of_date", "forecast"]


def store_quarterly_review(engine: Engine, as_of: date, run_id: str, created_at: datetime) -> int:
    """The quarterly review of the last complete month (:mod:`salespulse.quarterly`): its quarter to date
    and the one before, closed. A re-run of the month replaces its rows. Returns the rows written."""
    period = last_complete_month(as_of)
    quarters = review_quarters(period)
    first, last = quarters[0][0], quarters[-1][0] + pd.DateOffset(months=2)
    earliest_previous = (first - pd.DateOffset(months=3)).date()
    sales = read_sql_file(
        engine, "marts/select_quarter_sales.sql", {"start": earliest_previous, "period": period}
    )
    dates = read_sql_file(engine, "marts/select_snapshot_dates.sql", {"latest": quarters[-1][0].date()})
    origins = forecast_origins(dates["as_of_date"], [q for q, _ in quarters])
    window = {"start": first.date(), "end": last.date()}
    snapshots = [
        read_sql_file(engine, "marts/select_snapshot_months.sql", {"as_of_date": origin, **window})
        for origin in sorted(set(origins.values()))
    ]
    targets = read_sql_file(engine, "core/select_sales_targets_between.sql", window)
    review = quarterly_review(
        sales,
        pd.concat(snapshots, ignore_index=True) if snapshots else pd.DataFrame(columns=SNAPSHOT_COLUMNS),
        targets,
        period,
    )
    stamp = {"period_start": period, "report_as_of": as_of, "run_id": run_id, "created_at": created_at}
    with engine.begin() as conn:
        rows = review.assign(**stamp) if len(review) else None
        replace_rows(conn, "marts.fct_quarterly_review", {"period_start": period}, rows)
    return len(review)
