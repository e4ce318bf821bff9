"""How many customers the churn warnings name on the UCI Online Retail data, with and without the
"still plausibly active and valuable ahead" conditions (issue 16):

    .venv/bin/python -m bench.churn_warnings

For each as-of date: a segments snapshot 61 days earlier gives the previous scores, the snapshot at the date
the current ones; the warnings are counted once with value tier and churn probability alone (the old rule)
and once with lifecycle stage and 12-month CLV too (the rule now). The churn models' holdout scores are
printed too.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from bench.forecast_accuracy import ONLINE_RETAIL
from salespulse.churn import churn_warnings
from salespulse.customer_snapshot import segment_snapshot


def completed_lines(path: Path = ONLINE_RETAIL) -> pd.DataFrame:
    """Invoice lines with a customer, no cancellations (``C`` invoices), positive quantity and price."""
    raw = pd.read_parquet(path).dropna(subset=["CustomerID"])
    kept = raw[
        ~raw["InvoiceNo"].astype(str).str.startswith("C") & (raw["Quantity"] > 0) & (raw["UnitPrice"] > 0)
    ]
    return pd.DataFrame(
        {
            "customer_id": kept["CustomerID"].astype(int).astype(str),
            "order_id": kept["InvoiceNo"].astype(str),
            "order_date": pd.to_datetime(kept["InvoiceDate"]),
            "status": "completed",
            "net_amount": kept["Quantity"] * kept["UnitPrice"],
        }
    )


def main() -> int:
    lines = completed_lines()
    for as_of in (date(2011, 10, 1), date(2011, 12, 1)):
        previous = segment_snapshot(lines, as_of - timedelta(days=61)).customers
        scores = previous[["customer_id", "churn_probability"]]
        snapshot = segment_snapshot(lines, as_of, previous_scores=scores)
        current = snapshot.customers
        print(f"{as_of}  churn models on the holdout (served: {snapshot.model.get('churn_served')}):")
        print(snapshot.churn_evaluation.round(3).to_string(index=False))
        print("as of       rule  named  of customers  median clv_12m  longest recency, days  stages")
        rules = {
            "old": churn_warnings(current[["customer_id", "value_tier", "churn_probability"]], scores),
            "now": churn_warnings(current, scores),
        }
        for rule, warned in rules.items():
            named = current.set_index("customer_id").loc[warned["customer_id"]]
            clv, recency = named["clv_12m"].median(), named["recency_days"].max()
            stages = named["lifecycle_stage"].value_counts().to_dict()
            counts = f"{len(named):>5}  {len(current):>12}"
            print(f"{as_of}  {rule:<4}  {counts}  {clv:>14,.0f}  {recency:>21,.0f}  {stages}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
