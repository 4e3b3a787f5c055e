"""Where the lines of a block are, found with numpy instead of a Python loop over lines.

Words used here:
- block: a run of whole JSONL lines (bytes), as `blocks.py` cuts them from the stream.
- line number: a line's 1-based number in the bronze object (for a JSON array, the element index).
- `Lines`: some lines of a block held in one buffer, each known by its start, end and line number.
  Consecutive lines are separated by exactly one newline, so any run of them is one zero-copy slice
  that Arrow can read as it is.
- careful block: one where Arrow may not map rows to lines by position (it skips blank lines, reads
  a `null` line as a row of nulls, and a first line that starts with `null` crashes its reader), so
  it must not take the one-read path: a line that is empty, short and first, or starts with
  whitespace or `n`.
- two-value mark: a `}` followed by `{` or `n` - where a line may hold two JSON values, which Arrow
  reads as two rows.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

WHITESPACE = np.zeros(256, dtype=bool)  # byte -> is JSON/ASCII whitespace, newline included
WHITESPACE[[9, 10, 11, 12, 13, 32]] = True
_BLANK = WHITESPACE.copy()  # whitespace within a line
_BLANK[10] = False
_TWO_VALUES = re.compile(rb"\}[ \t\r\f\v]*[{n]")


class Lines:
    """Lines to read, held in one buffer without copies: line i is buf[starts[i]:ends[i]], numbered
    numbers[i] in the bronze object. Consecutive lines are separated by exactly one newline, so
    lines i..j-1 are one slice that Arrow can read as it is."""

    __slots__ = ("buf", "view", "starts", "ends", "numbers")

    def __init__(self, buf: bytes, starts: np.ndarray, ends: np.ndarray, numbers: np.ndarray):
        self.buf, self.view = buf, pa.py_buffer(buf)
        self.starts, self.ends, self.numbers = starts, ends, numbers

    @classmethod
    def split(cls, data: bytes, first_line: int, newlines: np.ndarray | None = None) -> Lines:
        """Every line of a block (blank ones too), found with one vectorized pass (or from the
        positions of its newlines, when known)."""
        if newlines is None:
            newlines = newline_positions(np.frombuffer(data, dtype=np.uint8))
        starts = np.concatenate(([0], newlines + 1))
        ends = np.concatenate((newlines, [len(data)]))
        if data.endswith(b"\n"):  # no line after the final newline
            starts, ends = starts[:-1], ends[:-1]
        return cls(data, starts, ends, np.arange(first_line, first_line + len(starts), dtype=np.int64))

    @classmethod
    def of(cls, pairs: list[tuple[int, bytes]]) -> Lines:
        """Lines from (line number, bytes) pairs, joined into one buffer."""
        lengths = np.fromiter((len(line) for _, line in pairs), dtype=np.int64, count=len(pairs))
        numbers = np.fromiter((no for no, _ in pairs), dtype=np.int64, count=len(pairs))
        starts = line_starts(lengths)
        return cls(b"\n".join(line for _, line in pairs), starts, starts + lengths, numbers)

    @classmethod
    def empty(cls) -> Lines:
        return cls(b"", np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))

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
        return np.flatnonzero((self.ends - self.starts < 16) | WHITESPACE[first])

    def blank_and_null(self) -> tuple[np.ndarray, np.ndarray]:
        """Indexes of the blank lines (only whitespace) and of the bare `null` lines, among those
        that may be either. A few are looked at one by one; many (a flood of blank lines) by
        counting each line's non-whitespace bytes at once, with no Python per line."""
        candidates = self.maybe_blank()
        if len(candidates) <= 256:
            content = [(i, self.raw(i).strip()) for i in candidates.tolist()]
            return (np.array([i for i, c in content if not c], dtype=np.int64),
                    np.array([i for i, c in content if c == b"null"], dtype=np.int64))
        arr = np.frombuffer(self.buf, dtype=np.uint8)
        content = np.zeros(len(arr) + 1, dtype=np.int64)
        np.cumsum(~WHITESPACE[arr], out=content[1:])
        counts = content[self.ends[candidates]] - content[self.starts[candidates]]
        nulls = [i for i in candidates[counts == 4].tolist() if self.raw(i).strip() == b"null"]
        return candidates[counts == 0], np.array(nulls, dtype=np.int64)

    def null_led(self, skip: np.ndarray) -> np.ndarray:
        """Indexes of the lines whose content starts with `null` (`null  `, `nullx`, `null,`),
        other than those in `skip` (the blank and bare `null` lines, found already): Arrow's JSON
        reader crashes the process (SIGSEGV; pyarrow 14.0.2 and 26.0.1) on a read whose first
        line is one, so they are never handed to it. Lines that start with `n` are looked at with
        numpy; whitespace-led ones one by one, and only when the block holds `null` at all."""
        if b"null" not in self.buf:
            return np.zeros(0, dtype=np.int64)
        arr = np.frombuffer(self.buf, dtype=np.uint8)
        starts = self.starts[self.ends - self.starts >= 4]
        word = (arr[starts] == 110) & (arr[starts + 1] == 117) & (arr[starts + 2] == 108) & (arr[starts + 3] == 108)
        led = np.searchsorted(self.starts, starts[word])
        first = arr[np.minimum(self.starts, len(arr) - 1)]
        spaced = np.setdiff1d(np.flatnonzero(WHITESPACE[first]), skip)
        led = np.union1d(led, [i for i in spaced.tolist() if self.raw(i).lstrip().startswith(b"null")])
        return np.setdiff1d(led, skip).astype(np.int64)

    def containing(self, needle: bytes, cursor: int, *, limit: int, within: int) -> list[int]:
        """Up to `limit` lines from `cursor` on whose bytes contain `needle`, looking `within` bytes."""
        found: list[int] = []
        if not needle or cursor >= len(self):
            return found
        pos = int(self.starts[cursor])
        # A view's buffer goes on past its last line (pick, without): a match there would be found
        # again and again.
        stop = min(pos + within, int(self.ends[-1]))
        while len(found) < limit:
            pos = self.buf.find(needle, pos, stop)
            if pos < 0:
                break
            index = int(np.searchsorted(self.starts, pos, side="right")) - 1
            if pos + len(needle) <= self.ends[index]:  # not across a line end
                found.append(index)
            pos = int(self.ends[index]) + 1
        return found

    def pick(self, ranges: list[tuple[int, int]]) -> Lines:
        """The lines in `ranges` ((i, j) half-open, in order): a view for one range, else a copy."""
        ranges = [(i, j) for i, j in ranges if j > i]
        if not ranges:
            return Lines.empty()
        if len(ranges) == 1:
            i, j = ranges[0]
            return Lines(self.buf, self.starts[i:j], self.ends[i:j], self.numbers[i:j])
        index = np.concatenate([np.arange(i, j) for i, j in ranges])
        lengths = self.ends[index] - self.starts[index]
        starts = line_starts(lengths)
        view = memoryview(self.buf)  # slices of a view: joined with one copy, not two
        buf = b"\n".join([view[int(self.starts[i]):int(self.ends[j - 1])] for i, j in ranges])
        return Lines(buf, starts, starts + lengths, self.numbers[index])

    def without(self, cuts) -> Lines:
        """These lines except the indexes `cuts`: a view when the rest is one run, else one copy
        made with numpy (a block of alternating blank and good lines has a run per line)."""
        keep = np.ones(len(self), dtype=bool)
        keep[np.asarray(cuts, dtype=np.int64)] = False
        index = np.flatnonzero(keep)
        if not len(index):
            return Lines.empty()
        if index[-1] - index[0] + 1 == len(index):
            i, j = int(index[0]), int(index[-1]) + 1
            return Lines(self.buf, self.starts[i:j], self.ends[i:j], self.numbers[i:j])
        breaks = np.diff(index) != 1
        run_first = index[np.concatenate(([True], breaks))]
        run_last = index[np.concatenate((breaks, [True]))]
        if len(run_first) <= 64:  # a few runs: joined slices of a view
            return self.pick(list(zip(run_first.tolist(), (run_last + 1).tolist(), strict=True)))
        # Each run's bytes with the newline after it (a removed line follows), the last without.
        begin, end = self.starts[run_first], self.ends[run_last] + 1
        end[-1] -= 1
        delta = np.zeros(len(self.buf) + 1, dtype=np.int8)
        delta[begin] += 1
        delta[end] -= 1
        inside = np.cumsum(delta[:-1], dtype=np.int8).astype(bool)
        buf = np.frombuffer(self.buf, dtype=np.uint8)[inside].tobytes()
        lengths = self.ends[index] - self.starts[index]
        starts = line_starts(lengths)
        return Lines(buf, starts, starts + lengths, self.numbers[index])

    def two_value_candidates(self) -> list[int]:
        """Indexes of the lines with a two-value mark, each once (in the order of `two_value_marks`)."""
        if not len(self):
            return []
        low = int(self.starts[0])
        found: dict[int, None] = {}
        for pos in two_value_marks(memoryview(self.buf)[low:int(self.ends[-1])]):
            found.setdefault(int(np.searchsorted(self.starts, pos + low, side="right")) - 1)
        return list(found)


def scan_block(data: bytes) -> tuple[np.ndarray, bool]:
    """One vectorized look at a block: where its newlines are, and whether it is careful (see the
    module's words): a line that is empty or starts with whitespace or `n`, or a short first line."""
    arr = np.frombuffer(data, dtype=np.uint8)
    breaks = newline_positions(arr)
    if not len(arr):
        return breaks, False
    after = breaks + 1
    after = after[after < len(arr)]  # nothing follows the final newline
    short_first = (breaks[0] if len(breaks) else len(arr)) < 16
    # A line that starts with `n` is careful too: no JSON object does, and one that starts with
    # `null` crashes Arrow's reader as a read's first line and is a row of nulls anywhere else.
    heads = arr[after]
    return breaks, bool(short_first or WHITESPACE[arr[0]] or arr[0] == 110 or WHITESPACE[heads].any()
                        or (heads == 110).any())


def newline_positions(arr: np.ndarray) -> np.ndarray:
    """Where the newlines of `arr` (uint8) are, ascending. A JSONL block has a newline every few
    hundred bytes, so most 8-byte words hold none: the words that do are found first (one pass
    over an eighth as many elements) and only their bytes are looked at, instead of a nonzero
    over every byte (which costs about as much as the rest of the block's scan)."""
    hit = arr == 10
    whole = len(hit) & ~7
    words = hit[:whole].view(np.uint64)
    found = np.flatnonzero(words != 0)
    within = np.flatnonzero(words[found].view(np.bool_))  # 8 bytes for each word found
    positions = (found[within >> 3] << 3) | (within & 7)
    if whole < len(hit):
        positions = np.concatenate((positions, whole + np.flatnonzero(hit[whole:])))
    return positions


def is_utf8(data) -> bool:
    """Whether `data` is valid UTF-8, by Arrow's vectorized check (several times faster than
    bytes.decode). Arrow's JSON reader does not check, so this guards what reaches silver."""
    offsets = np.array([0, len(data)], dtype=np.int64)
    try:
        pa.LargeStringArray.from_buffers(1, pa.py_buffer(offsets), pa.py_buffer(data)).validate(full=True)
        return True
    except pa.ArrowInvalid:
        return False


def two_value_marks(data) -> list[int]:
    """Where a `}` is followed by `{` or `n` (a second object or a null), maybe after spaces or
    tabs: the places a line may hold two JSON values. `data`: any bytes-like object."""
    arr = np.frombuffer(data, dtype=np.uint8)
    closes = np.flatnonzero(arr[:-1] == 125)
    after = arr[closes + 1]
    marks = closes[(after == 123) | (after == 110)].tolist()
    marks += [int(p) for p in closes[_BLANK[after]] if _TWO_VALUES.match(data, int(p))]
    return marks


def without(cuts: list[int], n: int, start: int = 0) -> list[tuple[int, int]]:
    """The ranges of start..n-1 that leave out the indexes `cuts` (all within it)."""
    cuts = sorted(set(cuts))
    return [(i, j) for i, j in zip([start] + [c + 1 for c in cuts], cuts + [n], strict=True) if j > i]


def line_starts(lengths: np.ndarray) -> np.ndarray:
    """Where each line starts when lines of these lengths are joined by single newlines."""
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts[1:])
    return starts


_JSON_BLANK_BYTES = b" \t\r"  # JSON's whitespace within a line


def all_empty_objects(data: bytes, newlines: np.ndarray) -> bool:
    """Whether every line of the block is an empty JSON object: `{` then `}`, JSON whitespace
    allowed around and between them (a flood Arrow would read, slowly, as rows of nulls). Blocks
    of ordinary lines are turned away by their length alone, before any numpy work."""
    n_lines = len(newlines) + (0 if data.endswith(b"\n") else 1)
    if not n_lines or len(data) > 8 * n_lines:
        return False
    expected = b"{}\n" * len(newlines) + (b"" if data.endswith(b"\n") else b"{}")
    if data == expected:
        return True  # the plain flood, at memcmp speed
    # Without the whitespace within lines, the block must read `{}` newline `{}` newline ... exactly.
    return data.translate(None, _JSON_BLANK_BYTES) == expected
