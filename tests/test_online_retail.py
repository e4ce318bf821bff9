"""The real UCI Online Retail data (CC BY 4.0), mapped onto the model and pushed through the quality gate.

It is read from ../shared/data/online_retail/, never copied into the project. Where the file is missing the
test is skipped on a laptop and fails in CI.
"""

from __future__ import annotations

import os
from datetime import date

import pandas as pd
import pytest

from salespulse.ingest import load_entity
from salespulse.online_retail import DEFAULT_PATH, load_online_retail
from salespulse.warehouse import create_schema, get_engine, read_frame

pytestmark = pytest.mark.real_data
AS_OF = date(2011, 12, 10)


@pytest.fixture(scope="module")
def source() -> pd.DataFrame:
    if not DEFAULT_PATH.exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the Online Retail data set is required in CI: {DEFAULT_PATH} is missing")
        pytest.skip(f"{DEFAULT_PATH} not found")
    return pd.read_parquet(DEFAULT_PATH)


@pytest.fixture(scope="module")
def mapped(source: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return load_online_retail(DEFAULT_PATH)


def test_every_invoice_line_maps_to_one_order_line(
    source: pd.DataFrame, mapped: dict[str, pd.DataFrame]
) -> None:
    assert len(mapped["order_lines"]) == len(source) == 541_909
    assert len(mapped["orders"]) == source["InvoiceNo"].nunique()
    assert len(mapped["customers"]) == source["CustomerID"].nunique()
    assert len(mapped["products"]) == source["StockCode"].nunique()
    credit_notes = mapped["orders"]["order_id"].str.startswith("C")
    assert (mapped["orders"].loc[credit_notes, "status"] == "returned").all()
    assert mapped["customers"]["country_code"].notna().all()
    assert (
        mapped["products"].set_index("product_id").loc[["POST", "BANK CHARGES"], "category"] == "Non-product"
    ).all()


def test_loads_through_the_gate_and_reconciles_with_the_source(
    source: pd.DataFrame, mapped: dict[str, pd.DataFrame], duckdb_url: str
) -> None:
    engine = get_engine(duckdb_url)
    create_schema(engine)
    results = {
        name: load_entity(engine, name, mapped[name], AS_OF, "online-retail", "online_retail")
        for name in ("customers", "products", "orders", "order_lines")
    }
    lines = results["order_lines"]
    assert lines.rows_read == 541_909
    assert lines.rows_read == lines.rows_loaded + lines.rows_quarantined + lines.rows_duplicate

    # Invoices without a customer are quarantined by name, and so are their lines.
    no_customer = source.loc[source["CustomerID"].isna(), "InvoiceNo"].nunique()
    rules = read_frame(engine, "select entity, failed_rules from quality.quarantine")
    orders_held = rules[rules.entity == "orders"].failed_rules
    assert orders_held.str.contains("customer_id_present").sum() == no_customer
    assert orders_held.str.contains("order_status_known").sum() == 3  # the "A" bad-debt adjustments
    assert results["orders"].rows_quarantined == no_customer

    # Completed revenue in the warehouse equals the source's, computed straight from the invoice lines.
    sales = source[
        source["CustomerID"].notna()
        & ~source["InvoiceNo"].str[0].isin(["C", "A"])
        & (source["Quantity"] >= 1)
        & (source["UnitPrice"] >= 0)
    ]
    expected = float((sales["Quantity"] * sales["UnitPrice"]).sum())
    actual = read_frame(
        engine, "select sum(net_amount) as revenue from core.sales_lines where status = 'completed'"
    )
    assert actual["revenue"].iloc[0] == pytest.approx(expected, rel=1e-9)
