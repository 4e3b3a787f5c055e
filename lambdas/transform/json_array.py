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
_OPEN, _CLOSE = np.zeros(256, dtype=np.int64), np.zeros(256, dtype=np.int64)
_OPEN[[ord("["), ord("{")]] = 1
_CLOSE[[ord("]"), ord("}")]] = 1


def elements_as_lines(data: bytes) -> bytes | None:
    """The array's elements, one per line, or None when `data` is not safe to split."""
    arr = np.frombuffer(data, dtype=np.uint8)
    content = np.flatnonzero(~WHITESPACE[arr])
    if not len(content) or arr[content[0]] != ord("["):
        return None
    quotes = _unescaped_quotes(arr)
    if len(quotes) % 2:
        return None
    starts, ends = quotes[0::2], quotes[1::2]
    structural = np.flatnonzero(_STRUCTURAL[arr])
    span = np.searchsorted(starts, structural, side="right") - 1
    inside = (span >= 0) & (structural < (ends[np.maximum(span, 0)] if len(ends) else 0))
    breaks_inside = arr[structural[inside]]
    if np.any((breaks_inside == 10) | (breaks_inside == 13)):
        return None
    outside = structural[~inside]
    chars = arr[outside]
    delta = _OPEN[chars] - _CLOSE[chars]
    depth = np.cumsum(delta)  # after each structural byte
    brackets = np.flatnonzero(delta)
    last = brackets[-1] if len(brackets) else -1
    if (last < 0 or outside[brackets[0]] != content[0] or outside[last] != content[-1] or depth[last] != 0
            or np.any(depth[brackets[:-1]] <= 0) or arr[outside[last]] != ord("]")):
        return None
    out = arr.copy()
    out[outside[(chars == 10) | (chars == 13)]] = 32  # a pretty-printed element becomes one line
    out[outside[brackets[0]]] = out[outside[last]] = 32
    if not np.any(~WHITESPACE[out]):
        return b""  # an empty array: no element, no line
    commas = outside[(chars == ord(",")) & (depth - delta == 1)]
    out[commas] = 10
    return out.tobytes()


def _unescaped_quotes(arr: np.ndarray) -> np.ndarray:
    quotes = np.flatnonzero(arr == 34)
    after_backslash = quotes[(quotes > 0) & (arr[np.maximum(quotes - 1, 0)] == 92)]
    escaped = []
    for q in after_backslash.tolist():  # only quotes right after a backslash: count the run
        i = q - 1
        while i >= 0 and arr[i] == 92:
            i -= 1
        if (q - 1 - i) % 2:
            escaped.append(q)
    return np.setdiff1d(quotes, escaped, assume_unique=True) if escaped else quotes
