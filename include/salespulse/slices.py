"""Large extracts in bounded memory: spill the source's chunks to Parquet, then cut them into slices.

The gate validates a batch as a whole (row counts, shares, uniqueness, means), so a batch must fit in
memory. An extract larger than ``max_rows`` (a first load, a full refresh, a backfill of a long gap) is
written to a temporary folder chunk by chunk as it streams in, then cut by ``updated_at`` into slices of
at most ``max_rows`` rows, oldest first. Each slice is then loaded as a batch of its own, in its own
transaction, so memory stays bounded by the slice size however long the extract is. Rows sharing one
``updated_at`` are never split across slices; rows whose ``updated_at`` cannot be read go in the last.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from salespulse.warehouse import sql_literal


@dataclass(frozen=True)
class Slice:
    number: int
    lower: pd.Timestamp | None  # inclusive; None: from the beginning
    upper: pd.Timestamp | None  # exclusive; None: to the end, and rows without a readable updated_at
    rows: int


class Spill:
    """A temporary folder of Parquet chunks, read back slice by slice. Use as a context manager."""

    def __init__(self, chunks: Iterable[pd.DataFrame]) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="salespulse-spill-"))
        self.rows = 0
        for number, chunk in enumerate(chunks):
            self._write(number, chunk)

    def _write(self, number: int, chunk: pd.DataFrame) -> None:
        chunk.to_parquet(self.folder / f"{number:06d}.parquet", index=False)
        self.rows += len(chunk)

    def _relation(self) -> str:
        pattern = sql_literal(str(self.folder / "*.parquet"))
        return (
            f"(select *, try_cast(updated_at as timestamp) as _slice_ts "
            f"from read_parquet({pattern}, union_by_name = true))"
        )

    def slices(self, max_rows: int) -> list[Slice]:
        """Cut points over ``updated_at`` so that each slice holds at most ``max_rows`` rows (a single
        instant with more rows than that makes one larger slice rather than being split)."""
        with duckdb.connect() as con:
            query = f"select _slice_ts as ts, count(*) as n from {self._relation()} group by 1"
            counts = con.sql(f"{query} order by 1 nulls last").df()
        stamps, sizes = counts["ts"].to_numpy(), counts["n"].to_numpy(dtype=np.int64)
        slices: list[Slice] = []
        lower: pd.Timestamp | None = None
        rows = 0
        for stamp, size in zip(stamps, sizes, strict=True):
            is_null = pd.isna(stamp)
            if rows and rows + size > max_rows and not is_null:
                upper = pd.Timestamp(stamp)
                slices.append(Slice(len(slices) + 1, lower, upper, rows))
                lower, rows = upper, 0
            rows += int(size)
        slices.append(Slice(len(slices) + 1, lower, None, rows))
        return slices

    def read(self, part: Slice) -> pd.DataFrame:
        conditions, params = [], []
        if part.lower is not None:
            conditions.append("_slice_ts >= ?")
            params.append(part.lower.to_pydatetime())
        if part.upper is not None:
            conditions.append("_slice_ts < ?")
            params.append(part.upper.to_pydatetime())
        where = " and ".join(conditions) if conditions else "true"
        if part.upper is None and part.lower is not None:
            where = f"({where}) or _slice_ts is null"
        with duckdb.connect() as con:
            frame = con.sql(f"select * from {self._relation()} where {where}", params=params).df()
        return frame.drop(columns="_slice_ts")

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
