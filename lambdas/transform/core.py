"""Bronze bytes -> silver Parquet + quarantine lines, vectorized and in bounded memory.

JSONL streams in blocks of about `block_bytes`. A clean block goes through Arrow's JSON reader
with the type's explicit schema, untouched by Python. A block that fails is not re-read line by
line wholesale: Arrow's parse errors name the failing row, so the rows before it are parsed again
as one block, the failing line is diagnosed alone, and the rest is split in halves; conversion
errors (which name no row) are bisected. So 1% bad lines costs a few re-parses of small slices,
not the whole object on the slow path. Line numbers in quarantine match the bronze object
(1-based; for a JSON array, the 1-based element index).

A JSON array (or a single JSON document) is read whole, up to `max_json_bytes`; its elements are
re-serialized as lines and take the same path. The format is sniffed from the content, so a
`.json` holding JSONL and a `.jsonl` holding an array both work (the mismatch is noted).
"""

from __future__ import annotations

import bisect
import datetime as dt
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from lambdas.shared.schemas import TS, EventSchema

BOM = b"\xef\xbb\xbf"
DEFAULT_BLOCK_BYTES = 1 << 20
# A failed block is re-read in pieces this big: small enough that a bad line spoils little, big
# enough that Arrow's ~0.14 ms per-piece set-up stays small (measured best at 64-128 KiB).
PROBE_BLOCK_BYTES = 128 << 10
HAS_OPEN_JSON = hasattr(pj, "open_json")  # the streaming JSON reader; pyarrow 14-15 lack it
DEFAULT_MAX_JSON_BYTES = 64 << 20
RAW_PREVIEW_CHARS = 1 << 20  # quarantine keeps at most this much of one rejected line

_ROW_RE = re.compile(r" in row (\d+)$")
_KIND_RE = re.compile(r"Column\((.*?)\) changed from (\w+) to (\w+)")
_CONVERT_RE = re.compile(r"Failed (?:of|to) convert(?:ion of)? JSON to (.*?), couldn't parse:(.*)$", re.S)


class UnreadableObject(Exception):
    """The object cannot be read at all (corrupt gzip, not JSON, too large): a failed item."""


@dataclass
class TransformResult:
    rows: int = 0
    rejected: int = 0
    blank_lines: int = 0
    fmt: str = "jsonl"
    bytes_in: int = 0
    notes: list[str] = field(default_factory=list)
    first_rejects: list[tuple[int, str]] = field(default_factory=list)


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _path_from_arrow(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    out = ""
    for p in parts:
        out += "[]" if p == "[]" else (f".{p}" if out else p)
    return out or "(the line itself)"


def explain_arrow_error(message: str) -> str:
    """Arrow's JSON reader messages, said in terms of the event's fields."""
    message = str(message).strip()
    m = _KIND_RE.search(message)
    if m:
        path, expected, got = m.groups()
        if not path:
            return f"line is a JSON {got}, expected an object"
        return f"field '{_path_from_arrow(path)}' is {_a(got)} where the schema expects {_a(expected)}"
    m = _CONVERT_RE.search(message)
    if m:
        type_, value = m.groups()
        return f"value {value[:200]!r} is not a valid {type_}"
    if "specified twice" in message:
        return "duplicate field: " + _ROW_RE.sub("", message.replace("JSON parse error: ", ""))
    if message.startswith("JSON parse error:"):
        return "malformed JSON: " + _ROW_RE.sub("", message[len("JSON parse error:"):].strip())
    return message


class _Transformer:
    def __init__(self, *, schema: EventSchema, source_key: str, parquet_out, quarantine_out: BinaryIO,
                 ingested_at: dt.datetime, row_group_rows: int, max_json_bytes: int, block_bytes: int):
        self.schema = schema
        self.source_key = source_key
        self.quarantine_out = quarantine_out
        self.ingested_at = pa.scalar(ingested_at, type=TS)
        self.source_scalar = pa.scalar(source_key, type=pa.string())
        self.row_group_rows = row_group_rows
        self.max_json_bytes = max_json_bytes
        self.block_bytes = block_bytes
        self.parse_options = pj.ParseOptions(explicit_schema=schema.arrow, unexpected_field_behavior="ignore")
        self.writer = pq.ParquetWriter(parquet_out, schema.silver, compression="snappy")
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.result = TransformResult()
        self.syntax_rejects = 0
        self._required = [self._compile_required(p) for p in schema.required]
        self.struct_type = pa.struct(list(schema.arrow))
        self.rejects: list[tuple[int, bytes]] = []

    # ---- output -----------------------------------------------------------------------------
    def _emit(self, table: pa.Table, lines: np.ndarray) -> None:
        if table.num_rows == 0:
            return
        n = table.num_rows
        table = table.append_column(self.schema.silver.field("_source_key"), pa.repeat(self.source_scalar, n))
        table = table.append_column(self.schema.silver.field("_line"), pa.array(lines, type=pa.int64()))
        table = table.append_column(self.schema.silver.field("_ingested_at"), pa.repeat(self.ingested_at, n))
        self.pending.append(table)
        self.pending_rows += n
        self.result.rows += n
        if self.pending_rows >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            table = pa.concat_tables(self.pending) if len(self.pending) > 1 else self.pending[0]
            if table.column(0).num_chunks > 16:  # many small probe pieces write slowly
                table = table.combine_chunks()
            self.writer.write_table(table, row_group_size=self.row_group_rows)
            self.pending, self.pending_rows = [], 0

    def _reject(self, line_no: int, raw: bytes, reason: str, *, syntax: bool = False) -> None:
        text = raw[:RAW_PREVIEW_CHARS].decode("utf-8", errors="backslashreplace")
        record = {"line": int(line_no), "reason": reason, "raw": text}
        if len(raw) > RAW_PREVIEW_CHARS:
            record["raw_truncated_from_bytes"] = len(raw)
        self.rejects.append((int(line_no), json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"))
        self.result.rejected += 1
        self.syntax_rejects += syntax
        if len(self.result.first_rejects) < 5:
            self.result.first_rejects.append((int(line_no), reason))

    def write_rejects(self) -> None:
        """Quarantine in line order, whichever path found each reject (called per block)."""
        self.rejects.sort(key=lambda r: r[0])
        self.quarantine_out.write(b"".join(record for _, record in self.rejects))
        self.rejects = []

    def close(self) -> TransformResult:
        self.write_rejects()
        self._flush()
        self.writer.close()
        return self.result

    # ---- required fields, vectorized -------------------------------------------------------------
    def _compile_required(self, path: str):
        if "[]." in path:
            list_name, child = path.split("[].", 1)
            return path, ("list", list_name, child)
        if "." in path:
            parent, child = path.split(".", 1)
            return path, ("struct", parent, child)
        return path, ("top", path, None)

    def _violations(self, table: pa.Table) -> tuple[np.ndarray, list[str]] | None:
        """Rows missing a required field: a boolean mask and a reason per bad row (None if clean).

        Null counts are O(1), so a clean block costs a few cheap checks; masks are built only
        for a path that has a violation."""
        n = table.num_rows
        bad = None
        per_path = []
        for path, (kind, name, child) in self._required:
            col = table.column(name)
            col = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
            if kind == "top":
                if col.null_count == 0:
                    continue
                mask = col.is_null().to_numpy(zero_copy_only=False)
            elif kind == "struct":
                values = pc.struct_field(col, [child])  # null where the parent is null, too
                if values.null_count == col.null_count:
                    continue
                mask = pc.and_(col.is_valid(), values.is_null()).to_numpy(zero_copy_only=False)
            else:
                flat = pc.list_flatten(col)
                if len(flat) == 0:
                    continue
                values = pc.struct_field(flat, [child])  # null for a null element, too
                if values.null_count == 0:
                    continue
                parents = pc.filter(pc.list_parent_indices(col), values.is_null()).to_numpy(zero_copy_only=False)
                mask = np.zeros(n, dtype=bool)
                mask[parents] = True
            if mask.any():
                per_path.append((path, mask))
                bad = mask if bad is None else (bad | mask)
        if bad is None:
            return None
        reasons = []
        for idx in np.flatnonzero(bad):
            missing = [p for p, m in per_path if m[idx]]
            reasons.append("missing required field(s) " + ", ".join(f"'{p}'" for p in missing))
        return bad, reasons

    def _accept(self, table: pa.Table, lines: np.ndarray, raw_of) -> None:
        """Emit a parsed block, sending rows that lack required fields to quarantine."""
        found = self._violations(table)
        if found is None:
            self._emit(table, lines)
            return
        bad, reasons = found
        for idx, reason in zip(np.flatnonzero(bad), reasons, strict=True):
            raw = raw_of(int(idx))
            if raw.strip() == b"null":  # Arrow reads a `null` line as a row of nulls
                reason = "line is a JSON null, expected an object"
            self._reject(int(lines[idx]), raw, reason)
        keep = ~bad
        self._emit(table.filter(pa.array(keep)), lines[keep])

    # ---- parsing -------------------------------------------------------------------------------
    def _read(self, data) -> pa.Table:
        """One Arrow JSON read (bytes or a pyarrow Buffer). Each call costs ~0.2 ms of set-up."""
        options = pj.ReadOptions(use_threads=False, block_size=max(len(data) + 64, 1 << 16))
        return pj.read_json(pa.BufferReader(data), read_options=options, parse_options=self.parse_options)

    def block(self, data: bytes, first_line: int, newlines: int | None = None) -> None:
        """A run of whole lines (JSONL) starting at line number `first_line`: the fast path."""
        newlines = data.count(b"\n") if newlines is None else newlines
        n_lines = newlines + (0 if data.endswith(b"\n") else 1)
        try:
            data.decode("utf-8")  # Arrow does not validate UTF-8; invalid bytes must not reach silver
            table = self._read(data)
        except UnicodeDecodeError:
            self._slow(data, first_line, None)
            return
        except pa.ArrowInvalid as exc:
            self._slow(data, first_line, exc)
            return
        if table.num_rows != n_lines:  # blank lines, or a line holding two JSON values
            self._slow(data, first_line, None)
            return
        lines = np.arange(first_line, first_line + n_lines, dtype=np.int64)
        split: list[bytes] = []

        def raw_of(i: int) -> bytes:  # split only when a row is rejected
            if not split:
                split.extend(data.split(b"\n"))
            return split[i]

        self._accept(table, lines, raw_of)

    def _slow(self, data: bytes, first_line: int, exc: Exception | None) -> None:
        """A block that failed: split it into non-blank lines and locate the bad ones."""
        entries = []
        newlines = data.count(b"\n")
        for offset, line in enumerate(data.split(b"\n")):
            if line.strip():
                entries.append((first_line + offset, line))
            elif offset < newlines:  # not the empty tail after the final newline
                self.result.blank_lines += 1
        try:
            data.decode("utf-8")
            clean = entries
        except UnicodeDecodeError:  # find the lines with invalid bytes
            clean = []
            for line_no, line in entries:
                try:
                    line.decode("utf-8")
                    clean.append((line_no, line))
                except UnicodeDecodeError as err:
                    self._reject(line_no, line, f"not valid UTF-8: {err.reason} at byte {err.start}", syntax=True)
        aligned = isinstance(exc, pa.ArrowInvalid) and len(clean) == newlines + (0 if data.endswith(b"\n") else 1)
        self._probe(clean, exc if aligned else None)

    def _probe(self, entries: list[tuple[int, bytes]], first_error: Exception | None) -> None:
        """Locate bad lines with about one Arrow call each.

        Arrow's streaming reader parses the rest of the block in PROBE_BLOCK_BYTES pieces; the
        pieces before a failure are kept, and the failure names its row (a parse error) or its
        value (a conversion error). A failed parse costs only up to the failing row. The clean
        lines before the bad one inside the failing piece are deferred and read together in one
        call at the end; the bad line is diagnosed in Python. When bad lines are dense (over 5%),
        the rest is screened line by line in Python instead, which is then cheaper."""
        n = len(entries)
        if n == 0:
            return
        lines = [line for _, line in entries]
        numbers = np.fromiter((no for no, _ in entries), dtype=np.int64, count=n)
        joined = pa.py_buffer(b"\n".join(lines))
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line) + 1)
        deferred: list[tuple[int, bytes]] = []
        error, cursor, bad = first_error, 0, 0
        options = pj.ReadOptions(use_threads=False, block_size=PROBE_BLOCK_BYTES)
        while cursor < n:
            batches, consumed = [], 0
            if error is None:
                try:
                    for batch in self._pieces(joined, offsets, cursor, options):
                        batches.append(batch)
                        consumed += batch.num_rows
                except pa.ArrowInvalid as exc:
                    error = exc
                else:
                    if consumed != n - cursor:
                        break  # a line held two values: rows no longer match lines; go carefully
                    self._accept_batches(batches, numbers, entries, cursor)
                    cursor = n
                    break
            found = self._locate(entries, cursor + consumed, error)
            if found is None:
                break
            index, reason, syntax = found
            self._accept_batches(batches, numbers, entries, cursor)
            deferred.extend(entries[cursor + consumed:index])
            self._reject(*entries[index], reason, syntax=syntax)
            cursor, error, bad = index + 1, None, bad + 1
            if bad >= 8 and bad * 20 > cursor:
                for line_no, line in entries[cursor:]:
                    problem = self._diagnose(line)
                    if problem:
                        self._reject(line_no, line, problem[0], syntax=problem[1])
                    else:
                        deferred.append((line_no, line))
                cursor = n
        self.entries(deferred)
        self.entries(entries[cursor:])  # after a `break`: the careful path

    def _pieces(self, joined: pa.Buffer, offsets: list[int], cursor: int, options: pj.ReadOptions):
        """Record batches of the lines from `cursor` on, a piece at a time; raises ArrowInvalid for
        the first failing piece (its row numbers count from that piece's first line)."""
        start = offsets[cursor]
        if HAS_OPEN_JSON:
            reader = pj.open_json(pa.BufferReader(joined.slice(start, len(joined) - start)),
                                  read_options=options, parse_options=self.parse_options)
            yield from reader
            return
        # pyarrow < 16 has no streaming JSON reader: cut line-aligned pieces and read each.
        index = cursor
        while index < len(offsets) - 1:
            end = bisect.bisect_right(offsets, offsets[index] + PROBE_BLOCK_BYTES, lo=index + 1) - 1
            end = max(end, index + 1)
            piece = joined.slice(offsets[index], offsets[end] - offsets[index] - 1)
            yield from self._read(piece).to_batches()
            index = end

    def _accept_batches(self, batches: list, numbers: np.ndarray, entries, cursor: int) -> None:
        if not batches:
            return
        table = pa.Table.from_batches(batches, schema=self.schema.arrow)
        self._accept(table, numbers[cursor:cursor + table.num_rows], lambda i: entries[cursor + i][1])

    def _locate(self, entries, cursor: int, error: Exception) -> tuple[int, str, bool] | None:
        """The bad line a probe from `cursor` failed on, with its reason; None if it cannot be
        pinned down safely (the caller then bisects)."""
        message = str(error)
        match = _ROW_RE.search(message)
        if match:
            index = cursor + int(match.group(1))
            if index >= len(entries):
                return None
            candidates = [index]
        else:
            # A conversion error names the value, not the row: try the lines that contain it.
            value = _CONVERT_RE.search(message)
            if not value:
                return None
            needle = value.group(2).encode("utf-8", "surrogateescape")
            candidates, scanned = [], 0
            for i in range(cursor, len(entries)):  # the failing piece starts at `cursor`
                if needle in entries[i][1]:
                    candidates.append(i)
                scanned += len(entries[i][1])
                if len(candidates) == 4 or scanned > 4 * PROBE_BLOCK_BYTES:
                    break
        for index in candidates:
            problem = self._diagnose(entries[index][1])
            if problem:
                return index, problem[0], problem[1]
            try:  # Python sees nothing wrong: let Arrow judge the line alone
                table = self._read(entries[index][1])
            except pa.ArrowInvalid as exc:
                return index, explain_arrow_error(str(exc)), False
            if table.num_rows != 1:
                return index, "line holds more than one JSON value", False
        return None

    def entries(self, entries: list[tuple[int, bytes]]) -> None:
        """Resolve lines that are probably clean: one read when they are; otherwise pin down the
        failing line (by row, or by the value a conversion error names), drop it and read again;
        bisect only when neither works."""
        while entries:
            if len(entries) == 1:
                self._single(*entries[0])
                return
            try:
                table = self._read(b"\n".join(line for _, line in entries))
            except pa.ArrowInvalid as exc:
                found = self._locate(entries, 0, exc)
            else:
                if table.num_rows == len(entries):
                    lines = np.fromiter((n for n, _ in entries), dtype=np.int64, count=len(entries))
                    self._accept(table, lines, lambda i, e=entries: e[i][1])
                    return
                found = None  # a line held two values: rows do not match lines
            if found is None:
                mid = len(entries) // 2
                self.entries(entries[:mid])
                self.entries(entries[mid:])
                return
            index, reason, syntax = found
            self._reject(*entries[index], reason, syntax=syntax)
            entries = entries[:index] + entries[index + 1:]

    def _single(self, line_no: int, line: bytes) -> None:
        """One line alone: reject it with the clearest reason, or accept it."""
        problem = self._diagnose(line)
        if problem:
            self._reject(line_no, line, problem[0], syntax=problem[1])
            return
        try:
            table = self._read(line)
        except pa.ArrowInvalid as exc:
            self._reject(line_no, line, explain_arrow_error(str(exc)))
            return
        if table.num_rows != 1:
            self._reject(line_no, line, "line holds more than one JSON value")
            return
        self._accept(table, np.array([line_no], dtype=np.int64), lambda i: line)

    # ---- Python-side diagnosis of one line -------------------------------------------------------
    def _diagnose(self, line: bytes) -> tuple[str, bool] | None:
        """(reason, is_syntax) when Python can tell the line is bad; None when it looks fine."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"not valid UTF-8: {exc.reason} at byte {exc.start}", True
        try:
            value = json.loads(text)
        except ValueError as exc:
            msg, col = getattr(exc, "msg", str(exc)), getattr(exc, "colno", None)
            return f"malformed JSON: {msg}" + (f" at column {col}" if col else ""), True
        if not isinstance(value, dict):
            return f"line is a JSON {_json_kind(value)}, expected an object", False
        problem = _check(value, self.struct_type, "")
        return (problem, False) if problem else None

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
            self.entries([(1, json.dumps(value, ensure_ascii=False).encode("utf-8"))])
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
                self._reject(index, raw, f"array element is a JSON {kind}, expected an object")
                continue
            group.append((index, raw))
            size += len(raw)
            if size >= self.block_bytes:
                self._probe(group, None)
                group, size = [], 0
        self._probe(group, None)


def _json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _check(value, arrow_type: pa.DataType, path: str) -> str | None:
    """The first place where a decoded JSON value does not fit the Arrow type, said as Arrow would."""
    if value is None:
        return None
    if pa.types.is_struct(arrow_type):
        if not isinstance(value, dict):
            return _mismatch(path, value, "object")
        for i in range(arrow_type.num_fields):
            child = arrow_type.field(i)
            if child.name in value:
                problem = _check(value[child.name], child.type, f"{path}.{child.name}" if path else child.name)
                if problem:
                    return problem
        return None
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        if not isinstance(value, list):
            return _mismatch(path, value, "array")
        for element in value:
            problem = _check(element, arrow_type.value_type, path + "[]")
            if problem:
                return problem
        return None
    if pa.types.is_string(arrow_type) or pa.types.is_timestamp(arrow_type) or pa.types.is_large_string(arrow_type):
        return None if isinstance(value, str) else _mismatch(path, value, "string")
    if pa.types.is_boolean(arrow_type):
        return None if isinstance(value, bool) else _mismatch(path, value, "boolean")
    if pa.types.is_integer(arrow_type):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _mismatch(path, value, "number")
        if isinstance(value, float) or not -(2**63) <= value < 2**63:
            return f"value {value!r} of field '{path}' is not a valid {arrow_type}"
        return None
    if pa.types.is_floating(arrow_type):
        return None if isinstance(value, int | float) and not isinstance(value, bool) else _mismatch(
            path, value, "number")
    return None


def _mismatch(path: str, value, expected: str) -> str:
    if not path:
        return f"line is a JSON {_json_kind(value)}, expected an object"
    return f"field '{path}' is {_a(_json_kind(value))} where the schema expects {_a(expected)}"


def _open(raw: BinaryIO, gzipped: bool) -> BinaryIO:
    return gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw


def _chunks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    while True:
        try:
            chunk = stream.read(size)
        except (OSError, EOFError, zlib.error) as exc:
            raise UnreadableObject(f"cannot decompress: {exc}") from None
        if not chunk:
            return
        yield chunk


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
    t = _Transformer(schema=schema, source_key=source_key, parquet_out=parquet_out,
                     quarantine_out=quarantine_out, ingested_at=ingested_at, row_group_rows=row_group_rows,
                     max_json_bytes=max_json_bytes, block_bytes=block_bytes)
    try:
        _run(t, _chunks(_open(raw, gzipped), block_bytes), suffix_format)
    except BaseException:
        t.writer.close()
        raise
    result = t.close()
    if result.rows == 0 and result.rejected and t.syntax_rejects == result.rejected:
        first = result.first_rejects[0]
        raise UnreadableObject(
            f"no line is JSON ({result.rejected} line(s) rejected; line {first[0]}: {first[1]})"
        )
    return result


def _run(t: _Transformer, chunks: Iterator[bytes], suffix_format: str) -> None:
    buf = b""
    started = False
    line_no = 1
    for chunk in chunks:
        t.result.bytes_in += len(chunk)
        buf += chunk
        if not started:
            if buf.startswith(BOM):
                buf = buf[len(BOM):]
                t.result.notes.append("UTF-8 byte order mark removed")
            head = buf.lstrip()
            if not head:
                continue
            started = True
            mode = _sniff(head)
            if mode in ("array", "maybe-document"):
                whole = _read_all(t, buf, chunks)
                if mode == "maybe-document" and not _is_document(whole):
                    buf = whole  # JSONL after all: fall through to the line path below
                    t.result.fmt = "jsonl"
                    _jsonl(t, buf, iter(()), line_no)
                    _note_mismatch(t, suffix_format)
                    return
                t.result.fmt = "json"
                _note_mismatch(t, suffix_format)
                t.document(whole)
                return
            t.result.fmt = "jsonl"
            _note_mismatch(t, suffix_format)
            _jsonl(t, buf, chunks, line_no)
            return
    if not started:
        t.result.notes.append("empty object")


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


def _note_mismatch(t: _Transformer, suffix_format: str) -> None:
    if suffix_format != t.result.fmt:
        t.result.notes.append(f"content is {t.result.fmt} although the file name says {suffix_format}")


def _read_all(t: _Transformer, buf: bytes, chunks: Iterator[bytes]) -> bytes:
    parts = [buf]
    size = len(buf)
    for chunk in chunks:
        t.result.bytes_in += len(chunk)
        size += len(chunk)
        if size > t.max_json_bytes:
            raise UnreadableObject(
                f"JSON document is larger than the {t.max_json_bytes} byte limit (ELT_MAX_JSON_BYTES); "
                "split it or write it as JSONL, which streams at any size"
            )
        parts.append(chunk)
    return b"".join(parts)


def _jsonl(t: _Transformer, buf: bytes, chunks: Iterator[bytes], line_no: int) -> None:
    """Cut the stream into blocks of whole lines and hand them to the fast path."""
    for chunk in chunks:
        t.result.bytes_in += len(chunk)
        buf += chunk
        if len(buf) < t.block_bytes:
            continue
        cut = buf.rfind(b"\n")
        if cut < 0:
            if len(buf) > t.max_json_bytes:  # one line with no end in sight: reject it, resync
                buf = _skip_long_line(t, buf, chunks, line_no)
                line_no += 1
            continue
        block, buf = buf[: cut + 1], buf[cut + 1:]
        newlines = block.count(b"\n")
        t.block(block, line_no, newlines)
        t.write_rejects()
        line_no += newlines
    if buf:
        t.block(buf, line_no)


def _skip_long_line(t: _Transformer, buf: bytes, chunks: Iterator[bytes], line_no: int) -> bytes:
    head = buf[:RAW_PREVIEW_CHARS]
    size = len(buf)
    for chunk in chunks:
        t.result.bytes_in += len(chunk)
        cut = chunk.find(b"\n")
        if cut >= 0:
            size += cut
            t._reject(line_no, head + b"...", f"line longer than {t.max_json_bytes} bytes ({size} bytes)")
            return chunk[cut + 1:]
        size += len(chunk)
    t._reject(line_no, head + b"...", f"line longer than {t.max_json_bytes} bytes ({size} bytes)")
    return b""


def transform_bytes(data: bytes, **kwargs) -> tuple[TransformResult, pa.Table, list[dict]]:
    """Convenience for tests and tools: transform in memory, return result, table and rejects."""
    out, quarantine = io.BytesIO(), io.BytesIO()
    result = transform_stream(io.BytesIO(data), parquet_out=out, quarantine_out=quarantine, **kwargs)
    out.seek(0)
    table = pq.read_table(out)
    rejects = [json.loads(line) for line in quarantine.getvalue().splitlines()]
    return result, table, rejects
