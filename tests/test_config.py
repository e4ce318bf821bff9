from __future__ import annotations

from pathlib import Path

import pytest

from salespulse.config import Settings, sqlalchemy_url_from_airflow_uri
from salespulse.errors import ConfigurationError


def test_default_is_an_embedded_duckdb_file_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings.from_env({"SALESPULSE_DATA_DIR": str(tmp_path)})
    assert settings.warehouse_url == f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    assert settings.export_dir == tmp_path / "exports"
    assert settings.dialect == "duckdb"


def test_warehouse_url_wins_over_the_airflow_connection() -> None:
    settings = Settings.from_env(
        {
            "WAREHOUSE_URL": "postgresql+psycopg://a@h/db",
            "AIRFLOW_CONN_SALESPULSE_WAREHOUSE": "postgres://b@h/other",
        }
    )
    assert settings.warehouse_url == "postgresql+psycopg://a@h/db"
    assert settings.dialect == "postgresql"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("postgres://user:pw@db:5432/wh", "postgresql+psycopg://user:pw@db:5432/wh"),
        ("postgresql://user@db/wh", "postgresql+psycopg://user@db/wh"),
        ("postgresql+psycopg://user@db/wh", "postgresql+psycopg://user@db/wh"),
    ],
)
def test_airflow_connection_uri_becomes_a_sqlalchemy_url(uri: str, expected: str) -> None:
    assert sqlalchemy_url_from_airflow_uri(uri) == expected
    assert Settings.from_env({"AIRFLOW_CONN_SALESPULSE_WAREHOUSE": uri}).warehouse_url == expected


def test_unsupported_connection_scheme_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="supported"):
        sqlalchemy_url_from_airflow_uri("mysql://u@h/db")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SALESPULSE_SOURCE_FORMAT": "xlsx"}, "parquet"),
        ({"SALESPULSE_FORECAST_HORIZON": "six"}, "whole number"),
        ({"SALESPULSE_MAX_BATCH_ROWS": "1e6"}, "SALESPULSE_MAX_BATCH_ROWS must be a whole number"),
    ],
)
def test_bad_settings_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_incremental_load_settings() -> None:
    settings = Settings.from_env(
        {"SALESPULSE_WATERMARK_LOOKBACK_MINUTES": "90", "SALESPULSE_MAX_BATCH_ROWS": "250000"}
    )
    assert settings.watermark_lookback.total_seconds() == 90 * 60
    assert settings.max_batch_rows == 250_000
    assert Settings.from_env({}).max_batch_rows == 500_000


def test_variance_rules_come_from_the_environment(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.from_env(
        {
            "SALESPULSE_DATA_DIR": str(tmp_path),
            "SALESPULSE_VARIANCE_HORIZONS": "3, 1,1",
            "SALESPULSE_VARIANCE_WINDOW": "12",
            "SALESPULSE_TRACKING_Z_THRESHOLD": "3",
            "SALESPULSE_MATERIALITY_SHARE": "0.02",
            "SALESPULSE_MATERIALITY_AMOUNT": "5000",
        }
    )
    assert settings.variance_horizons == (1, 3)
    assert settings.variance_window == 12
    assert settings.tracking_z_threshold == 3.0
    assert settings.materiality_share == 0.02 and settings.materiality_amount == 5000.0
    assert settings.target_pct_threshold == 0.10
    assert settings.reports_dir == tmp_path.resolve() / "reports"
    with pytest.raises(ValueError, match="SALESPULSE_VARIANCE_HORIZONS must be whole numbers"):
        Settings.from_env({"SALESPULSE_VARIANCE_HORIZONS": "1,three"})
    for value in ("one percent", "1", "-0.1"):
        with pytest.raises(ConfigurationError, match="SALESPULSE_MATERIALITY_SHARE must be a share"):
            Settings.from_env({"SALESPULSE_MATERIALITY_SHARE": value})
    with pytest.raises(ConfigurationError, match="SALESPULSE_MATERIALITY_AMOUNT must be an amount of 0"):
        Settings.from_env({"SALESPULSE_MATERIALITY_AMOUNT": "-5"})
    with pytest.raises(ConfigurationError, match="SALESPULSE_TRACKING_Z_THRESHOLD must be a number above 0"):
        Settings.from_env({"SALESPULSE_TRACKING_Z_THRESHOLD": "0"})
    # A setting an earlier release read is named in a warning with what replaced it, not silently ignored.
    with caplog.at_level("WARNING", logger="salespulse.config"):
        Settings.from_env({"SALESPULSE_VARIANCE_PCT_THRESHOLD": "0.05"})
    assert "SALESPULSE_VARIANCE_PCT_THRESHOLD is no longer read" in caplog.text
    assert "SALESPULSE_MATERIALITY_SHARE" in caplog.text


def test_the_reconciliation_method_is_checked_when_read() -> None:
    assert Settings.from_env({}).forecast_reconciliation == "wls_var"
    assert Settings.from_env({"SALESPULSE_FORECAST_RECONCILIATION": "none"}).forecast_reconciliation == "none"
    with pytest.raises(ValueError, match="SALESPULSE_FORECAST_RECONCILIATION must be wls_var, ols or none"):
        Settings.from_env({"SALESPULSE_FORECAST_RECONCILIATION": "mint"})


def test_forecast_levels_and_crossings_come_from_the_environment() -> None:
    default = Settings.from_env({})
    assert default.forecast_levels == ("region", "segment", "category", "sales_owner")
    chosen = Settings.from_env({"SALESPULSE_FORECAST_LEVELS": " region, region * segment ,category,region"})
    assert chosen.forecast_levels == ("region", "region*segment", "category")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("region,country", "unknown attribute 'country'"),
        ("region*region", "crosses an attribute with itself"),
    ],
)
def test_bad_forecast_levels_name_the_setting_and_the_problem(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match="SALESPULSE_FORECAST_LEVELS") as error:
        Settings.from_env({"SALESPULSE_FORECAST_LEVELS": raw})
    assert message in str(error.value.__cause__)


def test_forecast_models_are_named_in_the_environment_and_checked() -> None:
    assert Settings.from_env({}).forecast_models == ("naive", "seasonal_naive", "ets_theta")
    chosen = Settings.from_env({"SALESPULSE_FORECAST_MODELS": "ets, arima, ets"})
    assert chosen.forecast_models == ("ets", "arima")
    with pytest.raises(ValueError, match="SALESPULSE_FORECAST_MODELS"):
        Settings.from_env({"SALESPULSE_FORECAST_MODELS": "ets,prophet"})
