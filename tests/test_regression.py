"""The regression on drivers (salespulse.regression): it recovers a known coefficient, forecasts from its
driver's own forecast without looking past an origin, and the backtest picks it where drivers explain
revenue and not where they don't."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from salespulse.forecast import ETS, complete_months, forecast_filled
from salespulse.regression import DriverRegression, NotEnoughDrivers, weekdays

START = pd.Timestamp("2021-01-01")


def _driven(
    n: int, seed: int, per_customer: float = 40.0, per_weekday: float = 150.0
) -> tuple[np.ndarray, np.ndarray]:
    """Customers wander; revenue = 1000 + per_customer * customers + per_weekday * weekdays + AR(1) noise."""
    rng = np.random.default_rng(seed)
    customers = 200 + np.cumsum(rng.normal(0, 8, n))
    noise = np.zeros(n)
    shocks = rng.normal(0, 200, n)
    for t in range(1, n):
        noise[t] = 0.5 * noise[t - 1] + shocks[t]
    return customers, 1000 + per_customer * customers + per_weekday * weekdays(START, 0, n) + noise


def test_weekdays_count_monday_to_friday() -> None:
    # January 2021 has 21 weekdays, February 20, March 23.
    assert weekdays(START, 0, 3).tolist() == [21.0, 20.0, 23.0]
    assert weekdays(START, 12, 1).tolist() == [21.0]  # January 2022


def test_the_regression_recovers_a_known_coefficient() -> None:
    """Five years of revenue made of 40 per customer and 150 per weekday: the fit finds 40 within 5% and the
    weekday effect within a third (the calendar moves little from month to month)."""
    customers, revenue = _driven(60, seed=5)
    model = DriverRegression(customers, START, lambda: ETS(damped_trend=True)).fit(revenue)
    assert model.coefficients["customers"] == pytest.approx(40.0, rel=0.05)
    assert model.coefficients["weekdays"] == pytest.approx(150.0, rel=0.33)
    prediction = model.predict(6)
    assert (prediction["lo95"] < prediction["lo80"]).all() and (prediction["hi80"] < prediction["hi95"]).all()


def test_a_backtest_origin_sees_no_customer_after_it() -> None:
    """A fit on the first 40 months is the same whatever the customers did afterwards."""
    customers, revenue = _driven(60, seed=6)
    later = customers.copy()
    later[40:] *= 10
    driver = lambda: ETS(damped_trend=True)  # noqa: E731 - the customers' own forecast
    one = DriverRegression(customers, START, driver).fit(revenue[:40]).predict(3)
    two = DriverRegression(later, START, driver).fit(revenue[:40]).predict(3)
    pd.testing.assert_frame_equal(one, two)
    with pytest.raises(NotEnoughDrivers):
        DriverRegression(customers, START).fit(revenue[:12])
    with pytest.raises(NotEnoughDrivers):
        DriverRegression(np.full(60, 5.0), START).fit(revenue)


def test_the_backtest_chooses_the_regression_where_drivers_explain_revenue() -> None:
    """Ten series whose revenue follows the calendar (1,000 a weekday, known ahead) and their customers,
    ten whose revenue ignores both: asked to, the backtest picks the regression for most of the first and
    few of the second. (Customers alone are no help when they must be forecast as hard as revenue.)"""
    months = pd.date_range(START, periods=48, freq="MS")
    frames = []
    for i in range(20):
        driven = i < 10
        customers, revenue = _driven(48, seed=100 + i, per_customer=40.0, per_weekday=1000.0 if driven else 0)
        if not driven:
            revenue = 9000 + np.cumsum(np.random.default_rng(i).normal(0, 300, 48))
        names = {"series_id": f"s:{i:02d}", "level": "s", "member": f"{i:02d}"}
        frames.append(
            pd.DataFrame({**names, "period_start": months, "revenue": revenue, "customers": customers})
        )
    filled = complete_months(pd.concat(frames, ignore_index=True), date(2025, 1, 1))
    snapshot, backtests, _ = forecast_filled(
        filled, date(2025, 1, 1), horizon=3, models=("naive", "seasonal_naive", "ets_theta", "drivers")
    )
    chosen = snapshot.drop_duplicates("series_id").set_index("series_id")["model"]
    driven_picks = (chosen[[f"s:{i:02d}" for i in range(10)]] == "drivers").sum()
    other_picks = (chosen[[f"s:{i:02d}" for i in range(10, 20)]] == "drivers").sum()
    assert driven_picks >= 7 and other_picks <= 3, chosen.to_dict()
    assert set(backtests["model"]) == {"naive", "seasonal_naive", "ets_theta", "drivers"}
