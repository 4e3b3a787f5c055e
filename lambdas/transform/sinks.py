"""Where a transform's output goes: silver Parquet rows with lineage columns, quarantine records.

Words used here:
- lineage columns: `_source_key`, `_line` (the row's line number in the bronze object) and
  `_ingested_at`, added to every silver row (DESIGN.md, Silver columns).
- pending: rows waiting to fill a Parquet row group of `row_group_rows`.
- quarantine record: one JSON line {"line", "reason", "raw"} per rejected line ("raw" is the line
  as text, invalid UTF-8 escaped, at most RAW_PREVIEW_CHARS of it; "raw_truncated_from_bytes" then
  says how long it was). Records are written in line order within each block, whichever path
  found them.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lambdas.shared.schemas import TS, EventSchema

RAW_PREVIEW_CHARS = 1 << 20  # quarantine keeps at most this much of one rejected line
FIRST_REJECTS = 5  # rejects whose reasons the result carries for the log

_RECORD = json.JSONEncoder(ensure_ascii=False)  # built once, not per record


class SilverWriter:
    """Rows of one bronze object -> one Parquet file, lineage columns added."""

    def __init__(self, *, schema: EventSchema, source_key: str, parquet_out, ingested_at: dt.datetime,
                 row_group_rows: int):
        self.silver = schema.silver
        self.source_scalar = pa.scalar(source_key, type=pa.string())
        self.ingested_at = pa.scalar(ingested_at, type=TS)
        self.row_group_rows = row_group_rows
        self.writer = pq.ParquetWriter(parquet_out, schema.silver, compression="snappy")
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.rows = 0

    def emit(self, table: pa.Table, lines: np.ndarray, drop: list[int] = ()) -> None:
        """Queue rows (line numbers `lines`) with their lineage columns, leaving out the rows at
        the (sorted) indexes `drop` by zero-copy slicing."""
        n = table.num_rows
        if n == 0:
            return
        table = table.append_column(self.silver.field("_source_key"), pa.repeat(self.source_scalar, n))
        table = table.append_column(self.silver.field("_line"), pa.array(lines, type=pa.int64()))
        table = table.append_column(self.silver.field("_ingested_at"), pa.repeat(self.ingested_at, n))
        start = 0
        for idx in [*drop, n]:
            if idx > start:
                self.pending.append(table.slice(start, idx - start))
            start = idx + 1
        self.pending_rows += n - len(drop)
        self.rows += n - len(drop)
        if self.pending_rows >= self.row_group_rows:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            table = pa.concat_tables(self.pending) if len(self.pending) > 1 else self.pending[0]
            chunks = table.column(0).num_chunks
            if chunks > 16 and table.num_rows < 512 * chunks:  # many small pieces write slowly
                table = table.combine_chunks()
            self.writer.write_table(table, row_group_size=self.row_group_rows)
            self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()

    def abort(self) -> None:
        self.writer.close()


class Quarantine:
    """Rejected lines of one bronze object -> quarantine records."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.records: list[tuple[int, bytes]] = []  # not written yet: (line number, record)
        self.rejected = 0
        self.syntax_rejects = 0  # rejects that are not JSON at all
        self.first_rejects: list[tuple[int, str]] = []

    def reject(self, line_no: int, raw: bytes, reason: str, *, syntax: bool = False) -> None:
        text = raw[:RAW_PREVIEW_CHARS].decode("utf-8", errors="backslashreplace")
        record = {"line": int(line_no), "reason": reason, "raw": text}
        if len(raw) > RAW_PREVIEW_CHARS:
            record["raw_truncated_from_bytes"] = len(raw)
        self.records.append((int(line_no), _RECORD.encode(record).encode("utf-8") + b"\n"))
        self.rejected += 1
        self.syntax_rejects += syntax
        if len(self.first_rejects) < FIRST_REJECTS:
            self.first_rejects.append((int(line_no), reason))

    def write(self) -> None:
        """Write the records held so far, in line order (called per block)."""
        self.records.sort(key=lambda r: r[0])
        self.out.write(b"".join(record for _, record in self.records))
        self.records = []
