"""Bronze bytes -> silver Parquet + quarantine lines, vectorized and in bounded memory.

JSONL streams in blocks of about `block_bytes`. A clean block goes through Arrow's JSON reader
with the type's explicit schema, untouched by Python. A block that fails is not re-read line by
line: Arrow's parse errors name the failing row, so a cheap screen (Arrow's parser building no
columns but those of fields that have had a type error in this object, and checking every
top-level field's kind in an object's first blocks, to learn them) runs on from the line after
it, stopping only at bad lines, each diagnosed alone; then the lines it passed are read at once.
What the screen misses (a conversion error, which names a value, not a row; a type error in
a field not yet suspected) is pinned down by a probe with Arrow's streaming reader. So 1% bad
lines costs about one cheap Arrow call per bad line and one extra ~0.5 of a parse per block, not
the whole object on the slow path; after a block with bad lines, the next is screened first.
Line numbers in quarantine match the bronze object (1-based; for a JSON array, the 1-based
element index).

Top-level timestamps are read as strings and converted with Arrow compute (ISO-8601; an offset is
converted to UTC, a naive value is taken as UTC, as Arrow's JSON reader does), so a value that is
not a timestamp rejects its row, with the field named, instead of failing its block. Required
fields and lineage columns are checked and added with Arrow compute, once per block.

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
# A failed block is re-read in pieces this big: small enough that a bad line spoils little, big
# enough that Arrow's ~0.09 ms per-piece cost stays small (measured best at 64-128 KiB).
PROBE_BLOCK_BYTES = 128 << 10
YOUNG_BLOCKS = 4  # an object's first blocks screen every top-level field's kind (see _screen_options)
HAS_OPEN_JSON = hasattr(pj, "open_json")  # the streaming JSON reader; pyarrow 14-15 lack it
DEFAULT_MAX_JSON_BYTES = 64 << 20
RAW_PREVIEW_CHARS = 1 << 20  # quarantine keeps at most this much of one rejected line

_TWO_VALUES = re.compile(rb"\}[ \t\r\f\v]*[{n]")
_RECORD = json.JSONEncoder(ensure_ascii=False)  # one quarantine record; built once, not per call
_ROW_RE = re.compile(r" in row (\d+)$")
_KIND_RE = re.compile(r"Column\((.*?)\) changed from (\w+) to (\w+)")
_CAST_RE = re.compile(r"^Failed to parse string: '(.*)' as a scalar of type timestamp", re.S)
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


class _Lines:
    """Lines to read, held in one buffer without copies: line i is buf[starts[i]:ends[i]], numbered
    numbers[i] in the bronze object. Consecutive lines are separated by exactly one newline, so
    lines i..j-1 are one slice that Arrow can read as it is."""

    __slots__ = ("buf", "view", "starts", "ends", "numbers")

    def __init__(self, buf: bytes, starts: np.ndarray, ends: np.ndarray, numbers: np.ndarray):
        self.buf, self.view = buf, pa.py_buffer(buf)
        self.starts, self.ends, self.numbers = starts, ends, numbers

    @classmethod
    def split(cls, data: bytes, first_line: int, newlines: np.ndarray | None = None) -> _Lines:
        """Every line of a block (blank ones too), found with one vectorized pass (or from the
        positions of its newlines, when known)."""
        if newlines is None:
            newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        starts = np.concatenate(([0], newlines + 1))
        ends = np.concatenate((newlines, [len(data)]))
        if data.endswith(b"\n"):  # no line after the final newline
            starts, ends = starts[:-1], ends[:-1]
        return cls(data, starts, ends, np.arange(first_line, first_line + len(starts), dtype=np.int64))

    @classmethod
    def of(cls, pairs: list[tuple[int, bytes]]) -> _Lines:
        lengths = np.fromiter((len(line) for _, line in pairs), dtype=np.int64, count=len(pairs))
        numbers = np.fromiter((no for no, _ in pairs), dtype=np.int64, count=len(pairs))
        starts = _starts(lengths)
        return cls(b"\n".join(line for _, line in pairs), starts, starts + lengths, numbers)

    def __len__(self) -> int:
        return len(self.starts)

    def raw(self, i: int) -> bytes:
        return self.buf[self.starts[i]:self.ends[i]]

    def span(self, i: int, j: int) -> pa.Buffer:
        """Lines i..j-1 (j > i) as one zero-copy buffer."""
        return self.view.slice(int(self.starts[i]), int(self.ends[j - 1] - self.starts[i]))

    def maybe_blank(self) -> np.ndarray:
        """Indexes of lines that may be blank or a bare `null`: short, or starting with ASCII
        whitespace."""
        if not self.buf:
            return np.arange(len(self))
        first = np.frombuffer(self.buf, dtype=np.uint8)[np.minimum(self.starts, len(self.buf) - 1)]
        return np.flatnonzero((self.ends - self.starts < 16) | _WHITESPACE[first])

    def containing(self, needle: bytes, cursor: int, *, limit: int, within: int) -> list[int]:
        """Up to `limit` lines from `cursor` on whose bytes contain `needle`, looking `within` bytes."""
        found: list[int] = []
        if not needle or cursor >= len(self):
            return found
        pos, stop = int(self.starts[cursor]), int(self.starts[cursor]) + within
        while len(found) < limit:
            pos = self.buf.find(needle, pos, stop)
            if pos < 0:
                break
            index = int(np.searchsorted(self.starts, pos, side="right")) - 1
            if pos + len(needle) <= self.ends[index]:  # not across a line end
                found.append(index)
            pos = int(self.ends[index]) + 1
        return found

    def pick(self, ranges: list[tuple[int, int]]) -> _Lines:
        """The lines in `ranges` ((i, j) half-open, in order): a view for one range, else a copy."""
        ranges = [(i, j) for i, j in ranges if j > i]
        if not ranges:
            return _Lines(b"", np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
        if len(ranges) == 1:
            i, j = ranges[0]
            return _Lines(self.buf, self.starts[i:j], self.ends[i:j], self.numbers[i:j])
        index = np.concatenate([np.arange(i, j) for i, j in ranges])
        lengths = self.ends[index] - self.starts[index]
        starts = _starts(lengths)
        view = memoryview(self.buf)  # slices of a view: joined with one copy, not two
        buf = b"\n".join([view[int(self.starts[i]):int(self.ends[j - 1])] for i, j in ranges])
        return _Lines(buf, starts, starts + lengths, self.numbers[index])


_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True
_BLANK = _WHITESPACE.copy()  # whitespace within a line
_BLANK[10] = False


def _scan(data: bytes) -> tuple[np.ndarray, bool]:
    """One vectorized look at a block (~0.3 ms per MiB): where its newlines are, and whether Arrow may
    not map rows to lines by position - a line that is empty or starts with whitespace (Arrow
    skips blank lines), or a short first line (a bare `null` first crashes Arrow's reader)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    breaks = np.flatnonzero(arr == 10)
    if not len(arr):
        return breaks, False
    after = breaks + 1
    after = after[after < len(arr)]  # nothing follows the final newline
    short_first = (breaks[0] if len(breaks) else len(arr)) < 16
    return breaks, bool(short_first or _WHITESPACE[arr[0]] or _WHITESPACE[arr[after]].any())


def _is_utf8(data: bytes) -> bool:
    """Whether `data` is valid UTF-8, by Arrow's vectorized check (~0.08 ms per MiB where
    bytes.decode takes ~0.45 ms)."""
    offsets = np.array([0, len(data)], dtype=np.int64)
    try:
        pa.LargeStringArray.from_buffers(1, pa.py_buffer(offsets), pa.py_buffer(data)).validate(full=True)
        return True
    except pa.ArrowInvalid:
        return False


def _two_value_marks(data) -> list[int]:
    """Where a `}` is followed by `{` or `n` (a second object or a null), maybe after spaces or
    tabs: the places a line may hold two JSON values (vectorized; ~0.3 ms per MiB). `data`: any
    bytes-like object."""
    arr = np.frombuffer(data, dtype=np.uint8)
    closes = np.flatnonzero(arr[:-1] == 125)
    after = arr[closes + 1]
    marks = closes[(after == 123) | (after == 110)].tolist()
    marks += [int(p) for p in closes[_BLANK[after]] if _TWO_VALUES.match(data, int(p))]
    return marks


def _one_block(data) -> pj.ReadOptions:
    """Read options under which Arrow takes all of `data` as one block."""
    return pj.ReadOptions(use_threads=False, block_size=max(len(data) + 64, 1 << 16))


def _open_one_block(data, parse_options: pj.ParseOptions):
    """Arrow's streaming reader over `data` as one block, which it parses as it opens."""
    return pj.open_json(pa.BufferReader(data), read_options=_one_block(data), parse_options=parse_options)


def _dense(bad: int, seen: int) -> bool:
    """Over 5% of the lines seen so far were bad (and at least 8)."""
    return bad >= 8 and bad * 20 > seen


def _without(cuts: list[int], n: int, start: int = 0) -> list[tuple[int, int]]:
    """The ranges of start..n-1 that leave out the indexes `cuts` (all within it)."""
    cuts = sorted(set(cuts))
    return [(i, j) for i, j in zip([start] + [c + 1 for c in cuts], cuts + [n], strict=True) if j > i]


def _kind_only(type_: pa.DataType) -> pa.DataType:
    """A type Arrow's JSON reader checks the kind of (object, array, string, ...) without
    building the children of a struct."""
    if pa.types.is_struct(type_):
        return pa.struct([])
    if pa.types.is_list(type_):
        return pa.list_(_kind_only(type_.value_type))
    return type_


def _starts(lengths: np.ndarray) -> np.ndarray:
    """Where each line starts when lines of these lengths are joined by single newlines."""
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts[1:])
    return starts


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
        # Top-level timestamps are read as strings and converted in `_timestamps`.
        self.ts_fields = [f.name for f in schema.arrow if f.type == TS]
        self.read_schema = pa.schema([pa.field(f.name, pa.string()) if f.type == TS else f for f in schema.arrow])
        self.parse_options = pj.ParseOptions(explicit_schema=self.read_schema, unexpected_field_behavior="ignore")
        # The screen (see `_screen`): top-level fields this object has had a type error in, with
        # the type the screen reads them as.
        self.suspects: dict[str, pa.DataType] = {}
        self.young = YOUNG_BLOCKS  # blocks left whose screens check every top-level field's kind
        self.screen_options = self._screen_options()
        self.dirty = False  # the last block had lines Arrow refused: screen the next one first
        self.writer = pq.ParquetWriter(parquet_out, schema.silver, compression="snappy")
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.result = TransformResult()
        self.syntax_rejects = 0
        self._required = [self._compile_required(p) for p in schema.required]
        self.rule = _rule(pa.struct(list(schema.arrow)))  # for `_check`
        self.rejects: list[tuple[int, bytes]] = []
        self.staged: list[tuple[pa.Table, np.ndarray, object]] = []
        self.silver = schema.silver

    # ---- output -----------------------------------------------------------------------------
    def _emit(self, table: pa.Table, lines: np.ndarray, drop: list[int] = ()) -> None:
        """Queue rows for the writer with their lineage columns, leaving out the rows at the
        (sorted) indexes `drop` by zero-copy slicing."""
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
        self.result.rows += n - len(drop)
        if self.pending_rows >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            table = pa.concat_tables(self.pending) if len(self.pending) > 1 else self.pending[0]
            chunks = table.column(0).num_chunks
            if chunks > 16 and table.num_rows < 512 * chunks:  # many small pieces write slowly
                table = table.combine_chunks()
            self.writer.write_table(table, row_group_size=self.row_group_rows)
            self.pending, self.pending_rows = [], 0

    def _reject(self, line_no: int, raw: bytes, reason: str, *, syntax: bool = False) -> None:
        text = raw[:RAW_PREVIEW_CHARS].decode("utf-8", errors="backslashreplace")
        record = {"line": int(line_no), "reason": reason, "raw": text}
        if len(raw) > RAW_PREVIEW_CHARS:
            record["raw_truncated_from_bytes"] = len(raw)
        self.rejects.append((int(line_no), _RECORD.encode(record).encode("utf-8") + b"\n"))
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
        self.settle()
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

    def _missing(self, table: pa.Table, problems: dict[int, list[str]], refused: dict[str, np.ndarray]) -> None:
        """Rows missing a required field, vectorized: null counts are O(1), so a clean block costs
        a few cheap checks; masks are built only for a path that has a violation."""
        n = table.num_rows
        per_path = []
        for path, (kind, name, child) in self._required:
            col = table.column(name)  # chunked: detection needs no copy; a mask only on a violation
            if kind == "top":
                if col.null_count == 0:
                    continue
                mask = _numpy(pc.is_null(col))
                if name in refused:  # present but not a timestamp: said already
                    mask &= ~refused[name]
            elif kind == "struct":
                values = pc.struct_field(col, [child])  # null where the parent is null, too
                if values.null_count == col.null_count:
                    continue
                mask = _numpy(pc.and_(pc.is_valid(col), pc.is_null(values)))
            else:
                flat = pc.list_flatten(col)
                if len(flat) == 0:
                    continue
                values = pc.struct_field(flat, [child])  # null for a null element, too
                if values.null_count == 0:
                    continue
                parents = _numpy(pc.filter(pc.list_parent_indices(col), pc.is_null(values)))
                mask = np.zeros(n, dtype=bool)
                mask[parents] = True
            if mask.any():
                per_path.append((path, mask))
        if not per_path:
            return
        for idx in np.flatnonzero(np.logical_or.reduce([mask for _, mask in per_path])):
            missing = [p for p, m in per_path if m[idx]]
            problems.setdefault(int(idx), []).append(
                "missing required field(s) " + ", ".join(f"'{p}'" for p in missing))

    def _timestamps(self, table: pa.Table, problems: dict[int, list[str]], refused: dict[str, np.ndarray]) -> pa.Table:
        """Top-level timestamps are read as strings and converted here with Arrow compute, so a
        value that is not a timestamp rejects its row instead of failing the whole block (and
        costing a re-parse). Same rules as Arrow's JSON reader: ISO-8601, naive taken as UTC."""
        for name in self.ts_fields:
            i = table.schema.get_field_index(name)
            values = table.column(i)
            try:
                converted = _to_timestamps(values)
            except pa.ArrowInvalid as exc:
                values = values.combine_chunks()
                mask, converted = _unconvertible(values, str(exc))
                for idx in np.flatnonzero(mask).tolist():
                    problems.setdefault(idx, []).append(
                        f"value {values[idx].as_py()!r} of field '{name}' is not a valid {TS} "
                        "(expected ISO-8601, e.g. 2025-01-31T12:00:00Z)")
                refused[name] = mask
            table = table.set_column(i, self.schema.arrow.field(name), converted)
        return table

    def _accept(self, table: pa.Table, lines: np.ndarray, raw_of) -> None:
        """Stage parsed rows (line numbers `lines`, raw bytes by row via `raw_of`); `settle`
        checks everything staged for a block at once."""
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

        problems: dict[int, list[str]] = {}
        refused: dict[str, np.ndarray] = {}
        table = self._timestamps(table, problems, refused)
        self._missing(table, problems, refused)
        if not problems:
            self._emit(table, lines)
            return
        drop = sorted(problems)
        for idx in drop:
            raw = raw_of(idx)
            if raw.strip() == b"null":  # Arrow reads a `null` line as a row of nulls
                reason = "line is a JSON null, expected an object"
            else:
                reason = "; ".join(problems[idx])
            self._reject(int(lines[idx]), raw, reason)
        self._emit(table, lines, drop)

    # ---- parsing -------------------------------------------------------------------------------
    def _read(self, data, parse_options: pj.ParseOptions | None = None) -> pa.Table:
        """One Arrow JSON read (bytes or a pyarrow Buffer), as one block, with the full schema or
        `parse_options`. The streaming reader sets up in ~0.1 ms less than read_json (~0.25 ms),
        where it exists."""
        parse_options = parse_options or self.parse_options
        if HAS_OPEN_JSON:
            reader = _open_one_block(data, parse_options)
            return pa.Table.from_batches(list(reader), schema=reader.schema)
        return pj.read_json(pa.BufferReader(data), read_options=_one_block(data), parse_options=parse_options)

    def _parses(self, data, parse_options: pj.ParseOptions) -> None:
        """Raise ArrowInvalid where Arrow's reader refuses `data` (read as one block), keeping
        nothing. The streaming reader parses its first block as it opens: not asking it for the
        batch saves ~50 us a call (its read-ahead of a next block), a third of a screen restart."""
        if HAS_OPEN_JSON:
            _open_one_block(data, parse_options)
        else:
            self._read(data, parse_options)

    def block(self, data: bytes, first_line: int) -> int:
        """A run of whole lines (JSONL) starting at line number `first_line`; returns the number
        of newlines in it."""
        breaks, careful = _scan(data)
        before = self.result.rejected
        self._block(data, first_line, breaks, careful)
        if self.young:
            self.young -= 1
            if not self.young:  # from now on the screen checks only the fields that had type errors
                self.screen_options = self._screen_options()
        # Bad lines come in runs: after a block with some, the next is screened before it is
        # read, which saves a failed read when it has some too (and costs a screen when not).
        self.dirty = self.result.rejected > before
        self.settle()
        return len(breaks)

    def _block(self, data: bytes, first_line: int, breaks: np.ndarray, careful: bool) -> None:
        """The fast path: one Arrow read of the whole block (`breaks`: its newlines)."""
        n_lines = len(breaks) + (0 if data.endswith(b"\n") else 1)
        if careful or self.dirty:
            self._slow(data, first_line, breaks, None)
            return
        if not _is_utf8(data):  # Arrow's JSON reader does not check; invalid bytes must not reach silver
            self._slow(data, first_line, breaks, None, utf8=False)
            return
        try:
            table = self._read(data)
        except pa.ArrowInvalid as exc:
            self._slow(data, first_line, breaks, exc, utf8=True)
            return
        if table.num_rows != n_lines:  # a line holding two JSON values
            self._slow(data, first_line, breaks, None, utf8=True, two_values=True)
            return
        lines = np.arange(first_line, first_line + n_lines, dtype=np.int64)
        split: list[bytes] = []

        def raw_of(i: int) -> bytes:  # split only when a row is rejected
            if not split:
                split.extend(data.split(b"\n"))
            return split[i]

        self._accept(table, lines, raw_of)

    def _slow(self, data: bytes, first_line: int, breaks: np.ndarray, exc: Exception | None,
              utf8: bool | None = None, two_values: bool = False) -> None:
        """A block that failed: find its non-blank lines (vectorized) and locate the bad ones.
        `utf8` says whether the block is valid UTF-8, when that is known already; `two_values`,
        that a line holds two JSON values (the read gave more rows than lines)."""
        lines = _Lines.split(data, first_line, breaks)
        removed, rejects_before = [], self.result.rejected
        for i in lines.maybe_blank():
            content = lines.raw(i).strip()
            if not content:
                removed.append(i)
                self.result.blank_lines += 1
            elif content == b"null":  # never handed to Arrow: a read that starts with one crashes it
                removed.append(i)
                self._reject(int(lines.numbers[i]), lines.raw(i), "line is a JSON null, expected an object")
        if two_values:  # known to be there: rows would not match lines in any read
            removed += self._two_values(lines, skip=set(removed))
        seen = set(removed)
        if not (_is_utf8(data) if utf8 is None else utf8):  # find the lines with invalid bytes
            for i in range(len(lines)):
                if i in seen:
                    continue
                try:
                    lines.raw(i).decode("utf-8")
                except UnicodeDecodeError as err:
                    removed.append(i)
                    self._reject(int(lines.numbers[i]), lines.raw(i),
                                 f"not valid UTF-8: {err.reason} at byte {err.start}", syntax=True)
        failed = exc is not None or self.dirty or self.result.rejected > rejects_before
        if removed:  # rows would no longer match lines: keep only the others, and forget `exc`
            lines = lines.pick(_without(removed, len(lines)))
            exc = None
        if failed:
            self._sift(lines, exc if isinstance(exc, pa.ArrowInvalid) else None)
        else:  # here only for a blank line or a short first line: most likely clean
            self._lines(lines)

    def _two_values(self, lines: _Lines, skip: set[int] = frozenset()) -> list[int]:
        """Reject the lines that hold two JSON values (an object and another one, or a null) and
        return their indexes. Arrow reads such a line as two rows, which shifts the line number of
        every row after it: the probe, which maps rows to lines by count, must not see one. (The
        screen needs no such care: a row it misplaces is checked in Python before it is
        rejected, and whatever it then misses makes the full read fail or miscount, which leads
        here.)"""
        if not len(lines):
            return []
        low = int(lines.starts[0])
        found: list[int] = []
        seen = set(skip)
        for pos in _two_value_marks(memoryview(lines.buf)[low:int(lines.ends[-1])]):
            i = int(np.searchsorted(lines.starts, pos + low, side="right")) - 1
            if i in seen:
                continue
            seen.add(i)
            problem = self._diagnose(lines.raw(i))
            if problem:
                found.append(i)
                self._reject(int(lines.numbers[i]), lines.raw(i), problem[0], syntax=problem[1])
        return found

    def _lines(self, lines: _Lines, *, sifted: bool = False) -> None:
        """Lines that are probably clean: one read; if it fails, sift them (probe them, when they
        have been sifted already)."""
        if not len(lines):
            return
        try:
            table = self._read(lines.span(0, len(lines)))
        except pa.ArrowInvalid as exc:
            if sifted:
                self._probe(lines, exc)
            else:
                self._sift(lines, exc)
            return
        if table.num_rows == len(lines):
            self._accept(table, lines.numbers, lines.raw)
        else:  # a line held two values
            self._probe(lines, None)

    def _sift(self, lines: _Lines, exc: Exception | None) -> None:
        """Lines with bad ones among them (`exc`: a whole read failed, if one was tried). Screen
        out what the cheap read finds, then read the rest at once; whatever the screen misses,
        the probe pins down."""
        if exc is not None and not _ROW_RE.search(str(exc)):
            self._probe(lines, exc)  # a conversion error: every line parsed, there is nothing to screen
            return
        self._lines(lines.pick(_without(self._screen(lines, exc), len(lines))), sifted=True)

    def _screen(self, lines: _Lines, exc: Exception | None) -> list[int]:
        """Reject the lines a cheap read refuses and return their indexes.

        A failed full read costs most of a parse up to the failing line, and the good lines before
        it must then be read again: with 1% bad lines that is most of a block twice. The screen is
        Arrow's own parser with no columns to build except the suspects (top-level fields that
        have had a type error in this object, read as their kind only: a producer bug repeats), so
        it checks syntax and the suspects' types at ~0.4-0.5 of the cost of a full read, and one
        full read of the lines it passes then mostly succeeds. `exc` names a first bad line
        already; the lines before it parsed."""
        bad: list[int] = []
        cursor = 0
        while cursor < len(lines):
            if exc is None:
                try:
                    self._parses(lines.span(cursor, len(lines)), self.screen_options)
                    break
                except pa.ArrowInvalid as error:
                    exc = error
            found = self._locate(lines, cursor, exc)
            if found is None:
                break
            index, reason, syntax = found
            self._reject(int(lines.numbers[index]), lines.raw(index), reason, syntax=syntax)
            bad.append(index)
            cursor, exc = index + 1, None
            if _dense(len(bad), cursor):
                return bad + self._in_python(lines, cursor)
        return bad

    def _in_python(self, lines: _Lines, start: int) -> list[int]:
        """Where bad lines are dense, an Arrow call per bad line costs more than Python's look
        at every line: reject the lines from `start` on that Python finds bad, return them."""
        bad = []
        for i in range(start, len(lines)):
            problem = self._diagnose(lines.raw(i))
            if problem:
                self._reject(int(lines.numbers[i]), lines.raw(i), problem[0], syntax=problem[1])
                bad.append(i)
        return bad

    def _screen_options(self) -> pj.ParseOptions:
        """The suspects; while the object is young, every other top-level field's kind too: a
        type error the screen misses costs a probe (~10 ms for a block), so the screens in an
        object's first YOUNG_BLOCKS blocks look for all of them and learn which fields are the
        suspects (checking every kind costs ~1.3 ms more per MiB than the suspects alone)."""
        fields = dict(self.suspects)
        if self.young > 0:
            fields = {f.name: fields.get(f.name, _kind_only(f.type)) for f in self.read_schema}
        schema = pa.schema([pa.field(name, type_) for name, type_ in fields.items()])
        return pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")

    def _learn(self, message: str) -> None:
        """Make a field a suspect from Arrow's type error ("Column(/weight_kg) changed from number
        to string"): read as its kind only (a struct with no fields, a list of such) when the
        error is at the top, in full when it is deeper down."""
        kind = _KIND_RE.search(message)
        parts = [part for part in kind.group(1).split("/") if part] if kind else []
        if not parts or self.read_schema.get_field_index(parts[0]) < 0:
            return
        type_ = self.read_schema.field(parts[0]).type
        wanted = _kind_only(type_) if len(parts) == 1 or parts[1:] == ["[]"] else type_
        if self.suspects.get(parts[0]) not in (wanted, type_):
            self.suspects[parts[0]] = wanted
            self.screen_options = self._screen_options()

    def _probe(self, lines: _Lines, first_error: Exception | None) -> None:
        """Locate bad lines with about one full Arrow call each (what the screen missed).

        Arrow's streaming reader parses the lines in PROBE_BLOCK_BYTES pieces; the pieces before a
        failure are kept, and the failure names its row (a parse error) or its value (a
        conversion error). A failed parse costs only up to the failing row. The clean lines before
        the bad one inside the failing piece are deferred and read together in one call at the
        end; the bad line is diagnosed in Python. When bad lines are dense (over 5%), the rest is
        screened line by line in Python instead, which is then cheaper."""
        removed = self._two_values(lines)
        if removed:  # the error's row no longer matches a line
            lines, first_error = lines.pick(_without(removed, len(lines))), None
        n = len(lines)
        deferred: list[tuple[int, int]] = []
        error, cursor, bad = first_error, 0, 0
        options = pj.ReadOptions(use_threads=False, block_size=PROBE_BLOCK_BYTES)
        while cursor < n:
            batches, consumed = [], 0
            if error is None:
                try:
                    for batch in self._pieces(lines, cursor, options):
                        batches.append(batch)
                        consumed += batch.num_rows
                except pa.ArrowInvalid as exc:
                    error = exc
                else:
                    if consumed != n - cursor:
                        break  # a line held two values: rows no longer match lines; go carefully
                    self._accept_batches(batches, lines, cursor)
                    cursor = n
                    break
            found = self._locate(lines, cursor + consumed, error)
            if found is None:
                break
            index, reason, syntax = found
            self._accept_batches(batches, lines, cursor)
            deferred.append((cursor + consumed, index))
            self._reject(int(lines.numbers[index]), lines.raw(index), reason, syntax=syntax)
            cursor, error, bad = index + 1, None, bad + 1
            if _dense(bad, cursor):
                rejected = self._in_python(lines, cursor)
                deferred += _without(rejected, n, start=cursor)
                cursor = n
        self.entries(lines.pick(deferred))
        self.entries(lines.pick([(cursor, n)]))  # after a `break`: the careful path

    def _pieces(self, lines: _Lines, cursor: int, options: pj.ReadOptions):
        """Record batches of the lines from `cursor` on, a piece at a time; raises ArrowInvalid for
        the first failing piece (its row numbers count from that piece's first line)."""
        if HAS_OPEN_JSON:
            reader = pj.open_json(pa.BufferReader(lines.span(cursor, len(lines))),
                                  read_options=options, parse_options=self.parse_options)
            yield from reader
            return
        # pyarrow < 16 has no streaming JSON reader: cut line-aligned pieces and read each.
        index = cursor
        while index < len(lines):
            end = int(np.searchsorted(lines.starts, lines.starts[index] + PROBE_BLOCK_BYTES, side="right"))
            end = max(end - 1, index + 1) if end < len(lines) else len(lines)
            yield from self._read(lines.span(index, end)).to_batches()
            index = end

    def _accept_batches(self, batches: list, lines: _Lines, cursor: int) -> None:
        if not batches:
            return
        table = pa.Table.from_batches(batches, schema=self.read_schema)
        self._accept(table, lines.numbers[cursor:cursor + table.num_rows], lambda i: lines.raw(cursor + i))

    def _locate(self, lines: _Lines, cursor: int, error: Exception) -> tuple[int, str, bool] | None:
        """The bad line a probe from `cursor` failed on, with its reason; None if it cannot be
        pinned down safely (the caller then bisects)."""
        message = str(error)
        match = _ROW_RE.search(message)
        if match:
            index = cursor + int(match.group(1))
            if index >= len(lines):
                return None
            candidates = [index]
        else:
            # A conversion error names the value, not the row: try the lines that contain it.
            value = _CONVERT_RE.search(message)
            if not value:
                return None
            candidates = lines.containing(value.group(2).encode("utf-8", "surrogateescape"), cursor,
                                          limit=4, within=4 * PROBE_BLOCK_BYTES)
        for index in candidates:
            line = lines.raw(index)
            problem = self._diagnose(line)
            if problem:
                self._learn(message)
                return index, problem[0], problem[1]
            try:  # Python sees nothing wrong: let Arrow judge the line alone
                table = self._read(line)
            except pa.ArrowInvalid as exc:
                return index, explain_arrow_error(str(exc)), False
            if table.num_rows != 1:
                return index, "line holds more than one JSON value", False
        return None

    def entries(self, lines: _Lines) -> None:
        """The probe's last resort for lines left over (never probes again, so it always ends):
        one read when they are clean; otherwise pin down the failing line (by row, or by the
        value a conversion error names), drop it and read again; bisect only when neither works."""
        while len(lines):
            if len(lines) == 1:
                self._single(int(lines.numbers[0]), lines.raw(0))
                return
            try:
                table = self._read(lines.span(0, len(lines)))
            except pa.ArrowInvalid as exc:
                found = self._locate(lines, 0, exc)
            else:
                if table.num_rows == len(lines):
                    self._accept(table, lines.numbers, lines.raw)
                    return
                found = None  # a line held two values: rows do not match lines
            if found is None:
                mid = len(lines) // 2
                self.entries(lines.pick([(0, mid)]))
                self.entries(lines.pick([(mid, len(lines))]))
                return
            index, reason, syntax = found
            self._reject(int(lines.numbers[index]), lines.raw(index), reason, syntax=syntax)
            lines = lines.pick([(0, index), (index + 1, len(lines))])

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
        problem = _check(value, self.rule, "")
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
            self._single(1, json.dumps(value, ensure_ascii=False).encode("utf-8"))
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
                self._lines(_Lines.of(group))
                self.settle()
                group, size = [], 0
        self._lines(_Lines.of(group))


def _to_timestamps(values: pa.Array) -> pa.Array:
    """ISO-8601 strings -> timestamp[us, UTC] as Arrow's JSON reader converts them (a value with a
    zone offset is converted to UTC, a naive one is taken as UTC); raises ArrowInvalid for a value
    that is not a timestamp. Arrow's cast refuses naive strings for a zoned type, so those are
    cast as naive timestamps first."""
    try:
        return pc.cast(values, TS)
    except pa.ArrowInvalid as exc:
        named = _CAST_RE.search(str(exc))
        if named and not _is_naive_timestamp(named.group(1)):
            raise  # not a timestamp at all: no need to try the naive ones
    tail = pc.utf8_slice_codeunits(values, 10)  # after YYYY-MM-DD: a zone is 'Z' or a +/- offset
    zoned = pc.fill_null(pc.or_(pc.ends_with(tail, "Z"), pc.match_substring_regex(tail, "[+-]")), False)
    none = pa.scalar(None, pa.string())
    with_zone = pc.cast(pc.if_else(zoned, values, none), TS)
    naive = pc.cast(pc.cast(pc.if_else(zoned, none, values), pa.timestamp("us")), TS)
    return pc.if_else(zoned, with_zone, naive)


def _numpy(values) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.to_numpy(zero_copy_only=False)


def _is_naive_timestamp(value: str) -> bool:
    try:
        pc.cast(pa.array([value]), pa.timestamp("us"))
        return True
    except pa.ArrowInvalid:
        return False


def _unconvertible(values: pa.Array, message: str | None = None) -> tuple[np.ndarray, pa.Array]:
    """A mask of the values `_to_timestamps` refuses, and the others converted (`message`: the
    error of a cast of all of them, when one was tried). Arrow's cast error names the value, so
    each distinct bad value costs one failed cast and one vectorized comparison; bisection is the
    fallback when a message cannot be matched to the values."""
    bad = np.zeros(len(values), dtype=bool)
    none = pa.scalar(None, pa.string())
    rest = values
    while True:
        if message is None:
            rest = pc.if_else(pa.array(bad), none, values) if bad.any() else values
            try:
                return bad, _to_timestamps(rest)
            except pa.ArrowInvalid as exc:
                message = str(exc)
        named, message = _CAST_RE.search(message), None
        hits = None
        if named:
            hits = pc.fill_null(pc.equal(values, named.group(1)), False).to_numpy(zero_copy_only=False) & ~bad
        if hits is None or not hits.any():
            bad |= _bisect_unconvertible(rest)
            return bad, _to_timestamps(pc.if_else(pa.array(bad), none, values))
        bad |= hits


def _bisect_unconvertible(values: pa.Array) -> np.ndarray:
    try:
        _to_timestamps(values)
        return np.zeros(len(values), dtype=bool)
    except pa.ArrowInvalid:
        if len(values) == 1:
            return np.ones(1, dtype=bool)
    mid = len(values) // 2
    return np.concatenate([_bisect_unconvertible(values.slice(0, mid)), _bisect_unconvertible(values.slice(mid))])


def _json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _rule(arrow_type: pa.DataType) -> tuple:
    """What `_check` needs to know of an Arrow type, worked out once per schema: (kind, detail)
    with kind one of object, array, string, boolean, integer, number, any."""
    if pa.types.is_struct(arrow_type):
        return "object", tuple((arrow_type.field(i).name, _rule(arrow_type.field(i).type))
                               for i in range(arrow_type.num_fields))
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return "array", _rule(arrow_type.value_type)
    if pa.types.is_string(arrow_type) or pa.types.is_timestamp(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string", None
    if pa.types.is_boolean(arrow_type):
        return "boolean", None
    if pa.types.is_integer(arrow_type):
        return "integer", str(arrow_type)
    if pa.types.is_floating(arrow_type):
        return "number", None
    return "any", None


def _check(value, rule: tuple, path: str) -> str | None:
    """The first place where a decoded JSON value does not fit the type `rule` (from `_rule`),
    said as Arrow would."""
    if value is None:
        return None
    kind, detail = rule
    if kind == "object":
        if not isinstance(value, dict):
            return _mismatch(path, value, "object")
        for name, child in detail:
            if name in value:
                problem = _check(value[name], child, f"{path}.{name}" if path else name)
                if problem:
                    return problem
        return None
    if kind == "array":
        if not isinstance(value, list):
            return _mismatch(path, value, "array")
        for element in value:
            problem = _check(element, detail, path + "[]")
            if problem:
                return problem
        return None
    if kind == "string":
        return None if isinstance(value, str) else _mismatch(path, value, "string")
    if kind == "boolean":
        return None if isinstance(value, bool) else _mismatch(path, value, "boolean")
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _mismatch(path, value, "number")
        if isinstance(value, float) or not -(2**63) <= value < 2**63:
            return f"value {value!r} of field '{path}' is not a valid {detail}"
        return None
    if kind == "number":
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
    """Cut the stream into blocks of whole lines and hand them to the fast path. A block is the
    bytes carried over (the start of a line) joined to the new chunk up to its last newline: one
    copy, where growing a buffer and slicing the block off it made two (~0.3 ms per MiB)."""
    head = buf  # read, not handed on yet
    for chunk in chunks:
        t.result.bytes_in += len(chunk)
        if len(head) + len(chunk) < t.block_bytes:
            head += chunk
            continue
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            block = b"".join((head, memoryview(chunk)[: cut + 1])) if head else chunk[: cut + 1]
            head = chunk[cut + 1:]
        else:
            head += chunk
            cut = head.rfind(b"\n")
            if cut < 0:
                if len(head) > t.max_json_bytes:  # one line with no end in sight: reject it, resync
                    head = _skip_long_line(t, head, chunks, line_no)
                    line_no += 1
                continue
            block, head = head[: cut + 1], head[cut + 1:]
        line_no += t.block(block, line_no)
        t.write_rejects()
    if head:
        t.block(head, line_no)


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
