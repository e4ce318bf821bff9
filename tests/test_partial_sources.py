"""A source that lacks optional entities degrades instead of failing: what it does not provide is recorded as
"not provided", the steps that need it are skipped with the reason, and the rest of the chain runs."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from salespulse.config import Settings
from salespulse.errors import PermanentError
from salespulse.ingest import SourceSchemaError, ingest_from_source
from salespulse.model import load_order
from salespulse.schema import create_schema
from salespulse.sources import MappedSource
from salespulse.steps.ingest import ingest_entity
from salespulse.steps.prepare import prepare_warehouse
from salespulse.warehouse import get_engine, read_frame
from tests.helpers import run_after_ingest
from tests.test_mapping import KUNDEN, MAPPING

OPTIONAL = ("interactions", "opportunities", "sales_targets")
AS_OF = date(2026, 11, 1)


@pytest.fixture
def core_exports(small_exports: Path, tmp_path: Path) -> Path:
    """The small CRM's exports with only the required entities."""
    folder = tmp_path / "core-only"
    folder.mkdir()
    for path in small_exports.glob("*.parquet"):
        if path.stem not in OPTIONAL:
            shutil.copy(path, folder / path.name)
    return folder


@pytest.mark.chain
def test_a_source_without_optional_entities_runs_the_whole_chain(
    core_exports: Path, warehouse_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        warehouse_url=warehouse_url, data_dir=tmp_path, export_dir=core_exports, forecast_horizon=3
    )
    prepare_warehouse(settings)
    for as_of, run_id in ((date(2026, 10, 1), "october"), (AS_OF, "november")):
        results = {e.name: ingest_entity(settings, e.name, as_of, run_id) for e in load_order()}
        done = run_after_ingest(settings, as_of, run_id)
    funnel, variance, report = done["funnel"], done["variance"], done["report"]

    assert {name for name, r in results.items() if not r.provided} == set(OPTIONAL)
    assert all(results[name].rows_loaded > 0 for name in ("customers", "products", "orders", "order_lines"))
    engine = get_engine(warehouse_url)
    steps = read_frame(engine, "select step, detail from audit.step_runs where run_id = 'november'")
    notes = dict(zip(steps["step"], steps["detail"], strict=True))
    for name in OPTIONAL:
        assert notes[f"ingest_{name}"].startswith("not provided by files:"), notes
    # No deals: the funnel step is skipped with its reason and leaves no rows.
    assert funnel.skipped == f"no opportunities created before {AS_OF}"
    assert notes["build_funnel"] == f"skipped: {funnel.skipped}"
    assert read_frame(engine, "select count(*) as n from marts.funnel_forecast")["n"].iloc[0] == 0
    # No targets: variance compares actuals with forecasts only.
    facts = read_frame(engine, "select target, variance_abs from marts.fct_variance")
    assert variance.fact_rows == len(facts) > 0 and facts["target"].isna().all()
    assert facts["variance_abs"].notna().all()
    assert Path(report.report).exists() and report.charts
    engine.dispose()


def test_a_required_entity_missing_is_a_permanent_error_naming_it(
    core_exports: Path, duckdb_url: str
) -> None:
    (core_exports / "customers.parquet").unlink()
    settings = Settings(warehouse_url=duckdb_url, data_dir=core_exports.parent, export_dir=core_exports)
    prepare_warehouse(settings)
    with pytest.raises(
        SourceSchemaError, match="customers is required, but no export for 'customers'"
    ) as error:
        ingest_entity(settings, "customers", AS_OF, "r")
    assert isinstance(error.value, PermanentError)


def test_a_mapping_may_leave_out_optional_entities_and_match_no_rows(tmp_path: Path, duckdb_url: str) -> None:
    (tmp_path / "kunden.csv").write_text(KUNDEN, encoding="utf-8")
    empty = MAPPING.replace("    from: kunden\n", '    from: kunden\n    where: "1 = 0"\n', 1)
    (tmp_path / "kunden.yaml").write_text(empty, encoding="utf-8")
    engine = get_engine(duckdb_url)
    create_schema(engine)
    source = MappedSource(tmp_path / "kunden.yaml")
    customers = ingest_from_source(engine, source, "customers", AS_OF, "r")
    assert (customers.provided, customers.rows_read, customers.rows_loaded) == (True, 0, 0)
    deals = ingest_from_source(engine, source, "opportunities", AS_OF, "r")
    assert (deals.provided, deals.rows_read) == (False, 0)
    with pytest.raises(SourceSchemaError, match="orders is required, but .*maps no 'orders'"):
        ingest_from_source(engine, source, "orders", AS_OF, "r")
    engine.dispose()


def test_the_real_dags_run_on_a_source_without_optional_entities(
    airflow_db: Path, core_exports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through Airflow: every DAG run succeeds, and the funnel task is marked skipped, not failed."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    from salespulse_cli.local_airflow import CHAIN, run_chain

    monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    monkeypatch.setenv("SALESPULSE_EXPORT_DIR", str(core_exports))
    monkeypatch.setenv("SALESPULSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SALESPULSE_FORECAST_HORIZON", "3")
    assert run_chain([AS_OF]) == {dag_id: ["success"] for dag_id in CHAIN}
    with create_session() as session:  # this session's Airflow database: the newest run is this test's
        runs = session.query(TaskInstance).filter(TaskInstance.dag_id == "sales_forecast").all()
        latest = max(runs, key=lambda ti: (ti.end_date is not None, ti.end_date)).run_id
        states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in runs if ti.run_id == latest}
    assert states["funnel_forecast"] == "skipped" and states["publish_snapshot"] == "success"
