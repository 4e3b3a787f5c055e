"""row_checks.py on Arrow tables built here: timestamps (every form Arrow's reader takes, those it
refuses, digits past microseconds truncated, floods of distinct bad values), required fields at the
top, in a struct and in a list of structs, and NaN / infinity at any depth, over chunked tables,
slices and null parents. A row's verdict is read through what the pipeline does with it: which rows
are refused, and the reason's kind and fields as the transform's logs summarise them."""

import dataclasses
import datetime as dt
import math
import re

import numpy as np
import pyarrow as pa
import pytest

from lambdas.shared.schemas import TS, EventSchema
from lambdas.transform import row_checks
from lambdas.transform.app import reject_summary
from lambdas.transform.diagnose import without_values
from lambdas.transform.row_checks import RowChecks, read_schema, to_timestamps, unconvertible

UTC = dt.UTC
NAN, INF = math.nan, math.inf
SCHEMA = EventSchema(
    name="checked",
    arrow=pa.schema([
        pa.field("id", pa.string()),
        pa.field("at", TS),
        pa.field("until", TS),  # an optional timestamp
        pa.field("n", pa.float64()),
        pa.field("count", pa.int64()),
        pa.field("meta", pa.struct([pa.field("k", pa.string()), pa.field("x", pa.float64()),
                                    pa.field("deep", pa.struct([pa.field("y", pa.float32())]))])),
        pa.field("rows", pa.list_(pa.struct([pa.field("k", pa.string()), pa.field("x", pa.float64())]))),
        pa.field("grid", pa.list_(pa.list_(pa.float64()))),
        pa.field("big", pa.large_list(pa.float32())),
    ]),
    required=("id", "at", "meta.k", "rows[].k"),
)
# The same checks with the required paths in the other order: a list path checked first must not
# stop the ones after it.
LIST_FIRST = dataclasses.replace(SCHEMA, required=SCHEMA.required[::-1])
GOOD = {"id": "a", "at": "2025-01-01T00:00:00Z", "meta": {"k": "m"}, "rows": [{"k": "r"}]}
WHEN = dt.datetime(2025, 1, 1, tzinfo=UTC)


def table_of(rows, *, schema=SCHEMA, chunks=1):
    """The rows (each a change to GOOD) as read with the read schema, in `chunks` chunks."""
    rows = [{**GOOD, **row} for row in rows]
    if chunks == 1:
        return pa.Table.from_pylist(rows, schema=read_schema(schema))
    size = -(-len(rows) // chunks)
    return pa.concat_tables([pa.Table.from_pylist(rows[i:i + size], schema=read_schema(schema))
                             for i in range(0, len(rows), size)])


def verdicts(table, schema=SCHEMA):
    """(converted table, {refused row: (problem kinds, fields named)}) as the pipeline logs them."""
    checked, problems = RowChecks(schema).check(table)
    refused = {}
    for row in problems.rows().tolist():
        reason = problems.reason(row)
        kinds = [reject_summary(part, schema)["problem"] for part in reason.split("; ")]
        refused[row] = (kinds, reject_summary(reason, schema)["fields"])
    return checked, refused


def test_the_read_schema_reads_top_level_timestamps_as_strings_and_keeps_the_rest():
    read = read_schema(SCHEMA)
    assert read.names == SCHEMA.arrow.names
    for field in SCHEMA.arrow:
        assert read.field(field.name).type == (pa.string() if field.type == TS else field.type)


# Every form Arrow's JSON reader takes, and the instant it stands for (a naive value is UTC).
ACCEPTED = [
    ("2025-01-01T00:00:00Z", WHEN),
    ("2025-01-01T01:00:00+01:00", WHEN),
    ("2024-12-31T16:00:00-0800", WHEN),
    ("2025-01-01T05:00:00+05", WHEN),
    ("2025-01-01T00Z", WHEN),
    ("2025-01-01T00:00Z", WHEN),
    ("2025-01-01T00:00:00.5Z", WHEN.replace(microsecond=500000)),
    ("2025-01-01T00:00:00.123456Z", WHEN.replace(microsecond=123456)),
    ("2025-01-01 00:00:00", WHEN),
    ("2025-01-01T00:00:00", WHEN),
    ("2025-01-01T00:00", WHEN),
    ("2025-01-01T00", WHEN),
    ("2025-01-01", WHEN),
    ("2025-01-01T00:00:00.000001", WHEN.replace(microsecond=1)),
    # digits past microseconds are truncated, never rounded
    ("2025-01-01T00:00:00.123456789Z", WHEN.replace(microsecond=123456)),
    ("2025-01-01T00:00:00.9999999Z", WHEN.replace(microsecond=999999)),
    ("2025-01-01T02:00:00.1234567+02:00", WHEN.replace(microsecond=123456)),
    ("2025-01-01T00:00:00.123456789", WHEN.replace(microsecond=123456)),
    ("2025-01-01 00:00:00.1234567", WHEN.replace(microsecond=123456)),
]
REFUSED = ["yesterday", "", "2025-13-01T00:00:00Z", "2025-01-01T24:00:00Z", "2025-01-01Z", "2025-01-01+01:00",
           "2025-01-01T00:00:00z", "2025-01-01T0000Z", "20250101T000000Z", "2025-01-01T00:00:00 Z",
           "2025-01-01T00:00:00,5Z", "2025-02-30", "2025-13-01T00:00:00.123456789Z", "x 2025-01-01T00:00:00.1234567"]


@pytest.mark.parametrize(("value", "instant"), ACCEPTED)
def test_every_form_arrow_reads_is_converted_to_its_utc_instant(value, instant):
    assert to_timestamps(pa.array([value])).to_pylist() == [instant]
    assert unconvertible(pa.array([value]))[0].tolist() == [False]


@pytest.mark.parametrize("value", REFUSED)
def test_a_value_that_is_not_a_timestamp_is_refused(value):
    with pytest.raises(pa.ArrowInvalid):
        to_timestamps(pa.array([value]))
    bad, converted = unconvertible(pa.array([value, "2025-01-01"]))
    assert bad.tolist() == [True, False]
    assert converted.to_pylist() == [None, WHEN]


@pytest.mark.parametrize("chunked", [False, True])
def test_every_accepted_form_together_converts_in_one_go(chunked):
    values = [v for v, _ in ACCEPTED] + [None]
    array = pa.chunked_array([values[:7], values[7:12], values[12:]]) if chunked else pa.array(values)
    converted = to_timestamps(array)
    assert converted.type == TS
    assert converted.to_pylist() == [i for _, i in ACCEPTED] + [None]


@pytest.mark.parametrize("values", [
    ["2025-01-01T00:00:00Z", "2025-01-01 00:00:00"],  # zoned by Z, then naive
    ["2025-01-01 00:00:00", "2025-01-01T01:00:00+01:00"],  # naive, then an offset
    ["2025-01-01 00:00:00", "2024-12-31T23:00:00-01:00"],
    ["2025-01-01T00:00:00.1234567Z", "2025-01-01 00:00:00"],  # nanoseconds named first
    ["2025-01-01 00:00:00", "2025-01-01T00:00:00.1234567Z"],
])
@pytest.mark.parametrize("sliced", [False, True])
def test_zoned_and_naive_values_side_by_side_keep_their_instants(values, sliced):
    array = pa.array(["junk", *values]).slice(1) if sliced else pa.array(values)
    assert [t.replace(microsecond=0) for t in to_timestamps(array).to_pylist()] == [WHEN, WHEN]


def test_a_bad_value_among_zoned_ones_is_refused_without_trying_them_as_naive():
    with pytest.raises(pa.ArrowInvalid, match="yesterday"):
        to_timestamps(pa.array(["2025-01-01T00:00:00Z", "yesterday", "2025-01-01T00:00:00Z"]))


@pytest.mark.parametrize("values", [
    ["2025-01-01 00:00:00", "yesterday"],
    ["yesterday", "2025-01-01 00:00:00"],
    ["2025-01-01T00:00:00.1234567Z", "2025-01-01 00:00:00", "tomorrow 2025-01-01 00:00:00"],
])
def test_a_bad_value_among_naive_ones_is_refused(values):
    with pytest.raises(pa.ArrowInvalid):
        to_timestamps(pa.array(values))


def test_a_cast_error_that_names_no_value_still_converts_or_refuses(monkeypatch):
    monkeypatch.setattr(row_checks, "CAST_RE", re.compile(r"^(?!)"))
    assert to_timestamps(pa.array(["2025-01-01T00:00:00.1234567Z", "2025-01-01"])).to_pylist() == [
        WHEN.replace(microsecond=123456), WHEN]
    with pytest.raises(pa.ArrowInvalid):
        to_timestamps(pa.array(["2025-01-01", "yesterday"]))
    bad, converted = unconvertible(pa.array(["2025-01-01", "yesterday", None, "2025-01-01T00:00:00Z"]))
    assert bad.tolist() == [False, True, False, False]
    assert converted.to_pylist() == [WHEN, None, None, WHEN]


def good_and_bad(n_bad, *, shaped=False, repeat=1):
    """Distinct bad values (ISO-shaped ones when `shaped`: they pass the shape filter), each
    `repeat` times, between good values and nulls; and which are bad."""
    bad = [f"2025-{13 + i}-01T00:00:00Z" if shaped else f"bad {i}" for i in range(n_bad)]
    values, mask = [], []
    for i, value in enumerate(bad * repeat):
        values += ["2025-01-01T00:00:00Z", value, None] if i % 2 else [value, "2025-01-01 00:00:00"]
        mask += [False, True, False] if i % 2 else [True, False]
    return values, mask


@pytest.mark.parametrize("n_bad", [0, 1, 2, 7, 8, 9, 30])
@pytest.mark.parametrize("shaped", [False, True])
@pytest.mark.parametrize("repeat", [1, 3])
def test_unconvertible_finds_every_bad_value_however_many_distinct_ones(n_bad, shaped, repeat):
    values, mask = good_and_bad(n_bad, shaped=shaped, repeat=repeat)
    bad, converted = unconvertible(pa.array(values, pa.string()))
    assert bad.tolist() == mask
    assert converted.type == TS
    assert converted.to_pylist() == [None if m or v is None else WHEN for v, m in zip(values, mask, strict=True)]


@pytest.mark.parametrize("n_bad", [1, 9])
def test_unconvertible_starts_from_the_message_of_a_cast_already_tried(n_bad):
    values, mask = good_and_bad(n_bad)
    array = pa.array(values, pa.string())
    with pytest.raises(pa.ArrowInvalid) as raised:
        to_timestamps(array)
    assert unconvertible(array, str(raised.value))[0].tolist() == mask


@pytest.mark.parametrize("named", ["something else", "2025-01-32T00:00:00Z"])  # without and with the shape
def test_a_message_naming_no_value_of_these_values_falls_back_to_bisection(named):
    array = pa.array(["2025-01-01", "yesterday", "2025-01-01T00:00:00Z", "2025-02-30"])
    message = f"Failed to parse string: '{named}' as a scalar of type timestamp[us, tz=UTC]"
    assert unconvertible(array, message)[0].tolist() == [False, True, False, True]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16])
def test_bisection_finds_bad_values_wherever_they_are(n, monkeypatch):
    monkeypatch.setattr(row_checks, "CAST_RE", re.compile(r"^(?!)"))  # no value named: bisection alone
    for bad_at in [set(), {0}, {n - 1}, set(range(0, n, 2)), set(range(n))]:
        values = ["2025-02-30" if i in bad_at else "2025-01-01" for i in range(n)]
        assert unconvertible(pa.array(values))[0].tolist() == [i in bad_at for i in range(n)]


ROW_TIMESTAMPS = [
    ({"at": "2025-01-01T00:00:00.123456789Z"}, None),
    ({"at": "yesterday"}, (["invalid-value"], ["at"])),
    ({"at": None}, (["missing-field"], ["at"])),  # required and absent: missing, not invalid
    ({"until": "soon"}, (["invalid-value"], ["until"])),
    ({"until": None}, None),  # optional
    ({"at": "yesterday", "until": "soon"}, (["invalid-value", "invalid-value"], ["at", "until"])),
    ({"at": "yesterday", "id": None}, (["invalid-value", "missing-field"], ["at", "id"])),
]


@pytest.mark.parametrize(("row", "verdict"), ROW_TIMESTAMPS)
@pytest.mark.parametrize("chunks", [1, 3])
def test_a_row_is_refused_for_a_bad_or_missing_timestamp_and_the_others_converted(row, verdict, chunks):
    rows = [{}, row, {"until": "2025-01-01 00:00:00"}, {}, row, {}]
    checked, refused = verdicts(table_of(rows, chunks=chunks))
    assert refused == ({1: verdict, 4: verdict} if verdict else {})
    assert checked.schema == SCHEMA.arrow
    assert checked.column("at").to_pylist()[0] == WHEN
    assert checked.column("until").to_pylist()[2] == WHEN


def test_the_reason_for_a_bad_timestamp_quotes_it_and_gives_an_example_that_is_accepted():
    _, problems = RowChecks(SCHEMA).check(table_of([{}, {"at": "it's late"}]))
    [reason] = [problems.reason(row) for row in problems.rows()]
    assert "\"it's late\"" in reason and "'at'" in reason
    assert "(withheld)" in without_values(reason) and "late" not in without_values(reason)
    example = re.search(r"ISO-8601, e\.g\. (\S+)\)$", reason)
    assert example and to_timestamps(pa.array([example.group(1)])).to_pylist()[0]


REQUIRED = [
    ({"id": None}, ["id"]),
    ({"meta": None}, None),  # meta.k is required only when meta is there
    ({"meta": {"x": 1.0}}, ["meta.k"]),
    ({"meta": {"k": None, "x": 1.0}}, ["meta.k"]),
    ({"rows": None}, None),
    ({"rows": []}, None),
    ({"rows": [None]}, ["rows[].k"]),  # a null element lacks its fields
    ({"rows": [{"k": "a"}, {"x": 1.0}]}, ["rows[].k"]),
    ({"rows": [{"x": 1.0}, {"x": 2.0}]}, ["rows[].k"]),
    ({"id": None, "meta": {}, "rows": [{}]}, ["id", "meta.k", "rows[].k"]),
]


@pytest.mark.parametrize(("row", "missing"), REQUIRED)
@pytest.mark.parametrize("chunks", [1, 2, 4])
@pytest.mark.parametrize("schema", [SCHEMA, LIST_FIRST], ids=["list-last", "list-first"])
def test_a_row_missing_a_required_field_is_refused_naming_every_missing_path(row, missing, chunks, schema):
    rows = [{}, row, {"rows": [{"k": "b"}, {"k": "c"}]}, {"meta": None, "rows": None}, row, {}, {}, row]
    _, refused = verdicts(table_of(rows, chunks=chunks), schema)
    assert refused == ({i: (["missing-field"], missing) for i in (1, 4, 7)} if missing else {})


@pytest.mark.parametrize(("row", "path"), [({"id": None}, "id"), ({"meta": {}}, "meta.k"), ({"rows": [{}]}, "rows[].k"),
                                           ({"rows": [None]}, "rows[].k")])
def test_a_table_of_one_row_missing_a_required_field_refuses_it(row, path):
    assert verdicts(table_of([row]))[1] == {0: (["missing-field"], [path])}


@pytest.mark.parametrize(("start", "stop"), [(0, 2), (2, 6), (3, 4), (1, 3), (4, 6), (0, 6), (5, 7), (6, 7)])
@pytest.mark.parametrize("chunks", [1, 2])
@pytest.mark.parametrize("schema", [SCHEMA, LIST_FIRST], ids=["list-last", "list-first"])
def test_a_slice_has_only_its_own_rows_problems(start, stop, chunks, schema):
    rows = [{"id": None}, {}, {"meta": {}}, {"rows": [{"k": "a"}, {}]}, {"rows": [None, {"k": "b"}]},
            {"n": NAN}, {"rows": [], "id": None}]
    kinds = {0: ["missing-field"], 2: ["missing-field"], 3: ["missing-field"], 4: ["missing-field"], 5: ["other"],
             6: ["missing-field"]}
    table = table_of(rows, chunks=chunks).slice(start, stop - start)
    _, refused = verdicts(table, schema)
    assert {row: kind for row, (kind, _) in refused.items()} == {
        row - start: kind for row, kind in kinds.items() if start <= row < stop}


def hidden_under_null_parents(meta_child, rows_child):
    """A table of three rows whose second row's meta is null but holds `meta_child` underneath, and
    whose rows are lists of structs, the second row's only element a null struct holding `rows_child`."""
    meta_type = SCHEMA.arrow.field("meta").type
    meta = pa.StructArray.from_arrays(
        [pa.array(["a", meta_child["k"], "c"]), pa.array([1.0, meta_child["x"], 2.0]),
         pa.array([None, None, None], meta_type.field("deep").type)],
        fields=list(meta_type), mask=pa.array([False, True, False]))
    element_type = SCHEMA.arrow.field("rows").type.value_type
    elements = pa.StructArray.from_arrays(
        [pa.array(["a", rows_child["k"], "c"]), pa.array([1.0, rows_child["x"], 2.0])],
        fields=list(element_type), mask=pa.array([False, True, False]))
    rows = pa.ListArray.from_arrays(pa.array([0, 1, 1, 3], pa.int32()), elements)  # [a], [], [null, c]
    base = table_of([{}, {}, {}])
    return base.set_column(base.schema.get_field_index("meta"), "meta", meta).set_column(
        base.schema.get_field_index("rows"), "rows", rows)


def test_values_under_a_null_parent_are_not_checked():
    table = hidden_under_null_parents({"k": None, "x": NAN}, {"k": None, "x": INF})
    _, refused = verdicts(table)
    assert refused == {2: (["missing-field"], ["rows[].k"])}  # row 2's null element, nothing else


def test_values_under_a_null_list_are_not_checked_and_the_rows_after_it_keep_their_own():
    # A null list may still hold values in the array beneath it (Arrow keeps them; a slice or an
    # array built by hand has them): they belong to no row, and the rows after it keep their own.
    element_type = SCHEMA.arrow.field("rows").type.value_type
    elements = pa.StructArray.from_arrays(
        [pa.array(["a", None, None, "d", None]), pa.array([1.0, INF, NAN, NAN, 3.0])], fields=list(element_type))
    rows = pa.ListArray.from_arrays(pa.array([0, 1, 3, 4, 5], pa.int32()), elements,
                                    mask=pa.array([False, True, False, False]))  # row 1: null over 2 values
    big = pa.LargeListArray.from_arrays(pa.array([0, 0, 2, 3, 3], pa.int64()), pa.array([INF, INF, NAN], pa.float32()),
                                        mask=pa.array([False, True, False, False]))
    base = table_of([{}, {}, {}, {}])
    table = base.set_column(base.schema.get_field_index("rows"), "rows", rows).set_column(
        base.schema.get_field_index("big"), "big", big)
    expected = {2: (["other", "other"], ["big[]", "rows[].x"]), 3: (["missing-field"], ["rows[].k"])}
    for schema in (SCHEMA, LIST_FIRST):
        assert verdicts(table, schema)[1] == expected
    assert verdicts(table.slice(1))[1] == {row - 1: verdict for row, verdict in expected.items()}
    two_chunks = pa.concat_tables([table.slice(0, 2), table.slice(2)])
    assert verdicts(two_chunks)[1] == expected


NONFINITE = [
    ({"n": NAN}, ["n"]),
    ({"n": INF}, ["n"]),
    ({"n": -INF}, ["n"]),
    ({"meta": {"k": "m", "x": NAN}}, ["meta.x"]),
    ({"meta": {"k": "m", "deep": {"y": INF}}}, ["meta.deep.y"]),
    ({"rows": [{"k": "a", "x": 1.0}, {"k": "b", "x": -INF}]}, ["rows[].x"]),
    ({"grid": [[1.0], [2.0, NAN]]}, ["grid[][]"]),
    ({"big": [1.0, INF]}, ["big[]"]),
    ({"n": NAN, "meta": {"k": "m", "x": INF}, "big": [NAN]}, ["big[]", "meta.x", "n"]),
]


@pytest.mark.parametrize(("row", "fields"), NONFINITE)
@pytest.mark.parametrize("chunks", [1, 3])
def test_a_row_with_a_nan_or_infinity_at_any_depth_is_refused_naming_the_field(row, fields, chunks):
    rows = [{"grid": [[1.0], [], None, [None]], "big": [None, 2.0]}, row, {}, {"rows": [], "grid": [[3.0]]},
            {"n": 1e308, "meta": {"k": "m", "x": 1.5}}, row, {}, {}, row]
    _, refused = verdicts(table_of(rows, chunks=chunks))
    assert set(refused) == {1, 5, 8}
    for kinds, named in refused.values():
        assert named == fields and set(kinds) == {"other"}


def test_the_reason_for_a_nonfinite_value_names_the_field_and_the_rule():
    _, problems = RowChecks(SCHEMA).check(table_of([{"rows": [{"k": "a", "x": NAN}]}]))
    reason = problems.reason(0)
    assert reject_summary(reason, SCHEMA)["fields"] == ["rows[].x"]
    assert all(word in reason for word in ("NaN", "Infinity", "double", "RFC 8259"))


@pytest.mark.parametrize("chunks", [1, 2])
def test_finite_values_whose_sum_overflows_are_not_refused(chunks):
    rows = [{"n": 1.7e308, "meta": {"k": "m", "x": -1.7e308}, "rows": [{"k": "a", "x": 1.7e308}] * 2,
             "grid": [[1.7e308, 1.7e308]], "big": [3e38, 3e38]}] * 4
    table = table_of(rows, chunks=chunks)
    _, refused = verdicts(table)
    assert refused == {}
    _, refused = verdicts(table_of(rows + [{"grid": [[NAN]]}], chunks=chunks))
    assert refused == {4: (["other"], ["grid[][]"])}


def test_a_chunk_of_nulls_is_finite():
    table = pa.concat_tables([table_of([{}, {}]), table_of([{"n": NAN, "meta": None, "rows": None}])])
    assert verdicts(table)[1] == {2: (["other"], ["n"])}


@pytest.mark.parametrize("chunks", [1, 3])
def test_a_clean_table_costs_no_check_per_value(chunks, monkeypatch):
    # The usual case: one sum per float type over every float leaf, no kernel per leaf and row.
    rows = [{"n": 1.0, "meta": {"k": "m", "x": 2.0, "deep": {"y": 3.0}}, "rows": [{"k": "a", "x": 4.0}],
             "grid": [[5.0]], "big": [6.0]}, {"n": None}] * 3

    def no(*args, **kwargs):
        raise AssertionError("a per-value check ran on a clean table")

    table = table_of(rows, chunks=chunks)
    for kernel in ("is_finite", "list_parent_indices", "list_flatten", "struct_field", "is_null"):
        monkeypatch.setattr(row_checks.pc, kernel, no)
    checked, problems = RowChecks(SCHEMA).check(table)
    assert problems.rows().tolist() == [] and checked.num_rows == 6


def test_a_table_with_a_nonfinite_value_checks_only_the_chunks_whose_sum_is_not_finite(monkeypatch):
    calls = []
    is_finite = row_checks.pc.is_finite
    monkeypatch.setattr(row_checks.pc, "is_finite", lambda values: calls.append(len(values)) or is_finite(values))
    table = pa.concat_tables([table_of([{"n": 1.0}] * 5), table_of([{"n": NAN}, {}]), table_of([{"n": 2.0}] * 3)])
    assert verdicts(table)[1] == {5: (["other"], ["n"])}
    assert calls == [2]


def test_a_nonfinite_value_after_several_clean_chunks_is_found_in_its_own_row():
    table = pa.concat_tables([table_of([{"n": 1.0}] * 2), table_of([{"n": 2.0}] * 3), table_of([{}, {"n": NAN}])])
    assert verdicts(table)[1] == {6: (["other"], ["n"])}


def test_rows_of_problems_are_ascending_indexes_of_any_problem():
    rows = [{}, {"n": NAN}, {}, {"at": "x"}, {"id": None}, {}, {"meta": {}, "n": INF}]
    _, problems = RowChecks(SCHEMA).check(table_of(rows))
    assert problems.rows().tolist() == [1, 3, 4, 6]
    assert problems.reason(0) == "" and problems.reason(6).count("; ") == 1


def test_the_reason_of_a_row_with_several_problems_is_theirs_joined_by_semicolons():
    alone = [{"at": "soon"}, {"n": NAN}, {"id": None}]
    _, problems = RowChecks(SCHEMA).check(table_of([*alone, {"at": "soon", "n": NAN, "id": None}]))
    assert problems.reason(3) == "; ".join(problems.reason(row) for row in range(3))


def test_rows_of_a_clean_table_index_nothing():
    _, problems = RowChecks(SCHEMA).check(table_of([{}, {}]))
    rows = problems.rows()
    assert len(rows) == 0 and np.arange(2)[rows].tolist() == []
    _, problems = RowChecks(SCHEMA).check(table_of([]))
    assert problems.rows().tolist() == [] and problems.n == 0


def test_a_missing_list_of_required_paths_names_them_all_in_one_problem():
    _, problems = RowChecks(SCHEMA).check(table_of([{"id": None, "meta": {}}]))
    reason = problems.reason(0)
    assert reason.count("; ") == 0 and reject_summary(reason, SCHEMA) == {"problem": "missing-field",
                                                                          "fields": ["id", "meta.k"]}


def test_a_type_with_no_timestamps_floats_or_required_fields_passes_every_row():
    plain = EventSchema(name="plain", arrow=pa.schema([pa.field("id", pa.string())]), required=())
    table = pa.table({"id": ["a", None]})
    checked, problems = RowChecks(plain).check(table)
    assert checked.equals(table) and problems.rows().tolist() == []


@pytest.fixture
def casts(monkeypatch):
    """The length of each array cast with more than one value, in order."""
    lengths = []
    cast = row_checks.pc.cast

    def counting(values, *args, **kwargs):
        if values is not None and len(values) > 1:
            lengths.append(len(values))
        return cast(values, *args, **kwargs)

    monkeypatch.setattr(row_checks.pc, "cast", counting)
    return lengths


ZONED = "2025-01-01T00:00:00Z"


@pytest.mark.parametrize(("at", "cost"), [
    # the failed cast and the one without the bad value
    ([ZONED] * 7 + ["yesterday"] + [ZONED] * 8, 2),
    # a named nanosecond value: its column cut and cast again, then the bad value's own failure
    (["yesterday"] + [ZONED] * 14 + ["2025-01-01T00:00:00.1234567Z"], 4),
])
def test_a_bad_timestamp_costs_a_failed_cast_or_two_never_a_search_value_by_value(at, cost, casts):
    # A value that is not a timestamp is refused without casting the rest as naive values, and the
    # cast's own error, which names it, is not thrown away (bisection would cast every half).
    _, refused = verdicts(table_of([{"at": value} for value in at]))
    assert list(refused) == [at.index(next(v for v in at if "yesterday" in v))]
    assert len(casts) == 1 + cost  # and one of `until`, all null


@pytest.mark.parametrize("k", [1, 2, 5, 7])  # fewer than NAMED_ROUNDS
def test_each_distinct_bad_value_of_iso_shape_costs_one_failed_cast(k, casts):
    values = [f"2025-01-{32 + i % k}T00:00:00Z" if i % 3 == 0 else ZONED for i in range(6 * k)]
    assert unconvertible(pa.array(values))[0].tolist() == [v != ZONED for v in values]
    assert len(casts) == k + 1  # one failed cast a distinct value, then one cast of the others


def test_values_without_the_shape_of_a_timestamp_are_refused_together_whatever_their_number(casts):
    # A failed cast costs Arrow a parse of every bad value left, so a flood of distinct garbage is
    # refused by one regex pass as soon as a value without the shape is named: as many casts for
    # 50 distinct ones as for one. Every form the cast accepts keeps its shape (converted, not refused).
    forms = [value for value, _ in ACCEPTED]
    cost = {}
    for k in (1, 5, 50):
        values = [f"bad {i}" if i % 2 == 0 else forms[i % len(forms)] for i in range(2 * k)] + forms
        casts.clear()
        refused, converted = unconvertible(pa.array(values))
        assert refused.tolist() == [v.startswith("bad") for v in values]
        assert converted.to_pylist()[-len(forms):] == [when for _, when in ACCEPTED]
        cost[k] = len(casts)
    assert cost[50] == cost[5] == cost[1]


@pytest.fixture
def regex_passes(monkeypatch):
    """The pattern of each regex pass over values, in order."""
    patterns = []
    match = row_checks.pc.match_substring_regex

    def counting(values, pattern, *args, **kwargs):
        patterns.append(pattern)
        return match(values, pattern, *args, **kwargs)

    monkeypatch.setattr(row_checks.pc, "match_substring_regex", counting)
    return patterns


def test_digits_past_microseconds_are_searched_for_once(regex_passes):
    converted = to_timestamps(pa.array(["2025-01-01 00:00:00", "2025-01-01T00:00:00.1234567Z"]))
    assert converted.to_pylist() == [WHEN, WHEN.replace(microsecond=123456)]
    assert regex_passes.count(row_checks._SUB_MICROSECONDS.pattern) == 1


def shaped_bad(k):
    return [f"2025-01-{32 + i}T00:00:00Z" for i in range(k)]  # the shape of a timestamp, not one


def test_values_found_by_name_stay_refused_when_the_unshaped_ones_are_refused(casts):
    # The cast names the last bad value: the shaped one first, then an unshaped one, which refuses
    # every unshaped value without forgetting the shaped one.
    values = ["bad 1", ZONED, "bad 2", ZONED, *shaped_bad(1)]
    assert unconvertible(pa.array(values))[0].tolist() == [v != ZONED for v in values]
    assert len(casts) == 3  # named, named, the rest converted


def test_past_the_named_rounds_the_unshaped_values_are_refused_by_their_shape_not_bisected(casts, regex_passes):
    # Named last first: the shaped bad values at the end use up the named rounds; the unshaped ones
    # before them are then refused by one shape pass, and nothing is left to bisect.
    values = [f"bad {i}" for i in range(10)] + [ZONED] * 20 + shaped_bad(row_checks.NAMED_ROUNDS)
    assert unconvertible(pa.array(values))[0].tolist() == [v != ZONED for v in values]
    assert len(casts) == row_checks.NAMED_ROUNDS + 2  # the named rounds, the clean rest, the result
    assert regex_passes.count(row_checks._ISO_SHAPE) == 1


def test_the_shape_pass_runs_once_when_an_unshaped_value_came_first(regex_passes):
    values = shaped_bad(row_checks.NAMED_ROUNDS + 2) + [ZONED] * 5 + ["bad"]
    assert unconvertible(pa.array(values))[0].tolist() == [v != ZONED for v in values]
    assert regex_passes.count(row_checks._ISO_SHAPE) == 1
