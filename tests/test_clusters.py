from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from salespulse.clusters import FEATURES, cluster_features, fit_clusters


def _groups(seed: int, n: int = 300, noise: float = 0.05) -> pd.DataFrame:
    """Three kinds of customer, far apart: lapsed small buyers, steady mid buyers, big frequent accounts."""
    rng = np.random.default_rng(seed)
    centres = {
        "lapsed": (400, 1, 60, 60, 500),
        "steady": (30, 8, 2_000, 250, 700),
        "big": (5, 40, 90_000, 2_250, 1_000),
    }
    rows, kinds = [], []
    for kind, centre in centres.items():
        values = np.exp(np.log1p(np.asarray(centre, float)) + rng.normal(0, noise, size=(n, 5))) - 1
        rows.append(values)
        kinds += [kind] * n
    frame = pd.DataFrame(np.vstack(rows), columns=FEATURES)
    frame.index = [f"C{i:04d}" for i in range(len(frame))]
    frame.index.name = "customer_id"
    return frame.assign(kind=kinds)


def test_separated_groups_are_found_and_numbered_by_value() -> None:
    data = _groups(seed=1)
    result = fit_clusters(data[FEATURES])
    assert result.k == 3 and result.silhouette > 0.8
    by_kind = pd.crosstab(data["kind"], result.labels)
    assert (by_kind.gt(0).sum(axis=1) == 1).all()  # each kind falls in exactly one cluster
    assert result.labels[data["kind"] == "big"].iloc[0] == 1  # first run: 1 = the most valuable cluster
    assert result.labels[data["kind"] == "lapsed"].iloc[0] == 3
    assert result.profile["customers"].sum() == len(data)
    means = data[FEATURES].groupby(result.labels.to_numpy()).mean()
    np.testing.assert_allclose(result.profile[FEATURES].to_numpy(), means.to_numpy())


def test_choosing_k_on_a_sample_finds_what_fitting_everyone_finds() -> None:
    """With more customers than ``fit_size`` the candidates are fitted on a sample and the chosen k is
    refined on everyone: the same k, the same groups, the same numbering, profiles over everyone."""
    data = _groups(seed=3, n=1_000, noise=0.2)
    full = fit_clusters(data[FEATURES])
    sampled = fit_clusters(data[FEATURES], fit_size=300)
    assert sampled.k == full.k == 3
    assert (sampled.labels == full.labels).mean() > 0.99
    assert sampled.profile["customers"].sum() == len(data)
    np.testing.assert_allclose(sampled.profile[FEATURES], full.profile[FEATURES], rtol=0.05)


def test_labels_stay_put_from_one_snapshot_to_the_next() -> None:
    first = fit_clusters(_groups(seed=1)[FEATURES])
    # Next month: other customers of the same kinds, in another order, a little noisier.
    later = _groups(seed=2, noise=0.08).sample(frac=1.0, random_state=4)
    second = fit_clusters(later[FEATURES], previous_centroids=first.profile)
    for kind in ("lapsed", "steady", "big"):
        before = first.labels[_groups(seed=1)["kind"] == kind].iloc[0]
        assert (second.labels[later["kind"] == kind] == before).all(), kind


def test_a_new_kind_of_customer_gets_a_new_number() -> None:
    first = fit_clusters(_groups(seed=1)[FEATURES], k_range=range(3, 4))
    previous = first.profile.iloc[:2]  # pretend the last snapshot only had two of the three
    second = fit_clusters(_groups(seed=2)[FEATURES], previous_centroids=previous, k_range=range(3, 4))
    assert set(second.labels) == {*previous.index, int(previous.index.max()) + 1}


def test_cluster_features_and_too_few_customers() -> None:
    rfm = pd.DataFrame(
        {"customer_id": ["A", "B"], "recency_days": [1, 2], "frequency": [4, 0], "monetary": [100.0, 0.0]}
    )
    features = cluster_features(rfm, pd.Series({"A": 30, "B": 10}))
    assert features.loc["A", "avg_order_value"] == 25.0 and features.loc["B", "tenure_days"] == 10
    with pytest.raises(ValueError, match="need more than"):
        fit_clusters(features)
