"""Run the real DAG chain on this machine, with no scheduler: ``python -m salespulse_airflow.local demo``.

It points Airflow at an Airflow home inside the repository (SQLite metadata, gitignored), migrates
that database, generates the demo CRM exports, and runs ``ingest_crm -> customer_segments ->
sales_forecast -> variance_report`` with ``dag.test()`` for a few consecutive monthly as-of dates,
so that later runs can compare actuals with the forecasts earlier runs made.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

import pandas as pd
from sqlalchemy.engine import make_url

from salespulse import generator
from salespulse.config import REPO_ROOT, Settings
from salespulse.generator import DEFAULT_END, generate_crm

CHAIN = ("ingest_crm", "customer_segments", "sales_forecast", "variance_report")


def airflow_env(root: Path = REPO_ROOT, home: Path | None = None) -> dict[str, str]:
    """Environment that makes Airflow use this repository's DAGs and plugins and a local home."""
    return {
        "AIRFLOW_HOME": str(home or root / ".airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
    }


def configure_airflow(home: Path | None = None) -> dict[str, str]:
    """Set the Airflow environment in this process (before Airflow is imported) and migrate its database."""
    env = airflow_env(home=home)
    for key, value in env.items():
        os.environ.setdefault(key, value)
    Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        env={**os.environ},
        stdout=subprocess.DEVNULL,
    )
    return env


def month_starts_before(end: date, months: int) -> list[date]:
    """``months`` consecutive first-of-month dates, the last one the month after ``end``."""
    year, month = end.year, end.month + 1
    if month == 13:
        year, month = year + 1, 1
    dates = []
    for _ in range(months):
        dates.append(date(year, month, 1))
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return sorted(dates)


def run_chain(as_of_dates: Sequence[date], dag_ids: Sequence[str] = CHAIN) -> dict[str, list[str]]:
    """Run each DAG of the chain for each as-of date with ``dag.test()``; fail loudly if any run fails."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    states: dict[str, list[str]] = {dag_id: [] for dag_id in dag_ids}
    for as_of in as_of_dates:
        logical = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
        for dag_id in dag_ids:
            dag_run = bag.dags[dag_id].test(logical_date=logical, run_conf={"as_of": as_of.isoformat()})
            state = str(getattr(dag_run.state, "value", dag_run.state))
            states[dag_id].append(state)
            if state != "success":
                raise RuntimeError(f"{dag_id} for as-of {as_of} ended in state {state!r}")
    return states


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
    print("            reporting.customer_bridge, reporting.data_quality_daily, reporting.ingestion_batches")
    print("  data dictionary: reporting.data_dictionary, docs/data_dictionary.md")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="salespulse_airflow.local", description=__doc__)
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

    from salespulse.pipeline import headline

    _print_summary(settings, headline(settings), time.monotonic() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
