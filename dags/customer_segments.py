"""
### customer_segments

Rebuilds customer segments whenever the core CRM tables change: recency, frequency and monetary
value per customer from completed orders, quintile scores (ties broken by customer id), the named
RFM segment, the value tier (customers making the top 80% / next 15% / last 5% of revenue), the
purchase class (frequent, occasional, one-time), the lifecycle stage (new, active, at risk, churned,
reactivated) from each customer's own cadence and P(alive), and P(alive), expected purchases and a
12-month CLV from BG/NBD and Gamma-Gamma models fitted on weekly purchases, and a behavioural
cluster (k-means, k by silhouette, numbers stable between snapshots; see
`marts.customer_cluster_profile`), and a churn probability from a calibrated classifier trained on a
time split (evaluation in `marts.churn_model_evaluation`). High-value customers whose churn risk crossed
50% since the last snapshot go to `marts.churn_warnings` and one alert per run. One snapshot per as-of
date in `marts.customer_rfm`; history is kept. The fitted parameters and the frequency/spend
correlation (the Gamma-Gamma independence check) are recorded in `audit.step_runs`.
BI reads `reporting.customer_segments` and `reporting.segment_summary`.

**Triggered by:** `crm_core`. **As-of date:** `params.as_of`, else the triggering event's.
**Emits:** `customer_segments`, which triggers `sales_forecast`.
"""

from __future__ import annotations

from airflow.sdk import dag, task

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
        from salespulse.steps import segments

        return runtime.run_step(
            segments.build_segments, assets.CUSTOMER_SEGMENTS, context, alert=runtime.churn_warning_alert
        )

    build_segments()


customer_segments()
