"""Checks and shortcuts the tests share; the pipeline itself never needs them."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, text

from salespulse.config import Settings
from salespulse.generator import CrmDataset
from salespulse.ingest import LoadResult, ingest_from_source
from salespulse.model import Entity, load_order
from salespulse.sources import FileSource, Source, Window
from salespulse.warehouse import LAYERS, check_identifier, read_frame


def table_counts(engine: Engine, layers: tuple[str, ...] = LAYERS) -> dict[str, int]:
    """Row count of every table and view in the given layers, keyed ``schema.table``."""
    listing = read_frame(engine, "select table_schema, table_name from information_schema.tables")
    listing = listing[listing["table_schema"].isin(layers)].sort_values(["table_schema", "table_name"])
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for schema, table in listing.itertuples(index=False):
            qualified = f"{check_identifier(schema)}.{check_identifier(table)}"
            counts[qualified] = int(conn.execute(text(f"select count(*) from {qualified}")).scalar_one())
    return counts


def extract_frame(source: Source, entity: Entity, window: Window) -> pd.DataFrame:
    """All of a window's rows at once: what the loader gates as one batch."""
    chunks = list(source.extract(entity, window))
    return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]


def reconcile_levels(facts: pd.DataFrame, tolerance: float = 1e-6) -> pd.DataFrame:
    """Per lead and level: does the sum of the members' actuals equal the total's actual?

    Every order line belongs to exactly one member of each level, so the actuals must add up; forecasts need
    not (they are made per series) and are reported beside them, with the gap.
    """
    total = facts[facts["level"] == "total"].set_index("horizon")[["actual", "forecast"]]
    rows = []
    for (horizon, level), part in facts[facts["level"] != "total"].groupby(["horizon", "level"]):
        if horizon not in total.index:
            continue
        actual_total = float(total.loc[horizon, "actual"])
        rows.append(
            {
                "horizon": horizon,
                "level": level,
                "members": len(part),
                "actual_sum": float(part["actual"].sum()),
                "actual_total": actual_total,
                "actual_reconciles": abs(part["actual"].sum() - actual_total)
                <= tolerance * max(1.0, abs(actual_total)),
                "forecast_sum": float(part["forecast"].sum()),
                "forecast_total": float(total.loc[horizon, "forecast"]),
            }
        )
    return pd.DataFrame(rows)


def ingest_exports(
    engine: Engine, export_dir: Path, as_of: date, run_id: str, source_format: str = "parquet"
) -> list[LoadResult]:
    """Load every entity from a folder of export files (see :class:`salespulse.sources.FileSource`)."""
    return ingest_all(engine, FileSource(export_dir, prefer=source_format), as_of, run_id)


def ingest_all(
    engine: Engine, source: Source, as_of: date, run_id: str, full_refresh: bool = False
) -> list[LoadResult]:
    """Load every entity from one source, parents before children (what the ingest DAG's tasks do)."""
    return [ingest_from_source(engine, source, e.name, as_of, run_id, full_refresh) for e in load_order()]


def completed_source_lines(
    crm: CrmDataset, known_before: pd.Timestamp, ordered_before: pd.Timestamp
) -> pd.DataFrame:
    """The generated CRM's completed order lines as the pipeline should see them, worked out in pandas
    without the pipeline's code: records updated before ``known_before``, orders of known customers placed
    before ``ordered_before``, lines that pass the quality rules (price not negative, quantity at least 1).
    Adds ``customer_id``, ``order_date`` and the line's ``amount``."""
    customers = crm["customers"]
    known = customers.loc[customers["updated_at"] < known_before, "customer_id"]
    orders = crm["orders"]
    orders = orders[
        (orders["updated_at"] < known_before)
        & (orders["order_date"] < ordered_before)
        & (orders["status"] == "completed")
        & orders["customer_id"].isin(known)
    ]
    lines = crm["order_lines"]
    lines = lines[
        lines["order_id"].isin(orders["order_id"]) & (lines["unit_price"] >= 0) & (lines["quantity"] >= 1)
    ]
    lines = lines.merge(orders[["order_id", "customer_id", "order_date"]], on="order_id")
    return lines.assign(amount=lines["quantity"] * lines["unit_price"] * (1 - lines["discount_pct"]))


def expected_revenue(crm: CrmDataset, as_of: date) -> float:
    """Completed revenue before the as-of month, from the source frames, without the pipeline's code."""
    cutoff = pd.Timestamp(as_of)
    return float(completed_source_lines(crm, cutoff, cutoff.to_period("M").to_timestamp())["amount"].sum())


def run_after_ingest(settings: Settings, as_of: date, run_id: str) -> dict[str, Any]:
    """Every step after the ingest, in the order the DAGs run them; their summaries by step."""
    from salespulse.steps import forecast, funnel, report, segments, variance

    done: dict[str, Any] = {"segments": segments.build_segments(settings, as_of, run_id)}
    plan = forecast.prepare_forecasts(settings, as_of, run_id)
    for partition in plan.partitions:
        forecast.forecast_partition(settings, as_of, run_id, partition)
    done["forecast"] = forecast.publish_forecasts(settings, as_of, run_id)
    done["funnel"] = funnel.build_funnel(settings, as_of, run_id)
    done["variance"] = variance.build_variance(settings, as_of, run_id)
    done["report"] = report.render_variance_report(settings, as_of, run_id)
    return done
