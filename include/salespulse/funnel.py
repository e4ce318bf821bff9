"""The funnel forecast: open opportunities x their stage's win rate, learned from the deals that closed,
placed in the month they are expected to close; stage conversion and sales-cycle length beside it; and
the statistical revenue forecast adjusted by the pipeline for the near months.

The method, in the order it runs:

1. **Stage win rates.** Over the deals closed in the look-back window before the as-of date: a won deal
   went through every open stage; a lost deal reached the stages up to the one it was closed from
   (``last_open_stage``). For each stage, win rate = deals won / deals that reached it, and conversion =
   deals that reached the next stage (or won, from the last one) / deals that reached it. The funnel is
   taken to be linear (prospecting -> qualification -> proposal -> negotiation), as the CRM's stages are.
   A stage with fewer than ``min_deals`` closed deals behind it uses the reps' own probability instead.
2. **Sales cycle.** Days from created to closed, for the won deals (median and quartiles), and for all
   closed deals.
3. **Placement.** An open deal is expected in the month of its ``expected_close_date``. When that date is
   missing or already past, in the month when the median won deal of its age would close
   (``as_of + max(0, median cycle - age)``), at the earliest the as-of month.
4. **Funnel forecast** per level (total, region, segment, sales owner) and month: open deals, pipeline
   amount and expected bookings = sum of amount x win rate.
5. **Combined forecast** for the first ``funnel_months`` months: the statistical forecast already
   contains the usual flow of won deals (it extrapolates revenue, which they are part of), so the funnel
   contributes how far this pipeline is above or below that flow:
   ``combined = max(0, statistical + expected bookings - mean monthly won amount over the last 12
   months)``. After ``funnel_months`` the combined forecast is the statistical one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from salespulse.model import FUNNEL_STAGES

OPEN_STAGES = FUNNEL_STAGES[:4]
FUNNEL_LEVELS = (("region", "region"), ("segment", "segment"), ("sales_owner", "sales_owner"))


@dataclass(frozen=True)
class FunnelRules:
    lookback_days: int = 365  # closed deals this far back teach the win rates
    min_deals: int = 20  # below this many closed deals behind a stage, the reps' probability is used
    horizon: int = 6  # months forecast, from the as-of month
    funnel_months: int = 2  # months where the combined forecast takes the pipeline into account


def open_on(opportunities: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """The deals open on ``as_of``: in an open stage, created before that date."""
    created = pd.to_datetime(opportunities["created_date"])
    return opportunities[opportunities["stage"].isin(OPEN_STAGES) & (created < pd.Timestamp(as_of))]


def _closed_before(opportunities: pd.DataFrame, as_of: date, rules: FunnelRules) -> pd.DataFrame:
    closed_date = pd.to_datetime(opportunities["closed_date"])
    start = pd.Timestamp(as_of) - pd.Timedelta(days=rules.lookback_days)
    is_closed = opportunities["stage"].isin(["closed_won", "closed_lost"])
    return opportunities[is_closed & (closed_date < pd.Timestamp(as_of)) & (closed_date >= start)]


def stage_rates(opportunities: pd.DataFrame, as_of: date, rules: FunnelRules = FunnelRules()) -> pd.DataFrame:
    """Per open stage: the deals open in it now (count and amount), the closed deals that reached it, how
    many were won, win rate, conversion to the next stage, the reps' mean probability on the open deals
    there, and the probability used."""
    closed = _closed_before(opportunities, as_of, rules)
    won = closed["stage"] == "closed_won"
    order = {stage: i for i, stage in enumerate(OPEN_STAGES)}
    reached = np.where(won, len(OPEN_STAGES) - 1, closed["last_open_stage"].map(order).fillna(-1).to_numpy())
    open_deals = open_on(opportunities, as_of)
    rows = []
    for i, stage in enumerate(OPEN_STAGES):
        behind = int((reached >= i).sum())
        won_here = int((won.to_numpy() & (reached >= i)).sum())
        onward = int((reached >= i + 1).sum()) if i + 1 < len(OPEN_STAGES) else won_here
        rep = open_deals.loc[open_deals["stage"] == stage, "probability"]
        rep_mean = float(rep[rep.between(0, 1)].mean()) if rep.between(0, 1).any() else np.nan
        win_rate = won_here / behind if behind else np.nan
        learned = behind >= rules.min_deals
        rows.append(
            {
                "stage": stage,
                "open_deals": int((open_deals["stage"] == stage).sum()),
                "open_amount": float(open_deals.loc[open_deals["stage"] == stage, "amount"].sum()),
                "deals_reached": behind,
                "deals_won": won_here,
                "win_rate": win_rate,
                "conversion_to_next": onward / behind if behind else np.nan,
                "rep_probability": rep_mean,
                "probability_used": win_rate if learned else rep_mean,
                "source": "history" if learned else "rep",
            }
        )
    return pd.DataFrame(rows)


def cycle_lengths(
    opportunities: pd.DataFrame, as_of: date, rules: FunnelRules = FunnelRules()
) -> pd.DataFrame:
    """Days from created to closed: won deals and all closed deals (count, median, quartiles, mean)."""
    closed = _closed_before(opportunities, as_of, rules)
    days = (pd.to_datetime(closed["closed_date"]) - pd.to_datetime(closed["created_date"])).dt.days
    rows = []
    for outcome, part in (("won", days[closed["stage"] == "closed_won"]), ("closed", days)):
        rows.append(
            {
                "outcome": outcome,
                "deals": len(part),
                "median_days": float(part.median()) if len(part) else np.nan,
                "p25_days": float(part.quantile(0.25)) if len(part) else np.nan,
                "p75_days": float(part.quantile(0.75)) if len(part) else np.nan,
                "mean_days": float(part.mean()) if len(part) else np.nan,
            }
        )
    return pd.DataFrame(rows)


def expected_close_month(open_deals: pd.DataFrame, as_of: date, median_cycle_days: float) -> pd.Series:
    """The first day of the month each open deal is expected to close in (step 3 of the method)."""
    as_of_ts = pd.Timestamp(as_of)
    stated = pd.to_datetime(open_deals["expected_close_date"])
    age = (as_of_ts - pd.to_datetime(open_deals["created_date"])).dt.days
    remaining = np.maximum(0.0, (median_cycle_days if np.isfinite(median_cycle_days) else 0.0) - age)
    estimated = as_of_ts + pd.to_timedelta(remaining, unit="D")
    when = stated.where(stated.notna() & (stated >= as_of_ts), estimated)
    return when.dt.to_period("M").dt.to_timestamp()


def funnel_forecast(
    opportunities: pd.DataFrame,
    customers: pd.DataFrame,
    as_of: date,
    rules: FunnelRules = FunnelRules(),
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Expected bookings per level, member and month from the deals open on ``as_of``.

    ``opportunities`` is the funnel as known on ``as_of`` (core.fct_opportunity); ``customers`` has
    customer_id, region, segment, sales_owner. Returns (forecast rows, stage rates, cycle lengths).
    """
    rates = stage_rates(opportunities, as_of, rules)
    cycles = cycle_lengths(opportunities, as_of, rules)
    median_won = float(cycles.loc[cycles["outcome"] == "won", "median_days"].iloc[0])
    open_deals = open_on(opportunities, as_of)
    probability = open_deals["stage"].map(rates.set_index("stage")["probability_used"]).fillna(0.0)
    deals = open_deals.assign(
        period_start=expected_close_month(open_deals, as_of, median_won),
        win_probability=probability.to_numpy(),
        expected=open_deals["amount"].to_numpy(float) * probability.to_numpy(),
    ).merge(customers[["customer_id", "region", "segment", "sales_owner"]], on="customer_id", how="left")
    first = pd.Timestamp(as_of).to_period("M").to_timestamp()
    months = pd.date_range(first, periods=rules.horizon, freq="MS")
    frames = []
    for level, column in (("total", None), *FUNNEL_LEVELS):
        member = "all" if column is None else deals[column].fillna("unknown").astype(str)
        grouped = (
            deals.assign(level=level, member=member)
            .groupby(["level", "member", "period_start"])
            .agg(
                open_deals=("opportunity_id", "size"),
                pipeline_amount=("amount", "sum"),
                expected_bookings=("expected", "sum"),
            )  # fmt: skip
            .reset_index()
        )
        members = [("total", "all")] if column is None else [(level, m) for m in sorted(set(member))]
        grid = pd.MultiIndex.from_tuples(
            [(lv, m, p) for lv, m in members for p in months], names=["level", "member", "period_start"]
        )
        frames.append(
            grouped.set_index(["level", "member", "period_start"]).reindex(grid, fill_value=0).reset_index()
        )
    forecast = pd.concat(frames, ignore_index=True)
    forecast.insert(0, "series_id", forecast["level"] + ":" + forecast["member"])
    forecast["horizon"] = (
        (forecast["period_start"].dt.year - first.year) * 12
        + forecast["period_start"].dt.month
        - first.month
        + 1
    )
    return forecast, rates, cycles


def monthly_bookings(opportunities: pd.DataFrame, customers: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """Mean monthly won amount per level and member over the 12 complete months before ``as_of``."""
    first = pd.Timestamp(as_of).to_period("M").to_timestamp()
    start = first - pd.DateOffset(months=12)
    closed = pd.to_datetime(opportunities["closed_date"])
    won = opportunities[
        (opportunities["stage"] == "closed_won") & (closed >= start) & (closed < first)
    ].merge(customers[["customer_id", "region", "segment", "sales_owner"]], on="customer_id", how="left")
    rows = [{"series_id": "total:all", "typical_bookings": float(won["amount"].sum()) / 12}]
    for level, column in FUNNEL_LEVELS:
        for member, part in won.groupby(won[column].fillna("unknown").astype(str)):
            rows.append(
                {"series_id": f"{level}:{member}", "typical_bookings": float(part["amount"].sum()) / 12}
            )
    return pd.DataFrame(rows, columns=["series_id", "typical_bookings"])


def combine(
    funnel: pd.DataFrame, statistical: pd.DataFrame, typical: pd.DataFrame, rules: FunnelRules = FunnelRules()
) -> pd.DataFrame:
    """The funnel rows with the statistical forecast and the combined forecast (step 5 of the method).

    ``statistical``: series_id, period_start, forecast (a published snapshot). Series the statistical
    forecast doesn't have keep a null statistical and combined forecast.
    """
    out = funnel.merge(
        statistical[["series_id", "period_start", "forecast"]].rename(
            columns={"forecast": "statistical_forecast"}
        ),
        on=["series_id", "period_start"],
        how="left",
    ).merge(typical, on="series_id", how="left")
    out["typical_bookings"] = out["typical_bookings"].fillna(0.0)
    adjusted = (out["statistical_forecast"] + out["expected_bookings"] - out["typical_bookings"]).clip(
        lower=0.0
    )
    out["combined_forecast"] = out["statistical_forecast"].where(
        out["horizon"] > rules.funnel_months, adjusted
    )
    return out
