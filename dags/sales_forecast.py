"""
### sales_forecast

Rebuilds the revenue series, monthly and weekly, of the total and the levels in
`SALESPULSE_FORECAST_LEVELS` (default region, customer segment, product category, sales owner; crossings
such as `region*segment` too) from the core order facts, and splits the monthly ones into
`SALESPULSE_FORECAST_PARTITIONS` partitions. One mapped task per partition (dynamic task mapping, so
Celery spreads them over workers; each may use `SALESPULSE_FORECAST_WORKERS` processes) backtests each
candidate model (`SALESPULSE_FORECAST_MODELS`: naive, seasonal naive, ETS, damped ETS; ARIMA on request)
on its series over several rolling origins, picks the lowest MASE, and stages the base forecasts;
backtest errors go to `marts.forecast_backtest`. The last task reconciles all series so the
levels add up to the total and writes the as-of date's snapshot with 80% and 95% intervals to
`marts.forecast_snapshot`, stamped with its as-of date and run. A later date never touches an earlier
date's snapshot, so variance is always judged against the forecast that existed at the time; re-running
the same date replaces that date's snapshot, backtests and funnel rows. A missing partition stops the
publish.

Then the funnel forecast: the deals open on the as-of date x their stage's win rate learned from the
deals closed in the past year, placed by expected close month, per total, region, segment and sales
owner; stage conversion and sales-cycle length; and the statistical forecast adjusted by the pipeline
for the first `SALESPULSE_FUNNEL_MONTHS` months (`reporting.funnel_forecast`; the method is in
`salespulse.funnel`). With no deals known (a source without opportunities) the funnel task is skipped
with the reason.

**Triggered by:** `customer_segments`. **As-of date:** `params.as_of`, else the triggering event's.
**Emits:** `sales_forecasts`, which triggers `variance_report`.
"""

from __future__ import annotations

import functools

from airflow.sdk import dag, task

from salespulse_airflow import assets, runtime


@dag(
    schedule=[assets.CUSTOMER_SEGMENTS],
    tags=["salespulse", "forecast"],
    doc_md=__doc__,
    **runtime.DAG_DEFAULTS,
)
def sales_forecast():
    @task
    def prepare_series(**context) -> list[int]:
        from salespulse.steps import forecast

        return runtime.run_unpublished_step(forecast.prepare_forecasts, context)["partitions"]

    @task(max_active_tis_per_dagrun=8)
    def forecast_partition(partition: int, **context) -> dict:
        from salespulse.steps import forecast

        return runtime.run_unpublished_step(
            functools.partial(forecast.forecast_partition, partition=partition), context
        )

    @task(outlets=[assets.SALES_FORECASTS])
    def publish_snapshot(**context) -> dict:
        from salespulse.steps import forecast

        return runtime.run_step(forecast.publish_forecasts, assets.SALES_FORECASTS, context)

    @task
    def funnel_forecast(**context) -> dict:
        from salespulse.steps import funnel

        return runtime.run_unpublished_step(funnel.build_funnel, context)

    partitions = forecast_partition.expand(partition=prepare_series())
    partitions >> publish_snapshot() >> funnel_forecast()


sales_forecast()
