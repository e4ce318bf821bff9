"""Statistical sales forecasts per series, each model chosen by a rolling-origin backtest.

Series travel as one long table ``(series_id, period_start, revenue)``. Candidate models share
a scikit-learn-like interface (``fit(y)`` then ``predict(h)``) and the candidate list is data.
For every series each candidate is backtested over several forecast origins with horizon = the
forecast horizon, scored by MASE (and WAPE), and the best one is refitted on the whole history
to make the forecast with 80% and 95% prediction intervals.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

import numpy as np
import pandas as pd
from scipy.stats import norm
from statsmodels.tsa.exponential_smoothing.ets import ETSModel
from threadpoolctl import threadpool_limits

Z80 = float(norm.ppf(0.90))
Z95 = float(norm.ppf(0.975))
INTERVAL_COLUMNS = ["mean", "lo80", "hi80", "lo95", "hi95"]
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class SeriesTooShort(ValueError):
    """The model needs more history than the series has."""


class Forecaster(Protocol):
    name: str

    def fit(self, y: np.ndarray) -> Forecaster: ...

    def predict(self, h: int) -> pd.DataFrame: ...


def _normal_intervals(mean: np.ndarray, sd: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "mean": mean,
            "lo80": mean - Z80 * sd,
            "hi80": mean + Z80 * sd,
            "lo95": mean - Z95 * sd,
            "hi95": mean + Z95 * sd,
        }
    )


@dataclass
class Naive:
    """Last value carried forward; the random-walk interval widens with the square root of the horizon."""

    name: str = "naive"
    _last: float = 0.0
    _sd: float = 0.0

    def fit(self, y: np.ndarray) -> Naive:
        if len(y) < 1:
            raise SeriesTooShort("naive needs one observation")
        self._last = float(y[-1])
        steps = np.diff(y)
        self._sd = float(np.sqrt(np.mean(steps**2))) if len(steps) else 0.0
        return self

    def predict(self, h: int) -> pd.DataFrame:
        k = np.arange(1, h + 1)
        return _normal_intervals(np.full(h, self._last), self._sd * np.sqrt(k))


@dataclass
class SeasonalNaive:
    """The value of the same month one season earlier."""

    season_length: int = 12
    name: str = "seasonal_naive"
    _season: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _sd: float = 0.0

    def fit(self, y: np.ndarray) -> SeasonalNaive:
        m = self.season_length
        if len(y) < m + 1:
            raise SeriesTooShort(f"seasonal naive needs more than {m} observations")
        self._season = np.asarray(y[-m:], dtype=float)
        residuals = y[m:] - y[:-m]
        self._sd = float(np.sqrt(np.mean(residuals**2)))
        return self

    def predict(self, h: int) -> pd.DataFrame:
        m = self.season_length
        steps = np.arange(h)
        mean = self._season[steps % m]
        seasons_ahead = steps // m + 1
        return _normal_intervals(mean, self._sd * np.sqrt(seasons_ahead))


@dataclass
class ETS:
    """Exponential smoothing (statsmodels ETSModel) with additive errors: a level, optionally a damped
    trend, and an additive season when there are two full seasons of history.

    Intervals use the residual variance corrected for the fitted parameters, SSE / (n - k), as the
    R forecast package does; statsmodels' own uses SSE / n, which is over-confident on short series.
    """

    season_length: int = 12
    damped_trend: bool = False
    name: str = "ets"
    _fit: object = None
    _n: int = 0
    _scale: float = 1.0

    def __post_init__(self) -> None:
        if self.damped_trend:
            self.name = "ets_damped"

    def fit(self, y: np.ndarray) -> ETS:
        m = self.season_length
        if len(y) < 10:
            raise SeriesTooShort("ETS needs at least 10 observations")
        seasonal = "add" if len(y) >= 2 * m + 2 else None
        # statsmodels' prediction results need a pandas index; the dates themselves do not matter.
        history = pd.Series(
            np.asarray(y, dtype=float), index=pd.date_range("2000-01-01", periods=len(y), freq="MS")
        )
        model = ETSModel(
            history,
            error="add",
            trend="add" if self.damped_trend else None,
            damped_trend=self.damped_trend,
            seasonal=seasonal,
            seasonal_periods=m if seasonal else None,
            initialization_method="estimated",
        )
        self._fit = model.fit(disp=False, maxiter=200)
        self._n = len(y)
        k = len(self._fit.params)  # type: ignore[attr-defined]
        if self._n - k < 2:
            raise SeriesTooShort(f"ETS with {k} parameters needs more than {k + 1} observations")
        self._scale = math.sqrt(self._n / (self._n - k))
        return self

    def predict(self, h: int) -> pd.DataFrame:
        prediction = self._fit.get_prediction(start=self._n, end=self._n + h - 1)  # type: ignore[attr-defined]
        mean = prediction.predicted_mean.to_numpy()
        out = {"mean": mean}
        for alpha, label in ((0.2, "80"), (0.05, "95")):
            frame = prediction.summary_frame(alpha=alpha)
            half = (frame["pi_upper"].to_numpy() - frame["pi_lower"].to_numpy()) / 2 * self._scale
            out[f"lo{label}"] = mean - half
            out[f"hi{label}"] = mean + half
        return pd.DataFrame(out)


def default_candidates(season_length: int = 12) -> list[Callable[[], Forecaster]]:
    """The candidate models, as factories so each fit starts fresh."""
    return [
        Naive,
        lambda: SeasonalNaive(season_length),
        lambda: ETS(season_length),
        lambda: ETS(season_length, damped_trend=True),
    ]


def mase_scale(train: np.ndarray, season_length: int) -> float:
    """In-sample MAE of the seasonal naive (or naive, for short series) one-step forecast."""
    lag = season_length if len(train) > season_length else 1
    if len(train) <= lag:
        return float("nan")
    return float(np.mean(np.abs(train[lag:] - train[:-lag])))


@dataclass(frozen=True)
class BacktestScore:
    model: str
    folds: int
    mase: float
    wape: float


def backtest(
    y: np.ndarray, factory: Callable[[], Forecaster], horizon: int, folds: int, season_length: int
) -> BacktestScore | None:
    """Rolling-origin evaluation: ``folds`` origins, one month apart, the last one ``horizon`` before the end.

    Returns None when the model cannot be fitted at any origin (series too short for it).
    """
    abs_errors, actual_totals, scaled = [], [], []
    name = factory().name
    for fold in range(folds):
        cutoff = len(y) - horizon - (folds - 1 - fold)
        if cutoff < 2:
            continue
        train, test = y[:cutoff], y[cutoff : cutoff + horizon]
        try:
            forecast = factory().fit(train).predict(len(test))["mean"].to_numpy()
        except SeriesTooShort:
            continue
        errors = np.abs(test - np.maximum(forecast, 0.0))
        abs_errors.append(errors.sum())
        actual_totals.append(np.abs(test).sum())
        scale = mase_scale(train, season_length)
        if scale and not math.isnan(scale):
            scaled.append(errors.mean() / scale)
    if not abs_errors:
        return None
    total_actual = float(np.sum(actual_totals))
    return BacktestScore(
        model=name,
        folds=len(abs_errors),
        mase=float(np.mean(scaled)) if scaled else float("nan"),
        wape=float(np.sum(abs_errors) / total_actual) if total_actual else float("nan"),
    )


@dataclass
class SeriesForecast:
    series_id: str
    model: str
    forecast: pd.DataFrame  # period_start + INTERVAL_COLUMNS
    scores: list[BacktestScore]
    warnings: Counter[str]


def forecast_series(
    series_id: str,
    y: np.ndarray,
    first_period: pd.Timestamp,
    horizon: int,
    folds: int = 3,
    season_length: int = 12,
    candidates: Sequence[Callable[[], Forecaster]] | None = None,
) -> SeriesForecast:
    """Backtest every candidate on one series, refit the best (lowest MASE, then WAPE) and forecast."""
    candidates = list(candidates or default_candidates(season_length))
    caught: Counter[str] = Counter()
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        scores = [s for f in candidates if (s := backtest(y, f, horizon, folds, season_length)) is not None]
        ranked = sorted(
            scores,
            key=lambda s: (
                math.inf if math.isnan(s.mase) else s.mase,
                math.inf if math.isnan(s.wape) else s.wape,
            ),
        )
        by_name = {factory().name: factory for factory in candidates}
        chosen: Forecaster | None = None
        for score in ranked:
            try:
                chosen = by_name[score.model]().fit(y)
                break
            except SeriesTooShort:
                continue
        if chosen is None:  # too short for any backtest: carry the last value forward
            chosen = Naive().fit(y if len(y) else np.zeros(1))
        prediction = chosen.predict(horizon)
    for item in recorded:
        caught[f"{item.category.__name__}: {str(item.message)[:80]}"] += 1
    for column in INTERVAL_COLUMNS:  # revenue is never negative
        prediction[column] = prediction[column].clip(lower=0.0)
    periods = pd.date_range(first_period, periods=horizon, freq="MS")
    prediction.insert(0, "period_start", periods)
    return SeriesForecast(series_id, chosen.name, prediction, scores, caught)


def complete_months(series: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """Fill months with no sales with zero, from each series' first month to the month before ``as_of``."""
    last = pd.Timestamp(as_of).to_period("M").to_timestamp() - pd.DateOffset(months=1)
    frames = []
    for (series_id, level, member), group in series.groupby(["series_id", "level", "member"], sort=True):
        months = pd.date_range(pd.Timestamp(group["period_start"].min()), last, freq="MS")
        filled = (
            group.assign(period_start=pd.to_datetime(group["period_start"]))
            .set_index("period_start")["revenue"]
            .reindex(months, fill_value=0.0)
        )
        frames.append(
            pd.DataFrame(
                {
                    "series_id": series_id,
                    "level": level,
                    "member": member,
                    "period_start": months,
                    "revenue": filled,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=["series_id", "level", "member", "period_start", "revenue"])
    return pd.concat(frames, ignore_index=True)


def _forecast_group(
    key: tuple[str, ...],
    y: np.ndarray,
    first_period: pd.Timestamp,
    horizon: int,
    folds: int,
    season_length: int,
) -> tuple[pd.DataFrame, list[dict[str, object]], Counter[str]]:
    """One series' snapshot rows, backtest rows and caught warnings (a top-level function, so a process pool
    can run it)."""
    series_id, level, member = key  # (series_id, level, member)
    result = forecast_series(series_id, y, first_period, horizon, folds, season_length)
    frame = result.forecast.rename(columns={"mean": "forecast"})
    frame.insert(0, "series_id", series_id)
    frame.insert(1, "level", level)
    frame.insert(2, "member", member)
    frame["horizon"] = np.arange(1, horizon + 1)
    frame["model"] = result.model
    backtests: list[dict[str, object]] = [
        {
            "series_id": series_id,
            "model": score.model,
            "folds": score.folds,
            "mase": None if math.isnan(score.mase) else score.mase,
            "wape": None if math.isnan(score.wape) else score.wape,
            "selected": score.model == result.model,
        }
        for score in result.scores
    ]
    return frame, backtests, result.warnings


def forecast_filled(
    filled: pd.DataFrame,
    as_of: date,
    horizon: int = 6,
    folds: int = 3,
    season_length: int = 12,
    workers: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Counter[str]]]:
    """Base forecasts of zero-filled monthly series (:func:`complete_months`), one model per series.

    With ``workers`` > 1 the series are spread over a process pool (spawned, so it is safe inside any
    worker process); statsmodels' numerical warnings are caught per series either way and returned as
    counts, not logged one by one.
    """
    first_period = pd.Timestamp(as_of).to_period("M").to_timestamp()
    groups = [
        (tuple(str(k) for k in key), group["revenue"].to_numpy(float))
        for key, group in filled.groupby(["series_id", "level", "member"], sort=True)
    ]
    args = [(key, y, first_period, horizon, folds, season_length) for key, y in groups]
    if workers > 1 and len(args) > workers:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # One BLAS thread per process: the processes are the parallelism, and numpy's own threads on top
        # of them oversubscribe the cores (a pool of 2 ran at 0.65x one process before this).
        saved = {name: os.environ.get(name) for name in BLAS_THREAD_VARIABLES}
        os.environ.update(dict.fromkeys(BLAS_THREAD_VARIABLES, "1"))
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = list(pool.map(_forecast_group, *zip(*args, strict=True), chunksize=8))
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    else:
        # statsmodels' matrices are tiny: BLAS threads only add overhead (1 thread ran 40 series in 25 s
        # of wall time against 29 s, with half the CPU time).
        with threadpool_limits(1):
            results = [_forecast_group(*a) for a in args]
    snapshot_frames = [frame for frame, _, _ in results]
    backtest_rows = [row for _, rows, _ in results for row in rows]
    caught = {key[0]: counts for (key, _), (_, _, counts) in zip(groups, results, strict=True) if counts}
    snapshot = pd.concat(snapshot_frames, ignore_index=True) if snapshot_frames else pd.DataFrame()
    return snapshot, pd.DataFrame(backtest_rows), caught


def forecast_all(
    series: pd.DataFrame,
    as_of: date,
    horizon: int = 6,
    folds: int = 3,
    season_length: int = 12,
    reconciliation: str = "wls_var",
    workers: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Counter[str]]]:
    """Forecast every series from the month of ``as_of`` on, then make the levels add up to the total
    (:mod:`salespulse.reconcile`; ``reconciliation="none"`` keeps the base forecasts).

    Returns the snapshot rows (with ``base_forecast``, the model's own), the backtest rows, and the
    numerical warnings caught per series.
    """
    snapshot, backtests, caught = forecast_filled(
        complete_months(series, as_of), as_of, horizon, folds, season_length, workers
    )
    if not snapshot.empty:
        from salespulse.reconcile import reconcile

        snapshot = reconcile(snapshot, reconciliation).forecasts.assign(reconciliation=reconciliation)
    return snapshot, backtests, caught
