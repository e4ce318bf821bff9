from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from salespulse.forecast import (
    ARIMA,
    ETS,
    INTERVAL_COLUMNS,
    Z80,
    Z95,
    Naive,
    SeasonalNaive,
    SeriesTooShort,
    Theta,
    backtest,
    calibration_errors,
    calibration_origins,
    candidate_factory,
    complete_months,
    default_candidates,
    fit_origins,
    forecast_filled,
    forecast_series,
    mase_scale,
    seasonal_indices,
)

START = pd.Timestamp("2023-01-01")
PATTERN = np.array([80, 70, 90, 100, 95, 85, 60, 65, 110, 120, 130, 160], dtype=float)


def test_a_purely_seasonal_series_is_forecast_exactly_by_seasonal_naive() -> None:
    y = np.tile(PATTERN, 4)
    result = forecast_series("s", y, START + pd.DateOffset(months=48), horizon=12, folds=3)
    assert result.model == "seasonal_naive"
    np.testing.assert_allclose(result.forecast["mean"].to_numpy(), PATTERN)
    scores = {s.model: s for s in result.scores}
    assert scores["seasonal_naive"].wape == 0.0
    assert scores["naive"].wape > 0.1


def test_a_linear_trend_is_continued_by_the_selected_model() -> None:
    t = np.arange(36, dtype=float)
    y = 1000 + 25 * t
    result = forecast_series("trend", y, START + pd.DateOffset(months=36), horizon=6, folds=3)
    truth = 1000 + 25 * np.arange(36, 42)
    # The combination: damped ETS continues the slope, Theta half of it (its drift is half the fitted
    # slope), so the average rises each month and runs a little under the line.
    assert result.model == "ets_theta"
    mean = result.forecast["mean"].to_numpy()
    assert (np.diff(mean) > 10).all()
    np.testing.assert_allclose(mean, truth, rtol=0.03)


def test_backtest_errors_match_a_hand_computation() -> None:
    # Origin after 6 points: naive forecasts 6, 6 for actuals 7, 8 -> errors 1, 2.
    # WAPE = 3 / 15 = 0.2; MASE scale = mean |diff| of the training data = 1, so MASE = 1.5.
    score = backtest(np.arange(1, 9, dtype=float), Naive, horizon=2, folds=1, season_length=12)
    assert score is not None
    assert score.wape == pytest.approx(0.2)
    assert score.mase == pytest.approx(1.5)
    assert mase_scale(np.array([1.0, 2.0, 4.0]), 12) == pytest.approx(1.5)


@pytest.mark.parametrize("length", [1, 2, 3, 5, 11, 13])
def test_short_series_get_a_forecast_instead_of_a_crash(length: int) -> None:
    y = np.linspace(10, 20, length)
    result = forecast_series("short", y, START, horizon=6, folds=3)
    assert len(result.forecast) == 6
    assert result.forecast[INTERVAL_COLUMNS].notna().all().all()
    if length < 10:
        assert result.model in ("naive", "seasonal_naive")


def test_intervals_are_ordered_and_never_negative() -> None:
    rng = np.random.default_rng(0)
    y = np.maximum(0, 50 + rng.normal(0, 30, size=40))
    result = forecast_series("noisy", y, START, horizon=6)
    f = result.forecast
    assert (f["lo95"] <= f["lo80"]).all() and (f["lo80"] <= f["mean"]).all()
    assert (f["mean"] <= f["hi80"]).all() and (f["hi80"] <= f["hi95"]).all()
    assert (f[INTERVAL_COLUMNS] >= 0).all().all()


@pytest.mark.parametrize(("model", "expected"), [(Naive, 0.80), (lambda: SeasonalNaive(4), 0.80)])
def test_baseline_intervals_cover_at_about_their_nominal_rate(model, expected: float) -> None:
    """Random walks (naive) and seasonal random walks (seasonal naive): one-step 80% intervals."""
    rng = np.random.default_rng(42)
    hits = 0
    trials = 600
    for _ in range(trials):
        steps = rng.normal(0, 1, size=41)
        if model is Naive:
            y = np.cumsum(steps)
        else:
            y = np.zeros(41)
            y[:4] = rng.normal(0, 5, size=4)
            for i in range(4, 41):
                y[i] = y[i - 4] + steps[i]
        f = model().fit(y[:-1]).predict(1)
        hits += f["lo80"].iloc[0] <= y[-1] <= f["hi80"].iloc[0]
    assert abs(hits / trials - expected) < 0.06


@pytest.mark.parametrize("damped", [False, True])
def test_ets_intervals_cover_at_about_their_nominal_rate(damped: bool) -> None:
    """Local-level data, 30 months of history, one step ahead, 150 trials (standard error ~0.033 at 80%).

    Measured: 80% intervals cover 0.71 (damped) and 0.75 (simple); 95% intervals 0.89 to 0.91. They are
    still somewhat narrow because the uncertainty of the estimated parameters and states is not in them;
    calibrating them from backtest errors is left to the forecasting issue. This test guards against gross
    errors (a wrong quantile, swapped bounds, no degrees-of-freedom correction on tiny samples).
    """
    rng = np.random.default_rng(7)
    hits80 = hits95 = 0
    trials = 150
    for _ in range(trials):
        level = 100 + np.cumsum(rng.normal(0, 2, size=31))
        y = level + rng.normal(0, 5, size=31)
        f = ETS(damped_trend=damped).fit(y[:-1]).predict(1)
        hits80 += f["lo80"].iloc[0] <= y[-1] <= f["hi80"].iloc[0]
        hits95 += f["lo95"].iloc[0] <= y[-1] <= f["hi95"].iloc[0]
    assert 0.66 <= hits80 / trials <= 0.90
    assert 0.86 <= hits95 / trials <= 0.99


def _simulated(kind: str, series: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """``series`` monthly series of one kind, 36 months of history (as one frame) and the 6 months after."""
    rng = np.random.default_rng(seed)
    t = np.arange(42)
    frames, futures = [], []
    for i in range(series):
        noise = rng.normal(0, 5, 42)
        if kind == "level":
            y = 300 + np.cumsum(rng.normal(0, 2, 42)) + noise
        elif kind == "season":
            y = 300 + 15 * np.sin(2 * np.pi * t / 12) + noise
        elif kind == "trend_season":
            y = 300 + 1.5 * t + 15 * np.sin(2 * np.pi * t / 12) + noise
        else:  # white noise around a fixed mean
            y = 300 + noise
        frames.append(pd.DataFrame({"series_id": f"s:{i:03d}", "level": "s", "member": f"{i:03d}",
                                    "period_start": pd.date_range(START, periods=36, freq="MS"),
                                    "revenue": y[:36]}))  # fmt: skip
        futures.append(y[36:])
    return pd.concat(frames, ignore_index=True), np.array(futures)


def _coverage(snapshot: pd.DataFrame, futures: np.ndarray, level: str) -> np.ndarray:
    """Share of the actuals inside the ``level`` interval, per lead."""
    ordered = snapshot.sort_values(["series_id", "horizon"])
    lo = ordered[f"lo{level}"].to_numpy().reshape(futures.shape)
    hi = ordered[f"hi{level}"].to_numpy().reshape(futures.shape)
    return ((lo <= futures) & (futures <= hi)).mean(axis=0)


@pytest.mark.parametrize("kind", ["level", "season", "trend_season"])
def test_the_chosen_models_intervals_cover_at_about_their_nominal_rate(kind: str) -> None:
    """The whole path (backtest, choice, intervals calibrated per lead on the 100 series' backtest errors
    pooled) on 36 months, 6 months ahead.

    Measured with this seed (80% / 95% coverage over the 6 leads): local level 0.77 / 0.93, season 0.78 /
    0.94, trend and season 0.87 / 0.96. The model's own intervals, uncalibrated, covered 0.73 / 0.91, 0.70 /
    0.90 and 0.82 / 0.94; each series calibrated on its own backtest alone, 0.73 / 0.90, 0.70 / 0.90 and
    0.81 / 0.93. The season case fails here without the pooled calibration.
    """
    history, futures = _simulated(kind, 100, seed=11)
    snapshot, _, _ = forecast_filled(history, (START + pd.DateOffset(months=36)).date(), horizon=6)
    assert 0.74 <= _coverage(snapshot, futures, "80").mean() <= 0.88
    assert 0.91 <= _coverage(snapshot, futures, "95").mean() <= 0.985


def test_calibration_narrows_intervals_that_are_too_wide() -> None:
    """White noise forecast by the naive model: its random-walk interval grows with the square root of the
    lead, so six months out it is far too wide (it covers about 99% at 80%). The backtest's errors, pooled
    over 200 series, narrow each lead back towards its nominal rate."""
    history, futures = _simulated("noise", 200, seed=3)
    as_of = (START + pd.DateOffset(months=36)).date()
    raw = pd.concat(
        [
            forecast_series(sid, g["revenue"].to_numpy(), START, horizon=6, candidates=[Naive]).raw.assign(
                series_id=sid, horizon=np.arange(1, 7)
            )
            for sid, g in history.groupby("series_id")
        ]
    )
    calibrated, _, _ = forecast_filled(history, as_of, horizon=6, models=("naive",))
    before, after = _coverage(raw, futures, "80"), _coverage(calibrated, futures, "80")
    assert before[-1] > 0.95 and 0.72 <= after[-1] <= 0.88
    assert (after <= before + 1e-9).all() and 0.74 <= after.mean() <= 0.86
    width = (calibrated["hi80"] - calibrated["lo80"]).to_numpy().reshape(futures.shape)[:, -1]
    assert np.median(width) < 0.6 * np.median(
        (raw["hi80"] - raw["lo80"]).to_numpy().reshape(futures.shape)[:, -1]
    )
    assert 0.91 <= _coverage(calibrated, futures, "95").mean() <= 0.985


def test_missing_months_are_filled_with_zero_up_to_the_month_before_as_of() -> None:
    series = pd.DataFrame(
        {
            "series_id": ["region:A", "region:A"],
            "level": ["region", "region"],
            "member": ["A", "A"],
            "period_start": pd.to_datetime(["2026-01-01", "2026-04-01"]),
            "revenue": [5.0, 7.0],
        }
    )
    filled = complete_months(series, date(2026, 6, 15))
    assert filled["period_start"].dt.strftime("%Y-%m").tolist() == [
        "2026-01",
        "2026-02",
        "2026-03",
        "2026-04",
        "2026-05",
    ]
    assert filled["revenue"].tolist() == [5.0, 0.0, 0.0, 7.0, 0.0]


def test_forecasts_start_at_the_as_of_month_and_record_every_candidate() -> None:
    months = pd.date_range("2023-01-01", periods=36, freq="MS")
    series = pd.DataFrame(
        {
            "series_id": "total:all",
            "level": "total",
            "member": "all",
            "period_start": months,
            "revenue": np.tile(PATTERN, 3),
        }
    )
    as_of = date(2026, 1, 10)
    snapshot, backtests, _ = forecast_filled(complete_months(series, as_of), as_of, horizon=3)
    assert snapshot["period_start"].dt.strftime("%Y-%m").tolist() == ["2026-01", "2026-02", "2026-03"]
    assert snapshot["horizon"].tolist() == [1, 2, 3]
    assert set(backtests["model"]) == {"naive", "seasonal_naive", "ets_theta"}
    assert backtests["selected"].sum() == 1


def test_arima_searches_a_small_set_of_orders_once_and_continues_a_trend() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(40, dtype=float)
    y = 500 + 20 * t + rng.normal(0, 4, 40)
    fitted = ARIMA().fit_origins(y, [31, 32, 33, 40])
    assert sorted(fitted) == [31, 32, 33, 40]
    assert len({model.spec for model in fitted.values()}) == 1  # chosen on the earliest origin, then kept
    assert fitted[40].spec is not None and fitted[40].spec[2] == "t"  # a drift term for a trend
    forecast = fitted[40].predict(6)
    np.testing.assert_allclose(forecast["mean"], 500 + 20 * np.arange(40, 46), rtol=0.01)
    assert (forecast["lo95"] < forecast["lo80"]).all() and (forecast["hi80"] < forecast["hi95"]).all()
    assert ARIMA().fit_origins(y[:8], [6, 8]) == {}


def test_models_are_chosen_by_name_and_arima_joins_the_backtest_when_asked() -> None:
    y = np.tile(PATTERN, 3) + np.arange(36)
    names = [factory().name for factory in default_candidates(12, ("ets", "arima"))]
    assert names == ["ets", "arima"]
    result = forecast_series("s", y, START, horizon=3, candidates=default_candidates(12, ("naive", "arima")))
    assert {score.model for score in result.scores} == {"naive", "arima"}
    airline = ARIMA(seasonal=True).fit(np.tile(PATTERN, 3)[:30] + np.arange(30))
    assert airline.name == "sarima" and airline.spec == ((0, 1, 1), (0, 1, 1), "n")
    with pytest.raises(SeriesTooShort):
        ARIMA(seasonal=True).fit(np.tile(PATTERN, 2)[:20])  # less than two seasons and two months
    with pytest.raises(ValueError, match="unknown forecast model 'prophet'"):
        default_candidates(12, ("prophet",))


@pytest.mark.parametrize("amplitude", [0.0, 0.2])
def test_theta_matches_statsmodels_theta_model(amplitude: float) -> None:
    """Five years of a trending series, with and without a multiplicative season: the forecasts agree with
    statsmodels' ThetaModel (the reference) within 0.5% over a year; the smoothing parameter differs only
    by the grid's resolution. The season is found when there is one and not when there is none."""
    from statsmodels.tsa.forecasting.theta import ThetaModel

    rng = np.random.default_rng(4)
    t = np.arange(60)
    y = (500 + 3 * t) * (1 + amplitude * np.sin(2 * np.pi * t / 12)) * rng.lognormal(0, 0.03, 60)
    ours = Theta().fit(y)
    assert (seasonal_indices(y, 12) is not None) == (amplitude > 0)
    reference = ThetaModel(
        y, period=12, deseasonalize=amplitude > 0, method="multiplicative", use_test=False
    ).fit()
    np.testing.assert_allclose(ours.predict(12)["mean"], reference.forecast(12), rtol=0.005)


def test_a_plain_season_in_three_years_is_found_and_noise_is_not() -> None:
    """The season test reads the series around its trend by position in the year: a season three times the
    noise is found in each of 50 three-year series (with a trend or not), white noise in almost none."""
    rng = np.random.default_rng(8)
    t = np.arange(36)
    found = {"season": 0, "trend and season": 0, "noise": 0}
    for _ in range(50):
        noise = rng.normal(0, 5, 36)
        season = 15 * np.sin(2 * np.pi * t / 12)
        found["season"] += seasonal_indices(300 + season + noise, 12) is not None
        found["trend and season"] += seasonal_indices(300 + 1.5 * t + season + noise, 12) is not None
        found["noise"] += seasonal_indices(300 + noise, 12) is not None
    assert found["season"] == 50 and found["trend and season"] == 50 and found["noise"] <= 2


def test_the_combination_averages_its_members_forecasts_and_intervals() -> None:
    y = 200 + 2 * np.arange(40) + np.random.default_rng(2).normal(0, 4, 40)
    combined = candidate_factory("ets_theta")().fit(y).predict(6)
    damped = ETS(damped_trend=True).fit(y).predict(6)
    theta = Theta().fit(y).predict(6)
    pd.testing.assert_frame_equal(combined, (damped + theta) / 2)


def test_each_lead_is_calibrated_on_the_latest_origins_that_can_see_it() -> None:
    """A series of 20 months, 3 months ahead, 2 origins per lead: lead 1 reads the origins after months 18
    and 19, lead 3 those after months 16 and 17; each error is over that origin's own stated half-width."""
    y = np.arange(1.0, 21.0)
    origins = calibration_origins(len(y), horizon=3, folds=2)
    assert origins == [16, 17, 18, 19]
    fitted = fit_origins(Naive, y, origins)
    z80, z95 = calibration_errors(fitted, y, horizon=3, folds=2)
    # Naive after month o: forecast o (the last value), one-step sd 1 (every step is +1), so the lead-k
    # error is k and the 80% half-width is 1.2816 * sqrt(k).
    for lead in (1, 2, 3):
        expected = lead / (Z80 * np.sqrt(lead))
        np.testing.assert_allclose(z80[:, lead - 1], [expected, expected])
    assert z95[0, 0] == pytest.approx(1 / Z95)
