"""locate.py on small blocks: which lines a Locator rejects and which rows it accepts, checked against
a plain line-by-line json.loads reference, whichever path finds them (the screen, the probe, the
leftovers' bisection, Python when bad lines are dense), and what it costs (probes, diagnoses).
Blocks are a few hundred lines of a small schema; milliseconds each."""

import io
import json
import types

import pyarrow as pa
import pyarrow.json as pj
import pytest

from lambdas.transform import arrow_read, locate
from lambdas.transform.diagnose import Diagnoser
from lambdas.transform.line_index import Lines, is_utf8, scan_block
from lambdas.transform.locate import FLOOD_MIN_LINES, UNWORDED_MISSING, YOUNG_BLOCKS, Locator, Suspects, dense
from lambdas.transform.sinks import Quarantine

SCHEMA = pa.schema([
    pa.field("id", pa.int64()),
    pa.field("name", pa.string()),
    pa.field("w", pa.float64()),
    pa.field("tags", pa.list_(pa.string())),
    pa.field("loc", pa.struct([pa.field("city", pa.string())])),
    pa.field("ok", pa.bool_()),
])
OPTIONS = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")

# Bad lines of every kind, each with the start of its reason and whether it is a syntax reject.
MALFORMED = b'{"id": 1, "name": '  # Arrow reads on into the next line: its error may be a type error there
MISSING_COMMA = b'{"id": 1 "name": "x"}'
NAME_NUMBER = b'{"id": 2, "name": 5, "w": 1.0}'
NESTED_NUMBER = b'{"id": 3, "loc": {"city": 7}}'
TAG_NUMBER = b'{"id": 4, "tags": ["a", 2]}'
ID_FRACTION = b'{"id": 4.3, "name": "fraction"}'  # a conversion error: Arrow names the value, not the row
ID_HUGE = b'{"id": 99999999999999999999, "name": "huge"}'  # also a conversion error
ARRAY = b'[1, 2, 3, 4, 5, 6, 7, 8, 9]'
NUMBER = b'12345678901234567'
NULL = b'null'
DUPLICATE = b'{"id": 5, "id": 6, "name": "dup"}'  # json.loads takes it; Arrow alone refuses it
TWO_VALUES = b'{"id": 7, "name": "a"}{"id": 8}'
INVALID_UTF8 = b'{"id": 9, "name": "\xff\xfe"}'
BAD = {
    "malformed": (MALFORMED, "malformed JSON", True),
    "missing_comma": (MISSING_COMMA, "malformed JSON: Expecting ',' delimiter", True),
    "name_number": (NAME_NUMBER, "field 'name' is a number where the schema expects a string", False),
    "nested_number": (NESTED_NUMBER, "field 'loc.city' is a number where the schema expects a string", False),
    "tag_number": (TAG_NUMBER, "field 'tags[]' is a number where the schema expects a string", False),
    "id_fraction": (ID_FRACTION, "value 4.3 of field 'id' is not a valid int64", False),
    "id_huge": (ID_HUGE, "value 99999999999999999999 of field 'id' is not a valid int64", False),
    "array": (ARRAY, "line is a JSON array, expected an object", False),
    "number": (NUMBER, "line is a JSON number, expected an object", False),
    "null": (NULL, "line is a JSON null, expected an object", False),
    "duplicate": (DUPLICATE, "duplicate field: Column(/id) was specified twice", False),
    "two_values": (TWO_VALUES, "malformed JSON: Extra data", True),
    "invalid_utf8": (INVALID_UTF8, "not valid UTF-8: invalid start byte at byte 19", True),
}


def good(n: int) -> bytes:
    return json.dumps({"id": n, "name": f"name {n}", "w": n / 4, "tags": ["t", str(n)], "loc": {"city": f"c{n}"},
                       "ok": n % 2 == 0}).encode()


# ---- the reference: a plain line-by-line json.loads ------------------------------------------------
def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


def _fits(value, type_: pa.DataType) -> bool:
    if value is None:
        return True
    if pa.types.is_struct(type_):
        return isinstance(value, dict) and all(_fits(value.get(f.name), f.type) for f in type_)
    if pa.types.is_list(type_):
        return isinstance(value, list) and all(_fits(v, type_.value_type) for v in value)
    if pa.types.is_string(type_):
        return isinstance(value, str)
    if pa.types.is_boolean(type_):
        return isinstance(value, bool)
    if pa.types.is_integer(type_):
        return type(value) is int and -(2**63) <= value < 2**63
    return type(value) in (int, float)


def reference(raw: bytes):
    """The row a line should give ({} fields filled as the schema has them), or None when it is bad."""
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except ValueError:  # UnicodeDecodeError is one
        return None
    if not isinstance(value, dict) or not _fits(value, pa.struct(list(SCHEMA))):
        return None
    row = {f.name: value.get(f.name) for f in SCHEMA}
    if row["loc"] is not None:
        row["loc"] = {"city": row["loc"].get("city")}
    return row


# ---- a Locator with its sinks ----------------------------------------------------------------------
class Run:
    """One object's Locator, what it accepted (line -> (row, raw)) and how often it diagnosed a line."""

    def __init__(self, *, required=(), max_records=10_000, young=YOUNG_BLOCKS, diagnose=None):
        self.out = io.BytesIO()
        self.quarantine = Quarantine(self.out, max_records=max_records)
        self.suspects = Suspects(SCHEMA, young_blocks=young)
        self.accepted: dict[int, tuple[dict, bytes]] = {}
        self.diagnosed: list[bytes] = []
        diagnoser = diagnose or Diagnoser(SCHEMA)

        def counted(line: bytes):
            self.diagnosed.append(bytes(line))
            return diagnoser(line)

        self.locator = Locator(parse_options=OPTIONS, suspects=self.suspects, diagnose=counted,
                               quarantine=self.quarantine, accept=self._accept, required=required)

    def _accept(self, table, numbers, raw) -> None:
        assert table.num_rows == len(numbers)
        try:
            rows = table.to_pylist()
        except UnicodeDecodeError:  # invalid UTF-8 a caller vouched for (see the test of `utf8=True`)
            rows = [None] * table.num_rows
        for i, row in enumerate(rows):
            number = int(numbers[i])
            assert number not in self.accepted, f"line {number} accepted twice"
            self.accepted[number] = (row, bytes(raw(i)))

    def block(self, lines: list[bytes], first_line: int = 1, *, failed_read: bool = True, **kwargs) -> None:
        """Hand the block to the locator as the pipeline does (`failed_read`): a careful block, or one
        with invalid UTF-8, unread; else with the error of its failed read, or told of its two-value
        lines; one that reads clean, as a dirty one. Otherwise unread, with `kwargs` as given."""
        data = b"\n".join(lines) + b"\n"
        newlines, careful = scan_block(data)
        if not failed_read or careful:
            self.locator.block(data, first_line, newlines, None, **kwargs)
            return
        if not is_utf8(data):
            self.locator.block(data, first_line, newlines, None, utf8=False, **kwargs)
            return
        try:
            table = arrow_read.read_one_block(data, OPTIONS)
        except pa.ArrowInvalid as exc:
            self.locator.block(data, first_line, newlines, exc, utf8=True, **kwargs)
            return
        if table.num_rows == len(lines):  # read clean (a `null` line is a row of nulls): as a dirty block
            self.locator.block(data, first_line, newlines, None, utf8=True, dirty=True, **kwargs)
            return
        self.locator.block(data, first_line, newlines, None, utf8=True, two_values=True, **kwargs)

    def rejects(self) -> list[dict]:
        self.quarantine.write()
        return [json.loads(line) for line in self.out.getvalue().splitlines()]

    def rejected_lines(self) -> list[int]:
        return sorted(r["line"] for r in self.rejects())


@pytest.fixture
def arrow_calls(monkeypatch) -> list[str]:
    """The Arrow calls the locator makes, in order: "read" (lines read and kept, one line or many),
    "screen" (a screen read: nothing kept), "pieces" (the probe's streamed read from a line on)."""
    calls: list[str] = []

    def counted(kind, function):
        def call(*args, **kwargs):
            calls.append(kind)
            return function(*args, **kwargs)
        return call

    # Replaced in locate.py's view of the module only: arrow_read's functions calling one another
    # (on a pyarrow without the streaming reader) are not counted twice.
    spy = types.SimpleNamespace(**vars(arrow_read))
    spy.read_one_block = counted("read", arrow_read.read_one_block)
    spy.parses = counted("screen", arrow_read.parses)
    spy.pieces = counted("pieces", arrow_read.pieces)
    monkeypatch.setattr(locate, "arrow_read", spy)
    return calls


def check(lines: list[bytes], first_line: int = 1, run: Run | None = None, **kwargs) -> Run:
    """Locate the bad lines of a block; they and the accepted rows must be those of the reference."""
    run = run or Run()
    rejected, syntax = run.quarantine.rejected, run.quarantine.syntax_rejects
    run.block(lines, first_line, **kwargs)
    here = range(first_line, first_line + len(lines))
    expected = {first_line + i: reference(line) for i, line in enumerate(lines) if line.strip()}
    bad = sorted(n for n, row in expected.items() if row is None)
    assert [n for n in run.rejected_lines() if n in here] == bad
    accepted = {n: row for n, (row, _) in run.accepted.items() if n in here}
    assert accepted == {n: row for n, row in expected.items() if row}
    assert all(raw == lines[n - first_line] for n, (_, raw) in run.accepted.items() if n in here)
    assert run.quarantine.rejected - rejected == len(bad)
    assert run.quarantine.syntax_rejects - syntax == sum(1 for n in bad if not_json(lines[n - first_line]))
    return run


def not_json(raw: bytes) -> bool:
    try:
        json.loads(raw.decode("utf-8"))
    except ValueError:
        return True
    return False


def with_bad(n: int, bad: dict[int, bytes], start: int = 0) -> list[bytes]:
    lines = [good(start + i) for i in range(n)]
    for index, line in bad.items():
        lines[index] = line
    return lines


# ---- dense --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("bad", "seen", "expected"), [
    (8, 8, True), (8, 159, True), (8, 160, False), (7, 7, False), (7, 100, False), (9, 179, True),
    (9, 180, False), (100, 1999, True), (100, 2000, False)])
def test_dense_is_over_5_percent_of_the_lines_seen_and_at_least_8(bad, seen, expected):
    assert dense(bad, seen) is expected


# ---- Suspects -----------------------------------------------------------------------------------------
def test_a_young_screen_reads_every_field_as_its_kind():
    suspects = Suspects(SCHEMA)
    assert suspects.young == YOUNG_BLOCKS
    assert suspects.screened_fields == SCHEMA.names
    schema = suspects.screen_options.explicit_schema
    assert schema.field("loc").type == pa.struct([]) and schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("id").type == pa.int64()


def test_the_screen_ignores_fields_outside_the_schema():
    arrow_read.parses(b'{"id": 1, "extra": [1, {"x": 2}]}\n{"extra": "s"}', Suspects(SCHEMA).screen_options)
    arrow_read.parses(b'{"id": 1, "extra": 1}', Suspects(SCHEMA, young_blocks=0).screen_options)


def test_past_the_young_blocks_the_screen_reads_only_the_suspects():
    suspects = Suspects(SCHEMA, young_blocks=2)
    suspects.learn("JSON parse error: Column(/name) changed from string to number in row 3")
    suspects.block_done()
    assert suspects.young == 1 and suspects.screened_fields == SCHEMA.names
    suspects.block_done()
    assert suspects.young == 0 and suspects.screened_fields == ["name"]
    suspects.block_done()  # stays old
    assert suspects.young == 0 and suspects.screened_fields == ["name"]
    suspects.learn("JSON parse error: Column(/w) changed from number to string in row 0")
    assert suspects.screened_fields == ["name", "w"]


def test_an_old_object_with_no_suspects_screens_syntax_only():
    suspects = Suspects(SCHEMA, young_blocks=0)
    assert suspects.screened_fields == []
    arrow_read.parses(NAME_NUMBER, suspects.screen_options)
    with pytest.raises(pa.ArrowInvalid):
        arrow_read.parses(MALFORMED, suspects.screen_options)


@pytest.mark.parametrize(("message", "learned"), [
    ("JSON parse error: Column(/loc) changed from object to string in row 3", {"loc": pa.struct([])}),
    ("JSON parse error: Column(/loc/city) changed from string to number in row 3",
     {"loc": pa.struct([pa.field("city", pa.string())])}),
    ("JSON parse error: Column(/tags/[]) changed from string to number in row 0", {"tags": pa.list_(pa.string())}),
    ("JSON parse error: Column(/w) changed from number to string in row 1", {"w": pa.float64()}),
    ("JSON parse error: Column(/id) changed from number to string in row 2", {"id": pa.int64()}),  # field 0
    ("JSON parse error: Column(/unknown) changed from number to string in row 1", {}),
    ("JSON parse error: Column() changed from object to array in row 0", {}),
    ("JSON parse error: Invalid value. in row 0", {}),
    ("Failed to convert JSON to int64, couldn't parse:4.25", {}),
])
def test_learn_makes_the_field_of_a_type_error_a_suspect(message, learned):
    suspects = Suspects(SCHEMA, young_blocks=0)
    suspects.learn(message)
    assert suspects.fields == learned
    assert suspects.screened_fields == list(learned)


ITEMS = pa.schema([pa.field("id", pa.int64()), pa.field("items", pa.list_(pa.struct([pa.field("sku", pa.string())])))])


@pytest.mark.parametrize(("path", "learned"), [
    ("/items", pa.list_(pa.struct([]))),
    ("/items/[]", pa.list_(pa.struct([]))),  # an element is not an object: its kind is enough
    ("/items/[]/sku", ITEMS.field("items").type),  # inside an element: read in full
])
def test_learn_reads_a_list_of_structs_as_its_kind_unless_the_error_is_inside_an_element(path, learned):
    suspects = Suspects(ITEMS, young_blocks=0)
    suspects.learn(f"JSON parse error: Column({path}) changed from object to number in row 0")
    assert suspects.fields == {"items": learned}


def test_a_suspect_read_in_full_is_never_narrowed_back_to_its_kind():
    suspects = Suspects(SCHEMA, young_blocks=0)
    suspects.learn("JSON parse error: Column(/loc) changed from object to string in row 3")
    assert suspects.fields == {"loc": pa.struct([])}
    suspects.learn("JSON parse error: Column(/loc/city) changed from string to number in row 9")
    suspects.learn("JSON parse error: Column(/loc) changed from object to number in row 3")
    assert suspects.fields == {"loc": SCHEMA.field("loc").type}
    assert suspects.screen_options.explicit_schema.field("loc").type == SCHEMA.field("loc").type


def test_a_young_screen_reads_a_suspect_in_full():
    suspects = Suspects(SCHEMA, young_blocks=1)
    suspects.learn("JSON parse error: Column(/loc/city) changed from string to number in row 3")
    assert suspects.screen_options.explicit_schema.field("loc").type == SCHEMA.field("loc").type
    assert suspects.screen_options.explicit_schema.field("tags").type == pa.list_(pa.string())
    with pytest.raises(pa.ArrowInvalid):
        arrow_read.parses(NESTED_NUMBER, suspects.screen_options)


# ---- the located lines against the reference ------------------------------------------------------------
POSITIONS = {
    "first": [0], "last": [39], "middle": [17], "first_and_last": [0, 39], "adjacent": [10, 11, 12],
    "second_and_second_last": [1, 38], "scattered": [3, 9, 22, 30],
}


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("where", sorted(POSITIONS))
def test_bad_lines_of_every_kind_anywhere_in_a_block_are_rejected_and_the_rest_accepted(kind, where):
    line, reason, _ = BAD[kind]
    run = check(with_bad(40, {i: line for i in POSITIONS[where]}), first_line=101)
    assert {r["reason"][:len(reason)] for r in run.rejects()} == {reason}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_block_of_one_bad_line_is_rejected(kind):
    run = check([BAD[kind][0]], first_line=7)
    assert run.accepted == {}


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("n", [2, 3, 12])
def test_a_block_of_only_bad_lines_is_all_rejected(kind, n):
    run = check([BAD[kind][0]] * n, first_line=3)
    assert run.accepted == {}


def test_a_block_of_every_kind_of_bad_line_in_turn():
    lines = [line for line, _, _ in BAD.values()] * 3
    check(lines)
    check(lines[::-1])


@pytest.mark.parametrize("n", [1, 2, 40])
def test_a_dirty_block_with_no_bad_line_is_accepted_in_one_read(n):
    run = check([good(i) for i in range(n)], failed_read=False, dirty=True)
    assert run.diagnosed == [] and run.locator.probes == 0


def test_a_clean_block_not_known_to_have_failed_is_read_once(arrow_calls):
    run = check([good(i) for i in range(20)], failed_read=False)
    assert arrow_calls == ["read"]
    assert run.diagnosed == [] and run.locator.probes == 0
    assert run.quarantine.rejected == 0 and len(run.accepted) == 20


@pytest.mark.parametrize("interleave", [1, 2, 5])
def test_bad_lines_between_good_ones_of_mixed_kinds(interleave):
    kinds = sorted(BAD)
    lines = []
    for i, kind in enumerate(kinds * 2):
        lines += [good(i * 10 + j) for j in range(interleave)] + [BAD[kind][0]]
    check(lines)


# ---- blank lines, nulls, invalid UTF-8, two-value lines: taken out before any read ------------------------
def test_blank_lines_are_counted_not_rejected_nor_accepted():
    lines = [b"", good(1), b"   ", good(2), b"\t", b"", good(3)]
    run = check(lines, failed_read=False)
    assert run.locator.blank_lines == 4 and run.quarantine.rejected == 0
    assert sorted(run.accepted) == [2, 4, 7]


def test_blank_lines_are_counted_over_the_objects_blocks():
    run = check([good(1), b"", good(2)], failed_read=False)
    check([b"  ", good(3), b"", b"\t"], first_line=4, run=run, failed_read=False)
    assert run.locator.blank_lines == 4


def test_blank_lines_and_a_bad_line_in_one_block():
    run = check([b"", good(1), MALFORMED, b"  ", good(2), NAME_NUMBER, good(3)])
    assert run.locator.blank_lines == 2


def test_a_null_line_is_rejected_before_any_read():
    run = check([NULL, good(1), good(2)], failed_read=False)
    assert run.rejects()[0]["reason"] == "line is a JSON null, expected an object"


NULL_LED = [b"null" + b" " * 20, b"nullx", b"null,", b"  null}", b"null 1" + b" " * 16]


@pytest.mark.parametrize("at", [0, 1, 3])
@pytest.mark.parametrize("line", NULL_LED)
def test_a_line_that_starts_with_null_is_rejected_before_any_read(line, at):
    # Arrow crashes the process on a read whose first line starts with `null`: such a line is
    # diagnosed in Python and taken out first, wherever it is.
    lines = [good(1), good(2), good(3)]
    lines.insert(at, line)
    run = check(lines)
    [record] = [r for r in run.rejects() if r["line"] == at + 1]
    assert record == {"line": at + 1, "reason": Diagnoser(SCHEMA)(line).reason, "raw": line.decode()}


def test_lines_that_start_with_null_past_the_cap_are_counted_at_once_and_the_rest_still_read():
    run = Run(max_records=2)
    lines = [good(1)] + [b"nullx"] * 5 + [good(2)]
    run.block(lines, first_line=10)
    assert (run.quarantine.rejected, run.quarantine.dropped) == (5, 3)
    assert (run.quarantine.first_dropped, run.quarantine.last_dropped) == (13, 15)
    assert run.quarantine.first_rejects[2] == (13, "malformed JSON or a JSON null, expected an object")
    assert sorted(run.accepted) == [10, 16]
    assert run.diagnosed.count(b"nullx") == 2  # not past the cap


def test_invalid_utf8_is_found_unless_the_block_is_known_to_be_valid():
    lines = [good(1), INVALID_UTF8, good(2)]
    check(lines, failed_read=False)
    check(lines, failed_read=False, utf8=False)
    trusted = Run()  # the caller vouched for the block (its is_utf8 said so): no line is checked again
    trusted.block(lines, failed_read=False, utf8=True)
    assert trusted.quarantine.rejected == 0 and sorted(trusted.accepted) == [1, 2, 3]


def test_a_valid_block_said_to_be_invalid_has_no_line_rejected():
    check([good(1), good(2), good(3)], failed_read=False, utf8=False)


def test_invalid_utf8_after_a_null_or_blank_line_is_still_found():
    check([NULL, good(1), INVALID_UTF8, good(2), b"", INVALID_UTF8])


def test_a_two_value_line_with_invalid_utf8_is_rejected_once():
    line = b'{"id": 1, "name": "\xff"}{"id": 2}'
    run = check([good(1), line, good(2)], failed_read=False, two_values=True)
    assert run.rejects()[0]["reason"].startswith("not valid UTF-8")


@pytest.mark.parametrize("positions", [[0], [5], [9], [2, 3], [0, 9]])
def test_two_value_lines_known_to_be_there_are_taken_out_first(positions):
    run = check(with_bad(10, {i: TWO_VALUES for i in positions}), failed_read=False, two_values=True)
    assert run.locator.probes == 0


def test_two_value_lines_with_other_bad_lines():
    lines = with_bad(30, {2: TWO_VALUES, 5: NAME_NUMBER, 6: TWO_VALUES, 20: ID_FRACTION, 28: b'{"id": 1}null'})
    check(lines, failed_read=False, two_values=True)
    check(lines, failed_read=False, two_values=True, dirty=True)
    check(lines)


def test_a_two_value_line_that_is_also_a_null_line_is_rejected_once():
    check([good(1), NULL, b'{"id": 1} {"id": 2}', good(2)], failed_read=False, two_values=True)


def test_two_value_lines_the_read_was_not_told_of():
    # A full read of a block with a two-value line gives more rows than lines; the screen and the
    # probe must not map rows to the wrong lines.
    check(with_bad(30, {4: TWO_VALUES}), failed_read=False, dirty=True)
    check(with_bad(30, {4: TWO_VALUES, 10: NAME_NUMBER}))
    check(with_bad(30, {4: TWO_VALUES, 10: ID_FRACTION}))
    check(with_bad(30, {4: b'{"id": 1}null', 25: MALFORMED}))


def test_a_two_value_line_in_a_block_that_read_clean_is_taken_out_by_the_probe(arrow_calls):
    # Neither failed nor dirty: one read, which gives a row too many; the probe takes the line out.
    run = check(with_bad(30, {4: TWO_VALUES}), failed_read=False)
    assert run.locator.probes == 1 and run.diagnosed == [TWO_VALUES]
    assert arrow_calls == ["read", "pieces"]


def test_the_probe_takes_two_value_lines_out_before_it_reads():
    run = check(with_bad(30, {4: TWO_VALUES, 10: ID_FRACTION}))
    assert run.locator.probes == 1 and run.diagnosed == [TWO_VALUES, ID_FRACTION]


def test_an_error_named_past_the_last_line():
    # A two-value line shifts the rows after it: the last line's error names a row past the end.
    check(with_bad(30, {4: b'{"id": 1}null', 29: MISSING_COMMA}))


# ---- the screen, the probe, and what each costs ----------------------------------------------------------
def test_a_screened_bad_line_costs_one_diagnosis_and_no_probe():
    run = check(with_bad(100, {10: MALFORMED, 50: NAME_NUMBER, 90: TAG_NUMBER}))
    assert run.locator.probes == 0
    assert run.diagnosed == [MALFORMED, NAME_NUMBER, TAG_NUMBER]


def test_a_nested_type_error_costs_a_young_screen_one_probe_then_it_is_screened():
    # A young screen reads a struct as its kind only: the first error inside one is the probe's;
    # from then on the screen reads that field in full.
    run = check(with_bad(100, {10: MALFORMED, 50: NESTED_NUMBER}))
    assert run.locator.probes == 1 and run.diagnosed == [MALFORMED, NESTED_NUMBER]
    check(with_bad(100, {20: MALFORMED, 60: NESTED_NUMBER}), first_line=101, run=run)
    assert run.locator.probes == 1 and run.diagnosed[2:] == [MALFORMED, NESTED_NUMBER]


def test_the_screen_learns_the_field_of_a_type_error():
    run = check(with_bad(50, {10: NAME_NUMBER, 20: NESTED_NUMBER, 30: TAG_NUMBER}))
    assert run.suspects.fields == {"name": pa.string(), "loc": SCHEMA.field("loc").type,
                                   "tags": pa.list_(pa.string())}


def test_a_conversion_error_is_found_by_the_probe():
    run = check(with_bad(100, {40: ID_FRACTION}))
    assert run.locator.probes == 1
    assert run.diagnosed == [ID_FRACTION]
    assert run.suspects.fields == {}


@pytest.mark.parametrize("copies", [1, 3, 4, 5, 8])
def test_a_conversion_error_whose_value_other_lines_hold_too(copies):
    # The value (17.25) is in `copies` good lines before the bad one: up to 4 lines holding it are
    # tried; past that, the leftovers bisect to it.
    lines = [good(i) for i in range(60)]
    for i in range(copies):
        lines[5 + i] = json.dumps({"id": i, "name": "17.25 kg"}).encode()
    lines[30] = b'{"id": 17.25, "name": "x"}'
    check(lines)


def test_probes_are_counted_over_the_objects_blocks():
    run = check(with_bad(50, {20: ID_FRACTION}))
    check(with_bad(50, {30: ID_HUGE}), first_line=51, run=run)
    assert run.locator.probes == 2


def test_a_probe_tries_at_most_four_lines_holding_the_value():
    # Four good lines hold the value before the bad one: the probe gives up on the fifth (the
    # leftovers bisect to it), it does not diagnose it next.
    lines = [good(i) for i in range(60)]
    for i in range(4):
        lines[5 + i] = json.dumps({"id": i, "name": "17.25 kg"}).encode()
    lines[30] = b'{"id": 17.25, "name": "x"}'
    run = check(lines)
    assert run.diagnosed[:4] == lines[5:9] and run.diagnosed[4] != lines[30]


def test_a_conversion_error_after_a_screened_one():
    check(with_bad(60, {5: MALFORMED, 30: ID_FRACTION, 31: ID_HUGE, 59: ID_FRACTION}))


def test_a_type_error_an_old_screen_is_not_looking_for_is_found_by_the_probe():
    run = Run(young=0)
    check(with_bad(100, {10: MISSING_COMMA, 60: NAME_NUMBER}), run=run)
    assert run.locator.probes == 1
    assert run.suspects.fields == {"name": pa.string()}
    second = check(with_bad(100, {70: NAME_NUMBER}), first_line=101, run=run)  # now screened
    assert second.locator.probes == 1


def test_a_conversion_error_before_a_type_error_an_old_screen_misses(arrow_calls):
    # The full read fails on the type error (a row is parsed before its values are converted); the
    # lines before it are read again at the end, and the conversion error in the first of them is
    # found by its value.
    run = Run(young=0)
    check(with_bad(40, {0: ID_FRACTION, 2: MISSING_COMMA, 10: NAME_NUMBER}), run=run)
    assert run.diagnosed == [MISSING_COMMA, NAME_NUMBER, ID_FRACTION] and run.locator.probes == 1
    reasons = {r["line"]: r["reason"] for r in run.rejects()}
    for line, kind in [(1, "id_fraction"), (3, "missing_comma"), (11, "name_number")]:
        assert reasons[line].startswith(BAD[kind][1])
    assert arrow_calls == ["screen", "read", "pieces", "read", "read"]


def test_a_young_screen_finds_type_errors_in_any_field_without_a_probe():
    run = check(with_bad(100, {10: NAME_NUMBER, 40: b'{"loc": "Paris"}', 70: TAG_NUMBER, 80: b'{"ok": "yes"}'}))
    assert run.locator.probes == 0


@pytest.mark.parametrize("first_line", [1, 1000])
def test_line_numbers_count_from_the_blocks_first_line(first_line):
    run = check(with_bad(20, {0: MALFORMED, 7: ID_FRACTION, 19: NAME_NUMBER}), first_line=first_line)
    assert run.rejected_lines() == [first_line, first_line + 7, first_line + 19]


def test_a_probe_over_several_pieces():
    # More than one piece of PROBE_BLOCK_BYTES: Arrow counts a failing piece's rows from its own first
    # line, and the pieces before it are kept.
    n = 3 * arrow_read.PROBE_BLOCK_BYTES // len(good(1000)) + 10
    bad = {3: ID_FRACTION, n // 3: ID_HUGE, n // 2: ID_FRACTION, n // 2 + 1: ID_FRACTION, n - 1: ID_HUGE}
    run = check(with_bad(n, bad, start=1000))
    assert run.locator.probes == 1 and len(run.diagnosed) == len(bad)


def test_type_errors_an_old_screen_misses_over_several_pieces():
    n = 3 * arrow_read.PROBE_BLOCK_BYTES // len(good(1000)) + 10
    bad = {0: MALFORMED, n // 3: NAME_NUMBER, 2 * n // 3: NESTED_NUMBER, n - 1: TAG_NUMBER}
    run = check(with_bad(n, bad, start=1000), run=Run(young=0))
    assert run.diagnosed == list(bad.values())  # each found where the failing piece says, no bisection


def test_a_type_error_the_probe_finds_after_several_clean_pieces():
    # The failing piece's row counts from its own first line: the rows of every piece before it
    # in this round are added to it.
    n = 3 * arrow_read.PROBE_BLOCK_BYTES // len(good(1000)) + 10
    bad = {0: MISSING_COMMA, 5: NAME_NUMBER, n - 1: NESTED_NUMBER}
    run = check(with_bad(n, bad, start=1000), run=Run(young=0))
    assert run.diagnosed == list(bad.values()) and run.locator.probes == 1


def test_a_bad_line_at_a_piece_boundary():
    line = good(1000)
    per_piece = arrow_read.PROBE_BLOCK_BYTES // (len(line) + 1)
    for index in (per_piece - 1, per_piece, per_piece + 1):
        check(with_bad(2 * per_piece + 5, {index: ID_FRACTION, index + 3: ID_HUGE}, start=1000))


# ---- dense bad lines: Python looks at the rest ---------------------------------------------------------------
@pytest.mark.parametrize(("spacing", "in_python"), [(1, True), (10, True), (22, True), (23, False), (40, False)])
def test_the_screen_hands_the_rest_to_python_once_bad_lines_are_dense(spacing, in_python):
    n = 400
    run = check(with_bad(n, {i * spacing: MALFORMED for i in range(n // spacing)}))
    eighth = 7 * spacing  # the 8th bad line: dense when 8 * 20 > its index + 1
    if in_python:
        assert len(run.diagnosed) == 8 + n - (eighth + 1)  # every line after it, good or bad
    else:
        assert len(run.diagnosed) == n // spacing
    assert run.locator.probes == 0
    assert all(r["reason"].startswith(BAD["malformed"][1]) for r in run.rejects())


@pytest.mark.parametrize(("spacing", "in_python"), [(1, True), (22, True), (23, False)])
def test_the_probe_hands_the_rest_to_python_once_bad_lines_are_dense(spacing, in_python):
    n = 400
    run = check(with_bad(n, {i * spacing: ID_FRACTION for i in range(n // spacing)}))
    assert run.locator.probes == 1
    eighth = 7 * spacing
    if in_python:
        assert len(run.diagnosed) == 8 + n - (eighth + 1)
    else:
        assert len(run.diagnosed) == n // spacing
    assert {r["reason"] for r in run.rejects()} == {BAD["id_fraction"][1]}


def test_seven_bad_lines_in_a_row_are_not_dense():
    run = check(with_bad(300, {i: MALFORMED for i in range(7)}))
    assert len(run.diagnosed) == 7


def test_dense_bad_lines_of_mixed_kinds():
    kinds = sorted(k for k in BAD if k not in ("two_values", "null", "invalid_utf8"))
    lines = [good(i) for i in range(200)]
    for i in range(0, 200, 3):
        lines[i] = BAD[kinds[i % len(kinds)]][0]
    check(lines)
    check(lines, run=Run(young=0))


def test_dense_conversion_errors_then_a_type_error_only_the_full_read_sees():
    lines = with_bad(300, {i: ID_FRACTION for i in range(0, 16, 2)})
    lines[200] = NAME_NUMBER
    lines[201] = MALFORMED
    check(lines, run=Run(young=0))


# ---- lines only Arrow refuses, or only a lenient diagnoser passes ---------------------------------------------
def test_lines_python_passes_but_arrow_refuses_are_rejected_with_arrows_reason():
    run = check(with_bad(30, {3: DUPLICATE, 15: DUPLICATE, 29: DUPLICATE}))
    assert {r["reason"] for r in run.rejects()} == {"duplicate field: Column(/id) was specified twice"}


def lenient(line: bytes):
    return None  # a diagnoser that sees nothing wrong: Arrow alone judges


def test_with_a_lenient_diagnoser_arrow_judges_each_line_alone():
    run = Run(diagnose=lenient)
    run.block(with_bad(20, {3: MALFORMED, 8: NAME_NUMBER, 12: ID_FRACTION}), first_line=1)
    reasons = {r["line"]: r["reason"] for r in run.rejects()}
    assert sorted(reasons) == [4, 9, 13]
    assert reasons[4].startswith("malformed JSON: ")
    assert reasons[9] == "field 'name' is a number where the schema expects a string"
    assert reasons[13] == "value '4.3' is not a valid int64"
    assert sorted(run.accepted) == [n for n in range(1, 21) if n not in reasons]
    assert run.quarantine.syntax_rejects == 0


def test_with_a_lenient_diagnoser_a_two_value_line_is_rejected_as_two_values():
    run = Run(diagnose=lenient)
    run.block(with_bad(20, {5: TWO_VALUES, 10: MALFORMED}), first_line=1)
    reasons = {r["line"]: r["reason"] for r in run.rejects()}
    assert reasons[6] == "line holds more than one JSON value"
    assert sorted(reasons) == [6, 11]
    assert sorted(run.accepted) == [n for n in range(1, 21) if n not in (6, 11)]


def test_with_a_lenient_diagnoser_a_two_value_line_holding_a_conversion_errors_value():
    # The value 4.3 is in the two-value line (as text) before the line whose id it is: Arrow alone
    # reads the first as two rows; after the second, the probe's rows outnumber its lines.
    run = Run(diagnose=lenient)
    run.block(with_bad(20, {4: b'{"name": "4.3"}{"id": 2}', 9: ID_FRACTION, 15: TWO_VALUES}), first_line=1)
    reasons = {r["line"]: r["reason"] for r in run.rejects()}
    assert reasons == {5: "line holds more than one JSON value", 10: "value '4.3' is not a valid int64",
                       16: "line holds more than one JSON value"}
    assert sorted(run.accepted) == [n for n in range(1, 21) if n not in reasons]
    assert run.quarantine.syntax_rejects == 0


def test_a_value_cut_over_two_lines():
    # Arrow reads the two lines as one row: rows no longer match lines, and the leftovers bisect
    # to two lines that are each malformed.
    run = check(with_bad(20, {6: b'{"id": 6, "name": ', 7: b'"six"}'}))
    assert run.quarantine.syntax_rejects == 2


# ---- single ----------------------------------------------------------------------------------------------------
def test_single_accepts_a_good_line_with_its_number_and_bytes():
    run = Run()
    run.locator.single(42, good(3))
    assert run.accepted == {42: (reference(good(3)), good(3))}
    assert run.quarantine.rejected == 0


@pytest.mark.parametrize("kind", sorted(BAD))
def test_single_rejects_a_bad_line_with_its_reason(kind):
    line, reason, syntax = BAD[kind]
    run = Run()
    run.locator.single(42, line)
    [record] = run.rejects()
    assert record["line"] == 42 and record["reason"].startswith(reason)
    assert record["raw"] == line.decode("utf-8", errors="backslashreplace")
    assert run.quarantine.syntax_rejects == int(syntax) and run.accepted == {}


def test_single_with_a_lenient_diagnoser():
    run = Run(diagnose=lenient)
    for number, line in enumerate([TWO_VALUES, DUPLICATE, NAME_NUMBER], start=1):
        run.locator.single(number, line)
    assert [(r["line"], r["reason"]) for r in run.rejects()] == [
        (1, "line holds more than one JSON value"),
        (2, "duplicate field: Column(/id) was specified twice"),
        (3, "field 'name' is a number where the schema expects a string")]
    assert run.quarantine.syntax_rejects == 0


# ---- read and sift (the pipeline's other entries) ----------------------------------------------------------------
def test_read_accepts_clean_lines_in_one_read_and_sifts_bad_ones():
    run = Run()
    run.locator.read(Lines.of([(i, good(i)) for i in range(1, 11)]))
    assert sorted(run.accepted) == list(range(1, 11)) and run.diagnosed == []
    run.locator.read(Lines.of([(11, good(11)), (12, MALFORMED), (13, ID_FRACTION), (14, TWO_VALUES), (15, good(15))]))
    assert run.rejected_lines() == [12, 13, 14] and sorted(run.accepted) == [*range(1, 12), 15]


def test_read_of_no_lines_does_nothing():
    run = Run()
    run.locator.read(Lines.empty())
    assert run.accepted == {} and run.quarantine.rejected == 0


def test_read_hands_its_error_to_the_screen(arrow_calls):
    run = Run()
    run.locator.read(Lines.of([(i, line) for i, line in enumerate(with_bad(20, {4: MALFORMED}), start=1)]))
    assert run.rejected_lines() == [5] and len(run.accepted) == 19
    assert arrow_calls == ["read", "screen", "read"]  # the screen starts after the line the error names


def test_sift_without_an_error_screens_first():
    run = Run()
    run.locator.sift(Lines.of([(i, line) for i, line in enumerate(with_bad(20, {4: MALFORMED}), start=1)]), None)
    assert run.rejected_lines() == [5] and len(run.accepted) == 19 and run.locator.probes == 0


@pytest.mark.parametrize(("how", "calls"), [
    ("failed", ["screen", "read"]),  # the read's error names the line: the screen starts after it
    ("dirty", ["screen", "screen", "read"]),  # screened before any read
])
def test_a_block_with_a_bad_line_is_screened_before_it_is_read(how, calls, arrow_calls):
    run = check(with_bad(40, {10: MALFORMED}), failed_read=how == "failed", dirty=how == "dirty")
    assert arrow_calls == calls and run.locator.probes == 0


def test_a_conversion_error_goes_straight_to_the_probe(arrow_calls):
    # The read's error names a value, not a row: no screen; the probe starts from that error, and
    # after the bad line it streams the rest once and reads the lines it deferred once.
    run = check(with_bad(40, {10: ID_FRACTION}))
    assert arrow_calls == ["pieces", "read"] and run.locator.probes == 1


def test_a_type_error_the_screen_missed_goes_to_the_probe_with_the_reads_error(arrow_calls):
    run = Run(young=0)
    check(with_bad(40, {3: MISSING_COMMA, 20: NAME_NUMBER}), run=run)
    assert arrow_calls == ["screen", "read", "pieces", "read"] and run.locator.probes == 1


def test_a_failed_reads_error_is_forgotten_once_a_null_line_is_out():
    # Rows no longer match lines: the screen starts over, and no probe is needed.
    run = check(with_bad(20, {5: NULL, 12: MALFORMED}))
    assert run.locator.probes == 0 and run.diagnosed == [MALFORMED]


# ---- floods: the quarantine cap reached, lines lacking a required field --------------------------------------------
def missing_id(n: int) -> bytes:
    return json.dumps({"name": f"no id {n}", "w": 1.0}).encode()


def flood_run(max_records=0) -> Run:
    return Run(required=("id", "loc"), max_records=max_records)


@pytest.mark.parametrize("how", ["failed", "dirty", "clean"])
def test_in_a_flood_lines_lacking_a_required_field_are_rejected_by_one_narrow_read(how):
    n = FLOOD_MIN_LINES + (how == "failed")  # at least the minimum left once the bad line is out
    lines = [good(i) if i % 3 == 0 else missing_id(i) for i in range(n)]
    lines[1] = MALFORMED if how == "failed" else lines[1]
    run = flood_run()
    run.block(lines, failed_read=how == "failed", dirty=how == "dirty")
    kept = {i + 1 for i in range(n) if i % 3 == 0}
    assert sorted(run.accepted) == sorted(kept)
    assert run.quarantine.rejected == n - len(kept)
    assert run.rejects() == [] and run.quarantine.dropped == n - len(kept)
    assert run.quarantine.first_dropped == 2 and run.quarantine.last_dropped == n - (n % 3 == 1)
    assert UNWORDED_MISSING in [reason for _, reason in run.quarantine.first_rejects]
    assert run.diagnosed == ([MALFORMED] if how == "failed" else [])


def test_a_flood_filter_is_for_a_required_structs_kind_only():
    line = json.dumps({"id": 1, "loc": {"town": "x"}}).encode()  # `loc` is there; its city is not required
    run = flood_run()
    run.block([line] * FLOOD_MIN_LINES, failed_read=False, dirty=True)
    assert len(run.accepted) == FLOOD_MIN_LINES and run.quarantine.rejected == 0


def test_a_run_shorter_than_the_flood_minimum_is_not_filtered():
    n = FLOOD_MIN_LINES - 1
    run = flood_run()
    run.block([missing_id(i) for i in range(n)], failed_read=False, dirty=True)
    assert len(run.accepted) == n and run.quarantine.rejected == 0  # the row checks reject them later


def test_lines_lacking_a_required_field_are_accepted_while_the_quarantine_has_room():
    run = flood_run(max_records=10)
    run.block([missing_id(i) for i in range(FLOOD_MIN_LINES * 2)], failed_read=False, dirty=True)
    assert len(run.accepted) == FLOOD_MIN_LINES * 2 and run.quarantine.rejected == 0


def test_without_required_fields_a_flood_is_not_filtered(arrow_calls):
    run = Run(max_records=0)
    run.block([missing_id(i) for i in range(FLOOD_MIN_LINES)], failed_read=False, dirty=True)
    assert len(run.accepted) == FLOOD_MIN_LINES
    assert arrow_calls == ["screen", "read"]  # no narrow read


def test_a_flood_filter_reads_only_the_required_fields():
    # Lines with `loc` and `id` are kept whatever else they lack, hold as null or hold outside the schema.
    lines = [json.dumps({"id": i, "loc": {}} if i % 2 else {"id": i, "loc": {"city": "x"}, "name": None, "extra": i})
             .encode() for i in range(FLOOD_MIN_LINES)]
    run = flood_run()
    run.block(lines, failed_read=False, dirty=True)
    assert len(run.accepted) == FLOOD_MIN_LINES and run.quarantine.rejected == 0


def test_a_flood_with_no_line_lacking_a_required_field():
    run = flood_run()
    run.block([good(i) for i in range(FLOOD_MIN_LINES)], failed_read=False, dirty=True)
    assert len(run.accepted) == FLOOD_MIN_LINES and run.quarantine.rejected == 0


def test_a_flood_with_other_bad_lines_finds_them_the_usual_way():
    n = FLOOD_MIN_LINES * 2
    lines = [missing_id(i) if i % 2 else good(i) for i in range(n)]
    lines[10], lines[40] = NAME_NUMBER, ID_FRACTION
    run = flood_run()
    run.block(lines)
    kept = {i + 1 for i in range(0, n, 2)} - {11, 41}
    assert sorted(run.accepted) == sorted(kept)
    assert run.quarantine.rejected == n - len(kept)


def test_a_two_value_line_stops_the_flood_filter():
    # Its rows would not match lines; the narrow read is skipped (the row checks reject the lines
    # lacking the field later, worded), and the probe takes the two-value line out.
    n = FLOOD_MIN_LINES * 2
    lines = [missing_id(i) if i % 2 else good(i) for i in range(n)]
    lines[20] = TWO_VALUES
    run = flood_run()
    run.block(lines, failed_read=False, dirty=True)
    assert sorted(run.accepted) == [n for n in range(1, n + 1) if n != 21]
    assert run.quarantine.rejected == 1 and run.quarantine.first_rejects[0][0] == 21


def test_a_flood_after_blank_lines():
    n = FLOOD_MIN_LINES
    lines = [b""] + [missing_id(i) if i % 2 else good(i) for i in range(n)]
    run = flood_run()
    run.block(lines, failed_read=False)
    assert sorted(run.accepted) == [i + 2 for i in range(0, n, 2)] and run.locator.blank_lines == 1
