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
    completed = sales_lines[(sales_lines["status"] == "completed") & (sales_lines["order_date"] < snapshot)]
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
