"""Bring your own data: a mapping file turns a user's files into the SalesPulse model, with no Python.

A mapping is a YAML file (see ``include/mappings/``). It names the source files, and for each model entity
says where each column comes from. DuckDB reads the files and evaluates the mapping, so a mapping can
rename, parse dates in the user's format, set a constant currency, translate codes through a lookup table,
filter, and aggregate (one invoice-line file can yield customers, products, orders and lines)::

    version: 1
    source:
      path: ../data              # relative to the mapping file; SALESPULSE_SOURCE_DIR overrides it
      tables:
        lines: {file: "sales-*.csv", delimiter: ";", file_row_number: true}
    lookups:
      country_code: {Deutschland: DE, Frankreich: FR}
    entities:
      orders:
        from: lines
        group_by: [Belegnr]                                     # source columns by name, or {sql: ...}
        columns:
          order_id: Belegnr                                   # a source column, by name
          order_date: {column: Belegdatum, format: "%d.%m.%Y"}  # a date in the user's format
          currency: {value: EUR}                                # a constant
          country: {lookup: country_code, column: Land}         # a code translated by a lookup
          status: {sql: "case when Storno then 'cancelled' else 'completed' end"}  # any DuckDB expression

Every lookup is also a SQL macro, ``lookup_<name>(x)``, for use inside ``sql`` expressions.
A value a date format cannot read is passed on as the original text, so the loader quarantines the row
with the reason (``type_<column>``) instead of losing it. A CSV column whose every value is a number (or a
boolean) arrives as one, so ``Quantity * UnitPrice`` needs no cast; any other column, dates included,
arrives as text (``types: text`` on a table keeps every column text). The loader casts each mapped value to
the model's type and quarantines one that does not cast, with its text; an id read as a float keeps its
integer text (``18102``, not ``18102.0``).
A mapping DuckDB refuses is a MappingError naming the entity, the column and its expression.

Mapping expressions are SQL, so a mapping runs in a sandbox (:meth:`SourceMapping.connect`): it reads the
files it declares and nothing else, and runs one SELECT at a time (docs/security.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import yaml

from salespulse.config import MAPPINGS_DIR
from salespulse.csvfiles import check_lines
from salespulse.errors import PermanentError
from salespulse.model import ENTITY_BY_NAME, Entity
from salespulse.warehouse import quote_identifier, sql_literal

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLE_OPTIONS = {"file", "delimiter", "header", "encoding", "file_row_number", "format", "types"}
_ENTITY_OPTIONS = {"from", "where", "group_by", "columns", "synthetic"}
# The column each mapped row carries, when the entity names synthetic columns: 1 for the first of rows that
# are otherwise identical, 2, 3, ... for the copies, which the loader quarantines as exact_duplicate.
COPY_COLUMN = "_copy"
_ISO_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"


class MappingError(PermanentError, ValueError):
    """The mapping file is not valid; the message names the file and the place."""


@dataclass(frozen=True)
class SourceTable:
    name: str
    file: str
    delimiter: str | None = None
    header: bool = True
    encoding: str = "utf-8"
    file_row_number: bool = False
    types: str = "detect"  # CSV: "detect" numbers and booleans, or "text" for every column

    def files(self, folder: Path) -> list[Path]:
        """The files this table reads: ``file`` is a name or a glob pattern inside the mapping's folder."""
        if Path(self.file).is_absolute() or ".." in Path(self.file).parts:
            raise MappingError(f"source table {self.name!r}: file {self.file!r} must be inside {folder}")
        found = sorted(p for p in folder.glob(self.file) if p.is_file())
        if not found:
            raise MappingError(f"source table {self.name!r}: no file matches {self.file!r} in {folder}")
        return found

    def unreadable_line(self, folder: Path) -> str | None:
        """The first CSV line that does not fit its file's header (too many or too few fields, an unclosed
        quote), named by file and line; DuckDB's own detection would take such a line for the header or
        stop with no line named."""
        if self.file.endswith(".parquet") or not self.header:
            return None
        for path in self.files(folder):
            if problem := check_lines(path, self.encoding, self.delimiter):
                return problem
        return None

    def reader(self, folder: Path) -> str:
        """The DuckDB table function that reads this table's file(s), by their exact paths."""
        pattern = "[" + ", ".join(sql_literal(str(p)) for p in self.files(folder)) + "]"
        if self.file.endswith(".parquet"):
            numbered = ", file_row_number = true" if self.file_row_number else ""
            return f"read_parquet({pattern}, union_by_name = true{numbered})"
        if self.types == "text":
            typing = ["all_varchar = true"]
        else:
            # Numbers and booleans as such, detected over every row, so a column is a number only when
            # every value is one: "00123" or "12,5" keep the column text. Dates stay text: their format
            # is the user's to give (``format``), never guessed (01/02 is January or February).
            typing = ["sample_size = -1", "auto_type_candidates = ['BOOLEAN', 'BIGINT', 'DOUBLE', 'VARCHAR']"]
        options: list[str] = [
            *typing,
            f"header = {sql_literal(self.header)}",
            f"encoding = {sql_literal(self.encoding)}",
            "union_by_name = true",
        ]
        if self.delimiter:
            options.append(f"delim = {sql_literal(self.delimiter)}")
        if self.file_row_number:
            # CSV has no file_row_number; row order is kept by the reader, so number the rows as read.
            numbered = "select *, row_number() over () - 1 as file_row_number"
            return f"({numbered} from read_csv({pattern}, {', '.join(options)}))"
        return f"read_csv({pattern}, {', '.join(options)})"


@dataclass(frozen=True)
class EntityMapping:
    entity: Entity
    source_table: str
    columns: dict[str, str]  # model column -> SQL expression
    where: str | None = None
    group_by: tuple[str, ...] = ()
    # Columns the mapping makes up (a line number from the row's position): rows equal in every other
    # column are exact duplicates, numbered by COPY_COLUMN.
    synthetic: tuple[str, ...] = ()

    def select_sql(self, reader: str) -> str:
        expressions = ",\n    ".join(
            f"{expr} as {quote_identifier(name)}" for name, expr in self.columns.items()
        )
        sql = f"select\n    {expressions}\nfrom {reader} as source"
        if self.where:
            sql += f"\nwhere {self.where}"
        if self.group_by:
            sql += "\ngroup by " + ", ".join(self.group_by)
        return sql


@dataclass(frozen=True)
class SourceMapping:
    """A parsed mapping file."""

    path: Path
    name: str
    folder: Path
    tables: dict[str, SourceTable]
    lookups: dict[str, dict[str, Any]] = field(default_factory=dict)
    entities: dict[str, EntityMapping] = field(default_factory=dict)

    def connect(self, entity_name: str) -> duckdb.DuckDBPyConnection:
        """The sandbox an entity's mapping runs in: an in-memory DuckDB with the lookups as macros that may
        read the entity's source files and nothing else. No other file, no network, no extension, no
        ATTACH, and its settings locked, so an expression cannot open what the sandbox closed."""
        files = self.tables[self.entities[entity_name].source_table].files(self.folder)
        con = duckdb.connect()
        for name, table in self.lookups.items():
            cases = " ".join(f"when {sql_literal(k)} then {sql_literal(v)}" for k, v in table.items())
            con.execute(f"create macro lookup_{name}(x) as (case cast(x as varchar) {cases} else null end)")
        paths = "[" + ", ".join(sql_literal(str(p)) for p in files) + "]"
        for setting in (
            f"allowed_paths = {paths}",
            "enable_external_access = false",
            "autoinstall_known_extensions = false",
            "autoload_known_extensions = false",
            "lock_configuration = true",
        ):
            con.execute(f"set {setting}")
        return con

    def run(self, con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
        """Run one query the mapping built: exactly one SELECT, never a second statement smuggled in."""
        kinds = [statement.type for statement in con.extract_statements(sql)]
        if kinds != [duckdb.StatementType.SELECT]:
            raise MappingError(f"{self.path}: a mapping may only select; got {[k.name for k in kinds]}")
        return con.sql(sql, params=params or [])

    def entity_sql(self, entity_name: str) -> str:
        mapping = self.entities[entity_name]
        sql = mapping.select_sql(self.tables[mapping.source_table].reader(self.folder))
        if not mapping.synthetic:
            return sql
        same = ", ".join(quote_identifier(c) for c in mapping.columns if c not in mapping.synthetic)
        order = ", ".join(quote_identifier(c) for c in mapping.synthetic)
        copy = f"row_number() over (partition by {same} order by {order}) as {COPY_COLUMN}"
        return f"select *, {copy} from ({sql}) as numbered"

    def iter_entity(
        self,
        entity_name: str,
        where: str = "true",
        params: list[Any] | None = None,
        chunk_rows: int = 500_000,
    ) -> Iterator[pd.DataFrame]:
        """The mapped rows of one entity, filtered by ``where`` over the model's columns, in chunks."""
        table = self.tables[self.entities[entity_name].source_table]
        if problem := table.unreadable_line(self.folder):
            raise MappingError(
                f"{self.path}: entity {entity_name!r}: source table {table.name!r}: {problem}; "
                "correct or remove that line"
            )
        con = self.connect(entity_name)
        try:
            sql = f"select * from ({self.entity_sql(entity_name)}) as mapped where {where}"
            reader = self.run(con, sql, params).to_arrow_reader(chunk_rows)
            for batch in reader:
                yield batch.to_pandas()
        except duckdb.Error as exc:
            reason = self._culprit(con, entity_name, exc)
            raise MappingError(f"{self.path}: entity {entity_name!r} could not be read: {reason}") from exc
        finally:
            con.close()

    def _culprit(self, con: duckdb.DuckDBPyConnection, entity_name: str, error: duckdb.Error) -> str:
        """Which mapped column's expression DuckDB refused, found by binding each alone (``limit 0`` reads
        nothing), with the first line of DuckDB's message; the whole message when no single column fails."""
        mapping = self.entities[entity_name]
        reader = self.tables[mapping.source_table].reader(self.folder)
        for name, expression in mapping.columns.items():
            probe = EntityMapping(
                mapping.entity, mapping.source_table, {name: expression}, mapping.where, mapping.group_by
            )
            try:
                self.run(con, probe.select_sql(reader) + "\nlimit 0").fetchall()
            except duckdb.Error as column_error:
                reason = str(column_error).strip().splitlines()[0]
                return f"column {name!r} = {expression}: {reason}"
        return str(error)


def one_expression(where: str, expression: str, clause: str = "select {} as x from source") -> str:
    """Check that a mapping's SQL is one expression in one SELECT, not a way to run statements of its own
    (``1 = 0; copy ... to 'file'; select``): what the sandbox blocks at run time is refused here, naming
    the mapping key."""
    try:
        statements = duckdb.extract_statements(clause.format(expression))
    except duckdb.Error as error:
        raise MappingError(
            f"{where}: not an expression DuckDB reads: {str(error).splitlines()[0]}"
        ) from error
    if [statement.type for statement in statements] != [duckdb.StatementType.SELECT]:
        kinds = ", ".join(statement.type.name for statement in statements)
        raise MappingError(f"{where}: must be a single expression; {expression!r} makes statements {kinds}")
    return expression


def _column_expression(where: str, spec: Any) -> str:
    try:
        return _expression(where, spec)
    except MappingError:
        raise
    except ValueError as error:  # an empty or NUL-bearing column name
        raise MappingError(f"{where}: {error}") from error


def _expression(where: str, spec: Any) -> str:
    if isinstance(spec, str):
        return f"source.{quote_identifier(spec)}"
    if not isinstance(spec, dict) or len(set(spec) - {"format"}) != 1:
        raise MappingError(
            f"{where}: expected a column name or one of {{column}}, {{column, format}}, {{value}}, "
            f"{{lookup, column}}, {{sql}}; got {spec!r}"
        )
    if "value" in spec:
        return sql_literal(spec["value"])
    if "sql" in spec:
        expression = one_expression(where, f"({spec['sql']})")
    elif "column" in spec:
        expression = f"source.{quote_identifier(spec['column'])}"
    else:
        raise MappingError(f"{where}: unknown column spec {spec!r}")
    if "lookup" in spec:
        raise MappingError(f"{where}: a lookup needs a column: {{lookup: name, column: X}}")
    if "format" in spec:
        text = f"cast({expression} as varchar)"
        parsed = (
            f"strftime(try_strptime({text}, {sql_literal(spec['format'])}), {sql_literal(_ISO_TIMESTAMP)})"
        )
        expression = f"coalesce({parsed}, {text})"
    return expression


def _synthetic(where: str, names: Any, columns: Mapping[str, str]) -> tuple[str, ...]:
    if isinstance(names, str) or not all(name in columns for name in names) or len(names) >= len(columns):
        raise MappingError(f"{where}.synthetic: a list of some of the entity's mapped columns, got {names!r}")
    return tuple(names)


def _lookup_expression(where: str, spec: dict[str, Any], lookups: Mapping[str, Any]) -> str:
    name = spec["lookup"]
    if name not in lookups:
        raise MappingError(f"{where}: no lookup named {name!r}; defined: {sorted(lookups)}")
    rest = {k: v for k, v in spec.items() if k != "lookup"}
    if set(rest) != {"column"} and set(rest) != {"sql"}:
        raise MappingError(f"{where}: a lookup takes exactly one of column or sql, got {spec!r}")
    return f"lookup_{name}({_column_expression(where, rest)})"


def load_mapping(path: Path | str, source_dir: Path | str | None = None) -> SourceMapping:
    """Read and check a mapping file, by path or by the name of one in ``include/mappings/``.

    ``source_dir`` (``SALESPULSE_SOURCE_DIR`` in the settings) overrides the folder the mapping's files
    are read from.
    """
    path = Path(path)
    if not path.exists() and (MAPPINGS_DIR / f"{path}.yaml").exists():
        path = MAPPINGS_DIR / f"{path}.yaml"  # a bare name: one of the project's own mappings
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MappingError(f"{path}: cannot read the mapping: {exc}") from exc
    if not isinstance(document, dict) or document.get("version") != 1:
        raise MappingError(f"{path}: a mapping needs 'version: 1' at the top")
    source = document.get("source") or {}
    folder = Path(source_dir) if source_dir else (path.parent / source.get("path", ".")).resolve()
    tables = {}
    for name, spec in (source.get("tables") or {}).items():
        spec = {"file": spec} if isinstance(spec, str) else dict(spec)
        unknown = set(spec) - _TABLE_OPTIONS
        if not _NAME.match(str(name)):
            raise MappingError(f"{path}: source table {name!r}: a name is letters, digits and _ only")
        if unknown or "file" not in spec:
            raise MappingError(
                f"{path}: source table {name!r}: needs 'file'; unknown options {sorted(unknown)}"
            )
        spec.pop("format", None)
        if spec.get("types", "detect") not in ("detect", "text"):
            raise MappingError(f"{path}: source table {name!r}: types must be detect or text")
        tables[name] = SourceTable(name=name, **spec)
    lookups = document.get("lookups") or {}
    for name in lookups:
        if not _NAME.match(name) or not isinstance(lookups[name], dict):
            raise MappingError(f"{path}: lookup {name!r} must be a name with a key: value table")
    entities = {}
    for entity_name, spec in (document.get("entities") or {}).items():
        where = f"{path}: entities.{entity_name}"
        if entity_name not in ENTITY_BY_NAME:
            raise MappingError(f"{where}: not a model entity; known: {sorted(ENTITY_BY_NAME)}")
        entity = ENTITY_BY_NAME[entity_name]
        unknown = set(spec) - _ENTITY_OPTIONS
        if unknown:
            raise MappingError(f"{where}: unknown option(s) {sorted(unknown)}")
        if spec.get("from") not in tables:
            raise MappingError(f"{where}: 'from' must name a source table; defined: {sorted(tables)}")
        columns = {}
        for column_name, column_spec in (spec.get("columns") or {}).items():
            if column_name not in entity.column_names:
                raise MappingError(f"{where}.columns: {column_name!r} is not a column of {entity_name}")
            at = f"{where}.columns.{column_name}"
            if isinstance(column_spec, dict) and "lookup" in column_spec:
                columns[column_name] = _lookup_expression(at, column_spec, lookups)
            else:
                columns[column_name] = _column_expression(at, column_spec)
        missing = [c for c in entity.required_columns if c not in columns]
        if missing:
            raise MappingError(f"{where}: required column(s) {missing} are not mapped")
        entities[entity_name] = EntityMapping(
            entity=entity,
            source_table=spec["from"],
            columns=columns,
            where=None
            if spec.get("where") is None
            else one_expression(f"{where}.where", str(spec["where"]), "select 1 from source where {}"),
            # Entries read like columns: a name is a source column (quoted, spaces and all), {sql: ...} an
            # expression.
            group_by=tuple(_column_expression(f"{where}.group_by", g) for g in spec.get("group_by") or ()),
            synthetic=_synthetic(where, spec.get("synthetic") or (), columns),
        )
    return SourceMapping(
        path=path,
        name=str(document.get("name", path.stem)),
        folder=folder,
        tables=tables,
        lookups=lookups,
        entities=entities,
    )
