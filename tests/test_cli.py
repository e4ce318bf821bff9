"""The ``salespulse`` command: monthly as-of dates in order, the steps the DAGs call, the model reference."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from salespulse.model import describe_markdown
from salespulse.warehouse import get_engine, read_frame
from salespulse_cli.main import main
from salespulse_cli.run import monthly_as_of_dates, parse_steps

ROOT = Path(__file__).resolve().parents[1]


def test_as_of_dates_are_the_month_starts_in_the_range() -> None:
    assert monthly_as_of_dates(date(2011, 1, 15), date(2011, 4, 1)) == [
        date(2011, 2, 1),
        date(2011, 3, 1),
        date(2011, 4, 1),
    ]
    assert monthly_as_of_dates(date(2011, 12, 1), date(2012, 1, 31)) == [date(2011, 12, 1), date(2012, 1, 1)]
    assert monthly_as_of_dates(date(2011, 1, 2), date(2011, 1, 30)) == []


def test_steps_run_in_the_pipelines_order_whatever_order_they_are_named() -> None:
    assert parse_steps("report, ingest") == ("ingest", "report")
    with pytest.raises(ValueError, match="unknown step 'forecasts'; the steps are ingest, segments"):
        parse_steps("ingest,forecasts")


def test_the_model_reference_in_docs_is_the_one_the_command_prints() -> None:
    assert (ROOT / "docs" / "model.md").read_text(encoding="utf-8") == describe_markdown() + "\n"


def test_the_console_script_is_installed_and_describes_the_model() -> None:
    script = Path(sys.executable).parent / "salespulse"
    out = subprocess.run([str(script), "model"], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0].startswith("customers      required  customer_id*")
    assert "opportunities  optional" in out


@pytest.mark.chain
def test_run_takes_a_users_data_through_every_step_for_each_month(
    small_exports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    monkeypatch.setenv("SALESPULSE_EXPORT_DIR", str(small_exports))
    monkeypatch.setenv("SALESPULSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SALESPULSE_FORECAST_HORIZON", "3")
    assert main(["run", "--from", "2026-10-01", "--to", "2026-11-01", "--warehouse", url]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line[:4] == "2026"]
    assert [line.split()[:2] for line in lines] == [
        [as_of, step]
        for as_of in ("2026-10-01", "2026-11-01")
        for step in ("ingest", "segments", "forecast", "variance", "report")
    ]
    engine = get_engine(url)
    runs = read_frame(engine, "select run_id, step from audit.step_runs")
    assert set(runs["run_id"]) == {"cli__2026-10-01", "cli__2026-11-01"}
    compared = read_frame(engine, "select period_start from marts.fct_variance where horizon = 1")
    assert {str(p)[:7] for p in compared["period_start"]} == {"2026-10"}  # October vs the 1 October forecast
    assert (tmp_path / "reports" / "2026-10" / "index.html").exists()
    engine.dispose()


def test_a_broken_mapping_is_a_clear_error_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    code = main(
        ["run", "--from", "2026-10-01", "--mapping", str(tmp_path / "missing.yaml"), "--warehouse", url]
    )
    assert code == 2
    assert "error: MappingError:" in capsys.readouterr().err


def test_check_mapping_shows_what_a_mapping_gives_the_model_before_anything_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_mapping import KUNDEN, MAPPING

    (tmp_path / "kunden.csv").write_text(KUNDEN, encoding="utf-8")
    (tmp_path / "kunden.yaml").write_text(MAPPING, encoding="utf-8")
    assert main(["check-mapping", str(tmp_path / "kunden.yaml")]) == 1  # orders are required, not mapped
    out = capsys.readouterr().out
    assert "customers (required): 7 of 12 columns mapped" in out
    assert "not mapped (optional columns, left empty): email, phone, industry, segment, sales_owner" in out
    # The typed preview, in any script, with names masked: first characters and length only.
    assert "M… G… (11)" in out and "北… (8)" in out
    assert "Müller" not in out and "北京贸易有限公司" not in out
    assert "row 3 would be quarantined: type_signup_date (the text: {'signup_date': '31.02.2025'})" in out
    assert "orders (required): not mapped - a source must provide it" in out
    assert "opportunities (optional): not mapped\n" in out and "NOT usable yet" in out
    assert main(["check-mapping", str(tmp_path / "kunden.yaml"), "--show-personal-data"]) == 1
    assert "Müller GmbH" in (out := capsys.readouterr().out) and "北京贸易有限公司" in out

    broken = MAPPING.replace("customer_name: Name", 'customer_name: {sql: "Name - 1"}')
    (tmp_path / "broken.yaml").write_text(broken, encoding="utf-8")
    assert main(["check-mapping", str(tmp_path / "broken.yaml")]) == 1
    assert "error:" in (out := capsys.readouterr().out) and "column 'customer_name' = (Name - 1)" in out


def test_full_refresh_rereads_everything_before_the_first_date(
    small_exports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """October loads first; November's run with --full-refresh reads everything before November again,
    where a plain run would read only what changed since October's watermark."""
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    monkeypatch.setenv("SALESPULSE_EXPORT_DIR", str(small_exports))
    monkeypatch.setenv("SALESPULSE_DATA_DIR", str(tmp_path))
    assert main(["run", "--from", "2026-10-01", "--steps", "ingest", "--warehouse", url]) == 0
    for extra in ([], ["--full-refresh"]):
        assert main(["run", "--from", "2026-11-01", "--steps", "ingest", "--warehouse", url, *extra]) == 0
        engine = get_engine(url)
        batches = read_frame(
            engine,
            "select as_of_date, full_refresh, rows_read from audit.load_batches where entity = 'customers'",
        ).assign(as_of_date=lambda f: f["as_of_date"].astype(str).str[:10])
        engine.dispose()
        november = batches[batches["as_of_date"] == "2026-11-01"].iloc[0]
        october = batches[batches["as_of_date"] == "2026-10-01"].iloc[0]
        assert bool(november["full_refresh"]) == bool(extra)
        assert (november["rows_read"] >= october["rows_read"]) == bool(extra)


def test_a_load_stopped_by_a_critical_check_is_a_clear_error_and_exit_code_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from salespulse.generator import generate_crm

    dataset = generate_crm(200, seed=5, defect_rate=0)
    orders = dataset["orders"]
    orders.loc[orders.index[::3], "customer_id"] = "X-UNKNOWN"  # a third of the orders: over the 5% limit
    dataset.write_exports(tmp_path / "exports")
    monkeypatch.setenv("SALESPULSE_EXPORT_DIR", str(tmp_path / "exports"))
    monkeypatch.setenv("SALESPULSE_DATA_DIR", str(tmp_path))
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    assert main(["run", "--from", "2026-11-01", "--steps", "ingest", "--warehouse", url]) == 1
    assert "error: a critical data-quality check stopped the load: orders" in capsys.readouterr().err
