"""Untrusted input runs no SQL: a file's headers are names, whatever they contain, and a mapping file runs
in a sandbox that reads the files it declares and nothing else, one SELECT at a time. Each attack here
worked before (issue 14); now each is a column name like any other or an error naming the mapping key."""

from __future__ import annotations

import json
import socket
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from salespulse.generator import generate_crm
from salespulse.ingest import ingest_from_source
from salespulse.mapping import MappingError, load_mapping
from salespulse.schema import create_schema
from salespulse.sources import FileSource
from salespulse.warehouse import get_engine, quote_identifier, read_frame

AS_OF = date(2026, 11, 1)
HOSTNAME = socket.gethostname()
INJECTED = 'updated_at", (select content from read_text(\'/etc/hostname\')) as "notes", "updated_at'


def test_a_header_is_a_name_whatever_it_holds(tmp_path: Path, warehouse_url: str) -> None:
    """A header that closes the quote and selects a local file, one with a quote, one with a semicolon:
    the entity loads, each header's values are kept under its own name in raw._extra, and no file's
    content reaches the warehouse."""
    customers = generate_crm(n_customers=10, seed=1, defect_rate=0)["customers"]
    customers[INJECTED] = "a"
    customers['note"s'] = "b"
    customers["x; drop table core.dim_customer; --"] = "c"
    (tmp_path / "exports").mkdir()
    customers.to_csv(tmp_path / "exports" / "customers.csv", index=False)
    engine = get_engine(warehouse_url)
    create_schema(engine)

    result = ingest_from_source(
        engine, FileSource(tmp_path / "exports", prefer="csv"), "customers", AS_OF, "r1"
    )

    assert result.rows_loaded == len(customers)
    extras = read_frame(engine, "select _extra from raw.customers")["_extra"].map(json.loads)
    assert {tuple(sorted(extra.values())) for extra in extras} == {("a", "b", "c")}
    everything = read_frame(engine, "select * from raw.customers").astype(str)
    assert not everything.apply(lambda column: column.str.contains(HOSTNAME, regex=False)).any().any()
    assert int(read_frame(engine, "select count(*) as n from core.dim_customer")["n"].iloc[0]) == 10
    engine.dispose()


def test_the_one_quoting_helper_doubles_quotes_and_refuses_empty_names() -> None:
    assert quote_identifier('a"b') == '"a""b"'
    assert quote_identifier("Customer ID") == '"Customer ID"'
    for bad in ("", "a\x00b"):
        with pytest.raises(ValueError):
            quote_identifier(bad)


LINES = "Invoice;Customer;Name;Day\n1;C1;Ann;2026-10-01\n2;C2;Bob;2026-10-02\n"
MAPPING = """
version: 1
source:
  path: .
  tables:
    lines: {file: FILE, delimiter: ";"}
entities:
  customers:
    from: lines
    WHERE
    columns:
      customer_id: Customer
      customer_name: NAME
      country_code: {value: DE}
      region: {value: Europe}
      signup_date: Day
      updated_at: Day
"""


def _mapping(tmp_path: Path, name: str = "Name", where: str = "", file: str = "lines.csv") -> Path:
    (tmp_path / "lines.csv").write_text(LINES, encoding="utf-8")
    text = MAPPING.replace("NAME", name).replace("WHERE", where).replace("FILE", file)
    (tmp_path / "m.yaml").write_text(text, encoding="utf-8")
    return tmp_path / "m.yaml"


def _read(path: Path) -> pd.DataFrame:
    return pd.concat(load_mapping(path).iter_entity("customers"))


def test_the_sandboxed_mapping_still_reads_its_own_files(tmp_path: Path) -> None:
    rows = _read(_mapping(tmp_path))
    assert rows["customer_name"].tolist() == ["Ann", "Bob"]


@pytest.mark.parametrize(
    "expression",
    [
        "{sql: \"(select string_agg(column0, ',') from read_csv('/etc/passwd', header = false))\"}",
        "{sql: \"(select content from read_text('/proc/self/environ'))\"}",
        "{sql: \"(select content from read_text('/etc/hostname'))\"}",
        "{sql: \"(select count(*) from glob('/etc/*'))\"}",
        "{sql: \"(select content from read_text('m.yaml'))\"}",  # a file beside the data, not declared
    ],
)
def test_an_expression_cannot_read_a_file_the_mapping_does_not_declare(tmp_path: Path, expression: str):
    with pytest.raises(MappingError) as error:
        _read(_mapping(tmp_path, name=expression))
    message = str(error.value)
    assert "column 'customer_name'" in message and "Permission Error" in message, message


@pytest.mark.parametrize(
    ("where", "key"),
    [
        ("where: \"true; copy (select 'pwned' as x) to 'pwned.csv'; select 1\"", "customers.where"),
        ("where: \"true; attach 'other.db' as other\"", "customers.where"),
        ('where: "true; install httpfs; load httpfs"', "customers.where"),
        ('where: "true; set enable_external_access = true"', "customers.where"),
        ('where: "true; pragma version"', "customers.where"),
    ],
)
def test_a_mapping_cannot_smuggle_in_a_statement(tmp_path: Path, where: str, key: str) -> None:
    with pytest.raises(MappingError, match=rf"entities\.{key}: must be a single expression"):
        load_mapping(_mapping(tmp_path, where=where))
    assert not (tmp_path / "pwned.csv").exists()


def test_a_column_expression_cannot_close_its_parenthesis_and_run_another_statement(tmp_path: Path):
    name = "{sql: \"1); copy (select 1) to 'pwned.csv'; select (1\"}"
    with pytest.raises(MappingError, match=r"entities\.customers\.columns\.customer_name: must be a single"):
        load_mapping(_mapping(tmp_path, name=name))
    assert not (tmp_path / "pwned.csv").exists()


@pytest.mark.parametrize("file", ["/etc/passwd", "../../../etc/passwd", "nothing-*.csv"])
def test_a_source_file_outside_the_mapping_folder_or_missing_is_refused(tmp_path: Path, file: str) -> None:
    with pytest.raises(MappingError, match="source table 'lines'"):
        _read(_mapping(tmp_path, file=file))


def test_a_table_name_with_a_quote_says_what_a_name_may_hold(tmp_path: Path) -> None:
    path = _mapping(tmp_path)
    path.write_text(path.read_text().replace("    lines: {file", '    li"nes: {file'), encoding="utf-8")
    with pytest.raises(MappingError, match="a name is letters, digits and _ only"):
        load_mapping(path)


def test_validation_results_and_data_docs_carry_no_personal_data(tmp_path: Path, duckdb_url: str) -> None:
    """A malformed email, a malformed phone and two customers sharing an email fail their checks (warnings:
    the rows load), but neither the stored validation results nor the Data Docs HTML the alerts link to
    hold the values."""
    customers = generate_crm(n_customers=10, seed=2, defect_rate=0)["customers"].astype({"phone": object})
    malformed, phone, shared = "zhang.wei.at.example", "+86 !!! 1388 0000 999", "li.na@example.cn"
    customers.loc[0, "email"] = malformed
    customers.loc[1, "phone"] = phone
    customers.loc[[2, 3], "email"] = shared
    (tmp_path / "exports").mkdir()
    customers.to_csv(tmp_path / "exports" / "customers.csv", index=False)
    engine = get_engine(duckdb_url)
    create_schema(engine)
    docs = tmp_path / "gx"
    result = ingest_from_source(
        engine, FileSource(tmp_path / "exports", prefer="csv"), "customers", AS_OF, "r1", docs_root=docs
    )
    results = read_frame(engine, "select * from quality.validation_results").astype(str)
    failed = set(results.loc[results["success"].str.lower() == "false", "rule_name"])
    engine.dispose()

    assert {"email_format", "phone_format", "likely_duplicate_by_email"} <= failed
    assert result.rows_loaded == 10
    secrets = (malformed, phone, shared, "1388")
    for value in secrets:
        assert not results.apply(lambda column, v=value: column.str.contains(v, regex=False)).any().any()
    pages = [p for p in docs.rglob("*") if p.is_file() and p.suffix in {".html", ".json"}]
    assert len(pages) > 3
    leaking = {str(p.relative_to(docs)) for p in pages for v in secrets if v in p.read_text(errors="replace")}
    assert leaking == set()
