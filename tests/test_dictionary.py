"""The reporting schema is documented from one source, completely and with the right types, and on
PostgreSQL a read-only role can read it and nothing else."""

from __future__ import annotations

import tempfile
import uuid
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from salespulse.dictionary import (
    MARKDOWN_PATH,
    load_dictionary,
    logical_type,
    render_markdown,
)
from salespulse.ingest import ingest_from_source
from salespulse.schema import create_schema, grant_pii_reader, grant_reporting_reader
from salespulse.sources import FileSource
from salespulse.warehouse import get_engine, read_frame


def test_every_reporting_column_is_documented_with_its_type(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    create_schema(engine)
    actual = read_frame(
        engine,
        "select table_name, column_name, data_type from information_schema.columns "
        "where table_schema = 'reporting' order by table_name, ordinal_position",
    )
    documented = {(c.view, c.name): c.type for view in load_dictionary() for c in view.columns}
    found = {(row.table_name, row.column_name): logical_type(row.data_type) for row in actual.itertuples()}
    assert sorted(set(found) - set(documented)) == []  # a column nobody described
    assert sorted(set(documented) - set(found)) == []  # a described column that does not exist
    assert {key: kind for key, kind in found.items() if documented[key] != kind} == {}
    # The column order in the dictionary is the views' own.
    for view in load_dictionary():
        listed = actual.loc[actual.table_name == view.name, "column_name"].tolist()
        assert listed == [c.name for c in view.columns], view.name


def test_the_dictionary_is_in_the_warehouse_as_comments_and_a_table(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    create_schema(engine)
    create_schema(engine)  # idempotent: refilled, not doubled
    table = read_frame(engine, "select * from reporting.data_dictionary")
    views = load_dictionary()
    assert len(table) == sum(len(v.columns) for v in views)
    meaning = table.set_index(["view_name", "column_name"])["description"]
    assert meaning[("variance", "variance_abs")].startswith("actual - forecast")
    if engine.dialect.name == "postgresql":
        comment = "select col_description('reporting.variance'::regclass, 14) as c"
    else:
        comment = (
            "select comment as c from duckdb_columns() "
            "where schema_name = 'reporting' and table_name = 'variance' and column_name = 'variance_abs'"
        )
    assert read_frame(engine, comment)["c"].iloc[0] == meaning[("variance", "variance_abs")]


def test_the_markdown_dictionary_is_current() -> None:
    assert MARKDOWN_PATH.read_text(encoding="utf-8") == render_markdown(), (
        "docs/data_dictionary.md is stale: run python -m salespulse.dictionary"
    )


@pytest.mark.parametrize(
    ("raw", "logical"),
    [
        ("VARCHAR", "text"),
        ("character varying", "text"),
        ("HUGEINT", "integer"),
        ("numeric", "number"),
        ("DECIMAL(18,3)", "number"),
        ("timestamp without time zone", "timestamp"),
    ],
)
def test_engine_types_map_to_logical_types(raw: str, logical: str) -> None:
    assert logical_type(raw) == logical


def test_a_read_only_role_reads_reporting_and_nothing_else(postgres_url: str, small_crm) -> None:
    """Connect as a BI user granted the reader role: every reporting view answers; writing anything, or
    reading raw, core, quality, audit or marts, is refused."""
    owner = get_engine(postgres_url)
    create_schema(owner)
    suffix = uuid.uuid4().hex[:8]
    reader, bi_user = f"sp_reader_{suffix}", f"sp_bi_{suffix}"
    with owner.begin() as conn:
        conn.execute(text(f"create table public.probe_{suffix} (x int)"))
    try:
        assert grant_reporting_reader(owner, reader)
        assert grant_reporting_reader(owner, reader)  # again: idempotent
        with owner.begin() as conn:
            conn.execute(text(f"create role {bi_user} login in role {reader}"))
        folder = Path(tempfile.mkdtemp())
        small_crm.write_exports(folder, formats=("parquet",))
        ingest_from_source(owner, FileSource(folder), "customers", date(2026, 11, 1), "r1")

        bi = create_engine(make_url(postgres_url).set(username=bi_user, password=None))
        with bi.connect() as conn:
            for view in load_dictionary():
                conn.execute(text(f"select count(*) from reporting.{view.name}")).scalar_one()
            assert conn.execute(text("select count(*) from reporting.ingestion_batches")).scalar_one() == 1
        refused = [
            "select * from raw.customers",
            "select * from core.dim_customer",
            "select * from quality.quarantine",
            "select * from audit.load_batches",
            "select * from marts.customer_rfm",
            "select * from reporting_pii.customers",  # personal data: the PII role only
            f"select * from public.probe_{suffix}",
            "insert into reporting.data_dictionary values ('x', 1, 'x', 'text', 'x')",
            "delete from reporting.data_dictionary",
            "update reporting.data_dictionary set description = 'x'",
            "create table reporting.mine (x int)",
            "create table public.mine (x int)",
            "create view reporting.mine as select 1 as x",
            "drop view reporting.variance",
            "insert into core.dim_customer (customer_id) values ('x')",
            "truncate raw.customers",
            # PostgreSQL's default TEMP privilege, revoked from PUBLIC at set-up.
            "create temporary table mine (x int)",
            "create function pg_temp.mine() returns int as 'select 1' language sql",
        ]
        for statement in refused:
            with bi.connect() as conn, pytest.raises(DBAPIError, match="permission denied|must be owner"):
                conn.execute(text(statement))
        bi.dispose()
    finally:
        with owner.begin() as conn:
            for role in (bi_user, reader):
                exists = conn.execute(text("select 1 from pg_roles where rolname = :r"), {"r": role}).first()
                if exists:
                    conn.execute(text(f"drop owned by {role}"))
                    conn.execute(text(f"drop role {role}"))
        owner.dispose()


def test_the_role_is_skipped_on_duckdb(duckdb_url: str) -> None:
    assert grant_reporting_reader(get_engine(duckdb_url), "salespulse_reader") is False


def test_names_reach_only_the_pii_role_and_the_bi_role_sees_pseudonyms(postgres_url: str) -> None:
    """A BI user with the reader role sees a pseudonym where the name was; one also granted the PII role
    reads the names, Chinese included, by customer id, and nothing more than the reader may."""
    owner = get_engine(postgres_url)
    create_schema(owner)
    suffix = uuid.uuid4().hex[:8]
    reader, pii, analyst = f"sp_reader_{suffix}", f"sp_pii_{suffix}", f"sp_ops_{suffix}"
    try:
        assert grant_reporting_reader(owner, reader) and grant_pii_reader(owner, pii)
        with owner.begin() as conn:
            conn.execute(text(f"create role {analyst} login in role {reader}, {pii}"))
            conn.execute(
                text(
                    "insert into core.dim_customer (customer_id, customer_name, country_code, region, "
                    "signup_date, updated_at, _batch_id, _run_id, _loaded_at) values ('C1', :name, 'CN', "
                    "'APAC', '2025-01-01', '2025-01-01', 'b', 'r', '2025-01-01')"
                ),
                {"name": "北京贸易有限公司"},
            )
            conn.execute(
                text(
                    "insert into marts.customer_rfm (snapshot_date, customer_id, recency_days, frequency, "
                    "monetary, r_score, f_score, m_score, rfm_cell, rfm_segment, run_id, created_at) "
                    "values ('2026-11-01', 'C1', 3, 2, 10.0, 5, 4, 3, '543', 'Champions', 'r', now())"
                )
            )
        ops = create_engine(make_url(postgres_url).set(username=analyst, password=None))
        with ops.connect() as conn:
            shown = conn.execute(text("select customer_name from reporting.customer_segments")).scalar_one()
            named = conn.execute(
                text("select customer_name, pseudonym from reporting_pii.customers where customer_id = 'C1'")
            ).one()
        ops.dispose()
        assert shown.startswith("Customer ") and "北京" not in shown
        assert named == ("北京贸易有限公司", shown)
    finally:
        with owner.begin() as conn:
            for role in (analyst, pii, reader):
                if conn.execute(text("select 1 from pg_roles where rolname = :r"), {"r": role}).first():
                    conn.execute(text(f"drop owned by {role}"))
                    conn.execute(text(f"drop role {role}"))
        owner.dispose()
