"""The quarterly review: actual vs the forecast made before the quarter began vs target, to date and closed,
against a hand computation; and the warehouse step and reporting view that keep each quarter's latest."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from salespulse.config import Settings
from salespulse.quarterly import forecast_origins, quarterly_review, review_quarters
from salespulse.schema import create_schema
from salespulse.steps.report import render_variance_report
from salespulse.steps.variance import build_variance
from salespulse.warehouse import bulk_insert, get_engine, read_frame
from tests.test_variance import EMEA, _load_core

MONTHS = pd.date_range("2026-01-01", periods=6, freq="MS")
ORDERS = [1, 1, 2, 1, 2, 1]


def _monthly() -> pd.DataFrame:
    return pd.DataFrame(
        {"series_id": "region:EMEA", "level": "region", "member": "EMEA", "period_start": MONTHS,
         "revenue": EMEA, "orders": ORDERS}
    )  # fmt: skip


def _snapshot(as_of: str, values: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"series_id": "region:EMEA", "level": "region", "member": "EMEA", "period_start": pd.Timestamp(m),
             "as_of_date": pd.Timestamp(as_of), "forecast": v}
            for m, v in values.items()
        ]
    )  # fmt: skip


def _snapshots() -> pd.DataFrame:
    return pd.concat(
        [
            _snapshot("2026-01-01", {"2026-01-01": 90.0, "2026-02-01": 100.0, "2026-03-01": 110.0}),
            # Made before Q2 too, but not the latest before it: not the one judged.
            _snapshot("2026-03-01", {"2026-04-01": 500.0, "2026-05-01": 500.0, "2026-06-01": 500.0}),
            _snapshot("2026-04-01", {"2026-04-01": 100.0, "2026-05-01": 110.0, "2026-06-01": 120.0}),
            # Made inside Q2, after it began: never the quarter's forecast.
            _snapshot("2026-05-01", {"2026-05-01": 900.0, "2026-06-01": 900.0}),
        ]
    )


def _targets() -> pd.DataFrame:
    return pd.DataFrame(
        {"level": "region", "member": "EMEA", "period_start": pd.to_datetime(["2026-04-01", "2026-05-01"]),
         "target_amount": [100.0, 100.0]}
    )  # fmt: skip


def test_quarters_and_their_forecast_origins() -> None:
    assert review_quarters(date(2026, 5, 1)) == [
        (pd.Timestamp("2026-01-01"), 3),
        (pd.Timestamp("2026-04-01"), 2),
    ]
    assert review_quarters(date(2026, 3, 1)) == [
        (pd.Timestamp("2025-10-01"), 3),
        (pd.Timestamp("2026-01-01"), 3),
    ]
    quarters = [pd.Timestamp("2026-01-01"), pd.Timestamp("2026-04-01")]
    origins = forecast_origins([date(2026, 3, 1), date(2026, 4, 1), date(2026, 5, 1)], quarters)
    assert origins == {pd.Timestamp("2026-04-01"): date(2026, 4, 1)}  # nothing was made before Q1


def test_every_number_matches_a_hand_computation() -> None:
    """Report month May 2026 (EMEA revenue Jan-Jun 100, 110, 120, 100, 130, 85; orders 1, 1, 2, 1, 2, 1).

    Q1, closed: actual 330 vs 300 forecast on 1 Jan (+30, +10%); no targets; Q4 2025 sold nothing, so all
    of the change (+330) is orders.
    Q2 to date (April, May): actual 230 from 3 orders vs 210 forecast on 1 April (+20, +9.5%), 330 for the
    whole quarter; targets 100 + 100 = 200 (+30, +15%), none for June so no quarter target. Against January
    and February (210 from 2 orders, 105 each): orders +1 * 105 = +105; revenue per order 76.67 vs 105 over
    3 orders = -85; together +20.
    """
    review = quarterly_review(_monthly(), _snapshots(), _targets(), date(2026, 5, 1)).set_index("quarter")
    assert list(review.index) == ["2026-Q1", "2026-Q2"]
    q1, q2 = review.loc["2026-Q1"], review.loc["2026-Q2"]
    assert q1["status"] == "closed" and q1["months_closed"] == 3
    assert q1["forecast_as_of"] == pd.Timestamp("2026-01-01")
    assert q1["actual"] == 330.0 and q1["forecast"] == 300.0 and q1["forecast_quarter"] == 300.0
    assert q1["variance_abs"] == pytest.approx(30.0) and q1["variance_pct"] == pytest.approx(0.10)
    assert pd.isna(q1["target"]) and pd.isna(q1["target_variance_pct"])
    assert q1["previous_actual"] == 0.0 and q1["orders_effect"] == 330.0 and q1["order_value_effect"] == 0.0

    assert q2["status"] == "to date" and q2["months_closed"] == 2
    assert q2["forecast_as_of"] == pd.Timestamp("2026-04-01")
    assert q2["actual"] == 230.0 and q2["orders"] == 3
    assert q2["forecast"] == 210.0 and q2["forecast_quarter"] == 330.0
    assert q2["variance_pct"] == pytest.approx(20 / 210)
    assert q2["target"] == 200.0 and pd.isna(q2["target_quarter"])
    assert q2["target_variance_abs"] == pytest.approx(30.0) and q2["target_variance_pct"] == pytest.approx(
        0.15
    )
    assert q2["previous_actual"] == 210.0 and q2["previous_orders"] == 2
    assert q2["orders_effect"] == pytest.approx(105.0) and q2["order_value_effect"] == pytest.approx(-85.0)


def test_a_snapshot_short_of_the_quarter_leaves_its_forecast_empty() -> None:
    """A snapshot covering April only cannot say what was forecast for April and May."""
    short = _snapshot("2026-04-01", {"2026-04-01": 100.0})
    review = quarterly_review(_monthly(), short, _targets(), date(2026, 5, 1))
    assert review["quarter"].tolist() == ["2026-Q2"]
    assert pd.isna(review["forecast"].iloc[0]) and pd.isna(review["variance_abs"].iloc[0])
    assert review["actual"].iloc[0] == 230.0


def test_the_step_stores_both_quarters_and_the_view_keeps_each_quarters_latest(
    warehouse_url: str, tmp_path: Path
) -> None:
    """The two hand-worked customers (tests/test_variance.py), a snapshot on 1 April for Q2. May's report
    stores Q2 to date; June's stores it closed; the view shows the closed one, and the report has the page."""
    engine = get_engine(warehouse_url)
    create_schema(engine)
    _load_core(engine, EMEA)
    rows = []
    for series_id in ("total:all", "region:EMEA", "region:APAC", "sales_owner:王芳"):
        level, member = series_id.split(":")
        for month, value in (("2026-04-01", 100.0), ("2026-05-01", 110.0), ("2026-06-01", 120.0)):
            scale = 2.0 if level == "total" else 1.0
            rows.append({"series_id": series_id, "level": level, "member": member,
                         "period_start": date.fromisoformat(month), "horizon": int(month[6]) - 3,
                         "model": "ets", "forecast": scale * value, "base_forecast": scale * value,
                         "lo80": 0.0, "hi80": 999.0, "lo95": 0.0, "hi95": 999.0,
                         "as_of_date": date(2026, 4, 1), "run_id": "fc",
                         "created_at": pd.Timestamp("2026-04-01")})  # fmt: skip
    with engine.begin() as conn:
        bulk_insert(conn, "marts", "forecast_snapshot", pd.DataFrame(rows))
    settings = Settings(warehouse_url=warehouse_url, data_dir=tmp_path, export_dir=tmp_path)

    build_variance(settings, date(2026, 6, 1), "may")
    may = read_frame(engine, "select * from reporting.quarterly_review order by series_id")
    assert set(may["quarter"]) == {"2026-Q2"} and set(may["status"]) == {"to date"}
    emea = may.set_index("series_id").loc["region:EMEA"]
    assert emea["actual"] == pytest.approx(230.0) and emea["forecast"] == pytest.approx(210.0)
    # EMEA's only target is June's: April and May have none, so the quarter so far has no target.
    assert emea["months_closed"] == 2 and pd.isna(emea["target"])

    build_variance(settings, date(2026, 7, 1), "june")
    view = read_frame(engine, "select * from reporting.quarterly_review order by series_id")
    assert len(view) == 4 and set(view["status"]) == {"closed"}
    total = view.set_index("series_id").loc["total:all"]
    assert total["actual"] == pytest.approx(2 * (100 + 130 + 85))
    assert total["forecast"] == pytest.approx(660.0)
    assert view["target_quarter"].isna().all()  # only June has targets
    stored = read_frame(engine, "select count(*) as n from marts.fct_quarterly_review")["n"].iloc[0]
    assert stored == 8  # May's to-date rows are kept beside June's closed ones

    rendered = render_variance_report(settings, date(2026, 7, 1), "report")
    page = (Path(rendered.report).parent / "quarterly.html").read_text(encoding="utf-8")
    assert "Quarterly review: 2026-Q2 (closed)" in page and "Sales owner" in page and "王芳" in page
    assert "quarterly.html" in Path(rendered.report).read_text(encoding="utf-8")
