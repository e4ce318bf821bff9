"""One thread budget per task: the numeric libraries and DuckDB run with ``Settings.threads``, and the
segments step's output does not depend on how many threads it had."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn.ensemble  # noqa: F401  (loads scikit-learn's OpenMP runtime, as the segments step does)
from threadpoolctl import threadpool_info

from salespulse.config import Settings, default_threads
from salespulse.model import load_order
from salespulse.steps.base import warehouse
from salespulse.steps.ingest import ingest_entity
from salespulse.steps.prepare import prepare_warehouse
from salespulse.steps.segments import build_segments
from salespulse.threads import THREAD_VARIABLES, thread_budget
from salespulse.warehouse import get_engine, read_frame


def test_the_default_budget_is_the_cores_shared_by_the_tasks_a_worker_runs() -> None:
    cores = len(os.sched_getaffinity(0))
    assert default_threads({}) == cores
    assert default_threads({"AIRFLOW__CELERY__WORKER_CONCURRENCY": "2"}) == max(1, cores // 2)
    assert default_threads({"SALESPULSE_CONCURRENT_TASKS": str(cores * 4)}) == 1
    assert Settings.from_env({"SALESPULSE_THREADS": "3"}).threads == 3


def test_a_step_runs_every_library_and_duckdb_within_the_budget(tmp_path: Path) -> None:
    before = {v: os.environ.get(v) for v in THREAD_VARIABLES}
    settings = Settings(f"duckdb:///{tmp_path / 'w.duckdb'}", tmp_path, tmp_path, threads=1)
    with warehouse(settings) as engine:
        pools = threadpool_info()
        assert {"openmp", "blas"} <= {p["user_api"] for p in pools}, pools
        assert all(p["num_threads"] == 1 for p in pools), pools
        assert all(os.environ[v] == "1" for v in THREAD_VARIABLES)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("select current_setting('threads')").scalar() == 1
    assert {v: os.environ.get(v) for v in THREAD_VARIABLES} == before
    with thread_budget(2):
        assert all(p["num_threads"] == 2 for p in threadpool_info())


TABLES = ("customer_rfm", "customer_cluster_profile", "churn_model_evaluation", "churn_warnings")


@pytest.mark.chain
def test_segments_are_identical_with_one_thread_and_many(small_exports: Path, tmp_path: Path) -> None:
    """The churn model's gradient boosting and the clusters' k-means run on OpenMP: one thread or four,
    every score, segment, cluster and warning is the same."""
    first = tmp_path / "one" / "warehouse.duckdb"
    first.parent.mkdir()
    loaded = Settings(f"duckdb:///{first}", first.parent, small_exports)
    prepare_warehouse(loaded)
    as_of = date(2026, 11, 1)
    for entity in load_order():
        ingest_entity(loaded, entity.name, as_of, "load")
    second = tmp_path / "many" / "warehouse.duckdb"
    second.parent.mkdir()
    shutil.copy(first, second)

    results = {}
    for threads, path in ((1, first), (4, second)):
        settings = Settings(f"duckdb:///{path}", path.parent, small_exports, threads=threads)
        build_segments(settings, as_of, "segments")
        engine = get_engine(settings.warehouse_url)
        results[threads] = {
            table: read_frame(engine, f"select * from marts.{table}").drop(columns=["created_at"])
            for table in TABLES
        }
        engine.dispose()
    rfm = results[1]["customer_rfm"]
    assert len(rfm) > 300 and rfm["churn_probability"].nunique() > 100 and rfm["cluster"].nunique() > 2
    assert len(results[1]["churn_model_evaluation"]) > 0
    for table, one in results[1].items():
        many = results[4][table]
        key = [c for c in ("customer_id", "cluster", "metric") if c in one] or list(one.columns[:1])
        one, many = one.sort_values(key).reset_index(drop=True), many.sort_values(key).reset_index(drop=True)
        numbers = one.select_dtypes("number").columns
        pd.testing.assert_frame_equal(one.drop(columns=numbers), many.drop(columns=numbers), obj=table)
        np.testing.assert_allclose(
            one[numbers].astype(float), many[numbers].astype(float), rtol=1e-9, err_msg=table
        )
