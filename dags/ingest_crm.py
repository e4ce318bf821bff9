"""
### ingest_crm

Pulls the CRM's data (customers, products, sales targets, orders, order lines, interactions,
opportunities) into the warehouse, as of the run's date, from the source `SALESPULSE_SOURCE` names:
export files (default), the CRM's database (`AIRFLOW_CONN_SALESPULSE_CRM_DB`), its REST API
(`AIRFLOW_CONN_SALESPULSE_CRM_API`) or a user's files through a mapping file (`SALESPULSE_MAPPING`).

For each entity, in referential order: read the rows updated since the entity's watermark and before
the as-of date (all of them with `params.full_refresh`), de-duplicate by business key (last update
wins), run the entity's Great Expectations suite, land the batch in `raw`, quarantine rows that
broke a critical rule in `quality.quarantine` with the rule named, write every expectation's outcome
to `quality.validation_results`, merge the good rows into `core`,
and record the counts, the watermark before and after and the timings in `audit.load_batches`
(rows read = loaded + quarantined + duplicates). The watermark advances only with a committed batch;
re-running a date re-reads the same window, so re-runs and `airflow backfill create` leave the
warehouse as a single in-order run would. Source columns the model does not know are kept in
`raw.<entity>._extra`, named in the audit and announced once through the alert channels.
A critical batch-level failure fails the task without retries, so `crm_core` is not updated and nothing
downstream runs. Every validation with failures sends one alert (email, Slack, JSON webhook: whichever of
the `salespulse_smtp`, `salespulse_slack`, `salespulse_webhook` connections exist), and the GX Data Docs
are rebuilt under `.data/gx/` on every run.

Interactions, opportunities and sales targets are optional: a source without them records them as not
provided (`audit.step_runs`) and the chain goes on; a missing required entity fails at once.

**Schedule:** `SALESPULSE_INGEST_SCHEDULE` (default `@daily`; `none` for triggered runs only).
**As-of date:** `params.as_of`, else the logical date. **Full refresh:** `params.full_refresh`.
**Emits:** `crm_core`, which triggers `customer_segments`.
"""

from __future__ import annotations

from datetime import date

from airflow.sdk import chain, dag, task

from salespulse.model import load_order
from salespulse_airflow import assets, runtime


@dag(
    schedule=runtime.ingest_schedule(),
    tags=["salespulse", "ingest", "data-quality"],
    doc_md=__doc__,
    **{**runtime.DAG_DEFAULTS, "params": {**runtime.PARAMS, "full_refresh": False}},
)
def ingest_crm():
    @task
    def prepare_warehouse(**context) -> str:
        return runtime.prepare_warehouse(context).isoformat()

    @task
    def ingest_entity(entity: str, as_of: str, **context) -> dict:
        return runtime.ingest_with_quality_alerts(entity, date.fromisoformat(as_of), context)

    @task(outlets=[assets.CRM_CORE])
    def publish_core(as_of: str, **context) -> None:
        runtime.publish(context, assets.CRM_CORE, date.fromisoformat(as_of), {})

    as_of = prepare_warehouse()
    # One task per entity, chained: parents load before children so referential checks see them.
    loads = [ingest_entity.override(task_id=f"ingest_{e.name}")(e.name, as_of) for e in load_order()]
    chain(*loads, publish_core(as_of))


ingest_crm()
