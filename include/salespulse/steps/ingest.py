"""Load one entity from the configured source (:mod:`salespulse.ingest` does the work: window, gate,
quarantine, merge, audit). An optional entity the source does not provide is recorded as such in
``audit.step_runs`` and loads nothing; a required one that is missing is a permanent error."""

from __future__ import annotations

from datetime import date, datetime

from salespulse.config import Settings
from salespulse.ingest import LoadResult, ingest_from_source
from salespulse.sources import source_from_settings
from salespulse.steps.base import record_step, warehouse


def ingest_entity(
    settings: Settings, entity_name: str, as_of: date, run_id: str, full_refresh: bool = False
) -> LoadResult:
    """Load one entity's rows changed since its watermark (all rows on a full refresh), as of ``as_of``."""
    started = datetime.now()
    source = source_from_settings(settings)
    with warehouse(settings) as engine:
        result = ingest_from_source(
            engine,
            source,
            entity_name,
            as_of,
            run_id,
            full_refresh=full_refresh,
            lookback=settings.watermark_lookback,
            docs_root=settings.data_docs_root,
            max_batch_rows=settings.max_batch_rows,
        )
        if not result.provided:
            detail = f"not provided by {result.source}; nothing loaded"
            record_step(engine, run_id, f"ingest_{entity_name}", as_of, 0, detail, started)
        elif result.rows_before_watermark:
            detail = (
                f"nothing new, but {result.rows_before_watermark} rows in {result.source} predate the "
                "watermark and were not loaded: run a full refresh to load them"
            )
            record_step(engine, run_id, f"ingest_{entity_name}", as_of, 0, detail, started)
        if result.rows_in_future:
            detail = (
                f"{result.rows_in_future} rows in {result.source} are dated after the day after this load "
                "and were not loaded (a wrong clock or a typo in updated_at?)"
            )
            record_step(engine, run_id, f"ingest_{entity_name}:future", as_of, 0, detail, started)
    return result
