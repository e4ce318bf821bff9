"""The forecast step as the DAG runs it: partitions fanned out, staged, reconciled and published once."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from salespulse.config import Settings
from salespulse.forecast import complete_months, forecast_filled, forecast_series, partition_of
from salespulse.schema import create_schema
from salespulse.steps.forecast import (
    ForecastSummary,
    forecast_partition,
    prepare_forecasts,
    publish_forecasts,
)
from salespulse.warehouse import get_engine, read_frame
from tests.test_variance import EMEA, _load_core

AS_OF = date(2026, 7, 1)
# The series of the two hand-worked customers (tests/test_variance.py): two members in every level.
SERIES = {
    "total:all", "region:EMEA", "region:APAC", "segment:SMB", "segment:Enterprise", "category:Tools",
    "category:Garden", "sales_owner:王芳", "sales_owner:Ali",
}  # fmt: skip


@pytest.fixture
def core_engine(warehouse_url: str) -> Engine:
    """A warehouse with the two hand-worked customers' six months of orders in core."""
    engine = get_engine(warehouse_url)
    create_schema(engine)
    _load_core(engine, EMEA)
    return engine


def _settings(engine: Engine, tmp_path: Path, partitions: int) -> Settings:
    url = engine.url.render_as_string(hide_password=False)
    return Settings(
        warehouse_url=url,
        data_dir=tmp_path,
        export_dir=tmp_path,
        forecast_horizon=3,
        forecast_partitions=partitions,
    )


def run_forecast_steps(settings: Settings, as_of: date, run_id: str) -> ForecastSummary:
    """The three forecast steps in the order the DAG runs them: series, every partition, publish."""
    plan = prepare_forecasts(settings, as_of, run_id)
    for partition in plan.partitions:
        forecast_partition(settings, as_of, run_id, partition)
    return publish_forecasts(settings, as_of, run_id)


def test_partitions_publish_one_snapshot_of_each_series_own_forecast(
    core_engine: Engine, tmp_path: Path
) -> None:
    """The two hand-worked customers buy the same six amounts each: every member of every level has those
    six months of revenue, and the total twice them. Without reconciliation, the published snapshot of each
    series must be the forecast of its own numbers alone, made without the warehouse or the partitions
    (its intervals are calibrated with the partition's other series: tests/test_forecast.py)."""
    engine = core_engine
    settings = replace(_settings(engine, tmp_path, partitions=3), forecast_reconciliation="none")

    summary = run_forecast_steps(settings, AS_OF, "run-a")
    snapshot = read_frame(engine, "select * from marts.forecast_snapshot where run_id = 'run-a'")
    start = pd.Timestamp(AS_OF)
    member = forecast_series("m", np.array(EMEA), start, horizon=3, folds=3).forecast
    total = forecast_series("t", 2 * np.array(EMEA), start, horizon=3, folds=3).forecast
    assert summary.series == 9 and len(snapshot) == 27 and set(snapshot["series_id"]) == SERIES
    assert len({partition_of(s, 3) for s in SERIES}) >= 2  # the test spans several partitions
    for series_id, got in snapshot.groupby("series_id"):
        expected = total if series_id == "total:all" else member
        got = got.sort_values("horizon").reset_index(drop=True)
        assert pd.to_datetime(got["period_start"]).dt.strftime("%Y-%m").tolist() == [
            "2026-07",
            "2026-08",
            "2026-09",
        ]
        np.testing.assert_allclose(got["forecast"], expected["mean"], rtol=1e-9, err_msg=series_id)
        np.testing.assert_allclose(got["base_forecast"], expected["mean"], rtol=1e-9)
        # The intervals are calibrated on the backtest errors of the partition's series pooled, so they
        # are the series' own only in shape: around the forecast, the 95% around the 80%.
        assert (got["lo95"] <= got["lo80"]).all() and (got["lo80"] <= got["forecast"]).all()
        assert (got["forecast"] <= got["hi80"]).all() and (got["hi80"] <= got["hi95"]).all()
    assert read_frame(engine, "select count(*) as n from marts.forecast_staging")["n"].iloc[0] == 0


def test_a_level_with_one_member_is_not_forecast_and_the_log_says_why(
    warehouse_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One customer: each level's one member is the total again, so only the total is forecast."""
    engine = get_engine(warehouse_url)
    create_schema(engine)
    _load_core(engine, EMEA, customers=1)
    settings = _settings(engine, tmp_path, partitions=2)
    with caplog.at_level("INFO", logger="salespulse.steps.base"):
        summary = run_forecast_steps(settings, AS_OF, "run-one")
    assert summary.series == 1 and summary.rows == 3
    plan = prepare_forecasts(settings, AS_OF, "run-again")
    assert plan.single_member_levels == ("category", "region", "sales_owner", "segment")
    snapshot = read_frame(engine, "select distinct series_id from marts.forecast_snapshot")
    assert snapshot["series_id"].tolist() == ["total:all"]
    assert "level 'region' has one member ('EMEA'), whose series is the total's: not forecast" in caplog.text
    assert "level 'sales_owner' has one member ('王芳')" in caplog.text
    series = read_frame(engine, "select distinct level from marts.sales_series")
    assert series["level"].tolist() == ["total"]


def test_a_missing_partition_stops_the_publish_and_a_retried_partition_adds_nothing(
    core_engine: Engine, tmp_path: Path
) -> None:
    engine = core_engine
    settings = _settings(engine, tmp_path, partitions=4)
    plan = prepare_forecasts(settings, AS_OF, "run-b")
    assert list(plan.partitions) == sorted({partition_of(s, 4) for s in SERIES}) and len(plan.partitions) >= 2
    first, *rest = plan.partitions
    for partition in rest:
        forecast_partition(settings, AS_OF, "run-b", partition)
    with pytest.raises(RuntimeError, match="a partition is missing"):
        publish_forecasts(settings, AS_OF, "run-b")
    assert read_frame(engine, "select count(*) as n from marts.forecast_snapshot")["n"].iloc[0] == 0

    forecast_partition(settings, AS_OF, "run-b", first)
    forecast_partition(settings, AS_OF, "run-b", first)  # an Airflow retry of the same partition
    staged = read_frame(engine, "select series_id, partition_no from marts.forecast_staging")
    assert staged.groupby("series_id").size().eq(3).all() and staged["series_id"].nunique() == 9
    assert all(partition_of(s, 4) == p for s, p in staged.itertuples(index=False))
    backtests = read_frame(
        engine, "select series_id, model from marts.forecast_backtest where run_id = 'run-b'"
    )
    assert not backtests.duplicated().any()
    published = publish_forecasts(settings, AS_OF, "run-b")
    assert published.series == 9 and published.rows == 27


def test_a_process_pool_gives_the_same_forecasts_as_one_process() -> None:
    months = pd.date_range("2023-01-01", periods=30, freq="MS")
    rng = np.random.default_rng(5)
    series = pd.concat(
        [
            pd.DataFrame({"series_id": f"category:{k}", "level": "category", "member": str(k),
                          "period_start": months,
                          "revenue": 100 + 10 * np.sin(np.arange(30) / 2) + rng.normal(0, 4, 30)})
            for k in range(6)
        ]
    )  # fmt: skip
    filled = complete_months(series, date(2025, 7, 1))
    one, backtests_one, _ = forecast_filled(filled, date(2025, 7, 1), horizon=3, folds=2)
    two, backtests_two, _ = forecast_filled(filled, date(2025, 7, 1), horizon=3, folds=2, workers=2)
    pd.testing.assert_frame_equal(one, two)
    pd.testing.assert_frame_equal(backtests_one, backtests_two)


def test_series_are_built_monthly_and_weekly_for_configured_levels_and_crossings(
    core_engine: Engine, tmp_path: Path
) -> None:
    """EMEA's orders fall on the 15th of January to June 2026. As of Saturday 20 June, June and the week of
    15 June are incomplete and left out; weeks without an order are zero."""
    settings = replace(
        _settings(core_engine, tmp_path, partitions=2), forecast_levels=("region", "region*segment")
    )
    plan = prepare_forecasts(settings, date(2026, 6, 20), "run-series")
    series = read_frame(
        core_engine, "select * from marts.sales_series order by grain, series_id, period_start"
    )
    assert plan.series == 5
    ids = {"total:all", "region:EMEA", "region:APAC", "region*segment:EMEA | SMB"}
    ids |= {"region*segment:APAC | Enterprise"}
    for grain, expected_rows in (("month", 5), ("week", 22)):
        part = series[series["grain"] == grain]
        assert set(part["series_id"]) == ids
        for series_id, one in part.groupby("series_id"):
            assert len(one) == expected_rows
            customers = 2 if series_id == "total:all" else 1
            assert one["revenue"].sum() == pytest.approx(customers * sum(EMEA[:5]))
    monthly = series[(series["grain"] == "month") & (series["series_id"] == "region*segment:EMEA | SMB")]
    assert monthly["revenue"].tolist() == pytest.approx(EMEA[:5])
    weekly = series[(series["grain"] == "week") & (series["series_id"] == "total:all")]
    assert str(weekly["period_start"].iloc[0])[:10] == "2026-01-12"  # the Monday of 15 January
    assert str(weekly["period_start"].iloc[-1])[:10] == "2026-06-08"  # the last complete week
    assert (weekly["revenue"] > 0).sum() == 5
