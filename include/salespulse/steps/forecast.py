"""The forecast step in three parts, so Airflow can fan the middle one out: build the series and split
them into partitions; backtest, choose and forecast one partition (:mod:`salespulse.forecast`); reconcile
the staged forecasts (:mod:`salespulse.reconcile`) and publish them as one snapshot."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd

from salespulse.config import Settings
from salespulse.forecast import complete_months, forecast_filled, partition_of, warning_kinds
from salespulse.periods import last_complete_month, last_complete_week, month_start, week_start
from salespulse.reconcile import incoherence, reconcile
from salespulse.steps.base import record_step, skip_single_member_levels, warehouse, write_series_levels
from salespulse.warehouse import bulk_insert, delete_keys, read_sql_file, replace_rows, run_sql_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForecastPlan:
    series: int
    partitions: tuple[int, ...]
    single_member_levels: tuple[str, ...] = ()  # levels skipped: their one member is the total again


@dataclass(frozen=True)
class PartitionSummary:
    partition: int
    series: int
    seconds: float
    series_with_warnings: int
    warnings: Mapping[str, int]  # the most frequent numerical warnings, with how many series had each


@dataclass(frozen=True)
class ForecastSummary:
    series: int
    rows: int
    reconciliation: str
    max_incoherence: float
    models: Mapping[str, int]  # series per chosen model


def prepare_forecasts(settings: Settings, as_of: date, run_id: str) -> ForecastPlan:
    """Rebuild the monthly and weekly series of the configured levels from core and say which partitions
    have (monthly) series to forecast."""
    periods = {
        "as_of_month": month_start(as_of),
        "as_of_week": week_start(as_of),
        "last_month": last_complete_month(as_of),
        "last_week": last_complete_week(as_of),
    }
    with warehouse(settings) as engine, engine.begin() as conn:
        write_series_levels(conn, settings.forecast_levels)
        run_sql_file(conn, "marts/build_sales_series.sql", {**periods, "as_of_date": as_of, "run_id": run_id})
        skipped = skip_single_member_levels(conn, run_id)
        replace_rows(conn, "marts.forecast_staging", {"run_id": run_id})
        ids = read_sql_file(conn, "marts/select_monthly_series_ids.sql")["series_id"]
        # Each series' partition, stored so that a partition task reads only its own series.
        partitions = [partition_of(str(s), settings.forecast_partitions) for s in ids]
        assignment = pd.DataFrame(
            {"run_id": run_id, "series_id": ids.astype(str), "partition_no": partitions}
        )
        replace_rows(conn, "marts.forecast_partitions", {"run_id": run_id}, assignment)
    return ForecastPlan(len(ids), tuple(sorted(set(assignment["partition_no"].tolist()))), tuple(skipped))


def forecast_partition(settings: Settings, as_of: date, run_id: str, partition: int) -> PartitionSummary:
    """Backtest, choose and forecast the series of one partition; stage the base forecasts and store the
    backtest errors. Idempotent per (run, partition), so an Airflow retry redoes just this part."""
    started = datetime.now()
    with warehouse(settings) as engine:
        series = read_sql_file(
            engine, "marts/select_partition_series.sql", {"run_id": run_id, "partition_no": partition}
        )
        base, backtests, caught = forecast_filled(
            complete_months(series, as_of),
            as_of,
            settings.forecast_horizon,
            settings.backtest_folds,
            settings.season_length,
            settings.forecast_workers,
            settings.forecast_models,
        )
        created = datetime.now()
        ids = sorted(series["series_id"].unique())
        with engine.begin() as conn:
            delete_keys(conn, "marts.forecast_staging", {"run_id": run_id}, "series_id", ids)
            # Backtests are kept per as-of date: a retry or a re-run of the date replaces these series' rows.
            delete_keys(conn, "marts.forecast_backtest", {"as_of_date": as_of}, "series_id", ids)
            if len(base):
                stamp = {"run_id": run_id, "created_at": created}
                bulk_insert(conn, "marts", "forecast_staging", base.assign(partition_no=partition, **stamp))
                bulk_insert(conn, "marts", "forecast_backtest", backtests.assign(as_of_date=as_of, **stamp))
    kinds = warning_kinds(caught)  # summarised: how many series had any, and the most frequent kinds
    if caught:
        log.info("partition %d: numerical warnings in %d of %d series: %s", partition, len(caught), len(ids),
                 dict(kinds.most_common(3)))  # fmt: skip
    return PartitionSummary(
        partition=partition,
        series=len(ids),
        seconds=round((datetime.now() - started).total_seconds(), 2),
        series_with_warnings=len(caught),
        warnings={k: int(v) for k, v in kinds.most_common(5)},
    )


def publish_forecasts(settings: Settings, as_of: date, run_id: str) -> ForecastSummary:
    """Reconcile the run's staged base forecasts across levels and write them as the as-of date's snapshot
    (replacing an earlier run's of the same date; other dates' snapshots are never touched)."""
    started = datetime.now()
    with warehouse(settings) as engine:
        staged = read_sql_file(engine, "marts/select_staged_forecasts.sql", {"run_id": run_id})
        expected = len(read_sql_file(engine, "marts/select_monthly_series_ids.sql"))
        if staged["series_id"].nunique() != expected:
            raise RuntimeError(
                f"run {run_id}: {staged['series_id'].nunique()} of {expected} series forecast; "
                "a partition is missing, so nothing is published"
            )
        staged = staged.drop(columns=["run_id", "partition_no", "created_at"])
        snapshot = reconcile(staged, settings.forecast_reconciliation).forecasts.assign(
            reconciliation=settings.forecast_reconciliation,
            as_of_date=as_of,
            run_id=run_id,
            created_at=datetime.now(),
        )
        with engine.begin() as conn:
            # One snapshot per as-of date: a re-run of the date replaces it, and its other runs' backtests.
            replace_rows(conn, "marts.forecast_snapshot", {"as_of_date": as_of}, snapshot)
            run_sql_file(
                conn, "marts/delete_superseded_backtests.sql", {"as_of_date": as_of, "run_id": run_id}
            )
            for work_table in ("marts.forecast_staging", "marts.forecast_partitions"):
                replace_rows(conn, work_table, {"run_id": run_id})
        models = snapshot.drop_duplicates("series_id")["model"].value_counts().to_dict()
        record_step(engine, run_id, "build_forecasts", as_of, len(snapshot), f"models={models}", started)
    return ForecastSummary(
        series=int(snapshot["series_id"].nunique()),
        rows=len(snapshot),
        reconciliation=settings.forecast_reconciliation,
        max_incoherence=incoherence(snapshot),
        models={str(k): int(v) for k, v in models.items()},
    )
