"""Coherent forecasts: every level's members add up to the total, period by period.

The levels are a grouped structure: region, segment, category and sales owner each split the same total,
with no single bottom level below all of them; a crossing (region*segment) splits the total too, and each
of its levels' members as well. So instead of summing a bottom level up, the base
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


CROSSING = "*"  # "region*segment": the crossing of two levels, members "EMEA | Enterprise"
MEMBER_SEPARATOR = " | "


def aggregation_groups(levels: pd.Series, members: pd.Series | None = None) -> list[tuple[int, np.ndarray]]:
    """Every "parent = sum of children" the series must satisfy, as (parent position, child positions):
    the total is the sum of each level's members, and with ``members`` given, each member of a level is
    the sum of the members of a crossing that contain it (``region:EMEA`` is the sum of the
    ``region*segment:EMEA | <segment>`` series).
    """
    levels = levels.reset_index(drop=True)
    level_values = levels.to_numpy()
    total = np.flatnonzero(level_values == TOTAL)
    if len(total) != 1:
        raise ValueError(f"reconciliation needs exactly one total series, got {len(total)}")
    groups = [(int(total[0]), np.flatnonzero(level_values == level)) for level in dict.fromkeys(levels)]
    groups = [(parent, children) for parent, children in groups if level_values[children[0]] != TOTAL]
    if members is None:
        return groups
    member_values = members.reset_index(drop=True).to_numpy()
    position = {(lv, m): i for i, (lv, m) in enumerate(zip(level_values, member_values, strict=True))}
    for crossing in dict.fromkeys(lv for lv in level_values if CROSSING in lv):
        rows = np.flatnonzero(level_values == crossing)
        parts = [str(member_values[r]).split(MEMBER_SEPARATOR) for r in rows]
        for k, attribute in enumerate(crossing.split(CROSSING)):
            for value in dict.fromkeys(p[k] for p in parts):
                parent = position.get((attribute, value))
                if parent is not None:
                    groups.append((parent, rows[[p[k] == value for p in parts]]))
    return groups


def constraint_matrix(levels: pd.Series, members: pd.Series | None = None) -> np.ndarray:
    """One row per :func:`aggregation_groups` entry: +1 on the parent, -1 on each child. Rows may be
    linearly dependent (a crossing restates its levels' totals); :func:`project` allows for that."""
    groups = aggregation_groups(levels, members)
    rows = np.zeros((len(groups), len(levels)))
    for i, (parent, children) in enumerate(groups):
        rows[i, parent] = 1.0
        rows[i, children] = -1.0
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
    # Least squares, not solve: with crossings the constraints repeat each other, so C W C' is singular.
    # The gap lies in its range, and every solution gives the same adjustment W C' lambda.
    multipliers = np.linalg.lstsq(constraints @ wc, gap, rcond=None)[0]
    return base - wc @ multipliers


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
        c = constraint_matrix(part["level"], part["member"])
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
    """The largest |parent - sum of its children| (:func:`aggregation_groups`) over the periods."""
    if forecasts.empty or TOTAL not in set(forecasts["level"]):
        return 0.0
    worst = 0.0
    for _, part in forecasts.groupby("period_start"):
        values = part["forecast"].to_numpy(float)
        for parent, children in aggregation_groups(part["level"], part["member"]):
            worst = max(worst, abs(values[parent] - values[children].sum()))
    return float(worst)
