"""line_index.py on small blocks: Lines (split, joined, picked, cut), the careful-block scan, the
blank and `null` lines, needles within lines, two-value marks, UTF-8 and the empty-object flood
check. Every Lines built here is also checked to be what the class promises: line i is
buf[starts[i]:ends[i]] and any run of lines is one slice."""

import numpy as np
import pytest

from lambdas.transform.line_index import (
    Lines,
    all_empty_objects,
    is_utf8,
    line_starts,
    newline_positions,
    scan_block,
    two_value_marks,
    without,
)

LONG = b'{"order_id": "o-12345", "n": 1}'  # 16 bytes or more: never short


def listed(lines: Lines) -> list[tuple[int, bytes]]:
    """(line number, bytes) of every line, after checking every run of them is one slice."""
    raws = [lines.raw(i) for i in range(len(lines))]
    n = len(lines)
    for i in range(n):
        for j in {i + 1, i + 2, n} if n > 12 else range(i + 1, n + 1):
            if i < j <= n:
                assert bytes(lines.span(i, j)) == b"\n".join(raws[i:j]), (i, j)
    assert lines.starts.dtype == lines.ends.dtype == lines.numbers.dtype == np.int64
    assert len(lines.starts) == len(lines.ends) == len(lines.numbers) == n
    return list(zip(lines.numbers.tolist(), raws, strict=True))


def numbered(raws, first=1):
    return list(enumerate(raws, start=first))


def test_split_finds_every_line_blank_ones_too_numbered_from_first_line():
    data = b"a\nbb\n\n ccc\n\n"
    assert listed(Lines.split(data, 7)) == numbered([b"a", b"bb", b"", b" ccc", b""], first=7)


def test_split_keeps_a_last_line_without_newline():
    assert listed(Lines.split(b"a\n\nlast", 1)) == numbered([b"a", b"", b"last"])
    assert listed(Lines.split(b"only", 3)) == [(3, b"only")]
    assert listed(Lines.split(b"\n", 1)) == [(1, b"")]


def test_split_from_known_newlines_is_the_same():
    data = b"a\nbb\n\nccc"
    newlines = np.array([1, 4, 5], dtype=np.int64)
    assert listed(Lines.split(data, 2, newlines)) == listed(Lines.split(data, 2))


def test_lines_of_pairs_keep_their_numbers_and_bytes():
    pairs = [(3, b"x"), (9, b"yy"), (10, b""), (11, b"zzz")]
    lines = Lines.of(pairs)
    assert listed(lines) == pairs and lines.buf == b"x\nyy\n\nzzz"
    assert len(Lines.of([])) == 0 and len(Lines.empty()) == 0 and listed(Lines.empty()) == []


def test_maybe_blank_is_every_short_line_and_every_line_starting_with_whitespace():
    raws = [LONG, b"", b"null", b"x" * 15, b"x" * 16, *(bytes([c]) + LONG for c in b" \t\r\x0b\x0c"),
            b"\x08" + LONG, LONG]
    assert Lines.of(numbered(raws)).maybe_blank().tolist() == [1, 2, 3, 5, 6, 7, 8, 9]
    assert Lines.of(numbered([LONG, b""])).maybe_blank().tolist() == [1]  # an empty last line
    assert Lines.of([(1, b"")]).maybe_blank().tolist() == [0]  # no bytes at all
    assert Lines.empty().maybe_blank().tolist() == []


PATTERN = [b"", b"   ", b"null", b" null\t", b"nul", b'{"a":1}', b"nullx", b"\tx", b"nu l", b"\t\r ", LONG,
           b"  " + LONG]


@pytest.mark.parametrize("repeat", [1, 30])  # a few candidates looked at one by one; many counted at once
def test_blank_and_null_lines_are_told_apart(repeat):
    lines = Lines.of(numbered(PATTERN * repeat))
    blank, null = lines.blank_and_null()
    period = len(PATTERN)
    assert blank.tolist() == [k * period + i for k in range(repeat) for i in (0, 1, 9)]
    assert null.tolist() == [k * period + i for k in range(repeat) for i in (2, 3)]
    assert np.arange(len(lines))[blank].tolist() == blank.tolist()  # usable as indexes
    assert np.arange(len(lines))[null].tolist() == null.tolist()


@pytest.mark.parametrize("repeat", [1, 300])
def test_blank_and_null_of_lines_with_neither_are_empty_index_arrays(repeat):
    blank, null = Lines.of(numbered([b"x", b"{}"] * repeat)).blank_and_null()
    assert blank.tolist() == null.tolist() == []
    assert np.arange(3)[blank].tolist() == np.arange(3)[null].tolist() == []


@pytest.mark.parametrize("repeat", [1, 40])
def test_lines_that_start_with_null_are_found_whitespace_led_or_not_but_not_those_skipped(repeat):
    raws = [b"null" + b" " * 20, b'{"a": 1}', b"nullx", b"nul", b"\t null,", b"  nu", b"x null", b"null", b"",
            b'{"n": null}', b"n", b"NULL", b"null}", b"nope", b"xxll", b"abcl", b"nuxl", b"nulL", b" ", b"\t\t"]
    lines = Lines.of(numbered(raws * repeat))
    period = len(raws)
    expected = [k * period + i for k in range(repeat) for i in (0, 2, 4, 7, 12)]
    none = np.zeros(0, dtype=np.int64)
    assert lines.null_led(none).tolist() == expected
    skip = np.array([k * period + i for k in range(repeat) for i in (7, 8, 18, 19)])  # what blank_and_null found
    assert lines.null_led(skip).tolist() == [i for i in expected if i % period != 7]
    assert np.arange(len(lines))[lines.null_led(skip)].tolist() == [i for i in expected if i % period != 7]


@pytest.mark.parametrize("raws", [[b""], [b"x"], [b"{}", b""], [b"{}", b"n"], [b"{}", b"nu"], [b"null!", b""],
                                  [b'{"a": null}', b"", b"nul"]])
def test_null_led_of_short_and_empty_last_lines(raws):
    lines = Lines.of(numbered(raws))
    found = lines.null_led(np.zeros(0, dtype=np.int64))
    assert found.tolist() == [i for i, raw in enumerate(raws) if raw.lstrip().startswith(b"null")]
    assert found.dtype == np.int64 and np.arange(len(lines))[found].tolist() == found.tolist()  # usable as indexes


def test_null_led_lines_of_a_view_and_of_nothing():
    lines = Lines.of(numbered([b"{}", b"nullx", b"{}", b"null!"])).pick([(0, 3)])
    assert lines.null_led(np.zeros(0, dtype=np.int64)).tolist() == [1]
    assert Lines.empty().null_led(np.zeros(0, dtype=np.int64)).tolist() == []


CONTAINING = Lines.of(numbered([b'{"a": 1}', b'{"b": 2}', b'{"a": 3, "a": 4}', b'x"a', b'{"a"}']))


def test_containing_finds_each_line_holding_the_needle_once_from_the_cursor():
    assert CONTAINING.containing(b'"a"', 0, limit=10, within=1000) == [0, 2, 4]
    assert CONTAINING.containing(b'"a"', 1, limit=10, within=1000) == [2, 4]
    assert CONTAINING.containing(b'"a"', 4, limit=10, within=1000) == [4]
    assert CONTAINING.containing(b'"a"', 0, limit=2, within=1000) == [0, 2]
    assert CONTAINING.containing(b'"a"', 0, limit=0, within=1000) == []
    assert CONTAINING.containing(b'{"a"', 0, limit=10, within=1000) == [0, 2, 4]  # found at the buffer's first byte


def test_containing_looks_only_within_so_many_bytes_from_the_cursor():
    assert CONTAINING.containing(b'"a"', 0, limit=10, within=4) == [0]  # `"a"` is bytes 1-3
    assert CONTAINING.containing(b'"a"', 0, limit=10, within=3) == []
    start = int(CONTAINING.starts[2])
    assert CONTAINING.containing(b'"a"', 1, limit=10, within=start - int(CONTAINING.starts[1]) + 4) == [2]


def test_containing_never_matches_across_a_line_end():
    assert CONTAINING.containing(b'}\n{', 0, limit=10, within=1000) == []
    assert CONTAINING.containing(b'1}', 0, limit=10, within=1000) == [0]  # ends exactly at the line's end
    assert CONTAINING.containing(b'x"a\n', 0, limit=10, within=1000) == []


def test_containing_with_no_needle_or_past_the_end_finds_nothing():
    assert CONTAINING.containing(b"", 0, limit=10, within=1000) == []
    assert CONTAINING.containing(b"a", 5, limit=10, within=1000) == []


def test_containing_looks_on_from_the_next_line_after_a_match():
    assert Lines.of(numbered([b"ab", b"b", b"abc"])).containing(b"b", 0, limit=10, within=1000) == [0, 1, 2]


def test_containing_in_a_view_never_looks_past_its_last_line():
    # A view (pick of one range, without) shares its parent's buffer, which goes on past its last
    # line: a match there was found again and again, for ever (the locator's bisection hung on it).
    view = CONTAINING.pick([(0, 2)])
    assert view.containing(b'"a"', 0, limit=10, within=1000) == [0]
    assert view.containing(b'"a": 3', 0, limit=10, within=1000) == []
    assert CONTAINING.without([3, 4]).containing(b'x"a', 0, limit=10, within=1000) == []


RAWS = [b"l%d" % i + b"x" * (i % 3) for i in range(200)]
MANY = Lines.of(numbered(RAWS, first=101))


def test_pick_gives_the_lines_in_the_ranges_in_order():
    picked = MANY.pick([(0, 2), (5, 5), (7, 9), (199, 200)])
    assert listed(picked) == [(101 + i, RAWS[i]) for i in (0, 1, 7, 8, 199)]
    assert listed(MANY.pick([(3, 3)])) == [] and listed(MANY.pick([])) == []


def test_pick_of_one_range_shares_the_buffer():
    picked = MANY.pick([(4, 4), (10, 20)])
    assert picked.buf is MANY.buf and listed(picked) == [(101 + i, RAWS[i]) for i in range(10, 20)]


@pytest.mark.parametrize("cuts", [[], [0], [199], [0, 199], [5, 5, 6], [10, 50, 51, 120],
                                  list(range(0, 200, 2)), list(range(1, 200, 2)), list(range(0, 200, 3)),
                                  list(range(1, 126, 2)), list(range(1, 128, 2)), list(range(200)),
                                  list(range(1, 200)), list(range(199)), [*range(50), *range(51, 200)]])
def test_without_leaves_out_the_cut_lines(cuts):
    kept = MANY.without(cuts)
    assert listed(kept) == [(101 + i, RAWS[i]) for i in range(200) if i not in cuts]


@pytest.mark.parametrize("cuts", [[], [0], [199], [0, 1, 198, 199]])
def test_without_of_one_run_shares_the_buffer(cuts):
    assert MANY.without(cuts).buf is MANY.buf


def test_without_of_lines_starting_past_the_buffers_start():
    view = MANY.without([0, 1])  # starts[0] > 0 in the shared buffer
    assert listed(view.without([3, 5])) == [(101 + i, RAWS[i]) for i in range(2, 200) if i not in (5, 7)]
    assert listed(view.without(list(range(0, 198, 2)))) == [(101 + i, RAWS[i]) for i in range(3, 200, 2)]


def test_two_value_candidates_are_the_lines_with_a_mark():
    raws = [b'{"a": 1}', b'{"a": 1}{"b": 2}', b'{} {}', b"{}\tnull", b'{"a": "}"}', b"{}}{}{", b"{}\r\x0b{}",
            b"{} x {}", b"{}", b"}{}"]
    lines = Lines.of(numbered(raws))
    assert sorted(lines.two_value_candidates()) == [1, 2, 3, 5, 6, 9]  # 9: a mark at the line's first byte
    assert len(set(lines.two_value_candidates())) == len(lines.two_value_candidates())  # each line once
    assert Lines.empty().two_value_candidates() == []
    assert Lines.of(numbered([b"{}{}", b"x"])).two_value_candidates() == [0]  # a mark on the first line


def test_two_value_candidates_of_lines_past_the_buffers_start():
    lines = Lines.of(numbered([b"{}{}", b"{}", b"{}", b"x", b"{} {}"])).without([0, 1])
    assert sorted(lines.two_value_candidates()) == [2]


def test_two_value_marks_are_closing_braces_before_an_object_or_null():
    assert two_value_marks(b"{}{}") == [1]
    assert two_value_marks(b'{"a":{}}null') == [7]
    assert sorted(two_value_marks(b"{} {}{}\t \r\x0b\x0cnull")) == [1, 4, 6]
    assert two_value_marks(memoryview(b"x{}{}")[1:]) == [1]
    assert two_value_marks(b'{"a":1}{') == [6] and two_value_marks(b"{}n") == [1]  # in the last two bytes
    assert two_value_marks(memoryview(b"x{} {}")[1:]) == [1]
    for none in (b"", b"}", b"{}", b"{}\n{}", b"{} ,{}", b"{}x{}", b"{}  ", b"{} [1]"):
        assert two_value_marks(none) == [], none


def test_scan_block_finds_the_newlines():
    data = LONG + b"\n" + LONG + b"\n\n" + LONG
    breaks, _ = scan_block(data)
    assert breaks.tolist() == [i for i, c in enumerate(data) if c == 10]


@pytest.mark.parametrize(("block", "careful"), [
    (LONG + b"\n" + LONG + b"\n", False),
    (LONG, False),
    (b"", False),
    (b"x" * 16 + b"\n" + LONG, False),
    (b"x" * 15 + b"\n" + LONG, True),  # a short first line (may be a bare null)
    (b"short", True),
    (b" " + LONG + b"\n" + LONG, True),
    (LONG + b"\n\n" + LONG, True),  # an empty line
    (LONG + b"\n\t" + LONG, True),
    (LONG + b"\n" + LONG + b"\n \n", True),
    (LONG + b"\n" + LONG + b"\n\n", True),
    (b"null" + b" " * 20 + b"\n" + LONG, True),  # a first line that starts with null: Arrow crashes on it
    (b"nullx" + b"x" * 20 + b"\n" + LONG, True),
    (b"nul" + b"x" * 20 + b"\n" + LONG, True),  # any line that starts with n
    (LONG + b"\nnull" + b" " * 20, True),
    (b"x" * 20 + b"\n" + LONG + b"n", False),  # an n inside a line
])
def test_a_block_is_careful_when_arrow_may_not_map_rows_to_lines(block, careful):
    assert scan_block(block)[1] is careful


@pytest.mark.parametrize("data, valid", [
    (b"", True), (b"plain", True), ("é€😀".encode(), True), (b"\xff", False), (b"\xe2\x82", False),
    (b"\xc0\xaf", False), (b"\xed\xa0\x80", False), (b"ok" + "€".encode()[:2] + b"ok", False),
])
def test_is_utf8(data, valid):
    assert is_utf8(data) is valid
    assert is_utf8(memoryview(b"__" + data)[2:]) is valid


def test_without_gives_the_ranges_around_the_cuts():
    assert without([], 5) == [(0, 5)]
    assert without([0, 4], 5) == [(1, 4)]
    assert without([2, 2], 5) == [(0, 2), (3, 5)]
    assert without([3, 1], 5) == [(0, 1), (2, 3), (4, 5)]
    assert without([3], 6, start=2) == [(2, 3), (4, 6)]
    assert without([2], 6, start=2) == [(3, 6)]
    assert without([0, 1, 2], 3) == [] and without([], 0) == []


def test_line_starts_of_lines_joined_by_single_newlines():
    assert line_starts(np.array([3, 0, 2, 1])).tolist() == [0, 4, 5, 8]
    assert line_starts(np.array([5])).tolist() == [0]
    assert line_starts(np.array([], dtype=np.int64)).tolist() == []


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4099])
@pytest.mark.parametrize("share", [0.0, 0.002, 0.1, 0.5, 1.0])
def test_newline_positions_are_where_the_newlines_are(size, share):
    rng = np.random.default_rng(size)
    data = bytes(np.where(rng.random(size) < share, 10, rng.integers(11, 256, size)).astype(np.uint8))
    arr = np.frombuffer(data, dtype=np.uint8)
    found = newline_positions(arr)
    assert found.tolist() == [i for i, byte in enumerate(data) if byte == 10]
    assert found.dtype == np.int64


@pytest.mark.parametrize("block, expected", [
    (b"{}\n{}\n", True), (b"{}", True), (b" { }\r\n\t{}", True),
    (b"{}\n\n{}\n", False), (b"{}{}\n{}\n", False), (b"{\n}\n", False), (b"}{\n", False),
    (b"{\n}{}\n", False), (b"{}{\n}\n", False), (b"{}\n  ", False), (b"{}\n{} ", True), (b"{}\n{ \r", False),
    (b"{}\n[]\n", False), (b"{}\nnull\n", False), (b'{"a":1}\n', False), (b"", False), (b"\n", False),
    # A flood is of short lines: a block averaging more than 8 bytes a line is turned away unread.
    (b"{      }", True), (b"{      }\n{}\n", True), (b"{       }", False), (b"{       }\n", False),
    (b"{}\n" * 500, True), (b"{}\n" * 499 + b"{}", True), (b"{}\n" * 499 + b"{ ", False),
])
def test_which_blocks_are_all_empty_objects(block, expected):
    newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
    assert all_empty_objects(block, newlines) is expected
