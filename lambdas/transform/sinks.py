"""Where a transform's output goes: silver Parquet rows with lineage columns, quarantine records.

Words used here:
- lineage columns: `_source_key`, `_line` (the row's line number in the bronze object) and
  `_ingested_at`, added to every silver row (DESIGN.md, Silver columns).
- pending: rows waiting to fill a Parquet row group of `row_group_rows`.
- quarantine record: one JSON line {"line", "reason", "raw"} per rejected line ("raw" is the line
  as text, invalid UTF-8 escaped, at most RAW_PREVIEW_CHARS of it; "raw_truncated_from_bytes" then
  says how long it was). Records are written in line order within each block, whichever path
  found them.
- quarantine cap: at most `max_records` records and `max_bytes` bytes per object (ELT_QUARANTINE_MAX_LINES,
  ELT_QUARANTINE_MAX_BYTES), so a flood of bad lines cannot fill the Lambda's /tmp. Rejects past
  the cap are counted, not kept (nor built: no per-line work once full), and one summary record at
  the end says how many were dropped and which lines they were ({"line": first dropped line,
  "reason": "quarantine cap reached: ...", "raw": "", "dropped_lines": n, "last_dropped_line": m}).
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
DEFAULT_QUARANTINE_MAX_LINES = 10_000
DEFAULT_QUARANTINE_MAX_BYTES = 64 << 20

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
        the (sorted) indexes `drop`. The rows around them are copied into one piece here, a
        block at a time: zero-copy slices would leave a row group of a piece per dropped row,
        which `flush` would then copy into one all at once (with bad lines in every block, that
        copy of a whole row group was the transform's peak memory)."""
        if len(drop):
            bounds = [-1, *drop, table.num_rows]
            runs = [table.slice(a + 1, b - a - 1) for a, b in zip(bounds, bounds[1:], strict=False) if b > a + 1]
            if not runs:
                return
            table = pa.concat_tables(runs).combine_chunks()  # a copy of each run, not a take per row
            lines = np.delete(lines, drop)
        n = table.num_rows
        if n == 0:
            return
        table = table.append_column(self.silver.field("_source_key"), pa.repeat(self.source_scalar, n))
        table = table.append_column(self.silver.field("_line"), pa.array(lines, type=pa.int64()))
        table = table.append_column(self.silver.field("_ingested_at"), pa.repeat(self.ingested_at, n))
        self.pending.append(table)
        self.pending_rows += n
        self.rows += n
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
    """Rejected lines of one bronze object -> quarantine records, up to the quarantine cap."""

    def __init__(self, out: BinaryIO, *, max_records: int = DEFAULT_QUARANTINE_MAX_LINES,
                 max_bytes: int = DEFAULT_QUARANTINE_MAX_BYTES):
        self.out = out
        self.max_records, self.max_bytes = max_records, max_bytes
        self.records: list[tuple[int, bytes]] = []  # not written yet: (line number, record)
        self.kept = 0  # records kept (held or written)
        self.kept_bytes = 0
        self.full = max_records <= 0
        self.rejected = 0
        self.syntax_rejects = 0  # rejects that are not JSON at all
        self.first_rejects: list[tuple[int, str]] = []
        self.subject = "line"  # what a reason calls the rejected thing ("array element" for arrays)
        self.dropped = 0  # rejects past the cap
        self.first_dropped = self.last_dropped = 0
        self._last: tuple[str, bytes] | None = None  # the last record's (reason, raw) and its encoding after "line"
        self._rest = b""

    def reject(self, line_no: int, raw: bytes, reason: str, *, syntax: bool = False) -> None:
        if self.subject != "line" and reason.startswith("line "):
            reason = self.subject + reason[4:]
        self.rejected += 1
        self.syntax_rejects += syntax
        if len(self.first_rejects) < FIRST_REJECTS:
            self.first_rejects.append((int(line_no), reason))
        if self.full:
            self._drop(int(line_no), int(line_no), 1)
            return
        if (reason, raw) != self._last:  # a flood repeats one line and reason: encode them once
            text = raw[:RAW_PREVIEW_CHARS].decode("utf-8", errors="backslashreplace")
            rest = {"reason": reason, "raw": text}
            if len(raw) > RAW_PREVIEW_CHARS:
                rest["raw_truncated_from_bytes"] = len(raw)
            self._last, self._rest = (reason, raw), _RECORD.encode(rest)[1:].encode("utf-8") + b"\n"
        encoded = b'{"line": %d, ' % int(line_no) + self._rest  # what encoding the whole record gives
        if self.kept_bytes + len(encoded) > self.max_bytes:
            self.full = True
            self._drop(int(line_no), int(line_no), 1)
            return
        self.records.append((int(line_no), encoded))
        self.kept += 1
        self.kept_bytes += len(encoded)
        self.full = self.kept >= self.max_records

    def reject_many(self, line_numbers: np.ndarray, reason: str) -> None:
        """Rejects past the cap, counted at once (`reason`: the first one's, for the result)."""
        if not len(line_numbers):
            return
        if len(self.first_rejects) < FIRST_REJECTS:
            self.first_rejects.append((int(line_numbers[0]), reason))
        self.rejected += len(line_numbers)
        self._drop(int(line_numbers.min()), int(line_numbers.max()), len(line_numbers))

    def _drop(self, low: int, high: int, count: int) -> None:
        self.first_dropped = min(self.first_dropped, low) if self.dropped else low
        self.last_dropped = max(self.last_dropped, high)
        self.dropped += count

    def write(self) -> None:
        """Write the records held so far, in line order (called per block)."""
        self.records.sort(key=lambda r: r[0])
        self.out.write(b"".join(record for _, record in self.records))
        self.records = []

    def close(self) -> None:
        """Write what is held, then the summary of what the cap dropped, if anything."""
        self.write()
        if self.dropped:
            reason = (f"quarantine cap reached: {self.dropped} more rejected line(s) between lines "
                      f"{self.first_dropped} and {self.last_dropped} are not kept (the cap is {self.max_records} "
                      f"records or {self.max_bytes} bytes per object: ELT_QUARANTINE_MAX_LINES, "
                      "ELT_QUARANTINE_MAX_BYTES); their rows are not in silver either")
            self.out.write(_RECORD.encode({"line": self.first_dropped, "reason": reason, "raw": "",
                                           "dropped_lines": self.dropped,
                                           "last_dropped_line": self.last_dropped}).encode("utf-8") + b"\n")
