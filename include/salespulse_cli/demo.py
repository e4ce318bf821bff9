"""Run the real DAG chain on this machine, with no scheduler: ``python -m salespulse_cli.demo``.

It points Airflow at an Airflow home inside the repository (SQLite metadata, gitignored), migrates
that database, generates the demo CRM exports, and runs ``ingest_crm -> customer_segments ->
sales_forecast -> variance_report`` with ``dag.test()`` for a few consecutive monthly as-of dates,
so that later runs can compare actuals with the forecasts earlier runs made.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pandas as pd
from sqlalchemy.engine import make_url

from salespulse import generator
from salespulse.config import Settings
from salespulse.generator import DEFAULT_END, generate_crm
from salespulse.steps.base import warehouse
from salespulse.warehouse import read_frame
from salespulse_cli.local_airflow import CHAIN, configure_airflow, month_starts_before, run_chain


def prepare_exports(settings: Settings, customers: int, seed: int, regenerate: bool) -> dict[str, int]:
    marker = settings.export_dir / "_generated.json"
    # The generator's own source is part of the key: changed code means regenerated files.
    source = Path(generator.__file__).read_bytes()
    wanted = {"customers": customers, "seed": seed, "generator_sha1": hashlib.sha1(source).hexdigest()}
    if not regenerate and marker.exists() and json.loads(marker.read_text()) == wanted:
        return {}
    dataset = generate_crm(n_customers=customers, seed=seed)
    dataset.write_exports(settings.export_dir)
    marker.write_text(json.dumps(wanted))
    return {name: len(frame) for name, frame in dataset.tables.items()}


def reset_demo_warehouse(settings: Settings) -> bool:
    """A new demo data set reuses the old one's keys, so it needs a new warehouse.

    Only the embedded DuckDB file inside the data folder is removed; any other warehouse is left alone
    with a warning, since it may hold data that is not the demo's.
    """
    url = make_url(settings.warehouse_url)
    database = Path(url.database or "")
    if url.get_backend_name() == "duckdb" and database.is_relative_to(settings.data_dir):
        for path in (database, database.with_name(database.name + ".wal")):
            path.unlink(missing_ok=True)
        return True
    print(f"warning: new demo data, but {url.render_as_string()} was not reset; use an empty database")
    return False


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


def _print_summary(settings: Settings, headline: Mapping[str, object], seconds: float) -> None:
    print()
    print(f"SalesPulse demo finished in {seconds:.0f} s")
    print(f"  warehouse : {settings.warehouse_url}")
    print(f"  exports   : {settings.export_dir}")
    docs = settings.data_docs_root / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    print(f"  Data Docs : file://{docs}")
    print(
        f"  rows read {headline['rows_read']:,}, loaded {headline['rows_loaded']:,}, "
        f"quarantined {headline['rows_quarantined']:,}"
    )
    print(f"  customers by RFM segment: {headline['segments']}")
    print("  total revenue, actual vs forecast vs target, per reported month and lead:")
    for row in headline["total_variance"]:  # type: ignore[attr-defined]
        target = "n/a" if pd.isna(row["target"]) else f"{row['target']:,.0f}"
        variance = "n/a" if pd.isna(row["variance_pct"]) else f"{row['variance_pct']:+.1%}"
        signal = "" if pd.isna(row["tracking_signal"]) else f"  tracking signal {row['tracking_signal']:+.1f}"
        print(
            f"    {str(row['period_start'])[:7]}  h={row['horizon']}  actual {row['actual']:,.0f}  "
            f"forecast {row['forecast']:,.0f}  target {target}  variance {variance}{signal}"
        )
    print("  forecast accuracy over the reported months (reporting.forecast_accuracy):")
    for row in headline["accuracy"]:  # type: ignore[attr-defined]
        print(
            f"    {row['level']:<11} h={row['horizon']}  months {row['months']}  WAPE {row['wape']:.1%}  "
            f"bias {row['bias']:+.1%}  in 80% {row['coverage_80']:.0%}  in 95% {row['coverage_95']:.0%}"
        )
    print(
        f"  flagged comparisons in the latest month: {headline['flagged_latest']} (reporting.variance_flags)"
    )
    d = cast(Mapping[str, Any] | None, headline.get("total_drivers"))
    if d:
        print(
            f"  why total revenue moved, {str(d['baseline_start'])[:7]} -> {str(d['period_start'])[:7]}: "
            f"{d['revenue_change']:+,.0f} = volume {d['volume_effect']:+,.0f} + mix {d['mix_effect']:+,.0f} "
            f"+ price {d['price_effect']:+,.0f}"
        )
    stages = cast(list[Mapping[str, Any]], headline.get("funnel_stages") or [])
    if stages:
        rates = ", ".join(f"{s['stage']} {s['win_rate']:.0%}" for s in stages if pd.notna(s["win_rate"]))
        print(f"  funnel win rate by stage, learned from closed deals: {rates}")
    for row in cast(list[Mapping[str, Any]], headline.get("funnel") or [])[:3]:
        combined = row["combined_forecast"]
        print(
            f"    {str(row['period_start'])[:7]}  open deals {row['open_deals']}  expected bookings "
            f"{row['expected_bookings']:,.0f}  statistical {row['statistical_forecast']:,.0f}  "
            f"combined {'n/a' if pd.isna(combined) else f'{combined:,.0f}'}"
        )
    reports = cast(list[str], headline["reports"])
    if reports:
        print(f"  variance report (static HTML + PNG): file://{reports[-1]}")
        print(f"    every month's report: file://{Path(reports[-1]).parent.parent / 'index.html'}")
    print("  BI views: reporting.customer_segments, reporting.segment_summary, reporting.segment_migration,")
    print("            reporting.forecast_vs_actual, reporting.variance, reporting.variance_flags,")
    print("            reporting.forecast_accuracy, reporting.revenue_drivers, reporting.funnel_forecast,")
    print("            reporting.funnel_stage_conversion, reporting.sales_cycle, reporting.funnel_accuracy,")
    print("            reporting.customer_bridge, reporting.quarterly_review, reporting.data_quality_daily,")
    print("            reporting.ingestion_batches")
    print("  data dictionary: reporting.data_dictionary, docs/data_dictionary.md")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="salespulse_cli.demo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="generate data and run the DAG chain for a few monthly as-of dates")
    demo.add_argument("--customers", type=int, default=3000)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--months", type=int, default=4, help="consecutive monthly as-of dates to run")
    demo.add_argument("--regenerate", action="store_true", help="write the export files even if present")
    args = parser.parse_args(argv)

    started = time.monotonic()
    configure_airflow()
    settings = Settings.from_env()
    written = prepare_exports(settings, args.customers, args.seed, args.regenerate)
    if written:
        print(f"generated CRM exports in {settings.export_dir}: {written}")
        if reset_demo_warehouse(settings):
            print(f"started a new demo warehouse for the new data: {settings.warehouse_url}")
    as_of_dates = month_starts_before(DEFAULT_END, args.months)
    print(f"running {' -> '.join(CHAIN)} for as-of dates {[d.isoformat() for d in as_of_dates]}")
    run_chain(as_of_dates)
    _print_summary(settings, headline(settings), time.monotonic() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
