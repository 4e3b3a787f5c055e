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
            self.writer.write_table(table, row_group_size=self.row_group_rows)
            self.pending, self.pending_rows = [], 0

    def _reject(self, line_no: int, raw: bytes, reason: str, *, syntax: bool = False) -> None:
        text = raw[:RAW_PREVIEW_CHARS].decode("utf-8", errors="backslashreplace")
        record = {"line": int(line_no), "reason": reason, "raw": text}
        if len(raw) > RAW_PREVIEW_CHARS:
            record["raw_truncated_from_bytes"] = len(raw)
        self.quarantine_out.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
        self.result.rejected += 1
        self.syntax_rejects += syntax
        if len(self.result.first_rejects) < 5:
            self.result.first_rejects.append((int(line_no), reason))

    def close(self) -> TransformResult:
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
        """Rows missing a required field: a boolean mask and, per path, its mask (None if clean)."""
        n = table.num_rows
        bad = None
        per_path = []
        for path, (kind, name, child) in self._required:
            col = table.column(name)
            if col.num_chunks != 1:
                col = col.combine_chunks()
            else:
                col = col.chunk(0)
            if kind == "top":
                mask = col.is_null().to_numpy(zero_copy_only=False)
            elif kind == "struct":
                mask = pc.and_(col.is_valid(), pc.struct_field(col, [child]).is_null()).to_numpy(
                    zero_copy_only=False
                )
            else:
                flat = pc.list_flatten(col)
                if len(flat) == 0:
                    continue
                missing = pc.or_(flat.is_null(), pc.struct_field(flat, [child]).is_null())
                if not pc.any(missing).as_py():
                    continue
                parents = pc.filter(pc.list_parent_indices(col), missing).to_numpy(zero_copy_only=False)
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
    def _read(self, data: bytes) -> pa.Table:
        options = pj.ReadOptions(use_threads=False, block_size=max(len(data) + 64, 1 << 16))
        return pj.read_json(pa.BufferReader(data), read_options=options, parse_options=self.parse_options)

    def block(self, data: bytes, first_line: int) -> None:
        """A run of whole lines (JSONL) starting at line number `first_line`: the fast path."""
        n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        try:
            data.decode("utf-8")  # Arrow does not validate UTF-8; invalid bytes must not reach silver
            table = self._read(data)
        except (UnicodeDecodeError, pa.ArrowInvalid) as exc:
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
        entries = []
        newlines = data.count(b"\n")
        for offset, line in enumerate(data.split(b"\n")):
            if line.strip():
                entries.append((first_line + offset, line))
            elif offset < newlines:  # not the empty tail after the final newline
                self.result.blank_lines += 1
        if not isinstance(exc, pa.ArrowInvalid) or len(entries) != newlines + (0 if data.endswith(b"\n") else 1):
            exc = None  # the error's row numbering does not match these entries
        self.entries(entries, known_error=exc)

    def entries(self, entries: list[tuple[int, bytes]], known_error: Exception | None = None) -> None:
        """Resolve non-blank lines into good rows and rejects, re-parsing only around failures."""
        if not entries:
            return
        if len(entries) == 1:
            self._single(*entries[0])
            return
        if known_error is None:
            data = b"\n".join(line for _, line in entries)
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                clean = []
                for line_no, line in entries:
                    try:
                        line.decode("utf-8")
                        clean.append((line_no, line))
                    except UnicodeDecodeError as exc:
                        self._reject(line_no, line, f"not valid UTF-8: {exc.reason} at byte {exc.start}",
                                     syntax=True)
                self.entries(clean)
                return
            try:
                table = self._read(data)
            except pa.ArrowInvalid as exc:
                known_error = exc
            else:
                if table.num_rows == len(entries):
                    lines = np.fromiter((n for n, _ in entries), dtype=np.int64, count=len(entries))
                    self._accept(table, lines, lambda i: entries[i][1])
                    return
                known_error = None
                mid = len(entries) // 2
                self.entries(entries[:mid])
                self.entries(entries[mid:])
                return
        match = _ROW_RE.search(str(known_error))
        row = int(match.group(1)) if match else None
        if row is not None and row < len(entries):
            self.entries(entries[:row])
            self._single(*entries[row])
            rest = entries[row + 1:]
            mid = len(rest) // 2
            self.entries(rest[:mid])
            self.entries(rest[mid:])
        else:
            mid = len(entries) // 2
            self.entries(entries[:mid])
            self.entries(entries[mid:])

    def _single(self, line_no: int, line: bytes) -> None:
        """One line alone: reject it with the clearest reason, or accept it."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._reject(line_no, line, f"not valid UTF-8: {exc.reason} at byte {exc.start}", syntax=True)
            return
        try:
            value = json.loads(text)
        except ValueError as exc:
            msg = getattr(exc, "msg", str(exc))
            col = getattr(exc, "colno", None)
            self._reject(line_no, line, f"malformed JSON: {msg}" + (f" at column {col}" if col else ""),
                         syntax=True)
            return
        if not isinstance(value, dict):
            kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")
            self._reject(line_no, line, f"line is a JSON {kind}, expected an object")
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
                self.entries(group)  # keep quarantine in element order
                group, size = [], 0
                kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
                    type(element), "number")
                self._reject(index, raw, f"array element is a JSON {kind}, expected an object")
                continue
            group.append((index, raw))
            size += len(raw)
            if size >= self.block_bytes:
                self.entries(group)
                group, size = [], 0
        self.entries(group)


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
            mode = _sniff(head, chunks_done=False)
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


def _sniff(head: bytes, chunks_done: bool) -> str:
    if head[:1] == b"[":
        return "array"
    if head[:1] == b"{":
        first_line = head.split(b"\n", 1)[0]
        if b"\n" in head or chunks_done:
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
        t.block(block, line_no)
        line_no += block.count(b"\n")
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
