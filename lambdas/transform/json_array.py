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

_DELTA = np.zeros(256, dtype=np.int8)  # +1 for an opening bracket, -1 for a closing one
_DELTA[[ord("["), ord("{")]] = 1
_DELTA[[ord("]"), ord("}")]] = -1


PIECE_BYTES = 1 << 20  # looked at a piece at a time, so the index arrays stay small
EDGE_BYTES = 1 << 20  # where the array's first and last bytes are looked for
# A piece with at least 1 / DENSE_SHARE structural bytes is read by whole-piece masks (`_dense`),
# others by the structural bytes' positions (`_sparse`): the same marks either way.
DENSE_SHARE = 4


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
        structural = _structural(piece)
        read = _dense if np.count_nonzero(structural) * DENSE_SHARE >= len(piece) else _sparse
        step = read(piece, out[low:low + PIECE_BYTES], structural, quotes, in_string, depth)
        if step is None:
            return None  # a raw line break in a string: invalid JSON, let the decoder say so
        brackets, shut, depth = step
        in_string ^= bool(len(quotes) % 2)
        if closed_at is not None and brackets:
            return None  # brackets after the array closed: not one array
        if shut is not None:  # depth 0 exactly: every bracket before the array's last is at depth 1 or more
            closed_at = low + shut  # a bracket after it in this piece ends past it: not the last byte
    if in_string or closed_at != last or arr[last] != ord("]"):
        return None
    out[first] = out[last] = 32
    if not np.any(~WHITESPACE[out[first:last + 1]]):
        return b""  # an empty array: no element, no line
    return out.tobytes()


def _structural(piece: np.ndarray) -> np.ndarray:
    """Where the piece's structural bytes are, as a mask (comparisons: several times faster than a
    table lookup per byte)."""
    mask = piece == ord(",")
    for char in b"[]{}\n\r":
        mask |= piece == char
    return mask


def _sparse(piece, out, structural, quotes, in_string: bool, depth: int):
    """One piece by its structural bytes' positions (few of them: most of the piece is strings and
    numbers). Marks `out` (the piece's copy) and returns (any bracket, where the depth first
    reaches 0 (or None), the depth after the piece), or None for a raw line break in a string."""
    at = np.flatnonzero(structural)
    chars = piece[at]
    if len(quotes) or in_string:
        # Inside a string when an odd number of unescaped quotes precede it (from the piece's state).
        inside = (np.searchsorted(quotes, at).astype(np.int64) + in_string) % 2 == 1
        if np.any((chars[inside] == 10) | (chars[inside] == 13)):
            return None
        at, chars = at[~inside], chars[~inside]
    delta = _DELTA[chars]
    after = depth + np.cumsum(delta, dtype=np.int64)
    brackets = np.flatnonzero(delta)
    shut = brackets[after[brackets] <= 0]
    out[at[(chars == 10) | (chars == 13)]] = 32  # a pretty-printed element becomes one line
    out[at[(chars == ord(",")) & (after - delta == 1)]] = 10  # the elements' commas
    return bool(len(brackets)), int(at[shut[0]]) if len(shut) else None, int(after[-1]) if len(after) else depth


def _dense(piece, out, structural, quotes, in_string: bool, depth: int):
    """`_sparse` by whole-piece masks, for a piece that is mostly structural bytes (a flood of
    small elements such as `{ }, `), where the positions' index arrays would cost more than a
    few passes over the piece's bytes."""
    delta = ((piece == 91) | (piece == 123)).view(np.int8) - ((piece == 93) | (piece == 125)).view(np.int8)
    breaks = (piece == 10) | (piece == 13)
    commas = piece == ord(",")
    if len(quotes) or in_string:
        flips = np.zeros(len(piece), dtype=np.int8)
        flips[quotes] = 1
        inside = (np.cumsum(flips, dtype=np.int64) + in_string) % 2 == 1  # a structural byte is never a quote
        if np.any(breaks & inside):
            return None
        outside = ~inside
        delta[inside] = 0
        breaks &= outside
        commas &= outside
    after = np.cumsum(delta, dtype=np.int32)  # within a piece (PIECE_BYTES) and a document (64 MB): no overflow
    after += depth
    bracket = delta != 0
    shut = np.flatnonzero(bracket & (after <= 0))
    np.putmask(out, breaks, 32)
    np.putmask(out, commas & (after == 1), 10)
    return bool(bracket.any()), int(shut[0]) if len(shut) else None, int(after[-1])


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
