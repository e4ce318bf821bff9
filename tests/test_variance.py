from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from salespulse.config import Settings
from salespulse.pipeline import build_variance
from salespulse.warehouse import bulk_insert, create_schema, get_engine, read_frame


def _snapshot(as_of: str, run_id: str, created: str, period: str, horizon: int, forecast: float) -> dict:
    return {
        "as_of_date": date.fromisoformat(as_of),
        "run_id": run_id,
        "series_id": "region:EMEA",
        "level": "region",
        "member": "EMEA",
        "period_start": date.fromisoformat(period),
        "horizon": horizon,
        "model": "ets",
        "forecast": forecast,
        "lo80": forecast * 0.9,
        "hi80": forecast * 1.1,
        "lo95": forecast * 0.8,
        "hi95": forecast * 1.2,
        "created_at": datetime.fromisoformat(created),
    }


def test_variance_against_forecast_and_target_matches_a_hand_computation(
    warehouse_url: str, tmp_path: Path
) -> None:
    """EMEA, March 2026: actual 1,100; target 1,000.

    Snapshot of 2026-03-01 (h=1) was made twice: the later run (forecast 1,000) counts, not the earlier (500).
    Snapshot of 2026-01-01 (h=3) forecast 1,250. Snapshot of 2026-04-01 is not before the report: ignored.

        h=1: variance 1,100 - 1,000 = +100, +10.0%; inside 95% [800, 1,200]
        h=3: variance 1,100 - 1,250 = -150, -12.0%; inside 95% [1,000, 1,500]
        target: 1,100 - 1,000 = +100, +10.0%
    April 2026 is not complete on 2026-04-01: no variance row.
    """
    engine = get_engine(warehouse_url)
    create_schema(engine)
    series = pd.DataFrame(
        {
            "series_id": "region:EMEA",
            "level": "region",
            "member": "EMEA",
            "period_start": [date(2026, 2, 1), date(2026, 3, 1)],
            "revenue": [900.0, 1100.0],
            "orders": [9, 11],
            "customers": [5, 6],
            "as_of_date": date(2026, 4, 1),
            "run_id": "fc",
        }
    )
    snapshots = pd.DataFrame(
        [
            _snapshot("2026-03-01", "early", "2026-03-01T01:00:00", "2026-03-01", 1, 500.0),
            _snapshot("2026-03-01", "late", "2026-03-01T02:00:00", "2026-03-01", 1, 1000.0),
            _snapshot("2026-01-01", "jan", "2026-01-01T01:00:00", "2026-03-01", 3, 1250.0),
            _snapshot("2026-04-01", "apr", "2026-04-01T01:00:00", "2026-04-01", 1, 999.0),
        ]
    )
    targets = pd.DataFrame(
        {
            "period_start": [date(2026, 3, 1)],
            "level": "region",
            "member": "EMEA",
            "target_amount": 1000.0,
            "currency": "USD",
            "updated_at": datetime(2026, 1, 1),
            "_batch_id": "b",
            "_run_id": "r",
            "_loaded_at": datetime(2026, 1, 1),
        }
    )
    with engine.begin() as conn:
        bulk_insert(conn, "marts", "sales_series", series)
        bulk_insert(conn, "marts", "forecast_snapshot", snapshots)
        bulk_insert(conn, "core", "fct_sales_target", targets)
    settings = Settings(warehouse_url=warehouse_url, data_dir=tmp_path, export_dir=tmp_path)

    summary = build_variance(settings, date(2026, 4, 1), "variance-run")
    facts = read_frame(engine, "select * from marts.fct_variance order by horizon").set_index("horizon")
    assert summary["fact_rows"] == 2
    assert facts.index.tolist() == [1, 3]
    assert facts.loc[1, "forecast"] == 1000.0
    assert facts.loc[1, "variance_abs"] == pytest.approx(100.0)
    assert facts.loc[1, "variance_pct"] == pytest.approx(0.10)
    assert facts.loc[3, "variance_abs"] == pytest.approx(-150.0)
    assert facts.loc[3, "variance_pct"] == pytest.approx(-0.12)
    assert facts["target_variance_abs"].tolist() == pytest.approx([100.0, 100.0])
    assert facts["target_variance_pct"].tolist() == pytest.approx([0.10, 0.10])
    assert facts["within_interval_95"].astype(bool).tolist() == [True, True]
    assert str(facts.loc[3, "forecast_as_of"])[:10] == "2026-01-01"
    assert set(facts["run_id"]) == {"variance-run"}

    # Re-running the same report replaces its rows; it does not add to them.
    build_variance(settings, date(2026, 4, 1), "variance-rerun")
    again = read_frame(engine, "select run_id from marts.fct_variance")
    assert again["run_id"].tolist() == ["variance-rerun", "variance-rerun"]
