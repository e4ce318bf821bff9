"""Coherent forecasts: every level's members add up to the total, period by period.

The levels are a grouped structure: region, segment, category and sales owner each split the same total,
with no single bottom level below all of them. So instead of summing a bottom level up, the base
forecasts are projected onto the coherent subspace (the constraint form of MinT, Wickramasuriya,
Athanasopoulos and Hyndman 2019):

    reconciled = base - W C' (C W C')^-1 C base

where each row of C says "total - sum of one level's members = 0" and W is the diagonal of each base
forecast's variance (MinT with a diagonal covariance, "WLS-var"). A series whose forecast is uncertain
absorbs more of the adjustment than a sharp one; with equal variances it is the OLS projection.
The variance comes from the series' own 95% interval, (hi95 - lo95) / (2 x 1.96) squared.

The interval bounds move with their mean (their width stays the model's). Revenue can't be negative:
a reconciled value below zero is clipped at zero and the clip is counted, since it breaks the sum by
that amount.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from salespulse.config import RECONCILIATION_METHODS
from salespulse.forecast import INTERVAL_COLUMNS, Z95

TOTAL = "total"
METHODS = RECONCILIATION_METHODS


@dataclass(frozen=True)
class ReconcileResult:
    forecasts: pd.DataFrame  # the input with reconciled mean and bounds, plus base_forecast
    max_incoherence: float  # largest |total - sum of a level's members| after reconciliation
    clipped: int  # reconciled values below zero set to zero


def constraint_matrix(levels: pd.Series) -> np.ndarray:
    """One row per level other than the total: +1 on the total, -1 on each of that level's members."""
    levels = levels.reset_index(drop=True)
    others = [lv for lv in dict.fromkeys(levels) if lv != TOTAL]
    total = np.flatnonzero(levels.to_numpy() == TOTAL)
    if len(total) != 1:
        raise ValueError(f"reconciliation needs exactly one total series, got {len(total)}")
    rows = np.zeros((len(others), len(levels)))
    for i, level in enumerate(others):
        rows[i, total[0]] = 1.0
        rows[i, levels.to_numpy() == level] = -1.0
    return rows


def project(base: np.ndarray, constraints: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """The coherent forecasts closest to ``base`` in the metric W^-1, W = diag(variances)."""
    if constraints.shape[0] == 0:
        return base.copy()
    w = np.where(np.isfinite(variances) & (variances > 0), variances, np.nan)
    # A series with no spread (a flat history) is held fixed: the others take up the adjustment.
    w = np.where(np.isnan(w), np.nanmin(w) * 1e-6 if np.isfinite(np.nanmin(w)) else 1.0, w)
    wc = w[:, None] * constraints.T
    gap = constraints @ base
    return base - wc @ np.linalg.solve(constraints @ wc, gap)


def reconcile(forecasts: pd.DataFrame, method: str = "wls_var") -> ReconcileResult:
    """Reconcile a snapshot's forecasts per period. ``forecasts`` has level, member, period_start, forecast
    and the interval bounds (INTERVAL_COLUMNS with ``mean`` named ``forecast``)."""
    if method not in METHODS:
        raise ValueError(f"reconciliation method must be one of {METHODS}, got {method!r}")
    out = forecasts.copy()
    bounds = [c for c in INTERVAL_COLUMNS if c != "mean"]
    out[["forecast", *bounds]] = out[["forecast", *bounds]].astype(float)
    out["base_forecast"] = out["forecast"]
    if method == "none" or out.empty or TOTAL not in set(out["level"]):
        return ReconcileResult(out, incoherence(out), 0)
    clipped = 0
    for _, index in out.groupby("period_start").groups.items():
        part = out.loc[index]
        c = constraint_matrix(part["level"])
        if method == "ols":
            variances = np.ones(len(part))
        else:
            variances = ((part["hi95"] - part["lo95"]).to_numpy(float) / (2 * Z95)) ** 2
        base = part["forecast"].to_numpy(float)
        coherent = project(base, c, variances)
        shift = coherent - base
        clipped += int((coherent < 0).sum())
        out.loc[index, "forecast"] = np.maximum(coherent, 0.0)
        for column in bounds:
            out.loc[index, column] = np.maximum(part[column].to_numpy(float) + shift, 0.0)
    return ReconcileResult(out, incoherence(out), clipped)


def incoherence(forecasts: pd.DataFrame) -> float:
    """The largest |total - sum of one level's members| over the periods."""
    if forecasts.empty or TOTAL not in set(forecasts["level"]):
        return 0.0
    total = forecasts[forecasts["level"] == TOTAL].set_index("period_start")["forecast"]
    sums = forecasts[forecasts["level"] != TOTAL].groupby(["level", "period_start"])["forecast"].sum()
    if sums.empty:
        return 0.0
    gaps = sums - total.reindex(sums.index.get_level_values("period_start")).to_numpy()
    return float(gaps.abs().max())
