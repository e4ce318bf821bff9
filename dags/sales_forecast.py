"""
### sales_forecast

Rebuilds monthly revenue series (total, region, customer segment, product category) from the core
order facts, backtests each candidate model (naive, seasonal naive, ETS) on every series over
several rolling origins, picks the one with the lowest MASE, and writes a new forecast snapshot with
80% and 95% intervals to `marts.forecast_snapshot`, stamped with its as-of date and run. Snapshots are
never overwritten, so variance is always judged against the forecast that existed at the time.
Backtest errors go to `marts.forecast_backtest`.

**Triggered by:** `customer_segments`. **As-of date:** `params.as_of`, else the triggering event's.
**Emits:** `sales_forecasts`, which triggers `variance_report`.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from salespulse import pipeline
from salespulse_airflow import assets, runtime


@dag(
    schedule=[assets.CUSTOMER_SEGMENTS],
    tags=["salespulse", "forecast"],
    doc_md=__doc__,
    **runtime.DAG_DEFAULTS,
)
def sales_forecast():
    @task(outlets=[assets.SALES_FORECASTS])
    def build_forecasts(**context) -> dict:
        return runtime.run_step(pipeline.build_forecasts, assets.SALES_FORECASTS, context)

    build_forecasts()


sales_forecast()
