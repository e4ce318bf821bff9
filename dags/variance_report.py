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
        return runtime.run_step(pipeline.build_variance, assets.VARIANCE_REPORT, context)

    build_variance()


variance_report()
