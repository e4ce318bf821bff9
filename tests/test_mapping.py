"""Bring your own data: a user's CSV with its own column names, date format, delimiter and currency is
loaded through a mapping file, with no code; a bad mapping is refused with the place it is wrong."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from salespulse.ingest import ingest_from_source
from salespulse.mapping import MappingError, load_mapping
from salespulse.schema import create_schema
from salespulse.sources import MappedSource
from salespulse.warehouse import get_engine, read_frame

AS_OF = date(2026, 11, 1)

KUNDEN = """Kundennr;Name;Land;Anmeldedatum;Geändert
K-1;Müller GmbH;Deutschland;03.02.2024;05.02.2024 10:30
K-2;北京贸易有限公司;China;17.11.2025;17.11.2025 08:00
K-3;Dupont SA;Frankreich;31.02.2025;01.03.2025 09:15
"""

MAPPING = """
version: 1
name: kunden
source:
  path: .
  tables:
    kunden: {file: kunden.csv, delimiter: ";"}
lookups:
  land:
    Deutschland: DE
    Frankreich: FR
    China: CN
  region:
    DE: Europe
    FR: Europe
    CN: Asia Pacific
entities:
  customers:
    from: kunden
    columns:
      customer_id: Kundennr
      customer_name: Name
      country_code: {lookup: land, column: Land}
      region: {sql: "lookup_region(lookup_land(Land))"}
      channel: {value: partner}
      signup_date: {column: Anmeldedatum, format: "%d.%m.%Y"}
      updated_at: {column: Geändert, format: "%d.%m.%Y %H:%M"}
"""


@pytest.fixture
def user_files(tmp_path: Path) -> Path:
    (tmp_path / "kunden.csv").write_text(KUNDEN, encoding="utf-8")
    (tmp_path / "kunden.yaml").write_text(MAPPING, encoding="utf-8")
    return tmp_path


def test_a_users_csv_loads_through_a_mapping(user_files: Path, duckdb_url: str) -> None:
    engine = get_engine(duckdb_url)
    create_schema(engine)
    result = ingest_from_source(engine, MappedSource(user_files / "kunden.yaml"), "customers", AS_OF, "r1")
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (3, 2, 1)
    core = read_frame(
        engine,
        "select customer_id, customer_name, country_code, region, channel, signup_date, updated_at "
        "from core.dim_customer order by customer_id",
    )
    assert core["customer_name"].tolist() == ["Müller GmbH", "北京贸易有限公司"]
    assert core["country_code"].tolist() == ["DE", "CN"]
    assert core["region"].tolist() == ["Europe", "Asia Pacific"]
    assert set(core["channel"]) == {"partner"}
    assert str(core["signup_date"].iloc[0])[:10] == "2024-02-03"
    assert str(core["updated_at"].iloc[1]) == "2025-11-17 08:00:00"
    # 31 February is not a date: the row is held with the reason and the user's original text.
    held = read_frame(engine, "select record_key, failed_rules, original_row from quality.quarantine")
    assert held["record_key"].tolist() == ["K-3"]
    assert "type_signup_date" in held["failed_rules"].iloc[0]
    assert json.loads(held["original_row"].iloc[0])["signup_date"] == "31.02.2025"


def test_a_currency_can_be_set_for_a_whole_file(user_files: Path) -> None:
    text = MAPPING.replace(
        "entities:\n",
        "entities:\n  orders:\n    from: kunden\n    columns:\n"
        "      order_id: Kundennr\n      customer_id: Kundennr\n"
        "      order_date: {column: Anmeldedatum, format: '%d.%m.%Y'}\n"
        "      status: {value: completed}\n      currency: {value: EUR}\n"
        "      updated_at: {column: Geändert, format: '%d.%m.%Y %H:%M'}\n",
    )
    (user_files / "orders.yaml").write_text(text, encoding="utf-8")
    mapping = load_mapping(user_files / "orders.yaml")
    orders = next(mapping.iter_entity("orders"))
    assert set(orders["currency"]) == {"EUR"} and len(orders) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("customer_id: Kundennr", "customer_key: Kundennr"), "'customer_key' is not a column of customers"),
        (("      customer_id: Kundennr\n", ""), r"required column\(s\) \['customer_id'\] are not mapped"),
        (("lookup: land,", "lookup: country,"), "no lookup named 'country'"),
        (("from: kunden", "from: clients"), "'from' must name a source table"),
        (("customers:\n    from", "prospects:\n    from"), "entities.prospects: not a model entity"),
        (("version: 1", "version: 2"), "version: 1"),
        (("channel: {value: partner}", "channel: {value: partner, sql: x}"), "channel"),
    ],
)
def test_a_bad_mapping_is_refused_with_the_place(user_files: Path, change: tuple[str, str], message: str):
    path = user_files / "bad.yaml"
    path.write_text(MAPPING.replace(*change), encoding="utf-8")
    with pytest.raises(MappingError, match=message):
        load_mapping(path)


def test_a_missing_source_column_names_the_entity(user_files: Path) -> None:
    path = user_files / "typo.yaml"
    path.write_text(MAPPING.replace("customer_name: Name", "customer_name: Nmae"), encoding="utf-8")
    with pytest.raises(MappingError, match="entity 'customers' could not be read.*Nmae"):
        list(load_mapping(path).iter_entity("customers"))


LINES = """Invoice;Customer ID;Name;Amount;Day
I-1;17850;Ann;10.5;2011-01-03
I-2;17850;Ann;4.5;2011-01-09
I-3;13047;Bob;7;2011-01-05
"""

GROUPED = """
version: 1
source:
  path: .
  tables:
    lines: {file: lines.csv, delimiter: ";"}
entities:
  customers:
    from: lines
    group_by: [Customer ID]
    columns:
      customer_id: Customer ID
      customer_name: {sql: "min(Name)"}
      country_code: {value: GB}
      region: {value: EMEA}
      signup_date: {sql: "min(Day)"}
      updated_at: {sql: "max(Day)"}
"""


def test_group_by_takes_column_names_as_columns_do(tmp_path: Path) -> None:
    """A name with a space works under group_by exactly as under columns."""
    (tmp_path / "lines.csv").write_text(LINES, encoding="utf-8")
    (tmp_path / "m.yaml").write_text(GROUPED, encoding="utf-8")
    chunks = list(load_mapping(tmp_path / "m.yaml").iter_entity("customers"))
    rows = pd.concat(chunks).sort_values("customer_id")
    assert rows["customer_id"].astype(str).tolist() == ["13047", "17850"]  # numbers in the CSV
    assert rows["signup_date"].tolist() == ["2011-01-05", "2011-01-03"]


def test_an_expression_duckdb_refuses_is_named_with_its_entity_and_column(tmp_path: Path) -> None:
    """Arithmetic on a text column is refused, and the error says where, in one line."""
    (tmp_path / "lines.csv").write_text(LINES, encoding="utf-8")
    bad = GROUPED.replace('customer_name: {sql: "min(Name)"}', 'customer_name: {sql: "min(Name) - 1"}')
    (tmp_path / "m.yaml").write_text(bad, encoding="utf-8")
    with pytest.raises(MappingError) as error:
        list(load_mapping(tmp_path / "m.yaml").iter_entity("customers"))
    message = str(error.value)
    assert "entity 'customers' could not be read: column 'customer_name' = (min(Name) - 1):" in message
    assert "No function matches" in message and len(message.splitlines()) == 1


TYPED = """Order;Customer;Zip;Qty;Price;Day
1001;13047.0;01234;3;2.50;05/01/2011
1002;17850.0;02345;-2;3;03/01/2011
1003;;N/A;1;1.25;04/01/2011
"""

TYPED_MAPPING = """
version: 1
source:
  path: .
  tables:
    lines: {file: lines.csv, delimiter: ";"TYPES}
entities:
  order_lines:
    from: lines
    columns:
      order_id: Order
      line_number: {value: 1}
      product_id: Zip
      quantity: {sql: "abs(Qty)"}
      unit_price: {sql: "Price * 2"}
      updated_at: {column: Day, format: "%d/%m/%Y"}
"""


def test_csv_numbers_arrive_as_numbers_and_everything_else_as_text(tmp_path: Path) -> None:
    """Arithmetic on a CSV column of numbers needs no cast; a column with leading zeros or a non-number
    stays text, and a date is never guessed: 05/01/2011 is the 5th of January because the format says so."""
    (tmp_path / "lines.csv").write_text(TYPED, encoding="utf-8")
    (tmp_path / "m.yaml").write_text(TYPED_MAPPING.replace("TYPES", ""), encoding="utf-8")
    rows = pd.concat(load_mapping(tmp_path / "m.yaml").iter_entity("order_lines"))
    assert rows["quantity"].tolist() == [3, 2, 1]
    assert rows["unit_price"].tolist() == [5.0, 6.0, 2.5]
    assert rows["product_id"].tolist() == ["01234", "02345", "N/A"]
    assert rows["order_id"].tolist() == [1001, 1002, 1003]
    assert rows["updated_at"].str[:10].tolist() == ["2011-01-05", "2011-01-03", "2011-01-04"]


def test_types_text_keeps_every_csv_column_text(tmp_path: Path) -> None:
    (tmp_path / "lines.csv").write_text(TYPED, encoding="utf-8")
    mapping = TYPED_MAPPING.replace("TYPES", ", types: text").replace('"abs(Qty)"', "\"Qty || '!'\"")
    (tmp_path / "m.yaml").write_text(mapping.replace('"Price * 2"', "Price"), encoding="utf-8")
    rows = pd.concat(load_mapping(tmp_path / "m.yaml").iter_entity("order_lines"))
    assert rows["quantity"].tolist() == ["3!", "-2!", "1!"]
    assert rows["unit_price"].tolist() == ["2.50", "3", "1.25"]
    (tmp_path / "m.yaml").write_text(TYPED_MAPPING.replace("TYPES", ", types: guess"), encoding="utf-8")
    with pytest.raises(MappingError, match="types must be detect or text"):
        load_mapping(tmp_path / "m.yaml")


def test_a_float_id_from_a_csv_keeps_its_integer_text_in_the_warehouse(tmp_path: Path, duckdb_url: str):
    """13047.0 in the file is customer 13047 in core, not 13047.0."""
    (tmp_path / "c.csv").write_text("Id;Name\n13047.0;A\n17850.0;B\n", encoding="utf-8")
    (tmp_path / "m.yaml").write_text(
        "version: 1\nsource: {path: ., tables: {c: {file: c.csv, delimiter: ';'}}}\nentities:\n"
        "  customers: {from: c, columns: {customer_id: Id, customer_name: Name, country_code: {value: DE},"
        " region: {value: Europe}, signup_date: {value: '2025-01-01'}, updated_at: {value: '2026-01-01'}}}\n",
        encoding="utf-8",
    )
    engine = get_engine(duckdb_url)
    create_schema(engine)
    ingest_from_source(engine, MappedSource(tmp_path / "m.yaml"), "customers", AS_OF, "r1")
    ids = read_frame(engine, "select customer_id from core.dim_customer order by 1")["customer_id"].tolist()
    engine.dispose()
    assert ids == ["13047", "17850"]


DOUBLED = """Invoice;Item;Qty;Price;Day
1;A;2;5.0;2026-10-01 09:00
1;A;2;5.0;2026-10-01 09:00
1;A;2;5.0;2026-10-01 09:00
1;B;1;3.0;2026-10-01 09:00
2;A;2;5.0;2026-10-02 10:00
"""


DOUBLED_MAPPING = """
version: 1
source: {path: ., tables: {lines: {file: lines.csv, delimiter: ";"}}}
entities:
  order_lines:
    from: lines
    synthetic: [line_number]
    columns:
      order_id: Invoice
      line_number: {sql: "row_number() over ()"}
      product_id: Item
      quantity: Qty
      unit_price: Price
      updated_at: Day
"""


def test_a_line_exported_twice_is_quarantined_as_an_exact_duplicate(tmp_path: Path, warehouse_url: str):
    """With a made-up line number, lines equal in everything else are copies: the first loads, the
    copies are held as exact_duplicate and counted; the same line on another invoice is no copy."""
    (tmp_path / "lines.csv").write_text(DOUBLED, encoding="utf-8")
    (tmp_path / "m.yaml").write_text(DOUBLED_MAPPING, encoding="utf-8")
    rows = pd.concat(load_mapping(tmp_path / "m.yaml").iter_entity("order_lines"))
    assert sorted(rows["_copy"].tolist()) == [1, 1, 1, 2, 3]
    engine = get_engine(warehouse_url)
    create_schema(engine)
    result = ingest_from_source(engine, MappedSource(tmp_path / "m.yaml"), "order_lines", AS_OF, "r1")
    held = read_frame(engine, "select failed_rules from quality.quarantine")["failed_rules"]
    engine.dispose()
    assert result.rows_read == 5 and result.rows_read == result.rows_loaded + result.rows_quarantined
    assert held.str.contains("exact_duplicate").sum() == 2


def test_synthetic_names_mapped_columns(tmp_path: Path) -> None:
    (tmp_path / "lines.csv").write_text(DOUBLED, encoding="utf-8")
    bad = DOUBLED_MAPPING.replace("synthetic: [line_number]", "synthetic: [nothing]")
    (tmp_path / "m.yaml").write_text(bad, encoding="utf-8")
    with pytest.raises(MappingError, match=r"order_lines\.synthetic: a list of some of the entity's mapped"):
        load_mapping(tmp_path / "m.yaml")
