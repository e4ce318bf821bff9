"""Benchmarks: ``make bench``. Figures, not pass/fail: these machines are shared and noisy, so
alternatives are measured in the same run and compared as ratios.

Each case runs in its own Python process so that its peak memory (max RSS) is its own.
Cases: the generator's speed; bulk loading order lines into DuckDB and PostgreSQL through each engine's
fast path next to a plain ``DataFrame.to_sql``; the whole incremental ingest of order lines from a Parquet
export (read, type, de-duplicate, gate, land, merge, audit) at 1x and 3x the lines; the quality gate alone;
BG/NBD; the segments snapshot.

    python -m bench.run [--customers 100000] [--postgres-url URL] [--out bench/results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

CASES = {
    "generate": "generate CRM data",
    "duckdb_fast": "order lines -> DuckDB (Arrow scan)",
    "duckdb_to_sql": "order lines -> DuckDB (DataFrame.to_sql, multi-row inserts)",
    "postgres_fast": "order lines -> PostgreSQL (COPY)",
    "postgres_to_sql": "order lines -> PostgreSQL (DataFrame.to_sql, multi-row inserts)",
    "ingest_duckdb": "ingest order lines: Parquet -> gate -> raw + core, DuckDB",
    "ingest_postgres": "ingest order lines: Parquet -> gate -> raw + core, PostgreSQL",
    "ingest_duckdb_3x": "ingest 3x the order lines: Parquet -> gate -> raw + core, DuckDB",
    "ingest_duckdb_8x": "ingest 8x the order lines: Parquet -> gate -> raw + core, DuckDB",
    "gate": "quality gate, order-lines suite (GX on pandas, in memory)",
    "gate_docs": "quality gate, order-lines suite (GX checkpoint + Data Docs)",
    "bgnbd_fit": "BG/NBD fit, 1M simulated customers (continuous times)",
    "segments": "segments snapshot: RFM, tiers, lifecycle, CLV, clusters, churn",
    "forecast_1proc": "forecast 200 monthly series with backtest, 1 process (1 BLAS thread)",
    "forecast_2proc": "forecast 200 monthly series with backtest, a pool of 2 processes",
    "forecast_m3": "forecast the M3 competition's 1,428 monthly series, h = 18, vs AutoETS and AutoTheta",
    "forecast_accuracy": "forecast 1,000 synthetic monthly series, 2 processes, vs AutoETS and AutoTheta",
    "forecast_online_retail": "forecast Online Retail weekly revenue series vs AutoETS and AutoTheta",
    "forecast_10k": "forecast 10,000 monthly series with backtest, 2 processes",
}
FORECAST_SERIES = 200
TO_SQL_ROWS = 100_000  # to_sql is orders of magnitude slower: measured on a slice, reported per row


def run_case(case: str, customers: int, url: str | None) -> dict:
    import pandas as pd

    from salespulse.generator import generate_crm
    from salespulse.schema import create_schema
    from salespulse.warehouse import bulk_insert, get_engine

    if case == "bgnbd_fit":
        return run_bgnbd_fit()
    if case in ("forecast_m3", "forecast_accuracy", "forecast_online_retail", "forecast_10k"):
        from bench import forecast_accuracy

        if case == "forecast_10k":
            return forecast_accuracy.run_throughput(10_000, workers=2)
        if case == "forecast_m3":
            accuracy = forecast_accuracy.run_m3(workers=2)
        elif case == "forecast_online_retail":
            accuracy = forecast_accuracy.run_online_retail()
        else:
            accuracy = forecast_accuracy.run_synthetic(1_000, workers=2)
        ours = accuracy["salespulse"]
        return {"rows": ours["series"], "seconds": ours["seconds"], "accuracy": accuracy}
    if case.startswith("forecast_"):
        return run_forecasts(FORECAST_SERIES, workers=int(case.removeprefix("forecast_")[0]))
    if case == "segments_prepare":
        return prepare_sales_lines(customers)
    if case == "segments":
        return run_segments(customers)
    if case.startswith("ingest_prepare"):
        return prepare_ingest_inputs(customers, copies=int(case.rsplit("_", 1)[1]))
    if case.startswith("ingest_setup"):
        assert url is not None
        return setup_ingest_warehouse(customers, int(case.rsplit("_", 1)[1]), url)
    if case.startswith("ingest"):
        copies = int(case.rsplit("_", 1)[1][:-1]) if case.endswith("x") else 1
        return run_ingest(customers, copies=copies, url=url)
    started = time.perf_counter()
    data = generate_crm(n_customers=customers, seed=1)
    generate_seconds = time.perf_counter() - started
    lines = data["order_lines"].assign(
        _batch_id="bench",
        _run_id="bench",
        _source="bench",
        _loaded_at=pd.Timestamp("2026-01-01"),
        _quarantined=False,
    )
    if case == "generate":
        return {"rows": sum(len(t) for t in data.tables.values()), "seconds": generate_seconds}
    if case.startswith("gate"):
        return run_gate(data, docs=case == "gate_docs")
    engine = get_engine(url or f"duckdb:///{tempfile.mkdtemp()}/bench.duckdb")
    create_schema(engine)
    if case.endswith("to_sql"):
        lines = lines.iloc[:TO_SQL_ROWS]
    started = time.perf_counter()
    with engine.begin() as conn:
        if case.endswith("fast"):
            bulk_insert(conn, "raw", "order_lines", lines)
        else:
            lines.to_sql(
                "order_lines",
                conn,
                schema="raw",
                if_exists="append",
                index=False,
                method="multi",
                chunksize=2_000,
            )
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"rows": len(lines), "seconds": seconds}


def run_gate(data, docs: bool) -> dict:
    """The whole order-lines suite over every generated line, as the ingest task runs it."""
    import pandas as pd

    from salespulse.generator import DEFAULT_END
    from salespulse.ingest import coerce_types
    from salespulse.model import get_entity
    from salespulse.quality import validate_batch

    entity = get_entity("order_lines")
    typed, _ = coerce_types(data["order_lines"], entity)
    parameters = {
        "as_of": pd.Timestamp(DEFAULT_END) + pd.Timedelta(days=1),
        "fresh_after": pd.Timestamp(DEFAULT_END) - pd.Timedelta(days=3),
    }
    docs_root = Path(tempfile.mkdtemp()) / "gx" if docs else None
    started = time.perf_counter()
    references = {
        "known_order_ids": set(data["orders"]["order_id"]),
        "known_product_ids": set(data["products"]["product_id"]),
    }
    gate = validate_batch("order_lines", typed, parameters, docs_root=docs_root, references=references)
    seconds = time.perf_counter() - started
    return {"rows": len(typed), "seconds": seconds, "quarantined": int(gate.quarantined.sum())}


def _ingest_folder(customers: int, copies: int) -> Path:
    return Path(tempfile.gettempdir()) / f"salespulse_bench_ingest_{customers}_x{copies}"


def prepare_ingest_inputs(customers: int, copies: int) -> dict:
    """A Parquet export of order lines (``copies`` times the generated ones, under new order ids), and the
    orders and products they refer to. Written by its own process, so its memory is not measured."""
    import pandas as pd

    from salespulse.generator import generate_crm

    data = generate_crm(n_customers=customers, seed=1)
    folder = _ingest_folder(customers, copies)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("order_lines", "orders"):
        frame = data[name]
        if copies > 1:
            frame = pd.concat([frame.assign(order_id=frame["order_id"] + f"-{k}") for k in range(copies)])
        frame.to_parquet(folder / f"{name}.parquet", index=False, row_group_size=250_000)
    data["products"].to_parquet(folder / "products.parquet", index=False)
    return {"rows": len(data["order_lines"]) * copies, "seconds": 0.0}


def setup_ingest_warehouse(customers: int, copies: int, url: str) -> dict:
    """Put the orders and products the lines refer to in core, so the referential rules have their keys.
    Its own process, so that holding them in pandas does not count in the ingest's peak memory."""
    import pandas as pd

    from salespulse.model import get_entity
    from salespulse.schema import create_schema
    from salespulse.warehouse import bulk_insert, get_engine

    folder = _ingest_folder(customers, copies)
    if not (folder / "order_lines.parquet").exists():
        prepare_ingest_inputs(customers, copies)
    engine = get_engine(url)
    create_schema(engine)
    metadata = {"_batch_id": "setup", "_run_id": "setup", "_loaded_at": pd.Timestamp("2026-01-01")}
    with engine.begin() as conn:
        for name in ("orders", "products"):
            entity = get_entity(name)
            frame = pd.read_parquet(folder / f"{name}.parquet")[entity.column_names].assign(**metadata)
            bulk_insert(conn, "core", entity.core_table, frame)
    engine.dispose()
    return {"rows": 0, "seconds": 0.0}


def run_ingest(customers: int, copies: int, url: str | None) -> dict:
    """The product path for one entity: ``ingest_from_source`` on a Parquet export of order lines, with the
    ``SALESPULSE_MAX_BATCH_ROWS`` of the environment (default: extracts over 500,000 rows load in parts)."""
    import datetime as dt

    from salespulse.config import Settings
    from salespulse.generator import DEFAULT_END
    from salespulse.ingest import ingest_from_source
    from salespulse.sources import FileSource
    from salespulse.warehouse import get_engine

    url = url or f"duckdb:///{tempfile.mkdtemp()}/bench.duckdb"
    command = [sys.executable, "-m", "bench.run", "--case", f"ingest_setup_{copies}", "--url", url]
    subprocess.run([*command, "--customers", str(customers)], check=True, capture_output=True)
    engine = get_engine(url)
    started = time.perf_counter()
    as_of = DEFAULT_END + dt.timedelta(days=1)
    folder = _ingest_folder(customers, copies)
    parts = Settings.from_env().max_batch_rows
    source = FileSource(folder)
    result = ingest_from_source(engine, source, "order_lines", as_of, "bench", True, max_batch_rows=parts)
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"rows": result.rows_read, "seconds": seconds, "rows_quarantined": result.rows_quarantined}


def _sales_lines_path(customers: int) -> Path:
    return Path(tempfile.gettempdir()) / f"salespulse_bench_sales_lines_{customers}.parquet"


def prepare_sales_lines(customers: int) -> dict:
    """Generate the CRM once and keep only what the segments step reads (its own memory is not measured)."""
    from salespulse.generator import generate_crm

    data = generate_crm(n_customers=customers, seed=1)
    lines = data["order_lines"].merge(data["orders"][["order_id", "customer_id", "order_date", "status"]])
    lines["net_amount"] = lines["quantity"] * lines["unit_price"] * (1 - lines["discount_pct"])
    columns = ["customer_id", "order_id", "order_date", "status", "net_amount"]
    lines[columns].to_parquet(_sales_lines_path(customers), index=False)
    return {"rows": len(lines), "seconds": 0.0}


def run_segments(customers: int) -> dict:
    """The whole segments snapshot over every order line of ``customers`` generated customers."""
    import datetime as dt

    import pandas as pd

    from salespulse.customer_snapshot import segment_snapshot
    from salespulse.generator import DEFAULT_END

    path = _sales_lines_path(customers)
    if not path.exists():
        command = [
            sys.executable,
            "-m",
            "bench.run",
            "--case",
            "segments_prepare",
            "--customers",
            str(customers),
        ]
        subprocess.run(command, check=True, capture_output=True)
    sales = pd.read_parquet(path)
    started = time.perf_counter()
    snapshot = segment_snapshot(sales, DEFAULT_END + dt.timedelta(days=1))
    return {
        "rows": len(sales),
        "seconds": time.perf_counter() - started,
        "customers": len(snapshot.customers),
    }


def run_forecasts(n_series: int, workers: int) -> dict:
    """``forecast_filled`` (every candidate backtested over 3 origins, the best refitted, 6 months ahead) on
    synthetic monthly series: 3 years of level x trend x season x noise, on scales from 1k to 1M."""
    from datetime import date

    import numpy as np
    import pandas as pd

    from salespulse.forecast import forecast_filled

    rng = np.random.default_rng(11)
    months = pd.date_range("2023-01-01", periods=36, freq="MS")
    t = np.arange(36)
    frames = []
    for k in range(n_series):
        level = 10 ** rng.uniform(3, 6)
        shape = 1 + rng.uniform(-0.01, 0.02) * t + rng.uniform(0, 0.3) * np.sin(2 * np.pi * (t + k) / 12)
        y = np.maximum(level * shape * rng.lognormal(0, rng.uniform(0.05, 0.3), 36), 0)
        frames.append(
            pd.DataFrame(
                {"series_id": f"s:{k}", "level": "s", "member": str(k), "period_start": months}
            ).assign(revenue=y)
        )
    filled = pd.concat(frames, ignore_index=True)
    started = time.perf_counter()
    snapshot, _, _ = forecast_filled(filled, date(2026, 1, 1), horizon=6, folds=3, workers=workers)
    seconds = time.perf_counter() - started
    return {"rows": int(snapshot["series_id"].nunique()), "seconds": seconds}


def run_bgnbd_fit(n: int = 1_000_000) -> dict:
    """Fit time alone, on customers simulated with known parameters (no two share a history)."""
    import numpy as np
    import pandas as pd

    from salespulse.clv import BetaGeoFitter, simulate_bgnbd

    horizon = np.random.default_rng(1).uniform(27, 104, size=n)
    times = simulate_bgnbd(n, horizon, seed=3, r=0.25, alpha=4.0, a=0.8, b=2.5)
    summary = pd.DataFrame(
        {
            "frequency": [len(t) for t in times],
            "recency": [t.max() if len(t) else 0.0 for t in times],
            "T": horizon,
        }
    )
    started = time.perf_counter()
    BetaGeoFitter().fit(summary)
    return {"rows": n, "seconds": time.perf_counter() - started}


def _postgres_database(admin_url: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"salespulse_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'create database "{name}"'))
    admin.dispose()
    return name, make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _drop_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'drop database if exists "{name}" with (force)'))
    admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--customers", type=int, default=100_000, help="100k customers give about 1.2M order lines"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "SALESPULSE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"))
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES), help="cases to run")
    internal = ["segments_prepare"] + [
        f"ingest_{step}_{n}" for step in ("prepare", "setup") for n in (1, 3, 8)
    ]
    parser.add_argument("--case", choices=[*sorted(CASES), *internal], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.case:  # child process: one case, result as JSON on stdout
        result = run_case(args.case, args.customers, args.url)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return 0

    results = []
    for case, label in CASES.items():
        if case not in args.cases:
            continue
        database = None
        url = None
        if "postgres" in case:
            database, url = _postgres_database(args.postgres_url)
        try:
            command = [sys.executable, "-m", "bench.run", "--case", case, "--customers", str(args.customers)]
            if url:
                command += ["--url", url]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            result = json.loads(output.strip().splitlines()[-1])
        finally:
            if database:
                _drop_database(args.postgres_url, database)
        result.update(case=case, label=label, rows_per_second=result["rows"] / result["seconds"])
        results.append(result)
        print(
            f"{label:<62} {result['rows']:>10,} rows {result['seconds']:>8.2f} s "
            f"{result['rows_per_second']:>12,.0f} rows/s  peak {result['peak_rss_mb']:>7,.0f} MB"
        )
    by_case = {r["case"]: r for r in results}
    for fast, slow in (
        ("duckdb_fast", "duckdb_to_sql"),
        ("postgres_fast", "postgres_to_sql"),
        ("gate", "gate_docs"),
        ("ingest_duckdb", "duckdb_to_sql"),
        ("ingest_postgres", "postgres_to_sql"),
        ("forecast_2proc", "forecast_1proc"),
    ):
        if fast in by_case and slow in by_case:
            ratio = by_case[fast]["rows_per_second"] / by_case[slow]["rows_per_second"]
            print(f"{CASES[fast]} vs {CASES[slow]}: {ratio:,.2f}x the rows/s in this run")
    for case in ("forecast_m3", "forecast_accuracy", "forecast_online_retail"):
        if case in by_case:
            print(f"{CASES[case]}: hold-out accuracy")
            print(accuracy_table(by_case[case]["accuracy"]))
    for scaled in ("ingest_duckdb_3x", "ingest_duckdb_8x"):
        if "ingest_duckdb" in by_case and scaled in by_case:
            one, many = by_case["ingest_duckdb"], by_case[scaled]
            growth = many["peak_rss_mb"] / one["peak_rss_mb"]
            times = many["rows"] / one["rows"]
            print(f"ingest peak memory, {times:.0f}x the rows vs 1x: {growth:,.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"customers": args.customers, "results": results}, indent=2))
    return 0


COVERAGE_COLUMNS = [
    f"coverage{level}{bucket}" for level in ("80", "95") for bucket in ("", "_h1-3", "_h4-12", "_h13+")
]


def accuracy_table(accuracy: dict) -> str:
    """One line per method: MASE (mean, median), sMAPE, WAPE, interval coverage overall and per horizon
    bucket (leads 1-3, 4-12, 13+), series per second."""
    heads = [c.removeprefix("coverage").replace("_h", " h") for c in COVERAGE_COLUMNS]
    lines = [
        f"  {'method':<15}{'MASE':>7}{'median':>7}{'sMAPE':>7}{'WAPE':>6}"
        + "".join(f"{h:>9}" for h in heads)
        + f"{'series/s':>9}"
    ]
    for method, figures in accuracy.items():
        cells = "".join(
            f"{figures[c]:>9.3f}" if figures.get(c) is not None else f"{'-':>9}" for c in COVERAGE_COLUMNS
        )
        lines.append(
            f"  {method:<15}{figures['mase_mean']:>7.3f}{figures['mase_median']:>7.3f}"
            f"{figures['smape']:>7.2f}{figures['wape']:>6.3f}{cells}"
            f"{figures.get('series_per_second') or 0:>9.1f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
