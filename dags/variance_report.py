"""
### variance_report

For the last complete month before the run's as-of date, compares each series' actual revenue (total,
region, customer segment, product category, sales owner) with the forecast first made 1 and 3 months
ahead (`SALESPULSE_VARIANCE_HORIZONS`) and with the sales target: variance (actual - forecast; positive
means sales beat the forecast), rolling bias, WAPE, MASE and tracking signal, interval coverage, and
flags against configurable limits. Then price / volume / mix and the customer bridge, a static HTML
report with PNG charts under `<data dir>/reports/<YYYY-MM>/`, and one summary alert when rows are
flagged. Re-running a month replaces that month's rows only.

BI reads `reporting.variance`, `reporting.variance_flags`, `reporting.forecast_accuracy`,
`reporting.revenue_drivers` and `reporting.customer_bridge`.

**Runs:** monthly (06:00 UTC on the 1st, reporting the month just ended) and whenever `sales_forecasts`
lands new snapshots. **As-of date:** `params.as_of`, else the triggering event's, else the logical date.
**Emits:** `variance_report`.
"""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from salespulse_airflow import assets, runtime


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 1 * *", timezone="UTC"), assets=[assets.SALES_FORECASTS]
    ),
    tags=["salespulse", "variance", "reporting"],
    doc_md=__doc__,
    **runtime.DAG_DEFAULTS,
)
def variance_report():
    @task(outlets=[assets.VARIANCE_REPORT])
    def build_variance(**context) -> dict:
        from salespulse.steps import variance as variance_step

        return runtime.run_step(variance_step.build_variance, assets.VARIANCE_REPORT, context)

    @task
    def render_report(**context) -> dict:
        from salespulse.steps import report as report_step

        return runtime.run_unpublished_step(report_step.render_variance_report, context)

    @task
    def alert_flagged(variance: dict, report: dict, **context) -> list[str]:
        return runtime.send_variance_alert(variance, report, context)

    variance = build_variance()
    report = render_report()
    variance >> report
    alert_flagged(variance, report)


variance_report()
