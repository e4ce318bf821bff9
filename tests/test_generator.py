from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salespulse.generator import DEFAULT_END, CrmDataset, generate_crm
from salespulse.model import ENTITIES, FUNNEL_STAGES

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_same_seed_same_data_other_seed_other_data() -> None:
    first, again, other = generate_crm(200, seed=5), generate_crm(200, seed=5), generate_crm(200, seed=6)
    for entity in first.tables:
        pd.testing.assert_frame_equal(first[entity], again[entity])
    assert not first["orders"].equals(other["orders"])


def test_every_entity_has_the_model_columns_and_types(small_crm: CrmDataset) -> None:
    for entity in ENTITIES:
        frame = small_crm[entity.name]
        assert frame.columns.tolist() == entity.column_names
        assert len(frame) > 0, entity.name
        for column in entity.columns:
            if column.kind in ("date", "timestamp"):
                assert str(frame[column.name].dtype) == "datetime64[us]", column.name


def test_keys_are_unique_except_for_injected_duplicates(small_crm: CrmDataset) -> None:
    """Unique per key, and per key and time for the opportunities, which the CRM exports as versions."""
    for entity in ENTITIES:
        key = [*entity.key, "updated_at"] if entity.name == "opportunities" else list(entity.key)
        assert not small_crm[entity.name].duplicated(key).any(), entity.name


def test_names_in_chinese_and_latin_scripts(small_crm: CrmDataset) -> None:
    names = small_crm["customers"]["customer_name"]
    chinese = names.str.contains(CJK)
    assert 0.05 < chinese.mean() < 0.5
    assert names[~chinese].str.contains(r"[A-Za-z]").all()


def test_defects_are_injected_as_listed(small_crm: CrmDataset) -> None:
    d = small_crm.defects
    customers = small_crm["customers"].set_index("customer_id")
    assert customers.loc[d["missing_email"], "email"].isna().all()
    assert not customers.loc[d["malformed_email"], "email"].str.contains("@").any()
    originals = customers.drop(index=d["duplicate_customer"])
    dup_emails = customers.loc[d["duplicate_customer"], "email"].dropna()
    assert dup_emails.isin(originals["email"]).all()
    orders = small_crm["orders"].set_index("order_id")
    assert (orders.loc[d["future_order_date"], "order_date"] > pd.Timestamp(DEFAULT_END)).all()
    assert not orders.loc[d["unknown_customer"], "customer_id"].isin(customers.index).any()
    lines = small_crm["order_lines"]
    line_keys = lines["order_id"] + "#" + lines["line_number"].astype(str)
    assert (lines.loc[line_keys.isin(d["negative_amount"]), "unit_price"] < 0).all()
    assert (lines.loc[~line_keys.isin(d["negative_amount"]), "unit_price"] >= 0).all()
    # The percentage is on each listed deal's latest version, and on no other row.
    versions = small_crm["opportunities"]
    latest = versions[~versions["opportunity_id"].duplicated(keep="last")].set_index("opportunity_id")
    assert (latest.loc[d["probability_as_percent"], "probability"] > 1).all()
    assert (versions["probability"] > 1).sum() == len(d["probability_as_percent"])
    for kind, keys in d.items():
        assert len(keys) >= 1, kind


def test_no_defects_when_the_rate_is_zero() -> None:
    clean = generate_crm(200, seed=1, defect_rate=0)
    assert clean.defects == {}
    assert clean["customers"]["email"].str.contains("@").all()
    assert (clean["order_lines"]["unit_price"] >= 0).all()


def test_customers_at_every_lifecycle_stage() -> None:
    data = generate_crm(2000, seed=3, defect_rate=0)
    orders = data["orders"][data["orders"]["status"] == "completed"]
    end = pd.Timestamp(DEFAULT_END)
    per_customer = orders.groupby("customer_id")["order_date"].agg(["min", "max", "count"])
    gaps = (
        orders.sort_values("order_date").groupby("customer_id")["order_date"].apply(lambda s: s.diff().max())
    )
    new = per_customer["min"] > end - pd.Timedelta(days=90)
    active = per_customer["max"] > end - pd.Timedelta(days=60)
    churned = per_customer["max"] < end - pd.Timedelta(days=365)
    reactivated = active & (gaps.reindex(per_customer.index) > pd.Timedelta(days=180))
    for stage, mask in {"new": new, "active": active, "churned": churned, "reactivated": reactivated}.items():
        assert mask.sum() >= 20, stage


def test_revenue_grows_and_has_a_december_peak() -> None:
    data = generate_crm(3000, seed=4, defect_rate=0)
    lines = data["order_lines"].merge(data["orders"], on="order_id")
    lines = lines[lines["status"] == "completed"]
    revenue = (
        (lines["quantity"] * lines["unit_price"] * (1 - lines["discount_pct"]))
        .groupby(lines["order_date"].dt.to_period("M"))
        .sum()
    )
    assert revenue[pd.Period("2025-12")] > revenue[pd.Period("2024-12")]
    for year in (2024, 2025):
        assert revenue[pd.Period(f"{year}-12")] > revenue[pd.Period(f"{year}-07")]


def test_funnel_stages_convert_like_a_funnel() -> None:
    opportunities = generate_crm(3000, seed=8)["opportunities"]
    assert set(opportunities["stage"]) <= set(FUNNEL_STAGES)
    closed = opportunities[opportunities["stage"].str.startswith("closed")]
    win_rate = (closed["stage"] == "closed_won").mean()
    assert 0.08 < win_rate < 0.35
    assert closed["closed_date"].notna().all()
    open_ = opportunities[~opportunities["stage"].str.startswith("closed")]
    assert open_["closed_date"].isna().all() and len(open_) > 0


def test_targets_cover_past_and_plan_months(small_crm: CrmDataset) -> None:
    targets = small_crm["sales_targets"]
    assert set(targets["level"]) == {"total", "region", "segment"}
    assert targets["period_start"].max() > pd.Timestamp(DEFAULT_END)
    assert (targets["target_amount"] > 0).all()


def test_exports_are_written_as_utf8_csv_and_parquet(small_crm: CrmDataset, tmp_path: Path) -> None:
    small_crm.write_exports(tmp_path)
    for entity in ENTITIES:
        parquet = pd.read_parquet(tmp_path / f"{entity.name}.parquet")
        assert len(parquet) == len(small_crm[entity.name])
    csv = pd.read_csv(tmp_path / "customers.csv", encoding="utf-8")
    assert csv["customer_name"].tolist() == small_crm["customers"]["customer_name"].tolist()


def test_fills_a_source_database(small_crm: CrmDataset, postgres_url: str) -> None:
    from salespulse.warehouse import get_engine, read_frame

    engine = get_engine(postgres_url)
    small_crm.write_to_database(engine, schema="crm_source")
    names = read_frame(engine, "select customer_name from crm_source.customers order by customer_id")
    assert (
        names["customer_name"].tolist()
        == small_crm["customers"].sort_values("customer_id")["customer_name"].tolist()
    )


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"n_customers": 5}, "at least 10"), ({"start": date(2027, 1, 1)}, "before end")]
)
def test_bad_arguments_are_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_crm(**kwargs)


def test_scales_to_many_customers_without_python_loops() -> None:
    data = generate_crm(20_000, seed=2)
    assert len(data["customers"]) >= 20_000
    assert len(data["order_lines"]) > 100_000
    assert np.isfinite(data["order_lines"]["unit_price"]).all()


def test_a_crm_written_in_parts_has_unique_ids_whole_references_and_loads(tmp_path: Path) -> None:
    """The bounded-memory writer (bench/e2e.py at a million customers): three populations, one export."""
    from salespulse.generator import write_crm_in_parts
    from salespulse.schema import create_schema
    from salespulse.sources import FileSource
    from salespulse.warehouse import get_engine, read_frame
    from tests.helpers import ingest_all

    counts = write_crm_in_parts(tmp_path / "crm", n_customers=90, seed=3, part_customers=30)
    read = {
        e.name: pd.read_parquet(tmp_path / "crm" / e.name)
        if (tmp_path / "crm" / e.name).is_dir()
        else pd.read_parquet(tmp_path / "crm" / f"{e.name}.parquet")
        for e in ENTITIES
    }
    assert counts == {name: len(frame) for name, frame in read.items()}
    assert len(list((tmp_path / "crm" / "orders").glob("part-*.parquet"))) == 3
    customers, orders = read["customers"], read["orders"]
    assert customers["customer_id"].is_unique and orders["order_id"].is_unique
    assert read["interactions"]["interaction_id"].is_unique
    assert customers["customer_id"].str.match(r"^C0[0-2]-\d{7}$").all()
    # References stay inside their part: only the injected unknown customers (X...) point nowhere.
    dangling = ~orders["customer_id"].isin(customers["customer_id"])
    assert orders.loc[dangling, "customer_id"].str.startswith("X").all()
    assert read["order_lines"]["order_id"].isin(orders["order_id"]).all()
    assert set(read["order_lines"]["product_id"]) <= set(read["products"]["product_id"])
    # Targets are summed over the parts: one row per period and member.
    assert not read["sales_targets"].duplicated(["period_start", "level", "member"]).any()
    engine = get_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    create_schema(engine)
    ingest_all(engine, FileSource(tmp_path / "crm"), date(2026, 11, 1), "parts")
    loaded = read_frame(engine, "select entity, sum(rows_read) as n from audit.load_batches group by entity")
    assert dict(zip(loaded["entity"], loaded["n"].astype(int), strict=True)) == counts
