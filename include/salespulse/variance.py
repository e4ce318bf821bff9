"""Forecast-vs-actual-vs-target variance facts: the metrics, their rolling windows, and the flags.

One sign convention everywhere: **error = actual - forecast**. A positive variance or bias means sales
beat the forecast (the forecast was too low); a negative one means the forecast was too high. The same
holds against the target (actual - target).

For one reported month P, each series and lead h gets one row. Its forecast is the one made h months
ahead: the first snapshot whose horizon-h month is P (later re-forecasts of P at the same lead do not
replace it, so the forecast judged is the one that existed at the time). Rolling metrics look back over
the last ``window`` months up to and including P, at the same lead:

- ``bias`` = sum(error) / sum(actual): the share by which actuals ran above (+) or below (-) forecast;
- ``wape`` = sum(|error|) / sum(|actual|);
- ``mase`` = mean(|error| / scale), where scale is the in-sample mean absolute seasonal-naive change
  (12 months back; 1 month back on a series with a year or less of history) of the actuals the forecast
  was made from, as in the forecast backtest;
- ``tracking_signal`` = sum(error) / mean(|error|), from ``min_tracking_periods`` months on: the classic
  measure, shown for reading. Its spread grows with the window (about 1.25 * sqrt(months) for errors that
  lean no way), so a fixed limit on it fires on honest forecasts: at +/-4 over 6 months, on 21% of them;
- ``tracking_z`` = sum(error) / sqrt(sum(sigma^2)), from ``min_tracking_periods`` months on, with each
  forecast's sigma read off the 95% interval it stated. It is the window's cumulative error in units of the
  spread the forecasts themselves claimed, so it is about standard normal when the forecast behaves as
  stated, whatever the window.

What is flagged, and why (each row says which rule fired in ``flag_reasons``):

- ``flag_interval``: the actual fell outside the 95% interval the forecast stated at that lead;
- ``flag_tracking_signal``: ``|tracking_z|`` above its limit (2.576, a 1% chance for a forecast behaving as
  stated): the errors lean one way beyond what the intervals allow;
- ``material``: ``|actual - forecast|`` is at least ``materiality_share`` of the month's total actual and at
  least ``materiality_amount``; a miss smaller than that is not worth a manager's time, however unusual;
- ``flag_forecast`` = (``flag_interval`` or ``flag_tracking_signal``) and ``material``;
- ``flag_target``: ``|actual - target| / target`` above its limit, and the amount material; a separate flag,
  since a target is a goal, not a statement of what was likely;
- ``flagged`` = ``flag_forecast`` or ``flag_target``.

On data that behaves as forecast, ``flag_forecast`` fires on about 5% (interval) plus a little (tracking) of
rows before materiality; ``tests/test_variance.py`` checks that rate on simulated series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import pandas as pd

from salespulse.forecast import Z95, complete_months, mase_scale

FACT_COLUMNS = [
    "period_start", "series_id", "level", "member", "horizon", "forecast_as_of", "model",
    "actual", "forecast", "lo80", "hi80", "lo95", "hi95", "target",
    "variance_abs", "variance_pct", "target_variance_abs", "target_variance_pct",
    "within_interval_80", "within_interval_95",
    "window_periods", "bias", "wape", "mase", "tracking_signal", "tracking_z",
    "flag_interval", "flag_tracking_signal", "material", "flag_forecast", "flag_target", "flagged",
    "flag_reasons", "materiality_threshold", "tracking_z_threshold", "target_pct_threshold",
]  # fmt: skip

# The flags counted in a run's summary and alert, in the order they are read.
FLAG_COLUMNS = ["flag_forecast", "flag_interval", "flag_tracking_signal", "flag_target"]


@dataclass(frozen=True)
class VarianceRules:
    """Which leads are reported, how far the rolling metrics look back, and when a row is flagged."""

    horizons: tuple[int, ...] = (1, 3)
    window: int = 6
    min_tracking_periods: int = 3
    tracking_z_threshold: float = 2.576
    target_pct_threshold: float = 0.10
    materiality_share: float = 0.01
    materiality_amount: float = 0.0
    season_length: int = 12

    def __post_init__(self) -> None:
        if not self.horizons or any(h < 1 for h in self.horizons):
            raise ValueError(f"variance horizons must be whole months >= 1, got {self.horizons}")
        if self.window < 1 or self.min_tracking_periods < 1:
            raise ValueError("the variance window and minimum tracking periods must be >= 1")
        if min(self.tracking_z_threshold, self.target_pct_threshold) <= 0:
            raise ValueError("variance thresholds must be positive")
        if not 0 <= self.materiality_share < 1 or self.materiality_amount < 0:
            raise ValueError(
                "materiality: a share of the total in [0, 1) and an amount >= 0, got "
                f"{self.materiality_share} and {self.materiality_amount}"
            )


def window_start(period: date, rules: VarianceRules) -> date:
    return (pd.Timestamp(period) - pd.DateOffset(months=rules.window - 1)).date()


def first_forecasts(snapshots: pd.DataFrame, horizons: tuple[int, ...]) -> pd.DataFrame:
    """The forecast of each (series, month, lead) as first made: earliest as-of date, and within that date
    the latest run (a re-run of the same date replaces its forecast)."""
    picked = snapshots[snapshots["horizon"].isin(horizons)]
    picked = picked.sort_values(
        ["series_id", "period_start", "horizon", "as_of_date", "created_at", "run_id"],
        ascending=[True, True, True, True, False, False],
    )
    return picked.drop_duplicates(["series_id", "period_start", "horizon"], keep="first").rename(
        columns={"as_of_date": "forecast_as_of"}
    )


def actuals_with_zeros(series: pd.DataFrame, until: date) -> pd.DataFrame:
    """Monthly actuals per series with months of no sales as zero, up to the month before ``until``."""
    return complete_months(series, until).rename(columns={"revenue": "actual"})


def scale_per_origin(actuals: pd.DataFrame, origins: pd.DataFrame, season_length: int) -> pd.Series:
    """MASE scale for each (series, forecast origin month): the history the forecast was made from."""
    history = {sid: g.sort_values("period_start") for sid, g in actuals.groupby("series_id")}
    scales = []
    for series_id, origin in origins[["series_id", "origin"]].itertuples(index=False):
        frame = history.get(series_id)
        if frame is None:
            scales.append(math.nan)
            continue
        train = frame.loc[frame["period_start"] < origin, "actual"].to_numpy(float)
        scales.append(mase_scale(train, season_length))
    return pd.Series(scales, index=origins.index, dtype=float)


def share_of(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """numerator / denominator as floats, empty (NaN) where the denominator is 0."""
    out = numerator / denominator.where(denominator != 0)
    return out.astype(float)


def variance_facts(
    actuals: pd.DataFrame,
    forecasts: pd.DataFrame,
    targets: pd.DataFrame,
    period: date,
    rules: VarianceRules,
) -> pd.DataFrame:
    """The variance rows of month ``period``, one per series and lead that had a forecast for it.

    ``actuals``: series_id, level, member, period_start, actual (zero months filled, full history, for the
    MASE scale). ``forecasts``: first forecasts (:func:`first_forecasts`) for the months of the window.
    ``targets``: level, member, period_start, target_amount.
    """
    period_ts = pd.Timestamp(period)
    start = pd.Timestamp(window_start(period, rules))
    fc = forecasts[
        (pd.to_datetime(forecasts["period_start"]) >= start)
        & (pd.to_datetime(forecasts["period_start"]) <= period_ts)
    ].copy()
    if fc.empty:
        return pd.DataFrame(columns=FACT_COLUMNS)
    fc["period_start"] = pd.to_datetime(fc["period_start"])
    acts = actuals.assign(period_start=pd.to_datetime(actuals["period_start"]))
    rows = fc.merge(
        acts[["series_id", "period_start", "actual"]], on=["series_id", "period_start"], how="left"
    )
    # Actuals are zero-filled from each series' first month: a month with no row sold nothing.
    rows["actual"] = rows["actual"].fillna(0.0)
    rows["origin"] = pd.to_datetime(rows["forecast_as_of"]).dt.to_period("M").dt.to_timestamp()
    rows["scale"] = scale_per_origin(acts, rows, rules.season_length)
    rows["error"] = rows["actual"] - rows["forecast"]
    rows["abs_error"] = rows["error"].abs()
    rows["scaled_error"] = rows["abs_error"] / rows["scale"].where(rows["scale"] > 0)
    rows["stated_var"] = ((rows["hi95"] - rows["lo95"]) / (2 * Z95)) ** 2

    window = (
        rows.groupby(["series_id", "horizon"])
        .agg(
            window_periods=("error", "size"),
            sum_error=("error", "sum"),
            sum_abs_error=("abs_error", "sum"),
            sum_actual=("actual", "sum"),
            sum_abs_actual=("actual", lambda s: s.abs().sum()),
            mase=("scaled_error", "mean"),
            sum_stated_var=("stated_var", "sum"),
        )
        .reset_index()
    )
    window["bias"] = share_of(window["sum_error"], window["sum_actual"])
    window["wape"] = share_of(window["sum_abs_error"], window["sum_abs_actual"])
    mad = window["sum_abs_error"] / window["window_periods"]
    enough = window["window_periods"] >= rules.min_tracking_periods
    window["tracking_signal"] = share_of(window["sum_error"], mad).where(enough)
    window["tracking_z"] = share_of(window["sum_error"], window["sum_stated_var"] ** 0.5).where(enough)

    metrics = ["window_periods", "bias", "wape", "mase", "tracking_signal", "tracking_z"]
    facts = rows[rows["period_start"] == period_ts].merge(
        window[["series_id", "horizon", *metrics]], on=["series_id", "horizon"]
    )
    tg = targets.assign(period_start=pd.to_datetime(targets["period_start"]))
    facts = facts.merge(
        tg[["level", "member", "period_start", "target_amount"]].rename(columns={"target_amount": "target"}),
        on=["level", "member", "period_start"],
        how="left",
    )
    facts["variance_abs"] = facts["error"]
    facts["variance_pct"] = share_of(facts["error"], facts["forecast"].abs())
    facts["target_variance_abs"] = facts["actual"] - facts["target"]
    facts["target_variance_pct"] = share_of(facts["target_variance_abs"], facts["target"].abs())
    facts["within_interval_80"] = facts["actual"].between(facts["lo80"], facts["hi80"])
    facts["within_interval_95"] = facts["actual"].between(facts["lo95"], facts["hi95"])
    facts["materiality_threshold"] = materiality_threshold(acts[acts["period_start"] == period_ts], rules)
    facts = _flag(facts, rules)[FACT_COLUMNS]
    return facts.sort_values(["level", "member", "horizon"]).reset_index(drop=True)


def materiality_threshold(actuals: pd.DataFrame, rules: VarianceRules) -> float:
    """The smallest miss worth flagging this month: ``materiality_share`` of the month's total actual, and
    no less than ``materiality_amount``. ``actuals``: the month's actual per series. The total is the
    largest sum of one level's members (each level's members add up to the total, and the total level is
    itself one member)."""
    per_level = actuals.drop_duplicates(["series_id"]).groupby("level")["actual"].sum()
    total = float(per_level.abs().max()) if len(per_level) else 0.0
    return max(rules.materiality_share * total, rules.materiality_amount)


def _flag(facts: pd.DataFrame, rules: VarianceRules) -> pd.DataFrame:
    """Flag columns, the thresholds they used, and one readable reason per row."""
    facts = facts.copy()
    facts["flag_interval"] = ~facts["within_interval_95"].astype(bool)
    facts["flag_tracking_signal"] = (facts["tracking_z"].abs() > rules.tracking_z_threshold).fillna(False)
    facts["material"] = facts["variance_abs"].abs() >= facts["materiality_threshold"]
    facts["flag_forecast"] = (facts["flag_interval"] | facts["flag_tracking_signal"]) & facts["material"]
    target_material = facts["target_variance_abs"].abs() >= facts["materiality_threshold"]
    facts["flag_target"] = (facts["target_variance_pct"].abs() > rules.target_pct_threshold) & target_material
    flags = [*FLAG_COLUMNS, "material"]
    facts[flags] = facts[flags].fillna(False).astype(bool)
    facts["flagged"] = facts["flag_forecast"] | facts["flag_target"]
    facts["tracking_z_threshold"] = rules.tracking_z_threshold
    facts["target_pct_threshold"] = rules.target_pct_threshold
    facts["flag_reasons"] = [_reasons(row, rules) for row in facts.to_dict(orient="records")]
    return facts


def _reasons(row: dict[str, object], rules: VarianceRules) -> str | None:
    """Why a flagged row is flagged, in words a manager reads; None when it is not flagged."""
    reasons = []
    if row["flag_forecast"]:
        if row["flag_interval"]:
            low, high = f"{row['lo95']:,.0f}", f"{row['hi95']:,.0f}"
            reasons.append(f"actual {row['actual']:,.0f} outside the stated 95% interval [{low}, {high}]")
        if row["flag_tracking_signal"]:
            limit = rules.tracking_z_threshold
            reasons.append(
                f"errors lean one way: {row['tracking_z']:+.1f} sigma over {row['window_periods']} months "
                f"(limit ±{limit:g})"
            )
    if row["flag_target"]:
        limit = rules.target_pct_threshold
        reasons.append(f"vs target {row['target_variance_pct']:+.1%} (limit ±{limit:.0%})")
    return "; ".join(reasons) or None


def bias_by_level(
    facts: pd.DataFrame, period: date, months: int = 6, by: tuple[str, ...] = ("level",)
) -> pd.DataFrame:
    """Per level (or per ``by``, such as level and member) and lead over the ``months`` reported months up
    to ``period``: how far forecasts ran off (``bias`` = sum(actual - forecast) / sum(actual): +0.08 means
    actuals ran 8% above forecast, so forecasts were low), how large the errors were (``wape``), and how
    often the 80% and 95% intervals held. Coherent forecasts give every level the total's bias; the members
    show where it comes from."""
    columns = [*by, "horizon", "months", "comparisons", "bias", "wape", "coverage_80", "coverage_95"]
    if facts.empty:
        return pd.DataFrame(columns=columns)
    periods = pd.to_datetime(facts["period_start"])
    end = pd.Timestamp(period)
    start = end - pd.DateOffset(months=months - 1)
    recent = facts[(periods >= start) & (periods <= end)].assign(
        error=lambda f: f["actual"] - f["forecast"],
        abs_error=lambda f: (f["actual"] - f["forecast"]).abs(),
        abs_actual=lambda f: f["actual"].abs(),
        in80=lambda f: f["within_interval_80"].astype(float),
        in95=lambda f: f["within_interval_95"].astype(float),
    )
    grouped = recent.groupby([*by, "horizon"]).agg(
        months=("period_start", "nunique"),
        comparisons=("error", "size"),
        sum_error=("error", "sum"),
        sum_abs_error=("abs_error", "sum"),
        sum_actual=("actual", "sum"),
        sum_abs_actual=("abs_actual", "sum"),
        coverage_80=("in80", "mean"),
        coverage_95=("in95", "mean"),
    )
    grouped["bias"] = share_of(grouped["sum_error"], grouped["sum_actual"])
    grouped["wape"] = share_of(grouped["sum_abs_error"], grouped["sum_abs_actual"])
    return grouped.reset_index()[columns]
