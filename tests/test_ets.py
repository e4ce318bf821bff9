"""The fast ETS (salespulse.ets) against statsmodels' ETSModel, the reference implementation."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from salespulse import ets
from salespulse.forecast import ETS, lead_scales

MONTHS = pd.date_range("2020-01-01", periods=36, freq="MS")


def _series(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(36)
    return (
        500
        + 4 * t
        + 40 * np.sin(2 * np.pi * t / 12)
        + np.cumsum(rng.normal(0, 5, 36))
        + rng.normal(0, 10, 36)
    )


def _statsmodels(shape: ets.Shape, y: np.ndarray, fit: ets.Fit) -> ETSModel:
    """ETSModel with our initial states (statsmodels orders the seasons oldest first)."""
    known: dict[str, object] = {"initial_level": fit.initial[0]}
    if shape.trend:
        known["initial_trend"] = fit.initial[1]
    if shape.seasonal:
        known["initial_seasonal"] = fit.initial[1 + int(shape.trend) :][::-1]
    return ETSModel(
        pd.Series(y, index=MONTHS),
        error="add",
        trend="add" if shape.trend else None,
        damped_trend=shape.trend,
        seasonal="add" if shape.seasonal else None,
        seasonal_periods=12 if shape.seasonal else None,
        initialization_method="known",
        **known,
    )


def _free_parameters(shape: ets.Shape, params: np.ndarray) -> list[float]:
    alpha, beta, gamma, phi = params
    return [
        alpha,
        *([beta] if shape.trend else []),
        *([gamma] if shape.seasonal else []),
        *([phi] if shape.trend else []),
    ]


SHAPES = [ets.Shape(trend, seasonal, 12) for trend in (False, True) for seasonal in (False, True)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"trend={s.trend},season={s.seasonal}")
def test_one_step_predictions_and_forecasts_match_statsmodels_given_the_same_parameters(
    shape: ets.Shape,
) -> None:
    y = _series(1)
    fit = ets.fit_origins(shape, y, [36])[36]
    reference = _statsmodels(shape, y, fit).smooth(_free_parameters(shape, fit.params))
    np.testing.assert_allclose(y - ets.one_step_errors(fit, y), reference.fittedvalues.to_numpy(), rtol=1e-9)
    mean, sd = ets.forecast(fit, ets.state_at_end(fit, y), 6)
    frame = reference.get_prediction(start=36, end=41).summary_frame(alpha=0.2)
    np.testing.assert_allclose(mean, frame["mean"].to_numpy(), rtol=1e-9)
    # statsmodels scales by SSE / n, we by SSE / (n - parameters): the same shape over the horizon.
    half = (frame["pi_upper"] - frame["pi_lower"]).to_numpy() / 2
    ratio = sd / half
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)
    assert ratio[0] > 0


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_the_grid_estimate_fits_about_as_well_as_statsmodels_maximum_likelihood(seed: int) -> None:
    """The grid search's sum of squared errors is within 5% of statsmodels' optimiser's (often below it)."""
    y = _series(seed)
    shape = ets.Shape(trend=True, seasonal=True, season_length=12)
    ours = ets.fit_origins(shape, y, [36])[36]
    model = ETSModel(
        pd.Series(y, index=MONTHS),
        error="add",
        trend="add",
        damped_trend=True,
        seasonal="add",
        seasonal_periods=12,
        initialization_method="estimated",
    )
    with warnings.catch_warnings():  # statsmodels may not converge in 500 steps; its estimate still counts
        warnings.simplefilter("ignore")
        reference = model.fit(disp=False, maxiter=500)
    assert ours.sse <= 1.05 * float(reference.sse)


def test_every_backtest_origin_in_one_pass_equals_fitting_each_prefix_alone() -> None:
    y = _series(5)
    together = ETS(damped_trend=True).fit_origins(y, [28, 30, 36])
    for origin in (28, 30, 36):
        alone = ETS(damped_trend=True).fit(y[:origin])
        pd.testing.assert_frame_equal(together[origin].predict(6), alone.predict(6))


def test_a_series_too_short_for_the_model_gets_no_fit() -> None:
    assert ETS(damped_trend=True).fit_origins(np.arange(8.0), [6, 8]) == {}


def test_lead_scales_widen_and_narrow_towards_the_nominal_rate_shrunk_by_a_prior() -> None:
    """Errors at twice the stated 80% half-width at one lead and half of it at another: the 80% quantile of
    each column, shrunk towards 1 as if 30 more errors had sat on the edge."""
    z = np.column_stack([np.full(300, 2.0), np.full(300, 0.5), np.full(300, np.nan)])
    scales = lead_scales(z, 0.8)
    assert scales[0] == pytest.approx((300 * 2.0 + 30) / 330)
    assert scales[1] == pytest.approx((300 * 0.5 + 30) / 330)
    assert scales[2] == 1.0  # no error seen at that lead: as the model stated
    # Three errors barely move it; a floor keeps a run of lucky errors from closing the interval.
    assert lead_scales(np.full((3, 1), 0.1), 0.8)[0] == pytest.approx((3 * 0.1 + 30) / 33)
    assert lead_scales(np.full((10_000, 1), 0.01), 0.8)[0] == 0.5
