"""Floods of empty objects take a shortcut (pipeline.ObjectTransform._empty_objects): a block whose
every line is `{}` is rejected without an Arrow read. The shortcut must give exactly what the
ordinary path gives: silver rows, quarantine records (reason, line numbers, raw, the cap's
summary) and the result's counts. Each case runs both ways and compares."""

import dataclasses
import datetime as dt

import numpy as np
import pytest

from lambdas.shared import schemas
from lambdas.transform import pipeline
from lambdas.transform.json_array import cut, elements_as_lines
from lambdas.transform.line_index import all_empty_objects, newline_positions
from tests.unit.test_transform_core import good_lines, run

WHEN = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
EVENTS = "\n".join(good_lines(40)).encode() + b"\n"


def both_ways(monkeypatch, data: bytes, **kwargs):
    kwargs.setdefault("ingested_at", WHEN)
    calls = []
    real = pipeline.ObjectTransform._empty_objects

    def counted(self, *args):
        calls.append(args[1])
        return real(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(pipeline.ObjectTransform, "_empty_objects", counted)
        fast = run(data, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "all_empty_objects", lambda data, newlines: False)
        slow = run(data, **kwargs)
    return fast, slow, calls


def outcome(done):
    result, table, rejects = done
    return ((result.rows, result.rejected, result.blank_lines, result.fmt, result.first_rejects,
             result.notes), table.to_pylist(), rejects)


FLOODS = {
    "{} lines": b"{}\n" * 3000,
    "{} lines, no final newline": b"{}\n" * 2999 + b"{}",
    "{} lines, a short last block": b"{}\n" * 1390,
    "padded and spaced": b" {}\t\n{ }\n{}\r\n\t{ \t}  \n" * 700,
    "events, then a flood, then events": EVENTS + b"{}\n" * 5000 + EVENTS,
    "a flood with an event in the middle": b"{}\n" * 2000 + EVENTS + b"{}\n" * 2000,
    "a flood with blank lines": b"{}\n\n" * 1500,
    "a JSON array of {}": b"[" + b"{}," * 4999 + b"{}]",
    "a spaced JSON array": b"[ " + b"{ }, " * 2999 + b"{} ]",
    "a JSON array: events, then {}": b"[" + EVENTS.strip().replace(b"\n", b",") + b"," + b"{}," * 3000 + b"{}]",
}
PURE = {"{} lines", "{} lines, a short last block", "{} lines, no final newline", "padded and spaced", "a JSON array of {}", "a spaced JSON array"}


@pytest.mark.parametrize("name", FLOODS)
@pytest.mark.parametrize("cap", [{}, {"quarantine_max_lines": 7}, {"quarantine_max_lines": 2},
                                 {"quarantine_max_lines": 0}, {"quarantine_max_bytes": 3000}])
@pytest.mark.parametrize("block_bytes", [1 << 20, 4096])
def test_the_empty_object_shortcut_gives_what_the_ordinary_path_gives(monkeypatch, name, cap, block_bytes):
    fast, slow, calls = both_ways(monkeypatch, FLOODS[name], block_bytes=block_bytes, **cap)
    assert outcome(fast) == outcome(slow)
    if name != "a flood with blank lines" and (block_bytes == 4096 or name in PURE):
        assert calls, "the shortcut was not taken"


def test_the_shortcut_is_not_taken_when_empty_objects_are_valid_rows(monkeypatch):
    lenient = dataclasses.replace(schemas.get("shipments"), required=())
    fast, slow, calls = both_ways(monkeypatch, b"{}\n" * 500, schema=lenient)
    assert outcome(fast) == outcome(slow)
    assert fast[1].num_rows == 500 and not calls


@pytest.mark.parametrize("block, expected", [
    (b"{}\n{}\n", True), (b"{}", True), (b" { }\r\n\t{}", True),
    (b"{}\n\n{}\n", False), (b"{}{}\n{}\n", False), (b"{\n}\n", False), (b"}{\n", False),
    (b"{\n}{}\n", False), (b"{}{\n}\n", False), (b"{}\n  ", False), (b"{}\n{} ", True), (b"{}\n{ \r", False),
    (b"{}\n[]\n", False), (b"{}\nnull\n", False), (b'{"a":1}\n', False), (b"", False),
])
def test_which_blocks_are_all_empty_objects(block, expected):
    newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
    assert all_empty_objects(block, newlines) is expected


@pytest.mark.parametrize("data", [b"[{}]", b"[{},{}]", b"[" + b"{}," * 999 + b"{}]", b"[{}, {}]", b"[{},{}] ",
                                  b"[{},{}", b"[{},{},]", b"[{}{}]", b"[]", b"[{},[]]"])
def test_an_array_of_empty_objects_is_cut_as_the_general_rule_cuts_it(data):
    assert elements_as_lines(data) == cut(data)


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4099])
@pytest.mark.parametrize("share", [0.0, 0.002, 0.1, 0.5, 1.0])
def test_newline_positions_are_where_the_newlines_are(size, share):
    rng = np.random.default_rng(size)
    data = bytes(np.where(rng.random(size) < share, 10, rng.integers(11, 256, size)).astype(np.uint8))
    arr = np.frombuffer(data, dtype=np.uint8)
    found = newline_positions(arr)
    assert found.tolist() == [i for i, byte in enumerate(data) if byte == 10]
    assert found.dtype == np.int64
