"""pipeline.py on small inputs, against a tiny event type: format sniffing, JSONL and JSON
documents (an array decoded element by element, one object), the caps (object bytes, JSON
document bytes, quarantine lines and bytes with the summary record), gzip, empty input, and the
silver rows and quarantine records compared with a plain reference of what each line should give."""

import dataclasses
import datetime as dt
import gzip
import inspect
import io
import json
import random
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lambdas.shared import config
from lambdas.shared.schemas import TS, EventSchema
from lambdas.transform import arrow_read, pipeline
from lambdas.transform.locate import FLOOD_MIN_LINES, UNWORDED_MISSING, Locator
from lambdas.transform.pipeline import sniff, transform_bytes, transform_stream
from lambdas.transform.results import UnreadableObject

TINY = EventSchema(
    name="tiny",
    arrow=pa.schema([pa.field("id", pa.string()), pa.field("n", pa.int64()), pa.field("at", TS),
                     pa.field("meta", pa.struct([pa.field("k", pa.string())]))]),
    required=("id", "meta.k"),  # a dotted path too: only top-level ones are checked in floods
)
LENIENT = dataclasses.replace(TINY, required=())
WHEN = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
DAY = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
MISSING_ID = "missing required field(s) 'id'"

# (line, the silver row it gives or None when it is rejected): what a plain reader would decide.
GOOD = [
    ('{"id": "a", "n": 1}', {"id": "a", "n": 1, "at": None, "meta": None}),
    ('{"id": "b", "at": "2025-01-02T03:04:05Z"}', {"id": "b", "n": None, "at": DAY, "meta": None}),
    ('{"id": "c", "meta": {"k": "v"}, "extra": 1}', {"id": "c", "n": None, "at": None, "meta": {"k": "v"}}),
    ('{"id": "\u00e9t\u00e9", "n": -7}', {"id": "\u00e9t\u00e9", "n": -7, "at": None, "meta": None}),
]
BAD = [
    '{"id": "x", "n": "many"}',  # a type error
    '{"n": 3}',  # a missing required field
    '{"id": "x", "at": "yesterday"}',  # not a timestamp (row checks)
    '{"id": "x", "meta": {}}',  # a missing required field below the top
    "null",
    "[1, 2]",
    "17",
    '{"id": "x", "n": ',  # malformed
    '{"id": "x"} {"id": "y"}',  # two values
]


def run(data: bytes, **kwargs):
    kwargs.setdefault("schema", TINY)
    kwargs.setdefault("source_key", "bronze/tiny/dt=2025-01-01/a.jsonl")
    kwargs.setdefault("gzipped", False)
    kwargs.setdefault("ingested_at", WHEN)
    return transform_bytes(data, **kwargs)


def rows(table: pa.Table) -> list[dict]:
    return table.drop_columns(["_ingested_at", "_source_key"]).sort_by("_line").to_pylist()


def jsonl(lines) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def mixed(n: int, seed: int, bad_share: float = 0.3) -> list[tuple[str, dict | None]]:
    rng = random.Random(seed)
    return [(rng.choice(BAD), None) if rng.random() < bad_share else rng.choice(GOOD) for _ in range(n)]


def reference(cases) -> tuple[list[dict], list[tuple[int, str]]]:
    """Silver rows and (line, raw) of the quarantine records that `cases` give, line by line."""
    good = [{**row, "_line": k} for k, (_, row) in enumerate(cases, 1) if row is not None]
    bad = [(k, text) for k, (text, row) in enumerate(cases, 1) if row is None]
    return good, bad


# ---- sniffing ----------------------------------------------------------------------------------
@pytest.mark.parametrize("head, mode", [
    (b"", "jsonl"),
    (b'"text"\n', "jsonl"),
    (b'{"a": 1}\n{"a": 2}\n', "jsonl"),
    (b'{"a": 1}', "jsonl"),  # no newline in the first chunk: an object's first line is a line
    (b'{"a": ', "jsonl"),
    (b'[{"a": 1}, {"a": 2}]', "array"),  # no newline: the start of an array
    (b"[{", "array"),
    (b"[1, 2]\n", "array"),  # a one-line array
    (b"[1, 2]\n \t\n", "array"),
    (b'[1, 2]\n{"a": 1}\n', "jsonl"),  # a JSONL file whose first line is an array
    (b'[\n{"a": 1},\n{"a": 2}\n]\n', "array"),
    (b'[{"a": 1},\n{"a": 2}]\n', "array"),
    (b'{\n  "a": 1\n}\n', "document"),
    (b'{"a": {\n"b": 1}}', "document"),
    (b'{"a": \n{"b": 1}\n', "jsonl"),  # a malformed first line, then a good one
    (b'{"a": \n\n \t\n  {"b": 1}\n', "jsonl"),  # the next line with content counts
    (b'{"a": \n[1]\n', "document"),
    (b'{"a": \n"b"\n', "document"),
    (b'{"a": \n{"b": \n', "document"),
    (b'{"a": \n', "document"),
    (b'{"a": \n{"b": 1} x\n', "document"),
    (b'{"a": \n{"b": 1}\n{"b": 2}\n', "jsonl"),  # the next line alone stands alone, not the rest
])
def test_the_format_is_sniffed_from_the_first_chunk(head, mode):
    assert sniff(head) == mode


def test_a_first_line_nested_deeper_than_python_reads_stands_alone():
    deep = b'{"a": ' * 100_000 + b"1" + b"}" * 100_000
    assert sniff(deep + b"\n[1]\n") == "jsonl"
    assert sniff(b"[" * 100_000 + b"]" * 100_000 + b"\n") == "array"


@pytest.mark.parametrize("data, suffix, fmt, notes", [
    (jsonl([GOOD[0][0]]), "jsonl", "jsonl", []),
    (jsonl([GOOD[0][0]]), "json", "jsonl", ["content is jsonl although the file name says json"]),
    (b"[" + GOOD[0][0].encode() + b"]", "json", "json", []),
    (b"[" + GOOD[0][0].encode() + b"]", "jsonl", "json", ["content is json although the file name says jsonl"]),
    (b'{\n"id": "a",\n"n": 1\n}\n', "json", "json", []),
    (b'{\n"id": "a",\n"n": 1\n}\n', "jsonl", "json", ["content is json although the file name says jsonl"]),
])
def test_the_content_decides_the_format_and_a_mismatch_with_the_name_is_noted(data, suffix, fmt, notes):
    result, table, rejects = run(data, suffix_format=suffix)
    assert (result.fmt, result.notes, rejects) == (fmt, notes, [])
    assert rows(table) == [{**GOOD[0][1], "_line": 1}]


def test_a_jsonl_file_whose_first_line_is_an_array_is_read_as_lines():
    data = jsonl(["[1, 2]", GOOD[0][0], GOOD[1][0]])
    result, table, rejects = run(data)
    assert result.fmt == "jsonl" and result.notes == []
    assert rows(table) == [{**GOOD[0][1], "_line": 2}, {**GOOD[1][1], "_line": 3}]
    assert [(r["line"], r["raw"], r["reason"]) for r in rejects] == [
        (1, "[1, 2]", "line is a JSON array, expected an object")]


@pytest.mark.parametrize("block_bytes", [1 << 20, 8])
def test_a_malformed_first_line_starting_with_a_brace_does_not_make_a_document(block_bytes):
    data = jsonl(['{"id": "x", ', "", GOOD[0][0], GOOD[2][0]])
    result, table, rejects = run(data, block_bytes=block_bytes)
    assert result.fmt == "jsonl"
    assert rows(table) == [{**GOOD[0][1], "_line": 3}, {**GOOD[2][1], "_line": 4}]
    assert [(r["line"], r["raw"]) for r in rejects] == [(1, '{"id": "x", ')]
    assert rejects[0]["reason"].startswith("malformed JSON")
    assert result.blank_lines == 1


# ---- the reference: every line gives what a plain reader says ---------------------------------
@pytest.mark.parametrize("block_bytes", [1 << 20, 256, 64, 16])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_jsonl_rows_and_rejects_are_those_of_the_plain_reference(block_bytes, seed):
    cases = mixed(60, seed)
    good, bad = reference(cases)
    result, table, rejects = run(jsonl(text for text, _ in cases), block_bytes=block_bytes)
    assert rows(table) == good
    assert [(r["line"], r["raw"]) for r in rejects] == bad
    assert (result.rows, result.rejected, result.fmt) == (len(good), len(bad), "jsonl")
    assert table.schema == TINY.silver


@pytest.mark.parametrize("block_bytes", [1 << 20, 16])
def test_a_row_the_row_checks_refuse_after_a_located_bad_line_keeps_its_own_raw_line(block_bytes):
    # The locator accepts the rows around a malformed line in pieces; the row checks then refuse a
    # row of a later piece, whose raw line must be its own.
    cases = [GOOD[0], GOOD[1], (BAD[7], None), GOOD[2], (BAD[2], None), GOOD[3], (BAD[3], None), GOOD[0]]
    good, bad = reference(cases)
    result, table, rejects = run(jsonl(text for text, _ in cases), block_bytes=block_bytes)
    assert rows(table) == good
    assert [(r["line"], r["raw"]) for r in rejects] == bad
    assert [r["reason"] for r in rejects][1:] == [
        "value 'yesterday' of field 'at' is not a valid timestamp[us, tz=UTC] (expected ISO-8601, e.g. "
        "2025-01-31T12:00:00Z)", "missing required field(s) 'meta.k'"]


@pytest.mark.parametrize("block_bytes", [1 << 20, 16])
def test_a_null_line_is_rejected_as_null(block_bytes):
    result, table, rejects = run(jsonl([GOOD[0][0], "null", " null ", GOOD[1][0]]), block_bytes=block_bytes)
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (2, "line is a JSON null, expected an object"), (3, "line is a JSON null, expected an object")]
    assert [r["_line"] for r in rows(table)] == [1, 4]


def test_a_json_array_gives_the_rows_and_rejects_of_the_same_lines_with_element_indexes():
    cases = [case for case in mixed(60, 4) if case[0] not in (BAD[7], BAD[8])]  # elements are values
    good, bad = reference(cases)
    result, table, rejects = run(("[" + ",\n ".join(text for text, _ in cases) + "]").encode())
    assert (result.fmt, rows(table)) == ("json", good)
    assert [(r["line"], json.loads(r["raw"])) for r in rejects] == [(k, json.loads(text)) for k, text in bad]
    lines = run(jsonl(text for text, _ in cases))[2]
    assert [r["reason"] for r in rejects] == [r["reason"].replace("line ", "array element ", 1) for r in lines]


def elementwise(monkeypatch):
    """Arrays decoded an element at a time (what an array the line cutter cannot split takes)."""
    monkeypatch.setattr(pipeline, "elements_as_lines", lambda data: None)


@pytest.mark.parametrize("block_bytes", [1 << 20, 40, 1])
def test_an_array_decoded_element_by_element_gives_what_its_lines_give(monkeypatch, block_bytes):
    cases = [case for case in mixed(40, 5) if case[0] not in (BAD[7], BAD[8])]
    data = ("[ " + " ,\n".join(text for text, _ in cases) + "\n]\n").encode()
    cut = run(data, block_bytes=block_bytes)
    elementwise(monkeypatch)
    whole = run(data, block_bytes=block_bytes)
    assert rows(whole[1]) == rows(cut[1]) == reference(cases)[0]
    assert [(r["line"], r["reason"], json.loads(r["raw"])) for r in whole[2]] == [
        (r["line"], r["reason"], json.loads(r["raw"])) for r in cut[2]]
    assert [r["raw"] for r in whole[2]] == [json.dumps(json.loads(r["raw"]), ensure_ascii=False) for r in cut[2]]
    assert (whole[0].fmt, whole[0].rows, whole[0].rejected) == ("json", cut[0].rows, cut[0].rejected)
    objects = sum(1 for text, _ in cases if text.startswith("{"))
    assert whole[0].fields_examined == objects  # every object element, for drift


@pytest.mark.parametrize("element, kind", [
    ("[1]", "array"), ('"s"', "string"), ("true", "boolean"), ("false", "boolean"), ("null", "null"),
    ("3", "number"), ("-2.5e3", "number")])
def test_an_element_that_is_not_an_object_is_rejected_by_its_kind(monkeypatch, element, kind):
    elementwise(monkeypatch)
    result, table, rejects = run(f'[{GOOD[0][0]}, {element}, {GOOD[1][0]}]'.encode())
    assert [(r["line"], r["reason"], r["raw"]) for r in rejects] == [
        (2, f"array element is a JSON {kind}, expected an object", json.dumps(json.loads(element)))]
    assert [r["_line"] for r in rows(table)] == [1, 3]


@pytest.mark.parametrize("document", [b"[]", b" [ ] ", b"[\n]\n"])
def test_an_empty_array_gives_no_rows(monkeypatch, document):
    for patched in (False, True):
        if patched:
            elementwise(monkeypatch)
        result, table, rejects = run(document)
        assert (result.fmt, result.rows, result.rejected, rejects, table.num_rows) == ("json", 0, 0, [], 0)


def test_an_element_nested_deeper_than_python_reads_makes_the_array_unreadable(monkeypatch):
    elementwise(monkeypatch)
    with pytest.raises(UnreadableObject, match=r"^JSON array element 2 is nested deeper than Python's JSON reader "
                                               r"allows \(about \d+ levels\)$"):
        run(b'[{"id": "a"}, ' + b"[" * 100_000 + b"]" * 100_000 + b"]")


def test_an_unsplittable_array_with_a_rejected_element_then_junk_is_unreadable():
    # The cutter refuses data after the closing bracket; the decoder has already rejected element
    # 1, so the object cannot be read as lines instead.
    with pytest.raises(UnreadableObject, match=r"^not JSON: data after the JSON array's closing bracket \(char 24\)$"):
        run(b'[1, {"id": "a", "n": 2}] x')


def test_an_unsplittable_array_with_a_bad_element_after_a_rejected_one_is_unreadable():
    with pytest.raises(UnreadableObject, match=r"^not JSON: .* \(in JSON array element 2\)$"):
        run(b'[1, {"id": "a\n"}]')


def test_an_array_missing_a_comma_after_rows_left_in_a_block_is_unreadable(monkeypatch):
    elementwise(monkeypatch)
    data = b'[{"id": "a"}, {"id": "b"} {"id": "c"}]'
    with pytest.raises(UnreadableObject, match=r"^not JSON: expected ',' or ']' after JSON array element 2 \(char 26\)$"):
        run(data, block_bytes=8)


def test_what_only_starts_like_an_array_is_read_as_lines_while_nothing_of_it_was_used():
    # Not one array: nothing of it accepted or rejected yet, so it is read as JSONL, and each
    # line says what it is.
    result, table, rejects = run(b'[{"id": "a"},\n' + jsonl([GOOD[1][0], GOOD[2][0]]))
    assert result.fmt == "jsonl"
    assert [r["_line"] for r in rows(table)] == [2, 3]
    assert [r["line"] for r in rejects] == [1]
    result, table, rejects = run(b'[{"id": "a"} {"id": "b"}]\n' + jsonl([GOOD[1][0]]))
    assert [r["_line"] for r in rows(table)] == [2] and [r["line"] for r in rejects] == [1]
    result, table, rejects = run(b'[{"id": "a"}] [2]\n' + jsonl([GOOD[1][0]]))
    assert [r["_line"] for r in rows(table)] == [2] and [r["line"] for r in rejects] == [1]


def test_an_array_decoded_element_by_element_flushes_its_rows_and_rejects_per_block(monkeypatch):
    elementwise(monkeypatch)
    sink = io.BytesIO()
    writes = []
    real = sink.write
    sink.write = lambda data: writes.append(data) or real(data)
    data = ("[" + ", ".join([GOOD[0][0], "1"] * 10) + "]").encode()
    result = transform_stream(io.BytesIO(data), schema=TINY, source_key="k", gzipped=False,
                              parquet_out=io.BytesIO(), quarantine_out=sink, block_bytes=30)
    assert (result.rows, result.rejected) == (10, 10)
    assert sum(1 for w in writes if w) >= 5  # rejects leave as each block of elements is done
    assert [json.loads(line)["line"] for line in sink.getvalue().splitlines()] == list(range(2, 21, 2))


# ---- one JSON document ---------------------------------------------------------------------------
def test_a_pretty_printed_object_is_one_row_on_line_1():
    result, table, rejects = run(b'\n\n{\n  "id": "a",\n  "meta": {"k": "v"},\n  "zz": 1\n}\n\n')
    assert result.fmt == "json" and rejects == []
    assert rows(table) == [{"id": "a", "n": None, "at": None, "meta": {"k": "v"}, "_line": 1}]
    assert result.unknown_fields == {"zz": 1} and result.fields_examined == 1


def test_a_pretty_printed_object_that_fails_its_checks_is_rejected_as_line_1():
    result, table, rejects = run(b'{\n  "n": 1,\n  "id": null\n}\n')
    assert (result.fmt, table.num_rows) == ("json", 0)
    assert rejects == [{"line": 1, "reason": MISSING_ID, "raw": '{"n": 1, "id": null}'}]


@pytest.mark.parametrize("data", [
    b'{\n"id": "a",\n',  # cut short
    b'{\n"id": "a"\n}\n{\n"id": "b"\n}\n',  # two documents
    b'{\n"id": "\xff"\n}\n',  # not UTF-8
    b'{"a":\n' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001 + b"\n",  # deeper than Python reads
])
def test_what_only_starts_like_a_document_is_read_as_lines(data):
    try:
        result, _, rejects = run(data)
    except UnreadableObject as exc:  # none of its lines is JSON
        assert str(exc).startswith("no line is JSON (")
        return
    assert result.fmt == "jsonl" and result.rejected == len(rejects)


def test_two_documents_are_read_as_lines_each_line_judged():
    result, table, rejects = run(b'{"id": "x",\n' + jsonl([GOOD[0][0], "[1]", GOOD[1][0]]))
    assert result.fmt == "jsonl"
    assert [r["_line"] for r in rows(table)] == [2, 4] and [r["line"] for r in rejects] == [1, 3]


def test_a_document_that_turns_out_to_be_jsonl_streams_in_blocks():
    # The drift sample is taken per block: read as one block, only the first lines would be seen.
    lines = ['{"id": "x",', "[1]"] + ['{"id": "a", "zz": 1}'] * 600
    result, table, rejects = run(jsonl(lines), block_bytes=512)
    assert result.fmt == "jsonl" and table.num_rows == 600 and [r["line"] for r in rejects] == [1, 2]
    assert result.fields_examined > 256 + 8
    assert result.unknown_fields["zz"] == result.fields_examined


# ---- the JSON document cap (ELT_MAX_JSON_BYTES) ----------------------------------------------------
def test_an_array_is_read_up_to_max_json_bytes_and_past_it_is_unreadable_with_the_fix():
    data = ("[" + ", ".join([GOOD[0][0]] * 20) + "]").encode()
    assert run(data, block_bytes=16, max_json_bytes=len(data))[0].rows == 20
    with pytest.raises(UnreadableObject) as raised:
        run(data, block_bytes=16, max_json_bytes=len(data) - 1)
    assert str(raised.value) == (f"JSON document is larger than the {len(data) - 1} byte limit (ELT_MAX_JSON_BYTES); "
                                 "split it or write it as JSONL, which streams at any size")


def test_an_object_document_past_max_json_bytes_is_read_as_lines_with_nothing_lost():
    data = b'{"id": "x",\n[1]\n' + jsonl([GOOD[0][0]] * 30)
    result, table, rejects = run(data, block_bytes=16, max_json_bytes=64)
    assert result.fmt == "jsonl" and result.bytes_in == len(data)
    assert [r["_line"] for r in rows(table)] == list(range(3, 33))
    assert [(r["line"], r["raw"]) for r in rejects] == [(1, '{"id": "x",'), (2, "[1]")]
    pretty = b'{\n "id": "a"\n}\n'
    assert run(pretty, block_bytes=4, max_json_bytes=len(pretty))[0].fmt == "json"
    with pytest.raises(UnreadableObject, match="^no line is JSON"):
        run(pretty, block_bytes=4, max_json_bytes=len(pretty) - 1)


def test_a_line_longer_than_max_json_bytes_is_rejected_with_its_size_and_the_rest_is_read():
    long = '{"id": "' + "x" * 300 + '"}'
    result, table, rejects = run(jsonl([GOOD[0][0], long, GOOD[1][0]]), block_bytes=16, max_json_bytes=100)
    assert [r["_line"] for r in rows(table)] == [1, 3]
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, f"line longer than 100 bytes ({len(long)} bytes)")]
    assert long.startswith(rejects[0]["raw"][:-3]) and rejects[0]["raw"].endswith("...")


# ---- the object cap (ELT_MAX_OBJECT_BYTES), gzip, the stream ------------------------------------
@pytest.mark.parametrize("gzipped", [False, True])
def test_an_object_is_read_up_to_max_object_bytes_decompressed_and_past_it_is_unreadable(gzipped):
    data = jsonl([GOOD[0][0]] * 20)
    raw = gzip.compress(data) if gzipped else data
    result, table, _ = run(raw, gzipped=gzipped, block_bytes=32, max_object_bytes=len(data))
    assert (result.rows, result.bytes_in) == (20, len(data))
    with pytest.raises(UnreadableObject, match=r"^object is larger than the \d+ byte limit.*ELT_MAX_OBJECT_BYTES"):
        run(raw, gzipped=gzipped, block_bytes=32, max_object_bytes=len(data) - 1)


@pytest.mark.parametrize("data", [jsonl(text for text, _ in mixed(30, 7)), b'[{"id": "a"}, 1]', b'{\n"id": "a"\n}'])
def test_gzip_gives_what_the_plain_bytes_give(data):
    plain, zipped = run(data, block_bytes=16), run(gzip.compress(data), gzipped=True, block_bytes=16)
    assert rows(zipped[1]) == rows(plain[1]) and zipped[2] == plain[2]
    assert zipped[0] == plain[0]


def test_corrupt_gzip_is_unreadable():
    with pytest.raises(UnreadableObject, match="^cannot decompress"):
        run(b"not gzip", gzipped=True)


def test_an_unreadable_object_still_closes_its_parquet_file():
    out = io.BytesIO()
    with pytest.raises(UnreadableObject):
        transform_stream(io.BytesIO(jsonl([GOOD[0][0]] * 20)), schema=TINY, source_key="k", gzipped=False,
                         parquet_out=out, quarantine_out=io.BytesIO(), block_bytes=16, max_object_bytes=50)
    assert pq.read_table(pa.BufferReader(out.getvalue())).num_rows == 0  # a whole file (footer written)


def test_lineage_columns_name_the_object_and_the_time_it_was_ingested():
    _, table, _ = run(jsonl([GOOD[0][0], GOOD[1][0]]), source_key="bronze/tiny/x.jsonl")
    assert table.column("_source_key").to_pylist() == ["bronze/tiny/x.jsonl"] * 2
    assert table.column("_ingested_at").to_pylist() == [WHEN] * 2
    before = dt.datetime.now(dt.UTC)
    table = transform_bytes(jsonl([GOOD[0][0]]), schema=TINY, source_key="k", gzipped=False)[1]
    assert before <= table.column("_ingested_at")[0].as_py() <= dt.datetime.now(dt.UTC)


def test_row_groups_hold_row_group_rows_rows():
    out = io.BytesIO()
    transform_stream(io.BytesIO(jsonl([GOOD[0][0]] * 5)), schema=TINY, source_key="k", gzipped=False,
                     parquet_out=out, quarantine_out=io.BytesIO(), row_group_rows=2)
    metadata = pq.ParquetFile(pa.BufferReader(out.getvalue())).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [2, 2, 1]


def test_the_defaults_are_the_lambdas():
    defaults = {name: p.default for name, p in inspect.signature(transform_stream).parameters.items()}
    env = {var.name: int(var.default) for var in config.TRANSFORM_ENV if var.name in (
        "ELT_MAX_JSON_BYTES", "ELT_ROW_GROUP_ROWS", "ELT_MAX_OBJECT_BYTES", "ELT_QUARANTINE_MAX_LINES",
        "ELT_QUARANTINE_MAX_BYTES")}
    assert {"ELT_MAX_JSON_BYTES": defaults["max_json_bytes"], "ELT_ROW_GROUP_ROWS": defaults["row_group_rows"],
            "ELT_MAX_OBJECT_BYTES": defaults["max_object_bytes"],
            "ELT_QUARANTINE_MAX_LINES": defaults["quarantine_max_lines"],
            "ELT_QUARANTINE_MAX_BYTES": defaults["quarantine_max_bytes"]} == env
    assert pipeline.DEFAULT_MAX_JSON_BYTES == env["ELT_MAX_JSON_BYTES"]
    assert (defaults["suffix_format"], defaults["ingested_at"]) == ("jsonl", None)


# ---- empty input, blank lines, the byte order mark -----------------------------------------------
@pytest.mark.parametrize("data", [b"", b" ", b"\n\n\n", b" \t\r\n  \n "])
@pytest.mark.parametrize("block_bytes", [1 << 20, 2])
def test_an_object_with_no_content_is_an_empty_table_and_says_so(data, block_bytes):
    result, table, rejects = run(data, block_bytes=block_bytes)
    assert (result.rows, result.rejected, rejects, table.num_rows) == (0, 0, [], 0)
    assert result.notes == ["empty object"] and result.bytes_in == len(data)
    assert table.schema == TINY.silver


@pytest.mark.parametrize("block_bytes", [1 << 20, 4, 3, 1])
def test_leading_blank_lines_are_counted_and_line_numbers_still_match_the_object(block_bytes):
    data = b"\n \n\t\n\n  " + jsonl([GOOD[0][0], "", GOOD[1][0]])
    result, table, rejects = run(data, block_bytes=block_bytes)
    assert rejects == [] and [r["_line"] for r in rows(table)] == [5, 7]
    assert result.blank_lines == 5


@pytest.mark.parametrize("data", [jsonl([GOOD[0][0]]), b"[" + GOOD[0][0].encode() + b"]", b'{\n"id": "a", "n": 1}'])
def test_a_byte_order_mark_is_removed_and_noted(data):
    result, table, rejects = run(b"\xef\xbb\xbf" + data, suffix_format=run(data)[0].fmt)
    assert rows(table) == [{**GOOD[0][1], "_line": 1}] and rejects == []
    assert result.notes == ["UTF-8 byte order mark removed"]


# ---- the quarantine caps (ELT_QUARANTINE_MAX_LINES / _BYTES) --------------------------------------
def summary(rejects):
    last = rejects[-1]
    return last["line"], last["dropped_lines"], last["last_dropped_line"], last["raw"]


@pytest.mark.parametrize("block_bytes", [1 << 20, 64, 16])
@pytest.mark.parametrize("seed", [8, 9])
def test_past_the_line_cap_rejects_are_counted_in_one_summary_record(block_bytes, seed):
    cases = mixed(80, seed, bad_share=0.5)
    good, bad = reference(cases)
    result, table, rejects = run(jsonl(text for text, _ in cases), block_bytes=block_bytes, quarantine_max_lines=5)
    assert rows(table) == good  # rows past the cap are still rows
    kept = [(r["line"], r["raw"]) for r in rejects[:5]]
    if block_bytes == 16:  # a block a line: the first five found are the first five
        assert kept == bad[:5]
    assert set(kept) <= set(bad) and kept == sorted(kept)  # written in line order
    dropped = [line for line, raw in bad if (line, raw) not in kept]
    assert summary(rejects) == (dropped[0], len(bad) - 5, dropped[-1], "")
    assert rejects[-1]["reason"].startswith(f"quarantine cap reached: {len(bad) - 5} more rejected line(s) ")
    assert (len(rejects), result.rejected, result.rows) == (6, len(bad), len(good))


@pytest.mark.parametrize("block_bytes", [1 << 20, 64])
def test_rows_the_row_checks_refuse_past_the_cap_are_counted(block_bytes):
    lines = [GOOD[0][0]] + ['{"id": "x", "at": "never"}', '{"n": 1}'] * 10 + [GOOD[1][0]]
    result, table, rejects = run(jsonl(lines), block_bytes=block_bytes, quarantine_max_lines=3)
    assert [r["_line"] for r in rows(table)] == [1, 22]
    assert [r["line"] for r in rejects[:3]] == [2, 3, 4]
    assert summary(rejects) == (5, 17, 21, "")
    assert result.rejected == 20 and result.first_rejects[3] == (5, MISSING_ID)


def test_the_byte_cap_keeps_records_while_they_fit():
    lines = [f'{{"n": {k}}}' for k in range(1, 11)]
    record = len(json.dumps({"line": 1, "reason": MISSING_ID, "raw": lines[0]}, ensure_ascii=False)) + 1
    result, table, rejects = run(jsonl(lines), quarantine_max_bytes=3 * record)
    assert [r["line"] for r in rejects[:-1]] == [1, 2, 3]
    assert summary(rejects) == (4, 7, 10, "") and result.rejected == 10


def test_a_zero_line_cap_keeps_only_the_summary():
    result, _, rejects = run(jsonl(['{"n": 1}', GOOD[0][0], "null"]), quarantine_max_lines=0)
    assert [summary(r) for r in [rejects]] == [(1, 2, 3, "")] and len(rejects) == 1


# ---- blocks of only empty objects (the flood shortcut) -------------------------------------------
@pytest.mark.parametrize("block_bytes", [1 << 20, 32, 7])
@pytest.mark.parametrize("tail", [b"\n", b""])
def test_empty_objects_are_rejected_one_record_each_with_their_raw_line(block_bytes, tail):
    data = b"{}\n { }\n{}\r\n{}" + tail
    result, table, rejects = run(data, block_bytes=block_bytes)
    assert [(r["line"], r["raw"], r["reason"]) for r in rejects] == [
        (1, "{}", MISSING_ID), (2, " { }", MISSING_ID), (3, "{}\r", MISSING_ID), (4, "{}", MISSING_ID)]
    assert (result.rows, result.rejected, table.num_rows) == (0, 4, 0)


def test_empty_objects_are_rows_of_nulls_when_nothing_is_required():
    result, table, rejects = run(b"{}\n" * 5 + b"{}", schema=LENIENT)
    assert rejects == [] and [r["_line"] for r in rows(table)] == [1, 2, 3, 4, 5, 6]
    assert rows(table)[0] == {"id": None, "n": None, "at": None, "meta": None, "_line": 1}


@pytest.mark.parametrize("cap", [0, 1, 3, 9, 100])
@pytest.mark.parametrize("block_bytes", [1 << 20, 32])
def test_empty_objects_past_the_cap_are_counted_in_the_summary(cap, block_bytes):
    n = 12
    data = b'{"n": 1}\n' + b"{}\n" * n + GOOD[0][0].encode() + b"\n"
    result, table, rejects = run(data, block_bytes=block_bytes, quarantine_max_lines=cap)
    kept = min(cap, n + 1)
    assert [(r["line"], r["reason"]) for r in rejects[:kept]] == [(k, MISSING_ID) for k in range(1, kept + 1)]
    assert [r["raw"] for r in rejects[1:kept]] == ["{}"] * (kept - 1)
    if kept < n + 1:
        assert summary(rejects) == (kept + 1, n + 1 - kept, n + 1, "")
    assert len(rejects) == kept + (kept < n + 1)
    assert result.rejected == n + 1 and [r["_line"] for r in rows(table)] == [n + 2]


@pytest.mark.parametrize("flood, reason", [(FLOOD_MIN_LINES, UNWORDED_MISSING), (FLOOD_MIN_LINES - 1, MISSING_ID)])
def test_a_flood_of_empty_objects_past_the_cap_is_not_worded(flood, reason):
    # A full quarantine and a block of at least FLOOD_MIN_LINES empty objects: what the locator's
    # narrow read would say of the same block (a shorter one is worded as settle words it).
    block = 3 * FLOOD_MIN_LINES  # the first line fills two chunks, the flood's lines the third
    data = b'{"n": 1}'.ljust(2 * block - 1) + b"\n" + b"{}\n" * flood
    result, _, rejects = run(data, block_bytes=block, quarantine_max_lines=1)
    assert result.first_rejects == [(1, MISSING_ID), (2, reason)]
    assert summary(rejects) == (2, flood, flood + 1, "")


# ---- the object that is not JSON at all ----------------------------------------------------------
def test_an_object_with_no_json_line_is_unreadable_naming_the_first_bad_line():
    with pytest.raises(UnreadableObject) as raised:
        run(b"\nnot json\nnor this\n")
    assert str(raised.value).startswith("no line is JSON (2 line(s) rejected; line 2: malformed JSON")


@pytest.mark.parametrize("data", [jsonl(["not json", '{"n": 1}']), jsonl(['{"n": 1}']), jsonl(["nope", GOOD[0][0]])])
def test_an_object_with_a_line_that_is_json_is_readable(data):
    result = run(data)[0]
    assert result.rejected >= 1


@pytest.mark.parametrize("block_bytes", [1 << 20, 16])
def test_a_line_with_invalid_utf8_is_rejected_and_never_reaches_silver(block_bytes):
    data = jsonl([GOOD[0][0], GOOD[1][0]]) + b'{"id": "\xff"}\n' + jsonl([GOOD[2][0]])
    result, table, rejects = run(data, block_bytes=block_bytes)
    assert rows(table) == [{**GOOD[0][1], "_line": 1}, {**GOOD[1][1], "_line": 2}, {**GOOD[2][1], "_line": 4}]
    assert [(r["line"], r["raw"]) for r in rejects] == [(3, '{"id": "\\xff"}')]
    assert rejects[0]["reason"].startswith("not valid UTF-8")


# ---- the fast path: which blocks reach the locator, and with what it knows ------------------------
@pytest.fixture
def located(monkeypatch):
    """The blocks handed to the locator: (first line, error or None, what the call says it knows)."""
    calls = []
    real = Locator.block

    def spy(self, data, first_line, newlines, error, **known):
        calls.append((first_line, type(error).__name__ if error is not None else None, known))
        return real(self, data, first_line, newlines, error, **known)

    monkeypatch.setattr(Locator, "block", spy)
    return calls


LONG = [GOOD[0][0], GOOD[1][0], GOOD[2][0]]  # first lines of 16 bytes or more: not careful


@pytest.mark.parametrize("tail", ["\n", ""])
def test_clean_blocks_take_the_fast_path_and_never_reach_the_locator(located, tail):
    data = ("\n".join(LONG * 3) + tail).encode()
    result, table, rejects = run(data, block_bytes=len(data) // 3)
    assert (result.rows, rejects, located) == (9, [], [])


@pytest.mark.parametrize("lines, error, known", [
    ([GOOD[0][0], "", GOOD[1][0]], None, {"dirty": False}),  # a blank line: careful
    (['{"id": "a"}', GOOD[1][0]], None, {"dirty": False}),  # a short first line: careful
    ([GOOD[0][0], '{"id": "x", "n": "many"}'], "ArrowInvalid", {"utf8": True}),  # the read failed
    ([GOOD[0][0], '{"id": "x"} {"id": "y"}'], None, {"utf8": True, "two_values": True}),  # more rows than lines
])
def test_a_block_that_cannot_take_the_fast_path_goes_to_the_locator_with_what_is_known(located, lines, error, known):
    run(jsonl(lines))
    assert located == [(1, error, known)]


def test_a_line_with_invalid_utf8_goes_to_the_locator_as_not_utf8(located):
    run(jsonl([GOOD[0][0]]) + b'{"id": "\xff"}\n')
    assert located == [(1, None, {"utf8": False})]


def test_after_a_block_with_bad_lines_the_next_is_screened_first_and_a_clean_one_ends_that(located):
    result, _, rejects = run(jsonl([GOOD[0][0], BAD[0], GOOD[1][0], GOOD[2][0]]), block_bytes=16)  # a block a line
    assert [r["line"] for r in rejects] == [2] and result.rows == 3
    assert located == [(2, "ArrowInvalid", {"utf8": True}), (3, None, {"dirty": True})]


def test_a_two_value_line_is_found_without_a_probe():
    result, table, rejects = run(jsonl([GOOD[0][0], '{"id": "x"} {"id": "y"}', GOOD[1][0]]))
    assert [r["line"] for r in rejects] == [2] and [r["_line"] for r in rows(table)] == [1, 3]
    assert result.probes == 0


def test_a_null_line_in_a_clean_block_is_rejected_as_null():
    # Not careful, so Arrow reads it, as a row of nulls: the row checks refuse it, named as a null.
    result, table, rejects = run(jsonl([GOOD[0][0], "null", GOOD[1][0]]))
    assert [(r["line"], r["reason"], r["raw"]) for r in rejects] == [(2, "line is a JSON null, expected an object", "null")]
    assert [r["_line"] for r in rows(table)] == [1, 3]


def test_rows_refused_in_a_later_piece_of_a_block_keep_their_own_raw_lines():
    # A value too large for int64 fails the read (naming the value, not the row) and sends the
    # block to the probe, which reads it in pieces of arrow_read.PROBE_BLOCK_BYTES: it accepts the
    # whole pieces before each such line first and the lines just before it (in the failing piece)
    # last. The row checks then refuse rows of that last part, each named by its own line.
    big = '{"id": "x", "n": 99999999999999999999}'
    filler = ['{"id": "%s"}' % ("f" * (arrow_read.PROBE_BLOCK_BYTES // 2))] * 3  # past one piece
    lines = filler + ['{"id": "p", "at": "soon"}', big] + filler + ['{"id": "q", "at": "later"}', big, GOOD[1][0]]
    result, table, rejects = run(jsonl(lines))
    refused = [k for k, line in enumerate(lines, 1) if line not in (filler[0], GOOD[1][0])]
    assert sorted((r["line"], r["raw"]) for r in rejects) == [(k, lines[k - 1]) for k in refused]
    assert result.rows == len(lines) - 4


# ---- leading whitespace, array text, documents -----------------------------------------------------
@pytest.mark.parametrize("block_bytes", [1 << 20, 3, 2, 1])
def test_whitespace_before_the_first_content_on_its_line_stays_in_the_line(block_bytes):
    result, table, rejects = run(b"\n  nope\n" + jsonl([GOOD[0][0]]), block_bytes=block_bytes)
    assert [(r["line"], r["raw"]) for r in rejects] == [(2, "  nope")]
    assert [r["_line"] for r in rows(table)] == [3] and result.blank_lines == 1


def test_leading_blank_lines_are_let_go_of_whatever_their_length():
    # A blank line of 300 spaces is longer than max_json_bytes: let go of, it is not a long line.
    data = b"\n" + b" " * 300 + b"\n" + jsonl([GOOD[0][0]])
    result, table, rejects = run(data, block_bytes=302, max_json_bytes=100)
    assert (rejects, [r["_line"] for r in rows(table)], result.blank_lines) == ([], [3], 2)


def test_an_array_element_is_quarantined_as_its_own_text():
    result, table, rejects = run(b'[{"n":3},{"id":"a"}]')
    assert [(r["line"], r["raw"].strip()) for r in rejects] == [(1, '{"n":3}')]
    assert [r["_line"] for r in rows(table)] == [2]


def test_an_array_decoded_element_by_element_needs_no_space_after_its_commas(monkeypatch):
    elementwise(monkeypatch)
    result, table, rejects = run(b'[{"id":"a"},{"id":"b"},{"n":1}]')
    assert (result.fmt, [r["id"] for r in rows(table)], [r["line"] for r in rejects]) == ("json", ["a", "b"], [3])


def test_data_right_after_an_arrays_closing_bracket_makes_it_not_an_array():
    with pytest.raises(UnreadableObject, match=r"^no line is JSON \(1 line\(s\) rejected; line 1: malformed JSON"):
        run(b'[{"id": "a"}]x')


def test_a_rejected_document_keeps_its_non_ascii_text():
    result, table, rejects = run('{\n  "n": 1,\n  "meta": {"k": "\u00e9t\u00e9"}\n}\n'.encode())
    assert rejects == [{"line": 1, "reason": MISSING_ID, "raw": '{"n": 1, "meta": {"k": "\u00e9t\u00e9"}}'}]


def test_an_array_decoded_element_by_element_keeps_non_ascii_text_and_counts_unknown_fields(monkeypatch):
    elementwise(monkeypatch)
    result, table, rejects = run('[{"id": "a", "zz": 1}, {"n": 1, "meta": {"k": "\u00e9t\u00e9"}}]'.encode())
    assert [(r["line"], r["raw"]) for r in rejects] == [(2, '{"n": 1, "meta": {"k": "\u00e9t\u00e9"}}')]
    assert (result.unknown_fields, result.fields_examined) == ({"zz": 1}, 2)


@pytest.mark.parametrize("sizes, extra, per_block", [(1, 0, 1), (1, 1, 2), (2, 0, 2), (2, 1, 3)])
def test_an_array_decoded_element_by_element_flushes_once_a_block_holds_block_bytes(monkeypatch, sizes, extra,
                                                                                      per_block):
    # Ten elements of `size` bytes each, every one rejected by the row checks: each write holds
    # the records of one block of elements, and a block is done once it holds `block_bytes`.
    elementwise(monkeypatch)
    element = '{"n": 1}'
    size = len(json.dumps(json.loads(element)))
    sink = io.BytesIO()
    writes = []
    real = sink.write
    sink.write = lambda data: writes.append(data) or real(data)
    transform_stream(io.BytesIO(("[" + ", ".join([element] * 10) + "]").encode()), schema=TINY, source_key="k",
                     gzipped=False, parquet_out=io.BytesIO(), quarantine_out=sink, block_bytes=sizes * size + extra)
    counts = [len(w.splitlines()) for w in writes if w]
    assert counts == [per_block] * (10 // per_block) + ([10 % per_block] if 10 % per_block else [])


def test_unknown_fields_past_the_names_kept_are_counted_as_more_names():
    line = json.dumps({"id": "a", **{f"f{k}": k for k in range(30)}})
    result = run(jsonl([line]))[0]
    assert len(result.unknown_fields) == 21 and result.unknown_fields["(more names)"] == 10


# ---- floods past the cap, empty objects ----------------------------------------------------------
def test_a_flood_of_lines_lacking_a_required_field_past_the_cap_is_counted_unworded():
    # The quarantine is full after the first block; the next, screened first, is a flood of
    # lines without `id` (a required top-level field): taken out by the narrow read, not worded.
    block = 9 * FLOOD_MIN_LINES  # the first line fills two chunks, the flood's lines the third
    data = BAD[0].encode().ljust(2 * block - 1) + b"\n" + b'{"n": 1}\n' * FLOOD_MIN_LINES
    result, table, rejects = run(data, block_bytes=block, quarantine_max_lines=1)
    assert result.first_rejects[:2] == [(1, result.first_rejects[0][1]), (2, UNWORDED_MISSING)]
    assert (result.rejected, table.num_rows) == (FLOOD_MIN_LINES + 1, 0)


def test_a_block_of_empty_objects_is_worded_up_to_the_cap_and_counted_past_it():
    data = b"{}\n{ }\n{  }\n{   }\n{    }\n"
    result, table, rejects = run(data, quarantine_max_lines=2)
    assert [(r["line"], r["raw"]) for r in rejects[:2]] == [(1, "{}"), (2, "{ }")]
    assert summary(rejects) == (3, 3, 5, "") and result.rejected == 5


# ---- defaults --------------------------------------------------------------------------------------
def test_a_row_group_holds_131072_rows_by_default():
    out = io.BytesIO()
    rows_in = 131072 + 1
    transform_stream(io.BytesIO(b"{}\n" * rows_in), schema=LENIENT, source_key="k", gzipped=False,
                     parquet_out=out, quarantine_out=io.BytesIO())
    metadata = pq.ParquetFile(pa.BufferReader(out.getvalue())).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [131072, 1]


def test_the_default_ingestion_time_is_utc_whatever_the_local_zone(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        before = dt.datetime.now(dt.UTC)
        table = transform_bytes(jsonl([GOOD[0][0]]), schema=TINY, source_key="k", gzipped=False)[1]
        assert before <= table.column("_ingested_at")[0].as_py() <= dt.datetime.now(dt.UTC)
    finally:
        monkeypatch.undo()
        time.tzset()


NULL_LED = [b"null" + b" " * 20, b"nullx", b"null,", b"null 1", b"  null}" + b" " * 12, b"null{}"]


@pytest.mark.parametrize("schema", [TINY, LENIENT], ids=["required", "nothing required"])
@pytest.mark.parametrize("where", ["first", "middle", "last", "first of a later block"])
@pytest.mark.parametrize("line", NULL_LED)
def test_a_line_that_starts_with_null_is_quarantined_never_read_by_arrow(line, where, schema):
    # Arrow's JSON reader crashes the process (SIGSEGV) on a read whose first line is one: before,
    # such a line first in an object, or found by a probe, killed the Lambda.
    good = [f'{{"id": "g{i}", "n": {i}, "meta": {{"k": "v"}}}}'.encode() for i in range(40)]
    at = {"first": 0, "middle": 20, "last": 40, "first of a later block": 30}[where]
    data = b"\n".join(good[:at] + [line] + good[at:]) + b"\n"
    block = len(b"\n".join(good[:30])) + 1 if where == "first of a later block" else 1 << 20
    result, table, rejects = run(data, schema=schema, block_bytes=block)
    assert [r["line"] for r in rejects] == [at + 1]
    assert rejects[0]["raw"] == line.decode()
    is_null = line.strip() == b"null"
    assert ("JSON null" in rejects[0]["reason"]) is is_null
    assert table.column("id").to_pylist() == [f"g{i}" for i in range(40)]


def test_a_flood_of_lines_that_start_with_null_is_capped_and_counted():
    data = b'{"id": "a", "meta": {"k": "v"}}\n' + b"nullx\n" * 25_000
    result, table, rejects = run(data, quarantine_max_lines=100)
    assert (result.rows, result.rejected) == (1, 25_000)
    assert len(rejects) == 101 and rejects[-1]["dropped_lines"] == 24_900
