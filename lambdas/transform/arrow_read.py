"""Every call into Arrow's JSON reader, and what its error messages mean.

Words used here:
- one-block read: Arrow reads all of the given bytes as one block (its block size set above their
  length), so a failure names a row counted from the first given line.
- screen read: a parse-only read with a reduced schema (`parses`): it checks syntax and the kinds
  of a few fields and builds nothing, at about half the cost of a full read.
- pieces: the streaming reader's record batches over lines, PROBE_BLOCK_BYTES at a time; the
  pieces before a failure are good.
- named row / named value: Arrow's parse errors end "in row N" (N counted from the read's first
  line); its conversion errors name the value that failed instead.
pyarrow 14-15 lack the streaming reader (`pyarrow.json.open_json`); the fallback for each use is
here, in one place.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.json as pj

from lambdas.transform.diagnose import article

HAS_OPEN_JSON = hasattr(pj, "open_json")
# A failed block is re-read in pieces this big: small enough that a bad line spoils little, big
# enough that Arrow's per-piece cost stays small (measured best at 64-128 KiB).
PROBE_BLOCK_BYTES = 128 << 10

_ROW_RE = re.compile(r" in row (\d+)$")
_KIND_RE = re.compile(r"Column\((.*?)\) changed from (\w+) to (\w+)")
_CONVERT_RE = re.compile(r"Failed (?:of|to) convert(?:ion of)? JSON to (.*?), couldn't parse:(.*)$", re.S)


def one_block_options(data) -> pj.ReadOptions:
    """Read options under which Arrow takes all of `data` as one block."""
    return pj.ReadOptions(use_threads=False, block_size=max(len(data) + 64, 1 << 16))


def _open_one_block(data, parse_options: pj.ParseOptions):
    """Arrow's streaming reader over `data` as one block, which it parses as it opens."""
    return pj.open_json(pa.BufferReader(data), read_options=one_block_options(data), parse_options=parse_options)


def read_one_block(data, parse_options: pj.ParseOptions) -> pa.Table:
    """One Arrow JSON read of `data` (bytes or a pyarrow Buffer) as one block. The streaming reader
    sets up faster than read_json, where it exists."""
    if HAS_OPEN_JSON:
        reader = _open_one_block(data, parse_options)
        return pa.Table.from_batches(list(reader), schema=reader.schema)
    return pj.read_json(pa.BufferReader(data), read_options=one_block_options(data), parse_options=parse_options)


def parses(data, parse_options: pj.ParseOptions) -> None:
    """The screen read: raise ArrowInvalid where Arrow refuses `data` (as one block), keeping
    nothing. The streaming reader parses its first block as it opens; not asking it for the batch
    saves its read-ahead of a next block."""
    if HAS_OPEN_JSON:
        _open_one_block(data, parse_options)
    else:
        read_one_block(data, parse_options)


def pieces(lines, cursor: int, parse_options: pj.ParseOptions) -> Iterator[pa.RecordBatch]:
    """Record batches of `lines` (a line_index.Lines) from `cursor` on, a piece at a time; raises
    ArrowInvalid for the first failing piece (its row numbers count from that piece's first line)."""
    if HAS_OPEN_JSON:
        options = pj.ReadOptions(use_threads=False, block_size=PROBE_BLOCK_BYTES)
        yield from pj.open_json(pa.BufferReader(lines.span(cursor, len(lines))),
                                read_options=options, parse_options=parse_options)
        return
    # No streaming reader: cut line-aligned pieces and read each.
    index = cursor
    while index < len(lines):
        end = int(np.searchsorted(lines.starts, lines.starts[index] + PROBE_BLOCK_BYTES, side="right"))
        end = max(end - 1, index + 1) if end < len(lines) else len(lines)
        yield from read_one_block(lines.span(index, end), parse_options).to_batches()
        index = end


def kind_only(type_: pa.DataType) -> pa.DataType:
    """A type Arrow's JSON reader checks the kind of (object, array, string, ...) without
    building the children of a struct."""
    if pa.types.is_struct(type_):
        return pa.struct([])
    if pa.types.is_list(type_):
        return pa.list_(kind_only(type_.value_type))
    return type_


def named_row(message: str) -> int | None:
    """The row a parse error names (counted from the read's first line), if it names one."""
    match = _ROW_RE.search(message)
    return int(match.group(1)) if match else None


def named_value(message: str) -> str | None:
    """The value a conversion error names, if it is one."""
    match = _CONVERT_RE.search(message)
    return match.group(2) if match else None


def type_error_path(message: str) -> list[str]:
    """The field path of a type error ("Column(/items/[]) changed from ..." -> ["items", "[]"]);
    [] when the message is not a type error or is about the line itself."""
    kind = _KIND_RE.search(message)
    return [part for part in kind.group(1).split("/") if part] if kind else []


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
        return f"field '{_path_from_arrow(path)}' is {article(got)} where the schema expects {article(expected)}"
    m = _CONVERT_RE.search(message)
    if m:
        type_, value = m.groups()
        return f"value {value[:200]!r} is not a valid {type_}"
    if "specified twice" in message:
        return "duplicate field: " + _ROW_RE.sub("", message.replace("JSON parse error: ", ""))
    if message.startswith("JSON parse error:"):
        return "malformed JSON: " + _ROW_RE.sub("", message[len("JSON parse error:"):].strip())
    return message
