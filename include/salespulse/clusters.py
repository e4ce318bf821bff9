"""Behavioural clusters of customers (scikit-learn k-means), with labels that stay put between runs.

Features per customer: recency, frequency, monetary value, average order value and tenure, each
log1p-transformed (they are heavily skewed) and standardised. k is chosen by the silhouette score within
a range, on a fixed-seed sample for speed. Cluster numbers are then matched to the previous snapshot's
clusters by the distance between centroids (Hungarian assignment on the unscaled log-features), so that
"cluster 2" means the same kind of customer next month and BI charts don't reshuffle; a cluster with no
counterpart gets a new number. Each cluster is described by its feature means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

FEATURES = ["recency_days", "frequency", "monetary", "avg_order_value", "tenure_days"]


@dataclass(frozen=True)
class ClusterResult:
    labels: pd.Series  # cluster number per customer (index: customer_id)
    profile: pd.DataFrame  # one row per cluster: customers and the mean of each feature
    k: int
    silhouette: float


def cluster_features(rfm: pd.DataFrame, tenure_days: pd.Series) -> pd.DataFrame:
    """The clustering features, indexed by customer_id."""
    features = rfm.set_index("customer_id")[["recency_days", "frequency", "monetary"]].astype(float)
    features["avg_order_value"] = features["monetary"] / features["frequency"].clip(lower=1)
    features["tenure_days"] = tenure_days.reindex(features.index).astype(float)
    return features[FEATURES]


def _log_features(features: pd.DataFrame) -> np.ndarray:
    return np.log1p(features[FEATURES].clip(lower=0).fillna(0.0).to_numpy(float))


def fit_clusters(
    features: pd.DataFrame,
    previous_centroids: pd.DataFrame | None = None,
    k_range: range = range(3, 7),
    sample_size: int = 10_000,
    seed: int = 0,
    fit_size: int = 50_000,
) -> ClusterResult:
    """Cluster customers; number the clusters to match ``previous_centroids`` (cluster x FEATURES, in the
    log1p space) where given.

    k is chosen by silhouette on a sample of ``sample_size``. With more than ``fit_size`` customers the
    candidates (10 starts each) are fitted on a random ``fit_size`` of them, and the chosen k is then
    refined on everyone from the sample's centroids (one start): at a million customers, 41 passes over a
    million rows became one, and the rest run on 50,000."""
    if len(features) < max(k_range) + 1:
        raise ValueError(f"need more than {max(k_range)} customers to cluster, got {len(features)}")
    logged = _log_features(features)
    scaled = StandardScaler().fit_transform(logged)
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(scaled), size=min(sample_size, len(scaled)), replace=False)
    subsampled = len(scaled) > fit_size
    fit_rows = rng.choice(len(scaled), size=fit_size, replace=False) if subsampled else slice(None)
    best: tuple[float, int, KMeans] | None = None
    for k in k_range:
        model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(scaled[fit_rows])
        sample_labels = model.predict(scaled[sample]) if subsampled else model.labels_[sample]
        score = float(silhouette_score(scaled[sample], sample_labels))
        if best is None or score > best[0]:
            best = (score, k, model)
    assert best is not None
    silhouette, k, model = best
    if subsampled:
        model = KMeans(n_clusters=k, init=model.cluster_centers_, n_init=1, random_state=seed).fit(scaled)
    raw = model.labels_
    centroids = np.vstack([logged[raw == c].mean(axis=0) for c in range(k)])
    numbering = _stable_numbers(centroids, previous_centroids)
    labels = pd.Series(numbering[raw], index=features.index, name="cluster")
    profile = features.assign(cluster=labels.to_numpy()).groupby("cluster")[FEATURES].mean()
    profile.insert(0, "customers", labels.value_counts().sort_index())
    profile = profile.join(pd.DataFrame(centroids, columns=[f"log_{f}" for f in FEATURES], index=numbering))
    return ClusterResult(labels=labels, profile=profile.sort_index(), k=k, silhouette=silhouette)


def _stable_numbers(centroids: np.ndarray, previous: pd.DataFrame | None) -> np.ndarray:
    """Number new clusters after the previous ones they are closest to; unmatched clusters get new numbers.

    Without a previous snapshot, clusters are numbered by descending mean monetary value (1 = the most
    valuable), so a first run is deterministic too.
    """
    k = len(centroids)
    if previous is None or previous.empty:
        order = np.argsort(-centroids[:, FEATURES.index("monetary")], kind="stable")
        numbers = np.empty(k, dtype=int)
        numbers[order] = np.arange(1, k + 1)
        return numbers
    old = previous[[f"log_{f}" for f in FEATURES]].to_numpy(float)
    distance = np.linalg.norm(centroids[:, None, :] - old[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(distance)
    numbers = np.zeros(k, dtype=int)
    numbers[rows] = previous.index.to_numpy()[cols]
    unmatched = [i for i in range(k) if i not in set(rows)]
    next_number = int(previous.index.max()) + 1
    for i in sorted(unmatched, key=lambda c: -centroids[c, FEATURES.index("monetary")]):
        numbers[i] = next_number
        next_number += 1
    return numbers
