"""Setting up the warehouse, in order: schemas, tables and views layer by layer, the reporting views'
documentation (:mod:`salespulse.dictionary`), and on PostgreSQL the read-only reporting role.

Every statement is idempotent, so set-up runs at the start of every ingest.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from salespulse.dictionary import apply_dictionary
from salespulse.warehouse import check_identifier, dialect_of, read_frame, run_sql_file

log = logging.getLogger(__name__)

# Statements run at set-up, in this order. Every one is idempotent.
SCHEMA_FILES = (
    "create_schemas.sql",
    "raw/create_tables.sql",
    "core/create_tables.sql",
    "core/create_views.sql",
    "quality/create_tables.sql",
    "audit/create_tables.sql",
    "marts/create_tables.sql",
    "marts/create_views.sql",
    "reporting/create_tables.sql",
    "reporting/create_views.sql",
)

# Derived tables whose shape changed: (table, a column only the new shape has). Their rows are rebuilt from
# kept inputs (forecast snapshots, core), so an old-shaped one is dropped and recreated empty; re-run the
# DAG that fills it for the periods wanted.
RESHAPED_DERIVED_TABLES = (("marts.fct_variance", "flag_forecast"), ("marts.sales_series", "grain"))


def _drop_reshaped_tables(conn: Connection) -> None:
    columns = read_frame(
        conn,
        "select table_schema || '.' || table_name as qualified, column_name from information_schema.columns "
        "where table_schema = 'marts'",
    )
    cascade = " cascade" if dialect_of(conn) == "postgresql" else ""
    for qualified, new_column in RESHAPED_DERIVED_TABLES:
        existing = set(columns.loc[columns["qualified"] == qualified, "column_name"])
        if existing and new_column not in existing:
            conn.execute(text(f"drop table {qualified}{cascade}"))


def create_schema(engine: Engine) -> None:
    """Create every schema, table and view. Safe to run any number of times."""
    with engine.begin() as conn:
        _drop_reshaped_tables(conn)
        for relative_path in SCHEMA_FILES:
            run_sql_file(conn, relative_path)
        apply_dictionary(conn)


def grant_reporting_reader(engine: Engine, role: str) -> bool:
    """PostgreSQL: a role that may read the reporting schema and nothing else (created NOLOGIN if missing;
    BI users are roles that log in and are granted it). Views run with their owner's rights, so the role
    needs no grant on the tables underneath. Returns False, with a warning, where the warehouse user may not
    create or grant roles."""
    granted = _grant_role(engine, role, "reporting/grant_reader.sql")
    if granted:
        _no_temporary_tables_for_public(engine)
    return granted


def grant_pii_reader(engine: Engine, role: str) -> bool:
    """PostgreSQL: the role that may see personal data: ``reporting_pii`` (names, emails, phone numbers by
    customer id) and nothing else. The reporting views show pseudonyms, so a BI role without it sees no
    name. Returns False, with a warning, where the warehouse user may not create or grant roles."""
    return _grant_role(engine, role, "reporting/grant_pii_reader.sql")


def _grant_role(engine: Engine, role: str, grants: str) -> bool:
    if engine.dialect.name != "postgresql":
        return False
    check_identifier(role)
    try:
        with engine.begin() as conn:
            exists = conn.execute(
                text("select 1 from pg_roles where rolname = :role"), {"role": role}
            ).first()
            if not exists:
                conn.execute(text(f"create role {role} nologin"))
            run_sql_file(conn, grants, identifiers={"role": role})
    except DBAPIError as exc:
        log.warning("could not set up the role %r (%s): %s", role, grants, exc.orig)
        return False
    return True


def _no_temporary_tables_for_public(engine: Engine) -> None:
    """PostgreSQL lets every role (PUBLIC) create temporary tables and functions in a database. In the
    warehouse only the pipeline's own user keeps that right (its reads use a temporary table), so a BI role
    can create nothing at all. Needs the database's owner; otherwise a warning says what to run."""
    try:
        with engine.begin() as conn:
            run_sql_file(conn, "reporting/revoke_temporary.sql")
    except DBAPIError as exc:
        log.warning(
            "could not revoke TEMPORARY on the warehouse database from PUBLIC (the database owner can: "
            "include/sql/reporting/revoke_temporary.sql): %s",
            exc.orig,
        )
