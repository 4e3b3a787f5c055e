"""drift.py on small inputs: which undeclared top-level names are counted, within the bounds on
names, their length and the lines examined (every early line, then a sample of each later block)."""

import json

import pyarrow as pa
import pytest

from lambdas.shared.schemas import EventSchema
from lambdas.transform.drift import FIRST_LINES, MAX_NAME_CHARS, MAX_NAMES, PER_BLOCK, Drift

SCHEMA = EventSchema(name="t", arrow=pa.schema([pa.field("id", pa.string()), pa.field("n", pa.int64())]),
                     required=())


def drift(examined=0):
    found = Drift(SCHEMA)
    found.examined = examined
    return found


def test_declared_names_are_not_counted_and_each_undeclared_one_is_counted_per_element():
    d = drift()
    for value in ({"id": "a", "x": 1}, {"n": 1, "x": 2, "y": 3}, [1], "s", None, {}):
        d.element(value)
    assert (d.counts, d.examined, d.more_names) == ({"x": 2, "y": 1}, 6, 0)


def test_names_are_cut_to_max_name_chars_and_past_max_names_counted_once_each_as_more_names():
    d = drift()
    d.element({"a" * MAX_NAME_CHARS: 1, "b" * (MAX_NAME_CHARS + 1): 1, "b" * (MAX_NAME_CHARS + 5): 1})
    assert d.counts == {"a" * MAX_NAME_CHARS: 1, "b" * MAX_NAME_CHARS: 2}
    d = drift()
    names = {f"f{i}": 1 for i in range(MAX_NAMES + 3)}
    d.element(names)
    d.element(names)
    assert d.counts == {f"f{i}": 2 for i in range(MAX_NAMES)} and d.more_names == 3


def test_more_names_stops_counting_at_ten_thousand():
    d = drift()
    d.element({f"f{i}": 1 for i in range(MAX_NAMES + 10_005)})
    assert d.more_names == 10_000


def test_the_first_lines_are_each_examined_and_lines_without_a_quote_or_json_are_not():
    d = drift()
    d.block(b'{"x": 1}\n\n""\n{}\n[1]\n{"broken": \n' + b'{"deep": ' + b"[" * 100_000 + b"\n" + b'{"y": 1}\n')
    assert (d.counts, d.examined) == ({"x": 1, "y": 1}, 3)


def test_the_first_lines_end_at_first_lines_within_a_block():
    d = drift(FIRST_LINES - 2)
    d.block(b'{"a": 1}\n{"b": 1}\n{"c": 1}')
    assert (d.counts, d.examined) == ({"a": 1, "b": 1}, FIRST_LINES)


def test_past_the_first_lines_per_block_lines_are_sampled_evenly():
    lines = [json.dumps({f"l{i:03d}": 1}).encode() for i in range(8 * PER_BLOCK)]
    d = drift(FIRST_LINES)
    d.block(b"\n".join(lines) + b"\n")
    assert sorted(d.counts) == [f"l{i:03d}" for i in range(0, 8 * PER_BLOCK, 8)]
    assert d.examined == FIRST_LINES + PER_BLOCK


@pytest.mark.parametrize(("data", "counts"), [
    (b'{"x": "' + b"a" * 10_000 + b'"}', {"x": 1}),  # longer than the step: once
    (b'\n{"x": 1}', {"x": 1}),  # a blank first line
])
def test_a_sampled_line_is_examined_once(data, counts):
    d = drift(FIRST_LINES)
    d.block(data)
    assert d.counts == counts and d.examined == FIRST_LINES + 1


def test_a_new_drift_has_examined_nothing_and_a_two_byte_line_is_examined():
    assert Drift(SCHEMA).examined == 0
    d = drift(FIRST_LINES)
    d.block(b'{"x": 1}\n""')
    assert d.examined == FIRST_LINES + 2


def test_sampling_goes_on_past_a_long_line():
    d = drift(FIRST_LINES)
    d.block(b'{"x": "' + b"a" * 5000 + b'"}\n' + b"\n".join(b'{"y%d": 1}' % i for i in range(500)))
    assert "x" in d.counts and len(d.counts) > 2


def test_the_last_of_the_first_lines_is_the_block_s_first():
    d = drift(FIRST_LINES - 1)
    d.block(b'{"a": 1}\n{"b": 1}\n{"c": 1}')
    assert d.counts == {"a": 1}
