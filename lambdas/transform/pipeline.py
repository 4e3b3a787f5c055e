"""Bronze bytes -> silver Parquet + quarantine lines: the transform of one object, start to end.

`transform_stream` is the entry point (the Lambda's app.py calls it). The path of the bytes:

  blocks.py       decompress, cut into blocks of whole lines
  pipeline.py     sniff the format; per block: the fast path, one Arrow read of the whole block
  locate.py       a block that fails its read: find and reject its bad lines, accept the rest
  row_checks.py   settle: the accepted rows' timestamps and required fields, checked per block
  sinks.py        rows -> silver Parquet with lineage columns; rejects -> quarantine records
  diagnose.py     why one line is bad, in the event's terms; arrow_read.py: every Arrow read
  line_index.py   where the lines of a block are (numpy)

Words used here:
- fast path: a block that is valid UTF-8, not careful (line_index.py) and whose previous block
  had no bad lines goes through Arrow's JSON reader with the type's explicit schema, untouched by
  Python. Anything else goes to `Locator.block`.
- stage / settle: parsed rows are staged as they are accepted (possibly several pieces of a block)
  and settled once per block: row_checks runs on all of them at once, the rows it refuses go to
  quarantine and the rest to silver.
- sniffing: the format is taken from the content, not the file name (a `.json` holding JSONL and a
  `.jsonl` holding an array both work; the mismatch is noted). A JSON array or one JSON document is
  read whole, up to `max_json_bytes`, and its elements take the JSONL path re-serialized as lines.
- line numbers: 1-based lines of the bronze object; for a JSON array, 1-based element indexes.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

from lambdas.shared.schemas import EventSchema
from lambdas.transform import arrow_read
from lambdas.transform.blocks import BOM, DEFAULT_BLOCK_BYTES, Chunks, LongLine, whole_line_blocks
from lambdas.transform.diagnose import Diagnoser
from lambdas.transform.line_index import Lines, is_utf8, scan_block
from lambdas.transform.locate import Locator, Suspects
from lambdas.transform.results import TransformResult, UnreadableObject
from lambdas.transform.row_checks import RowChecks, read_schema
from lambdas.transform.sinks import Quarantine, SilverWriter

DEFAULT_MAX_JSON_BYTES = 64 << 20


class ObjectTransform:
    """The state of one object's transform: its sinks, what the screen has learned, staged rows."""

    def __init__(self, *, schema: EventSchema, source_key: str, parquet_out, quarantine_out: BinaryIO,
                 ingested_at: dt.datetime, row_group_rows: int, max_json_bytes: int, block_bytes: int):
        self.max_json_bytes = max_json_bytes
        self.block_bytes = block_bytes
        self.read_schema = read_schema(schema)
        self.parse_options = pj.ParseOptions(explicit_schema=self.read_schema, unexpected_field_behavior="ignore")
        self.checks = RowChecks(schema)
        self.silver = SilverWriter(schema=schema, source_key=source_key, parquet_out=parquet_out,
                                   ingested_at=ingested_at, row_group_rows=row_group_rows)
        self.quarantine = Quarantine(quarantine_out)
        self.suspects = Suspects(self.read_schema)
        self.locator = Locator(parse_options=self.parse_options, suspects=self.suspects,
                               diagnose=Diagnoser(schema.arrow), quarantine=self.quarantine, accept=self.stage)
        self.staged: list[tuple[pa.Table, np.ndarray, object]] = []
        self.dirty = False  # the last block had bad lines: screen the next one first
        self.result = TransformResult()

    # ---- JSONL blocks ------------------------------------------------------------------------------
    def block(self, data: bytes, first_line: int) -> int:
        """A block starting at line number `first_line`; returns the number of newlines in it."""
        newlines, careful = scan_block(data)
        before = self.quarantine.rejected
        self._read_block(data, first_line, newlines, careful)
        self.suspects.block_done()
        # Bad lines come in runs: after a block with some, the next is screened before it is
        # read, which saves a failed read when it has some too (and costs a screen when not).
        self.dirty = self.quarantine.rejected > before
        self.settle()
        return len(newlines)

    def _read_block(self, data: bytes, first_line: int, newlines: np.ndarray, careful: bool) -> None:
        """The fast path, or the locator for a block that cannot take it."""
        n_lines = len(newlines) + (0 if data.endswith(b"\n") else 1)
        if careful or self.dirty:
            self.locator.block(data, first_line, newlines, None, dirty=self.dirty)
            return
        if not is_utf8(data):  # Arrow's JSON reader does not check; invalid bytes must not reach silver
            self.locator.block(data, first_line, newlines, None, utf8=False)
            return
        try:
            table = arrow_read.read_one_block(data, self.parse_options)
        except pa.ArrowInvalid as exc:
            self.locator.block(data, first_line, newlines, exc, utf8=True)
            return
        if table.num_rows != n_lines:  # a line holding two JSON values
            self.locator.block(data, first_line, newlines, None, utf8=True, two_values=True)
            return
        lines = np.arange(first_line, first_line + n_lines, dtype=np.int64)
        split: list[bytes] = []

        def raw_of(i: int) -> bytes:  # split only when a row is rejected
            if not split:
                split.extend(data.split(b"\n"))
            return split[i]

        self.stage(table, lines, raw_of)

    def long_line(self, line_no: int, line: LongLine) -> None:
        self.quarantine.reject(line_no, line.preview + b"...",
                               f"line longer than {self.max_json_bytes} bytes ({line.size} bytes)")

    # ---- staged rows ---------------------------------------------------------------------------
    def stage(self, table: pa.Table, lines: np.ndarray, raw_of) -> None:
        """Stage parsed rows (line numbers `lines`, raw bytes by row index via `raw_of`)."""
        if table.num_rows:
            self.staged.append((table, lines, raw_of))

    def settle(self) -> None:
        """Check the staged rows in one vectorized pass and emit them, sending rows with a bad
        timestamp or a missing required field to quarantine."""
        if not self.staged:
            return
        parts, self.staged = self.staged, []
        if len(parts) == 1:
            table, lines, raw_of = parts[0]
        else:
            table = pa.concat_tables([part[0] for part in parts])
            lines = np.concatenate([part[1] for part in parts])
            bounds = np.cumsum([part[0].num_rows for part in parts])

            def raw_of(i: int) -> bytes:
                k = int(np.searchsorted(bounds, i, side="right"))
                return parts[k][2](i - (int(bounds[k - 1]) if k else 0))

        table, problems = self.checks.check(table)
        if not problems:
            self.silver.emit(table, lines)
            return
        drop = sorted(problems)
        for idx in drop:
            raw = raw_of(idx)
            if raw.strip() == b"null":  # Arrow reads a `null` line as a row of nulls
                reason = "line is a JSON null, expected an object"
            else:
                reason = "; ".join(problems[idx])
            self.quarantine.reject(int(lines[idx]), raw, reason)
        self.silver.emit(table, lines, drop)

    # ---- whole documents ---------------------------------------------------------------------------
    def document(self, data: bytes) -> None:
        """A JSON array of objects, or one JSON object, read whole."""
        try:
            value = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise UnreadableObject(f"JSON document is not valid UTF-8 at byte {exc.start}") from None
        except ValueError as exc:
            raise UnreadableObject(f"not JSON: {exc}") from None
        if isinstance(value, dict):
            self.locator.single(1, json.dumps(value, ensure_ascii=False).encode("utf-8"))
            return
        if not isinstance(value, list):
            raise UnreadableObject(f"JSON document is a {type(value).__name__}, expected objects")
        group: list[tuple[int, bytes]] = []
        size = 0
        for index, element in enumerate(value, start=1):
            raw = json.dumps(element, ensure_ascii=False).encode("utf-8")
            if not isinstance(element, dict):
                kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
                    type(element), "number")
                self.quarantine.reject(index, raw, f"array element is a JSON {kind}, expected an object")
                continue
            group.append((index, raw))
            size += len(raw)
            if size >= self.block_bytes:
                self.locator.read(Lines.of(group))
                self.settle()
                group, size = [], 0
        self.locator.read(Lines.of(group))

    def close(self) -> TransformResult:
        self.settle()
        self.quarantine.write()
        self.silver.close()
        result = self.result
        result.rows, result.rejected = self.silver.rows, self.quarantine.rejected
        result.blank_lines, result.probes = self.locator.blank_lines, self.locator.probes
        result.first_rejects = self.quarantine.first_rejects
        return result


def transform_stream(
    raw: BinaryIO,
    *,
    schema: EventSchema,
    source_key: str,
    gzipped: bool,
    parquet_out,
    quarantine_out: BinaryIO,
    ingested_at: dt.datetime | None = None,
    row_group_rows: int = 131072,
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    suffix_format: str = "jsonl",
) -> TransformResult:
    """Transform one bronze object's bytes. Writes Parquet to `parquet_out` (a path or file) and
    quarantine JSON lines to `quarantine_out`; raises UnreadableObject for a failed item."""
    ingested_at = ingested_at or dt.datetime.now(dt.UTC)
    t = ObjectTransform(schema=schema, source_key=source_key, parquet_out=parquet_out,
                        quarantine_out=quarantine_out, ingested_at=ingested_at, row_group_rows=row_group_rows,
                        max_json_bytes=max_json_bytes, block_bytes=block_bytes)
    chunks = Chunks(raw, gzipped=gzipped, size=block_bytes)
    try:
        _run(t, chunks, suffix_format)
    except BaseException:
        t.silver.abort()
        raise
    t.result.bytes_in = chunks.bytes_in
    result = t.close()
    if result.rows == 0 and result.rejected and t.quarantine.syntax_rejects == result.rejected:
        first = result.first_rejects[0]
        raise UnreadableObject(
            f"no line is JSON ({result.rejected} line(s) rejected; line {first[0]}: {first[1]})"
        )
    return result


def _run(t: ObjectTransform, chunks: Iterator[bytes], suffix_format: str) -> None:
    buf = b""
    for chunk in chunks:
        buf += chunk
        if buf.startswith(BOM):
            buf = buf[len(BOM):]
            t.result.notes.append("UTF-8 byte order mark removed")
        head = buf.lstrip()
        if not head:
            continue
        mode = _sniff(head)
        if mode in ("array", "maybe-document"):
            whole = _read_all(t, buf, chunks)
            if mode == "maybe-document" and not _is_document(whole):
                t.result.fmt = "jsonl"  # JSONL after all: the line path, all of it one block
                _jsonl(t, whole, iter(()))
                _note_mismatch(t, suffix_format)
                return
            t.result.fmt = "json"
            _note_mismatch(t, suffix_format)
            t.document(whole)
            return
        t.result.fmt = "jsonl"
        _note_mismatch(t, suffix_format)
        _jsonl(t, buf, chunks)
        return
    t.result.notes.append("empty object")


def _jsonl(t: ObjectTransform, head: bytes, chunks: Iterator[bytes]) -> None:
    line_no = 1
    for item in whole_line_blocks(head, chunks, block_bytes=t.block_bytes, max_line_bytes=t.max_json_bytes):
        if isinstance(item, LongLine):
            t.long_line(line_no, item)
            line_no += 1
            continue
        line_no += t.block(item, line_no)
        t.quarantine.write()


def _sniff(head: bytes) -> str:
    if head[:1] == b"[":
        return "array"
    if head[:1] == b"{":
        first_line = head.split(b"\n", 1)[0]
        if b"\n" in head:
            try:
                json.loads(first_line)
                return "jsonl"
            except ValueError:
                return "maybe-document"  # a pretty-printed object spans lines
        return "jsonl"  # first line longer than one chunk: stream it as JSONL
    return "jsonl"


def _is_document(data: bytes) -> bool:
    try:
        json.loads(data)
        return True
    except ValueError:
        return False


def _note_mismatch(t: ObjectTransform, suffix_format: str) -> None:
    if suffix_format != t.result.fmt:
        t.result.notes.append(f"content is {t.result.fmt} although the file name says {suffix_format}")


def _read_all(t: ObjectTransform, buf: bytes, chunks: Iterator[bytes]) -> bytes:
    parts = [buf]
    size = len(buf)
    for chunk in chunks:
        size += len(chunk)
        if size > t.max_json_bytes:
            raise UnreadableObject(
                f"JSON document is larger than the {t.max_json_bytes} byte limit (ELT_MAX_JSON_BYTES); "
                "split it or write it as JSONL, which streams at any size"
            )
        parts.append(chunk)
    return b"".join(parts)


def transform_bytes(data: bytes, **kwargs) -> tuple[TransformResult, pa.Table, list[dict]]:
    """Convenience for tests and tools: transform in memory, return result, table and rejects."""
    out, quarantine = io.BytesIO(), io.BytesIO()
    result = transform_stream(io.BytesIO(data), parquet_out=out, quarantine_out=quarantine, **kwargs)
    table = pq.read_table(pa.BufferReader(out.getbuffer()))  # a buffer, not a file object (arrow #34314)
    rejects = [json.loads(line) for line in quarantine.getvalue().splitlines()]
    return result, table, rejects
