"""Set the warehouse up: every layer's schemas, tables and views, the reporting views' documentation, and
on PostgreSQL the read-only reporting role and the role that may see personal data
(:mod:`salespulse.schema`). Idempotent."""

from __future__ import annotations

from dataclasses import dataclass

from salespulse.config import Settings
from salespulse.schema import create_schema, grant_pii_reader, grant_reporting_reader
from salespulse.steps.base import warehouse
from salespulse.warehouse import LAYERS


@dataclass(frozen=True)
class PrepareSummary:
    layers: tuple[str, ...]
    reporting_role_granted: bool  # False on DuckDB, or where the warehouse user may not create roles
    pii_role_granted: bool = False  # the role that may read reporting_pii, likewise


def prepare_warehouse(settings: Settings) -> PrepareSummary:
    """Create the layered schemas, tables and views, document the reporting views, and on PostgreSQL grant
    the reporting schema to the read-only role."""
    with warehouse(settings) as engine:
        create_schema(engine)
        granted = grant_reporting_reader(engine, settings.reporting_role)
        pii = grant_pii_reader(engine, settings.pii_role)
    return PrepareSummary(LAYERS, granted, pii)
