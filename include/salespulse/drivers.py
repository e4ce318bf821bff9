"""Why revenue moved between two periods: a price / volume / mix split, and a customer bridge.

Both are exact: their parts add up to the change in revenue, to the last cent, by construction.

**Price / volume / mix**, over items (products) with quantity ``q`` and net price ``p = revenue / q``;
``b`` is the baseline period, ``c`` the current one, ``Q`` total quantity and ``s_i = q_i / Q`` an item's
share of it::

    volume = (Q_c - Q_b) * P_b              P_b = R_b / Q_b, the baseline's average price
    mix    = Q_c * sum_i (s_c,i - s_b,i) * p_b,i
    price  = sum_i q_c,i * (p_c,i - p_b,i)
    volume + mix + price = R_c - R_b

An item sold only in the current period has no baseline price; it is valued at its current price, so its
whole revenue counts as mix (a new product shifts the mix) and none as price. An item no longer sold
contributes to mix alone. Returns (negative quantities) are not items of a sale and are left out by the
caller, as they are from revenue.

**Customer bridge**: baseline revenue + revenue of new customers (bought now, not in the baseline) -
revenue of lost customers (bought in the baseline, not now) + the change from customers who bought in both
= current revenue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EFFECTS = ("volume", "mix", "price")
BRIDGE_STEPS = ("baseline", "new_customers", "lost_customers", "returning_change", "current")


@dataclass(frozen=True)
class PriceVolumeMix:
    baseline_revenue: float
    current_revenue: float
    volume: float
    mix: float
    price: float
    items: pd.DataFrame  # per item: quantities, prices, revenue and its price and mix effects

    @property
    def change(self) -> float:
        return self.current_revenue - self.baseline_revenue

    def effects(self) -> dict[str, float]:
        return {"volume": self.volume, "mix": self.mix, "price": self.price}


def _per_item(lines: pd.DataFrame, item: str) -> pd.DataFrame:
    numbers = lines.astype({"quantity": "float64", "revenue": "float64"})
    return numbers.groupby(item, sort=True).agg(quantity=("quantity", "sum"), revenue=("revenue", "sum"))


def price_volume_mix(
    baseline: pd.DataFrame, current: pd.DataFrame, item: str = "product_id"
) -> PriceVolumeMix:
    """Split ``R_current - R_baseline`` into volume, mix and price. Each frame has ``item``, ``quantity``
    (positive) and ``revenue`` per line."""
    for name, frame in (("baseline", baseline), ("current", current)):
        if (frame["quantity"] <= 0).any():
            raise ValueError(
                f"{name}: quantities must be positive; leave returns out of a price/volume split"
            )
    b, c = _per_item(baseline, item), _per_item(current, item)
    items = b.merge(c, how="outer", left_index=True, right_index=True, suffixes=("_baseline", "_current"))
    items = items.fillna(0.0)
    qb, qc = items["quantity_baseline"], items["quantity_current"]
    rb, rc = items["revenue_baseline"], items["revenue_current"]
    price_c = (rc / qc).where(qc > 0)
    price_b = (rb / qb).where(qb > 0).fillna(price_c)  # a new item is valued at its current price
    total_b, total_c = float(qb.sum()), float(qc.sum())
    revenue_b, revenue_c = float(rb.sum()), float(rc.sum())
    share_b = qb / total_b if total_b else qb * 0.0
    share_c = qc / total_c if total_c else qc * 0.0
    average_b = revenue_b / total_b if total_b else 0.0
    volume = (total_c - total_b) * average_b
    item_mix = total_c * (share_c - share_b) * price_b.fillna(0.0)
    item_price = (qc * (price_c - price_b)).fillna(0.0)
    if not total_b:
        # Nothing sold in the baseline: there is no baseline price or mix, so the whole change is volume.
        volume, item_mix, item_price = revenue_c, item_mix * 0.0, item_price * 0.0
    items = items.assign(
        price_baseline=price_b, price_current=price_c, mix_effect=item_mix, price_effect=item_price
    )
    return PriceVolumeMix(
        baseline_revenue=revenue_b,
        current_revenue=revenue_c,
        volume=float(volume),
        mix=float(item_mix.sum()),
        price=float(item_price.sum()),
        items=items.reset_index(),
    )


def customer_bridge(baseline: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """The steps from baseline to current revenue, by customer: one row per step with ``customers`` and
    ``amount``; the middle three amounts add up to current minus baseline. Frames have ``customer_id``
    and ``revenue``."""
    rb = baseline.groupby("customer_id")["revenue"].sum()
    rc = current.groupby("customer_id")["revenue"].sum()
    new = rc.index.difference(rb.index)
    lost = rb.index.difference(rc.index)
    both = rb.index.intersection(rc.index)
    rows = [
        ("baseline", len(rb), float(rb.sum())),
        ("new_customers", len(new), float(rc.loc[new].sum())),
        ("lost_customers", len(lost), -float(rb.loc[lost].sum())),
        ("returning_change", len(both), float(rc.loc[both].sum() - rb.loc[both].sum())),
        ("current", len(rc), float(rc.sum())),
    ]
    return pd.DataFrame(rows, columns=["step", "customers", "amount"])


def reconciles(parts: list[float] | np.ndarray, total: float, scale: float = 1.0) -> bool:
    """Whether parts add up to total, to floating-point accuracy relative to the amounts involved."""
    return bool(abs(float(np.sum(parts)) - total) <= 1e-9 * max(1.0, abs(scale), abs(total)))


LEVELS = (
    ("total", None),
    ("region", "region"),
    ("segment", "segment"),
    ("category", "category"),
    ("sales_owner", "sales_owner"),
)


def drivers_by_level(
    sales: pd.DataFrame, period: pd.Timestamp, baseline: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Price / volume / mix (over products) and the customer bridge from ``baseline`` to ``period``, for the
    total and each region, segment, category and sales owner: the same levels as the forecasts. ``sales``
    are completed order lines with ``period_start``, ``customer_id``, ``product_id``, ``quantity``,
    ``revenue`` and the level columns."""
    sales = sales[sales["period_start"].isin([baseline, period])]
    pvm_rows, bridge_rows = [], []
    for level, column in LEVELS:
        groups = [("all", sales)] if column is None else list(sales.groupby(sales[column].fillna("unknown")))
        for member, part in groups:
            before, now = part[part["period_start"] == baseline], part[part["period_start"] == period]
            key = {"series_id": f"{level}:{member}", "level": level, "member": member}
            split = price_volume_mix(before, now)
            pvm_rows.append(
                {
                    **key,
                    "baseline_revenue": split.baseline_revenue,
                    "current_revenue": split.current_revenue,
                    "volume_effect": split.volume,
                    "mix_effect": split.mix,
                    "price_effect": split.price,
                }
            )
            bridge = customer_bridge(before, now).assign(step_order=range(1, len(BRIDGE_STEPS) + 1), **key)
            bridge_rows.append(bridge)
    pvm = pd.DataFrame(pvm_rows)
    bridges = pd.concat(bridge_rows, ignore_index=True) if bridge_rows else pd.DataFrame()
    return pvm, bridges
