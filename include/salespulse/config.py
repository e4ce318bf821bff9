"""Settings, read from the environment, with defaults that run on a laptop.

One place says what can be configured, and :meth:`Settings.from_env` is the one place that reads the
environment: the entry points (Airflow tasks, the demo, benchmarks) build a :class:`Settings` and pass it
down, so nothing below them looks at ``os.environ``. The warehouse is a SQLAlchemy URL: ``WAREHOUSE_URL``
wins; otherwise an Airflow-style connection URI in ``AIRFLOW_CONN_SALESPULSE_WAREHOUSE`` is used;
otherwise an embedded DuckDB file under ``.data/`` in the repository (in the working directory when the
package is installed rather than run from a checkout).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from importlib.resources import files
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from salespulse.errors import ConfigurationError

log = logging.getLogger(__name__)

# Settings an earlier release read, and what replaced them: set, they are named in a warning, not obeyed.
RETIRED_SETTINGS = {
    "SALESPULSE_VARIANCE_PCT_THRESHOLD": "a variance is flagged when the actual is outside the interval the "
    "forecast stated, or SALESPULSE_TRACKING_Z_THRESHOLD is crossed, and the miss is material "
    "(SALESPULSE_MATERIALITY_SHARE, SALESPULSE_MATERIALITY_AMOUNT)",
    "SALESPULSE_TRACKING_SIGNAL_THRESHOLD": "the tracking flag reads tracking_z, the window's error in "
    "units of the stated intervals; set SALESPULSE_TRACKING_Z_THRESHOLD",
}


def shipped_folder(package: str) -> Path:
    """The folder of files shipped with SalesPulse (``salespulse.sql``, ``salespulse.expectations``,
    ``salespulse.mappings``): read through ``importlib.resources``, so it is inside site-packages when the
    package is installed (``pip install .``, the image) and ``include/<folder>`` in a checkout."""
    try:
        return Path(str(files(package)))
    except ModuleNotFoundError:
        # A checkout put on PYTHONPATH without installing: the folders sit beside the package.
        return Path(__file__).resolve().parents[1] / package.rsplit(".", 1)[-1]


# The checkout the package runs from, if any: the local Airflow runner, the demo, the generated docs and
# the default data folder use it. An installed package keeps its data in the working directory instead.
REPO_ROOT = Path(__file__).resolve().parents[2]
IN_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "dags").is_dir()
SQL_DIR = shipped_folder("salespulse.sql")
EXPECTATIONS_DIR = shipped_folder("salespulse.expectations")
MAPPINGS_DIR = shipped_folder("salespulse.mappings")

WAREHOUSE_CONN_ENV = "AIRFLOW_CONN_SALESPULSE_WAREHOUSE"
# How forecasts are made coherent (salespulse.reconcile), checked here when the settings are read.
RECONCILIATION_METHODS = ("wls_var", "ols", "none")
# Candidate forecasting models (salespulse.forecast.candidate_factory) and the ones tried by default.
# ARIMA's order search costs about 7 statsmodels fits per series, so ARIMA is there to opt in to.
FORECAST_MODELS = (
    "naive", "seasonal_naive", "ets", "ets_damped", "theta", "ets_theta", "arima", "sarima", "drivers",
)  # fmt: skip
DEFAULT_FORECAST_MODELS = ("naive", "seasonal_naive", "ets_theta")
# Customer and product attributes a level of the sales hierarchy can split revenue by (marts.sales_by_level).
HIERARCHY_ATTRIBUTES = ("region", "segment", "category", "sales_owner")
DEFAULT_FORECAST_LEVELS = ("region", "segment", "category", "sales_owner")
# Where CRM data comes from (salespulse.sources): export files, a CRM database, a CRM API, or a mapping file.
SOURCE_KINDS = ("files", "sql", "api", "mapping")

# Airflow connection schemes -> SQLAlchemy driver names.
_SCHEME_TO_SQLALCHEMY = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "duckdb": "duckdb",
}


def sqlalchemy_url_from_airflow_uri(uri: str) -> str:
    """Turn an Airflow connection URI (``postgres://user:pw@host:5432/db``) into a SQLAlchemy URL."""
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0]
    if "+" in parts.scheme:
        return uri
    if scheme not in _SCHEME_TO_SQLALCHEMY:
        raise ConfigurationError(
            f"{WAREHOUSE_CONN_ENV} has scheme {parts.scheme!r}; supported: {sorted(_SCHEME_TO_SQLALCHEMY)}"
        )
    return urlunsplit(parts._replace(scheme=_SCHEME_TO_SQLALCHEMY[scheme]))


T = TypeVar("T")


def _env_parsed(env: Mapping[str, str], name: str, default: T, parse: Callable[[str], T], what: str) -> T:
    """The variable parsed, the default when unset or empty, or an error naming the variable."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be {what}, got {raw!r}") from exc


def _number_in(low: float, high: float = math.inf, high_open: bool = False) -> Callable[[str], float]:
    """A parser of a number from ``low`` up to ``high`` (excluded when ``high_open``); ValueError outside."""

    def parse(raw: str) -> float:
        value = float(raw)
        if not (low <= value and (value < high if high_open else value <= high)):
            raise ValueError(f"{value} is out of range")
        return value

    return parse


def default_threads(env: Mapping[str, str]) -> int:
    """A task's share of the machine: the cores this process may run on, divided by the tasks a worker
    runs at once (``SALESPULSE_CONCURRENT_TASKS``, else the Celery worker's concurrency, else 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    concurrent = env.get("SALESPULSE_CONCURRENT_TASKS") or env.get("AIRFLOW__CELERY__WORKER_CONCURRENCY")
    try:
        tasks = max(1, int(concurrent)) if concurrent else 1
    except ValueError as exc:
        raise ConfigurationError(f"tasks at once: a whole number, got {concurrent!r}") from exc
    return max(1, cores // tasks)


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    return _env_parsed(env, name, default, int, "a whole number")


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    return _env_parsed(env, name, default, float, "a number")


def parse_levels(raw: str) -> tuple[str, ...]:
    """``"region, segment, region*category"`` -> the levels below the total, each one attribute or a crossing
    of several (joined by ``*``, in the order given). Unknown attributes and repeats are refused."""
    levels: list[str] = []
    for part in raw.split(","):
        attributes = [a.strip() for a in part.split("*") if a.strip()]
        if not attributes:
            continue
        unknown = [a for a in attributes if a not in HIERARCHY_ATTRIBUTES]
        if unknown:
            raise ConfigurationError(
                f"unknown attribute {unknown[0]!r} (known: {', '.join(HIERARCHY_ATTRIBUTES)})"
            )
        if len(set(attributes)) != len(attributes):
            raise ConfigurationError(f"{part.strip()!r} crosses an attribute with itself")
        level = "*".join(attributes)
        if level not in levels:
            levels.append(level)
    return tuple(levels)


def parse_models(raw: str) -> tuple[str, ...]:
    """``"ets, arima"`` -> the candidate models, in order, each known."""
    models = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    unknown = [m for m in models if m not in FORECAST_MODELS]
    if unknown or not models:
        raise ConfigurationError(
            f"unknown model {unknown[0] if unknown else raw!r} (known: {', '.join(FORECAST_MODELS)})"
        )
    return models


def _env_ints(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    def parse(raw: str) -> tuple[int, ...]:
        return tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))

    return _env_parsed(env, name, default, parse, "whole numbers separated by commas")


@dataclass(frozen=True)
class SourceSettings:
    """Which CRM source to read and how to reach it (``salespulse.sources.source_from_settings``).

    The export folder and preferred file format of the ``files`` source are the :class:`Settings`'
    ``export_dir`` and ``source_format``. Connection URIs carry credentials, so they stay out of ``repr``.
    """

    kind: str = "files"
    csv_delimiter: str | None = None
    crm_db_uri: str | None = field(default=None, repr=False)
    crm_db_schema: str = "crm"
    crm_api_uri: str | None = field(default=None, repr=False)
    mapping: str | None = None
    source_dir: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SourceSettings:
        kind = env.get("SALESPULSE_SOURCE") or ("mapping" if env.get("SALESPULSE_MAPPING") else "files")
        if kind not in SOURCE_KINDS:
            raise ConfigurationError(f"SALESPULSE_SOURCE must be one of {SOURCE_KINDS}, got {kind!r}")
        source_dir = env.get("SALESPULSE_SOURCE_DIR")
        return cls(
            kind=kind,
            csv_delimiter=env.get("SALESPULSE_CSV_DELIMITER") or None,
            crm_db_uri=env.get("AIRFLOW_CONN_SALESPULSE_CRM_DB") or None,
            crm_db_schema=env.get("SALESPULSE_CRM_DB_SCHEMA", "crm"),
            crm_api_uri=env.get("AIRFLOW_CONN_SALESPULSE_CRM_API") or None,
            mapping=env.get("SALESPULSE_MAPPING") or None,
            source_dir=Path(source_dir) if source_dir else None,
        )


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline needs to know about where things are and how to behave."""

    warehouse_url: str
    data_dir: Path
    export_dir: Path
    forecast_horizon: int = 6
    backtest_folds: int = 3
    season_length: int = 12
    source_format: str = "parquet"
    watermark_lookback: timedelta = timedelta(0)
    max_batch_rows: int = 500_000
    reporting_role: str = "salespulse_reader"
    pii_role: str = "salespulse_pii_reader"
    forecast_reconciliation: str = "wls_var"
    forecast_partitions: int = 4
    forecast_workers: int = 1
    forecast_levels: tuple[str, ...] = DEFAULT_FORECAST_LEVELS
    forecast_models: tuple[str, ...] = DEFAULT_FORECAST_MODELS
    funnel_months: int = 2
    funnel_min_deals: int = 20
    funnel_lookback_days: int = 365
    variance_horizons: tuple[int, ...] = (1, 3)
    variance_window: int = 6
    tracking_z_threshold: float = 2.576
    target_pct_threshold: float = 0.10
    materiality_share: float = 0.01
    materiality_amount: float = 0.0
    source: SourceSettings = field(default_factory=SourceSettings)
    duckdb_memory_limit: str = "1GB"
    duckdb_lock_timeout: float = 600.0
    threads: int = 1

    @property
    def data_docs_root(self) -> Path:
        """Where Great Expectations keeps validation results and builds the Data Docs site."""
        return self.data_dir / "gx"

    @property
    def reports_dir(self) -> Path:
        """Where the variance report writes one folder per reported month (static HTML and PNG)."""
        return self.data_dir / "reports"

    @property
    def dialect(self) -> str:
        return self.warehouse_url.split(":", 1)[0].split("+", 1)[0]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        default_data_dir = (REPO_ROOT if IN_CHECKOUT else Path.cwd()) / ".data"
        data_dir = Path(env.get("SALESPULSE_DATA_DIR") or default_data_dir).resolve()
        if env.get("WAREHOUSE_URL"):
            url = env["WAREHOUSE_URL"]
        elif env.get(WAREHOUSE_CONN_ENV):
            url = sqlalchemy_url_from_airflow_uri(env[WAREHOUSE_CONN_ENV])
        else:
            url = f"duckdb:///{data_dir / 'warehouse.duckdb'}"
        # Which source (files, sql, api, mapping) and its own settings are read by salespulse.sources.
        source_format = env.get("SALESPULSE_SOURCE_FORMAT", "parquet")
        if source_format not in ("parquet", "csv"):
            raise ConfigurationError(
                f"SALESPULSE_SOURCE_FORMAT must be 'parquet' or 'csv', got {source_format!r}"
            )
        for retired, instead in RETIRED_SETTINGS.items():
            if env.get(retired):
                log.warning("%s is no longer read: %s", retired, instead)
        reconciliation = env.get("SALESPULSE_FORECAST_RECONCILIATION", "wls_var")
        if reconciliation not in RECONCILIATION_METHODS:
            raise ConfigurationError(
                f"SALESPULSE_FORECAST_RECONCILIATION must be wls_var, ols or none, got {reconciliation!r}"
            )
        return cls(
            warehouse_url=url,
            data_dir=data_dir,
            export_dir=Path(env.get("SALESPULSE_EXPORT_DIR", str(data_dir / "exports"))).resolve(),
            forecast_horizon=_env_int(env, "SALESPULSE_FORECAST_HORIZON", 6),
            backtest_folds=_env_int(env, "SALESPULSE_BACKTEST_FOLDS", 3),
            source_format=source_format,
            # How the levels' forecasts are made to add up to the total: wls_var, ols or none.
            forecast_reconciliation=reconciliation,
            # Series are split into this many partitions, one mapped Airflow task each (spread over Celery
            # workers), and each task forecasts its series on this many processes.
            forecast_partitions=max(1, _env_int(env, "SALESPULSE_FORECAST_PARTITIONS", 4)),
            forecast_workers=max(1, _env_int(env, "SALESPULSE_FORECAST_WORKERS", 1)),
            # The levels below the total that get series, forecasts and variance: attributes, or crossings
            # such as region*segment.
            forecast_levels=_env_parsed(
                env,
                "SALESPULSE_FORECAST_LEVELS",
                DEFAULT_FORECAST_LEVELS,
                parse_levels,
                f"levels separated by commas, each one of {', '.join(HIERARCHY_ATTRIBUTES)} or a crossing "
                "such as region*segment",
            ),
            # The candidate models each series' backtest chooses from.
            forecast_models=_env_parsed(
                env,
                "SALESPULSE_FORECAST_MODELS",
                DEFAULT_FORECAST_MODELS,
                parse_models,
                f"model names separated by commas, from {', '.join(FORECAST_MODELS)}",
            ),
            # Funnel forecast: months where the pipeline adjusts the statistical forecast, the closed deals a
            # stage needs before its learned win rate replaces the reps' probability, and the look-back.
            funnel_months=_env_int(env, "SALESPULSE_FUNNEL_MONTHS", 2),
            funnel_min_deals=_env_int(env, "SALESPULSE_FUNNEL_MIN_DEALS", 20),
            funnel_lookback_days=_env_int(env, "SALESPULSE_FUNNEL_LOOKBACK_DAYS", 365),
            # Re-read this many minutes before the watermark, for sources whose rows commit late.
            watermark_lookback=timedelta(minutes=_env_int(env, "SALESPULSE_WATERMARK_LOOKBACK_MINUTES", 0)),
            # A larger extract is loaded in parts of at most this many rows, so memory stays bounded.
            max_batch_rows=_env_int(env, "SALESPULSE_MAX_BATCH_ROWS", 500_000),
            # PostgreSQL: the role that may read the reporting schema and nothing else.
            reporting_role=env.get("SALESPULSE_REPORTING_ROLE", "salespulse_reader"),
            # PostgreSQL: the role that may read reporting_pii (names, emails, phone numbers).
            pii_role=env.get("SALESPULSE_PII_ROLE", "salespulse_pii_reader"),
            # Variance report: the leads compared (months ahead), the rolling window, and the flag limits
            # (salespulse.variance): the tracking z beyond which errors lean one way, the target miss, and
            # the smallest miss worth flagging, as a share of the month's total and as an amount.
            variance_horizons=_env_ints(env, "SALESPULSE_VARIANCE_HORIZONS", (1, 3)),
            variance_window=_env_int(env, "SALESPULSE_VARIANCE_WINDOW", 6),
            tracking_z_threshold=_env_parsed(
                env, "SALESPULSE_TRACKING_Z_THRESHOLD", 2.576, _number_in(1e-9), "a number above 0"
            ),
            target_pct_threshold=_env_parsed(
                env, "SALESPULSE_TARGET_PCT_THRESHOLD", 0.10, _number_in(1e-9), "a number above 0"
            ),
            materiality_share=_env_parsed(
                env,
                "SALESPULSE_MATERIALITY_SHARE",
                0.01,
                _number_in(0.0, 1.0, high_open=True),
                "a share of the month's total from 0 up to (not including) 1",
            ),
            materiality_amount=_env_parsed(
                env, "SALESPULSE_MATERIALITY_AMOUNT", 0.0, _number_in(0.0), "an amount of 0 or more"
            ),
            source=SourceSettings.from_env(env),
            # An embedded DuckDB shares the worker's memory: its buffer pool is capped, and spills past it.
            duckdb_memory_limit=env.get("SALESPULSE_DUCKDB_MEMORY_LIMIT") or "1GB",
            # One writing process at a time: a task waits this long (seconds) for another to release it.
            duckdb_lock_timeout=_env_float(env, "SALESPULSE_DUCKDB_LOCK_TIMEOUT", 600.0),
            # The threads one task may use, in every numeric library and in DuckDB (salespulse.threads).
            threads=max(1, _env_int(env, "SALESPULSE_THREADS", default_threads(env))),
        )
