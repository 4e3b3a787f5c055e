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
  read whole, up to `max_json_bytes`; an array's elements are cut into lines by json_array.py and
  take the JSONL path (or, where that cannot be done safely, are decoded one by one).
- line numbers: 1-based lines of the bronze object; for a JSON array, 1-based element indexes.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import re
import sys
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

from lambdas.shared.schemas import EventSchema
from lambdas.transform import arrow_read
from lambdas.transform.blocks import (
    BOM,
    DEFAULT_BLOCK_BYTES,
    DEFAULT_MAX_OBJECT_BYTES,
    Chunks,
    LongLine,
    whole_line_blocks,
)
from lambdas.transform.diagnose import Diagnoser
from lambdas.transform.drift import Drift
from lambdas.transform.json_array import elements_as_lines
from lambdas.transform.line_index import Lines, all_empty_objects, is_utf8, scan_block
from lambdas.transform.locate import FLOOD_MIN_LINES, UNWORDED_MISSING, Locator, Suspects
from lambdas.transform.results import TransformResult, UnreadableObject
from lambdas.transform.row_checks import RowChecks, read_schema
from lambdas.transform.sinks import (
    DEFAULT_QUARANTINE_MAX_BYTES,
    DEFAULT_QUARANTINE_MAX_LINES,
    Quarantine,
    SilverWriter,
)

DEFAULT_MAX_JSON_BYTES = 64 << 20
_WS = re.compile(r"[ \t\n\r]*")  # JSON's whitespace
_DECODER = json.JSONDecoder()


class ObjectTransform:
    """The state of one object's transform: its sinks, what the screen has learned, staged rows."""

    def __init__(self, *, schema: EventSchema, source_key: str, parquet_out, quarantine_out: BinaryIO,
                 ingested_at: dt.datetime, row_group_rows: int, max_json_bytes: int, block_bytes: int,
                 quarantine_max_lines: int, quarantine_max_bytes: int):
        self.max_json_bytes = max_json_bytes
        self.block_bytes = block_bytes
        self.read_schema = read_schema(schema)
        self.parse_options = pj.ParseOptions(explicit_schema=self.read_schema, unexpected_field_behavior="ignore")
        self.checks = RowChecks(schema)
        self.silver = SilverWriter(schema=schema, source_key=source_key, parquet_out=parquet_out,
                                   ingested_at=ingested_at, row_group_rows=row_group_rows)
        self.quarantine = Quarantine(quarantine_out, max_records=quarantine_max_lines,
                                     max_bytes=quarantine_max_bytes)
        self.suspects = Suspects(self.read_schema)
        self.locator = Locator(parse_options=self.parse_options, suspects=self.suspects,
                               diagnose=Diagnoser(schema.arrow), quarantine=self.quarantine, accept=self.stage,
                               required=tuple(p for p in schema.required if "." not in p))
        self.staged: list[tuple[pa.Table, np.ndarray, object]] = []
        self.dirty = False  # the last block had bad lines: screen the next one first
        self.result = TransformResult()
        self.drift = Drift(schema)
        self._empty_reason: str | None | bool = False  # False: not worked out yet (see empty_reason)

    # ---- JSONL blocks ------------------------------------------------------------------------------
    def block(self, data: bytes, first_line: int) -> int:
        """A block starting at line number `first_line`; returns the number of newlines in it."""
        newlines, careful = scan_block(data)
        self.drift.block(data)
        before = self.quarantine.rejected
        if all_empty_objects(data, newlines) and self.empty_reason() is not None:
            self._empty_objects(data, first_line, len(newlines) + (0 if data.endswith(b"\n") else 1))
        else:
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

    def empty_reason(self) -> str | None:
        """Why the row checks refuse `{}` (None when they accept it), found once by the ordinary
        path: Arrow reads one `{}` line and the row checks word the reason."""
        if self._empty_reason is False:
            table = arrow_read.read_one_block(b"{}", self.parse_options)
            _, problems = self.checks.check(table)
            self._empty_reason = problems.reason(0) if len(problems.rows()) else None
        return self._empty_reason

    def _empty_objects(self, data: bytes, first_line: int, n_lines: int) -> None:
        """A block of only empty objects, when the type requires a field: every line is rejected
        as settle would reject it (same reason and record, counted past the cap), without an Arrow
        read of rows of nulls (about 4 us a row with the full schema) or a Python object per line."""
        reason = self.empty_reason()
        if self.quarantine.full and n_lines >= FLOOD_MIN_LINES:
            reason = UNWORDED_MISSING  # what the locator's narrow read says of the same block
        room = max(0, self.quarantine.max_records - self.quarantine.kept)
        raws = data.split(b"\n", min(room, n_lines) + 1)
        for k in range(n_lines):
            if self.quarantine.full:
                self.quarantine.reject_many(np.arange(first_line + k, first_line + n_lines, dtype=np.int64), reason)
                return
            self.quarantine.reject(first_line + k, raws[k], reason)

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
        drop = problems.rows()
        if not len(drop):
            self.silver.emit(table, lines)
            return
        for k, idx in enumerate(drop.tolist()):
            if self.quarantine.full:  # past the cap: count the rest at once, word nothing
                self.quarantine.reject_many(lines[drop[k:]], problems.reason(idx))
                break
            # (No `null` line gets here: a line that starts with `n` or whitespace makes its block
            # careful, and the locator quarantines every line that starts with `null` unread.)
            self.quarantine.reject(int(lines[idx]), raw_of(idx), problems.reason(idx))
        self.silver.emit(table, lines, drop.tolist())

    # ---- whole documents ---------------------------------------------------------------------------
    def document(self, data: bytes) -> bool:
        """A JSON array of objects, or one JSON object, read whole: False when `data` does not start
        as one (the caller reads it as JSONL). An array is decoded an element at a time, and its
        rows and rejects leave as each block of elements is done, so memory holds the document's
        text and one block, not a Python object per element."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return False  # the line reader finds the lines with invalid bytes
        pos = _WS.match(text).end()
        if text[pos:pos + 1] == "{":
            try:
                value, end = _DECODER.raw_decode(text, pos)
            except (ValueError, RecursionError):
                return False
            if text[end:].strip():
                return False
            self.drift.element(value)
            self.locator.single(1, json.dumps(value, ensure_ascii=False).encode("utf-8"))
            return True
        pos = _WS.match(text, pos + 1).end()
        group: list[tuple[int, bytes]] = []
        size, index, rejected_before, flushed = 0, 0, self.quarantine.rejected, False

        def not_an_array(message: str) -> bool:
            if flushed or self.quarantine.rejected > rejected_before:
                raise UnreadableObject(message)
            return False  # nothing of it used yet: not a JSON array after all, read it as lines

        while text[pos:pos + 1] != "]":
            index += 1
            try:
                element, pos = _DECODER.raw_decode(text, pos)
            except RecursionError:
                raise UnreadableObject(f"JSON array element {index} is nested deeper than Python's JSON "
                                       f"reader allows (about {sys.getrecursionlimit()} levels)") from None
            except ValueError as exc:
                return not_an_array(f"not JSON: {exc} (in JSON array element {index})")
            raw = json.dumps(element, ensure_ascii=False).encode("utf-8")
            if not isinstance(element, dict):
                kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
                    type(element), "number")
                self.quarantine.reject(index, raw, f"array element is a JSON {kind}, expected an object")
            else:
                self.drift.element(element)
                group.append((index, raw))
                size += len(raw)
            if size >= self.block_bytes:
                self.locator.read(Lines.of(group))
                self.settle()
                self.quarantine.write()
                group, size, flushed = [], 0, True
            pos = _WS.match(text, pos).end()
            if text[pos:pos + 1] == ",":
                pos = _WS.match(text, pos + 1).end()
            elif text[pos:pos + 1] != "]":
                return not_an_array(f"not JSON: expected ',' or ']' after JSON array element {index} (char {pos})")
        if text[pos + 1:].strip():
            return not_an_array(f"not JSON: data after the JSON array's closing bracket (char {pos + 1})")
        self.locator.read(Lines.of(group))
        return True

    def close(self) -> TransformResult:
        self.settle()
        self.quarantine.close()
        self.silver.close()
        result = self.result
        result.rows, result.rejected = self.silver.rows, self.quarantine.rejected
        result.blank_lines, result.probes = self.locator.blank_lines, self.locator.probes
        result.first_rejects = self.quarantine.first_rejects
        result.unknown_fields, result.fields_examined = dict(self.drift.counts), self.drift.examined
        if self.drift.more_names:
            result.unknown_fields["(more names)"] = self.drift.more_names
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
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
    quarantine_max_lines: int = DEFAULT_QUARANTINE_MAX_LINES,
    quarantine_max_bytes: int = DEFAULT_QUARANTINE_MAX_BYTES,
) -> TransformResult:
    """Transform one bronze object's bytes. Writes Parquet to `parquet_out` (a path or file) and
    quarantine JSON lines to `quarantine_out`; raises UnreadableObject for a failed item (past
    `max_object_bytes` decompressed, too)."""
    ingested_at = ingested_at or dt.datetime.now(dt.UTC)
    t = ObjectTransform(schema=schema, source_key=source_key, parquet_out=parquet_out,
                        quarantine_out=quarantine_out, ingested_at=ingested_at, row_group_rows=row_group_rows,
                        max_json_bytes=max_json_bytes, block_bytes=block_bytes,
                        quarantine_max_lines=quarantine_max_lines, quarantine_max_bytes=quarantine_max_bytes)
    chunks = Chunks(raw, gzipped=gzipped, size=block_bytes, max_bytes=max_object_bytes)
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
    skipped = 0  # whole blank lines before the first content, let go of as they come
    for chunk in chunks:
        buf += chunk
        if buf.startswith(BOM):
            buf = buf[len(BOM):]
            t.result.notes.append("UTF-8 byte order mark removed")
        head = buf.lstrip()
        if not head:  # only whitespace so far: keep the start of the last line, count the rest
            cut = buf.rfind(b"\n")
            skipped += buf.count(b"\n", 0, cut + 1)
            buf = buf[cut + 1:]
            continue
        t.locator.blank_lines += skipped
        mode = sniff(head)
        if mode != "jsonl":
            whole, rest = _read_document(t, buf, chunks, mode)
            elements = elements_as_lines(whole) if whole is not None and mode == "array" else None
            if elements is not None:  # one element per line: the JSONL path, element k on line k
                t.result.fmt = "json"
                _note_mismatch(t, suffix_format)
                t.quarantine.subject = "array element"
                _jsonl(t, elements, iter(()))
                return
            if whole is not None and t.document(whole):
                t.result.fmt = "json"
                _note_mismatch(t, suffix_format)
                return
            # Not one JSON document: sniffing never fails an object the line reader can read.
            buf, chunks = (whole if whole is not None else b""), rest
        t.result.fmt = "jsonl"
        _note_mismatch(t, suffix_format)
        _jsonl(t, buf, chunks, first_line=1 + skipped)
        return
    t.result.notes.append("empty object")


def _jsonl(t: ObjectTransform, buf: bytes, chunks: Iterator[bytes], first_line: int = 1) -> None:
    line_no = first_line
    if len(buf) > t.block_bytes:  # a would-be document: stream it like any JSONL
        buf, chunks = b"", itertools.chain(_pieces(buf, t.block_bytes), chunks)
    blocks = whole_line_blocks(buf, chunks, block_bytes=t.block_bytes, max_line_bytes=t.max_json_bytes)
    for item in blocks:
        if isinstance(item, LongLine):
            t.long_line(line_no, item)
            line_no += 1
            continue
        line_no += t.block(item, line_no)
        t.quarantine.write()


def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    """`data` in pieces of `size` (a document that turned out to be JSONL streams like any JSONL)."""
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield bytes(view[start:start + size])


def sniff(head: bytes) -> str:
    """What the first chunk of an object (leading whitespace removed) looks like: "jsonl",
    "array" (a JSON array document) or "document" (one JSON object over several lines). Only a
    guess: a document that turns out not to be one is read as JSONL."""
    if head[:1] not in (b"[", b"{"):
        return "jsonl"
    first, newline, rest = head.partition(b"\n")
    if not newline:  # first line longer than one chunk
        return "array" if head[:1] == b"[" else "jsonl"
    if _stands_alone(first):  # a whole JSON value on its own line: JSONL, or a one-line array
        return "array" if head[:1] == b"[" and not rest.strip() else "jsonl"
    if head[:1] == b"[":
        return "array"  # `[` then its elements on the next lines
    second = next((line for line in rest.split(b"\n") if line.strip()), b"")
    if second.lstrip()[:1] == b"{" and _stands_alone(second):
        return "jsonl"  # a malformed first line, then a good one
    return "document"  # a pretty-printed object spans lines


def _stands_alone(line: bytes) -> bool:
    try:
        json.loads(line)
        return True
    except RecursionError:
        return True  # deeper than Python reads: a value of its own line; the line reader says more
    except ValueError:
        return False


def _read_document(t: ObjectTransform, buf: bytes, chunks: Iterator[bytes],
                   mode: str) -> tuple[bytes | None, Iterator[bytes]]:
    """All of the object, up to `max_json_bytes`, and what is left of the stream. Past the limit,
    an array is unreadable (the message says how to fix it); a would-be object document is
    probably JSONL, so (None, everything read and the rest) goes to the line reader."""
    parts = [buf]
    size = len(buf)
    for chunk in chunks:
        size += len(chunk)
        parts.append(chunk)
        if size > t.max_json_bytes:
            if mode == "array":
                raise UnreadableObject(
                    f"JSON document is larger than the {t.max_json_bytes} byte limit (ELT_MAX_JSON_BYTES); "
                    "split it or write it as JSONL, which streams at any size"
                )
            return None, itertools.chain(parts, chunks)
    return b"".join(parts), iter(())


def _note_mismatch(t: ObjectTransform, suffix_format: str) -> None:
    if suffix_format != t.result.fmt:
        t.result.notes.append(f"content is {t.result.fmt} although the file name says {suffix_format}")


def transform_bytes(data: bytes, **kwargs) -> tuple[TransformResult, pa.Table, list[dict]]:
    """Convenience for tests and tools: transform in memory, return result, table and rejects."""
    out, quarantine = io.BytesIO(), io.BytesIO()
    result = transform_stream(io.BytesIO(data), parquet_out=out, quarantine_out=quarantine, **kwargs)
    table = pq.read_table(pa.BufferReader(out.getbuffer()))  # a buffer, not a file object (arrow #34314)
    rejects = [json.loads(line) for line in quarantine.getvalue().splitlines()]
    return result, table, rejects
