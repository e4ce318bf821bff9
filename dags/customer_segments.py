"""
### customer_segments

Rebuilds customer segments whenever the core CRM tables change: recency, frequency and monetary
value per customer from completed orders, quintile scores (ties broken by customer id), and the
named RFM segment. One snapshot per as-of date in `marts.customer_rfm`; history is kept.
BI reads `reporting.customer_segments` and `reporting.segment_summary`.

**Triggered by:** `crm_core`. **As-of date:** `params.as_of`, else the triggering event's.
**Emits:** `customer_segments`, which triggers `sales_forecast`.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from salespulse import pipeline
from salespulse_airflow import assets, runtime


@dag(
    schedule=[assets.CRM_CORE],
    tags=["salespulse", "segments"],
    doc_md=__doc__,
    **runtime.DAG_DEFAULTS,
)
def customer_segments():
    @task(outlets=[assets.CUSTOMER_SEGMENTS])
    def build_segments(**context) -> dict:
        return runtime.run_step(pipeline.build_segments, assets.CUSTOMER_SEGMENTS, context)

    build_segments()


customer_segments()
