"""Reading CSV files strictly: the header row is the column list, nothing about the dialect is guessed
from the data rows, and a line that does not fit is reported with its file, line number and text
instead of moving the header, stopping the read or vanishing."""

from __future__ import annotations

import csv
import functools
import gzip
import io
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from salespulse.errors import UnreadableFile
from salespulse.warehouse import sql_literal


def sniff_csv(path: Path, encoding: str, delimiter: str | None = None) -> tuple[str, list[str]]:
    """The delimiter (``delimiter`` if given, else sniffed from the first 64 KiB) and the header row's
    names (a UTF-8 BOM dropped, an empty name made ``column_<position>``, a repeated one numbered)."""
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    read_as = "utf-8-sig" if encoding.replace("-", "").lower() == "utf8" else encoding
    try:
        with opener(path, "rt", encoding=read_as, newline="") as handle:
            sample = handle.read(64 * 1024)
    except UnicodeDecodeError as exc:
        raise UnreadableFile(
            f"{path}: not {encoding} text (byte {exc.start}: {exc.reason}); export the file as UTF-8"
        ) from exc
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise UnreadableFile(f"{path}: the gzip file is truncated or corrupt ({exc})") from exc
    if not sample.strip():
        raise UnreadableFile(f"{path}: the file is empty; a CSV export needs at least its header row")
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    header = next(csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter))
    names: list[str] = []
    for position, name in enumerate(header):
        name = name or f"column_{position + 1}"
        names.append(name if name not in names else f"{name}_{position + 1}")
    return delimiter, names


def strict_reader(path: Path, delimiter: str, header: list[str], encoding: str = "utf-8") -> str:
    """DuckDB's ``read_csv`` over one file with ``header`` as its columns, all text, nothing detected: a
    line with too many or too few fields or an unclosed quote goes to the connection's rejects table
    (:func:`rejected_lines`) and the rest is read."""
    columns = "{" + ", ".join(f"{sql_literal(h)}: 'VARCHAR'" for h in header) + "}"
    return (
        f"read_csv({sql_literal(str(path))}, columns = {columns}, header = true, auto_detect = false, "
        f"delim = {sql_literal(delimiter)}, quote = '\"', escape = '\"', "
        f"encoding = {sql_literal(encoding)}, store_rejects = true)"
    )


def rejected_lines(con: duckdb.DuckDBPyConnection) -> pd.DataFrame | None:
    """The lines the connection's strict readers set aside, one row each: ``where`` (file, line, what was
    wrong) and ``text``; None when there were none."""
    try:
        rejected = con.sql(
            "select s.file_path, e.line, min(e.error_type::varchar) as problem, min(e.csv_line) as text "
            "from reject_errors e join reject_scans s using (scan_id, file_id) "
            "group by all order by all"
        ).df()
    except duckdb.CatalogException:
        return None  # no strict reader ran
    if rejected.empty:
        return None
    where = [f"{r.file_path} line {r.line}: {r.problem.lower()}" for r in rejected.itertuples()]
    return pd.DataFrame({"where": where, "text": rejected["text"].str.rstrip().to_numpy()})


def check_lines(path: Path, encoding: str = "utf-8", delimiter: str | None = None) -> str | None:
    """The first line of ``path`` that does not fit its header (file, line, what, text), or None; a file
    is read once per version (its size and modification time)."""
    stat = path.stat()
    return _check_lines(str(path), stat.st_size, stat.st_mtime_ns, encoding, delimiter)


@functools.lru_cache(maxsize=64)
def _check_lines(name: str, size: int, mtime: int, encoding: str, delimiter: str | None) -> str | None:
    path = Path(name)
    sniffed, header = sniff_csv(path, encoding, delimiter)
    with duckdb.connect() as con:
        con.sql(f"select count(*) from {strict_reader(path, sniffed, header, encoding)}").fetchall()
        rejected = rejected_lines(con)
    if rejected is None:
        return None
    more = f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""
    return f"{rejected['where'].iloc[0]}: {rejected['text'].iloc[0]!r}{more}"
