from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine

from salespulse import ingest
from salespulse.generator import CrmDataset
from salespulse.ingest import (
    SourceSchemaError,
    coerce_types,
    deduplicate,
    load_entity,
)
from salespulse.model import ENTITIES, get_entity
from salespulse.quality import DataQualityError
from salespulse.schema import create_schema
from salespulse.sources import FileSource, Window
from salespulse.warehouse import get_engine, read_frame
from tests.helpers import extract_frame, ingest_exports

AS_OF = date(2026, 11, 1)


def _engine(url: str) -> Engine:
    engine = get_engine(url)
    create_schema(engine)
    return engine


def _checksum(engine: Engine) -> dict[str, object]:
    """Row counts and content sums of every core table, independent of run ids and load times."""
    out: dict[str, object] = {}
    for entity in ENTITIES:
        frame = read_frame(engine, f"select {', '.join(entity.column_names)} from core.{entity.core_table}")
        frame = frame.sort_values(list(entity.key)).reset_index(drop=True)
        out[entity.name] = (len(frame), pd.util.hash_pandas_object(frame.astype(str), index=False).sum())
    return out


def test_every_defect_kind_is_caught_by_the_right_rule(
    small_crm: CrmDataset, small_exports: Path, duckdb_url: str
):
    """The generator's injected defects, each found under the rule that names it.

    Bad inputs tried: missing email, malformed email, duplicate customer (same email, new id),
    negative unit price, order dated in the future, order of an unknown customer, win probability
    typed as a percentage.
    """
    engine = _engine(duckdb_url)
    results = {r.entity: r for r in ingest_exports(engine, small_exports, AS_OF, "run-1")}
    quarantine = read_frame(engine, "select entity, record_key, failed_rules from quality.quarantine")
    rules = quarantine.set_index(["entity", "record_key"])["failed_rules"]
    defects = small_crm.defects

    for order_id in defects["future_order_date"]:
        assert "order_date_not_in_future" in rules[("orders", order_id)]
    for order_id in defects["unknown_customer"]:
        assert "order_customer_known" in rules[("orders", order_id)]
    for line_key in defects["negative_amount"]:
        assert "unit_price_not_negative" in rules[("order_lines", line_key)]
    for opportunity_id in defects["probability_as_percent"]:
        assert rules[("opportunities", opportunity_id)] == "probability_between_0_and_1"
    assert results["opportunities"].rows_quarantined == len(defects["probability_as_percent"])
    # Lines of quarantined orders follow their order into quarantine, by the referential rule.
    bad_orders = set(defects["future_order_date"]) | set(defects["unknown_customer"])
    lines = quarantine[quarantine.entity == "order_lines"]
    orphaned = lines[lines.record_key.str.split("#").str[0].isin(bad_orders)]
    assert orphaned.failed_rules.str.contains("line_order_known").all() and len(orphaned) > 0

    # Warnings are recorded with counts, and those customers still load.
    history = read_frame(engine, "select * from quality.validation_results where entity = 'customers'")
    email = history[history.column_name == "email"].set_index("expectation_type")
    normalized = history[history.column_name == "_email_normalized"].set_index("expectation_type")
    assert email.loc["expect_column_values_to_match_regex", "unexpected_count"] == len(
        defects["malformed_email"]
    )
    missing = email.loc["expect_column_values_to_not_be_null"]
    assert missing.unexpected_count == len(defects["missing_email"])
    assert missing.severity == "warning" and bool(missing.success)  # the 95% threshold is still met
    # A duplicate shares its email with the original: both rows are flagged.
    assert normalized.loc["expect_column_values_to_be_unique", "unexpected_count"] == 2 * len(
        defects["duplicate_customer"]
    )
    assert results["customers"].rows_quarantined == 0
    assert results["customers"].rows_loaded == len(small_crm["customers"])


def test_rows_read_equal_loaded_plus_quarantined_plus_duplicates(
    small_exports: Path, warehouse_url: str
) -> None:
    engine = _engine(warehouse_url)
    ingest_exports(engine, small_exports, AS_OF, "run-1")
    audit = read_frame(engine, "select * from audit.load_batches")
    assert len(audit) == len(ENTITIES)
    assert (audit.rows_read == audit.rows_loaded + audit.rows_quarantined + audit.rows_duplicate).all()
    quarantined = read_frame(engine, "select entity, count(*) as n from quality.quarantine group by entity")
    assert quarantined.set_index("entity")["n"].to_dict() == {
        row.entity: row.rows_quarantined for row in audit.itertuples() if row.rows_quarantined
    }
    for row in audit.itertuples():
        raw = read_frame(engine, f"select count(*) as n from raw.{row.entity}").n.iloc[0]
        assert raw == row.rows_loaded + row.rows_quarantined, row.entity
        held = read_frame(engine, f"select count(*) as n from quality.quarantine_{row.entity}").n.iloc[0]
        assert held == row.rows_quarantined, row.entity


def test_loading_the_same_date_twice_leaves_the_warehouse_identical(
    small_exports: Path, warehouse_url: str
) -> None:
    engine = _engine(warehouse_url)
    ingest_exports(engine, small_exports, AS_OF, "run-1")
    first = _checksum(engine)
    counts = read_frame(engine, "select count(*) as n from raw.orders").n.iloc[0]
    ingest_exports(engine, small_exports, AS_OF, "run-2")
    assert _checksum(engine) == first
    assert read_frame(engine, "select count(*) as n from raw.orders").n.iloc[0] == counts
    assert read_frame(engine, "select count(*) as n from audit.load_batches").n.iloc[0] == len(ENTITIES)
    assert set(read_frame(engine, "select distinct _run_id from core.fct_order")._run_id) == {"run-2"}


def test_an_earlier_as_of_date_loads_only_what_existed_then(
    small_crm: CrmDataset, small_exports: Path, duckdb_url
):
    engine = _engine(duckdb_url)
    early = date(2025, 6, 1)
    ingest_exports(engine, small_exports, early, "run-early")
    customers = read_frame(engine, "select count(*) as n from core.dim_customer").n.iloc[0]
    expected = (small_crm["customers"]["updated_at"] < pd.Timestamp(early)).sum()
    assert customers == expected < len(small_crm["customers"])
    latest = read_frame(engine, "select max(order_date) as d from core.fct_order").d.iloc[0]
    assert pd.Timestamp(latest) < pd.Timestamp(early)


def test_last_update_wins_even_when_the_older_version_arrives_late(duckdb_url: str) -> None:
    engine = _engine(duckdb_url)
    products = pd.DataFrame(
        {
            "product_id": ["P1", "P1", "P2"],
            "product_name": ["old name", "new name", "other"],
            "category": ["Hardware"] * 3,
            "list_price": [1.0, 2.0, 3.0],
            "updated_at": pd.to_datetime(["2026-01-01", "2026-02-01", "2026-01-01"]),
        }
    )
    result = load_entity(engine, "products", products, AS_OF, "r1", "test")
    assert (result.rows_read, result.rows_duplicate, result.rows_loaded) == (3, 1, 2)
    late_old = products.iloc[[0]].assign(product_name="stale")
    load_entity(engine, "products", late_old, date(2026, 11, 2), "r2", "test")
    names = read_frame(engine, "select product_id, product_name from core.dim_product order by product_id")
    assert names.product_name.tolist() == ["new name", "other"]


def test_values_of_the_wrong_type_are_quarantined_with_the_original_text(duckdb_url: str) -> None:
    engine = _engine(duckdb_url)
    products = pd.DataFrame(
        {
            "product_id": ["P1", "P2"],
            "product_name": ["fine", "bad price"],
            "category": ["Hardware", "Hardware"],
            "list_price": ["10.5", "ten"],
            "updated_at": ["2026-01-01", "2026-01-02"],
        }
    )
    result = load_entity(engine, "products", products, AS_OF, "r1", "csv")
    assert (result.rows_loaded, result.rows_quarantined) == (1, 1)
    held = read_frame(engine, "select record_key, failed_rules, original_row from quality.quarantine")
    assert held.record_key.tolist() == ["P2"]
    assert held.failed_rules.iloc[0] == "type_list_price"
    assert json.loads(held.original_row.iloc[0])["list_price"] == "ten"


def test_coerce_types_marks_every_bad_column() -> None:
    entity = get_entity("order_lines")
    frame = pd.DataFrame(
        {
            "order_id": ["O1"],
            "line_number": ["1.5"],
            "product_id": ["P"],
            "quantity": ["x"],
            "unit_price": ["2"],
            "discount_pct": [None],
            "updated_at": ["not a date"],
        }
    )
    typed, problems = coerce_types(frame, entity)
    assert problems.iloc[0] == "type_line_number;type_quantity;type_updated_at"
    assert typed["unit_price"].iloc[0] == 2.0
    assert pd.isna(typed["discount_pct"].iloc[0])


def test_a_missing_required_column_stops_that_entity_with_its_name(
    small_exports: Path, tmp_path: Path, duckdb_url: str
) -> None:
    engine = _engine(duckdb_url)
    frame = pd.read_parquet(small_exports / "orders.parquet").drop(columns=["order_date"])
    frame.to_parquet(tmp_path / "orders.parquet")
    with pytest.raises(SourceSchemaError, match="order_date"):
        ingest.ingest_from_source(engine, FileSource(tmp_path), "orders", AS_OF, "r1")
    assert read_frame(engine, "select count(*) as n from audit.load_batches").n.iloc[0] == 0


def test_csv_exports_load_like_parquet(small_exports: Path, duckdb_url: str, tmp_path: Path) -> None:
    engine = _engine(duckdb_url)
    results = ingest_exports(engine, small_exports, AS_OF, "run-csv", source_format="csv")
    parquet_engine = _engine(f"duckdb:///{tmp_path / 'parquet.duckdb'}")
    expected = ingest_exports(parquet_engine, small_exports, AS_OF, "run-parquet")
    assert [(r.entity, r.rows_loaded, r.rows_quarantined) for r in results] == [
        (r.entity, r.rows_loaded, r.rows_quarantined) for r in expected
    ]
    names = read_frame(
        engine, "select customer_name from core.dim_customer order by customer_id"
    ).customer_name
    assert names.str.contains(r"[\u4e00-\u9fff]").any()
    assert _checksum(engine)["customers"] == _checksum(parquet_engine)["customers"]


def test_a_crash_in_the_middle_of_a_load_leaves_no_partial_batch(
    small_exports: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(warehouse_url)
    files, window = FileSource(small_exports), Window(until=pd.Timestamp(AS_OF))
    orders = extract_frame(files, get_entity("orders"), window)
    customers = extract_frame(files, get_entity("customers"), window)
    load_entity(engine, "customers", customers, AS_OF, "r1", "files")
    real_run_sql_file = ingest.run_sql_file

    def crash_during_merge(*args, **kwargs):
        raise OSError("worker lost in the middle of the merge")

    monkeypatch.setattr(ingest, "run_sql_file", crash_during_merge)
    with pytest.raises(OSError):
        load_entity(engine, "orders", orders, AS_OF, "r1", "files")
    for table in (
        "raw.orders",
        "core.fct_order",
        "quality.validation_results where entity = 'orders'",
        "quality.quarantine where entity = 'orders'",
        "audit.load_batches where entity = 'orders'",
    ):
        assert read_frame(engine, f"select count(*) as n from {table}").n.iloc[0] == 0, table
    monkeypatch.setattr(ingest, "run_sql_file", real_run_sql_file)
    assert load_entity(engine, "orders", orders, AS_OF, "r1", "files").rows_loaded > 0


def test_a_critical_table_level_failure_stops_the_load_but_keeps_the_history(
    duckdb_url: str, monkeypatch
) -> None:
    engine = _engine(duckdb_url)
    from salespulse import quality

    document = quality.load_suite_document("products")
    document["expectations"].append(
        {
            "type": "expect_table_row_count_to_be_between",
            "kwargs": {"min_value": 100},
            "meta": {"rule": "enough_products"},
            "severity": "critical",
        }
    )
    monkeypatch.setattr(quality, "load_suite_document", lambda entity: document)
    monkeypatch.setattr(ingest, "load_suite_document", lambda entity: document)
    products = pd.DataFrame(
        {
            "product_id": ["P1"],
            "product_name": ["x"],
            "category": ["c"],
            "list_price": [1.0],
            "updated_at": pd.to_datetime(["2026-01-01"]),
        }
    )
    with pytest.raises(DataQualityError, match="enough_products"):
        load_entity(engine, "products", products, AS_OF, "r1", "test")
    assert read_frame(engine, "select count(*) as n from core.dim_product").n.iloc[0] == 0
    assert read_frame(engine, "select count(*) as n from raw.products").n.iloc[0] == 0
    history = read_frame(engine, "select success, severity from quality.validation_results where not success")
    assert history.severity.tolist() == ["critical"]


def test_deduplicate_keeps_rows_without_a_key_for_the_gate() -> None:
    entity = get_entity("customers")
    frame = pd.DataFrame(
        {
            "customer_id": ["C1", "C1", None, None],
            "updated_at": pd.to_datetime(["2026-01-02", "2026-01-01", "2026-01-01", "2026-01-01"]),
        }
    )
    kept, dropped = deduplicate(frame, entity)
    assert dropped == 1
    assert kept["customer_id"].isna().sum() == 2
    assert kept.loc[kept.customer_id == "C1", "updated_at"].iloc[0] == pd.Timestamp("2026-01-02")


def test_ids_read_as_floats_keep_their_integer_text() -> None:
    """Parquet and spreadsheet exports often carry numeric ids as floats (CustomerID 17850.0)."""
    frame = pd.DataFrame(
        {"customer_id": [17850.0, 13047.0, None, 12.5], "customer_name": ["a", "b", "c", "d"]}
    )
    typed, problems = coerce_types(frame, get_entity("customers"))
    assert typed["customer_id"].tolist() == ["17850", "13047", None, "12.5"]
    assert (problems == "").all()
