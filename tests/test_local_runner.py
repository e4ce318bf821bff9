from __future__ import annotations

from datetime import date
from pathlib import Path

from salespulse.config import Settings
from salespulse_cli.demo import prepare_exports, reset_demo_warehouse
from salespulse_cli.local_airflow import month_starts_before


def test_as_of_dates_are_consecutive_month_starts_ending_after_the_data() -> None:
    assert month_starts_before(date(2026, 10, 31), 3) == [
        date(2026, 9, 1),
        date(2026, 10, 1),
        date(2026, 11, 1),
    ]
    assert month_starts_before(date(2026, 12, 15), 2) == [date(2026, 12, 1), date(2027, 1, 1)]


def test_exports_are_regenerated_only_when_what_was_asked_for_changes(tmp_path: Path) -> None:
    settings = Settings(warehouse_url="duckdb:///x", data_dir=tmp_path, export_dir=tmp_path / "exports")
    first = prepare_exports(settings, customers=50, seed=1, regenerate=False)
    assert first["customers"] >= 50
    assert prepare_exports(settings, customers=50, seed=1, regenerate=False) == {}
    assert prepare_exports(settings, customers=50, seed=2, regenerate=False) != {}
    assert prepare_exports(settings, customers=50, seed=2, regenerate=True) != {}


def test_only_the_embedded_demo_warehouse_is_reset(tmp_path: Path) -> None:
    database = tmp_path / "warehouse.duckdb"
    database.write_bytes(b"old demo data")
    embedded = Settings(warehouse_url=f"duckdb:///{database}", data_dir=tmp_path, export_dir=tmp_path)
    assert reset_demo_warehouse(embedded) is True
    assert not database.exists()

    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere.duckdb"
    outside.write_bytes(b"someone's data")
    elsewhere = Settings(warehouse_url=f"duckdb:///{outside}", data_dir=tmp_path, export_dir=tmp_path)
    assert reset_demo_warehouse(elsewhere) is False
    assert outside.exists()
    postgres = Settings(warehouse_url="postgresql+psycopg://u@h/db", data_dir=tmp_path, export_dir=tmp_path)
    assert reset_demo_warehouse(postgres) is False
    outside.unlink()
