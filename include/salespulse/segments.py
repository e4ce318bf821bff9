"""RFM scoring and named segments.

Recency, frequency and monetary value per customer as of a date, from completed orders only:
returned and cancelled orders carry no revenue and do not count as purchases. Each measure gets a
quintile score from 1 (worst) to 5 (best); ties are broken deterministically by customer id so
that the same data always gives the same scores. The named segment comes from the recency and
frequency scores through an ordered rule list, which is data and can be replaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from salespulse.rules import completed_before


@dataclass(frozen=True)
class SegmentRule:
    """Customers whose R score is in ``recency`` and F score in ``frequency`` get ``name``."""

    name: str
    recency: tuple[int, ...]
    frequency: tuple[int, ...]


RFM_COLUMNS = [
    "customer_id",
    "recency_days",
    "frequency",
    "monetary",
    "r_score",
    "f_score",
    "m_score",
    "rfm_cell",
    "rfm_segment",
]

# First matching rule wins. Together the rules cover all 25 (R, F) cells exactly once.
DEFAULT_SEGMENT_RULES: tuple[SegmentRule, ...] = (
    SegmentRule("Champions", (5,), (4, 5)),
    SegmentRule("Loyal", (3, 4), (4, 5)),
    SegmentRule("Potential Loyalists", (4, 5), (2, 3)),
    SegmentRule("New", (5,), (1,)),
    SegmentRule("Promising", (4,), (1,)),
    SegmentRule("Need Attention", (3,), (3,)),
    SegmentRule("About to Sleep", (3,), (1, 2)),
    SegmentRule("Can't Lose Them", (1, 2), (5,)),
    SegmentRule("At Risk", (1, 2), (3, 4)),
    SegmentRule("Hibernating", (2,), (1, 2)),
    SegmentRule("Lost", (1,), (1, 2)),
)


def quintile_scores(values: pd.Series, tie_breaker: pd.Series, higher_is_better: bool = True) -> pd.Series:
    """Scores 1..5 by rank: equal-sized groups, ties broken by ``tie_breaker`` (ascending)."""
    n = len(values)
    if n == 0:
        return pd.Series(dtype="int64")
    order = pd.DataFrame({"value": values.to_numpy(), "tie": tie_breaker.to_numpy()}, index=values.index)
    # Best first: the highest values when higher is better, else the lowest; equal values by tie_breaker.
    order = order.sort_values(["value", "tie"], ascending=[not higher_is_better, True], kind="stable")
    rank = np.arange(n)  # 0 = best
    score = 5 - (rank * 5 // n)
    return pd.Series(score, index=order.index).reindex(values.index).astype("int64")


def compute_rfm(
    sales_lines: pd.DataFrame,
    as_of: date,
    rules: Sequence[SegmentRule] = DEFAULT_SEGMENT_RULES,
) -> pd.DataFrame:
    """RFM per customer from order lines (customer_id, order_id, order_date, status, net_amount).

    Only purchases before ``as_of`` count. Customers with no completed purchase are not scored.
    """
    snapshot = pd.Timestamp(as_of)
    completed = completed_before(sales_lines, as_of)
    if completed.empty:
        return pd.DataFrame(columns=RFM_COLUMNS)
    per_customer = completed.groupby("customer_id", sort=True).agg(
        last_purchase=("order_date", "max"),
        frequency=("order_id", "nunique"),
        monetary=("net_amount", "sum"),
    )
    per_customer = per_customer.reset_index()
    per_customer["recency_days"] = (snapshot - pd.to_datetime(per_customer["last_purchase"])).dt.days.astype(
        "int64"
    )
    ids = per_customer["customer_id"]
    per_customer["r_score"] = quintile_scores(per_customer["recency_days"], ids, higher_is_better=False)
    per_customer["f_score"] = quintile_scores(per_customer["frequency"], ids)
    per_customer["m_score"] = quintile_scores(per_customer["monetary"], ids)
    per_customer["rfm_cell"] = (
        per_customer["r_score"].astype(str)
        + per_customer["f_score"].astype(str)
        + per_customer["m_score"].astype(str)
    )
    per_customer["rfm_segment"] = assign_segments(per_customer["r_score"], per_customer["f_score"], rules)
    return per_customer[RFM_COLUMNS]


def assign_segments(r_score: pd.Series, f_score: pd.Series, rules: Sequence[SegmentRule]) -> pd.Series:
    """Name each (R, F) pair by the first rule it matches; a pair no rule covers is an error."""
    names = pd.Series(None, index=r_score.index, dtype=object)
    for rule in rules:
        match = names.isna() & r_score.isin(rule.recency) & f_score.isin(rule.frequency)
        names[match] = rule.name
    if names.isna().any():
        uncovered = sorted(set(zip(r_score[names.isna()], f_score[names.isna()], strict=True)))
        raise ValueError(f"segment rules leave (R, F) cells unnamed: {uncovered}")
    return names


@dataclass(frozen=True)
class ClassThresholds:
    """Documented thresholds for value tiers, purchase behaviour and lifecycle stages.

    Value tiers (the 80/20 rule): customers ranked by revenue, the ones who together make the first
    ``high_share`` of revenue are "high", the next up to ``medium_share`` "medium", the rest "low".
    Purchase behaviour: one purchase ever is "one-time"; at least ``frequent_orders_per_year`` purchases
    in the last 365 days is "frequent"; anything else "occasional".
    Lifecycle, first match wins: first purchase within ``new_days`` is "new"; a last purchase more than
    ``churn_cadences`` x the customer's own cadence ago (and at least ``churn_min_days``) or P(alive) below
    ``churn_p_alive`` is "churned"; more than ``at_risk_cadences`` x cadence ago or P(alive) below
    ``at_risk_p_alive`` is "at risk"; a recent purchase (within ``new_days``) after a gap longer than
    ``churn_min_days`` is "reactivated"; otherwise "active". A one-time buyer's cadence is
    ``default_cadence_days``.
    """

    high_share: float = 0.80
    medium_share: float = 0.95
    frequent_orders_per_year: int = 6
    new_days: int = 90
    at_risk_cadences: float = 2.0
    churn_cadences: float = 4.0
    churn_min_days: int = 180
    at_risk_p_alive: float = 0.5
    churn_p_alive: float = 0.2
    default_cadence_days: float = 90.0


def value_tiers(monetary: pd.Series, customer_ids: pd.Series, thresholds: ClassThresholds) -> pd.Series:
    """high / medium / low by cumulative share of revenue, largest first, ties by customer id."""
    order = pd.DataFrame({"m": monetary.to_numpy(), "id": customer_ids.to_numpy()}, index=monetary.index)
    order = order.sort_values(["m", "id"], ascending=[False, True], kind="stable")
    total = order["m"].clip(lower=0).sum()
    # A customer is in a tier if the revenue *before* them is still below that tier's share.
    before = (
        (order["m"].clip(lower=0).cumsum() - order["m"].clip(lower=0)) / total if total else order["m"] * 0
    )
    tier = np.select(
        [before < thresholds.high_share, before < thresholds.medium_share], ["high", "medium"], "low"
    )
    return pd.Series(tier, index=order.index).reindex(monetary.index)


def purchase_classes(
    frequency: pd.Series, orders_last_year: pd.Series, thresholds: ClassThresholds
) -> pd.Series:
    """one-time / frequent / occasional."""
    return pd.Series(
        np.select(
            [frequency <= 1, orders_last_year >= thresholds.frequent_orders_per_year],
            ["one-time", "frequent"],
            "occasional",
        ),
        index=frequency.index,
    )


def lifecycle_stages(
    days_since_first: pd.Series,
    days_since_last: pd.Series,
    cadence_days: pd.Series,
    longest_gap_days: pd.Series,
    p_alive: pd.Series,
    thresholds: ClassThresholds,
) -> pd.Series:
    """new / churned / at risk / reactivated / active, from each customer's own cadence and P(alive)."""
    t = thresholds
    cadence = cadence_days.fillna(t.default_cadence_days)
    churned = ((days_since_last > t.churn_cadences * cadence) & (days_since_last >= t.churn_min_days)) | (
        p_alive < t.churn_p_alive
    )
    at_risk = (days_since_last > t.at_risk_cadences * cadence) | (p_alive < t.at_risk_p_alive)
    reactivated = (days_since_last <= t.new_days) & (longest_gap_days > t.churn_min_days)
    stage = np.select(
        [days_since_first <= t.new_days, churned, at_risk, reactivated],
        ["new", "churned", "at risk", "reactivated"],
        "active",
    )
    return pd.Series(stage, index=days_since_first.index)


def purchase_history(sales_lines: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """Per customer, from completed orders before ``as_of``: first and last purchase, orders in the last
    year, the typical gap between purchases (median) and the longest one before the last purchase."""
    snapshot = pd.Timestamp(as_of)
    completed = completed_before(sales_lines, as_of)
    days = completed.drop_duplicates(["customer_id", "order_date"])[["customer_id", "order_date"]]
    days = days.sort_values(["customer_id", "order_date"])
    gaps = days.groupby("customer_id")["order_date"].diff().dt.days
    per = days.assign(gap=gaps).groupby("customer_id")
    history = pd.DataFrame(
        {
            "days_since_first": (snapshot - per["order_date"].min()).dt.days,
            "days_since_last": (snapshot - per["order_date"].max()).dt.days,
            "cadence_days": per["gap"].median(),
            "longest_gap_days": per["gap"].max().fillna(0.0),
        }
    )
    last_year = completed[completed["order_date"] >= snapshot - pd.Timedelta(days=365)]
    history["orders_last_year"] = last_year.groupby("customer_id")["order_id"].nunique()
    return history.fillna({"orders_last_year": 0}).astype({"orders_last_year": "int64"})
