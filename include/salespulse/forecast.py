"""Statistical sales forecasts per series, each model chosen by a rolling-origin backtest.

Series travel as one long table ``(series_id, period_start, revenue)``. Candidate models share
a scikit-learn-like interface (``fit(y)`` then ``predict(h)``) and the candidate list is data.
For every series each candidate is backtested over several forecast origins with horizon = the
forecast horizon, scored by MASE (and WAPE), and the best one is fitted on the whole history
to make the forecast with 80% and 95% prediction intervals, widened by its own backtest errors
(:func:`interval_scale`). ETS is :mod:`salespulse.ets`, which fits every origin in one pass;
``tests/test_ets.py`` checks it against statsmodels' ``ETSModel``, the reference.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol, TypeVar, cast

import numpy as np
import pandas as pd
from scipy.stats import norm
from threadpoolctl import threadpool_limits

from salespulse import ets
from salespulse.config import DEFAULT_FORECAST_MODELS, FORECAST_MODELS
from salespulse.periods import last_complete_month
from salespulse.threads import thread_budget

Z80 = float(norm.ppf(0.90))
Z95 = float(norm.ppf(0.975))
INTERVAL_COLUMNS = ["mean", "lo80", "hi80", "lo95", "hi95"]
INTERVAL_PRIOR = 6.0  # see interval_scale
BASELINES = frozenset({"naive", "seasonal_naive"})
BASELINE_MARGIN = 1.5  # see selection_key


class SeriesTooShort(ValueError):
    """The model needs more history than the series has."""


class Forecaster(Protocol):
    name: str

    def fit(self, y: np.ndarray) -> Forecaster: ...

    def predict(self, h: int) -> pd.DataFrame: ...


def fits_a_season(n: int, season_length: int) -> bool:
    """Enough history for a seasonal model (ETS, the airline ARIMA): two full seasons and two more periods."""
    return n >= 2 * season_length + 2


def widen(prediction: pd.DataFrame, factor: float) -> pd.DataFrame:
    """The same forecast with every interval's half-width multiplied by ``factor``."""
    out = prediction.copy()
    for bound in ("lo80", "hi80", "lo95", "hi95"):
        out[bound] = out["mean"] + (prediction[bound] - prediction["mean"]) * factor
    return out


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


M = TypeVar("M", bound="ETS | ARIMA")


def _fit_whole(model: M, y: np.ndarray) -> M:
    """``fit`` for a model that fits by origins: the one origin at the end of ``y``."""
    fitted = model.fit_origins(y, [len(y)])
    if len(y) not in fitted:
        raise SeriesTooShort(f"{model.name} can't be fitted on {len(y)} observations")
    return cast(M, fitted[len(y)])


@dataclass
class ETS:
    """Exponential smoothing with additive errors: a level, optionally a damped trend, and an additive
    season when the history has two full seasons and two more months (:mod:`salespulse.ets`).

    Same model as statsmodels' ``ETSModel``, estimated by a grid search with least-squares initial states,
    and able to fit every backtest origin in one pass (``fit_origins``): all four origins of a 3-year
    series in 6 ms (no trend) to 22 ms (damped trend), where one statsmodels fit took 80 to 200 ms.
    """

    season_length: int = 12
    damped_trend: bool = False
    name: str = "ets"
    _fit: ets.Fit | None = None
    _state: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        if self.damped_trend:
            self.name = "ets_damped"

    def _shape(self, n: int) -> ets.Shape:
        seasonal = fits_a_season(n, self.season_length)
        return ets.Shape(trend=self.damped_trend, seasonal=seasonal, season_length=self.season_length)

    def fit(self, y: np.ndarray) -> ETS:
        return _fit_whole(self, y)

    def fit_origins(self, y: np.ndarray, origins: Sequence[int]) -> dict[int, ETS]:
        """A fitted copy for each prefix ``y[:origin]`` that is long enough for the model."""
        y = np.asarray(y, dtype=float)
        by_shape: dict[ets.Shape, list[int]] = {}
        for origin in origins:
            by_shape.setdefault(self._shape(origin), []).append(origin)
        out = {}
        for shape, group in by_shape.items():
            for origin, estimate in ets.fit_origins(shape, y, group).items():
                if math.isfinite(estimate.sse):
                    state = ets.state_at_end(estimate, y)
                    out[origin] = ETS(self.season_length, self.damped_trend, self.name, estimate, state)
        return out

    def predict(self, h: int) -> pd.DataFrame:
        if self._fit is None:
            raise RuntimeError("fit the model before predicting")
        mean, sd = ets.forecast(self._fit, self._state, h)
        return _normal_intervals(mean, sd)


ArimaSpec = tuple[tuple[int, int, int], tuple[int, int, int], str]  # order, seasonal order, trend
# The orders ARIMA's search tries. All have one difference, so their AICc are comparable; the seasonal
# model differences seasonally too, so it is a candidate of its own ("sarima") and the backtest decides.
ARIMA_SPECS: tuple[ArimaSpec, ...] = (
    ((0, 1, 1), (0, 0, 0), "n"),
    ((0, 1, 1), (0, 0, 0), "t"),
    ((1, 1, 0), (0, 0, 0), "t"),
    ((1, 1, 1), (0, 0, 0), "n"),
)
SARIMA_SPECS: tuple[ArimaSpec, ...] = (((0, 1, 1), (0, 1, 1), "n"),)  # the "airline" model


@dataclass
class ARIMA:
    """statsmodels' ARIMA with a small order search: ARIMA(0,1,1) with and without drift, (1,1,0) with
    drift and (1,1,1); or, with ``seasonal``, the airline model (0,1,1)(0,1,1)m once there are two seasons
    and two more months. The order with the lowest AICc on the earliest origin's history is kept for the
    later origins and the whole history, so the backtest judges one model and the search costs one set
    of fits."""

    season_length: int = 12
    seasonal: bool = False
    name: str = "arima"
    spec: ArimaSpec | None = None
    _result: Any = None

    def __post_init__(self) -> None:
        if self.seasonal:
            self.name = "sarima"

    def _fit_spec(self, y: np.ndarray, spec: ArimaSpec) -> Any:
        from statsmodels.tsa.arima.model import ARIMA as StatsARIMA

        order, seasonal, trend = spec
        period = self.season_length if any(seasonal) else 0
        model = StatsARIMA(y, order=order, seasonal_order=(*seasonal, period), trend=trend)
        return model.fit()

    def _specs(self, n: int) -> tuple[ArimaSpec, ...]:
        if not self.seasonal:
            return ARIMA_SPECS
        return SARIMA_SPECS if fits_a_season(n, self.season_length) else ()

    def fit(self, y: np.ndarray) -> ARIMA:
        return _fit_whole(self, y)

    def fit_origins(self, y: np.ndarray, origins: Sequence[int]) -> dict[int, ARIMA]:
        y = np.asarray(y, dtype=float)
        usable = sorted(o for o in origins if o >= 10)
        if not usable:
            return {}
        spec = self.spec
        if spec is None:
            first = y[: usable[0]]
            scored = []
            for candidate in self._specs(len(first)):
                try:
                    aicc = float(self._fit_spec(first, candidate).aicc)
                except (ValueError, np.linalg.LinAlgError):
                    continue
                if math.isfinite(aicc):
                    scored.append((aicc, candidate))
            if not scored:
                return {}
            spec = min(scored, key=lambda item: item[0])[1]
        out = {}
        for origin in usable:
            try:
                result = self._fit_spec(y[:origin], spec)
                out[origin] = ARIMA(self.season_length, self.seasonal, self.name, spec, result)
            except (ValueError, np.linalg.LinAlgError):
                continue
        return out

    def predict(self, h: int) -> pd.DataFrame:
        if self._result is None:
            raise RuntimeError("fit the model before predicting")
        prediction = self._result.get_forecast(h)
        mean = np.asarray(prediction.predicted_mean, dtype=float)
        out = {"mean": mean}
        for alpha, label in ((0.2, "80"), (0.05, "95")):
            bounds = np.asarray(prediction.conf_int(alpha=alpha), dtype=float)
            out[f"lo{label}"], out[f"hi{label}"] = bounds[:, 0], bounds[:, 1]
        return pd.DataFrame(out)


def candidate_factory(name: str, season_length: int = 12) -> Callable[[], Forecaster]:
    """A candidate model by name (``config.FORECAST_MODELS``), as a factory so each fit starts fresh."""
    factories: dict[str, Callable[[], Forecaster]] = {
        "naive": Naive,
        "seasonal_naive": lambda: SeasonalNaive(season_length),
        "ets": lambda: ETS(season_length),
        "ets_damped": lambda: ETS(season_length, damped_trend=True),
        "arima": lambda: ARIMA(season_length),
        "sarima": lambda: ARIMA(season_length, seasonal=True),
    }
    if name not in factories:
        raise ValueError(f"unknown forecast model {name!r}; known: {', '.join(FORECAST_MODELS)}")
    return factories[name]


def default_candidates(
    season_length: int = 12, models: Sequence[str] = DEFAULT_FORECAST_MODELS
) -> list[Callable[[], Forecaster]]:
    """The candidate models, as factories so each fit starts fresh."""
    return [candidate_factory(name, season_length) for name in models]


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
    # Backtest errors over the model's own standard deviations: sum of squares and count, for calibrating
    # the intervals (:func:`interval_scale`).
    z2_sum: float = 0.0
    z_count: int = 0


def fit_origins(
    factory: Callable[[], Forecaster], y: np.ndarray, origins: Sequence[int]
) -> dict[int, Forecaster]:
    """A model fitted on each prefix ``y[:origin]`` that is long enough for it: in one pass when the model
    can (``fit_origins``, as :class:`ETS`), else one fit per origin."""
    model = factory()
    batch = getattr(model, "fit_origins", None)
    if batch is not None:
        return dict(batch(y, origins))
    fitted: dict[int, Forecaster] = {}
    for origin in origins:
        try:
            fitted[origin] = factory().fit(y[:origin])
        except SeriesTooShort:
            continue
    return fitted


def backtest_origins(n: int, horizon: int, folds: int) -> list[int]:
    """``folds`` forecast origins one month apart, the last one ``horizon`` before the end (at least 2)."""
    return [c for fold in range(folds) if (c := n - horizon - (folds - 1 - fold)) >= 2]


def score_backtest(
    name: str, y: np.ndarray, fitted: dict[int, Forecaster], horizon: int, season_length: int
) -> BacktestScore | None:
    """MASE and WAPE of the fitted origins' forecasts against what followed each origin.

    Returns None when the model could not be fitted at any origin (series too short for it).
    """
    abs_errors, actual_totals, scaled = [], [], []
    z2_sum, z_count = 0.0, 0
    for cutoff, model in sorted(fitted.items()):
        train, test = y[:cutoff], y[cutoff : cutoff + horizon]
        prediction = model.predict(len(test))
        forecast = prediction["mean"].to_numpy()
        errors = np.abs(test - np.maximum(forecast, 0.0))
        sd = (prediction["hi80"].to_numpy() - prediction["lo80"].to_numpy()) / (2 * Z80)
        stated = sd > 1e-9 * max(1.0, float(np.abs(train).mean()) if len(train) else 1.0)
        z2_sum += float(np.sum((errors[stated] / sd[stated]) ** 2))
        z_count += int(stated.sum())
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
        z2_sum=z2_sum,
        z_count=z_count,
    )


def interval_scale(score: BacktestScore, prior: float = INTERVAL_PRIOR) -> float:
    """How much to widen a model's intervals, from its own backtest: the root mean square of its
    standardized backtest errors, shrunk towards 1 as if ``prior`` more errors had been exactly as the model
    says, and never below 1 (the backtest can widen intervals, not narrow them)."""
    return math.sqrt(max(1.0, (prior + score.z2_sum) / (prior + score.z_count)))


def backtest(
    y: np.ndarray, factory: Callable[[], Forecaster], horizon: int, folds: int, season_length: int
) -> BacktestScore | None:
    """Rolling-origin evaluation of one candidate (:func:`backtest_origins`, :func:`score_backtest`)."""
    origins = backtest_origins(len(y), horizon, folds)
    return score_backtest(factory().name, y, fit_origins(factory, y, origins), horizon, season_length)


def selection_key(score: BacktestScore) -> tuple[float, float]:
    """Rank by backtest MASE, then WAPE; a baseline (naive, seasonal naive) must beat a smoothing model by
    ``BASELINE_MARGIN``. Three origins are a small sample, and a baseline that wins on it by chance forecasts
    worse than the model it displaced (on the benchmark's 1,000 series, MASE 0.95 with no margin against 0.90
    with ETS alone)."""
    penalty = BASELINE_MARGIN if score.model in BASELINES else 1.0
    mase = math.inf if math.isnan(score.mase) else score.mase * penalty
    return mase, math.inf if math.isnan(score.wape) else score.wape * penalty


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
    freq: str = "MS",
) -> SeriesForecast:
    """Backtest every candidate on one series and forecast with the best (lowest MASE, then WAPE), fitted
    on the whole history. Each candidate's backtest origins and its whole-history fit are one
    :func:`fit_origins` call."""
    candidates = list(candidates or default_candidates(season_length))
    caught: Counter[str] = Counter()
    origins = backtest_origins(len(y), horizon, folds)
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        scores, final = [], {}
        for factory in candidates:
            name = factory().name
            fitted = fit_origins(factory, y, [*origins, len(y)])
            if len(y) in fitted:
                final[name] = fitted.pop(len(y))
            if (score := score_backtest(name, y, fitted, horizon, season_length)) is not None:
                scores.append(score)
        ranked = sorted(scores, key=selection_key)
        best = next((s for s in ranked if s.model in final), None)
        if best is None:  # too short for any backtest: carry the last value forward
            chosen: Forecaster = Naive().fit(y if len(y) else np.zeros(1))
            prediction = chosen.predict(horizon)
        else:
            chosen = final[best.model]
            prediction = widen(chosen.predict(horizon), interval_scale(best))
    for item in recorded:
        caught[f"{item.category.__name__}: {str(item.message)[:80]}"] += 1
    for column in INTERVAL_COLUMNS:  # revenue is never negative
        prediction[column] = prediction[column].clip(lower=0.0)
    periods = pd.date_range(first_period, periods=horizon, freq=freq)
    prediction.insert(0, "period_start", periods)
    return SeriesForecast(series_id, chosen.name, prediction, scores, caught)


def complete_months(series: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """Fill months with no sales with zero, from each series' first month to the month before ``as_of``."""
    last = pd.Timestamp(last_complete_month(as_of))
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
    models: tuple[str, ...] = DEFAULT_FORECAST_MODELS,
) -> tuple[pd.DataFrame, list[dict[str, object]], Counter[str]]:
    """One series' snapshot rows, backtest rows and caught warnings (a top-level function, so a process pool
    can run it)."""
    series_id, level, member = key  # (series_id, level, member)
    candidates = default_candidates(season_length, models)
    result = forecast_series(series_id, y, first_period, horizon, folds, season_length, candidates)
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
    models: Sequence[str] = DEFAULT_FORECAST_MODELS,
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
    args = [(key, y, first_period, horizon, folds, season_length, tuple(models)) for key, y in groups]
    if workers > 1 and len(args) > workers:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # One BLAS thread per process: the processes are the parallelism, and numpy's own threads on top
        # of them oversubscribe the cores (a pool of 2 ran at 0.65x one process before this). The spawned
        # processes take the budget from the environment.
        with (
            thread_budget(1),
            ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool,
        ):
            results = list(pool.map(_forecast_group, *zip(*args, strict=True), chunksize=8))
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


def warning_kinds(caught: dict[str, Counter[str]]) -> Counter[str]:
    """The numerical warnings caught per series (:func:`forecast_filled`), added up by kind."""
    kinds: Counter[str] = Counter()
    for counts in caught.values():
        kinds.update(counts)
    return kinds


def partition_of(series_id: str, partitions: int) -> int:
    """A series' partition: stable across runs and machines (CRC-32 of its id), so a retry redoes the
    same set."""
    return zlib.crc32(series_id.encode("utf-8")) % partitions
