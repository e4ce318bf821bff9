"""The data assets that connect the DAGs (data-aware scheduling).

ingest_crm -> CRM_CORE -> customer_segments -> CUSTOMER_SEGMENTS -> sales_forecast
-> SALES_FORECASTS -> variance_report -> VARIANCE_REPORT. Each event carries the as-of date
it was produced for in its ``extra``, so a triggered run works on the same date.
"""

from airflow.sdk import Asset

CRM_CORE = Asset(name="crm_core", uri="salespulse://warehouse/core", group="salespulse")
CUSTOMER_SEGMENTS = Asset(
    name="customer_segments", uri="salespulse://warehouse/marts/customer_rfm", group="salespulse"
)
SALES_FORECASTS = Asset(
    name="sales_forecasts", uri="salespulse://warehouse/marts/forecast_snapshot", group="salespulse"
)
VARIANCE_REPORT = Asset(
    name="variance_report", uri="salespulse://warehouse/marts/fct_variance", group="salespulse"
)
