from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from salespulse.churn import BASELINE, churn_features, churn_labels, churn_risk, churn_warnings
from salespulse.generator import generate_crm


def _lines(rows: list[tuple[str, str, str, float]], status: str = "completed") -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "order_id", "order_date", "net_amount"])
    return frame.assign(order_date=pd.to_datetime(frame["order_date"]), status=status)


def test_features_and_labels_at_a_cutoff_use_only_what_was_known() -> None:
    """Cutoff 2026-04-01, horizon 90 days. A bought 2026-01-01 and 2026-03-01 (two lines), then 2026-05-01:
    not churned. B bought 2025-06-01, then nothing: churned. C's only order is after the cutoff: unscored."""
    sales = _lines(
        [
            ("A", "a1", "2026-01-01", 10.0),
            ("A", "a2", "2026-03-01", 20.0),
            ("A", "a2", "2026-03-01", 5.0),
            ("A", "a3", "2026-05-01", 99.0),
            ("B", "b1", "2025-06-01", 40.0),
            ("C", "c1", "2026-04-10", 7.0),
        ]
    )
    cutoff = pd.Timestamp("2026-04-01")
    features = churn_features(sales, cutoff)
    assert features.index.tolist() == ["A", "B"]
    a = features.loc["A"]
    assert (a.recency_days, a.frequency, a.monetary, a.avg_order_value) == (31, 2, 35.0, 17.5)
    # 2026-01-01 is exactly 90 days before the cutoff: inside "the last 90 days".
    assert (a.tenure_days, a.orders_90d, a.orders_365d, a.median_gap_days) == (90, 2, 2, 59.0)
    assert churn_labels(sales, features.index, cutoff, 90).to_dict() == {"A": 0, "B": 1}


def test_warnings_are_valuable_customers_who_crossed_the_threshold() -> None:
    current = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D", "E"],
            "value_tier": ["high", "high", "high", "low", "high"],
            "churn_probability": [0.8, 0.9, 0.3, 0.95, 0.7],
        }
    )
    previous = pd.DataFrame({"customer_id": ["A", "B", "C", "D"], "churn_probability": [0.4, 0.6, 0.1, 0.2]})
    warned = churn_warnings(current, previous)
    # A crossed (0.4 -> 0.8); B was already above; C is below; D is not high-value; E has no previous score.
    assert warned["customer_id"].tolist() == ["A", "E"]
    assert warned["previous_probability"].isna().tolist() == [False, True]


def test_warnings_leave_out_customers_already_gone_or_worth_nothing_ahead() -> None:
    """The 1M-customer demo warned of 126,682 "high-value customers newly at risk", each at 100% risk with
    a 12-month CLV of 0: long-gone big spenders. A warning names customers someone can still keep."""
    current = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D", "E", "F"],
            "value_tier": ["high"] * 6,
            "churn_probability": [0.8, 0.9, 0.95, 0.7, 0.6, 0.99],
            "lifecycle_stage": ["at risk", "churned", "active", "at risk", "new", "churned"],
            "clv_12m": [500.0, 800.0, 0.0, 40.0, 300.0, 0.0001],
        }
    )
    previous = pd.DataFrame({"customer_id": list("ABCDEF"), "churn_probability": [0.1] * 6})
    # B and F are churned (past four cadences, or P(alive) < 0.2); C expects nothing in the next 12 months;
    # D and E are below the snapshot's top fifth by CLV (the 80th percentile of these six is 500).
    assert churn_warnings(current, previous)["customer_id"].tolist() == ["A"]
    assert churn_warnings(current, previous, clv_quantile=0.0)["customer_id"].tolist() == ["A", "D", "E"]


def test_no_warnings_when_every_risky_customer_was_already_above_the_threshold() -> None:
    """Found by the end-to-end run: an empty result used to come back as rows of previous scores only."""
    current = pd.DataFrame(
        {"customer_id": ["A", "B"], "value_tier": ["high", "high"], "churn_probability": [0.8, 0.9]}
    )
    previous = pd.DataFrame({"customer_id": ["A", "B"], "churn_probability": [0.7, 0.6]})
    warned = churn_warnings(current, previous)
    assert warned.empty


@pytest.mark.parametrize("training_cap", [None, 800])
def test_both_models_beat_chance_and_the_better_one_by_brier_scores_the_customers(
    training_cap: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A simulated population with known dropout (each customer buys within an activity window). Also when
    the classifier learns from a sample (at scale: MAX_TRAINING_CUSTOMERS), while it is still evaluated on,
    and scores, every customer."""
    if training_cap:
        monkeypatch.setattr("salespulse.churn.MAX_TRAINING_CUSTOMERS", training_cap)
    data = generate_crm(3000, seed=42, defect_rate=0)
    lines = data["order_lines"].merge(data["orders"], on="order_id")
    lines["net_amount"] = lines["quantity"] * lines["unit_price"] * (1 - lines["discount_pct"])
    result = churn_risk(lines, date(2026, 11, 1))
    scores = result.evaluation.set_index("model")
    assert scores.loc["gradient_boosting_calibrated", "roc_auc"] > 0.8
    assert scores.loc[BASELINE, "roc_auc"] > 0.8
    assert result.served == scores["brier"].idxmin()
    assert result.probability.between(0, 1).all() and len(result.probability) > 2000


def test_the_baseline_does_not_call_one_time_buyers_safe() -> None:
    """1 - P(alive) is 0 for anyone without a repeat purchase. The baseline now: a one-time buyer from long
    ago is likelier to buy nothing in the next 90 days than a customer who buys every month."""
    from salespulse.churn import _no_purchase_in_window

    monthly = [("A", f"a{m}", f"2026-{m:02d}-10", 20.0) for m in range(1, 10)]
    others = [(f"R{i}", f"r{i}-{k}", f"2026-0{k}-0{1 + i % 9}", 10.0) for i in range(40) for k in (2, 5, 8)]
    once = [("B", "b1", "2025-11-20", 20.0)]
    sales = _lines(monthly + others + once)
    customers = pd.Index(["A", "B"], name="customer_id")
    no_purchase = _no_purchase_in_window(sales, customers, pd.Timestamp("2026-10-01"), 90)
    assert 0 <= no_purchase[0] < no_purchase[1] <= 1


def test_too_little_history_is_a_clear_error() -> None:
    sales = _lines([("A", "a1", "2026-01-01", 10.0)])
    with pytest.raises(ValueError, match="not enough history"):
        churn_risk(sales, date(2026, 11, 1))


def test_the_first_snapshot_raises_no_warnings() -> None:
    """With nothing to compare with, every risky customer would look newly at risk."""
    current = pd.DataFrame({"customer_id": ["A"], "value_tier": ["high"], "churn_probability": [0.9]})
    for previous in (None, pd.DataFrame(columns=["customer_id", "churn_probability"])):
        warned = churn_warnings(current, previous)
        assert warned.empty and "previous_probability" in warned.columns
