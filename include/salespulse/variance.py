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
- ``tracking_signal`` = sum(error) / mean(|error|), from ``min_tracking_periods`` months on. Its range is
  +/- the number of months; beyond +/-4 the errors lean one way more than chance explains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import pandas as pd

from salespulse.forecast import complete_months, mase_scale

FACT_COLUMNS = [
    "period_start", "series_id", "level", "member", "horizon", "forecast_as_of", "model",
    "actual", "forecast", "lo80", "hi80", "lo95", "hi95", "target",
    "variance_abs", "variance_pct", "target_variance_abs", "target_variance_pct",
    "within_interval_80", "within_interval_95",
    "window_periods", "bias", "wape", "mase", "tracking_signal",
    "flag_variance", "flag_tracking_signal", "flag_interval", "flag_target", "flagged", "flag_reasons",
    "variance_pct_threshold", "tracking_signal_threshold", "target_pct_threshold",
]  # fmt: skip

FLAG_COLUMNS = ["flag_variance", "flag_tracking_signal", "flag_interval", "flag_target"]


@dataclass(frozen=True)
class VarianceRules:
    """Which leads are reported, how far the rolling metrics look back, and when a row is flagged."""

    horizons: tuple[int, ...] = (1, 3)
    window: int = 6
    min_tracking_periods: int = 3
    variance_pct_threshold: float = 0.10
    tracking_signal_threshold: float = 4.0
    target_pct_threshold: float = 0.10
    season_length: int = 12

    def __post_init__(self) -> None:
        if not self.horizons or any(h < 1 for h in self.horizons):
            raise ValueError(f"variance horizons must be whole months >= 1, got {self.horizons}")
        if self.window < 1 or self.min_tracking_periods < 1:
            raise ValueError("the variance window and minimum tracking periods must be >= 1")
        if min(self.variance_pct_threshold, self.tracking_signal_threshold, self.target_pct_threshold) <= 0:
            raise ValueError("variance thresholds must be positive")


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


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
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

    window = (
        rows.groupby(["series_id", "horizon"])
        .agg(
            window_periods=("error", "size"),
            sum_error=("error", "sum"),
            sum_abs_error=("abs_error", "sum"),
            sum_actual=("actual", "sum"),
            sum_abs_actual=("actual", lambda s: s.abs().sum()),
            mase=("scaled_error", "mean"),
        )
        .reset_index()
    )
    window["bias"] = _ratio(window["sum_error"], window["sum_actual"])
    window["wape"] = _ratio(window["sum_abs_error"], window["sum_abs_actual"])
    mad = window["sum_abs_error"] / window["window_periods"]
    enough = window["window_periods"] >= rules.min_tracking_periods
    window["tracking_signal"] = _ratio(window["sum_error"], mad).where(enough)

    facts = rows[rows["period_start"] == period_ts].merge(
        window[["series_id", "horizon", "window_periods", "bias", "wape", "mase", "tracking_signal"]],
        on=["series_id", "horizon"],
    )
    tg = targets.assign(period_start=pd.to_datetime(targets["period_start"]))
    facts = facts.merge(
        tg[["level", "member", "period_start", "target_amount"]].rename(columns={"target_amount": "target"}),
        on=["level", "member", "period_start"],
        how="left",
    )
    facts["variance_abs"] = facts["error"]
    facts["variance_pct"] = _ratio(facts["error"], facts["forecast"].abs())
    facts["target_variance_abs"] = facts["actual"] - facts["target"]
    facts["target_variance_pct"] = _ratio(facts["target_variance_abs"], facts["target"].abs())
    facts["within_interval_80"] = facts["actual"].between(facts["lo80"], facts["hi80"])
    facts["within_interval_95"] = facts["actual"].between(facts["lo95"], facts["hi95"])
    facts = _flag(facts, rules)[FACT_COLUMNS]
    return facts.sort_values(["level", "member", "horizon"]).reset_index(drop=True)


def _flag(facts: pd.DataFrame, rules: VarianceRules) -> pd.DataFrame:
    """Flag columns, the thresholds they used, and one readable reason per row."""
    facts = facts.copy()
    facts["flag_variance"] = facts["variance_pct"].abs() > rules.variance_pct_threshold
    facts["flag_tracking_signal"] = facts["tracking_signal"].abs() > rules.tracking_signal_threshold
    facts["flag_interval"] = ~facts["within_interval_95"]
    facts["flag_target"] = facts["target_variance_pct"].abs() > rules.target_pct_threshold
    facts[FLAG_COLUMNS] = facts[FLAG_COLUMNS].fillna(False).astype(bool)
    facts["flagged"] = facts[FLAG_COLUMNS].any(axis=1)
    facts["variance_pct_threshold"] = rules.variance_pct_threshold
    facts["tracking_signal_threshold"] = rules.tracking_signal_threshold
    facts["target_pct_threshold"] = rules.target_pct_threshold
    facts["flag_reasons"] = [_reasons(row, rules) for row in facts.to_dict(orient="records")]
    return facts


def _reasons(row: dict[str, object], rules: VarianceRules) -> str | None:
    reasons = []
    if row["flag_variance"]:
        limit = rules.variance_pct_threshold
        reasons.append(f"vs forecast {row['variance_pct']:+.1%} (limit ±{limit:.0%})")
    if row["flag_tracking_signal"]:
        limit = rules.tracking_signal_threshold
        reasons.append(f"tracking signal {row['tracking_signal']:+.1f} (limit ±{limit:g})")
    if row["flag_interval"]:
        reasons.append("actual outside the 95% interval")
    if row["flag_target"]:
        limit = rules.target_pct_threshold
        reasons.append(f"vs target {row['target_variance_pct']:+.1%} (limit ±{limit:.0%})")
    return "; ".join(reasons) or None
