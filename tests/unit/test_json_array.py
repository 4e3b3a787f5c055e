"""json_array.py on small documents: an array's elements cut into one line each (outside strings,
across pieces of any size, escaped quotes, pretty-printed elements), the shortcut for a flood of
empty objects, and every document that is not safe to split left to the element decoder (None).
The general rule is checked against a plain byte-by-byte reference of it."""

import json
import random

import pytest

from lambdas.transform import json_array
from lambdas.transform.json_array import cut, elements_as_lines

SPACE = b" \t\n\r\x0b\x0c"  # what the module counts as whitespace before and after the array
PIECES = [1 << 20, 1, 2, 3, 5, 64]


def reference(data: bytes) -> bytes | None:
    """The rule, one byte at a time: the array's brackets become spaces, its elements' commas
    newlines, line breaks outside strings spaces; None unless it is safe to split."""
    content = [i for i, b in enumerate(data) if b not in SPACE]
    if not content or data[content[0]] != ord("["):
        return None
    first, last = content[0], content[-1]
    out = bytearray(data)
    in_string = escaped = False
    depth, closed_at = 0, None
    for i, b in enumerate(data):
        if in_string:
            if escaped:
                escaped = False
            elif b == ord("\\"):
                escaped = True
            elif b == ord('"'):
                in_string = False
            elif b in b"\r\n":
                return None
            continue
        if b == ord('"'):
            in_string = True
        elif b in b"[]{}":
            if closed_at is not None:
                return None
            depth += 1 if b in b"[{" else -1
            if depth < 0:
                return None
            if depth == 0:
                closed_at = i
        elif b == ord(",") and depth == 1:
            out[i] = ord("\n")
        elif b in b"\r\n":
            out[i] = ord(" ")
    if in_string or closed_at != last or data[last] != ord("]"):
        return None
    out[first] = out[last] = ord(" ")
    return bytes(out) if any(b not in SPACE for b in out) else b""


# A piece is read by whole-piece masks or by its structural bytes' positions, by how dense they are:
# each reader on its own (DENSE_SHARE 0: never dense; 1 << 30: dense wherever there is one) and chosen.
READERS = {"chosen": json_array.DENSE_SHARE, "dense": 1 << 30, "sparse": 0}


@pytest.fixture(params=[(size, "chosen") for size in PIECES] + [(size, reader) for size in (1 << 20, 3, 64)
                                                                for reader in ("dense", "sparse")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def piece(request, monkeypatch):
    size, reader = request.param
    monkeypatch.setattr(json_array, "PIECE_BYTES", size)  # pieces that cut strings and escapes
    monkeypatch.setattr(json_array, "DENSE_SHARE", READERS[reader])
    return size


ARRAYS = {
    "objects": b'[{"a": 1}, {"b": "x,]}{"}]',
    "pretty-printed": b'[\n  {"a": [1, 2]},\r\n  {"b": "q\\"uo,te\\\\"}\n]\n',
    "scalars and nested arrays": b'[1, null, "s", [2, 3], {"c": [4, {"d": 5}]}]',
    "escaped quotes and backslashes": b'["\\\\", "\\\\\\"", "a\\\\\\\\\\"b,", "\\"]["]',
    "a string of brackets": b'["]]]", "[[[", "}{"]',
    "whitespace around": b' \t\r\n [1,2] \n\t ',
    "one element": b"[7]",
    "empty": b"[]",
    "empty with spaces": b" [ \n ] ",
    "nested empty": b"[[]]",
    "quote first in a piece": b'["ab", "c"]',
    "many": json.dumps([{"n": n, "s": "x" * (n % 7) + ',"]'} for n in range(50)]).encode(),
}


@pytest.mark.parametrize("name", ARRAYS)
def test_an_array_is_cut_as_the_rule_says(name, piece):
    data = ARRAYS[name]
    got = elements_as_lines(data)
    assert got is not None and got == reference(data)
    assert len(got) == len(data) or got == b""  # byte for byte: only brackets, commas and breaks change
    elements = json.loads(data)
    assert [json.loads(line) for line in got.split(b"\n") if line.strip()] == elements


def test_elements_become_lines_byte_for_byte():
    assert cut(b'[{"a": 1},\n {"b": [2, 3]}]') == b' {"a": 1}\n  {"b": [2, 3]} '
    assert cut(b' [1,2] ') == b'  1\n2  '
    assert cut(b"[]") == cut(b" [ ] ") == b""


@pytest.mark.parametrize("data", [
    b"", b"   ", b"\n", b'{"a": 1}', b"1", b"x[1]", b'"[1]"',
    b"[1] x", b"[1]x", b"[1][2]", b"[1] [2]", b"[1]]", b"[[1]", b"[1", b"[1,",
    b'[{"a": "raw\nbreak"}]', b'[{"a": "raw\rbreak"}]', b'["unterminated]', b'["a\\"]',
    b"[1]}", b"[1]{", b"[1] {}",
])
def test_what_is_not_one_array_safe_to_split_is_left_to_the_decoder(data, piece):
    assert reference(data) is None
    assert elements_as_lines(data) is None


def test_brackets_after_the_array_closed_in_a_later_piece(monkeypatch):
    monkeypatch.setattr(json_array, "PIECE_BYTES", 4)
    assert cut(b"[1]    [2]") is None
    assert cut(b"[1]        ") == b" 1         "


def test_the_edges_are_looked_for_within_edge_bytes(monkeypatch):
    monkeypatch.setattr(json_array, "EDGE_BYTES", 4)
    assert cut(b"[1, 2, 3]  ") == b" 1\n 2\n 3   "
    assert cut(b"  [1, 2, 3]") == b"   1\n 2\n 3 "
    assert cut(b"[1]" + b" " * 10) is None  # only whitespace near the end: left to the decoder
    assert cut(b"     [1]") is None  # the first byte of the array not within reach either


def test_an_escaped_quote_after_a_run_of_backslashes(piece):
    for run in range(6):
        data = b'["' + b"\\" * run + b'", 1]'
        # An odd run escapes the quote: the string goes on through `, 1]` and is never closed.
        assert elements_as_lines(data) == reference(data)
        assert (elements_as_lines(data) is None) is bool(run % 2)


def test_a_quote_at_the_start_of_a_piece_after_a_backslash_in_the_one_before(monkeypatch):
    data = b'["a\\", "b"]'  # the backslash at byte 3, the quote it escapes at byte 4
    for size in (4, 3, 2):
        monkeypatch.setattr(json_array, "PIECE_BYTES", size)
        assert cut(data) is None
    data = b'["a\\\\", "b"]'  # an even run: the quote closes the string
    for size in (5, 4, 3):
        monkeypatch.setattr(json_array, "PIECE_BYTES", size)
        assert cut(data) == reference(data) == b' "a\\\\"\n "b" '


@pytest.mark.parametrize("n", [1, 2, 3, 10])
def test_a_flood_of_empty_objects_takes_the_shortcut_with_what_cut_gives(n, monkeypatch):
    data = b"[" + b"{}," * (n - 1) + b"{}]"
    expected = b" " + b"{}\n" * (n - 1) + b"{} "
    assert cut(data) == expected
    monkeypatch.setattr(json_array, "cut", lambda data: pytest.fail("not the shortcut"))
    assert elements_as_lines(data) == expected


@pytest.mark.parametrize("data", [b"[{},{}", b"[{},{},{}] ", b"[{}, {}]", b"[{},{},[]]", b"[{},{}}]", b"[{}{},]",
                                  b"[[],{}]", b"[{},{},{}x"])
def test_what_only_looks_like_a_flood_takes_the_general_rule(data):
    assert elements_as_lines(data) == reference(data)


def random_document(rng: random.Random) -> bytes:
    def value(depth):
        kind = rng.randrange(7 if depth < 3 else 4)
        if kind == 0:
            return rng.randrange(-5, 100)
        if kind == 1:
            return None
        if kind in (2, 3):
            return "".join(rng.choice('ab,[]{}"\\ \t\u00e9') for _ in range(rng.randrange(6)))
        if kind in (4, 5):
            return {f"k{i}": value(depth + 1) for i in range(rng.randrange(3))}
        return [value(depth + 1) for _ in range(rng.randrange(3))]

    doc = json.dumps([value(0) for _ in range(rng.randrange(6))], indent=rng.choice([None, 1, 2]),
                     ensure_ascii=rng.random() < 0.5).encode()
    if rng.random() < 0.4:  # a corruption: a byte dropped, changed or added
        i = rng.randrange(len(doc) + 1)
        doc = doc[:i] + rng.choice([b"", b"]", b"[", b"}", b'"', b"\\", b",", b"\n", b"x"]) + doc[i + rng.randrange(2):]
    return rng.choice([b"", b" ", b"\n\t"]) + doc + rng.choice([b"", b" ", b"\r\n"])


@pytest.mark.parametrize("seed", range(4))
def test_random_documents_are_cut_as_the_reference_cuts_them(seed, piece):
    rng = random.Random(seed)
    for _ in range(60):
        data = random_document(rng)
        assert elements_as_lines(data) == reference(data), data


@pytest.mark.parametrize(("data", "reader"), [
    (b"[{ }, { }, { }]", "_dense"),  # mostly structural bytes
    (b"[11111 ]", "_dense"),  # exactly one in DENSE_SHARE (4) structural: dense from there
    (b"[111111 ]", "_sparse"),  # just under
    (b'["XXXXXXXXXXXX", "long strings and numbers"]', "_sparse"),
])
def test_a_piece_is_read_by_masks_when_a_quarter_of_it_is_structural_and_by_positions_otherwise(
        data, reader, monkeypatch):
    # The same marks either way (checked above); the choice is what keeps each input fast.
    used = []
    for name in ("_dense", "_sparse"):
        read = getattr(json_array, name)
        monkeypatch.setattr(json_array, name, lambda *args, _read=read, _name=name: used.append(_name) or _read(*args))
    assert cut(data) == reference(data)
    assert used == [reader]
