"""Business rules that more than one step applies, each defined once.

The warehouse applies the same rules in SQL: the net amount in ``core.order_line_amounts``
(``include/sql/core/create_views.sql``), which ``core.sales_lines`` and the quality baseline read.
``tests/test_rules.py`` checks that the two agree.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

COMPLETED = "completed"


def completed_before(sales: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """The rows of completed orders placed before ``as_of``: the purchases that segments, CLV and churn
    count (``status`` and ``order_date`` columns)."""
    return sales[(sales["status"] == COMPLETED) & (sales["order_date"] < pd.Timestamp(as_of))]


def net_amount(lines: pd.DataFrame) -> pd.Series:
    """An order line's revenue: quantity x unit price x (1 - discount), a missing discount being none."""
    discount = lines["discount_pct"].fillna(0.0)
    return (lines["quantity"] * lines["unit_price"] * (1 - discount)).astype("float64")
