"""Customer lifetime value: BG/NBD for repeat purchases and P(alive), Gamma-Gamma for spend.

Conventions of the BG/NBD literature (Fader, Hardie and Lee, 2005): per customer, ``frequency`` is the
number of *repeat* purchases (distinct purchase periods after the first), ``recency`` the age of the
customer at their last purchase, and ``T`` their age at the end of observation, all in periods of
``freq`` measured from the first purchase. ``monetary_value`` is the mean value of the repeat purchases.

Everything is computed in log space (``gammaln``, ``logaddexp``), so customers with hundreds of purchases
neither overflow nor give NaN. Fitting maximises the likelihood with scipy over log-parameters, on the
distinct (frequency, recency, T) rows weighted by how many customers share them, which keeps a fit on a
million customers to a few seconds.

    summary = summarize(transactions, "customer_id", "order_date", "amount", observation_end, freq="W")
    bgf = BetaGeoFitter(penalizer=0.001).fit(summary)
    summary["p_alive"] = bgf.probability_alive(summary)
    ggf = GammaGammaFitter().fit(summary[summary.frequency > 0])
    summary["clv"] = customer_lifetime_value(bgf, ggf, summary, months=12, monthly_discount_rate=0.01)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, gammaln, hyp2f1

PERIOD_DAYS = {"D": 1.0, "W": 7.0, "M": 365.25 / 12}


def summarize(
    transactions: pd.DataFrame,
    customer_col: str,
    date_col: str,
    amount_col: str,
    observation_end: pd.Timestamp | str,
    freq: str = "D",
) -> pd.DataFrame:
    """Frequency, recency, T and monetary value per customer, in periods of ``freq`` (D, W or M).

    Purchases on the same period count once (their amounts add up); purchases after ``observation_end``
    are ignored. ``monetary_value`` is the mean of the repeat purchases (0 for one-time buyers).
    """
    if freq not in PERIOD_DAYS:
        raise ValueError(f"freq must be one of {sorted(PERIOD_DAYS)}, got {freq!r}")
    end = pd.Timestamp(observation_end)
    data = transactions[[customer_col, date_col, amount_col]].copy()
    data[date_col] = pd.to_datetime(data[date_col])
    data = data[data[date_col] <= end]
    first = data.groupby(customer_col)[date_col].transform("min")
    data["period"] = np.floor((data[date_col] - first).dt.days / PERIOD_DAYS[freq]).astype("int64")
    per_period = data.groupby([customer_col, "period"], sort=True)[amount_col].sum().reset_index()
    first_date = data.groupby(customer_col)[date_col].min()
    grouped = per_period.groupby(customer_col)
    summary = pd.DataFrame(
        {
            "frequency": grouped.size() - 1,
            "recency": grouped["period"].max().astype(float),
            "T": np.floor((end - first_date).dt.days / PERIOD_DAYS[freq]).astype(float),
        }
    )
    repeat = per_period[per_period["period"] > 0].groupby(customer_col)[amount_col].mean()
    summary["monetary_value"] = repeat.reindex(summary.index).fillna(0.0)
    return summary


def _compress(summary: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows and how many customers share each: the likelihood only needs them once."""
    counts = summary.groupby(columns, sort=False).size().reset_index(name="_weight")
    return counts[columns].to_numpy(float), counts["_weight"].to_numpy(float)


@dataclass
class BetaGeoFitter:
    """BG/NBD: purchase rate lambda ~ Gamma(r, alpha); after each purchase the customer drops out with
    probability p ~ Beta(a, b). ``penalizer`` adds an L2 penalty on the parameters (for sparse data)."""

    penalizer: float = 0.0
    params_: dict[str, float] = field(default_factory=dict)

    @property
    def r(self) -> float:
        return self.params_["r"]

    @property
    def alpha(self) -> float:
        return self.params_["alpha"]

    @property
    def a(self) -> float:
        return self.params_["a"]

    @property
    def b(self) -> float:
        return self.params_["b"]

    @staticmethod
    def log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = params
        a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
        a3 = -(r + x) * np.log(alpha + T)
        repeat = x > 0
        a4 = np.where(
            repeat,
            np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0)) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
        return a1 + a2 + np.logaddexp(a3, a4)

    def fit(self, summary: pd.DataFrame, initial: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)):
        rows, weights = _compress(summary, ["frequency", "recency", "T"])
        x, t_x, T = rows[:, 0], rows[:, 1], rows[:, 2]
        scale = max(float(np.max(T)), 1.0)  # fit on T in [0, 1]: alpha then lives near 1

        def negative(log_params: np.ndarray) -> float:
            params = np.exp(log_params)
            ll = np.sum(weights * self.log_likelihood(params, x, t_x / scale, T / scale))
            return -(ll - self.penalizer * np.sum(params**2)) / weights.sum()

        result = minimize(negative, np.log(initial), method="L-BFGS-B")
        if not result.success and not np.isfinite(result.fun):
            raise RuntimeError(f"BG/NBD fit did not converge: {result.message}")
        r, alpha, a, b = np.exp(result.x)
        self.params_ = {"r": float(r), "alpha": float(alpha * scale), "a": float(a), "b": float(b)}
        return self

    def _log_odds_dead(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        safe = np.where(x > 0, b + x - 1, 1.0)
        log_odds = np.log(a) - np.log(safe) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        return np.where(x > 0, log_odds, -np.inf)

    def probability_alive(self, summary: pd.DataFrame) -> np.ndarray:
        """P(alive | frequency, recency, T); 1 for customers with no repeat purchase."""
        x, t_x, T = (summary[c].to_numpy(float) for c in ("frequency", "recency", "T"))
        return expit(-self._log_odds_dead(x, t_x, T))

    def expected_purchases(self, summary: pd.DataFrame, t: float) -> np.ndarray:
        """Expected number of purchases in the next ``t`` periods, given each customer's history."""
        x, t_x, T = (summary[c].to_numpy(float) for c in ("frequency", "recency", "T"))
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = t / (alpha + T + t)
        log_ratio = (r + x) * (np.log(alpha + T) - np.log(alpha + T + t))
        hyper = hyp2f1(r + x, b + x, a + b + x - 1, z)
        numerator = (a + b + x - 1) / (a - 1) * (1 - np.exp(log_ratio) * hyper)
        return numerator * self.probability_alive(summary)


@dataclass
class GammaGammaFitter:
    """Gamma-Gamma spend model (Fader, Hardie and Lee, 2005): fitted on customers with repeat purchases."""

    penalizer: float = 0.0
    params_: dict[str, float] = field(default_factory=dict)

    @property
    def p(self) -> float:
        return self.params_["p"]

    @property
    def q(self) -> float:
        return self.params_["q"]

    @property
    def gamma(self) -> float:
        return self.params_["gamma"]

    @staticmethod
    def log_likelihood(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        p, q, gamma = params
        return (
            gammaln(p * x + q)
            - gammaln(p * x)
            - gammaln(q)
            + q * np.log(gamma)
            + (p * x - 1) * np.log(m)
            + p * x * np.log(x)
            - (p * x + q) * np.log(x * m + gamma)
        )

    def fit(self, summary: pd.DataFrame, initial: tuple[float, float, float] = (1.0, 1.0, 1.0)):
        repeaters = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
        if repeaters.empty:
            raise ValueError("Gamma-Gamma needs customers with repeat purchases and positive spend")
        rows, weights = _compress(repeaters, ["frequency", "monetary_value"])
        x, m = rows[:, 0], rows[:, 1]
        scale = float(np.mean(m))  # fit on spend around 1: gamma then lives near 1

        def negative(log_params: np.ndarray) -> float:
            params = np.exp(log_params)
            ll = np.sum(weights * self.log_likelihood(params, x, m / scale))
            return -(ll - self.penalizer * np.sum(params**2)) / weights.sum()

        result = minimize(negative, np.log(initial), method="L-BFGS-B")
        p, q, gamma = np.exp(result.x)
        self.params_ = {"p": float(p), "q": float(q), "gamma": float(gamma * scale)}
        return self

    def expected_average_value(self, summary: pd.DataFrame) -> np.ndarray:
        """E[spend per purchase | history]; customers without repeat purchases get the population mean."""
        x = summary["frequency"].to_numpy(float)
        m = summary["monetary_value"].to_numpy(float)
        p, q, gamma = self.p, self.q, self.gamma
        population = p * gamma / (q - 1)
        conditional = p * (gamma + x * m) / (p * x + q - 1)
        return np.where(x > 0, conditional, population)


def customer_lifetime_value(
    bgf: BetaGeoFitter,
    ggf: GammaGammaFitter,
    summary: pd.DataFrame,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
    periods_per_month: float = 1.0,
) -> np.ndarray:
    """Discounted expected spend over the next ``months``: purchases expected in each month x expected
    value per purchase / (1 + rate)^month. ``periods_per_month`` converts months to the summary's periods."""
    value = ggf.expected_average_value(summary)
    total = np.zeros(len(summary))
    previous = np.zeros(len(summary))
    for month in range(1, months + 1):
        cumulative = bgf.expected_purchases(summary, month * periods_per_month)
        total += (cumulative - previous) * value / (1 + monthly_discount_rate) ** month
        previous = cumulative
    return total


def simulate_bgnbd(n: int, horizon: np.ndarray, seed: int, **params: float) -> list[np.ndarray]:
    """Repeat-purchase times per customer under BG/NBD (rate ~ Gamma(r, alpha), dropout after each
    repeat purchase with p ~ Beta(a, b)), up to each customer's horizon. For validation and benchmarks."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(params["r"], 1 / params["alpha"], size=n)
    dropout = rng.beta(params["a"], params["b"], size=n)
    times: list[list[float]] = [[] for _ in range(n)]
    clock = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():
        idx = np.flatnonzero(alive)
        clock[idx] += rng.exponential(1 / rate[idx])
        past = clock[idx] > horizon[idx]
        alive[idx[past]] = False
        buying = idx[~past]
        for i in buying:
            times[i].append(clock[i])
        alive[buying[rng.random(len(buying)) < dropout[buying]]] = False
    return [np.asarray(t) for t in times]


def frequency_monetary_correlation(summary: pd.DataFrame) -> float:
    """Gamma-Gamma assumes spend per purchase is independent of frequency: report their correlation."""
    repeaters = summary[summary["frequency"] > 0]
    return float(repeaters["frequency"].corr(repeaters["monetary_value"]))
