"""Why one line is bad, worked out in Python: the reason quarantine records and logs give.

Arrow's reader says that a block failed and (mostly) at which row; this module says why a single
line is bad, in the event's own terms ("field 'weight_kg' is a string where the schema expects a
number").

Words used here:
- rule: what the check needs to know of an Arrow type, worked out once per schema by `rule()` as
  (kind, detail), kind one of object, array, string, boolean, integer, number, any. Walking the
  rule tree is several times faster than asking pyarrow.types about each field of each line.
- diagnosis: (reason, syntax) for a bad line; `syntax` says the line is not JSON at all (an object
  whose every line is a syntax reject is unreadable, not quarantined).
- reason without values: the same reason with the field values taken out (field paths and the kind
  of problem stay), for logs that must hold no data; quarantine keeps the raw line.
"""

from __future__ import annotations

import json
import re
import sys
from typing import NamedTuple

import pyarrow as pa

MAX_DEPTH = sys.getrecursionlimit()

class Diagnosis(NamedTuple):
    reason: str
    syntax: bool  # not JSON at all (malformed, invalid UTF-8), rather than JSON of the wrong shape


def article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def rule(arrow_type: pa.DataType) -> tuple:
    """The rule tree of an Arrow type (see the module's words)."""
    if pa.types.is_struct(arrow_type):
        return "object", tuple((arrow_type.field(i).name, rule(arrow_type.field(i).type))
                               for i in range(arrow_type.num_fields))
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return "array", rule(arrow_type.value_type)
    if pa.types.is_string(arrow_type) or pa.types.is_timestamp(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string", None
    if pa.types.is_boolean(arrow_type):
        return "boolean", None
    if pa.types.is_integer(arrow_type):
        return "integer", str(arrow_type)
    if pa.types.is_floating(arrow_type):
        return "number", None
    return "any", None


def check(value, rule_: tuple, path: str) -> str | None:
    """The first place where a decoded JSON value does not fit the rule, said as Arrow would."""
    if value is None:
        return None
    kind, detail = rule_
    if kind == "object":
        if not isinstance(value, dict):
            return mismatch(path, value, "object")
        for name, child in detail:
            if name in value:
                problem = check(value[name], child, f"{path}.{name}" if path else name)
                if problem:
                    return problem
        return None
    if kind == "array":
        if not isinstance(value, list):
            return mismatch(path, value, "array")
        for element in value:
            problem = check(element, detail, path + "[]")
            if problem:
                return problem
        return None
    if kind == "string":
        return None if isinstance(value, str) else mismatch(path, value, "string")
    if kind == "boolean":
        return None if isinstance(value, bool) else mismatch(path, value, "boolean")
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return mismatch(path, value, "number")
        if isinstance(value, float) or not -(2**63) <= value < 2**63:
            return f"value {value!r} of field '{path}' is not a valid {detail}"
        return None
    if kind == "number":
        return None if isinstance(value, int | float) and not isinstance(value, bool) else mismatch(
            path, value, "number")
    return None


def mismatch(path: str, value, expected: str) -> str:
    if not path:
        return f"line is a JSON {json_kind(value)}, expected an object"
    return f"field '{path}' is {article(json_kind(value))} where the schema expects {article(expected)}"


class Diagnoser:
    """Diagnoses single lines against one schema (its rule tree built once)."""

    def __init__(self, arrow_schema: pa.Schema):
        self.rule = rule(pa.struct(list(arrow_schema)))

    def __call__(self, line: bytes) -> Diagnosis | None:
        """The diagnosis when Python can tell the line is bad; None when it looks fine."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Diagnosis(f"not valid UTF-8: {exc.reason} at byte {exc.start}", True)
        try:
            value = json.loads(text)
        except RecursionError:
            return Diagnosis(f"nested deeper than Python's JSON reader allows (about {MAX_DEPTH} levels)", False)
        except ValueError as exc:
            msg, col = getattr(exc, "msg", str(exc)), getattr(exc, "colno", None)
            return Diagnosis(f"malformed JSON: {msg}" + (f" at column {col}" if col else ""), True)
        if not isinstance(value, dict):
            return Diagnosis(f"line is a JSON {json_kind(value)}, expected an object", False)
        problem = check(value, self.rule, "")  # as deep as the schema, never deeper
        return Diagnosis(problem, False) if problem else None


# Every reason that quotes a value says "value <repr> " first (see `check`, arrow_read and
# row_checks); the repr may hold anything, so it is cut up to the words that follow it.
_VALUE = re.compile(r"value .*? (?=of field '|is not a valid )", re.S)


def without_values(reason: str) -> str:
    """The reason with quoted field values taken out, for logs that must hold no data."""
    return _VALUE.sub("value (withheld) ", reason)
