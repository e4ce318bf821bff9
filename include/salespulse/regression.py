"""Revenue regressed on its drivers, with autocorrelated errors: the forecast candidate ``drivers``.

    revenue_t = c + b_customers * customers_t + b_weekdays * weekdays_t + u_t,   u_t = phi * u_(t-1) + e_t

- ``customers``: the series' own count of customers who bought that month (``marts.sales_series``);
- ``weekdays``: Monday-to-Friday days in the month, the calendar effect, known ahead.

statsmodels' SARIMAX fits it by maximum likelihood. Ahead, the customers come from the driver's own
forecast (damped-trend ETS of the customer series, or its last count when that cannot be fitted);
the weekdays are counted. The interval is SARIMAX's given that driver forecast; the uncertainty of the
driver forecast itself is left to the per-lead calibration from the backtest (``forecast.lead_scales``),
which sees the errors it causes. It is a candidate like any other: the backtest chooses it for a series
only where it wins there, and it is opt-in (``SALESPULSE_FORECAST_MODELS=...,drivers``) because each
SARIMAX fit costs tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

MIN_MONTHS = 18  # two more years of parameters than a year of data would carry
DRIVERS = ("customers", "weekdays")


class NotEnoughDrivers(ValueError):
    """Too little history, or a driver that never changes: the regression cannot be fitted."""


def weekdays(first_month: pd.Timestamp, start: int, count: int) -> np.ndarray:
    """Monday-to-Friday days in ``count`` months from the ``start``-th month after ``first_month``."""
    months = pd.date_range(pd.Timestamp(first_month) + pd.DateOffset(months=start), periods=count, freq="MS")
    ends = months + pd.offsets.MonthBegin(1)
    return np.busday_count(months.values.astype("datetime64[D]"), ends.values.astype("datetime64[D]")).astype(
        float
    )


@dataclass
class DriverRegression:
    """The ``drivers`` candidate. ``customers`` is the series' whole monthly customer history and
    ``first_month`` the month of its first value; a fit on a prefix of the revenue uses the same prefix of
    the customers, so a backtest origin sees nothing after it. ``driver`` makes the model that forecasts
    the customers (``fit(y)``, ``predict(h)``); without one, or where it cannot be fitted, the last count
    is carried forward."""

    customers: np.ndarray
    first_month: pd.Timestamp
    driver: Callable[[], Any] | None = None
    name: str = "drivers"
    coefficients: dict[str, float] = field(default_factory=dict)
    _result: Any = None
    _driver: Any = None
    _n: int = 0

    def _exog(self, customers: np.ndarray, start: int) -> np.ndarray:
        return np.column_stack([customers, weekdays(self.first_month, start, len(customers))])

    def fit(self, y: np.ndarray) -> DriverRegression:
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        y = np.asarray(y, dtype=float)
        n = len(y)
        customers = np.asarray(self.customers[:n], dtype=float)
        if n < MIN_MONTHS or len(customers) < n:
            raise NotEnoughDrivers(f"the driver regression needs {MIN_MONTHS} months with their customers")
        if np.ptp(customers) == 0:
            raise NotEnoughDrivers("the customer count never changes, so it cannot explain revenue")
        model = SARIMAX(y, exog=self._exog(customers, 0), order=(1, 0, 0), trend="c")
        result = model.fit(disp=False)
        names = ["intercept", *DRIVERS]
        coefficients = dict(zip(names, np.asarray(result.params[: len(names)], dtype=float), strict=True))
        try:
            driver = None if self.driver is None else self.driver().fit(customers)
        except ValueError:  # the driver's model cannot be fitted on this history
            driver = None
        fitted = DriverRegression(self.customers, self.first_month, self.driver, self.name, coefficients)
        fitted._result, fitted._driver, fitted._n = result, driver, n
        return fitted

    def predict(self, h: int) -> pd.DataFrame:
        if self._result is None:
            raise RuntimeError("fit the model before predicting")
        if self._driver is None:
            future = np.full(h, float(self.customers[self._n - 1]))
        else:
            future = np.maximum(self._driver.predict(h)["mean"].to_numpy(float), 0.0)
        forecast = self._result.get_forecast(h, exog=self._exog(future, self._n))
        mean = np.asarray(forecast.predicted_mean, dtype=float)
        sd = np.sqrt(np.maximum(np.asarray(forecast.var_pred_mean, dtype=float), 0.0))
        z80, z95 = float(norm.ppf(0.90)), float(norm.ppf(0.975))
        return pd.DataFrame(
            {"mean": mean, "lo80": mean - z80 * sd, "hi80": mean + z80 * sd, "lo95": mean - z95 * sd,
             "hi95": mean + z95 * sd}
        )  # fmt: skip
