"""Score every customer as of a date (:func:`salespulse.customer_snapshot.segment_snapshot`) and store the
snapshot: ``marts.customer_rfm``, the cluster profile, the churn model's evaluation and churn warnings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd

from salespulse.config import Settings
from salespulse.customer_snapshot import segment_snapshot
from salespulse.steps.base import plain_records, record_step, warehouse
from salespulse.warehouse import read_sql_file, replace_rows

# How many churn warnings the summary (and so the alert) carries; all of them are in the warehouse.
SUMMARY_WARNINGS = 50


@dataclass(frozen=True)
class SegmentsSummary:
    customers_scored: int
    segments: Mapping[str, int]
    lifecycle: Mapping[str, int]
    model: Mapping[str, Any]
    churn_warnings: tuple[Mapping[str, Any], ...]  # the first SUMMARY_WARNINGS, largest risk first
    churn_warning_count: int


def build_segments(settings: Settings, as_of: date, run_id: str) -> SegmentsSummary:
    """Compute the segments snapshot as of ``as_of`` and store it (replacing that date's snapshot)."""
    started = datetime.now()
    with warehouse(settings) as engine:
        sales = read_sql_file(engine, "core/select_sales_before.sql", {"as_of": as_of}, bulk=True)
        sales["order_date"] = pd.to_datetime(sales["order_date"])
        previous_centroids = read_sql_file(
            engine, "marts/select_previous_cluster_profile.sql", {"as_of": as_of}
        ).set_index("cluster")
        previous_scores = read_sql_file(engine, "marts/select_previous_churn_scores.sql", {"as_of": as_of})
        snapshot = segment_snapshot(sales, as_of, previous_centroids, previous_scores)
        stamp = {"snapshot_date": as_of, "run_id": run_id, "created_at": datetime.now()}
        tables = {
            "marts.customer_rfm": snapshot.customers,
            "marts.customer_cluster_profile": snapshot.cluster_profile,
            "marts.churn_model_evaluation": snapshot.churn_evaluation,
            "marts.churn_warnings": snapshot.churn_warnings,
        }
        with engine.begin() as conn:
            for table, frame in tables.items():
                replace_rows(
                    conn, table, {"snapshot_date": as_of}, frame.assign(**stamp) if len(frame) else frame
                )
        rfm, warnings, model = snapshot.customers, snapshot.churn_warnings, snapshot.model
        mix = rfm["rfm_segment"].value_counts().to_dict()
        record_step(engine, run_id, "build_segments", as_of, len(rfm), f"segments={mix}; {model}", started)
    return SegmentsSummary(
        customers_scored=len(rfm),
        segments={str(k): int(v) for k, v in mix.items()},
        lifecycle={str(k): int(v) for k, v in rfm["lifecycle_stage"].value_counts().items()},
        model=model,
        churn_warnings=plain_records(warnings.head(SUMMARY_WARNINGS)),
        churn_warning_count=len(warnings),
    )
