"""Churn risk: a calibrated scikit-learn classifier trained on a time split, checked against BG/NBD.

A customer "churns" after a cutoff if they make no completed purchase in the next ``horizon_days``.
Time split, so nothing from the future leaks into training:

    train cutoff  = as_of - 2 x horizon   features before it, labels from the horizon after it
    holdout cutoff = as_of - horizon      a later, unseen period: the evaluation
    scoring       = as_of                 the model refitted on the holdout cutoff scores customers now

The classifier is gradient boosting with sigmoid calibration (so the probabilities mean what they say).
The customers are scored by whichever of the classifier and the baseline had the lower Brier score on
the holdout.
ROC AUC, PR AUC and the Brier score on the holdout are reported for it and for the baseline: a BG/NBD
model fitted on the same history, its chance of no purchase in the label window (exp of minus the expected
purchases there).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from salespulse.clv import BetaGeoFitter, summarize
from salespulse.rules import completed_before

BASELINE = "bgnbd_no_purchase_in_window"
CHURN_FEATURES = [
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "orders_90d",
    "orders_365d",
    "median_gap_days",
]


def churn_features(sales_lines: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Per customer with a completed purchase before ``cutoff``: what was known at the cutoff."""
    done = completed_before(sales_lines, cutoff)
    orders = done.groupby(["customer_id", "order_id"], as_index=False).agg(
        order_date=("order_date", "min"), amount=("net_amount", "sum")
    )
    per = orders.groupby("customer_id")
    features = pd.DataFrame(
        {
            "recency_days": (cutoff - per["order_date"].max()).dt.days,
            "frequency": per.size(),
            "monetary": per["amount"].sum(),
            "tenure_days": (cutoff - per["order_date"].min()).dt.days,
        }
    )
    features["avg_order_value"] = features["monetary"] / features["frequency"]
    for days in (90, 365):
        recent = orders[orders["order_date"] >= cutoff - pd.Timedelta(days=days)]
        features[f"orders_{days}d"] = recent.groupby("customer_id").size().reindex(features.index).fillna(0)
    gaps = orders.sort_values("order_date").groupby("customer_id")["order_date"].diff().dt.days
    features["median_gap_days"] = gaps.groupby(orders["customer_id"]).median().reindex(features.index)
    return features[CHURN_FEATURES].astype(float)


def churn_labels(
    sales_lines: pd.DataFrame, customers: pd.Index, cutoff: pd.Timestamp, horizon_days: int
) -> pd.Series:
    """1 where the customer made no completed purchase in [cutoff, cutoff + horizon)."""
    end = cutoff + pd.Timedelta(days=horizon_days)
    window = sales_lines[
        (sales_lines["status"] == "completed")
        & (sales_lines["order_date"] >= cutoff)
        & (sales_lines["order_date"] < end)
    ]
    bought = customers.isin(window["customer_id"].unique())
    return pd.Series((~bought).astype(int), index=customers, name="churned")


# The classifiers learn from at most this many customers (a random sample, both outcomes kept in
# proportion by chance): six boosted models on every one of a million customers took most of the segments
# step, and past a few hundred thousand rows more of the same customers add little.
MAX_TRAINING_CUSTOMERS = 200_000


def _fit(features: pd.DataFrame, label: pd.Series, seed: int) -> CalibratedClassifierCV:
    if len(features) > MAX_TRAINING_CUSTOMERS:
        chosen = np.random.default_rng(seed).choice(len(features), size=MAX_TRAINING_CUSTOMERS, replace=False)
        rows = np.sort(chosen)
        features, label = features.iloc[rows], label.iloc[rows]
    return _classifier(seed).fit(features, label)


def _classifier(seed: int) -> CalibratedClassifierCV:
    booster = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=seed)
    return CalibratedClassifierCV(booster, method="sigmoid", cv=3)


def _scores(label: pd.Series, probability: np.ndarray) -> dict[str, float]:
    return {
        "roc_auc": float(roc_auc_score(label, probability)),
        "pr_auc": float(average_precision_score(label, probability)),
        "brier": float(brier_score_loss(label, probability)),
    }


@dataclass(frozen=True)
class ChurnResult:
    probability: pd.Series  # churn probability per customer, as of the scoring date
    evaluation: pd.DataFrame  # one row per model: roc_auc, pr_auc, brier, customers, churn_rate
    served: str = "gradient_boosting_calibrated"  # the model whose scores ``probability`` holds


def _no_purchase_in_window(
    completed: pd.DataFrame, customers: pd.Index, cutoff: pd.Timestamp, horizon_days: int
) -> np.ndarray:
    """BG/NBD fitted on the weekly purchases before ``cutoff``: each customer's chance of no purchase in the
    next ``horizon_days``, exp(-expected purchases) (a Poisson approximation).

    Not 1 - P(alive): that is exactly 0 for every customer without a repeat purchase, so it ranked
    one-time buyers, the likeliest to be gone, as the safest (ROC AUC 0.36-0.39 on Online Retail)."""
    # Every purchase before the cutoff, as the features see them (the day before the cutoff included).
    last_seen = cutoff - pd.Timedelta(seconds=1)
    summary = summarize(completed, "customer_id", "order_date", "net_amount", last_seen, freq="W")
    summary = summary.reindex(customers)
    expected = BetaGeoFitter(penalizer=0.001).fit(summary).expected_purchases(summary, horizon_days / 7)
    return np.exp(-np.clip(expected, 0.0, None))


def churn_risk(sales_lines: pd.DataFrame, as_of: date, horizon_days: int = 90, seed: int = 0) -> ChurnResult:
    """Train on an earlier cutoff, evaluate on a later one, score every customer as of ``as_of``."""
    now = pd.Timestamp(as_of)
    train_cutoff = now - pd.Timedelta(days=2 * horizon_days)
    holdout_cutoff = now - pd.Timedelta(days=horizon_days)
    train = churn_features(sales_lines, train_cutoff)
    train_label = churn_labels(sales_lines, train.index, train_cutoff, horizon_days)
    if train_label.nunique() < 2 or len(train) < 50:
        raise ValueError("not enough history to train a churn model (need both outcomes and 50 customers)")
    model = _fit(train, train_label, seed)

    holdout = churn_features(sales_lines, holdout_cutoff)
    holdout_label = churn_labels(sales_lines, holdout.index, holdout_cutoff, horizon_days)
    predicted = model.predict_proba(holdout)[:, 1]

    completed = sales_lines[sales_lines["status"] == "completed"]
    baseline = _no_purchase_in_window(completed, holdout.index, holdout_cutoff, horizon_days)
    rows = []
    for name, probability in (
        ("gradient_boosting_calibrated", predicted),
        (BASELINE, baseline),
    ):
        rows.append(
            {
                "model": name,
                **_scores(holdout_label, probability),
                "customers": len(holdout),
                "churn_rate": float(holdout_label.mean()),
            }
        )
    evaluation = pd.DataFrame(rows)
    # The scores served are the model's that did better on the later holdout, by Brier score (the
    # warnings act on the probabilities themselves, not only on the ranking).
    served = str(evaluation.sort_values(["brier", "model"])["model"].iloc[0])
    current = churn_features(sales_lines, now)
    if served == BASELINE:
        scores = _no_purchase_in_window(completed, current.index, now, horizon_days)
    else:
        scores = _fit(holdout, holdout_label, seed).predict_proba(current)[:, 1]
    probability = pd.Series(scores, index=current.index, name="churn_probability")
    return ChurnResult(probability=probability, evaluation=evaluation, served=served)


def churn_warnings(
    current: pd.DataFrame,
    previous: pd.DataFrame | None,
    threshold: float = 0.5,
    tiers: tuple[str, ...] = ("high",),
    clv_quantile: float = 0.8,
) -> pd.DataFrame:
    """Valuable customers, still plausibly active, whose churn risk crossed ``threshold`` since the previous
    snapshot: the ones a warning can still do something about.

    ``current`` and ``previous`` have customer_id, value_tier and churn_probability. When ``current`` has
    them, two more conditions apply:

    - ``lifecycle_stage`` is not "churned": a customer whose last purchase is more than four of their own
      cadences ago, or whose P(alive) is below 0.2 (:class:`salespulse.segments.ClassThresholds`), is gone
      already; a warning about them names nobody anyone can keep.
    - ``clv_12m`` is above zero and among the top ``1 - clv_quantile`` of the snapshot (by default the top
      fifth): valuable for the next twelve months, not only in the past.

    A customer with no previous score who is above the threshold counts as crossing it. With no previous
    snapshot at all (the first one) nothing has crossed anything: every risky customer would be "new", so
    there are no warnings; the scores are in the snapshot itself.
    """
    eligible = current["value_tier"].isin(tiers) & (current["churn_probability"] >= threshold)
    if "lifecycle_stage" in current:
        eligible &= current["lifecycle_stage"] != "churned"
    if "clv_12m" in current and current["clv_12m"].notna().any():
        clv = current["clv_12m"]
        eligible &= (clv > 0) & (clv >= clv.quantile(clv_quantile))
    now = current[eligible]
    if previous is None or previous.empty:
        return now.iloc[:0].assign(previous_probability=pd.Series(dtype=float))
    before = (
        previous.set_index("customer_id")["churn_probability"]
        if previous is not None and len(previous)
        else pd.Series()
    )
    prior = now["customer_id"].map(before)
    crossing = prior.isna() | (prior < threshold)
    # prior[crossing], not prior: assigning a Series to an empty frame adopts the Series' index, which
    # turned "nobody crossed" into rows of nothing but previous probabilities.
    crossed = now[crossing].assign(previous_probability=prior[crossing])
    return crossed.sort_values("churn_probability", ascending=False)
