"""Each data-quality rule on a small hand-built batch, with the count it must report.

Bad inputs tried: the same email in other case and spacing, the same phone written differently, a
user-assigned country code (ZZ), an unknown currency (XYZ), an order dated before its customer signed up,
a stale extract (newest order ten days old), a collapse in volume, and a jump in mean line amount.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from sqlalchemy import Engine

from salespulse.ingest import LoadResult, load_entity
from salespulse.schema import create_schema
from salespulse.warehouse import get_engine, read_frame

AS_OF = date(2026, 11, 1)


@pytest.fixture
def engine(duckdb_url: str) -> Engine:
    engine = get_engine(duckdb_url)
    create_schema(engine)
    return engine


def _customers(n: int = 4, **overrides) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "customer_name": [f"客户 {i}" for i in range(n)],
            "email": [f"c{i}@example.com" for i in range(n)],
            "phone": [f"+4420700000{i:02d}" for i in range(n)],
            "country_code": ["GB"] * n,
            "region": ["EMEA"] * n,
            "signup_date": pd.to_datetime(["2026-06-01"] * n),
            "updated_at": pd.to_datetime(["2026-10-30"] * n),
        }
    )
    for column, values in overrides.items():
        frame[column] = values
    return frame


def _orders(n: int, updated: str = "2026-10-31", order_date: str = "2026-10-30", currency: str = "USD"):
    return pd.DataFrame(
        {
            "order_id": [f"O{i}" for i in range(n)],
            "customer_id": [f"C{i % 4}" for i in range(n)],
            "order_date": pd.to_datetime([order_date] * n),
            "status": ["completed"] * n,
            "currency": [currency] * n,
            "updated_at": pd.to_datetime([updated] * n),
        }
    )


def _failure(result: LoadResult, rule: str) -> dict:
    matches = [f for f in result.failures if f["rule"] == rule]
    assert matches, f"{rule} did not fail; failures: {[f['rule'] for f in result.failures]}"
    return matches[0]


def test_likely_duplicates_by_normalised_email_and_phone_are_flagged_not_dropped(engine: Engine) -> None:
    customers = _customers(
        email=["Ann@Example.com ", "ann@example.com", "bo@example.com", None],
        phone=["+44 20 7000 0001", "+44-2070000001", "+442070000002", "+442070000003"],
    )
    result = load_entity(engine, "customers", customers, AS_OF, "r1", "test")
    assert _failure(result, "likely_duplicate_by_email")["unexpected_count"] == 2
    assert _failure(result, "likely_duplicate_by_phone")["unexpected_count"] == 2
    assert result.rows_loaded == 4 and result.rows_quarantined == 0


def test_a_user_assigned_country_is_a_warning_and_an_unknown_currency_is_quarantined(engine: Engine) -> None:
    result = load_entity(
        engine, "customers", _customers(country_code=["GB", "ZZ", "CN", "DE"]), AS_OF, "r1", "t"
    )
    flagged = _failure(result, "country_code_assigned")
    assert flagged["unexpected_count"] == 1 and flagged["action"] == "recorded"
    orders = pd.concat([_orders(3), _orders(1, currency="XYZ").assign(order_id="O-XYZ")], ignore_index=True)
    result = load_entity(engine, "orders", orders, AS_OF, "r1", "test")
    assert _failure(result, "currency_iso_4217")["action"] == "rows quarantined"
    held = read_frame(
        engine, "select record_key, failed_rules from quality.quarantine where entity = 'orders'"
    )
    assert held.to_dict(orient="records") == [{"record_key": "O-XYZ", "failed_rules": "currency_iso_4217"}]


def test_an_order_before_its_customer_signed_up_is_flagged(engine: Engine) -> None:
    load_entity(engine, "customers", _customers(), AS_OF, "r1", "test")
    orders = pd.concat([_orders(3), _orders(1, order_date="2026-05-01").assign(order_id="O-early")])
    result = load_entity(engine, "orders", orders, AS_OF, "r1", "test")
    flagged = _failure(result, "order_not_before_customer_signup")
    assert flagged["unexpected_count"] == 1 and flagged["severity"] == "warning"
    assert result.rows_loaded == 4


def test_a_stale_extract_fails_freshness(engine: Engine) -> None:
    load_entity(engine, "customers", _customers(), AS_OF, "r1", "test")
    fresh = load_entity(engine, "orders", _orders(4), AS_OF, "r1", "test")
    assert "freshness_within_sla" not in [f["rule"] for f in fresh.failures]
    stale = load_entity(
        engine, "orders", _orders(4, updated="2026-10-20", order_date="2026-10-19"), AS_OF, "r2", "t"
    )
    failure = _failure(stale, "freshness_within_sla")
    assert "2026-10-29" in failure["expected"]  # as of 2026-11-01 minus the 3-day SLA


def test_volume_is_judged_against_earlier_loads_and_skipped_without_history(engine: Engine) -> None:
    load_entity(engine, "customers", _customers(), AS_OF, "r1", "test")
    first = load_entity(engine, "orders", _orders(40), date(2026, 10, 1), "r1", "test")
    history = read_frame(engine, "select rule_name from quality.validation_results where entity = 'orders'")
    assert "volume_within_recent_history" not in set(history["rule_name"])  # no baseline yet: skipped
    assert "batch_not_empty" in set(history["rule_name"])
    assert "volume_within_recent_history" not in [f["rule"] for f in first.failures]
    steady = load_entity(engine, "orders", _orders(44), date(2026, 10, 15), "r2", "test")
    assert "volume_within_recent_history" not in [f["rule"] for f in steady.failures]
    collapsed = load_entity(engine, "orders", _orders(10), AS_OF, "r3", "test")
    failure = _failure(collapsed, "volume_within_recent_history")
    assert failure["observed"] == "10" and "min_value=21" in failure["expected"]  # median 42 x (1 - 0.5)


def test_a_jump_in_mean_line_amount_is_flagged(engine: Engine) -> None:
    products = pd.DataFrame(
        {
            "product_id": ["P1"],
            "product_name": ["p"],
            "category": ["c"],
            "list_price": [10.0],
            "updated_at": pd.to_datetime(["2026-01-01"]),
        }
    )
    load_entity(engine, "products", products, date(2026, 10, 1), "r0", "test")
    load_entity(engine, "customers", _customers(), date(2026, 10, 1), "r0", "test")
    load_entity(
        engine,
        "orders",
        _orders(4, updated="2026-09-29", order_date="2026-09-29"),
        date(2026, 10, 1),
        "r0",
        "t",
    )

    def lines(price: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "order_id": ["O0", "O1", "O2", "O3"],
                "line_number": [1, 1, 1, 1],
                "product_id": ["P1"] * 4,
                "quantity": [1, 2, 3, 4],
                "unit_price": [price] * 4,
                "discount_pct": [0.0] * 4,
                "updated_at": pd.to_datetime(["2026-09-30"] * 4),
            }
        )

    baseline = load_entity(engine, "order_lines", lines(10.0), date(2026, 10, 1), "r1", "test")  # mean 25
    assert "mean_line_amount_stable" not in [f["rule"] for f in baseline.failures]
    similar = load_entity(engine, "order_lines", lines(11.0), date(2026, 10, 2), "r2", "test")  # mean 27.5
    assert "mean_line_amount_stable" not in [f["rule"] for f in similar.failures]
    jumped = load_entity(engine, "order_lines", lines(30.0), date(2026, 10, 3), "r3", "test")  # mean 75
    failure = _failure(jumped, "mean_line_amount_stable")
    assert failure["observed"] == "75.0" and failure["action"] == "recorded"
