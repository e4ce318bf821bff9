"""Load one entity from the configured source (:mod:`salespulse.ingest` does the work: window, gate,
quarantine, merge, audit)."""

from __future__ import annotations

from datetime import date

from salespulse.config import Settings
from salespulse.ingest import LoadResult, ingest_from_source
from salespulse.sources import source_from_settings
from salespulse.steps.base import warehouse


def ingest_entity(
    settings: Settings, entity_name: str, as_of: date, run_id: str, full_refresh: bool = False
) -> LoadResult:
    """Load one entity's rows changed since its watermark (all rows on a full refresh), as of ``as_of``."""
    source = source_from_settings(settings)
    with warehouse(settings) as engine:
        return ingest_from_source(
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
