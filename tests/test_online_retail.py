"""The real UCI Online Retail data (CC BY 4.0), onboarded by a mapping file alone
(include/mappings/online_retail.yaml) and pushed through the quality gate.

It is read from ../shared/data/online_retail/, never copied into the project. Where the file is missing the
test is skipped on a laptop and fails in CI.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from salespulse.ingest import LoadResult, ingest_from_source
from salespulse.mapping import load_mapping
from salespulse.model import get_entity
from salespulse.schema import create_schema
from salespulse.sources import MappedSource, Window
from salespulse.warehouse import get_engine, read_frame
from tests.helpers import extract_frame

pytestmark = pytest.mark.real_data
AS_OF = date(2011, 12, 10)
MAPPING = load_mapping("online_retail")
DATA = MAPPING.folder / MAPPING.tables["invoice_lines"].file
ENTITIES = ("customers", "products", "orders", "order_lines")


@pytest.fixture(scope="module")
def source() -> pd.DataFrame:
    if not DATA.exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the Online Retail data set is required in CI: {DATA} is missing")
        pytest.skip(f"{DATA} not found")
    return pd.read_parquet(DATA)


@pytest.fixture(scope="module")
def loaded(source: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):
    engine = get_engine(f"duckdb:///{tmp_path_factory.mktemp('online_retail') / 'w.duckdb'}")
    create_schema(engine)
    mapped = MappedSource(MAPPING.path)
    results = {name: ingest_from_source(engine, mapped, name, AS_OF, "online-retail") for name in ENTITIES}
    return engine, results


def test_the_mapping_yields_one_model_row_per_source_thing(source: pd.DataFrame) -> None:
    window = Window(until=pd.Timestamp(AS_OF))
    mapped = {name: extract_frame(MappedSource(MAPPING.path), get_entity(name), window) for name in ENTITIES}
    assert len(mapped["order_lines"]) == len(source) == 541_909
    assert len(mapped["orders"]) == source["InvoiceNo"].nunique()
    assert len(mapped["customers"]) == source["CustomerID"].nunique()
    assert len(mapped["products"]) == source["StockCode"].nunique()
    orders = mapped["orders"].set_index("order_id")
    assert (orders.loc[orders.index.str.startswith("C"), "status"] == "returned").all()
    assert (orders["currency"] == "GBP").all()
    assert mapped["customers"]["country_code"].notna().all()
    norway = source.loc[source["Country"] == "Norway", "CustomerID"].iloc[0]
    customer = mapped["customers"].set_index("customer_id").loc[f"C{int(norway)}"]
    assert (customer["country_code"], customer["region"]) == ("NO", "Europe")  # not YAML's false
    products = mapped["products"].set_index("product_id")
    assert (products.loc[["POST", "BANK CHARGES"], "category"] == "Non-product").all()
    assert products.loc[products.index.str.startswith("gift_"), "category"].eq("Gift vouchers").all()
    # Line numbers follow the file's order within each invoice.
    lines = mapped["order_lines"]
    first = lines[lines["order_id"] == source["InvoiceNo"].iloc[0]].sort_values("line_number")
    assert first["product_id"].tolist() == source.loc[source["InvoiceNo"] == "536365", "StockCode"].tolist()


def test_loads_through_the_gate_and_reconciles_with_the_source(source: pd.DataFrame, loaded) -> None:
    engine, results = loaded
    lines: LoadResult = results["order_lines"]
    assert lines.rows_read == 541_909
    for result in results.values():
        assert result.rows_read == result.rows_loaded + result.rows_quarantined + result.rows_duplicate
    assert {r.batch_id.split("@")[0]: r.extra_columns for r in results.values()} == dict.fromkeys(
        ENTITIES, ()
    )
    audit = read_frame(engine, "select distinct source from audit.load_batches")
    assert audit["source"].tolist() == ["mapping:online_retail"]

    # Invoices without a customer are quarantined by name, and so are their lines.
    no_customer = source.loc[source["CustomerID"].isna(), "InvoiceNo"].nunique()
    rules = read_frame(engine, "select entity, failed_rules from quality.quarantine")
    orders_held = rules[rules.entity == "orders"].failed_rules
    assert orders_held.str.contains("customer_id_present").sum() == no_customer
    assert orders_held.str.contains("order_status_known").sum() == 3  # the "A" bad-debt adjustments
    assert results["orders"].rows_quarantined == no_customer

    # A line exported twice counts once: the copies are quarantined by name, and counted.
    same = ["InvoiceNo", "StockCode", "Quantity", "UnitPrice", "InvoiceDate"]
    copies = int(source.duplicated(same).sum())
    lines_held = rules[rules.entity == "order_lines"].failed_rules
    assert copies > 5_000 and lines_held.str.contains("exact_duplicate").sum() == copies

    # Completed revenue in the warehouse equals the source's, computed straight from the invoice lines.
    unique = source.drop_duplicates(same)
    sales = unique[
        unique["CustomerID"].notna()
        & ~unique["InvoiceNo"].str[0].isin(["C", "A"])
        & (unique["Quantity"] >= 1)
        & (unique["UnitPrice"] >= 0)
    ]
    expected = float((sales["Quantity"] * sales["UnitPrice"]).sum())
    actual = read_frame(
        engine, "select sum(net_amount) as revenue from core.sales_lines where status = 'completed'"
    )
    assert actual["revenue"].iloc[0] == pytest.approx(expected, rel=1e-9)


def test_an_incremental_run_on_the_real_data_reads_only_the_new_month(source: pd.DataFrame, tmp_path: Path):
    engine = get_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    create_schema(engine)
    mapped = MappedSource(MAPPING.path)
    for name in ENTITIES:
        ingest_from_source(engine, mapped, name, date(2011, 11, 1), "november")
    december = {name: ingest_from_source(engine, mapped, name, AS_OF, "december") for name in ENTITIES}
    late = source["InvoiceDate"] >= pd.Timestamp(december["order_lines"].watermark_before)
    assert december["order_lines"].rows_read == late.sum() < len(source) / 4  # November and 9 days
    # Nothing lost across the two runs: every invoice line is in core or held in quarantine.
    accounted = read_frame(
        engine,
        "select count(*) as n from (select order_id || '#' || cast(line_number as varchar) as k "
        "from core.fct_order_line union select record_key from quality.quarantine "
        "where entity = 'order_lines') as keys",
    )
    assert accounted.n.iloc[0] == len(source)
