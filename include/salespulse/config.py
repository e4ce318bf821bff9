"""Settings, read from the environment, with defaults that run on a laptop.

One place says what can be configured. The warehouse is a SQLAlchemy URL:
``WAREHOUSE_URL`` wins; otherwise an Airflow-style connection URI in
``AIRFLOW_CONN_SALESPULSE_WAREHOUSE`` is used; otherwise an embedded DuckDB file
under ``.data/`` in the repository.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = REPO_ROOT / "include" / "sql"
EXPECTATIONS_DIR = REPO_ROOT / "include" / "expectations"

WAREHOUSE_CONN_ENV = "AIRFLOW_CONN_SALESPULSE_WAREHOUSE"

# Airflow connection schemes -> SQLAlchemy driver names.
_SCHEME_TO_SQLALCHEMY = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "duckdb": "duckdb",
}


def sqlalchemy_url_from_airflow_uri(uri: str) -> str:
    """Turn an Airflow connection URI (``postgres://u:p@h:5432/db``) into a SQLAlchemy URL."""
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0]
    if "+" in parts.scheme:
        return uri
    if scheme not in _SCHEME_TO_SQLALCHEMY:
        raise ValueError(
            f"{WAREHOUSE_CONN_ENV} has scheme {parts.scheme!r}; supported: {sorted(_SCHEME_TO_SQLALCHEMY)}"
        )
    return urlunsplit(parts._replace(scheme=_SCHEME_TO_SQLALCHEMY[scheme]))


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from exc


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
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def data_docs_root(self) -> Path:
        """Where Great Expectations keeps validation results and builds the Data Docs site."""
        return self.data_dir / "gx"

    @property
    def dialect(self) -> str:
        return self.warehouse_url.split(":", 1)[0].split("+", 1)[0]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("SALESPULSE_DATA_DIR", str(REPO_ROOT / ".data"))).resolve()
        if env.get("WAREHOUSE_URL"):
            url = env["WAREHOUSE_URL"]
        elif env.get(WAREHOUSE_CONN_ENV):
            url = sqlalchemy_url_from_airflow_uri(env[WAREHOUSE_CONN_ENV])
        else:
            url = f"duckdb:///{data_dir / 'warehouse.duckdb'}"
        # Which source (files, sql, api, mapping) and its own settings are read by salespulse.sources.
        source_format = env.get("SALESPULSE_SOURCE_FORMAT", "parquet")
        if source_format not in ("parquet", "csv"):
            raise ValueError(f"SALESPULSE_SOURCE_FORMAT must be 'parquet' or 'csv', got {source_format!r}")
        return cls(
            warehouse_url=url,
            data_dir=data_dir,
            export_dir=Path(env.get("SALESPULSE_EXPORT_DIR", str(data_dir / "exports"))).resolve(),
            forecast_horizon=_env_int(env, "SALESPULSE_FORECAST_HORIZON", 6),
            backtest_folds=_env_int(env, "SALESPULSE_BACKTEST_FOLDS", 3),
            source_format=source_format,
            # Re-read this many minutes before the watermark, for sources whose rows commit late.
            watermark_lookback=timedelta(minutes=_env_int(env, "SALESPULSE_WATERMARK_LOOKBACK_MINUTES", 0)),
            # A larger extract is loaded in parts of at most this many rows, so memory stays bounded.
            max_batch_rows=_env_int(env, "SALESPULSE_MAX_BATCH_ROWS", 500_000),
            # PostgreSQL: the role that may read the reporting schema and nothing else.
            reporting_role=env.get("SALESPULSE_REPORTING_ROLE", "salespulse_reader"),
        )
