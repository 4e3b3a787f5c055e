"""A JSON array document -> its elements, one per line, found with numpy.

An array of millions of small elements decoded element by element costs Python per element (about
10 us each); cut into lines instead, it takes the JSONL path like any other object, one Arrow read
per block. Element k (1-based) becomes line k, so quarantine's line numbers are element indexes.

Words used here:
- string span: the bytes between an unescaped `"` and the next one (a quote is escaped when an odd
  run of backslashes precedes it).
- structural byte: `[ ] { } ,` or a line break outside every string span. The array's own brackets
  are at depth 0, its elements' commas at depth 1.
- safe to split: the document is one array (its first byte `[`, its brackets balanced, nothing but
  whitespace after the last `]`) and no string holds a raw line break (invalid JSON). Anything else
  returns None, and the caller decodes the document element by element, which says what is wrong.
"""

from __future__ import annotations

import numpy as np

from lambdas.transform.line_index import WHITESPACE

_STRUCTURAL = np.zeros(256, dtype=bool)
_STRUCTURAL[[ord(c) for c in "[]{},\n\r"]] = True
_DELTA = np.zeros(256, dtype=np.int8)  # +1 for an opening bracket, -1 for a closing one
_DELTA[[ord("["), ord("{")]] = 1
_DELTA[[ord("]"), ord("}")]] = -1


PIECE_BYTES = 1 << 20  # looked at a piece at a time, so the index arrays stay small
EDGE_BYTES = 1 << 20  # where the array's first and last bytes are looked for


def elements_as_lines(data: bytes) -> bytes | None:
    """The array's elements, one per line, or None when `data` is not safe to split."""
    n = (len(data) - 1) // 3
    if n and len(data) == 3 * n + 1 and data[:4] in (b"[{}]", b"[{},") and data == b"[" + b"{}," * (n - 1) + b"{}]":
        # A flood of empty objects, written without spaces: what `cut` gives it, at memcmp speed
        # (every byte of it is structural, the slowest input for `cut`'s numpy).
        return b" " + b"{}\n" * (n - 1) + b"{} "
    return cut(data)


def cut(data: bytes) -> bytes | None:
    """`elements_as_lines` by the general rule: structural bytes found with numpy."""
    arr = np.frombuffer(data, dtype=np.uint8)
    content = np.flatnonzero(~WHITESPACE[arr[:EDGE_BYTES]])
    if not len(content) or arr[content[0]] != ord("["):
        return None
    first = int(content[0])
    tail = np.flatnonzero(~WHITESPACE[arr[-EDGE_BYTES:]])
    if not len(tail):
        return None  # a long run of whitespace after it: the decoder handles that
    last = len(arr) - min(len(arr), EDGE_BYTES) + int(tail[-1])  # the last non-whitespace byte
    out = arr.copy()
    in_string, depth, closed_at = False, 0, None
    for low in range(0, len(arr), PIECE_BYTES):
        piece = arr[low:low + PIECE_BYTES]
        quotes = _unescaped_quotes(arr, low, piece)
        structural = np.flatnonzero(_STRUCTURAL[piece])
        chars = piece[structural]
        if len(quotes) or in_string:
            # Inside a string when an odd number of unescaped quotes precede it (from the piece's state).
            inside = (np.searchsorted(quotes, structural).astype(np.int64) + in_string) % 2 == 1
            in_string ^= bool(len(quotes) % 2)
            if np.any((chars[inside] == 10) | (chars[inside] == 13)):
                return None  # a raw line break in a string: invalid JSON, let the decoder say so
            structural, chars = structural[~inside], chars[~inside]
        outside = structural + low  # no quote in the piece and not in a string: all of it outside
        delta = _DELTA[chars]
        after = depth + np.cumsum(delta, dtype=np.int64)
        brackets = np.flatnonzero(delta)
        if closed_at is not None and len(brackets):
            return None  # brackets after the array closed: not one array
        shut = brackets[after[brackets] <= 0]
        if len(shut):  # depth 0 exactly: every bracket before the array's last is at depth 1 or more
            closed_at = int(outside[shut[0]])
            if brackets[-1] != shut[0]:
                return None  # brackets after the array closed, in the same piece
        out[outside[(chars == 10) | (chars == 13)]] = 32  # a pretty-printed element becomes one line
        out[outside[(chars == ord(",")) & (after - delta == 1)]] = 10  # the elements' commas
        depth = int(after[-1]) if len(after) else depth
    if in_string or closed_at != last or arr[last] != ord("]"):
        return None
    out[first] = out[last] = 32
    if not np.any(~WHITESPACE[out[first:last + 1]]):
        return b""  # an empty array: no element, no line
    return out.tobytes()


def _unescaped_quotes(arr: np.ndarray, low: int, piece: np.ndarray) -> np.ndarray:
    """Positions (in `piece`, which starts at `low` in `arr`) of the quotes no backslash escapes."""
    quotes = np.flatnonzero(piece == 34)
    # A quote at the document's first byte is "after" itself, never a backslash.
    after_backslash = quotes[arr[np.maximum(quotes + low - 1, 0)] == 92]
    escaped = []
    for q in after_backslash.tolist():  # only quotes right after a backslash: count the run
        i = q + low - 1
        while i >= 0 and arr[i] == 92:
            i -= 1
        if (q + low - 1 - i) % 2:
            escaped.append(q)
    return np.setdiff1d(quotes, escaped, assume_unique=True) if escaped else quotes
