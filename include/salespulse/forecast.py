"""Statistical sales forecasts per series, each model chosen by a rolling-origin backtest.

Series travel as one long table ``(series_id, period_start, revenue)``. Candidate models share
a scikit-learn-like interface (``fit(y)`` then ``predict(h)``) and the candidate list is data.
For every series each candidate is backtested over several forecast origins with horizon = the
forecast horizon, scored by MASE (and WAPE), and the best one is fitted on the whole history
to make the forecast with 80% and 95% prediction intervals, calibrated per lead by backtest errors
(:func:`calibration_errors`, :func:`lead_scales`: a series' own, or every series' of a run pooled in
:func:`forecast_filled`). ETS is :mod:`salespulse.ets`, which fits every origin in one pass;
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
from functools import partial
from typing import Any, Protocol, TypeVar, cast

import numpy as np
import pandas as pd
from scipy.stats import f as f_distribution
from scipy.stats import norm
from threadpoolctl import threadpool_limits

from salespulse import ets
from salespulse.config import DEFAULT_FORECAST_MODELS, FORECAST_MODELS
from salespulse.periods import last_complete_month
from salespulse.regression import DriverRegression, NotEnoughDrivers
from salespulse.threads import thread_budget

Z80 = float(norm.ppf(0.90))
Z95 = float(norm.ppf(0.975))
INTERVAL_COLUMNS = ["mean", "lo80", "hi80", "lo95", "hi95"]
FORECAST_COLUMNS = ["forecast", "lo80", "hi80", "lo95", "hi95"]  # INTERVAL_COLUMNS as a snapshot names them
CALIBRATION_PRIOR = 30.0  # see lead_scales
MIN_INTERVAL_SCALE = 0.5  # see lead_scales
BASELINES = frozenset({"naive", "seasonal_naive"})
BASELINE_MARGIN = 2.0  # see selection_key
REGRESSION_MARGIN = 1.25  # see selection_key
SEASON_TEST_LEVEL = 0.001  # see seasonal_indices


class SeriesTooShort(ValueError):
    """The model needs more history than the series has."""


class Forecaster(Protocol):
    name: str

    def fit(self, y: np.ndarray) -> Forecaster: ...

    def predict(self, h: int) -> pd.DataFrame: ...


def fits_a_season(n: int, season_length: int) -> bool:
    """Enough history for a seasonal model (ETS, the airline ARIMA): two full seasons and two more periods."""
    return n >= 2 * season_length + 2


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


M = TypeVar("M", bound="ETS | ARIMA | Theta")


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


def seasonal_indices(y: np.ndarray, season_length: int, alpha: float | None = None) -> np.ndarray | None:
    """Multiplicative seasonal indices by classical decomposition (centred moving average, mean ratio per
    position, normalised to average 1), one per position ``t % season_length``; None when the series is too
    short (:func:`fits_a_season`), has a value at or below zero, or shows no season.

    The season test is an analysis of variance of the series around its straight-line trend by position in
    the season (an F test at level ``alpha``). The test the Theta method's authors used, the lag-m
    autocorrelation against its Bartlett standard error, missed a plain season (amplitude three times the
    noise) in 43 of 100 three-year series and in 91 of 100 at 30 months: the autocorrelation of a short
    series is shrunk, and a season's own autocorrelation at the lower lags inflates the standard error.
    """
    m, n = season_length, len(y)
    alpha = SEASON_TEST_LEVEL if alpha is None else alpha
    if m < 2 or not fits_a_season(n, m) or np.min(y) <= 0:
        return None
    t = np.arange(n)
    residual = y - np.polyval(np.polyfit(t, y, 1), t)
    positions = t % m
    means = np.array([residual[positions == k].mean() for k in range(m)])
    between = float(np.sum(np.bincount(positions, minlength=m) * (means - residual.mean()) ** 2))
    within = float(np.sum((residual - means[positions]) ** 2))
    if within <= 0 or f_distribution.sf((between / (m - 1)) / (within / (n - m)), m - 1, n - m) >= alpha:
        return None
    weights = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m
    trend = np.convolve(y, weights, mode="valid")  # trend[i] is centred on y[i + len(weights) // 2]
    offset = len(weights) // 2
    ratios = y[offset : offset + len(trend)] / trend
    index = np.array([ratios[(np.arange(len(trend)) + offset) % m == k].mean() for k in range(m)])
    return index / index.mean()


@dataclass
class Theta:
    """The Theta method (Assimakopoulos and Nikolopoulos, 2000; winner of the M3 competition), in the form
    Hyndman and Billah (2003) showed it to be: simple exponential smoothing with a drift of half the slope
    of a straight line fitted to the series, on the seasonally adjusted series when it is seasonal
    (:func:`seasonal_indices`), reseasonalised after. ``h`` steps ahead of a series of ``n``:
    ``level + slope / 2 * (h - 1 + 1 / alpha - (1 - alpha)^n / alpha)``, with the smoothing's own interval
    (its standard deviation grows as ``sqrt(1 + alpha^2 (h - 1))``) scaled by the season.

    The backtest origins keep the seasonal indices of the earliest one's history (as ARIMA keeps its order),
    so they share one adjusted series and one vectorised smoothing pass; the whole history estimates its
    own. One pass per origin made the Theta fits the slowest part of the forecast step."""

    season_length: int = 12
    name: str = "theta"
    _fit: ets.Fit | None = None
    _state: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _slope: float = 0.0
    _index: np.ndarray | None = None

    def fit(self, y: np.ndarray) -> Theta:
        return _fit_whole(self, y)

    def fit_origins(self, y: np.ndarray, origins: Sequence[int]) -> dict[int, Theta]:
        y = np.asarray(y, dtype=float)
        shape = ets.Shape(trend=False, seasonal=False, season_length=self.season_length)
        earlier = sorted(o for o in origins if o < len(y))
        groups = [group for group in (earlier, [len(y)] if len(y) in origins else []) if group]
        out = {}
        for group in groups:
            index = seasonal_indices(y[: group[0]], self.season_length)
            positions = np.arange(len(y)) % self.season_length
            adjusted = y if index is None else y / index[positions]
            for origin, estimate in ets.fit_origins(shape, adjusted, group).items():
                if not math.isfinite(estimate.sse):
                    continue
                slope = float(np.polyfit(np.arange(origin), adjusted[:origin], 1)[0])
                state = ets.state_at_end(estimate, adjusted)
                out[origin] = Theta(self.season_length, self.name, estimate, state, slope, index)
        return out

    def predict(self, h: int) -> pd.DataFrame:
        if self._fit is None:
            raise RuntimeError("fit the model before predicting")
        level, sd = ets.forecast(self._fit, self._state, h)
        alpha, n = float(self._fit.params[0]), self._fit.n
        steps = np.arange(1, h + 1)
        mean = level + self._slope / 2 * (steps - 1 + (1 - (1 - alpha) ** n) / alpha)
        if self._index is not None:
            season = self._index[(n + steps - 1) % self.season_length]
            mean, sd = mean * season, sd * season
        return _normal_intervals(mean, sd)


@dataclass
class Combination:
    """The equal-weight average of several models' forecasts: means and interval bounds averaged member by
    member. Fitted wherever every member fits. Forecast combination is the oldest robust result in the
    field (the M3 and M4 competitions); damped-trend ETS with Theta won the benchmarks here (docs/
    benchmarks.md: every single model and every per-series choice among them did worse)."""

    members: tuple[Callable[[], Forecaster], ...]
    name: str = "combination"
    _fitted: tuple[Forecaster, ...] = ()

    def fit(self, y: np.ndarray) -> Combination:
        fitted = self.fit_origins(y, [len(y)])
        if len(y) not in fitted:
            raise SeriesTooShort(f"{self.name} can't be fitted on {len(y)} observations")
        return fitted[len(y)]

    def fit_origins(self, y: np.ndarray, origins: Sequence[int]) -> dict[int, Combination]:
        per_member = [fit_origins(factory, y, origins) for factory in self.members]
        common = set(origins).intersection(*per_member)
        return {
            o: Combination(self.members, self.name, tuple(fits[o] for fits in per_member)) for o in common
        }

    def predict(self, h: int) -> pd.DataFrame:
        if not self._fitted:
            raise RuntimeError("fit the model before predicting")
        average = np.mean([member.predict(h).to_numpy(float) for member in self._fitted], axis=0)
        return pd.DataFrame(average, columns=INTERVAL_COLUMNS)


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
        "theta": lambda: Theta(season_length),
        "ets_theta": lambda: Combination(
            (lambda: ETS(season_length, damped_trend=True), lambda: Theta(season_length)), "ets_theta"
        ),
        "arima": lambda: ARIMA(season_length),
        "sarima": lambda: ARIMA(season_length, seasonal=True),
    }
    if name not in factories:
        if name == "drivers":
            raise ValueError("the drivers candidate needs the series' drivers: see default_candidates")
        raise ValueError(f"unknown forecast model {name!r}; known: {', '.join(FORECAST_MODELS)}")
    return factories[name]


@dataclass(frozen=True)
class Drivers:
    """A series' drivers for the ``drivers`` candidate (:mod:`salespulse.regression`): its monthly customer
    counts over the history, and the month of the first."""

    customers: np.ndarray
    first_month: pd.Timestamp


def default_candidates(
    season_length: int = 12, models: Sequence[str] = DEFAULT_FORECAST_MODELS, drivers: Drivers | None = None
) -> list[Callable[[], Forecaster]]:
    """The candidate models, as factories so each fit starts fresh. ``drivers`` (the regression on the
    series' drivers) is a candidate only where the series comes with its drivers."""
    factories = [candidate_factory(name, season_length) for name in models if name != "drivers"]
    if "drivers" in models and drivers is not None:
        customers_model = partial(ETS, season_length, damped_trend=True)
        factories.append(lambda: DriverRegression(drivers.customers, drivers.first_month, customers_model))
    return factories


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
        except (SeriesTooShort, NotEnoughDrivers):
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
    for cutoff, model in sorted(fitted.items()):
        train, test = y[:cutoff], y[cutoff : cutoff + horizon]
        forecast = model.predict(len(test))["mean"].to_numpy()
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


def calibration_origins(n: int, horizon: int, folds: int) -> list[int]:
    """Every origin :func:`calibration_errors` reads: for each lead k, the ``folds`` latest origins that
    have an actual k months on (``n - k - folds + 1`` to ``n - k``)."""
    return [o for o in range(n - horizon - folds + 1, n) if o >= 2]


def calibration_errors(
    fitted: dict[int, Forecaster], y: np.ndarray, horizon: int, folds: int
) -> tuple[np.ndarray, np.ndarray]:
    """The errors that calibrate a model's intervals (:func:`lead_scales`): for each lead k (a column), the
    absolute errors of the ``folds`` latest origins that can see k months on (rows), over the half-width of
    the 80% and of the 95% interval each stated; NaN where an origin was not fitted or stated no width.

    Each lead has its own latest origins because a lead-1 error from an origin ``horizon`` months back
    comes from a model fitted on that much less history: on the M3 series (h = 18), calibrating every lead
    on the selection's three origins left the intervals too wide at leads 1-3 (80%: 0.86, 95%: 0.98)."""
    n = len(y)
    z = {level: np.full((folds, horizon), np.nan) for level in ("80", "95")}
    # Each origin's prediction as an array: mean, lo80, hi80, lo95, hi95 (INTERVAL_COLUMNS) by lead.
    predictions = {
        o: model.predict(min(horizon, n - o))[INTERVAL_COLUMNS].to_numpy(float)
        for o, model in fitted.items()
        if o < n
    }
    tiny = 1e-9 * max(1.0, float(np.abs(y).mean()) if n else 1.0)
    for lead in range(1, horizon + 1):
        for row in range(folds):
            origin = n - lead - folds + 1 + row
            prediction = predictions.get(origin)
            if prediction is None or lead > len(prediction):
                continue
            mean, lo80, hi80, lo95, hi95 = prediction[lead - 1]
            error = abs(y[origin + lead - 1] - max(mean, 0.0))
            for level, half in (("80", (hi80 - lo80) / 2), ("95", (hi95 - lo95) / 2)):
                if half > tiny:
                    z[level][row, lead - 1] = error / half
    return z["80"], z["95"]


def lead_scales(z: np.ndarray, nominal: float, prior: float = CALIBRATION_PRIOR) -> np.ndarray:
    """Per lead, the factor that makes a stated interval cover ``nominal`` of the backtest's errors.

    ``z``: rows of |error| / the interval's half-width (origins, or origins of many series), a column per
    lead. The factor is the ``nominal`` quantile of a lead's column (conformal calibration): above 1 widens
    an interval that was too narrow, below 1 narrows one that was too wide. It is shrunk towards 1 as if
    ``prior`` more errors had fallen exactly on the edge, so three origins of one series barely move it while
    a partition's thousands of errors set it, and it never goes below ``MIN_INTERVAL_SCALE``.
    """
    scales = np.ones(z.shape[1] if z.ndim == 2 else 0)
    for lead in range(len(scales)):
        column = z[:, lead]
        column = column[np.isfinite(column)]
        if len(column):
            quantile = float(np.quantile(column, nominal))
            scales[lead] = (len(column) * quantile + prior) / (len(column) + prior)
    return np.maximum(scales, MIN_INTERVAL_SCALE)


def scale_intervals(
    prediction: pd.DataFrame, z80: np.ndarray, z95: np.ndarray, mean: str = "mean"
) -> pd.DataFrame:
    """The prediction with each lead's 80% and 95% half-widths multiplied by :func:`lead_scales` of the
    standardized backtest errors ``z80`` and ``z95``; the 95% interval is kept around the 80% one."""
    out = prediction.copy()
    center = prediction[mean].to_numpy(float)
    for level, z, nominal in (("80", z80, 0.80), ("95", z95, 0.95)):
        factor = lead_scales(z, nominal)[: len(prediction)]
        factor = np.r_[factor, np.ones(len(prediction) - len(factor))]
        out[f"lo{level}"] = center - (center - prediction[f"lo{level}"].to_numpy(float)) * factor
        out[f"hi{level}"] = center + (prediction[f"hi{level}"].to_numpy(float) - center) * factor
    out["lo95"] = np.minimum(out["lo95"], out["lo80"])
    out["hi95"] = np.maximum(out["hi95"], out["hi80"])
    return out


def backtest(
    y: np.ndarray, factory: Callable[[], Forecaster], horizon: int, folds: int, season_length: int
) -> BacktestScore | None:
    """Rolling-origin evaluation of one candidate (:func:`backtest_origins`, :func:`score_backtest`)."""
    origins = backtest_origins(len(y), horizon, folds)
    return score_backtest(factory().name, y, fit_origins(factory, y, origins), horizon, season_length)


def selection_key(score: BacktestScore) -> tuple[float, float]:
    """Rank by backtest MASE, then WAPE; a baseline (naive, seasonal naive) must beat a model by
    ``BASELINE_MARGIN`` (half its MASE). Three origins are a small sample, and a baseline that wins on it by
    chance forecasts worse than the model it displaced (docs/benchmarks.md: with no margin, MASE on M3 0.936
    and on the synthetic set 0.925; with 1.5, 0.870 and 0.849; with 2, 0.855 and 0.837; with the
    combination always, 0.852 and 0.836).

    The regression on drivers must win by ``REGRESSION_MARGIN`` (a fifth): on a random walk its AR(1)
    errors imitate the smoothing model and win three origins by chance (6 of 10 such series without the
    margin, 2 with it, in tests/test_regression.py), while a series that follows its drivers beats the
    smoothing model by far more (backtest MASE 0.3-0.7 of it there)."""
    penalty = {"drivers": REGRESSION_MARGIN}.get(
        score.model, BASELINE_MARGIN if score.model in BASELINES else 1.0
    )
    mase = math.inf if math.isnan(score.mase) else score.mase * penalty
    return mase, math.inf if math.isnan(score.wape) else score.wape * penalty


@dataclass
class SeriesForecast:
    series_id: str
    model: str
    # The model's own intervals before calibration (and before clipping at zero), and the chosen model's
    # standardized backtest errors: forecast_filled calibrates them with the errors of every series it runs.
    raw: pd.DataFrame  # period_start + INTERVAL_COLUMNS
    scores: list[BacktestScore]
    warnings: Counter[str]
    z80: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    z95: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def forecast(self) -> pd.DataFrame:
        """The forecast with its intervals calibrated by this series' own backtest errors alone, at zero or
        above (a run of many series calibrates on all of theirs instead: :func:`forecast_filled`)."""
        return clip_at_zero(scale_intervals(self.raw, self.z80, self.z95))


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
        scores, final, backtested = [], {}, {}
        for factory in candidates:
            name = factory().name
            fitted = fit_origins(factory, y, [*origins, len(y)])
            if len(y) in fitted:
                final[name] = fitted.pop(len(y))
            backtested[name] = (factory, fitted)
            if (score := score_backtest(name, y, fitted, horizon, season_length)) is not None:
                scores.append(score)
        ranked = sorted(scores, key=selection_key)
        best = next((s for s in ranked if s.model in final), None)
        empty = np.zeros((0, horizon))
        if best is None:  # too short for any backtest: carry the last value forward
            chosen: Forecaster = Naive().fit(y if len(y) else np.zeros(1))
            raw, z80, z95 = chosen.predict(horizon), empty, empty
        else:
            chosen = final[best.model]
            factory, calibrating = backtested[best.model]
            more = [o for o in calibration_origins(len(y), horizon, folds) if o not in calibrating]
            calibrating = {**calibrating, **fit_origins(factory, y, more)}
            z80, z95 = calibration_errors(calibrating, y, horizon, folds)
            raw = chosen.predict(horizon)
    for item in recorded:
        caught[f"{item.category.__name__}: {str(item.message)[:80]}"] += 1
    periods = pd.date_range(first_period, periods=horizon, freq=freq)
    raw.insert(0, "period_start", periods)
    return SeriesForecast(series_id, chosen.name, raw, scores, caught, z80, z95)


def clip_at_zero(prediction: pd.DataFrame, columns: Sequence[str] = INTERVAL_COLUMNS) -> pd.DataFrame:
    """Revenue is never negative: every forecast column clipped at zero."""
    out = prediction.copy()
    for column in columns:
        out[column] = out[column].clip(lower=0.0)
    return out


def complete_months(series: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """Fill months with no sales with zero, from each series' first month to the month before ``as_of``
    (revenue, and the customer count when the series has one: a driver of the ``drivers`` candidate)."""
    last = pd.Timestamp(last_complete_month(as_of))
    values = ["revenue", *(["customers"] if "customers" in series.columns else [])]
    frames = []
    for (series_id, level, member), group in series.groupby(["series_id", "level", "member"], sort=True):
        months = pd.date_range(pd.Timestamp(group["period_start"].min()), last, freq="MS")
        filled = (
            group.assign(period_start=pd.to_datetime(group["period_start"]))
            .set_index("period_start")[values]
            .astype(float)
            .reindex(months, fill_value=0.0)
        )
        names = {"series_id": series_id, "level": level, "member": member, "period_start": months}
        frames.append(pd.DataFrame({**names, **{v: filled[v].to_numpy() for v in values}}))
    if not frames:
        return pd.DataFrame(columns=["series_id", "level", "member", "period_start", *values])
    return pd.concat(frames, ignore_index=True)


def _forecast_group(
    key: tuple[str, ...],
    y: np.ndarray,
    first_period: pd.Timestamp,
    horizon: int,
    folds: int,
    season_length: int,
    models: tuple[str, ...] = DEFAULT_FORECAST_MODELS,
    drivers: Drivers | None = None,
) -> tuple[pd.DataFrame, list[dict[str, object]], Counter[str], np.ndarray, np.ndarray]:
    """One series' snapshot rows with the model's own intervals, backtest rows, caught warnings and the
    chosen model's standardized backtest errors (a top-level function, so a process pool can run it)."""
    series_id, level, member = key  # (series_id, level, member)
    candidates = default_candidates(season_length, models, drivers)
    result = forecast_series(series_id, y, first_period, horizon, folds, season_length, candidates)
    frame = result.raw.rename(columns={"mean": "forecast"})
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
    return frame, backtests, result.warnings, result.z80, result.z95


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
    with_drivers = "drivers" in models and "customers" in filled.columns
    groups, drivers = [], []
    for key, group in filled.groupby(["series_id", "level", "member"], sort=True):
        groups.append((tuple(str(k) for k in key), group["revenue"].to_numpy(float)))
        start = pd.Timestamp(group["period_start"].min())
        drivers.append(Drivers(group["customers"].to_numpy(float), start) if with_drivers else None)
    args = [
        (key, y, first_period, horizon, folds, season_length, tuple(models), driver)
        for (key, y), driver in zip(groups, drivers, strict=True)
    ]
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
    # Intervals calibrated per lead by the backtest errors of every series here, pooled (lead_scales).
    empty = np.zeros((0, horizon))
    pooled = {
        "80": np.vstack([z80 for *_, z80, _ in results]) if results else empty,
        "95": np.vstack([z95 for *_, z95 in results]) if results else empty,
    }
    snapshot_frames = [
        clip_at_zero(scale_intervals(frame, pooled["80"], pooled["95"], mean="forecast"), FORECAST_COLUMNS)
        for frame, *_ in results
    ]
    backtest_rows = [row for _, rows, *_ in results for row in rows]
    caught = {key[0]: result[2] for (key, _), result in zip(groups, results, strict=True) if result[2]}
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
