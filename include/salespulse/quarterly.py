"""The quarterly review the sales teams hold besides the monthly one: per quarter and series, actual vs the
forecast made before the quarter began vs target, and what moved revenue against the quarter before.

Each report month P reviews two quarters: the one P is in, **to date** (its months up to and including P),
and the one before it, **closed** (all three months). For a quarter Q starting on month q:

- ``forecast`` is the sum over Q's months so far of the snapshot made before Q began: the latest as-of date
  on or before q (a snapshot dated q was made when Q's first month had not started). ``forecast_quarter``
  is the same snapshot's whole quarter. A month the snapshot does not cover leaves them empty;
- ``target`` sums the months' targets (empty unless every month so far has one); ``target_quarter`` all
  three;
- error = actual - forecast, as everywhere (positive: sales beat the forecast);
- drivers against the same months of the quarter before (to date compares like with like):
  ``orders_effect`` = (orders - previous orders) * previous revenue per order, and
  ``order_value_effect`` = the rest, (revenue per order - previous) * orders; the two add up to
  ``actual - previous_actual`` exactly. With no previous orders, all of the change is orders.

Series are those the snapshot before the quarter forecast: levels with one member were not forecast, and a
series without a forecast has nothing to review.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import pandas as pd

from salespulse.variance import share_of

REVIEW_COLUMNS = [
    "quarter_start", "quarter", "status", "months_closed", "series_id", "level", "member",
    "forecast_as_of", "actual", "forecast", "forecast_quarter", "target", "target_quarter",
    "variance_abs", "variance_pct", "target_variance_abs", "target_variance_pct",
    "orders", "previous_actual", "previous_orders", "orders_effect", "order_value_effect",
]  # fmt: skip


def quarter_start(day: date | pd.Timestamp) -> pd.Timestamp:
    return pd.Timestamp(day).to_period("Q").start_time.normalize()


def review_quarters(period: date) -> list[tuple[pd.Timestamp, int]]:
    """(quarter start, months closed) of the quarters a report of month ``period`` reviews: the one before
    ``period``'s quarter, closed, and ``period``'s own, to date."""
    current = quarter_start(period)
    closed = int((pd.Timestamp(period).month - 1) % 3) + 1
    return [(current - pd.DateOffset(months=3), 3), (current, closed)]


def forecast_origins(
    as_of_dates: Iterable[date], quarters: Iterable[pd.Timestamp]
) -> dict[pd.Timestamp, date]:
    """For each quarter, the latest snapshot date on or before its first day (quarters with none are left
    out)."""
    dates = sorted(pd.Timestamp(d) for d in as_of_dates)
    origins = {}
    for start in quarters:
        before = [d for d in dates if d <= start]
        if before:
            origins[start] = before[-1].date()
    return origins


def _months(start: pd.Timestamp, count: int) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=count, freq="MS")


def _sum_if_complete(frame: pd.DataFrame, keys: list[str], value: str, months: int) -> pd.Series:
    """Per key, the sum of ``value`` over its rows, or NaN unless it has a row for each of ``months``."""
    grouped = frame.groupby(keys)
    total = grouped[value].sum(min_count=1)
    return total.where(grouped["period_start"].nunique() == months)


def quarterly_review(
    monthly: pd.DataFrame,
    snapshots: pd.DataFrame,
    targets: pd.DataFrame,
    period: date,
) -> pd.DataFrame:
    """The review rows of report month ``period``: both quarters, one row per series forecast before each.

    ``monthly``: series_id, level, member, period_start, revenue, orders (a missing month sold nothing).
    ``snapshots``: series_id, level, member, period_start, as_of_date, forecast: the rows of each quarter's
    origin snapshot (:func:`forecast_origins`). ``targets``: level, member, period_start, target_amount.
    """
    monthly = monthly.assign(period_start=pd.to_datetime(monthly["period_start"]))
    snapshots = snapshots.assign(
        period_start=pd.to_datetime(snapshots["period_start"]),
        as_of_date=pd.to_datetime(snapshots["as_of_date"]),
    )
    targets = targets.assign(period_start=pd.to_datetime(targets["period_start"]))
    quarters = review_quarters(period)
    origins = forecast_origins(snapshots["as_of_date"].unique(), [q for q, _ in quarters])
    frames = []
    for start, closed in quarters:
        if start not in origins:
            continue
        so_far, whole = _months(start, closed), _months(start, 3)
        previous = _months(start - pd.DateOffset(months=3), closed)
        made = snapshots[snapshots["as_of_date"] == pd.Timestamp(origins[start])]
        rows = made[["series_id", "level", "member"]].drop_duplicates().set_index("series_id")
        keyed = made.set_index("series_id")
        rows["forecast"] = _sum_if_complete(
            keyed[keyed["period_start"].isin(so_far)], ["series_id"], "forecast", closed
        )
        rows["forecast_quarter"] = _sum_if_complete(
            keyed[keyed["period_start"].isin(whole)], ["series_id"], "forecast", 3
        )
        for column, months in (("", so_far), ("previous_", previous)):
            sums = (
                monthly[monthly["period_start"].isin(months)]
                .groupby("series_id")[["revenue", "orders"]]
                .sum()
            )
            rows[f"{column}actual"] = sums["revenue"].reindex(rows.index).fillna(0.0).astype(float)
            rows[f"{column}orders"] = sums["orders"].reindex(rows.index).fillna(0).astype("int64")
        rows = rows.reset_index()
        for column, months, count in (("target", so_far, closed), ("target_quarter", whole, 3)):
            sums = _sum_if_complete(
                targets[targets["period_start"].isin(months)], ["level", "member"], "target_amount", count
            )
            rows = rows.merge(sums.rename(column).reset_index(), on=["level", "member"], how="left")
        rows["quarter_start"] = start
        rows["status"] = "closed" if closed == 3 else "to date"
        rows["months_closed"] = closed
        rows["forecast_as_of"] = pd.Timestamp(origins[start])
        frames.append(rows)
    if not frames:
        return pd.DataFrame(columns=REVIEW_COLUMNS)
    review = pd.concat(frames, ignore_index=True)
    review["quarter"] = [f"{q.year}-Q{q.quarter}" for q in review["quarter_start"]]
    review["variance_abs"] = review["actual"] - review["forecast"]
    review["variance_pct"] = share_of(review["variance_abs"], review["forecast"].abs())
    review["target_variance_abs"] = review["actual"] - review["target"]
    review["target_variance_pct"] = share_of(review["target_variance_abs"], review["target"].abs())
    change = review["actual"] - review["previous_actual"]
    had_orders = review["previous_orders"] > 0
    per_order = review["previous_actual"] / review["previous_orders"].where(had_orders)
    orders_effect = (review["orders"] - review["previous_orders"]) * per_order
    review["orders_effect"] = orders_effect.where(had_orders, change)
    review["order_value_effect"] = change - review["orders_effect"]
    return review[REVIEW_COLUMNS].sort_values(["quarter_start", "level", "member"]).reset_index(drop=True)
