"""Checks on parsed rows, vectorized with Arrow compute: timestamps and required fields.

Arrow's JSON reader would fail a whole block on one value that is not a timestamp, and it cannot
say that a required field is missing. So top-level timestamp fields are read as strings and
converted here, and required fields are checked here, once per batch of rows ("settle" in
pipeline.py), for every row at once.

Words used here:
- problems (`RowProblems`): which rows fail a check, as masks; a row's reason (its problems joined
  by "; ") is put into words only when asked for, so a flood of bad rows past the quarantine cap
  costs vectorized work only.
- refused: {timestamp field: mask of rows whose value was present but not a timestamp}, so such a
  row is not also called "missing" the field.
- required path: `name`, `parent.child` or `list[].child` (from the type's schema).
Timestamp rules are those of Arrow's JSON reader: ISO-8601; an offset is converted to UTC, a naive
value is taken as UTC. Fractional seconds past microseconds (nanoseconds) are truncated to
microseconds, the unit of silver's timestamps, rather than rejected: the instant is kept to the
precision silver stores.

Numbers follow RFC 8259: JSON has no NaN or Infinity, so a float field holding `NaN`, `Infinity`
or `-Infinity` (which Arrow's reader accepts), or a number too big for a double (Arrow reads
`1` and 400 zeros as infinity), rejects its row, the field named - at any depth (`a.b`, `l[].x`).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lambdas.shared.schemas import TS, EventSchema

_SUB_MICROSECONDS = re.compile(r"([T ]\d\d:\d\d:\d\d\.\d{6})\d+")  # digits past microseconds, truncated
NAMED_ROUNDS = 8  # bad values found by name per block before bisection takes over
# Every form Arrow's ISO-8601 cast accepts has this shape (a superset: date, then optional time,
# fraction and zone); used only to refuse floods of values that cannot be timestamps.
_ISO_SHAPE = r"^\d{4}-\d\d-\d\d(?:[T ]\d\d(?::?\d\d(?::?\d\d(?:[.,]\d+)?)?)?)?(?:Z|[+-]\d\d(?::?\d\d)?)?$"
_SHAPE = re.compile(_ISO_SHAPE)
CAST_RE = re.compile(r"^Failed to parse string: '(.*)' as a scalar of type timestamp", re.S)


def read_schema(schema: EventSchema) -> pa.Schema:
    """The schema Arrow reads with: the type's columns, top-level timestamps as strings."""
    return pa.schema([pa.field(f.name, pa.string()) if f.type == TS else f for f in schema.arrow])


class RowProblems:
    """The rows of a table that fail a check, and the reason of each, worded on request."""

    def __init__(self, n: int):
        self.n = n
        self.timestamps: list[tuple[str, np.ndarray, pa.Array]] = []  # (field, refused mask, values)
        self.missing: list[tuple[str, np.ndarray]] = []  # (required path, mask)
        self.nonfinite: list[tuple[str, np.ndarray]] = []  # (float field path, mask)

    def rows(self) -> np.ndarray:
        """Indexes of the rows with a problem, ascending."""
        masks = ([mask for _, mask, _ in self.timestamps] + [mask for _, mask in self.missing]
                 + [mask for _, mask in self.nonfinite])
        if not masks:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.logical_or.reduce(masks))

    def reason(self, idx: int) -> str:
        problems = [f"value {values[idx].as_py()!r} of field '{name}' is not a valid {TS} "
                    "(expected ISO-8601, e.g. 2025-01-31T12:00:00Z)"
                    for name, mask, values in self.timestamps if mask[idx]]
        problems += [f"field '{path}' is NaN, Infinity or a number too big for a double, which JSON does not "
                     "allow (RFC 8259)" for path, mask in self.nonfinite if mask[idx]]
        missing = [p for p, m in self.missing if m[idx]]
        if missing:
            problems.append("missing required field(s) " + ", ".join(f"'{p}'" for p in missing))
        return "; ".join(problems)


class RowChecks:
    """The checks of one event type, compiled once."""

    def __init__(self, schema: EventSchema):
        self.schema = schema
        self.ts_fields = [f.name for f in schema.arrow if f.type == TS]
        self.required = [_compile_required(p) for p in schema.required]
        self.float_leaves = list(_float_leaves(pa.struct(list(schema.arrow)), "", ()))

    def check(self, table: pa.Table) -> tuple[pa.Table, RowProblems]:
        """The table with its timestamps converted, and the problems of its rows."""
        problems = RowProblems(table.num_rows)
        table = self._timestamps(table, problems)
        self._missing(table, problems)
        self._nonfinite(table, problems)
        return table, problems

    def _nonfinite(self, table: pa.Table, problems: RowProblems) -> None:
        if self._all_finite(table):
            return
        for path, steps in self.float_leaves:
            mask = None
            offset = 0
            for chunk in table.column(steps[0]).chunks:
                values, rows = chunk, None  # rows: the table row of each value (None: the same)
                for step in steps[1:]:
                    if step is None:  # into a list
                        values, parents = _flatten(values)
                        rows = parents if rows is None else rows[parents]
                    else:
                        values = pc.struct_field(values, [step])
                # One kernel for the usual case: the sum of finite values is finite unless they
                # overflow a double, which only sends the chunk to the exact check below.
                total = pc.sum(values).as_py()
                if total is None or math.isfinite(total):
                    offset += len(chunk)
                    continue
                bad = pc.fill_null(pc.invert(pc.is_finite(values)), False)
                if pc.any(bad).as_py():
                    found = np.flatnonzero(bad.to_numpy(zero_copy_only=False))
                    if rows is not None:
                        found = rows[found]
                    if mask is None:
                        mask = np.zeros(table.num_rows, dtype=bool)
                    mask[offset + found] = True
                offset += len(chunk)
            if mask is not None:
                problems.nonfinite.append((path, mask))

    def _all_finite(self, table: pa.Table) -> bool:
        """Whether every float value of the table is finite, by one sum over all float leaves (the
        usual case; the check per leaf and row costs a few kernels per leaf). The leaves are taken
        without kernels (a struct's child, a list's values), so they may hold more values than
        the rows have (under a null parent, outside a slice) - never fewer, so a finite sum (or
        none: nothing but nulls) rules out a non-finite value; any other sends the table to the
        exact check, which also settles a sum that merely overflowed."""
        leaves: dict[pa.DataType, list[pa.Array]] = {}  # by type: one sum per float type
        for _, steps in self.float_leaves:
            for values in table.column(steps[0]).chunks:
                for step in steps[1:]:
                    values = values.values if step is None else values.field(step)
                leaves.setdefault(values.type, []).append(values)
        for type_, arrays in leaves.items():
            total = pc.sum(pa.chunked_array(arrays, type=type_)).as_py()
            if total is not None and not math.isfinite(total):
                return False
        return True

    def _timestamps(self, table: pa.Table, problems: RowProblems) -> pa.Table:
        for name in self.ts_fields:
            i = table.schema.get_field_index(name)
            values = table.column(i)
            try:
                converted = to_timestamps(values)
            except pa.ArrowInvalid as exc:
                values = values.combine_chunks()
                mask, converted = unconvertible(values, str(exc))
                if mask.any():
                    problems.timestamps.append((name, mask, values))
            table = table.set_column(i, self.schema.arrow.field(name), converted)
        return table

    def _missing(self, table: pa.Table, problems: RowProblems) -> None:
        """Null counts are O(1), so a clean table costs a few cheap checks; masks are built only
        for a path that has a violation."""
        n = table.num_rows
        refused = {name: mask for name, mask, _ in problems.timestamps}
        for path, (kind, name, child) in self.required:
            col = table.column(name)  # chunked: detection needs no copy; a mask only on a violation
            if kind == "top":
                if col.null_count == 0:
                    continue
                mask = _numpy(pc.is_null(col))
                if name in refused:  # present but not a timestamp: said already
                    mask &= ~refused[name]
            elif kind == "struct":
                if all(chunk.field(child).null_count == 0 for chunk in col.chunks):
                    continue  # no null child (taken without a kernel): nulls only where the parent is
                values = pc.struct_field(col, [child])  # null where the parent is null, too
                if values.null_count == col.null_count:
                    continue
                mask = _numpy(pc.and_(pc.is_valid(col), pc.is_null(values)))
            else:
                # Each chunk's list values (all of them, those outside a slice too): with no null
                # element and no null child there, no row lacks the child.
                if all(chunk.values.null_count == 0 and chunk.values.field(child).null_count == 0
                       for chunk in col.chunks):
                    continue
                mask = np.zeros(n, dtype=bool)
                offset = 0
                for chunk in col.chunks:
                    flat, parents = _flatten(chunk)
                    values = pc.struct_field(flat, [child])  # null for a null element, too
                    if values.null_count:
                        mask[offset + parents[_numpy(pc.is_null(values))]] = True
                    offset += len(chunk)
            if mask.any():
                problems.missing.append((path, mask))


def _float_leaves(type_: pa.DataType, path: str, steps: tuple):
    """(path, steps) of each float field: steps are the top-level name, then a child's name or None
    for "into a list"."""
    if pa.types.is_struct(type_):
        for i in range(type_.num_fields):
            child = type_.field(i)
            yield from _float_leaves(child.type, f"{path}.{child.name}" if path else child.name, (*steps, child.name))
    elif pa.types.is_list(type_) or pa.types.is_large_list(type_):
        yield from _float_leaves(type_.value_type, path + "[]", (*steps, None))
    elif pa.types.is_floating(type_):
        yield path, steps


def _compile_required(path: str):
    if "[]." in path:
        list_name, child = path.split("[].", 1)
        return path, ("list", list_name, child)
    if "." in path:
        parent, child = path.split(".", 1)
        return path, ("struct", parent, child)
    return path, ("top", path, None)


def to_timestamps(values: pa.Array) -> pa.Array:
    """ISO-8601 strings -> timestamp[us, UTC] as Arrow's JSON reader converts them; raises
    ArrowInvalid for a value that is not a timestamp. Digits past microseconds are truncated.
    Arrow's cast refuses naive strings for a zoned type, so those are cast as naive timestamps
    first."""
    # Only the message is kept, never the exception: a local holding an exception whose traceback
    # holds this frame is a reference cycle, which would keep every caller's frame (the block's
    # bytes, its lines, its tables) alive until the cyclic garbage collector ran.
    try:
        return pc.cast(values, TS)
    except pa.ArrowInvalid as exc:
        message = str(exc)
    named = CAST_RE.search(message)
    truncated = False
    # The cast's error names one value it refused. Digits past microseconds are cut (a regex over
    # every value) only when that value has them or none is named: a value without them is refused
    # whatever is cut, so it is refused at once; the caller takes it out and casts the rest again,
    # until what is named has them (the naive path below cuts them all itself).
    if named is None or _SUB_MICROSECONDS.search(named.group(1)):
        values, truncated = _truncated(values), True
        try:
            return pc.cast(values, TS)
        except pa.ArrowInvalid as exc:
            message = str(exc)
        named = CAST_RE.search(message)
    if named and not _is_naive_timestamp(named.group(1)):
        raise pa.ArrowInvalid(message)  # not a timestamp at all: no need to try the naive ones
    if not truncated:
        values = _truncated(values)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.offset:  # pyarrow < 15: if_else on a sliced string array (bisection's) makes an invalid one
        values = pa.concat_arrays([values])
    tail = pc.utf8_slice_codeunits(values, 10)  # after YYYY-MM-DD: a zone is 'Z' or a +/- offset
    # null for a null value, which stays null whichever branch takes it
    zoned = pc.or_(pc.ends_with(tail, "Z"), pc.match_substring_regex(tail, "[+-]"))
    none = pa.scalar(None, pa.string())
    with_zone = pc.cast(pc.if_else(zoned, values, none), TS)
    naive = pc.cast(pc.cast(pc.if_else(zoned, none, values), pa.timestamp("us")), TS)
    return pc.if_else(zoned, with_zone, naive)


def _truncated(values):
    """`values` with digits past microseconds cut (the same values when none has them)."""
    if pc.any(pc.match_substring_regex(values, _SUB_MICROSECONDS.pattern)).as_py():
        return pc.replace_substring_regex(values, _SUB_MICROSECONDS.pattern, r"\1")
    return values


def _flatten(lists: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """A list array's values and the index of each one's list, for the lists' own values only.
    `pc.list_parent_indices` cannot be paired with `pc.list_flatten`: it also counts the values
    stored under a null list, which flatten leaves out, so the two disagree for such an array."""
    lengths = _numpy(pc.fill_null(pc.list_value_length(lists), 0))
    return pc.list_flatten(lists), np.repeat(np.arange(len(lists)), lengths)


def _numpy(values) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.to_numpy(zero_copy_only=False)


def _is_naive_timestamp(value: str) -> bool:
    try:
        pc.cast(pa.array([value]), pa.timestamp("us"))
        return True
    except pa.ArrowInvalid:
        return False


def unconvertible(values: pa.Array, message: str | None = None) -> tuple[np.ndarray, pa.Array]:
    """A mask of the values `to_timestamps` refuses, and the others converted (`message`: the
    error of a cast of all of them, when one was tried). Arrow's cast error names the value, so
    each distinct bad value costs one failed cast and one vectorized comparison, and the first one
    named without the shape of a timestamp takes all such values with it; bisection is the
    fallback when a message cannot be matched to the values."""
    bad = np.zeros(len(values), dtype=bool)
    none = pa.scalar(None, pa.string())
    rest = values
    shaped = False  # whether the values without the shape of a timestamp were refused already
    for _ in range(NAMED_ROUNDS):
        if message is None:
            rest = pc.if_else(pa.array(bad), none, values) if bad.any() else values
            try:
                return bad, to_timestamps(rest)
            except pa.ArrowInvalid as exc:
                message = str(exc)
        named, message = CAST_RE.search(message), None
        if named and not shaped and not _SHAPE.match(named.group(1)):
            # One value without even the shape of a timestamp: likely more of them (a flood of
            # garbage), refused at once with it; then the rest is cast again.
            bad |= _unshaped(values)
            shaped = True
            continue
        hits = None
        if named:
            hits = pc.fill_null(pc.equal(values, named.group(1)), False).to_numpy(zero_copy_only=False) & ~bad
        if hits is None or not hits.any():
            break
        bad |= hits
    else:  # many distinct bad values: a cast per value would cost each block its rows squared
        if not shaped:
            bad |= _unshaped(values)
        rest = pc.if_else(pa.array(bad), none, values)
    bad |= _bisect_unconvertible(rest)
    return bad, to_timestamps(pc.if_else(pa.array(bad), none, values))


def _unshaped(values: pa.Array) -> np.ndarray:
    """A mask of the values without the shape of an ISO-8601 timestamp (all refused by the cast),
    by one regex pass: a failed cast costs about as much per value as there are bad values left
    (Arrow parses them all before it fails), a regex pass a fraction of one."""
    return ~pc.fill_null(pc.match_substring_regex(values, _ISO_SHAPE), True).to_numpy(zero_copy_only=False)


def _bisect_unconvertible(values: pa.Array) -> np.ndarray:
    try:
        to_timestamps(values)
        return np.zeros(len(values), dtype=bool)
    except pa.ArrowInvalid:
        if len(values) == 1:
            return np.ones(1, dtype=bool)
    mid = len(values) // 2
    return np.concatenate([_bisect_unconvertible(values.slice(0, mid)), _bisect_unconvertible(values.slice(mid))])
