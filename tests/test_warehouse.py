from __future__ import annotations

import subprocess
import sys
import time
from datetime import date, datetime

import pandas as pd
import pytest
from sqlalchemy import text

from salespulse.dictionary import load_dictionary
from salespulse.model import ENTITIES, LOAD_METADATA
from salespulse.schema import create_schema
from salespulse.warehouse import (
    LAYERS,
    WarehouseBusy,
    bulk_insert,
    check_identifier,
    get_engine,
    read_frame,
    run_sql_file,
    split_statements,
)
from tests.helpers import table_counts


def test_split_statements_drops_comments_and_keeps_each_statement() -> None:
    sql = "-- a comment\ncreate table a (x int);\n\n-- another\ninsert into a values (1);\nselect 1"
    assert split_statements(sql) == ["create table a (x int)", "insert into a values (1)", "select 1"]


@pytest.mark.parametrize("bad", ["raw; drop table x", "Raw", "a-b", "", "1abc", "a b"])
def test_unsafe_identifiers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        check_identifier(bad)


def test_a_missing_bound_parameter_is_named(duckdb_url: str) -> None:
    engine = get_engine(duckdb_url)
    create_schema(engine)
    with engine.begin() as conn, pytest.raises(KeyError, match="as_of_month"):
        run_sql_file(conn, "marts/build_sales_series.sql", {"as_of_date": date(2026, 1, 1), "run_id": "r"})


def test_schema_creation_is_idempotent_and_builds_every_layer(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    create_schema(engine)
    create_schema(engine)
    counts = table_counts(engine)
    assert {name.split(".")[0] for name in counts} == set(LAYERS)
    for entity in ENTITIES:
        assert f"raw.{entity.name}" in counts
        assert f"core.{entity.core_table}" in counts
    # Nothing but the data dictionary, which set-up writes (once, however often it runs).
    documented = sum(len(view.columns) for view in load_dictionary())
    assert counts.pop("reporting.data_dictionary") == documented
    assert all(count == 0 for count in counts.values())


def test_ddl_columns_match_the_model(duckdb_url: str) -> None:
    engine = get_engine(duckdb_url)
    create_schema(engine)
    columns = read_frame(
        engine,
        "select table_schema, table_name, column_name from information_schema.columns "
        "where table_schema in ('raw', 'core') order by ordinal_position",
    )
    for entity in ENTITIES:
        raw = columns[
            (columns.table_schema == "raw") & (columns.table_name == entity.name)
        ].column_name.tolist()
        core = columns[
            (columns.table_schema == "core") & (columns.table_name == entity.core_table)
        ].column_name
        assert raw == [*entity.column_names, *LOAD_METADATA]
        assert core.tolist() == [*entity.column_names, "_batch_id", "_run_id", "_loaded_at"]


def test_bulk_insert_round_trips_unicode_nulls_and_timestamps(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    create_schema(engine)
    frame = pd.DataFrame(
        {
            "run_id": ["r1", "r1", "r1"],
            "batch_id": ["b", "b", "b"],
            "entity": ["customers"] * 3,
            "record_key": ["C1", None, "C3"],
            "failed_rules": ["a", "b;c", "d, with comma"],
            "original_row": [
                '{"name": "上海恒达贸易有限公司"}',
                '{"name": "Zoë \\"Q\\" Müller"}',
                "line\nbreak",
            ],
            "as_of_date": [date(2026, 1, 1)] * 3,
            "quarantined_at": [datetime(2026, 1, 1, 8, 30, 15, 123456)] * 3,
        }
    )
    with engine.begin() as conn:
        assert bulk_insert(conn, "quality", "quarantine", frame) == 3
    back = read_frame(engine, "select * from quality.quarantine order by failed_rules")
    assert back["original_row"].tolist() == frame["original_row"].tolist()
    assert back["record_key"].isna().tolist() == [False, True, False]
    assert back["failed_rules"].tolist() == ["a", "b;c", "d, with comma"]
    assert pd.Timestamp(back["quarantined_at"].iloc[0]) == pd.Timestamp("2026-01-01 08:30:15.123456")


def test_a_failed_transaction_leaves_nothing(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    create_schema(engine)
    frame = pd.DataFrame(
        [
            {
                "run_id": "r",
                "step": "s",
                "as_of_date": date(2026, 1, 1),
                "rows_written": 1,
                "detail": None,
                "started_at": datetime(2026, 1, 1),
                "finished_at": datetime(2026, 1, 1),
            }
        ]
    )
    with pytest.raises(RuntimeError), engine.begin() as conn:
        bulk_insert(conn, "audit", "step_runs", frame)
        raise RuntimeError("crash after the insert")
    with engine.connect() as conn:
        assert conn.execute(text("select count(*) from audit.step_runs")).scalar_one() == 0


def test_an_old_shaped_derived_table_is_recreated_and_other_tables_are_kept(warehouse_url: str) -> None:
    """A warehouse from before the variance rework has marts.fct_variance without the flag columns (and a
    reporting view on it). Set-up drops and recreates that derived table; the kept inputs stay."""
    engine = get_engine(warehouse_url)
    create_schema(engine)
    cascade = " cascade" if engine.dialect.name == "postgresql" else ""
    with engine.begin() as conn:
        conn.execute(text("drop view if exists reporting.variance_flags"))
        conn.execute(text("drop view if exists reporting.forecast_accuracy"))
        conn.execute(text(f"drop table marts.fct_variance{cascade}"))
        conn.execute(
            text(
                "create table marts.fct_variance (report_as_of date, period_start date, series_id varchar, "
                "actual double precision, primary key (report_as_of, series_id, period_start))"
            )
        )
        conn.execute(
            text("insert into marts.fct_variance values ('2026-04-01', '2026-03-01', 'total:all', 1)")
        )
        conn.execute(text("create or replace view reporting.variance as select * from marts.fct_variance"))
        conn.execute(
            text(
                "insert into marts.forecast_backtest values "
                "('2026-03-01', 'r', 'total:all', 'ets', 3, 0.5, 0.1, true, '2026-03-01 00:00:00')"
            )
        )
    create_schema(engine)
    columns = read_frame(
        engine,
        "select column_name from information_schema.columns "
        "where table_schema = 'marts' and table_name = 'fct_variance'",
    )["column_name"].tolist()
    assert {"flagged", "tracking_signal", "mase"} <= set(columns)
    assert read_frame(engine, "select count(*) as n from marts.fct_variance")["n"].iloc[0] == 0
    assert read_frame(engine, "select count(*) as n from reporting.variance_flags")["n"].iloc[0] == 0
    assert read_frame(engine, "select mase from marts.forecast_backtest")["mase"].tolist() == [0.5]
    create_schema(engine)  # and a second set-up leaves the new shape alone
    assert "flagged" in read_frame(engine, "select * from reporting.variance").columns


def test_a_warehouse_from_before_last_open_stage_gets_the_column(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    create_schema(engine)
    with engine.begin() as conn:
        conn.execute(text("alter table raw.opportunities drop column last_open_stage"))
        conn.execute(text("alter table core.fct_opportunity drop column last_open_stage"))
    create_schema(engine)
    columns = read_frame(
        engine,
        "select table_schema || '.' || table_name as qualified from information_schema.columns "
        "where column_name = 'last_open_stage'",
    )
    assert {"raw.opportunities", "core.fct_opportunity"} <= set(columns["qualified"])


HOLD_THE_FILE = """
import sys, time
from sqlalchemy import text
from salespulse.warehouse import get_engine
engine = get_engine(sys.argv[1])
with engine.begin() as conn:
    conn.execute(text("create table if not exists turns (who varchar, stamp double)"))
    conn.execute(text("insert into turns values ('holder', :stamp)"), {"stamp": time.time()})
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
engine.dispose()
"""


def _hold(url: str, seconds: float) -> subprocess.Popen[str]:
    """Another process that holds the DuckDB file for ``seconds``, started once it holds it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_FILE, url, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def test_a_second_process_waits_for_the_duckdb_file_instead_of_failing(duckdb_url: str) -> None:
    """What LocalExecutor does to the embedded warehouse: two tasks write at once. The second waits for the
    first to let the file go, then writes."""
    holder = _hold(duckdb_url, 2.0)
    started = time.monotonic()
    engine = get_engine(duckdb_url, lock_timeout=60)
    with engine.begin() as conn:
        conn.execute(text("insert into turns values ('waiter', :stamp)"), {"stamp": time.time()})
    waited = time.monotonic() - started
    turns = read_frame(engine, "select who from turns order by stamp")["who"].tolist()
    engine.dispose()
    assert holder.wait(timeout=30) == 0
    assert turns == ["holder", "waiter"] and waited > 1.0


def test_a_duckdb_file_locked_too_long_is_a_clear_error(duckdb_url: str) -> None:
    holder = _hold(duckdb_url, 5.0)
    engine = get_engine(duckdb_url, lock_timeout=0.5)
    with pytest.raises(WarehouseBusy, match="SALESPULSE_DUCKDB_LOCK_TIMEOUT.*PostgreSQL"):
        engine.connect()
    engine.dispose()
    holder.wait(timeout=30)


def test_a_bulk_read_gives_the_rows_a_plain_read_gives(warehouse_url: str) -> None:
    """``read_sql_file(..., bulk=True)`` takes DuckDB's columnar result instead of rows through SQLAlchemy:
    the same rows and values, names in any script, parameters bound."""
    from salespulse.warehouse import _read_bulk, get_engine, read_frame

    sql = (
        "select * from (values ('C1', '北京贸易', date '2026-01-02', 1.5), "
        "('C2', 'Müller', date '2026-02-03', null), ('C3', 'x', date '2026-03-04', 2.0)) "
        "as t (customer_id, customer_name, order_date, amount) "
        "where order_date < :before"
    )
    engine = get_engine(warehouse_url)
    with engine.connect() as conn:
        plain = read_frame(conn, sql, {"before": date(2026, 3, 1)})
        bulk = _read_bulk(conn, sql, {"before": date(2026, 3, 1)})
    engine.dispose()
    assert list(bulk["customer_name"]) == ["北京贸易", "Müller"]
    for frame in (plain, bulk):
        frame["order_date"] = pd.to_datetime(frame["order_date"])
    pd.testing.assert_frame_equal(bulk, plain, check_dtype=False)
