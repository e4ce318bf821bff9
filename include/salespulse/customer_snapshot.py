"""Everything the segments step computes per customer as of a date, in one pure function.

RFM and the named segment (:mod:`salespulse.segments`), value tier, purchase class and lifecycle stage,
P(alive), expected purchases and CLV (:mod:`salespulse.clv`), the behavioural cluster
(:mod:`salespulse.clusters`) and the churn probability (:mod:`salespulse.churn`). No warehouse and no
settings: the step (:mod:`salespulse.steps.segments`) reads the order lines and stores the result, and the
benchmark calls this directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from salespulse.churn import churn_risk, churn_warnings
from salespulse.clusters import cluster_features, fit_clusters
from salespulse.clv import (
    BetaGeoFitter,
    GammaGammaFitter,
    customer_lifetime_value,
    frequency_monetary_correlation,
    summarize,
)
from salespulse.rules import completed_before
from salespulse.segments import (
    ClassThresholds,
    compute_rfm,
    lifecycle_stages,
    purchase_classes,
    purchase_history,
    value_tiers,
)

log = logging.getLogger(__name__)


@dataclass
class SegmentSnapshot:
    """Everything the segments step computes for one as-of date, before it is stored."""

    customers: pd.DataFrame  # one row per scored customer
    cluster_profile: pd.DataFrame
    churn_evaluation: pd.DataFrame
    churn_warnings: pd.DataFrame
    model: dict[str, Any]


def segment_snapshot(
    sales: pd.DataFrame,
    as_of: date,
    previous_centroids: pd.DataFrame | None = None,
    previous_scores: pd.DataFrame | None = None,
) -> SegmentSnapshot:
    """RFM, value tier, purchase class, lifecycle, CLV, cluster and churn risk per customer, as of a date.

    ``sales`` are order lines (customer_id, order_id, order_date, status, net_amount). The previous
    snapshot's cluster centroids keep cluster numbers stable; its churn scores decide who newly crossed the
    warning threshold. Pure: no warehouse, so it can be tested and benchmarked on its own.
    """
    # Every measure below needs completed orders, not lines: collapse once (half the rows, one copy).
    completed = completed_before(sales, as_of)
    sales = (
        completed.groupby(["customer_id", "order_id"], as_index=False, sort=False)
        .agg(order_date=("order_date", "min"), net_amount=("net_amount", "sum"))
        .assign(status="completed")
    )
    del completed
    rfm = compute_rfm(sales, as_of)
    history = purchase_history(sales, as_of)
    rfm, model = add_value_and_lifecycle(rfm, sales, as_of, history)
    tenure = history["days_since_first"]
    profile = pd.DataFrame()
    try:
        clusters = fit_clusters(cluster_features(rfm, tenure), previous_centroids=previous_centroids)
        rfm["cluster"] = rfm["customer_id"].map(clusters.labels).astype("Int64")
        profile = clusters.profile.reset_index().assign(k=clusters.k, silhouette=clusters.silhouette)
        model["clusters"] = {"k": clusters.k, "silhouette": round(clusters.silhouette, 4)}
    except ValueError as exc:
        log.warning("customers not clustered as of %s: %s", as_of, exc)
        rfm["cluster"] = pd.array([None] * len(rfm), dtype="Int64")
    evaluation, warnings = pd.DataFrame(), pd.DataFrame()
    try:
        churn = churn_risk(sales, as_of)
        rfm["churn_probability"] = rfm["customer_id"].map(churn.probability)
        evaluation = churn.evaluation
        model["churn"] = (
            evaluation.set_index("model")[["roc_auc", "pr_auc", "brier"]].round(4).to_dict("index")
        )
        model["churn_served"] = churn.served
        warnings = churn_warnings(rfm, previous_scores)[
            ["customer_id", "value_tier", "churn_probability", "previous_probability", "clv_12m"]
        ]
    except ValueError as exc:
        log.warning("no churn model as of %s: %s", as_of, exc)
        rfm["churn_probability"] = np.nan
    return SegmentSnapshot(rfm, profile, evaluation, warnings, model)


def add_value_and_lifecycle(
    rfm: pd.DataFrame,
    sales: pd.DataFrame,
    as_of: date,
    history: pd.DataFrame,
    thresholds: ClassThresholds | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Value tier, purchase class, lifecycle stage, P(alive), expected purchases and CLV over 12 months.

    BG/NBD and Gamma-Gamma are fitted on weekly periods of completed purchases before ``as_of``. On data
    too thin to fit, the model columns stay empty and the stages fall back to cadence alone.
    """
    thresholds = thresholds or ClassThresholds()
    if rfm.empty:
        empty = {c: pd.Series(dtype=object) for c in ("value_tier", "purchase_class", "lifecycle_stage")}
        return rfm.assign(**empty, p_alive=np.nan, expected_purchases_12m=np.nan, clv_12m=np.nan), {}
    completed = completed_before(sales, as_of)
    end = pd.Timestamp(as_of) - pd.Timedelta(days=1)
    summary = summarize(completed, "customer_id", "order_date", "net_amount", end, freq="W")
    model: dict[str, Any] = {}
    try:
        bgf = BetaGeoFitter(penalizer=0.001).fit(summary)
        ggf = GammaGammaFitter(penalizer=0.001).fit(summary)
        weeks_per_month = 52 / 12
        summary["p_alive"] = bgf.probability_alive(summary)
        summary["expected_purchases_12m"] = bgf.expected_purchases(summary, 12 * weeks_per_month)
        summary["clv_12m"] = customer_lifetime_value(
            bgf, ggf, summary, months=12, monthly_discount_rate=0.01, periods_per_month=weeks_per_month
        )
        model = {
            "bgnbd": {k: round(v, 4) for k, v in bgf.params_.items()},
            "gamma_gamma": {k: round(v, 4) for k, v in ggf.params_.items()},
            "frequency_monetary_correlation": round(frequency_monetary_correlation(summary), 4),
        }
    except (RuntimeError, ValueError) as exc:
        log.warning("CLV models not fitted as of %s: %s", as_of, exc)
        summary = summary.assign(p_alive=np.nan, expected_purchases_12m=np.nan, clv_12m=np.nan)
    out = rfm.merge(
        summary[["p_alive", "expected_purchases_12m", "clv_12m"]],
        left_on="customer_id",
        right_index=True,
        how="left",
    ).merge(history, left_on="customer_id", right_index=True, how="left")
    out["value_tier"] = value_tiers(out["monetary"], out["customer_id"], thresholds)
    out["purchase_class"] = purchase_classes(out["frequency"], out["orders_last_year"], thresholds)
    out["lifecycle_stage"] = lifecycle_stages(
        out["days_since_first"],
        out["days_since_last"],
        out["cadence_days"],
        out["longest_gap_days"],
        out["p_alive"],
        thresholds,
    )
    return out.drop(columns=list(history.columns)), model
