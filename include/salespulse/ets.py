"""Additive-error exponential smoothing (ETS A,N,N / A,Ad,N / A,N,A / A,Ad,A), fitted for many parameter
sets and many forecast origins in one pass.

Why not statsmodels' ``ETSModel`` for every fit: a rolling-origin backtest of two ETS variants over three
origins, plus the final refit, is eight maximum-likelihood fits per series, and statsmodels takes 80-200 ms
for each on a 3-year monthly series. At 10,000 series that is hours on two cores. statsmodels stays the
reference: ``tests/test_ets.py`` checks that these fits give the same one-step errors and forecasts as
``ETSModel`` run with the same parameters and initial states.

How it is fast, in the innovations state-space form (Hyndman et al., *Forecasting with Exponential
Smoothing*, 2008, ch. 3 and 5)::

    y_t = w' x_{t-1} + e_t,        x_t = F x_{t-1} + g e_t

- With the smoothing parameters fixed, the one-step errors are affine in the initial state ``x_0``:
  ``e_t = ytil_t - a_t' x_0`` with ``x_t = D x_{t-1} + g y_t``, ``D = F - g w'`` and ``a_t' = w' D^(t-1)``.
  The initial states that minimise the sum of squared errors (the Gaussian likelihood, for additive errors)
  are then a least-squares solution, so the only search left is over 1-4 smoothing parameters.
- That search is a grid, and the recursion runs for every grid point at once as array operations.
- A forecast origin is a prefix of the series: one pass keeps ``a_t`` and ``ytil_t`` for every step, so
  the least squares of each origin is a sum over a prefix. All backtest origins and the final fit share it.
- A second, finer grid around each origin's best point refines the estimate.

The seasonal states are constrained to sum to zero (the level carries the mean), and the parameters kept
to the usual region: 0 < beta < alpha, 0 < gamma < 1 - alpha, phi in [0.8, 0.98].
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

ALPHAS = np.array([0.02, 0.08, 0.16, 0.28, 0.42, 0.58, 0.74, 0.88, 0.98])
BETA_SHARES = np.array([0.02, 0.1, 0.3, 0.6])  # beta = share * alpha
GAMMA_SHARES = np.array([0.02, 0.1, 0.3, 0.6])  # gamma = share * (1 - alpha)
PHIS = np.array([0.8, 0.9, 0.98])
MIN_OBSERVATIONS = 10


@dataclass(frozen=True)
class Shape:
    """Which components a model has."""

    trend: bool
    seasonal: bool
    season_length: int

    @property
    def state_size(self) -> int:
        return 1 + int(self.trend) + (self.season_length if self.seasonal else 0)

    @property
    def n_smoothing(self) -> int:
        return 1 + 2 * int(self.trend) + int(self.seasonal)  # alpha, (beta, phi), (gamma)

    @property
    def n_initial(self) -> int:
        return self.state_size - int(self.seasonal)  # the seasonal states sum to zero

    def matrices(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``w`` (G, d), ``F`` (G, d, d) and ``g`` (G, d) for parameter rows ``alpha, beta, gamma, phi``."""
        rows = len(params)
        d, m = self.state_size, self.season_length
        alpha, beta, gamma, phi = params.T
        w = np.zeros((rows, d))
        f = np.zeros((rows, d, d))
        g = np.zeros((rows, d))
        w[:, 0] = 1.0
        f[:, 0, 0] = 1.0
        g[:, 0] = alpha
        if self.trend:
            w[:, 1] = phi
            f[:, 0, 1] = phi
            f[:, 1, 1] = phi
            g[:, 1] = beta
        if self.seasonal:
            s = 1 + int(self.trend)  # seasons: newest first, the one used next (lag m) last
            w[:, s + m - 1] = 1.0
            f[:, s, s + m - 1] = 1.0
            for j in range(1, m):
                f[:, s + j, s + j - 1] = 1.0
            g[:, s] = gamma
        return w, f, g

    def initial_basis(self) -> np.ndarray:
        """``x_0 = B theta``: the level and trend free, the last season minus the sum of the others."""
        d, k = self.state_size, self.n_initial
        basis = np.zeros((d, k))
        basis[:k, :k] = np.eye(k)
        if self.seasonal:
            s = 1 + int(self.trend)
            basis[d - 1, s:k] = -1.0
        return basis

    def grid(self) -> np.ndarray:
        """The coarse search grid, as rows ``alpha, beta, gamma, phi``."""
        betas = BETA_SHARES if self.trend else np.zeros(1)
        gammas = GAMMA_SHARES if self.seasonal else np.zeros(1)
        phis = PHIS if self.trend else np.ones(1)
        rows = [(a, b * a, c * (1 - a), p) for a, b, c, p in itertools.product(ALPHAS, betas, gammas, phis)]
        return np.array(rows)

    def refine(self, best: np.ndarray) -> np.ndarray:
        """A finer grid around one point: each free parameter at its value and a step either side."""
        a, b, c, p = best
        b_share = b / a if a else 0.0
        c_share = c / (1 - a) if a < 1 else 0.0
        alphas = np.clip(a + np.array([-0.04, 0.0, 0.04]), 0.005, 0.995)
        b_shares = np.clip(b_share * np.array([0.6, 1.0, 1.5]), 0.005, 0.95) if self.trend else [0.0]
        c_shares = np.clip(c_share * np.array([0.6, 1.0, 1.5]), 0.005, 0.95) if self.seasonal else [0.0]
        phis = np.clip(p + np.array([-0.04, 0.0, 0.04]), 0.8, 0.98) if self.trend else [1.0]
        rows = [
            (x, y * x, z * (1 - x), q) for x, y, z, q in itertools.product(alphas, b_shares, c_shares, phis)
        ]
        return np.unique(np.array(rows), axis=0)


@dataclass(frozen=True)
class Fit:
    """One origin's estimate: parameters, initial states, the sum of squared one-step errors."""

    shape: Shape
    params: np.ndarray  # alpha, beta, gamma, phi
    initial: np.ndarray  # x_0 (d,)
    sse: float
    n: int

    @property
    def sigma2(self) -> float:
        return self.sse / (self.n - self.shape.n_initial - self.shape.n_smoothing)


def _transition(shape: Shape, state: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``F x`` for every row of ``state`` (G, d), from the structure of ``F`` instead of a dense product."""
    out = np.empty_like(state)
    out[:, 0] = state[:, 0]
    s = 1
    if shape.trend:
        out[:, 0] += phi * state[:, 1]
        out[:, 1] = phi * state[:, 1]
        s = 2
    if shape.seasonal:
        out[:, s] = state[:, -1]
        out[:, s + 1 :] = state[:, s:-1]
    return out


def _transition_left(shape: Shape, row: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``r' F`` for every row of ``row`` (G, d)."""
    out = np.empty_like(row)
    out[:, 0] = row[:, 0]
    s = 1
    if shape.trend:
        out[:, 1] = phi * (row[:, 0] + row[:, 1])
        s = 2
    if shape.seasonal:
        out[:, -1] = row[:, s]
        out[:, s:-1] = row[:, s + 1 :]
    return out


def _sweep(shape: Shape, y: np.ndarray, params: np.ndarray, origins: list[int]) -> dict[int, tuple]:
    """For every parameter row, the least-squares initial states and SSE on each prefix ``y[:origin]``.

    Returns ``{origin: (sse (G,), theta (G, k))}``. ``D = F - g w'`` is applied as ``F`` (a shift and a few
    scalings, :func:`_transition`) minus a rank-one term, O(G d) per step instead of O(G d^2).
    """
    w, _, g = shape.matrices(params)
    phi = params[:, 3]
    basis = shape.initial_basis()
    rows, n = len(params), max(origins)
    z = np.zeros((rows, shape.state_size))  # the state when x_0 = 0
    r = w.copy()  # w' D^(t-1): how x_0 reaches the prediction of y_t
    design = np.empty((rows, n, shape.n_initial))
    target = np.empty((rows, n))
    for t in range(n):
        design[:, t] = r @ basis
        target[:, t] = y[t] - (w * z).sum(axis=1)
        # z <- D z + g y = F z + g (y - w'z);  r <- r D = r F - (r g) w'
        z = _transition(shape, z, phi) + g * target[:, t, None]
        r = _transition_left(shape, r, phi) - (r * g).sum(axis=1)[:, None] * w
    out = {}
    k = shape.n_initial
    for origin in origins:
        a, b = design[:, :origin], target[:, :origin]
        a_transposed = a.transpose(0, 2, 1)
        gram = a_transposed @ a
        moment = (a_transposed @ b[:, :, None])[:, :, 0]
        ridge = 1e-9 * np.maximum(np.trace(gram, axis1=1, axis2=2), 1e-12) / k
        gram = gram + ridge[:, None, None] * np.eye(k)
        theta = np.linalg.solve(gram, moment[:, :, None])[:, :, 0]
        sse = (b * b).sum(axis=1) - (theta * moment).sum(axis=1)
        sse = np.where(np.isfinite(sse), np.maximum(sse, 0.0), np.inf)
        out[origin] = (sse, theta)
    return out


def fit_origins(shape: Shape, y: np.ndarray, origins: list[int]) -> dict[int, Fit]:
    """Fit the model on each prefix ``y[:origin]``: a coarse grid, then a finer one around each best point."""
    y = np.asarray(y, dtype=float)
    usable = [o for o in origins if o - shape.n_initial - shape.n_smoothing >= 2 and o >= MIN_OBSERVATIONS]
    if not usable:
        return {}
    coarse = shape.grid()
    first = _sweep(shape, y, coarse, usable)
    local = {o: shape.refine(coarse[int(np.argmin(first[o][0]))]) for o in usable}
    stacked = np.concatenate(list(local.values()))
    second = _sweep(shape, y, stacked, usable)
    basis = shape.initial_basis()
    fits, start = {}, 0
    for origin, candidates in local.items():
        sse, theta = second[origin]
        block = slice(start, start + len(candidates))
        start += len(candidates)
        best = block.start + int(np.argmin(sse[block]))
        fits[origin] = Fit(shape, stacked[best], basis @ theta[best], float(sse[best]), origin)
    return fits


def state_at_end(fit: Fit, y: np.ndarray) -> np.ndarray:
    """Run the filter from ``x_0`` over ``y[:fit.n]`` and return the last state."""
    w, f, g = (m[0] for m in fit.shape.matrices(fit.params[None, :]))
    x = fit.initial.copy()
    for value in y[: fit.n]:
        error = value - w @ x
        x = f @ x + g * error
    return x


def one_step_errors(fit: Fit, y: np.ndarray) -> np.ndarray:
    """The in-sample one-step-ahead errors of ``fit`` over ``y[:fit.n]``."""
    w, f, g = (m[0] for m in fit.shape.matrices(fit.params[None, :]))
    x = fit.initial.copy()
    errors = np.empty(fit.n)
    for t, value in enumerate(y[: fit.n]):
        errors[t] = value - w @ x
        x = f @ x + g * errors[t]
    return errors


def forecast(fit: Fit, state: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Point forecasts and their standard deviations ``h`` steps from ``state``:
    ``mean_j = w' F^(j-1) x_n`` and ``var_j = sigma^2 (1 + sum_{i<j} (w' F^(i-1) g)^2)``."""
    w, f, g = (m[0] for m in fit.shape.matrices(fit.params[None, :]))
    means, weights = np.empty(h), np.empty(h)
    power_state, power_g = state.copy(), g.copy()
    for j in range(h):
        means[j] = w @ power_state
        weights[j] = w @ power_g
        power_state, power_g = f @ power_state, f @ power_g
    variance = fit.sigma2 * (1 + np.concatenate([[0.0], np.cumsum(weights[:-1] ** 2)]))
    return means, np.sqrt(np.maximum(variance, 0.0))
