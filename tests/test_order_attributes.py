"""Region and sales owner may come from the order: a customer who buys in several regions has each sale
counted where it was made, and the levels still add up to the orders' own totals. On DuckDB and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from salespulse.config import Settings
from salespulse.schema import create_schema
from salespulse.steps.forecast import prepare_forecasts
from salespulse.warehouse import bulk_insert, get_engine, read_frame

META = {"_batch_id": "b", "_run_id": "r", "_loaded_at": datetime(2026, 1, 1)}


def test_series_follow_the_orders_region_and_owner_where_the_order_has_them(
    warehouse_url: str, tmp_path: Path
) -> None:
    engine = get_engine(warehouse_url)
    create_schema(engine)
    customer = {"customer_id": "C1", "customer_name": "Lee 李", "country_code": "US", "region": "Americas"}
    orders = pd.DataFrame(
        [  # the customer lives in the Americas; two of the orders were made elsewhere, by other people
            {"order_id": "O1", "region": "EMEA", "sales_owner": "Ana", "amount": 100.0},
            {"order_id": "O2", "region": "APAC", "sales_owner": None, "amount": 40.0},
            {"order_id": "O3", "region": None, "sales_owner": None, "amount": 7.5},
        ]
    )
    with engine.begin() as conn:
        bulk_insert(
            conn,
            "core",
            "dim_customer",
            pd.DataFrame([{**customer, "sales_owner": "王芳", "signup_date": date(2025, 1, 1), **META}]),
        )
        bulk_insert(conn, "core", "dim_product", pd.DataFrame([{"product_id": "P1", "product_name": "Drill",
                                                                "category": "Tools", **META}]))  # fmt: skip
        bulk_insert(
            conn,
            "core",
            "fct_order",
            orders.drop(columns="amount").assign(
                customer_id="C1", order_date=date(2026, 3, 10), status="completed", currency="USD", **META
            ),
        )
        bulk_insert(
            conn,
            "core",
            "fct_order_line",
            orders[["order_id", "amount"]]
            .rename(columns={"amount": "unit_price"})
            .assign(line_number=1, product_id="P1", quantity=1, discount_pct=0.0, **META),
        )
    settings = Settings(
        warehouse_url=warehouse_url,
        data_dir=tmp_path,
        export_dir=tmp_path,
        forecast_levels=("region", "sales_owner"),
    )
    prepare_forecasts(settings, date(2026, 4, 1), "run")
    series = read_frame(
        engine,
        "select series_id, revenue from marts.sales_series where grain = 'month' and period_start = :m",
        {"m": date(2026, 3, 1)},
    ).set_index("series_id")["revenue"]
    assert series.to_dict() == pytest.approx(
        {
            "total:all": 147.5,
            "region:EMEA": 100.0,
            "region:APAC": 40.0,
            "region:Americas": 7.5,  # no region on the order: the customer's
            "sales_owner:Ana": 100.0,
            "sales_owner:王芳": 47.5,  # no owner on the order: the customer's
        }
    )
    engine.dispose()
