"""The pipeline's steps, as plain functions of (settings, as-of date, run id).

Airflow tasks call these and nothing else; so can a test or a notebook. Each step is idempotent
for its as-of date (or run id, for forecast snapshots) and records itself in ``audit.step_runs``.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, text

from salespulse.churn import churn_risk, churn_warnings
from salespulse.clusters import cluster_features, fit_clusters
from salespulse.clv import (
    BetaGeoFitter,
    GammaGammaFitter,
    customer_lifetime_value,
    frequency_monetary_correlation,
    summarize,
)
from salespulse.config import Settings
from salespulse.dictionary import grant_reporting_reader
from salespulse.drivers import drivers_by_level
from salespulse.forecast import complete_months, forecast_filled
from salespulse.funnel import FunnelRules, combine, funnel_forecast, monthly_bookings
from salespulse.ingest import ingest_from_source
from salespulse.reconcile import incoherence, reconcile
from salespulse.segments import (
    ClassThresholds,
    compute_rfm,
    lifecycle_stages,
    purchase_classes,
    purchase_history,
    value_tiers,
)
from salespulse.sources import source_from_env
from salespulse.variance import (
    FLAG_COLUMNS,
    VarianceRules,
    actuals_with_zeros,
    first_forecasts,
    variance_facts,
    window_start,
)
from salespulse.warehouse import bulk_insert, create_schema, get_engine, read_frame, run_sql_file

log = logging.getLogger(__name__)

# What the variance alert lists: the largest flagged rows, at most ALERT_ROWS of them.
ALERT_COLUMNS = ["series_id", "horizon", "actual", "forecast", "target", "variance_abs", "variance_pct"]
ALERT_COLUMNS += ["flag_reasons"]
ALERT_ROWS = 15


@contextmanager
def warehouse(settings: Settings) -> Generator[Engine]:
    """An engine for the duration of one step; disposed after, so an embedded DuckDB file is released."""
    engine = get_engine(settings.warehouse_url)
    try:
        yield engine
    finally:
        engine.dispose()


def month_start(day: date) -> date:
    return date(day.year, day.month, 1)


def week_start(day: date) -> date:
    """The Monday of ``day``'s week (weeks as ``date_trunc('week', ...)`` has them in both warehouses)."""
    return day - timedelta(days=day.weekday())


def write_series_levels(conn: Connection, levels: Sequence[str]) -> None:
    """Make ``marts.series_levels`` say ``levels`` (from ``SALESPULSE_FORECAST_LEVELS``): the levels below the
    total that ``marts.sales_by_level`` splits revenue by."""
    rows = pd.DataFrame(
        [
            {"level": level, "attribute": attribute, "position": position}
            for level in levels
            for position, attribute in enumerate(level.split("*"))
        ],
        columns=["level", "attribute", "position"],
    )
    conn.execute(text("delete from marts.series_levels"))
    bulk_insert(conn, "marts", "series_levels", rows)


def _record_step(
    engine: Engine, run_id: str, step: str, as_of: date, rows: int, detail: str, started: datetime
) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("delete from audit.step_runs where run_id = :run_id and step = :step"),
            {"run_id": run_id, "step": step},
        )
        bulk_insert(
            conn,
            "audit",
            "step_runs",
            pd.DataFrame(
                [
                    {
                        "run_id": run_id,
                        "step": step,
                        "as_of_date": as_of,
                        "rows_written": rows,
                        "detail": detail,
                        "started_at": started,
                        "finished_at": datetime.now(),
                    }
                ]
            ),
        )


def prepare_warehouse(settings: Settings) -> list[str]:
    """Create the layered schemas, tables and views (idempotent), document the reporting views, and on
    PostgreSQL grant the reporting schema to the read-only role."""
    with warehouse(settings) as engine:
        create_schema(engine)
        grant_reporting_reader(engine, settings.reporting_role)
    return ["raw", "core", "quality", "audit", "marts", "reporting"]


def ingest_entity(
    settings: Settings, entity_name: str, as_of: date, run_id: str, full_refresh: bool = False
) -> dict[str, Any]:
    """Load one entity's rows changed since its watermark (all rows on a full refresh), as of ``as_of``."""
    source = source_from_env(export_dir=settings.export_dir)
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
    return result.as_dict()


@dataclass
class SegmentSnapshot:
    """Everything the segments step computes for one as-of date, before it is stored."""

    customers: pd.DataFrame  # one row per scored customer
    cluster_profile: pd.DataFrame
    churn_evaluation: pd.DataFrame
    churn_warnings: pd.DataFrame
    model: dict[str, Any]


def segment_snapshot(
    sales: pd.DataFrame,
    as_of: date,
    previous_centroids: pd.DataFrame | None = None,
    previous_scores: pd.DataFrame | None = None,
) -> SegmentSnapshot:
    """RFM, value tier, purchase class, lifecycle, CLV, cluster and churn risk per customer, as of a date.

    ``sales`` are order lines (customer_id, order_id, order_date, status, net_amount). The previous
    snapshot's cluster centroids keep cluster numbers stable; its churn scores decide who newly crossed the
    warning threshold. Pure: no warehouse, so it can be tested and benchmarked on its own.
    """
    # Every measure below needs completed orders, not lines: collapse once (half the rows, one copy).
    completed = sales[(sales["status"] == "completed") & (sales["order_date"] < pd.Timestamp(as_of))]
    sales = (
        completed.groupby(["customer_id", "order_id"], as_index=False, sort=False)
        .agg(order_date=("order_date", "min"), net_amount=("net_amount", "sum"))
        .assign(status="completed")
    )
    del completed
    rfm = compute_rfm(sales, as_of)
    history = purchase_history(sales, as_of)
    rfm, model = add_value_and_lifecycle(rfm, sales, as_of, history)
    tenure = history["days_since_first"]
    profile = pd.DataFrame()
    try:
        clusters = fit_clusters(cluster_features(rfm, tenure), previous_centroids=previous_centroids)
        rfm["cluster"] = rfm["customer_id"].map(clusters.labels).astype("Int64")
        profile = clusters.profile.reset_index().assign(k=clusters.k, silhouette=clusters.silhouette)
        model["clusters"] = {"k": clusters.k, "silhouette": round(clusters.silhouette, 4)}
    except ValueError as exc:
        log.warning("customers not clustered as of %s: %s", as_of, exc)
        rfm["cluster"] = pd.array([None] * len(rfm), dtype="Int64")
    evaluation, warnings = pd.DataFrame(), pd.DataFrame()
    try:
        churn = churn_risk(sales, as_of)
        rfm["churn_probability"] = rfm["customer_id"].map(churn.probability)
        evaluation = churn.evaluation
        model["churn"] = (
            evaluation.set_index("model")[["roc_auc", "pr_auc", "brier"]].round(4).to_dict("index")
        )
        warnings = churn_warnings(rfm, previous_scores)[
            ["customer_id", "value_tier", "churn_probability", "previous_probability", "clv_12m"]
        ]
    except ValueError as exc:
        log.warning("no churn model as of %s: %s", as_of, exc)
        rfm["churn_probability"] = np.nan
    return SegmentSnapshot(rfm, profile, evaluation, warnings, model)


def build_segments(settings: Settings, as_of: date, run_id: str) -> dict[str, Any]:
    """Compute the segments snapshot as of ``as_of`` and store it (replacing that date's snapshot)."""
    started = datetime.now()
    with warehouse(settings) as engine:
        sales = read_frame(
            engine,
            "select customer_id, order_id, order_date, status, net_amount from core.sales_lines "
            "where order_date < :as_of",
            {"as_of": as_of},
        )
        sales["order_date"] = pd.to_datetime(sales["order_date"])
        previous_centroids = read_frame(
            engine,
            "select * from marts.customer_cluster_profile where snapshot_date = "
            "(select max(snapshot_date) from marts.customer_cluster_profile where snapshot_date < :as_of)",
            {"as_of": as_of},
        ).set_index("cluster")
        previous_scores = read_frame(
            engine,
            "select customer_id, churn_probability from marts.customer_rfm where snapshot_date = "
            "(select max(snapshot_date) from marts.customer_rfm where snapshot_date < :as_of)",
            {"as_of": as_of},
        )
        snapshot = segment_snapshot(sales, as_of, previous_centroids, previous_scores)
        stamp = {"snapshot_date": as_of, "run_id": run_id, "created_at": datetime.now()}
        tables = {
            "customer_rfm": snapshot.customers,
            "customer_cluster_profile": snapshot.cluster_profile,
            "churn_model_evaluation": snapshot.churn_evaluation,
            "churn_warnings": snapshot.churn_warnings,
        }
        with engine.begin() as conn:
            for table, frame in tables.items():
                conn.execute(
                    text(f"delete from marts.{table} where snapshot_date = :as_of"), {"as_of": as_of}
                )
                bulk_insert(conn, "marts", table, frame.assign(**stamp) if len(frame) else frame)
        rfm, warnings, model = snapshot.customers, snapshot.churn_warnings, snapshot.model
        mix = rfm["rfm_segment"].value_counts().to_dict()
        _record_step(engine, run_id, "build_segments", as_of, len(rfm), f"segments={mix}; {model}", started)
    return {
        "customers_scored": len(rfm),
        "segments": {str(k): int(v) for k, v in mix.items()},
        "lifecycle": {str(k): int(v) for k, v in rfm["lifecycle_stage"].value_counts().items()},
        "model": model,
        "churn_warnings": [
            {k: _plain(v) for k, v in row.items()} for row in warnings.head(50).to_dict(orient="records")
        ],
        "churn_warning_count": len(warnings),
    }


def add_value_and_lifecycle(
    rfm: pd.DataFrame,
    sales: pd.DataFrame,
    as_of: date,
    history: pd.DataFrame,
    thresholds: ClassThresholds | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Value tier, purchase class, lifecycle stage, P(alive), expected purchases and CLV over 12 months.

    BG/NBD and Gamma-Gamma are fitted on weekly periods of completed purchases before ``as_of``. On data
    too thin to fit, the model columns stay empty and the stages fall back to cadence alone.
    """
    thresholds = thresholds or ClassThresholds()
    if rfm.empty:
        empty = {c: pd.Series(dtype=object) for c in ("value_tier", "purchase_class", "lifecycle_stage")}
        return rfm.assign(**empty, p_alive=np.nan, expected_purchases_12m=np.nan, clv_12m=np.nan), {}
    completed = sales[(sales["status"] == "completed") & (sales["order_date"] < pd.Timestamp(as_of))]
    end = pd.Timestamp(as_of) - pd.Timedelta(days=1)
    summary = summarize(completed, "customer_id", "order_date", "net_amount", end, freq="W")
    model: dict[str, Any] = {}
    try:
        bgf = BetaGeoFitter(penalizer=0.001).fit(summary)
        ggf = GammaGammaFitter(penalizer=0.001).fit(summary)
        weeks_per_month = 52 / 12
        summary["p_alive"] = bgf.probability_alive(summary)
        summary["expected_purchases_12m"] = bgf.expected_purchases(summary, 12 * weeks_per_month)
        summary["clv_12m"] = customer_lifetime_value(
            bgf, ggf, summary, months=12, monthly_discount_rate=0.01, periods_per_month=weeks_per_month
        )
        model = {
            "bgnbd": {k: round(v, 4) for k, v in bgf.params_.items()},
            "gamma_gamma": {k: round(v, 4) for k, v in ggf.params_.items()},
            "frequency_monetary_correlation": round(frequency_monetary_correlation(summary), 4),
        }
    except (RuntimeError, ValueError) as exc:
        log.warning("CLV models not fitted as of %s: %s", as_of, exc)
        summary = summary.assign(p_alive=np.nan, expected_purchases_12m=np.nan, clv_12m=np.nan)
    out = rfm.merge(
        summary[["p_alive", "expected_purchases_12m", "clv_12m"]],
        left_on="customer_id",
        right_index=True,
        how="left",
    ).merge(history, left_on="customer_id", right_index=True, how="left")
    out["value_tier"] = value_tiers(out["monetary"], out["customer_id"], thresholds)
    out["purchase_class"] = purchase_classes(out["frequency"], out["orders_last_year"], thresholds)
    out["lifecycle_stage"] = lifecycle_stages(
        out["days_since_first"],
        out["days_since_last"],
        out["cadence_days"],
        out["longest_gap_days"],
        out["p_alive"],
        thresholds,
    )
    return out.drop(columns=list(history.columns)), model


MONTHLY_SERIES_IDS = "select distinct series_id from marts.sales_series where grain = 'month'"


def partition_of(series_id: str, partitions: int) -> int:
    """A series' partition: stable across runs and machines (CRC-32 of its id), so a retry redoes the
    same set."""
    return zlib.crc32(series_id.encode("utf-8")) % partitions


def prepare_forecasts(settings: Settings, as_of: date, run_id: str) -> dict[str, Any]:
    """Rebuild the monthly and weekly series of the configured levels from core and say which partitions
    have (monthly) series to forecast."""
    this_month, this_week = month_start(as_of), week_start(as_of)
    periods = {
        "as_of_month": this_month,
        "as_of_week": this_week,
        "last_month": (pd.Timestamp(this_month) - pd.DateOffset(months=1)).date(),
        "last_week": this_week - timedelta(days=7),
    }
    with warehouse(settings) as engine, engine.begin() as conn:
        write_series_levels(conn, settings.forecast_levels)
        run_sql_file(conn, "marts/build_sales_series.sql", {**periods, "as_of_date": as_of, "run_id": run_id})
        conn.execute(text("delete from marts.forecast_staging where run_id = :r"), {"r": run_id})
        ids = read_frame(conn, MONTHLY_SERIES_IDS)["series_id"]
        # Each series' partition, stored so that a partition task reads only its own series.
        assignment = pd.DataFrame(
            {
                "run_id": run_id,
                "series_id": ids.astype(str),
                "partition_no": [partition_of(str(s), settings.forecast_partitions) for s in ids],
            }
        )
        conn.execute(text("delete from marts.forecast_partitions where run_id = :r"), {"r": run_id})
        bulk_insert(conn, "marts", "forecast_partitions", assignment)
    partitions = sorted(set(assignment["partition_no"].tolist()))
    return {"series": len(ids), "partitions": partitions}


def forecast_partition(settings: Settings, as_of: date, run_id: str, partition: int) -> dict[str, Any]:
    """Backtest, choose and forecast the series of one partition; stage the base forecasts and store the
    backtest errors. Idempotent per (run, partition), so an Airflow retry redoes just this part."""
    started = datetime.now()
    with warehouse(settings) as engine:
        series = read_frame(
            engine,
            "select series.series_id, series.level, series.member, series.period_start, series.revenue "
            "from marts.sales_series as series inner join marts.forecast_partitions as part "
            "on part.series_id = series.series_id and part.run_id = :r and part.partition_no = :p "
            "where series.grain = 'month'",
            {"r": run_id, "p": partition},
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
            for table in ("marts.forecast_staging", "marts.forecast_backtest"):
                for chunk in range(0, len(ids), 500):
                    conn.execute(
                        text(f"delete from {table} where run_id = :r and series_id in :ids").bindparams(
                            bindparam("ids", expanding=True)
                        ),
                        {"r": run_id, "ids": ids[chunk : chunk + 500]},
                    )
            if len(base):
                bulk_insert(
                    conn,
                    "marts",
                    "forecast_staging",
                    base.assign(run_id=run_id, partition_no=partition, created_at=created),
                )
                bulk_insert(
                    conn,
                    "marts",
                    "forecast_backtest",
                    backtests.assign(as_of_date=as_of, run_id=run_id, created_at=created),
                )
    # Numerical warnings, summarised: how many series had any, and the most frequent kinds.
    kinds: Counter[str] = Counter()
    for counts in caught.values():
        kinds.update(counts)
    if caught:
        log.info("partition %d: numerical warnings in %d of %d series: %s", partition, len(caught), len(ids),
                 dict(kinds.most_common(3)))  # fmt: skip
    return {
        "partition": partition,
        "series": len(ids),
        "seconds": round((datetime.now() - started).total_seconds(), 2),
        "series_with_warnings": len(caught),
        "warnings": {k: int(v) for k, v in kinds.most_common(5)},
    }


def publish_forecasts(settings: Settings, as_of: date, run_id: str) -> dict[str, Any]:
    """Reconcile the run's staged base forecasts across levels and write them as one new snapshot."""
    started = datetime.now()
    with warehouse(settings) as engine:
        staged = read_frame(engine, "select * from marts.forecast_staging where run_id = :r", {"r": run_id})
        expected = len(read_frame(engine, MONTHLY_SERIES_IDS))
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
            conn.execute(text("delete from marts.forecast_snapshot where run_id = :r"), {"r": run_id})
            bulk_insert(conn, "marts", "forecast_snapshot", snapshot)
            conn.execute(text("delete from marts.forecast_staging where run_id = :r"), {"r": run_id})
        models = snapshot.drop_duplicates("series_id")["model"].value_counts().to_dict()
        _record_step(engine, run_id, "build_forecasts", as_of, len(snapshot), f"models={models}", started)
    return {
        "series": int(snapshot["series_id"].nunique()),
        "rows": len(snapshot),
        "reconciliation": settings.forecast_reconciliation,
        "max_incoherence": incoherence(snapshot),
        "models": {str(k): int(v) for k, v in models.items()},
    }


def funnel_rules(settings: Settings) -> FunnelRules:
    return FunnelRules(
        lookback_days=settings.funnel_lookback_days,
        min_deals=settings.funnel_min_deals,
        horizon=settings.forecast_horizon,
        funnel_months=settings.funnel_months,
    )


def build_funnel(settings: Settings, as_of: date, run_id: str) -> dict[str, Any]:
    """The funnel forecast of the deals open on ``as_of`` (:mod:`salespulse.funnel`), stage rates and
    sales-cycle length, combined with the run's statistical snapshot. Re-running a run replaces its rows."""
    started = datetime.now()
    rules = funnel_rules(settings)
    with warehouse(settings) as engine:
        opportunities = read_frame(
            engine,
            "select opportunity_id, customer_id, stage, last_open_stage, amount, probability, created_date, "
            "expected_close_date, closed_date from core.fct_opportunity where created_date < :as_of",
            {"as_of": as_of},
        )
        customers = read_frame(
            engine, "select customer_id, region, segment, sales_owner from core.dim_customer"
        )
        statistical = read_frame(
            engine,
            "select series_id, period_start, forecast from marts.forecast_snapshot where run_id = ("
            " select run_id from marts.forecast_snapshot where as_of_date <= :as_of"
            " order by as_of_date desc, created_at desc limit 1)",
            {"as_of": as_of},
        )
        statistical["period_start"] = pd.to_datetime(statistical["period_start"])
        forecast, rates, cycles = funnel_forecast(opportunities, customers, as_of, rules)
        combined = combine(forecast, statistical, monthly_bookings(opportunities, customers, as_of), rules)
        stamp = {"as_of_date": as_of, "run_id": run_id, "created_at": datetime.now()}
        with engine.begin() as conn:
            for table in ("funnel_forecast", "funnel_stage_rates", "funnel_cycle"):
                conn.execute(text(f"delete from marts.{table} where run_id = :r"), {"r": run_id})
            bulk_insert(conn, "marts", "funnel_forecast", combined.assign(**stamp))
            bulk_insert(conn, "marts", "funnel_stage_rates", rates.assign(**stamp))
            bulk_insert(conn, "marts", "funnel_cycle", cycles.assign(**stamp))
        total = combined[combined["series_id"] == "total:all"]
        _record_step(
            engine,
            run_id,
            "build_funnel",
            as_of,
            len(combined),
            f"open_deals={int(total['open_deals'].sum())}",
            started,
        )
    won = cycles.loc[cycles["outcome"] == "won"].iloc[0]
    return {
        "open_deals": int(rates["open_deals"].sum()),
        "open_deals_in_horizon": int(total["open_deals"].sum()),
        "pipeline_amount": round(float(total["pipeline_amount"].sum()), 2),
        "expected_bookings": round(float(total["expected_bookings"].sum()), 2),
        "win_rates": {
            r.stage: None if pd.isna(r.win_rate) else round(float(r.win_rate), 3) for r in rates.itertuples()
        },
        "median_won_cycle_days": None if pd.isna(won["median_days"]) else float(won["median_days"]),
        "rows": len(combined),
    }


def build_forecasts(settings: Settings, as_of: date, run_id: str) -> dict[str, Any]:
    """All three forecast steps in one call (what the DAG fans out): series, every partition, publish."""
    plan = prepare_forecasts(settings, as_of, run_id)
    parts = [forecast_partition(settings, as_of, run_id, p) for p in plan["partitions"]]
    summary = publish_forecasts(settings, as_of, run_id)
    return {**summary, "series_with_warnings": sum(p["series_with_warnings"] for p in parts)}


def variance_rules(settings: Settings) -> VarianceRules:
    return VarianceRules(
        horizons=settings.variance_horizons,
        window=settings.variance_window,
        variance_pct_threshold=settings.variance_pct_threshold,
        tracking_signal_threshold=settings.tracking_signal_threshold,
        target_pct_threshold=settings.target_pct_threshold,
        season_length=settings.season_length,
    )


def reported_month(as_of: date) -> date:
    """The month a variance run reports: the last complete month before ``as_of``."""
    return (pd.Timestamp(month_start(as_of)) - pd.DateOffset(months=1)).date()


def build_variance(settings: Settings, as_of: date, run_id: str) -> dict[str, Any]:
    """Variance facts of the last complete month before ``as_of``: actual vs the forecast first made h months
    ahead vs target, rolling accuracy and flags. Re-running replaces that month's rows and no other's."""
    started = datetime.now()
    rules = variance_rules(settings)
    period = reported_month(as_of)
    with warehouse(settings) as engine:
        with engine.begin() as conn:
            write_series_levels(conn, settings.forecast_levels)
        actuals = actuals_with_zeros(
            read_frame(
                engine,
                "select series_id, level, member, period_start, revenue from marts.sales_by_level "
                "where grain = 'month' and period_start <= :period",
                {"period": period},
            ),
            as_of,
        )
        snapshots = read_frame(
            engine,
            "select * from marts.forecast_snapshot "
            "where period_start between :start and :period and as_of_date < :as_of",
            {"start": window_start(period, rules), "period": period, "as_of": as_of},
        )
        targets = read_frame(
            engine,
            "select level, member, period_start, target_amount from core.fct_sales_target "
            "where period_start = :period",
            {"period": period},
        )
        facts = variance_facts(actuals, first_forecasts(snapshots, rules.horizons), targets, period, rules)
        with engine.begin() as conn:
            conn.execute(text("delete from marts.fct_variance where period_start = :p"), {"p": period})
            bulk_insert(
                conn,
                "marts",
                "fct_variance",
                facts.assign(report_as_of=as_of, run_id=run_id, created_at=started),
            )
        drivers = _store_revenue_drivers(engine, as_of, run_id, started)
        total = facts[(facts["series_id"] == "total:all") & (facts["horizon"] == min(rules.horizons))]
        flagged = facts.loc[facts["flagged"].astype(bool)].sort_values(
            "variance_abs", key=abs, ascending=False
        )
        detail = f"period={period}; flagged={len(flagged)}"
        _record_step(engine, run_id, "build_variance", as_of, len(facts), detail, started)
    return {
        "period": period.isoformat(),
        "fact_rows": len(facts),
        "within_95": int(facts["within_interval_95"].sum()),
        "flagged_rows": len(flagged),
        "flags": {c.removeprefix("flag_"): int(facts[c].sum()) for c in FLAG_COLUMNS},
        "total_variance_pct": None if total.empty else _plain(total["variance_pct"].iloc[0]),
        "flagged": [
            {k: _plain(v) for k, v in row.items()}
            for row in flagged[ALERT_COLUMNS].head(ALERT_ROWS).to_dict(orient="records")
        ],
        **drivers,
    }


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar: no NaN, no numpy types, dates as ISO strings."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp | date):
        return value.isoformat()[:10]
    return value


def render_variance_report(settings: Settings, as_of: date, run_id: str) -> dict[str, Any]:
    """The static HTML report (and its PNG charts) of the month ``as_of`` reports, under the data folder."""
    from salespulse.report import load_report_data, render_report

    started = datetime.now()
    period = reported_month(as_of)
    with warehouse(settings) as engine:
        data = load_report_data(engine, as_of, period)
        page = render_report(
            data, settings.reports_dir / f"{period:%Y-%m}", run_id, lead=min(settings.variance_horizons)
        )
        charts = sorted(p.name for p in page.parent.glob("*.png"))
        _record_step(engine, run_id, "render_report", as_of, len(charts), f"report={page}", started)
    return {"period": period.isoformat(), "report": str(page), "charts": charts}


def _store_revenue_drivers(engine: Engine, as_of: date, run_id: str, created_at: datetime) -> dict[str, Any]:
    """Price / volume / mix and the customer bridge from the month before the last complete month to it,
    per level and member; a re-run of the same as-of date replaces its rows."""
    period = pd.Timestamp(month_start(as_of)) - pd.DateOffset(months=1)
    baseline = period - pd.DateOffset(months=1)
    sales = read_frame(
        engine,
        "select customer_id, product_id, region, segment, category, sales_owner, order_date, quantity, "
        "net_amount as revenue from core.sales_lines "
        "where status = 'completed' and quantity > 0 and order_date >= :start and order_date < :end",
        {"start": baseline.date(), "end": month_start(as_of)},
    )
    sales["period_start"] = pd.to_datetime(sales["order_date"]).dt.to_period("M").dt.to_timestamp()
    pvm, bridge = drivers_by_level(sales.drop(columns="order_date"), period, baseline)
    stamp = {
        "report_as_of": as_of,
        "period_start": period.date(),
        "baseline_start": baseline.date(),
        "run_id": run_id,
        "created_at": created_at,
    }
    with engine.begin() as conn:
        for table, frame in (("fct_revenue_drivers", pvm), ("fct_customer_bridge", bridge)):
            conn.execute(text(f"delete from marts.{table} where report_as_of = :as_of"), {"as_of": as_of})
            if len(frame):
                bulk_insert(conn, "marts", table, frame.assign(**stamp))
    return {"driver_rows": len(pvm), "bridge_rows": len(bridge)}


def headline(settings: Settings) -> dict[str, Any]:
    """A few numbers that say the pipeline worked, for the demo's closing message."""
    with warehouse(settings) as engine:
        loads = read_frame(
            engine,
            "select sum(rows_read) as rows_read, sum(rows_loaded) as rows_loaded, "
            "sum(rows_quarantined) as rows_quarantined from audit.load_batches",
        ).iloc[0]
        segments = read_frame(
            engine,
            "select rfm_segment, count(*) as customers from reporting.customer_segments group by rfm_segment",
        )
        variance = read_frame(
            engine,
            "select period_start, horizon, actual, forecast, target, variance_pct, tracking_signal "
            "from reporting.variance where series_id = 'total:all' order by period_start, horizon",
        )
        drivers = read_frame(
            engine, "select * from reporting.revenue_drivers where series_id = 'total:all'"
        ).to_dict(orient="records")
        accuracy = read_frame(
            engine,
            "select level, horizon, months, wape, bias, coverage_80, coverage_95 "
            "from reporting.forecast_accuracy order by level, horizon",
        )
        flags = read_frame(engine, "select count(*) as n from reporting.variance_flags")
        funnel = read_frame(
            engine,
            "select period_start, open_deals, expected_bookings, statistical_forecast, combined_forecast "
            "from reporting.funnel_forecast where series_id = 'total:all' order by period_start",
        )
        stages = read_frame(
            engine,
            "select stage, win_rate, conversion_to_next from reporting.funnel_stage_conversion "
            "where as_of_date = (select max(as_of_date) from reporting.funnel_stage_conversion)",
        )
    return {
        "funnel": funnel.to_dict(orient="records"),
        "funnel_stages": stages.to_dict(orient="records"),
        "total_drivers": drivers[0] if drivers else None,
        "rows_read": int(loads["rows_read"] or 0),
        "rows_loaded": int(loads["rows_loaded"] or 0),
        "rows_quarantined": int(loads["rows_quarantined"] or 0),
        "segments": dict(zip(segments["rfm_segment"], segments["customers"].astype(int), strict=True)),
        "total_variance": variance.to_dict(orient="records"),
        "accuracy": accuracy.to_dict(orient="records"),
        "flagged_latest": int(flags["n"].iloc[0]),
        "reports": sorted(str(p) for p in settings.reports_dir.glob("*/index.html")),
    }
