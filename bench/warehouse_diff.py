"""Compare two SalesPulse DuckDB warehouses table by table: did a change leave the results as they were?

    .venv/bin/python -m bench.warehouse_diff OLD.duckdb NEW.duckdb [--root-a DIR --root-b DIR]

Every table and view of every layer is read whole; columns that record wall-clock time are dropped, run ids
that embed the time they were made (``manual__<timestamp>``) and the checkouts' paths (``--root-a``,
``--root-b``) are normalised, and rows are sorted. A table is *identical*, *numerically close* (same
text, numbers within a relative difference, printed) or *different*; tables only one side has are listed.
DuckDB's parallel sums are not bit-for-bit repeatable, so compare a run with a second run of the same code
to see the noise floor before reading a difference as a change.
"""

from __future__ import annotations

import argparse
import re

import duckdb
import pandas as pd

LAYERS = ("raw", "core", "quality", "audit", "marts", "reporting")
CLOCK_COLUMNS = {
    "created_at", "started_at", "finished_at", "validated_at", "quarantined_at", "_loaded_at",
    "extract_seconds", "validate_seconds", "write_seconds",
}  # fmt: skip
RUN_ID = re.compile(r"manual__\d{4}-\d\d-\d\dT[\d:.]+\+00:00")


def read_tables(path: str, root: str | None) -> dict[str, pd.DataFrame]:
    con = duckdb.connect(path, read_only=True)
    names = con.sql(
        "select table_schema || '.' || table_name from information_schema.tables "
        f"where table_schema in {LAYERS} order by 1"
    ).fetchall()
    tables = {}
    for (name,) in names:
        schema, table = name.split(".")
        frame = con.sql(f'select * from {schema}."{table}"').df()
        frame = frame.drop(columns=[c for c in frame.columns if c in CLOCK_COLUMNS])
        for column in [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]:
            text = frame[column].astype(str).str.replace(RUN_ID, "manual__<time>", regex=True)
            frame[column] = text.str.replace(root, "<root>", regex=False) if root else text
        tables[name] = frame.sort_values(list(frame.columns), key=lambda s: s.astype(str)).reset_index(
            drop=True
        )
    con.close()
    return tables


def compare(a: pd.DataFrame, b: pd.DataFrame) -> tuple[str, float]:
    if a.shape != b.shape or list(a.columns) != list(b.columns):
        return "different", float("nan")
    if a.astype(str).equals(b.astype(str)):
        return "identical", 0.0
    numeric = [
        c for c in a.columns if pd.api.types.is_numeric_dtype(a[c]) and pd.api.types.is_numeric_dtype(b[c])
    ]
    rest = [c for c in a.columns if c not in numeric]
    if not a[rest].astype(str).equals(b[rest].astype(str)):
        return "different", float("nan")
    x, y = a[numeric].astype(float), b[numeric].astype(float)
    relative = ((x - y).abs() / x.abs().clip(lower=1e-9)).max().max()
    return "numerically close", float(relative)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--root-a")
    parser.add_argument("--root-b")
    args = parser.parse_args(argv)
    left, right = read_tables(args.a, args.root_a), read_tables(args.b, args.root_b)
    counts: dict[str, int] = {}
    for name in sorted(left.keys() | right.keys()):
        if name not in left or name not in right:
            verdict, relative = ("only in " + ("b" if name not in left else "a")), float("nan")
        else:
            verdict, relative = compare(left[name], right[name])
        counts[verdict] = counts.get(verdict, 0) + 1
        if verdict != "identical":
            detail = f" (max relative difference {relative:.1e})" if verdict == "numerically close" else ""
            print(f"{name}: {verdict}{detail}")
    print(", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items())))
    return 1 if counts.get("different") else 0


if __name__ == "__main__":
    raise SystemExit(main())
