"""arrow_read.py on small inputs: the one-block read and the screen read (what they return, where
they refuse, rows numbered from the first given line), the pieces from a cursor on (their sizes, the
first failing piece), the kind-only types, and Arrow's messages read for their row, value and path
and said in the event's terms.

The reads run twice: with the streaming reader alone (pyarrow's `read_json` taken away: it is not
used where `open_json` exists) and as on a pyarrow without the streaming reader (`open_json` taken
away and `HAS_OPEN_JSON` false), the fallback `make test-pyarrow-min` runs for real."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.json as pj
import pytest

from lambdas.transform import arrow_read
from lambdas.transform.arrow_read import (
    explain_arrow_error,
    kind_only,
    named_row,
    named_value,
    one_block_options,
    parses,
    pieces,
    read_one_block,
    type_error_path,
)
from lambdas.transform.line_index import Lines

COUNTS = pj.ParseOptions(explicit_schema=pa.schema([("n", pa.int64())]))
LINE_BYTES = 64  # with its newline: 2048 lines fill a 128 KiB piece exactly


def line(n: int | str) -> bytes:
    return (b'{"n": %d}' % n if isinstance(n, int) else b'{"n": "%s"}' % n.encode()).ljust(LINE_BYTES - 1)


def jsonl(values) -> bytes:
    return b"".join(line(v) + b"\n" for v in values)


@pytest.fixture(params=["streaming reader", "no streaming reader"])
def reader(request, monkeypatch):
    if request.param == "streaming reader":
        if not hasattr(pj, "open_json"):
            pytest.skip("this pyarrow has no streaming reader")
        monkeypatch.delattr(pj, "read_json")
    else:
        monkeypatch.setattr(arrow_read, "HAS_OPEN_JSON", False)
        monkeypatch.delattr(pj, "open_json", raising=False)
    return request.param


def test_the_streaming_reader_is_used_wherever_pyarrow_has_it():
    assert arrow_read.HAS_OPEN_JSON is hasattr(pj, "open_json")


@pytest.mark.parametrize("size", [0, 1, 1000, 1 << 16, 1 << 20])
def test_one_block_options_make_a_block_larger_than_the_data(size):
    options = one_block_options(b"x" * size)
    assert options.block_size > size


def test_a_one_block_read_returns_every_row_under_the_schema(reader):
    table = read_one_block(jsonl(range(10)), COUNTS)
    assert table.schema == COUNTS.explicit_schema
    assert table.column("n").to_pylist() == list(range(10))
    assert read_one_block(pa.py_buffer(b'{"n": 7}'), COUNTS).column("n").to_pylist() == [7]  # a Buffer, no newline


@pytest.mark.parametrize("bad_row", [0, 9, 20_000])
def test_a_one_block_read_names_the_failing_row_counted_from_the_first_line_even_past_1_mib(reader, bad_row):
    values = list(range(20_001))  # 1.25 MiB: more than one block of Arrow's default size (1 MiB)
    values[bad_row] = "x"
    with pytest.raises(pa.ArrowInvalid) as raised:
        read_one_block(jsonl(values), COUNTS)
    assert named_row(str(raised.value)) == bad_row
    with pytest.raises(pa.ArrowInvalid) as screened:
        parses(jsonl(values), COUNTS)
    assert named_row(str(screened.value)) == bad_row


def test_a_one_block_read_infers_types_over_all_of_the_data(reader):
    # Numbers for more than 1 MiB, then a string: in one block Arrow's inference names that row
    # (in blocks, the first would fix the column as a number and the string would fail to convert).
    numbers_then_text = jsonl(range(20_000)) + b'{"n": "a"}\n'
    with pytest.raises(pa.ArrowInvalid, match="changed from number to string in row 20000$"):
        read_one_block(numbers_then_text, pj.ParseOptions())
    assert read_one_block(numbers_then_text[:-11], pj.ParseOptions()).num_rows == 20_000


def test_the_screen_read_accepts_what_arrow_reads_and_keeps_nothing(reader):
    assert parses(jsonl(range(100)), COUNTS) is None


@pytest.mark.parametrize("data", [b'{"n": 1}\n{"n": }\n', b'{"n": 1}\n{"n": "x"}\n', b"[1]\n"])
def test_the_screen_read_refuses_what_arrow_refuses(reader, data):
    with pytest.raises(pa.ArrowInvalid):
        read_one_block(data, COUNTS)
    with pytest.raises(pa.ArrowInvalid):
        parses(data, COUNTS)


def batch_rows(lines: Lines, cursor: int) -> list[list[int]]:
    return [batch.column(0).to_pylist() for batch in pieces(lines, cursor, COUNTS)]


@pytest.mark.parametrize("cursor", [0, 1, 2047, 2048, 4999])
def test_pieces_are_the_rows_from_the_cursor_on(reader, cursor):
    lines = Lines.split(jsonl(range(5000)), 1)
    got = batch_rows(lines, cursor)
    assert sum(got, []) == list(range(cursor, 5000))
    assert max(map(len, got)) <= 128 * 1024 // LINE_BYTES


@pytest.mark.parametrize(("count", "sizes"), [
    (5000, [2048, 2048, 904]),
    (2050, [2048, 2]),
    (2049, [2049]),  # the last line starts within the first 128 KiB: it is read with them
    (2048, [2048]),
    (3, [3]),
])
def test_without_the_streaming_reader_pieces_are_line_aligned_and_at_most_128_kib(monkeypatch, count, sizes):
    monkeypatch.setattr(arrow_read, "HAS_OPEN_JSON", False)
    lines = Lines.split(jsonl(range(count)), 1)
    assert [len(rows) for rows in batch_rows(lines, 0)] == sizes


def test_a_line_longer_than_a_piece_is_read_whole(reader):
    long = b'{"n": 5, "pad": "' + b"p" * (200 << 10) + b'"}'
    lines = Lines.of([(1, line(1)), (2, long), (3, line(3)), (4, line(4))])
    padded = pj.ParseOptions(explicit_schema=COUNTS.explicit_schema, unexpected_field_behavior="ignore")
    batches = list(pieces(lines, 0, padded))
    assert {batch.schema for batch in batches} == {COUNTS.explicit_schema}  # "pad" is ignored
    rows = [batch.column(0).to_pylist() for batch in batches]
    assert sum(rows, []) == [1, 5, 3, 4]
    if reader == "no streaming reader":  # a piece of its own
        assert rows == [[1], [5], [3, 4]]


def test_the_pieces_before_a_failing_piece_are_good_and_its_rows_count_from_its_first_line(reader):
    values = list(range(5000))
    values[3000] = "x"
    lines = Lines.split(jsonl(values), 1)
    got = []
    with pytest.raises(pa.ArrowInvalid) as raised:
        for batch in pieces(lines, 0, COUNTS):
            got.append(batch.num_rows)
    assert got == [2048]
    assert named_row(str(raised.value)) == 3000 - 2048


def test_kind_only_keeps_the_kind_and_drops_the_children_of_structs():
    item = pa.struct([("sku", pa.string()), ("quantity", pa.int64())])
    assert kind_only(item) == pa.struct([])
    assert kind_only(pa.list_(item)) == pa.list_(pa.struct([]))
    assert kind_only(pa.list_(pa.list_(item))) == pa.list_(pa.list_(pa.struct([])))
    assert kind_only(pa.list_(pa.int64())) == pa.list_(pa.int64())
    for scalar in (pa.string(), pa.float64(), pa.timestamp("s", tz="UTC"), pa.bool_()):
        assert kind_only(scalar) == scalar


def test_a_kind_only_schema_refuses_a_wrong_kind_and_ignores_the_struct_children():
    schema = pa.schema([("items", kind_only(pa.list_(pa.struct([("sku", pa.string())]))))])
    options = pj.ParseOptions(explicit_schema=schema)
    assert read_one_block(b'{"items": [{"sku": 1, "extra": true}]}\n', options).num_rows == 1
    with pytest.raises(pa.ArrowInvalid, match=r"Column\(/items/\[\]\) changed from object to number"):
        read_one_block(b'{"items": [5]}\n', options)


@pytest.mark.parametrize(("message", "row"), [
    ("JSON parse error: Column(/n) changed from number to string in row 952", 952),
    ("JSON parse error: Missing a closing quotation mark in string. in row 0", 0),
    ("JSON parse error: Column(/n) changed from number to string in row 12 of 40", None),
    ("Failed to convert JSON to int64, couldn't parse:x", None),
    ("", None),
])
def test_named_row_is_the_row_at_the_end_of_a_parse_error(message, row):
    assert named_row(message) == row


@pytest.mark.parametrize(("message", "value"), [
    ("Failed to convert JSON to timestamp[s, tz=UTC], couldn't parse:soon", "soon"),
    ("Failed to convert JSON to timestamp[s], couldn't parse:two\nlines", "two\nlines"),
    ("Failed to convert JSON to double, couldn't parse:", ""),
    ("JSON parse error: Column(/n) changed from number to string in row 0", None),
])
def test_named_value_is_the_value_a_conversion_error_quotes(message, value):
    assert named_value(message) == value


def test_named_value_reads_arrows_own_conversion_error():
    options = pj.ParseOptions(explicit_schema=pa.schema([("t", pa.timestamp("s"))]))
    with pytest.raises(pa.ArrowInvalid) as raised:
        read_one_block(b'{"t": "not\\nnow"}\n', options)
    assert named_value(str(raised.value)) == "not\nnow"


@pytest.mark.parametrize(("message", "path"), [
    ("JSON parse error: Column(/items/[]) changed from object to number in row 0", ["items", "[]"]),
    ("JSON parse error: Column(/a/b/c) changed from number to string in row 1", ["a", "b", "c"]),
    ("JSON parse error: Column() changed from object to array in row 0", []),
    ("JSON parse error: Missing a colon after a name of object member. in row 0", []),
])
def test_type_error_path_is_the_field_path_of_a_type_error(message, path):
    assert type_error_path(message) == path


@pytest.mark.parametrize(("message", "explained"), [
    ("JSON parse error: Column(/weight_kg) changed from number to string in row 3",
     "field 'weight_kg' is a string where the schema expects a number"),
    ("JSON parse error: Column(/s/a) changed from number to string in row 3",
     "field 's.a' is a string where the schema expects a number"),
    ("JSON parse error: Column(/lines/[]/sku) changed from string to object in row 0",
     "field 'lines[].sku' is an object where the schema expects a string"),
    ("JSON parse error: Column(/l/[]) changed from object to array in row 0",
     "field 'l[]' is an array where the schema expects an object"),
    ("JSON parse error: Column(/) changed from string to number in row 0",
     "field '(the line itself)' is a number where the schema expects a string"),
    ("JSON parse error: Column() changed from object to array in row 0", "line is a JSON array, expected an object"),
    ("Failed to convert JSON to timestamp[s, tz=UTC], couldn't parse:soon",
     "value 'soon' is not a valid timestamp[s, tz=UTC]"),
    ("JSON parse error: Column(/order_id) was specified twice in row 7",
     "duplicate field: Column(/order_id) was specified twice"),
    ("JSON parse error: Missing a colon after a name of object member. in row 0",
     "malformed JSON: Missing a colon after a name of object member."),
    ("JSON parse error: Invalid value. in row 12\n", "malformed JSON: Invalid value."),
    ("Empty JSON file", "Empty JSON file"),
    ("  something else in row 3 ", "something else in row 3"),
])
def test_arrow_messages_are_said_in_the_events_terms(message, explained):
    assert explain_arrow_error(message) == explained


def test_an_arrow_error_itself_is_explained_and_a_quoted_value_is_cut_at_200_characters():
    value = "v" * 300
    error = pa.ArrowInvalid(f"Failed to convert JSON to double, couldn't parse:{value}")
    assert explain_arrow_error(error) == f"value {'v' * 200!r} is not a valid double"
