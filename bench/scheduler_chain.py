"""The whole DAG chain under a real scheduler (Celery), backfilled month by month, timed per date.

    .venv/bin/python -m bench.scheduler_chain --mapping online_retail --from 2011-01-01 --to 2011-12-01
    .venv/bin/python -m bench.scheduler_chain --customers 2000 --from 2026-08-01 --to 2026-11-01

Starts the topology of ``tests/test_celery_scheduler.py`` (API server, scheduler, dag-processor, triggerer,
a Celery worker; PostgreSQL for the metadata and the warehouse, each a scratch database dropped at the end;
Redis as the broker), runs ``airflow backfill create`` of ``ingest_crm`` over the monthly range, and waits
until the asset events have run the chain once per month. Prints, as JSON, the start-up time, each DAG
run's duration, the wall time, and what landed in the warehouse.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import date
from pathlib import Path

from salespulse.generator import generate_crm
from salespulse.warehouse import get_engine, read_frame
from salespulse_cli.local_airflow import CHAIN
from salespulse_cli.scheduler_topology import Topology, scratch_database

ADMIN_URL = os.environ.get(
    "SALESPULSE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("SALESPULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LANDED = {
    "batches": "select count(*) as n from audit.load_batches",
    "orders": "select count(*) as n from core.fct_order",
    "quarantined": "select count(*) as n from quality.quarantine",
    "rfm_snapshots": "select count(distinct snapshot_date) as n from marts.customer_rfm",
    "forecast_snapshots": "select count(distinct as_of_date) as n from marts.forecast_snapshot",
    "variance_rows": "select count(*) as n from reporting.variance",
}


def month_starts(first: date, last: date) -> list[date]:
    months, current = [], date(first.year, first.month, 1)
    while current <= last:
        months.append(current)
        current = date(current.year + current.month // 12, current.month % 12 + 1, 1)
    return months


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mapping", help="a mapping file or a shipped mapping's name; else a generated CRM")
    parser.add_argument("--customers", type=int, default=500, help="customers of the generated CRM")
    parser.add_argument("--from", dest="first", type=date.fromisoformat, required=True)
    parser.add_argument("--to", dest="last", type=date.fromisoformat, required=True)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    months = month_starts(args.first, args.last)

    home = Path(tempfile.mkdtemp(prefix="salespulse-scheduler-"))
    settings = {
        "SALESPULSE_START_DATE": "2099-01-01",  # no run of the scheduler's own: only the backfill's
        "SALESPULSE_INGEST_SCHEDULE": "@monthly",
        "SALESPULSE_DATA_DIR": str(home / "data"),
        "SALESPULSE_FORECAST_PARTITIONS": str(args.partitions),
    }
    if args.mapping:
        settings |= {"SALESPULSE_SOURCE": "mapping", "SALESPULSE_MAPPING": args.mapping}
    else:
        crm = generate_crm(n_customers=args.customers, seed=7, end=date(months[-1].year, months[-1].month, 1))
        crm.write_exports(home / "exports")
        settings["SALESPULSE_EXPORT_DIR"] = str(home / "exports")

    with (
        scratch_database(ADMIN_URL, "salespulse_bench") as metadata_url,
        scratch_database(ADMIN_URL, "salespulse_bench") as warehouse_url,
    ):
        started = time.monotonic()
        topology = Topology.create(home, metadata_url, warehouse_url, settings, REDIS_URL)
        with topology.running(CHAIN) as metadata:
            topology.backfill("ingest_crm", months[0], months[-1])
            runs = topology.wait_for_runs(metadata, CHAIN, len(months), timeout=600 * len(months))
        wall = time.monotonic() - started
        warehouse = get_engine(warehouse_url)
        landed = {name: int(read_frame(warehouse, sql)["n"].iloc[0]) for name, sql in LANDED.items()}
        warehouse.dispose()

    runs["seconds"] = (runs["end_date"] - runs["start_date"]).dt.total_seconds().round(1)
    print(
        json.dumps(
            {
                "source": args.mapping or f"generated, {args.customers} customers",
                "months": [m.isoformat() for m in months],
                "startup_s": round(topology.timings["ready_s"], 1),
                "wall_s": round(wall, 1),
                "run_seconds": runs.groupby("dag_id")["seconds"].apply(list).to_dict(),
                # From each ingest's start to the end of the variance report it led to.
                "chain_seconds": [
                    round((end - start).total_seconds(), 1)
                    for start, end in zip(
                        runs.loc[runs["dag_id"] == CHAIN[0], "start_date"],
                        runs.loc[runs["dag_id"] == CHAIN[-1], "end_date"],
                        strict=True,
                    )
                ],
                "run_states": runs.groupby("dag_id")["state"].apply(lambda s: sorted(set(s))).to_dict(),
                "landed": landed,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
