"""The transform against a hostile producer (issue 16's table, at test size): each input becomes
quarantined lines or a failed item with a clear reason, within bounds. Sizes and times are the
bench's business (bench/transform.py --hostile); these tests pin the outcomes."""

import gzip
import io
import json

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pytest

from lambdas.shared import schemas
from lambdas.transform.core import UnreadableObject, transform_stream
from lambdas.transform.diagnose import without_values
from ops.gen_events import generate
from tests.unit.test_transform_core import SHIPMENTS, good_lines, run


class CountingSink(io.RawIOBase):
    """A quarantine file that remembers the most it was ever asked to hold in one write."""

    def __init__(self):
        self.size = self.largest_write = 0

    def writable(self):
        return True

    def write(self, data):
        self.size += len(data)
        self.largest_write = max(self.largest_write, len(data))
        return len(data)


def test_a_flood_of_empty_objects_is_capped_in_quarantine_with_a_summary_of_what_was_dropped():
    data = b"{}\n" * 50_000
    result, table, rejects = run(data, quarantine_max_lines=1000, block_bytes=65536)
    assert (result.rows, result.rejected, table.num_rows) == (0, 50_000, 0)
    assert len(rejects) == 1001
    assert rejects[0]["reason"].startswith("missing required field(s) 'shipment_id'")
    summary = rejects[-1]
    assert (summary["dropped_lines"], summary["line"], summary["last_dropped_line"]) == (49_000, 1001, 50_000)
    assert "quarantine cap reached" in summary["reason"] and "ELT_QUARANTINE_MAX_LINES" in summary["reason"]


def test_the_quarantine_byte_cap_holds_and_rejects_leave_as_they_are_found():
    sink = CountingSink()
    line = ('{"shipment_id": "' + "x" * 2000 + '"}\n').encode()
    result = transform_stream(io.BytesIO(line * 5000), schema=SHIPMENTS, source_key="k", gzipped=False,
                              parquet_out=io.BytesIO(), quarantine_out=sink, block_bytes=65536,
                              quarantine_max_bytes=200_000)
    assert result.rejected == 5000
    assert sink.size < 200_000 + 2000  # the kept records, then one short summary
    assert sink.largest_write < 150_000  # written per block (about 2 x 64 KiB of lines), not held to the end


def test_a_json_array_of_empty_objects_streams_its_rejects_and_is_capped():
    sink = CountingSink()
    data = b"[" + b"{}," * 99_999 + b"{}]"
    result = transform_stream(io.BytesIO(data), schema=SHIPMENTS, source_key="k", gzipped=False,
                              parquet_out=io.BytesIO(), quarantine_out=sink, block_bytes=16384,
                              quarantine_max_lines=50_000)
    assert (result.fmt, result.rows, result.rejected) == ("json", 0, 100_000)
    assert sink.largest_write < 1 << 20


def test_blank_line_floods_are_counted_and_skipped():
    data = b"\n" * 300_000 + (good_lines(1)[0] + "\n").encode() + b"  \r\n" * 100_000
    result, table, _ = run(data, block_bytes=65536)
    assert (result.rows, result.rejected, result.blank_lines) == (1, 0, 400_000)
    assert table.column("_line").to_pylist() == [300_001]


def test_alternating_blank_and_good_lines_keep_their_line_numbers():
    lines = good_lines(300)
    data = "".join(line + "\n\n" for line in lines).encode()
    result, table, _ = run(data, block_bytes=16384)
    assert (result.rows, result.blank_lines) == (300, 300)
    assert table.column("_line").to_pylist() == list(range(1, 600, 2))


@pytest.mark.parametrize("where", ["first", "later"])
@pytest.mark.parametrize("field", ["shipment_id", "carrier", "tags"])
def test_a_line_nested_10000_deep_is_quarantined_not_a_recursion_error(where, field):
    deep = json.dumps({field: 0}).replace("0", "[" * 10_000 + "]" * 10_000)
    lines = [deep, *good_lines(3)] if where == "first" else [*good_lines(3), deep]
    result, _, rejects = run(("\n".join(lines) + "\n").encode())
    assert (result.rows, result.rejected) == (3, 1)
    assert rejects[0]["line"] == (1 if where == "first" else 4)
    assert rejects[0]["reason"] in ("nested deeper than Python's JSON reader allows (about 1000 levels)",
                                    f"field '{field}' is an array where the schema expects a string")


def test_a_jsonl_object_whose_first_line_is_malformed_is_read_as_jsonl_even_past_the_document_limit():
    lines = ['{"shipment_id": "x", "carrier": ', *good_lines(400)]
    result, _, rejects = run(("\n".join(lines) + "\n").encode(), max_json_bytes=20_000, block_bytes=8192)
    assert (result.fmt, result.rows, result.rejected) == ("jsonl", 400, 1)
    assert rejects[0]["line"] == 1 and rejects[0]["reason"].startswith("malformed JSON")


def test_a_pretty_printed_object_past_the_document_limit_is_read_as_lines_not_failed_by_the_sniffer():
    data = json.dumps(json.loads(good_lines(1)[0]), indent=2).encode()
    result, _, rejects = run(data, max_json_bytes=100, block_bytes=64)
    assert (result.fmt, result.rows, result.rejected) == ("jsonl", 0, data.count(b"\n") + 1)  # nothing lost
    assert [r["line"] for r in rejects] == list(range(1, result.rejected + 1))


@pytest.mark.parametrize("first", ["[1, 2]", "[]", '["a"]'])
def test_a_jsonl_object_whose_first_line_is_an_array_is_read_as_jsonl(first):
    result, _, rejects = run(("\n".join([first, *good_lines(3)]) + "\n").encode())
    assert (result.fmt, result.rows, result.rejected) == ("jsonl", 3, 1)
    assert rejects[0] == {"line": 1, "reason": "line is a JSON array, expected an object", "raw": first}


def test_an_array_that_is_not_one_document_falls_back_to_the_line_reader():
    data = ('[{"a": 1}] trailing\n' + "\n".join(good_lines(2)) + "\n").encode()
    result, _, rejects = run(data)
    assert (result.fmt, result.rows, result.rejected) == ("jsonl", 2, 1)


def test_a_gzip_bomb_stops_at_the_object_limit():
    bomb = gzip.compress(b"\0" * (8 << 20), compresslevel=9)
    assert len(bomb) < 20_000
    with pytest.raises(UnreadableObject, match="larger than the 1048576 byte limit decompressed.*ELT_MAX_OBJECT_BYTES"):
        run(bomb, gzipped=True, max_object_bytes=1 << 20)


def test_the_object_limit_counts_uncompressed_objects_too():
    data = ("\n".join(good_lines(100)) + "\n").encode()
    with pytest.raises(UnreadableObject, match="ELT_MAX_OBJECT_BYTES"):
        run(data, max_object_bytes=len(data) - 1, block_bytes=4096)
    assert run(data, max_object_bytes=len(data))[0].rows == 100


def test_a_reason_without_values_keeps_the_field_and_the_kind_of_problem():
    assert without_values("value 'yesterday' of field 'created_at' is not a valid timestamp[us, tz=UTC] "
                          "(expected ISO-8601, e.g. 2025-01-31T12:00:00Z)") == (
        "value (withheld) of field 'created_at' is not a valid timestamp[us, tz=UTC] "
        "(expected ISO-8601, e.g. 2025-01-31T12:00:00Z)")
    assert without_values("value '12,50' is not a valid double") == "value (withheld) is not a valid double"
    assert without_values("value 1.5 of field 'items[].quantity' is not a valid int64") == (
        "value (withheld) of field 'items[].quantity' is not a valid int64")
    kind = "field 'weight_kg' is a string where the schema expects a number"
    assert without_values(kind) == kind


@pytest.mark.parametrize(("field", "literal"), [
    ("weight_kg", "NaN"), ("weight_kg", "Infinity"), ("weight_kg", "-Infinity"), ("weight_kg", "1" + "0" * 400),
    ("dimensions_cm", '{"length": NaN, "width": 1, "height": 2}'),
])
def test_nan_infinity_and_numbers_too_big_for_a_double_are_rejected_as_rfc_8259_says(field, literal):
    lines = good_lines(4)
    event = json.loads(lines[2])
    event[field] = "PLACEHOLDER"
    lines[2] = json.dumps(event).replace('"PLACEHOLDER"', literal)
    result, table, rejects = run(("\n".join(lines) + "\n").encode())
    path = "dimensions_cm.length" if field == "dimensions_cm" else field
    assert (result.rows, [(r["line"], r["reason"]) for r in rejects]) == (3, [
        (3, f"field '{path}' is NaN, Infinity or a number too big for a double, which JSON does not allow (RFC 8259)")])


def test_large_finite_numbers_whose_sum_overflows_a_double_are_kept():
    # The block's sum overflowing to inf must not reject rows that are each finite.
    lines = good_lines(4)
    for i in (1, 2):
        event = json.loads(lines[i])
        event["weight_kg"] = 1.5e308
        lines[i] = json.dumps(event)
    result, table, rejects = run(("\n".join(lines) + "\n").encode())
    assert (result.rows, rejects) == (4, [])
    assert sorted(table.column("weight_kg").to_pylist())[-2:] == [1.5e308, 1.5e308]


def test_nan_in_a_list_of_objects_names_the_field_and_rejects_only_its_row():
    orders = schemas.get("orders")
    lines = [text for ok, text in generate(type_="orders", count=5, seed=2) if ok]
    event = json.loads(lines[1])
    event["lines"][-1]["unit_price"] = "PLACEHOLDER"
    lines[1] = json.dumps(event).replace('"PLACEHOLDER"', "Infinity")
    result, _, rejects = run(("\n".join(lines) + "\n").encode(), schema=orders)
    assert result.rows == 4 and [(r["line"], r["reason"].split(" is ")[0]) for r in rejects] == [
        (2, "field 'lines[].unit_price'")]


def test_nanosecond_timestamps_are_truncated_to_microseconds():
    lines = good_lines(3)
    event = json.loads(lines[1])
    event["created_at"] = "2025-01-01T00:00:00.123456789Z"
    event["delivered_at"] = "2025-01-02 03:04:05.987654321"
    lines[1] = json.dumps(event)
    bad = json.loads(lines[2])
    bad["created_at"] = "2025-01-01T00:00:00.123456789 tomorrow"
    lines[2] = json.dumps(bad)
    result, table, rejects = run(("\n".join(lines) + "\n").encode())
    assert (result.rows, [r["line"] for r in rejects]) == (2, [3])
    row = table.filter(pa.compute.equal(table.column("_line"), 2)).to_pylist()[0]
    assert row["created_at"].isoformat() == "2025-01-01T00:00:00.123456+00:00"
    assert row["delivered_at"].isoformat() == "2025-01-02T03:04:05.987654+00:00"


def test_nan_in_a_json_array_element_is_rejected_too():
    events = [json.loads(x) for x in good_lines(3)]
    text = json.dumps(events).replace('"weight_kg": ' + json.dumps(events[1]["weight_kg"]), '"weight_kg": NaN', 1)
    result, _, rejects = run(text.encode(), suffix_format="json")
    assert (result.fmt, result.rows, [r["line"] for r in rejects]) == ("json", 2, [2])


def test_a_block_where_every_line_has_its_own_bad_timestamp_rejects_exactly_those():
    # One failed cast per distinct bad value would cost a block its rows squared; past a few
    # values, shape and bisection find them. Valid ones of every accepted form still pass.
    lines = good_lines(400)
    forms = ["2025-01-01T10:00:00Z", "2025-01-01 10:00:00.5", "2025-01-01T10:00:00+02:00", "2025-01-01",
             "2025-01-01T10:00:00.123456789-0530", "2025-01-01T10"]
    expected_bad = []
    for n in range(len(lines)):
        event = json.loads(lines[n])
        if n % 3:
            event["created_at"] = f"2025-01-01T00:00:00 +bad{n}" if n % 3 == 1 else f"2025-{13 + n % 5}-01T00:00:00Z"
            expected_bad.append(n + 1)
        else:
            event["created_at"] = forms[n % len(forms)]
        lines[n] = json.dumps(event)
    result, table, rejects = run(("\n".join(lines) + "\n").encode())
    assert [r["line"] for r in rejects] == expected_bad
    assert all(r["reason"].endswith("of field 'created_at' is not a valid timestamp[us, tz=UTC] "
                                    "(expected ISO-8601, e.g. 2025-01-31T12:00:00Z)") for r in rejects)
    assert result.rows == 400 - len(expected_bad)


def test_past_the_cap_a_flood_with_good_lines_among_it_loses_no_good_line():
    # Past the cap, lines lacking a required field are taken out by a narrow read before the full
    # one; the good lines among them, and bad lines of other kinds, take the usual path.
    good = good_lines(200)
    lines = []
    for n in range(20_000):
        if n % 100 == 0:
            lines.append(good[(n // 100) % len(good)])
        elif n % 1000 == 7:
            lines.append(good[0].replace('"carrier"', '"carrier": 5, "x"', 1))
        else:
            lines.append("{}" if n % 2 else '{"order_id": "o"}')
    result, table, rejects = run(("\n".join(lines) + "\n").encode(), quarantine_max_lines=100, block_bytes=16384)
    assert table.column("_line").to_pylist() == list(range(1, 20_001, 100))
    assert (result.rows, result.rejected) == (200, 19_800)
    assert len(rejects) == 101 and rejects[-1]["dropped_lines"] == 19_700


@pytest.mark.parametrize(("document", "lines"), [
    (b'[{"a": 1}, {"b": "x,]}{"}]', [b'{"a": 1}', b'{"b": "x,]}{"}']),
    (b'[\n  {"a": [1, 2]},\n  {"b": "q\\"uo,te\\\\"}\n]\n', [b'{"a": [1, 2]}', b'{"b": "q\\"uo,te\\\\"}']),
    (b" [ ] ", []),
    (b'[1, null, "s", [2, 3]]', [b"1", b"null", b'"s"', b"[2, 3]"]),
])
@pytest.mark.parametrize("piece", [1 << 20, 1, 2, 3, 7])
def test_an_array_is_cut_into_one_line_per_element_outside_strings(document, lines, piece, monkeypatch):
    from lambdas.transform import json_array

    monkeypatch.setattr(json_array, "PIECE_BYTES", piece)  # pieces that cut strings and escapes
    assert [line.strip() for line in json_array.elements_as_lines(document).split(b"\n") if line.strip()] == lines


@pytest.mark.parametrize("document", [b'[{"a": 1}] x', b'[{"a": 1}][2]', b'[{"a": "raw\nbreak"}]', b'{"a": 1}',
                                      b'[{"a": "unterminated}]', b"[[1]",
                                      b"[1]]", b"[1] [2]"])
@pytest.mark.parametrize("piece", [1 << 20, 3])
def test_an_array_that_cannot_be_cut_safely_is_left_to_the_element_decoder(document, piece, monkeypatch):
    from lambdas.transform import json_array

    monkeypatch.setattr(json_array, "PIECE_BYTES", piece)
    assert json_array.elements_as_lines(document) is None


def test_a_large_array_of_mixed_elements_keeps_element_numbers_and_reasons():
    events = [json.loads(x) for x in good_lines(300)]
    elements = [*events[:100], 7, None, {"shipment_id": "no, other fields"}, *events[100:]]
    result, table, rejects = run(json.dumps(elements, indent=1).encode(), block_bytes=8192)
    assert (result.fmt, result.rows) == ("json", 300)
    assert [(r["line"], r["reason"].split(",")[0]) for r in rejects] == [
        (101, "array element is a JSON number"), (102, "array element is a JSON null"),
        (103, "missing required field(s) 'carrier'")]
    assert table.column("_line").to_pylist() == [*range(1, 101), *range(104, 304)]


def _frames_left_in_cycles(data: bytes, **kwargs) -> list[str]:
    """The transform's frames that only the cyclic garbage collector would free after a run."""
    import gc
    import types

    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run(data, **kwargs)
        gc.collect()
        return sorted({f"{o.f_code.co_name} ({o.f_code.co_filename.rsplit('/', 1)[-1]})" for o in gc.garbage
                       if isinstance(o, types.FrameType) and "transform" in o.f_code.co_filename})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()


def test_no_reference_cycle_keeps_a_blocks_frames_and_bytes_alive():
    # An exception kept in a local while its traceback holds that frame (or a callee's, whose
    # caller it is) is a reference cycle: every frame up the stack - with the block's bytes, its
    # lines and its tables - stays until the cyclic collector runs (on the 1%-bad bench: ~40 MB of
    # peak RSS). Bad timestamps (row_checks), a screen that stops at a bad line (locate) and a
    # probe (the full read of what the screen passed fails) must leave none behind.
    lines = good_lines(400)
    lines[10] = lines[10].replace('"created_at": "', '"created_at": "yesterday', 1)
    lines[200] = lines[200][:40]
    lines[390] = lines[390][:40]
    lines[395] = lines[395].replace('"carrier"', '"carrier": 5, "x"', 1)
    data = ("\n".join(lines) + "\n").encode()
    result, _, rejects = run(data, block_bytes=16384)
    assert result.probes == 1 and [r["line"] for r in rejects] == [11, 201, 391, 396]
    assert _frames_left_in_cycles(data, block_bytes=16384) == []


@pytest.mark.parametrize("drop", [[], [0], [9], [0, 1, 2], [3, 4, 7], [0, 5, 9], list(range(10))])
def test_silver_rows_around_dropped_ones_are_queued_as_one_piece_with_their_line_numbers(drop):
    import datetime as dt

    import pyarrow.json as pj

    from lambdas.transform.arrow_read import read_one_block
    from lambdas.transform.row_checks import RowChecks, read_schema
    from lambdas.transform.sinks import SilverWriter

    lines = good_lines(10)
    options = pj.ParseOptions(explicit_schema=read_schema(SHIPMENTS), unexpected_field_behavior="ignore")
    table, _ = RowChecks(SHIPMENTS).check(read_one_block("\n".join(lines).encode(), options))
    writer = SilverWriter(schema=SHIPMENTS, source_key="k", parquet_out=pa.BufferOutputStream(),
                          ingested_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC), row_group_rows=1000)
    writer.emit(table, pa.array(range(101, 111)).to_numpy(), drop)
    kept = [i for i in range(10) if i not in drop]
    assert writer.rows == writer.pending_rows == len(kept)
    if not kept:
        assert writer.pending == []
        return
    [piece] = writer.pending  # one piece of one chunk: flush need not copy a row group of slices
    assert {column.num_chunks for column in piece.columns} == {1}
    assert piece.column("shipment_id").to_pylist() == [json.loads(lines[i])["shipment_id"] for i in kept]
    assert piece.column("_line").to_pylist() == [101 + i for i in kept]
    writer.close()


def test_nanosecond_truncation_holds_whichever_value_the_failed_cast_names():
    # The cast's error names one refused value (which one depends on Arrow: the last of its chunk,
    # today), and digits past microseconds are cut only once a value that has them is named, so
    # every order of nanosecond, naive, bad and good values must give the same rows.
    import datetime as dt
    import itertools

    from lambdas.transform.row_checks import unconvertible

    utc = dt.UTC
    values = {
        "2025-01-01T00:00:00.123456789Z": dt.datetime(2025, 1, 1, 0, 0, 0, 123456, tzinfo=utc),
        "2025-01-02 03:04:05.9876543": dt.datetime(2025, 1, 2, 3, 4, 5, 987654, tzinfo=utc),  # naive
        "2025-01-03T01:00:00.1234567+01:00": dt.datetime(2025, 1, 3, 0, 0, 0, 123456, tzinfo=utc),
        "2025-01-04T05:06:07": dt.datetime(2025, 1, 4, 5, 6, 7, tzinfo=utc),  # naive
        "2025-01-05T00:00:00.5Z": dt.datetime(2025, 1, 5, 0, 0, 0, 500000, tzinfo=utc),
        "yesterday": None,
        "2025-01-01T00:00:00.123456789 tomorrow": None,
    }
    for order in itertools.islice(itertools.permutations(values), 0, None, 7):
        bad, converted = unconvertible(pa.array(order))
        assert bad.tolist() == [values[v] is None for v in order], order
        assert converted.to_pylist() == [values[v] for v in order], order
