"""One thread budget for a task: every numeric library it uses and DuckDB.

A Celery worker runs several tasks at once on one machine. Each library left to itself starts a thread per
core (OpenMP in scikit-learn's gradient boosting and k-means, BLAS under numpy and scipy, DuckDB's own
pool), so two tasks on a 2-core worker ran 8 busy threads on 2 cores: the segments step on 5.9k customers
took 197 s on a busy machine and 28 s with ``OMP_NUM_THREADS=1``. Every step runs inside
:func:`thread_budget` with ``Settings.threads`` (``SALESPULSE_THREADS``; by default the cores divided by
the tasks a worker runs at once, :func:`salespulse.config.default_threads`), and its DuckDB connections get
the same number (:func:`salespulse.warehouse.get_engine`).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

# Read by OpenMP and the BLAS libraries when they load, and inherited by processes the task starts.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@contextmanager
def thread_budget(threads: int) -> Generator[None]:
    """Run the block with at most ``threads`` threads in each numeric library: those already loaded are
    limited through threadpoolctl, those loaded later (and child processes) by the environment."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
