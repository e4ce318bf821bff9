"""The real DAG chain, run with dag.test() on a small generated data set, against DuckDB and PostgreSQL.

One run of the chain per warehouse (the module's fixture) for two monthly as-of dates; then each test
reads one stage's results from the warehouse, so a failure in one stage does not hide the others: every
output table has rows, every row traces back to an Airflow run, and the totals reconcile with the source
files, computed here independently in pandas.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from salespulse.funnel import OPEN_STAGES
from salespulse.generator import CrmDataset
from salespulse.model import ENTITIES, PERSONAL_DATA
from salespulse.reconcile import incoherence
from salespulse.warehouse import LAYERS, get_engine, read_frame
from tests.conftest import fresh_postgres_database
from tests.helpers import expected_revenue, reconcile_levels, table_counts

AS_OF_DATES = [date(2026, 10, 1), date(2026, 11, 1)]
CHAIN = ("ingest_crm", "customer_segments", "sales_forecast", "variance_report")


@dataclass(frozen=True)
class ChainRun:
    engine: Engine
    data_dir: Path
    crm: CrmDataset
    exports: Path
    states: dict[str, list[str]]
    first_snapshot: pd.DataFrame  # marts.forecast_snapshot after the first as-of date


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def chain(
    request: pytest.FixtureRequest,
    airflow_db: Path,
    small_crm: CrmDataset,
    small_exports: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ChainRun]:
    """The chain for the first as-of date, then for the second, on a fresh warehouse of each kind."""
    from salespulse_cli.local_airflow import run_chain

    data_dir = tmp_path_factory.mktemp(f"chain-{request.param}")
    with ExitStack() as stack:
        if request.param == "postgres":
            url = stack.enter_context(fresh_postgres_database())
        else:
            url = f"duckdb:///{data_dir / 'warehouse.duckdb'}"
        env = stack.enter_context(pytest.MonkeyPatch.context())
        env.setenv("WAREHOUSE_URL", url)
        env.setenv("SALESPULSE_EXPORT_DIR", str(small_exports))
        env.setenv("SALESPULSE_DATA_DIR", str(data_dir))
        env.setenv("SALESPULSE_FORECAST_HORIZON", "3")
        first = run_chain(AS_OF_DATES[:1])
        engine = get_engine(url)
        first_snapshot = read_frame(engine, "select * from marts.forecast_snapshot")
        second = run_chain(AS_OF_DATES[1:])
        env.undo()
        states = {dag_id: first[dag_id] + second[dag_id] for dag_id in CHAIN}
        yield ChainRun(engine, data_dir, small_crm, small_exports, states, first_snapshot)
        engine.dispose()


@pytest.mark.airflow
def test_every_dag_run_succeeds(chain: ChainRun) -> None:
    assert chain.states == {dag_id: ["success", "success"] for dag_id in CHAIN}


@pytest.mark.airflow
def test_every_table_and_view_of_every_layer_has_rows(chain: ChainRun) -> None:
    """Every table and view of every layer has rows."""
    engine = chain.engine
    counts = table_counts(engine)
    assert {name.split(".")[0] for name in counts} == set(LAYERS)
    # (Per-entity quarantine views are empty for entities with nothing held back.)
    empty = [name for name, n in counts.items() if n == 0 and not name.startswith("quality.quarantine_")]
    # The work tables, emptied once each run's snapshot is published; and the churn warnings, which may
    # rightly name nobody (test_churn_warnings_are_the_customers_the_rule_names checks them).
    may_be_empty = {"marts.churn_warnings", "reporting.churn_warnings"}
    assert sorted(set(empty) - may_be_empty) == ["marts.forecast_partitions", "marts.forecast_staging"]
    assert counts["quality.quarantine_orders"] > 0 and counts["quality.quarantine_order_lines"] > 0


@pytest.mark.airflow
def test_churn_warnings_are_the_customers_the_rule_names(chain: ChainRun) -> None:
    """The latest snapshot's warnings are exactly the customers the rule picks from the two stored
    snapshots (still active, valuable ahead, risk newly past 50%), none or many."""
    from salespulse.churn import churn_warnings

    rfm = read_frame(
        chain.engine,
        "select snapshot_date, customer_id, value_tier, lifecycle_stage, clv_12m, churn_probability "
        "from marts.customer_rfm",
    )
    dates = sorted(rfm["snapshot_date"].unique())
    assert len(dates) == 2 and rfm["churn_probability"].notna().any()
    current = rfm[rfm["snapshot_date"] == dates[1]]
    previous = rfm.loc[rfm["snapshot_date"] == dates[0], ["customer_id", "churn_probability"]]
    stored = read_frame(chain.engine, "select snapshot_date, customer_id from marts.churn_warnings")
    assert (stored["snapshot_date"] == dates[1]).all()  # the first snapshot warns of nobody
    expected = churn_warnings(current.reset_index(drop=True), previous)
    assert sorted(stored["customer_id"]) == sorted(expected["customer_id"])


@pytest.mark.airflow
def test_every_batch_and_output_row_traces_back_to_a_run(chain: ChainRun) -> None:
    """Every landed batch and output row traces back to an Airflow run of this test."""
    engine = chain.engine
    batches = read_frame(engine, "select * from audit.load_batches")
    assert batches["run_id"].str.startswith("manual__").all()
    for entity in ENTITIES:
        core_runs = read_frame(engine, f"select distinct _run_id from core.{entity.core_table}")["_run_id"]
        assert set(core_runs) <= set(batches["run_id"]), entity.name
    steps = read_frame(engine, "select run_id, step from audit.step_runs")
    assert set(steps["step"]) == {
        "build_segments",
        "build_forecasts",
        "build_funnel",
        "build_variance",
        "render_report",
    }
    for table in (
        "marts.customer_rfm",
        "marts.forecast_snapshot",
        "marts.fct_variance",
        "marts.sales_series",
    ):
        assert set(read_frame(engine, f"select distinct run_id from {table}")["run_id"]) <= set(
            steps["run_id"]
        )


@pytest.mark.airflow
def test_the_audit_reconciles_with_the_export_files_and_nothing_is_lost(chain: ChainRun) -> None:
    """The audit's counts reconcile with the export files, batch by batch: the first run read everything
    updated before its date, the second only what changed since the first one's watermark."""
    engine = chain.engine
    small_exports = chain.exports
    batches = read_frame(engine, "select * from audit.load_batches")
    latest = batches[batches["as_of_date"].astype(str).str[:10] == AS_OF_DATES[-1].isoformat()]
    first = batches[batches["as_of_date"].astype(str).str[:10] == AS_OF_DATES[0].isoformat()]
    for entity in ENTITIES:
        source = pd.read_parquet(small_exports / f"{entity.name}.parquet")
        updated = pd.to_datetime(source["updated_at"], errors="coerce")
        one = first[first["entity"] == entity.name].iloc[0]
        two = latest[latest["entity"] == entity.name].iloc[0]
        assert pd.isna(one["watermark_before"]) and bool(one["full_refresh"]), entity.name
        assert pd.Timestamp(two["watermark_before"]) == pd.Timestamp(one["watermark_after"]), entity.name
        assert one["rows_read"] == (updated.isna() | (updated < pd.Timestamp(AS_OF_DATES[0]))).sum()
        window = updated.isna() | (
            (updated >= pd.Timestamp(two["watermark_before"])) & (updated < pd.Timestamp(AS_OF_DATES[1]))
        )
        assert two["rows_read"] == window.sum(), entity.name
        for row in (one, two):
            assert row["rows_read"] == row["rows_loaded"] + row["rows_quarantined"] + row["rows_duplicate"]
        # Nothing lost: every key the source had by the last date is in core or held in quarantine.
        if entity.name in ("customers", "orders", "order_lines", "interactions", "opportunities"):
            wanted = source[updated.isna() | (updated < pd.Timestamp(AS_OF_DATES[1]))]
            core = read_frame(engine, f"select {', '.join(entity.key)} from core.{entity.core_table}")
            held = read_frame(
                engine, "select record_key from quality.quarantine where entity = :e", {"e": entity.name}
            )

            key = list(entity.key)
            wanted_keys = set(wanted[key].astype(str).agg("#".join, axis=1))
            core_keys = set(core[key].astype(str).agg("#".join, axis=1))
            assert wanted_keys == core_keys | set(held["record_key"]), entity.name


@pytest.mark.airflow
def test_series_revenue_equals_the_source_and_the_levels_add_up(chain: ChainRun) -> None:
    """Revenue in the marts equals revenue computed from the source, and the levels add up to the total.
    Weekly series hold the same revenue by week: each level adds up to the weekly total too."""
    engine = chain.engine
    small_crm = chain.crm
    series = read_frame(engine, "select grain, level, member, revenue from marts.sales_series")
    for grain, by_grain in series.groupby("grain"):
        total = by_grain.loc[by_grain["level"] == "total", "revenue"].sum()
        if grain == "month":
            assert total == pytest.approx(expected_revenue(small_crm, AS_OF_DATES[-1]), rel=1e-9)
        for level in ("region", "segment", "category", "sales_owner"):
            level_sum = by_grain.loc[by_grain["level"] == level, "revenue"].sum()
            assert level_sum == pytest.approx(total, rel=1e-9), (grain, level)
    assert set(series["grain"]) == {"month", "week"}


@pytest.mark.airflow
def test_earlier_snapshots_are_kept_and_every_snapshot_is_coherent(chain: ChainRun) -> None:
    """The first run's forecast snapshot is still there, untouched, beside the second one."""
    engine = chain.engine
    first_snapshot = chain.first_snapshot
    snapshots = read_frame(engine, "select * from marts.forecast_snapshot")
    # Each snapshot's levels add up to its total, period by period; the models' own forecasts are kept.
    for _, snapshot in snapshots.groupby("run_id"):
        scale = snapshot.loc[snapshot["level"] == "total", "forecast"].max()
        assert incoherence(snapshot) <= 1e-9 * scale
        assert incoherence(snapshot.assign(forecast=snapshot["base_forecast"])) > 1e-6 * scale
    assert snapshots["as_of_date"].astype(str).str[:10].nunique() == 2
    kept = snapshots[snapshots["run_id"].isin(first_snapshot["run_id"])]
    pd.testing.assert_frame_equal(
        kept.sort_values(["series_id", "period_start"]).reset_index(drop=True)[
            ["series_id", "forecast", "lo95"]
        ],
        first_snapshot.sort_values(["series_id", "period_start"]).reset_index(drop=True)[
            ["series_id", "forecast", "lo95"]
        ],
    )


@pytest.mark.airflow
def test_the_funnel_counts_the_deals_open_on_each_date(chain: ChainRun) -> None:
    """The funnel of each run counted the deals open on its date, as the CRM showed them then (each deal's
    latest version before the date). A deal whose latest version was quarantined keeps its previous one in
    core, so the count may differ by at most the deals held in quarantine."""
    engine = chain.engine
    small_exports = chain.exports
    funnel = read_frame(engine, "select as_of_date, open_deals from marts.funnel_stage_rates")
    deals = pd.read_parquet(small_exports / "opportunities.parquet").sort_values("updated_at", kind="stable")
    held = read_frame(engine, "select record_key from quality.quarantine where entity = 'opportunities'")
    for as_of in AS_OF_DATES:
        known = deals[deals["updated_at"] < pd.Timestamp(as_of)]
        latest = known[~known["opportunity_id"].duplicated(keep="last")]
        expected_open = latest["stage"].isin(OPEN_STAGES) & (latest["created_date"] < pd.Timestamp(as_of))
        counted = funnel.loc[funnel["as_of_date"].astype(str).str[:10] == as_of.isoformat(), "open_deals"]
        assert abs(int(counted.sum()) - int(expected_open.sum())) <= held["record_key"].nunique(), as_of
        assert counted.sum() > 0
    rates = read_frame(engine, "select as_of_date, stage, win_rate from reporting.funnel_stage_conversion")
    assert rates.groupby("as_of_date")["stage"].apply(set).tolist() == [set(OPEN_STAGES)] * 2
    combined = read_frame(engine, "select * from reporting.funnel_forecast where series_id = 'total:all'")
    assert combined["statistical_forecast"].notna().all()


@pytest.mark.airflow
def test_october_is_compared_with_the_forecast_made_one_month_ahead(chain: ChainRun) -> None:
    """October's actual is compared with the forecast made on 1 October, one month ahead."""
    engine = chain.engine
    small_crm = chain.crm
    variance = read_frame(engine, "select * from reporting.variance where series_id = 'total:all'")
    october = variance[
        (variance["period_start"].astype(str).str[:7] == "2026-10") & (variance["horizon"] == 1)
    ]
    assert len(october) == 1
    assert october["actual"].iloc[0] == pytest.approx(
        expected_revenue(small_crm, date(2026, 11, 1)) - expected_revenue(small_crm, date(2026, 10, 1)),
        rel=1e-9,
    )


@pytest.mark.airflow
def test_variance_levels_add_up_and_every_row_has_its_metrics(chain: ChainRun) -> None:
    """Every level's members add up to the total's actual; each row's metrics are there."""
    engine = chain.engine
    facts = read_frame(engine, "select * from reporting.variance")
    assert set(facts["level"]) == {"total", "region", "segment", "category", "sales_owner"}
    checks = reconcile_levels(facts)
    assert len(checks) == 4 and checks["actual_reconciles"].all(), checks
    # The forecasts compared come from one coherent snapshot, so they add up too.
    assert np.allclose(checks["forecast_sum"], checks["forecast_total"], rtol=1e-9)
    assert facts[["wape", "bias", "mase"]].notna().all().all()
    forecast_flag = (facts["flag_interval"] | facts["flag_tracking_signal"]) & facts["material"]
    assert (facts["flag_forecast"] == forecast_flag).all()
    assert (facts["flagged"] == (facts["flag_forecast"] | facts["flag_target"])).all()
    assert (facts["material"] == (facts["variance_abs"].abs() >= facts["materiality_threshold"])).all()


@pytest.mark.airflow
def test_the_report_of_october_shows_its_charts_and_numbers(chain: ChainRun) -> None:
    """The report of October: one page with its charts, each a real PNG, and the total's numbers on it."""
    engine = chain.engine
    tmp_path = chain.data_dir
    variance = read_frame(engine, "select * from reporting.variance where series_id = 'total:all'")
    october = variance[
        (variance["period_start"].astype(str).str[:7] == "2026-10") & (variance["horizon"] == 1)
    ]
    report = tmp_path / "reports" / "2026-10"
    page = (report / "index.html").read_text(encoding="utf-8")
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert {"forecast_total.png", "forecast_region.png", "forecast_sales_owner.png", "largest_variances.png",
            "revenue_bridge.png", "segment_mix.png", "data_quality.png"} <= set(pngs)  # fmt: skip
    for name in pngs:
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f'src="{name}"' in page
    total_row = october.iloc[0]
    assert f"{total_row['actual']:,.0f}" in page and f"{total_row['forecast']:,.0f}" in page
    assert "2026-10" in (tmp_path / "reports" / "index.html").read_text(encoding="utf-8")


@pytest.mark.airflow
def test_the_drivers_add_up_and_start_and_end_at_the_series_revenue(chain: ChainRun) -> None:
    """The drivers of October's change from September add up exactly, at every level, and start and end at the
    revenue in marts.sales_series."""
    engine = chain.engine
    drivers = read_frame(engine, "select * from reporting.revenue_drivers")
    assert {str(d)[:7] for d in drivers["period_start"]} == {"2026-10"}
    assert set(drivers["level"]) == {"total", "region", "segment", "category", "sales_owner"}
    effects = drivers["volume_effect"] + drivers["mix_effect"] + drivers["price_effect"]
    assert np.allclose(effects, drivers["revenue_change"], rtol=0, atol=1e-6)
    series = read_frame(
        engine, "select series_id, period_start, revenue from marts.sales_series where grain = 'month'"
    )
    monthly = series.assign(month=series["period_start"].astype(str).str[:7]).set_index(
        ["series_id", "month"]
    )
    for row in drivers.itertuples():
        assert row.current_revenue == pytest.approx(
            monthly.loc[(row.series_id, "2026-10"), "revenue"], rel=1e-9
        )
        before = monthly["revenue"].get((row.series_id, "2026-09"), 0.0)
        assert row.baseline_revenue == pytest.approx(before, rel=1e-9, abs=1e-9)
    bridge = read_frame(engine, "select * from reporting.customer_bridge").pivot(
        index="series_id", columns="step", values="amount"
    )
    middle = bridge["new_customers"] + bridge["lost_customers"] + bridge["returning_change"]
    assert np.allclose(middle, bridge["current"] - bridge["baseline"], rtol=0, atol=1e-6)
    totals = drivers.set_index("series_id")
    assert np.allclose(bridge["current"], totals.loc[bridge.index, "current_revenue"], rtol=1e-12)


@pytest.mark.airflow
def test_every_entity_is_in_the_data_docs(chain: ChainRun) -> None:
    """Every entity's validations are in the Data Docs site."""
    tmp_path = chain.data_dir
    index = tmp_path / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    site = index.read_text(encoding="utf-8")
    assert all(f"salespulse.{entity.name}" in site for entity in ENTITIES)


@pytest.mark.airflow
def test_every_scored_customer_has_tier_class_stage_clv_cluster_and_churn_risk(chain: ChainRun) -> None:
    """Every scored customer has a value tier, a purchase class, a lifecycle stage and, from the fitted BG/NBD
    and Gamma-Gamma models, P(alive) and a 12-month CLV."""
    engine = chain.engine
    segments = read_frame(engine, "select * from reporting.customer_segments")
    assert set(segments["value_tier"]) == {"high", "medium", "low"}
    assert segments[["purchase_class", "lifecycle_stage", "p_alive", "clv_12m"]].notna().all().all()
    assert segments["p_alive"].between(0, 1).all() and (segments["clv_12m"] >= 0).all()
    assert segments["churn_probability"].between(0, 1).all()
    evaluation = read_frame(engine, "select model, roc_auc from marts.churn_model_evaluation")
    assert set(evaluation["model"]) == {"gradient_boosting_calibrated", "bgnbd_no_purchase_in_window"}
    assert segments["cluster"].notna().all()
    profile = read_frame(
        engine,
        "select * from marts.customer_cluster_profile where snapshot_date = :d",
        {"d": AS_OF_DATES[-1]},
    )
    assert profile["customers"].sum() == len(segments)
    assert sorted(profile["cluster"]) == sorted(segments["cluster"].unique())
    high = segments[segments["value_tier"] == "high"]
    assert high["monetary"].sum() / segments["monetary"].sum() >= 0.8


@pytest.mark.airflow
def test_the_migration_matrix_adds_up_to_the_earlier_snapshot(chain: ChainRun) -> None:
    """The migration matrix between the two snapshots: each from-group's row sums to its earlier count."""
    engine = chain.engine
    migration = read_frame(engine, "select * from reporting.segment_migration")
    earlier = read_frame(
        engine,
        "select rfm_segment, value_tier, lifecycle_stage from marts.customer_rfm "
        "where snapshot_date = (select min(snapshot_date) from marts.customer_rfm)",
    )
    for dimension, column in (
        ("rfm_segment", "rfm_segment"),
        ("value_tier", "value_tier"),
        ("lifecycle_stage", "lifecycle_stage"),
    ):
        rows = migration[migration["dimension"] == dimension].groupby("from_group")["customers"].sum()
        assert rows.to_dict() == earlier[column].value_counts().to_dict(), dimension
    assert (migration["from_group"] != migration["to_group"]).any()  # some customers did move


@pytest.mark.airflow
def test_chinese_names_survive_every_step_into_the_pii_view_and_bi_sees_pseudonyms(chain: ChainRun) -> None:
    """Chinese names survive every step into reporting_pii.customers (the PII role's view); the segments
    view BI reads shows each scored customer's pseudonym, the same one the PII view pairs with the name."""
    engine = chain.engine
    named = read_frame(engine, "select customer_id, customer_name, pseudonym from reporting_pii.customers")
    assert named["customer_name"].str.contains(r"[\u4e00-\u9fff]").any()
    shown = read_frame(engine, "select customer_id, customer_name from reporting.customer_segments")
    assert not shown["customer_name"].str.contains(r"[\u4e00-\u9fff]").any()
    paired = shown.merge(named, on="customer_id", suffixes=("_shown", ""))
    assert len(paired) == len(shown) and (paired["customer_name_shown"] == paired["pseudonym"]).all()


@pytest.mark.airflow
def test_no_reporting_view_shows_personal_data_in_clear(chain: ChainRun) -> None:
    """Every column the model declares personal (name, email, phone) is absent from the reporting views
    or holds a pseudonym there; reporting_pii has them all."""
    engine = chain.engine
    columns = read_frame(
        engine,
        "select table_schema, table_name, column_name from information_schema.columns "
        "where table_schema in ('reporting', 'reporting_pii')",
    )
    personal = columns[columns["column_name"].isin(PERSONAL_DATA)]
    assert set(personal.loc[personal["table_schema"] == "reporting_pii", "column_name"]) == PERSONAL_DATA
    shown = personal[personal["table_schema"] == "reporting"]
    assert set(shown["column_name"]) == {"customer_name"}
    for view in shown["table_name"]:
        values = read_frame(engine, f"select customer_name from reporting.{view}")["customer_name"]
        assert values.str.fullmatch(r"Customer [0-9a-f]{10}").all(), view


@pytest.mark.airflow
def test_data_quality_per_load_date_is_what_the_report_and_bi_read(chain: ChainRun) -> None:
    """One row per entity and as-of date, whatever day the checks ran; its quarantined rows are all of
    quality.quarantine, and its scores are the share of expectations passed."""
    engine = chain.engine
    by_load = read_frame(engine, "select * from reporting.data_quality_by_load")
    assert sorted(by_load["as_of_date"].astype(str).str[:10].unique()) == [d.isoformat() for d in AS_OF_DATES]
    assert not by_load.duplicated(["entity", "as_of_date"]).any()
    assert len(by_load) == len(ENTITIES) * len(AS_OF_DATES)
    held = read_frame(engine, "select count(*) as n from quality.quarantine")["n"].iloc[0]
    assert by_load["rows_quarantined"].sum() == held > 0
    results = read_frame(engine, "select entity, as_of_date, success from quality.validation_results")
    results["as_of_date"] = results["as_of_date"].astype(str).str[:10]
    expected = results.groupby(["entity", "as_of_date"])["success"].mean()
    got = by_load.assign(as_of_date=by_load["as_of_date"].astype(str).str[:10]).set_index(
        ["entity", "as_of_date"]
    )["quality_score"]
    np.testing.assert_allclose(got.loc[expected.index].astype(float), expected.astype(float), rtol=1e-12)
