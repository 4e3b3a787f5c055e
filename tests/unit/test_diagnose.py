"""diagnose.py on single values and lines: the rule tree of each Arrow type, the first place a decoded
value does not fit it (the reason quarantine records give), the lines Python can tell are not JSON
at all, and reasons with their values withheld."""

import json
import sys

import pyarrow as pa
import pytest

from lambdas.transform.diagnose import (
    MAX_DEPTH,
    Diagnoser,
    Diagnosis,
    article,
    check,
    json_kind,
    mismatch,
    rule,
    without_values,
)

SCHEMA = pa.schema([
    pa.field("id", pa.string()),
    pa.field("n", pa.int64()),
    pa.field("small", pa.int8()),
    pa.field("x", pa.float64()),
    pa.field("ok", pa.bool_()),
    pa.field("at", pa.timestamp("us", tz="UTC")),
    pa.field("day", pa.date32()),
    pa.field("inner", pa.struct([pa.field("a", pa.string()), pa.field("b", pa.int64())])),
    pa.field("tags", pa.list_(pa.string())),
    pa.field("rows", pa.list_(pa.struct([pa.field("q", pa.int64())]))),
])


@pytest.mark.parametrize(("word", "expected"), [
    ("array", "an array"), ("object", "an object"), ("integer", "an integer"), ("element", "an element"),
    ("unknown", "an unknown"), ("string", "a string"), ("number", "a number"), ("boolean", "a boolean"),
    ("null", "a null"),
])
def test_the_article_is_an_before_a_vowel_and_a_otherwise(word, expected):
    assert article(word) == expected


@pytest.mark.parametrize(("value", "kind"), [
    (None, "null"), (True, "boolean"), (False, "boolean"), (0, "number"), (1.5, "number"),
    ("", "string"), ([], "array"), ({}, "object"), ((1,), "tuple"), (b"x", "bytes"),
])
def test_the_json_kind_of_a_decoded_value(value, kind):
    assert json_kind(value) == kind


@pytest.mark.parametrize(("arrow_type", "expected"), [
    (pa.string(), ("string", None)),
    (pa.large_string(), ("string", None)),
    (pa.timestamp("us", tz="UTC"), ("string", None)),
    (pa.timestamp("ms"), ("string", None)),
    (pa.bool_(), ("boolean", None)),
    (pa.int64(), ("integer", "int64")),
    (pa.int8(), ("integer", "int8")),
    (pa.uint32(), ("integer", "uint32")),
    (pa.float64(), ("number", None)),
    (pa.float32(), ("number", None)),
    (pa.date32(), ("any", None)),
    (pa.binary(), ("any", None)),
    (pa.list_(pa.int64()), ("array", ("integer", "int64"))),
    (pa.large_list(pa.string()), ("array", ("string", None))),
    (pa.struct([pa.field("a", pa.string()), pa.field("b", pa.list_(pa.bool_()))]),
     ("object", (("a", ("string", None)), ("b", ("array", ("boolean", None)))))),
    (pa.struct([]), ("object", ())),
])
def test_the_rule_of_each_arrow_type(arrow_type, expected):
    assert rule(arrow_type) == expected


ROOT = rule(pa.struct(list(SCHEMA)))


@pytest.mark.parametrize(("value", "problem"), [
    ({}, None),
    ({"id": None, "n": None, "inner": None, "tags": None}, None),  # null fits every type
    ({"id": "a", "n": 1, "small": -3, "x": 2, "ok": False, "at": "2025-01-01", "day": [1, {}],
      "inner": {"a": "z", "b": 2, "undeclared": [1]}, "tags": ["t", None], "rows": [{"q": 1}, None, {}],
      "undeclared": {"n": "not checked"}}, None),
    ({"id": 1}, "field 'id' is a number where the schema expects a string"),
    ({"id": {}}, "field 'id' is an object where the schema expects a string"),
    ({"ok": 1}, "field 'ok' is a number where the schema expects a boolean"),
    ({"ok": "true"}, "field 'ok' is a string where the schema expects a boolean"),
    ({"x": "1.5"}, "field 'x' is a string where the schema expects a number"),
    ({"x": True}, "field 'x' is a boolean where the schema expects a number"),
    ({"x": [1]}, "field 'x' is an array where the schema expects a number"),
    ({"n": True}, "field 'n' is a boolean where the schema expects a number"),
    ({"n": "7"}, "field 'n' is a string where the schema expects a number"),
    ({"n": 1.0}, "value 1.0 of field 'n' is not a valid int64"),
    ({"n": 2**63}, f"value {2**63} of field 'n' is not a valid int64"),
    ({"n": -(2**63) - 1}, f"value {-(2**63) - 1} of field 'n' is not a valid int64"),
    ({"small": 0.5}, "value 0.5 of field 'small' is not a valid int8"),
    ({"at": 1700000000}, "field 'at' is a number where the schema expects a string"),
    ({"inner": "x"}, "field 'inner' is a string where the schema expects an object"),
    ({"inner": []}, "field 'inner' is an array where the schema expects an object"),
    ({"inner": {"a": 1}}, "field 'inner.a' is a number where the schema expects a string"),
    ({"inner": {"a": "ok", "b": 1.5}}, "value 1.5 of field 'inner.b' is not a valid int64"),
    ({"tags": "t"}, "field 'tags' is a string where the schema expects an array"),
    ({"tags": {}}, "field 'tags' is an object where the schema expects an array"),
    ({"tags": ["a", 2]}, "field 'tags[]' is a number where the schema expects a string"),
    ({"rows": [{"q": 1}, {"q": "2"}]}, "field 'rows[].q' is a string where the schema expects a number"),
    ({"rows": [{}, 3]}, "field 'rows[]' is a number where the schema expects an object"),
    ([], "line is a JSON array, expected an object"),
    ("s", "line is a JSON string, expected an object"),
])
def test_check_names_the_first_field_that_does_not_fit(value, problem):
    assert check(value, ROOT, "") == problem


def test_integers_at_the_edges_of_64_bits_fit():
    assert check({"n": 2**63 - 1}, ROOT, "") is None
    assert check({"n": -(2**63)}, ROOT, "") is None
    # int8 is not range-checked in Python: Arrow's reader says so (see arrow_read)
    assert check({"small": 1000}, ROOT, "") is None


def test_the_first_problem_in_schema_order_is_the_one_given():
    value = {"tags": [1], "inner": {"b": "x", "a": 2}, "id": 3}
    assert check(value, ROOT, "") == "field 'id' is a number where the schema expects a string"
    del value["id"]
    assert check(value, ROOT, "") == "field 'inner.a' is a number where the schema expects a string"
    assert check({"rows": [{"q": "a"}, {"q": "b"}], "tags": [1, "x"]}, ROOT, "") == (
        "field 'tags[]' is a number where the schema expects a string")


def test_check_below_the_root_prefixes_the_path_it_is_given():
    assert check({"a": 1}, rule(SCHEMA.field("inner").type), "outer") == (
        "field 'outer.a' is a number where the schema expects a string")
    assert check(5, ("object", ()), "p") == "field 'p' is a number where the schema expects an object"
    assert check(object(), ("any", None), "p") is None


@pytest.mark.parametrize(("path", "value", "expected", "reason"), [
    ("", [1], "object", "line is a JSON array, expected an object"),
    ("", 3, "object", "line is a JSON number, expected an object"),
    ("", None, "object", "line is a JSON null, expected an object"),
    ("a.b", "s", "number", "field 'a.b' is a string where the schema expects a number"),
    ("l[]", {}, "array", "field 'l[]' is an object where the schema expects an array"),
])
def test_mismatch_words_the_found_and_the_expected_kind(path, value, expected, reason):
    assert mismatch(path, value, expected) == reason


@pytest.fixture(scope="module")
def diagnose():
    return Diagnoser(SCHEMA)


@pytest.mark.parametrize(("line", "diagnosis"), [
    (b'{"id": "a", "n": 1}', None),
    (b"{}", None),
    (b'{"n": "1"}', Diagnosis("field 'n' is a string where the schema expects a number", False)),
    (b'{"rows": [{"q": 1.5}]}', Diagnosis("value 1.5 of field 'rows[].q' is not a valid int64", False)),
    (b"[1, 2]", Diagnosis("line is a JSON array, expected an object", False)),
    (b"null", Diagnosis("line is a JSON null, expected an object", False)),
    (b'"text"', Diagnosis("line is a JSON string, expected an object", False)),
    (b"12", Diagnosis("line is a JSON number, expected an object", False)),
    (b'{"id": "a",}', Diagnosis("malformed JSON: Expecting property name enclosed in double quotes at column 12",
                                True)),
    (b"{", Diagnosis("malformed JSON: Expecting property name enclosed in double quotes at column 2", True)),
    (b"", Diagnosis("malformed JSON: Expecting value at column 1", True)),
    (b'{"id": "\xe9"}', Diagnosis("not valid UTF-8: invalid continuation byte at byte 8", True)),
    (b'{"id": "\xff\xfe"}', Diagnosis("not valid UTF-8: invalid start byte at byte 8", True)),
])
def test_a_line_is_diagnosed_in_the_event_s_terms(diagnose, line, diagnosis):
    assert diagnose(line) == diagnosis


def test_the_diagnoser_checks_the_schema_s_top_level_fields(diagnose):
    assert diagnose.rule == ROOT
    assert Diagnoser(pa.schema([pa.field("x", pa.int32())]))(b'{"x": 1.5, "y": "z"}') == Diagnosis(
        "value 1.5 of field 'x' is not a valid int32", False)


def test_a_value_error_without_a_position_is_still_malformed_json(diagnose):
    # Python's json refuses integers of more than 4300 digits with a plain ValueError (no msg, no colno).
    if not hasattr(sys, "set_int_max_str_digits"):
        pytest.skip("no integer string limit before Python 3.11")
    line = b'{"n": ' + b"1" * 5000 + b"}"
    with pytest.raises(ValueError) as raised:
        json.loads(line)
    assert not isinstance(raised.value, json.JSONDecodeError)
    assert diagnose(line) == Diagnosis(f"malformed JSON: {raised.value}", True)  # no column to give


def test_a_line_nested_deeper_than_python_s_reader_is_not_called_a_syntax_error(diagnose):
    assert MAX_DEPTH == sys.getrecursionlimit()
    line = b'{"tags": ' + b"[" * (MAX_DEPTH + 10) + b"]" * (MAX_DEPTH + 10) + b"}"
    assert diagnose(line) == Diagnosis(
        f"nested deeper than Python's JSON reader allows (about {MAX_DEPTH} levels)", False)


def test_the_check_goes_no_deeper_than_the_schema(diagnose):
    deep = json.dumps({"day": [[[[[{"a": 1}]]]]], "inner": {"a": "x", "b": 2}}).encode()
    assert diagnose(deep) is None


@pytest.mark.parametrize(("reason", "withheld"), [
    ("value 'yesterday' of field 'at' is not a valid timestamp", "value (withheld) of field 'at' is not a valid timestamp"),
    ("value 1.5 is not a valid int64", "value (withheld) is not a valid int64"),
    ("value 'a\nb' of field 'id' is not a valid timestamp", "value (withheld) of field 'id' is not a valid timestamp"),
    ("value 1 of field 'a' is not a valid int8; value 2 of field 'b' is not a valid int8",
     "value (withheld) of field 'a' is not a valid int8; value (withheld) of field 'b' is not a valid int8"),
    ("field 'x' is a string where the schema expects a number", "field 'x' is a string where the schema expects a number"),
    ("missing required field(s) 'id'", "missing required field(s) 'id'"),
])
def test_without_values_takes_out_every_quoted_value_and_keeps_the_rest(reason, withheld):
    assert without_values(reason) == withheld
