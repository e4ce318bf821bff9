"""
### variance_report

Compares every complete month's actual revenue with each forecast snapshot made before it
(horizon = months ahead) and with the sales target, per total, region, segment and category:
absolute and percent variance (actual - forecast; positive means sales beat the forecast), variance
against target, and whether the actual fell inside the 95% interval. Re-running an as-of date
replaces that report's rows only. BI reads `reporting.variance` and `reporting.forecast_vs_actual`.

**Triggered by:** `sales_forecasts`. **As-of date:** `params.as_of`, else the triggering event's.
**Emits:** `variance_report`.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from salespulse import pipeline
from salespulse_airflow import assets, runtime


@dag(
    schedule=[assets.SALES_FORECASTS],
    tags=["salespulse", "variance", "reporting"],
    doc_md=__doc__,
    **runtime.DAG_DEFAULTS,
)
def variance_report():
    @task(outlets=[assets.VARIANCE_REPORT])
    def build_variance(**context) -> dict:
        as_of = runtime.as_of_from_context(context)
        summary = pipeline.build_variance(runtime.settings(), as_of, context["run_id"])
        runtime.publish(context, assets.VARIANCE_REPORT, as_of, {"fact_rows": summary["fact_rows"]})
        return summary

    build_variance()


variance_report()
