"""The shared periods and business rules, and the SQL form of those rules agreeing with them."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from salespulse.periods import last_complete_month, last_complete_week, month_start, months_before, week_start
from salespulse.rules import completed_before, net_amount
from salespulse.schema import create_schema
from salespulse.warehouse import bulk_insert, get_engine, read_frame


@pytest.mark.parametrize(
    ("as_of", "month", "last_month", "last_week"),
    [
        (date(2026, 11, 1), date(2026, 11, 1), date(2026, 10, 1), date(2026, 10, 19)),  # a Sunday
        (date(2026, 1, 15), date(2026, 1, 1), date(2025, 12, 1), date(2026, 1, 5)),  # across a year
        (date(2024, 3, 31), date(2024, 3, 1), date(2024, 2, 1), date(2024, 3, 18)),
    ],
)
def test_periods_of_an_as_of_date(as_of: date, month: date, last_month: date, last_week: date) -> None:
    assert month_start(as_of) == month
    assert last_complete_month(as_of) == last_month
    assert last_complete_week(as_of) == last_week
    assert week_start(as_of).weekday() == 0 and week_start(as_of) <= as_of < week_start(as_of) + pd.Timedelta(
        days=7
    )
    assert months_before(as_of, 12) == date(month.year - 1, month.month, 1)


def test_months_before_crosses_years() -> None:
    assert months_before(date(2026, 1, 15), 13) == date(2024, 12, 1)
    assert months_before(date(2026, 3, 31), 2) == date(2026, 1, 1)


def test_completed_orders_before_a_date_leave_out_other_statuses_and_the_date_itself() -> None:
    sales = pd.DataFrame(
        {
            "order_id": ["a", "b", "c", "d"],
            "status": ["completed", "returned", "completed", "completed"],
            "order_date": pd.to_datetime(["2026-03-31", "2026-03-01", "2026-04-01", "2026-04-02"]),
        }
    )
    assert completed_before(sales, date(2026, 4, 1))["order_id"].tolist() == ["a"]
    assert completed_before(sales, date(2026, 4, 2))["order_id"].tolist() == ["a", "c"]


@pytest.mark.parametrize("engine_name", ["duckdb", "postgres"])
def test_the_net_amount_in_pandas_and_in_the_warehouse_agree(
    engine_name: str, request: pytest.FixtureRequest
) -> None:
    """``salespulse.rules.net_amount`` checks batches before they load; ``core.order_line_amounts`` is the
    same rule in SQL for everything loaded. Hand-worked: 3 x 10 at 10% off is 27; no discount is none."""
    url = request.getfixturevalue(f"{engine_name}_url")
    lines = pd.DataFrame(
        {
            "order_id": ["O1", "O1", "O2", "O3"],
            "line_number": [1, 2, 1, 1],
            "product_id": ["P1", "P2", "P1", "P2"],
            "quantity": [3, 1, 2, 7],
            "unit_price": [10.0, 19.99, 0.5, 1234.56],
            "discount_pct": [0.1, np.nan, 0.0, 0.25],
            "_batch_id": "b",
            "_run_id": "r",
            "_loaded_at": datetime(2026, 1, 1),
        }
    )
    expected = [27.0, 19.99, 1.0, 7 * 1234.56 * 0.75]
    np.testing.assert_allclose(net_amount(lines), expected, rtol=1e-12)
    engine = get_engine(url)
    create_schema(engine)
    with engine.begin() as conn:
        bulk_insert(conn, "core", "fct_order_line", lines)
    stored = read_frame(
        engine, "select net_amount from core.order_line_amounts order by order_id, line_number"
    )
    np.testing.assert_allclose(stored["net_amount"].astype(float), expected, rtol=1e-12)
    engine.dispose()
