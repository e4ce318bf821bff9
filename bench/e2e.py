"""The whole chain at scale, timed stage by stage: ``make bench-e2e``.

For each size (customers) and engine: generate a CRM once (cached under ``.data/bench-e2e/``, Parquet
exports written in parts of 100,000 customers, so generating holds one part in memory), then run every
step for one as-of date in the order the DAGs run them, each stage in a process of its own so that its
peak memory (max RSS) is its own:

    ingest (prepare + every entity) -> segments -> forecast (prepare, partitions, publish) -> funnel
    -> variance -> report

and print stage x (seconds, rows, rows/s, peak RSS) with the total, next to the issue's goals. The figures
go to ``bench/results.json`` under ``e2e``. The steps are the ones the DAG tasks call, with the settings a
worker would have (``SALESPULSE_*`` from the environment, e.g. ``SALESPULSE_THREADS``).

    python -m bench.e2e [--customers 100000 1000000] [--engines duckdb postgres]
                        [--postgres-admin-url URL] [--postgres-max-customers 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".data" / "bench-e2e"
AS_OF = date(2026, 11, 1)  # the month after the generator's last day of activity
STAGES = ("ingest", "segments", "forecast", "funnel", "variance", "report")
# The goals on this 2-core machine (seconds, or rows/s where named).
GOALS = {"total_1000000": 300.0, "rss_gb_1000000": 4.0, "segments_1000000": 60.0}


def exports_for(customers: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """The cached exports of a generated CRM, generated on first use; and how long generating took."""
    folder = CACHE / f"crm-{customers}-{seed}-parts"
    done = folder / "generated.json"
    if done.exists():
        return folder, json.loads(done.read_text())
    stats = _in_process("generate", {"customers": customers, "seed": seed, "folder": str(folder)})
    done.write_text(json.dumps(stats))
    return folder, stats


def _in_process(stage: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Run one stage in a fresh Python process; its timing, rows and peak RSS."""
    command = [sys.executable, "-m", "bench.e2e", "--stage", stage, "--arguments", json.dumps(arguments)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_stage(stage: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The stage itself, in this process."""
    started = time.perf_counter()
    rows = _stage(stage, arguments)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"stage": stage, "seconds": round(seconds, 2), "rows": rows, "peak_rss_mb": round(peak_kb / 1024)}


def _stage(stage: str, arguments: dict[str, Any]) -> int:
    if stage == "generate":
        from salespulse.generator import write_crm_in_parts

        counts = write_crm_in_parts(Path(arguments["folder"]), arguments["customers"], arguments["seed"])
        return sum(counts.values())

    from salespulse.config import Settings
    from salespulse.model import load_order
    from salespulse.steps import forecast, funnel, ingest, prepare, report, segments, variance

    settings = replace(
        Settings.from_env(),
        warehouse_url=arguments["url"],
        data_dir=Path(arguments["data_dir"]),
        export_dir=Path(arguments["exports"]),
    )
    run_id = "bench-e2e"
    if stage == "ingest":
        prepare.prepare_warehouse(settings)
        read = 0
        for entity in load_order():
            result = ingest.ingest_entity(settings, entity.name, AS_OF, run_id)
            read += result.rows_read
        return read
    if stage == "segments":
        return segments.build_segments(settings, AS_OF, run_id).customers_scored
    if stage == "forecast":
        plan = forecast.prepare_forecasts(settings, AS_OF, run_id)
        for partition in plan.partitions:
            forecast.forecast_partition(settings, AS_OF, run_id, partition)
        forecast.publish_forecasts(settings, AS_OF, run_id)
        return plan.series
    if stage == "funnel":
        return funnel.build_funnel(settings, AS_OF, run_id).rows
    if stage == "variance":
        return variance.build_variance(settings, AS_OF, run_id).fact_rows
    if stage == "report":
        report.render_variance_report(settings, AS_OF, run_id)
        return 0
    raise ValueError(stage)


def run_chain(customers: int, engine: str, url: str, seed: int) -> dict[str, Any]:
    exports, generated = exports_for(customers, seed)
    data_dir = CACHE / f"run-{engine}-{customers}"
    data_dir.mkdir(parents=True, exist_ok=True)
    arguments = {"url": url, "data_dir": str(data_dir), "exports": str(exports)}
    stages = []
    for stage in STAGES:
        result = _in_process(stage, arguments)
        stages.append(result)
        print(_row(customers, engine, result), flush=True)
    total = sum(s["seconds"] for s in stages)
    peak = max(s["peak_rss_mb"] for s in stages)
    print(_row(customers, engine, {"stage": "total", "seconds": total, "rows": None, "peak_rss_mb": peak}))
    return {
        "customers": customers,
        "engine": engine,
        "threads": os.environ.get("SALESPULSE_THREADS", "default"),
        "generated": generated,
        "stages": stages,
        "total_seconds": round(total, 1),
        "peak_rss_mb": peak,
    }


def _row(customers: int, engine: str, s: dict[str, Any]) -> str:
    rows = s.get("rows")
    rate = f"{rows / s['seconds']:>12,.0f}" if rows and s["seconds"] else f"{'':>12}"
    shown = f"{rows:>12,}" if rows is not None else f"{'':>12}"
    return (
        f"| {customers:>9,} | {engine:<8} | {s['stage']:<9} | {s['seconds']:>8.1f} | {shown} | {rate} "
        f"| {s['peak_rss_mb']:>7,} |"
    )


def _wipe_duckdb(customers: int) -> str:
    path = CACHE / f"run-duckdb-{customers}" / "warehouse.duckdb"
    for stale in (path, path.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"duckdb:///{path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000])
    parser.add_argument(
        "--engines", nargs="+", choices=("duckdb", "postgres"), default=["duckdb", "postgres"]
    )
    parser.add_argument(
        "--postgres-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--postgres-max-customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--arguments", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        print(json.dumps(run_stage(args.stage, json.loads(args.arguments))))
        return 0

    from salespulse_cli.scheduler_topology import scratch_database

    print("| customers | engine   | stage     |  seconds |         rows |       rows/s | RSS, MB |")
    print("| --------: | -------- | --------- | -------: | -----------: | -----------: | ------: |")
    runs = []
    for customers in args.customers:
        for engine in args.engines:
            if engine == "duckdb":
                runs.append(run_chain(customers, engine, _wipe_duckdb(customers), args.seed))
            elif customers <= args.postgres_max_customers:
                with scratch_database(args.postgres_admin_url, "salespulse_bench") as url:
                    runs.append(run_chain(customers, engine, url, args.seed))
    for run in runs:
        goal = GOALS.get(f"total_{run['customers']}")
        if goal:
            print(
                f"{run['customers']:,} customers on {run['engine']}: {run['total_seconds']:.0f} s in all, "
                f"goal {goal:.0f} s ({run['total_seconds'] / goal:.2f}x the goal); peak RSS "
                f"{run['peak_rss_mb'] / 1024:.1f} GB, goal {GOALS['rss_gb_1000000']} GB"
            )
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    # Runs of other sizes or engines from earlier invocations stay; the same size and engine is replaced.
    fresh = {(r["customers"], r["engine"]) for r in runs}
    kept = [r for r in results.get("e2e", []) if (r["customers"], r["engine"]) not in fresh]
    results["e2e"] = sorted(kept + runs, key=lambda r: (r["customers"], r["engine"]))
    args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
