"""BG/NBD and Gamma-Gamma: parameters recovered from data simulated with them, a calibration/holdout
comparison, and numerical stability for customers with hundreds of purchases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from salespulse.clv import (
    BetaGeoFitter,
    GammaGammaFitter,
    customer_lifetime_value,
    frequency_monetary_correlation,
    simulate_bgnbd,
    summarize,
)

TRUE_BG = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}
TRUE_GG = {"p": 6.0, "q": 4.0, "gamma": 15.0}


def summary_at(times: list[np.ndarray], T: np.ndarray) -> pd.DataFrame:
    frequency = np.array([np.sum(t <= end) for t, end in zip(times, T, strict=True)], dtype=float)
    recency = np.array(
        [t[t <= end].max() if np.any(t <= end) else 0.0 for t, end in zip(times, T, strict=True)]
    )
    return pd.DataFrame({"frequency": frequency, "recency": recency, "T": T.astype(float)})


@pytest.fixture(scope="module")
def simulated() -> tuple[list[np.ndarray], np.ndarray]:
    n = 20_000
    T = np.random.default_rng(1).uniform(27, 39, size=n)
    return simulate_bgnbd(n, T + 39, seed=2, **TRUE_BG), T


def test_bgnbd_recovers_the_parameters_it_was_simulated_with(simulated) -> None:
    """Tolerance: 15% of each true parameter (20,000 customers)."""
    times, T = simulated
    fitted = BetaGeoFitter().fit(summary_at(times, T))
    for name, true in TRUE_BG.items():
        assert fitted.params_[name] == pytest.approx(true, rel=0.15), name


def test_bgnbd_predicts_the_holdout_period(simulated) -> None:
    """Calibration: each customer's first T weeks; holdout: the next 39 weeks."""
    times, T = simulated
    calibration = summary_at(times, T)
    actual = np.array([np.sum((t > end) & (t <= end + 39)) for t, end in zip(times, T, strict=True)])
    fitted = BetaGeoFitter().fit(calibration)
    predicted = fitted.expected_purchases(calibration, 39.0)
    assert predicted.sum() == pytest.approx(actual.sum(), rel=0.10)
    # By number of calibration purchases, the conditional expectations track what happened.
    groups = pd.DataFrame({"x": np.minimum(calibration["frequency"], 7), "pred": predicted, "act": actual})
    by_group = groups.groupby("x")[["pred", "act"]].mean()
    assert np.corrcoef(by_group["pred"], by_group["act"])[0, 1] > 0.95


def test_p_alive_is_one_without_repeats_and_falls_with_time_since_the_last_purchase() -> None:
    fitted = BetaGeoFitter()
    fitted.params_ = dict(TRUE_BG)
    summary = pd.DataFrame({"frequency": [0, 5, 5, 5], "recency": [0, 30, 20, 5], "T": [30, 30, 30, 30]})
    alive = fitted.probability_alive(summary)
    assert alive[0] == 1.0
    assert alive[1] > alive[2] > alive[3]


def test_hundreds_of_purchases_give_finite_numbers() -> None:
    fitted = BetaGeoFitter()
    fitted.params_ = dict(TRUE_BG)
    summary = pd.DataFrame(
        {"frequency": [300.0, 800.0, 0.0], "recency": [400.0, 1000.0, 0.0], "T": [410.0, 1000.0, 5.0]}
    )
    assert np.isfinite(fitted.probability_alive(summary)).all()
    assert np.isfinite(fitted.expected_purchases(summary, 52.0)).all()
    ll = BetaGeoFitter.log_likelihood(
        np.array([0.25, 4.0, 0.8, 2.5]), *(summary[c].to_numpy() for c in ("frequency", "recency", "T"))
    )
    assert np.isfinite(ll).all()


def test_gamma_gamma_recovers_its_parameters_and_values_follow_history() -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    frequency = rng.integers(1, 15, size=n).astype(float)
    nu = rng.gamma(TRUE_GG["q"], 1 / TRUE_GG["gamma"], size=n)
    monetary = rng.gamma(TRUE_GG["p"] * frequency, 1 / (frequency * nu))
    summary = pd.DataFrame({"frequency": frequency, "monetary_value": monetary})
    fitted = GammaGammaFitter().fit(summary)
    for name, true in TRUE_GG.items():
        assert fitted.params_[name] == pytest.approx(true, rel=0.15), name
    value = fitted.expected_average_value(summary)
    assert np.corrcoef(value, monetary)[0, 1] > 0.9
    assert abs(frequency_monetary_correlation(summary)) < 0.05  # simulated independent: the check says so


def test_summarize_follows_the_bgnbd_conventions() -> None:
    """Customer A buys on days 0, 0, 3 and 10 (two amounts on day 0 are one period); B once on day 5.
    Observation ends on day 20: A has 2 repeat purchases, recency 10, T 20, mean repeat spend (30+50)/2."""
    transactions = pd.DataFrame(
        {
            "customer": ["A", "A", "A", "A", "B", "A"],
            "day": pd.to_datetime(
                ["2026-01-01", "2026-01-01", "2026-01-04", "2026-01-11", "2026-01-06", "2026-02-01"]
            ),
            "amount": [10.0, 5.0, 30.0, 50.0, 99.0, 1000.0],
        }
    )
    summary = summarize(transactions, "customer", "day", "amount", "2026-01-21", freq="D")
    assert summary.loc["A"].to_dict() == {"frequency": 2, "recency": 10.0, "T": 20.0, "monetary_value": 40.0}
    assert summary.loc["B"].to_dict() == {"frequency": 0, "recency": 0.0, "T": 15.0, "monetary_value": 0.0}
    weekly = summarize(transactions, "customer", "day", "amount", "2026-01-21", freq="W")
    assert weekly.loc["A", "frequency"] == 1  # days 3 and 10 fall in weeks 0 and 1; day 0 and 3 share week 0


def test_clv_is_discounted_and_grows_with_the_horizon(simulated) -> None:
    times, T = simulated
    summary = summary_at(times, T).head(2000)
    summary["monetary_value"] = np.where(summary["frequency"] > 0, 20.0 + summary["frequency"], 0.0)
    bgf = BetaGeoFitter().fit(summary)
    ggf = GammaGammaFitter().fit(summary)
    weeks_per_month = 52 / 12
    short = customer_lifetime_value(bgf, ggf, summary, months=6, periods_per_month=weeks_per_month)
    long = customer_lifetime_value(bgf, ggf, summary, months=12, periods_per_month=weeks_per_month)
    undiscounted = customer_lifetime_value(
        bgf, ggf, summary, months=12, monthly_discount_rate=0.0, periods_per_month=weeks_per_month
    )
    assert (long >= short).all() and (undiscounted >= long).all()
    expected = bgf.expected_purchases(summary, 12 * weeks_per_month) * ggf.expected_average_value(summary)
    np.testing.assert_allclose(undiscounted, expected, rtol=1e-9)
