"""The reporting schema's data dictionary, from one source (``include/sql/reporting/dictionary.yaml``).

From it come: comments on every reporting view and column in the warehouse (which BI tools show), the
table ``reporting.data_dictionary``, and ``docs/data_dictionary.md`` (``python -m salespulse.dictionary``).
It also grants the reporting schema, and nothing else, to a read-only role on PostgreSQL.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from sqlalchemy import Connection, text

from salespulse.config import REPO_ROOT, SQL_DIR
from salespulse.warehouse import bulk_insert, check_identifier, sql_literal

log = logging.getLogger(__name__)

DICTIONARY_PATH = SQL_DIR / "reporting" / "dictionary.yaml"
MARKDOWN_PATH = REPO_ROOT / "docs" / "data_dictionary.md"
LOGICAL_TYPES = ("text", "integer", "number", "date", "timestamp", "boolean")
# Engine types (DuckDB and PostgreSQL, as information_schema names them) -> logical types.
_ENGINE_TYPES = {
    "varchar": "text",
    "character varying": "text",
    "text": "text",
    "bigint": "integer",
    "integer": "integer",
    "smallint": "integer",
    "hugeint": "integer",
    "double": "number",
    "double precision": "number",
    "numeric": "number",
    "real": "number",
    "float": "number",
    "date": "date",
    "timestamp": "timestamp",
    "timestamp without time zone": "timestamp",
    "boolean": "boolean",
}


@dataclass(frozen=True)
class ColumnDoc:
    view: str
    ordinal: int
    name: str
    type: str
    description: str


@dataclass(frozen=True)
class ViewDoc:
    name: str
    description: str
    columns: tuple[ColumnDoc, ...]


def logical_type(engine_type: str) -> str:
    base = engine_type.lower().split("(")[0].strip()
    if base.startswith("decimal"):
        return "number"
    return _ENGINE_TYPES.get(base, base)


def load_dictionary(path: Path = DICTIONARY_PATH) -> list[ViewDoc]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    views = []
    for view, spec in document["objects"].items():
        columns = []
        for ordinal, (name, entry) in enumerate(spec["columns"].items(), start=1):
            if not isinstance(entry, list) or len(entry) != 2:
                raise ValueError(f"{path}: {view}.{name} must be [type, description], got {entry!r}")
            kind, description = entry
            if kind not in LOGICAL_TYPES:
                raise ValueError(f"{path}: {view}.{name} has type {kind!r}; use one of {LOGICAL_TYPES}")
            columns.append(ColumnDoc(view, ordinal, name, kind, str(description)))
        views.append(ViewDoc(view, str(spec["description"]), tuple(columns)))
    return views


def apply_dictionary(conn: Connection, views: list[ViewDoc] | None = None) -> int:
    """Comment every documented view and column, and refill ``reporting.data_dictionary``."""
    views = views or load_dictionary()
    listing = "select table_name, table_type from information_schema.tables where table_schema = 'reporting'"
    kinds: dict[str, str] = {str(name): str(kind) for name, kind in conn.execute(text(listing)).all()}
    for view in views:
        name = f"reporting.{check_identifier(view.name)}"
        kind = "table" if "TABLE" in str(kinds.get(view.name, "")).upper() else "view"
        # COMMENT takes no bound parameters; the text comes from the project's own dictionary file.
        conn.execute(text(f"comment on {kind} {name} is {sql_literal(view.description)}"))
        for column in view.columns:
            target = f"{name}.{check_identifier(column.name)}"
            conn.execute(text(f"comment on column {target} is {sql_literal(column.description)}"))
    rows = pd.DataFrame(
        [
            {
                "view_name": c.view,
                "ordinal": c.ordinal,
                "column_name": c.name,
                "data_type": c.type,
                "description": c.description,
            }
            for view in views
            for c in view.columns
        ]
    )
    conn.execute(text("delete from reporting.data_dictionary"))
    return bulk_insert(conn, "reporting", "data_dictionary", rows)


def _cell(value: str) -> str:
    """Text for a Markdown table cell: a pipe would end the cell."""
    return value.replace("|", "\\|")


def render_markdown(views: list[ViewDoc] | None = None) -> str:
    views = views or load_dictionary()
    lines = [
        "# Reporting schema: data dictionary",
        "",
        "Generated from `include/sql/reporting/dictionary.yaml` by `python -m salespulse.dictionary`;"
        " do not edit by hand.",
        "The same text is in the warehouse, as comments on each view and column and in the table"
        " `reporting.data_dictionary`.",
        "Column names are a contract: columns are added, never renamed or dropped.",
        "",
    ]
    for view in views:
        lines += [f"## `reporting.{view.name}`", "", view.description, "", "| column | type | meaning |"]
        lines.append("| --- | --- | --- |")
        lines += [f"| `{c.name}` | {c.type} | {_cell(c.description)} |" for c in view.columns]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write docs/data_dictionary.md from the dictionary file.")
    parser.add_argument("--out", type=Path, default=MARKDOWN_PATH)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render_markdown(), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
