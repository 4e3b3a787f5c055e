"""Finding the bad lines among good ones, at about one cheap Arrow call per bad line.

A clean block takes one Arrow read (pipeline.py). This module handles the rest: a block whose read
failed, or that must be read carefully. One entry point, `Locator.block`, and three tools it uses
in turn:

1. screen (`_screen`): a screen read (arrow_read.py) from the first line on. Each error names a
   row; that line is diagnosed alone (diagnose.py) and rejected, and the screen goes on from the
   line after it. Then the lines it passed are read at once, which mostly succeeds.
2. probe (`_probe`): what the screen misses - a conversion error (it names a value, not a row) or
   a type error in a field that is not a suspect - is pinned down by streaming the lines in pieces;
   the pieces before the failure are kept, the failing line is rejected, and the probe goes on.
3. leftovers (`_leftovers`): lines the probe could not map rows to; read, drop the named line and
   read again, bisecting only when no line is named. It never probes again, so it always ends.
Where bad lines are dense (over 5% and at least 8 of the lines seen), an Arrow call per bad line
costs more than Python's look at every line: the rest is diagnosed in Python (`_in_python`).

Words used here:
- suspects (`Suspects`): the top-level fields that have had a type error in this object (a
  producer bug repeats), with the type the screen reads each as - its kind only (an object with no
  fields, a list of such) when the error was at the top, in full when deeper.
- young: an object's first YOUNG_BLOCKS blocks. Their screens check every top-level field's kind,
  which learns the suspects early; a type error the screen misses costs a whole probe.
- dirty: the previous block had bad lines. Bad lines come in runs, so a dirty object's next block
  is screened before it is read (pipeline.py decides; `Locator.block` is told).
- two-value line: `{..} {..}` or `{..}null`. Arrow reads it as two rows, which shifts the line of
  every row after it in a read that maps rows to lines by count (the probe's, the full read's), so
  such lines are taken out first wherever counts must match.
- flood: the quarantine cap is reached (sinks.py), so rejects are only counted. Lines that lack a
  required top-level field are then taken out by one narrow read (those fields' kinds only, about
  a sixth of a full read's cost on a flood of `{}`) before the full read; their reasons are not
  worded, since nothing would keep them.
- accept: hand parsed rows (with their line numbers and a way to get a row's raw bytes) to the
  pipeline, which checks them as a batch (row_checks.py) and writes them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.json as pj

from lambdas.transform import arrow_read
from lambdas.transform.arrow_read import explain_arrow_error, kind_only, named_row, named_value
from lambdas.transform.diagnose import Diagnoser
from lambdas.transform.line_index import Lines, is_utf8, without
from lambdas.transform.sinks import Quarantine

YOUNG_BLOCKS = 4
FLOOD_MIN_LINES = 64  # a cap-full run of at least this many lines is filtered by one narrow read
UNWORDED_MISSING = "missing required field(s) (not worded: quarantine cap reached)"

Accept = Callable[[pa.Table, np.ndarray, Callable[[int], bytes]], None]


def dense(bad: int, seen: int) -> bool:
    """Over 5% of the lines seen so far were bad (and at least 8)."""
    return bad >= 8 and bad * 20 > seen


class Suspects:
    """What the screen has learned about one object's fields, and the parse options it reads with."""

    def __init__(self, read_schema: pa.Schema, young_blocks: int = YOUNG_BLOCKS):
        self.read_schema = read_schema
        self.fields: dict[str, pa.DataType] = {}
        self.young = young_blocks  # blocks left whose screens check every top-level field's kind
        self.screen_options = self._options()

    def _options(self) -> pj.ParseOptions:
        fields = dict(self.fields)
        if self.young > 0:
            fields = {f.name: fields.get(f.name, kind_only(f.type)) for f in self.read_schema}
        schema = pa.schema([pa.field(name, type_) for name, type_ in fields.items()])
        return pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")

    @property
    def screened_fields(self) -> list[str]:
        """The fields the screen reads now."""
        return list(self.screen_options.explicit_schema.names)

    def learn(self, message: str) -> None:
        """Make a field a suspect from Arrow's type error ("Column(/weight_kg) changed from number
        to string"); never narrows a suspect read in full back to its kind."""
        parts = arrow_read.type_error_path(message)
        if not parts or self.read_schema.get_field_index(parts[0]) < 0:
            return
        type_ = self.read_schema.field(parts[0]).type
        wanted = kind_only(type_) if len(parts) == 1 or parts[1:] == ["[]"] else type_
        if self.fields.get(parts[0]) not in (wanted, type_):
            self.fields[parts[0]] = wanted
            self.screen_options = self._options()

    def block_done(self) -> None:
        """One more block of the object seen: past the young ones, screen only the suspects."""
        if self.young:
            self.young -= 1
            if not self.young:
                self.screen_options = self._options()


class Locator:
    """Locates and rejects the bad lines of one object's blocks; accepts the rest."""

    def __init__(self, *, parse_options: pj.ParseOptions, suspects: Suspects, diagnose: Diagnoser,
                 quarantine: Quarantine, accept: Accept, required: tuple[str, ...] = ()):
        self.parse_options = parse_options
        read_schema = parse_options.explicit_schema
        self.required_options = pj.ParseOptions(  # for floods: the required top-level fields' kinds
            explicit_schema=pa.schema([pa.field(n, kind_only(read_schema.field(n).type)) for n in required]),
            unexpected_field_behavior="ignore") if required else None
        self.suspects = suspects
        self.diagnose = diagnose
        self.quarantine = quarantine
        self.accept = accept
        self.blank_lines = 0
        self.probes = 0  # probe runs: what the screen missed (the bench and tests look at it)

    def _read(self, data) -> pa.Table:
        return arrow_read.read_one_block(data, self.parse_options)

    def _reject(self, lines: Lines, i: int, reason: str, syntax: bool = False) -> None:
        self.quarantine.reject(int(lines.numbers[i]), lines.raw(i), reason, syntax=syntax)

    # ---- the entry point -------------------------------------------------------------------------
    def block(self, data: bytes, first_line: int, newlines: np.ndarray, error: pa.ArrowInvalid | None, *,
              utf8: bool | None = None, two_values: bool = False, dirty: bool = False) -> None:
        """A block that failed its read (`error`), or is careful or dirty: take out its blank lines,
        `null` lines, lines with invalid UTF-8 and (when `two_values`: the read gave more rows than
        lines) two-value lines, then locate the bad ones. `utf8` says whether the block is valid
        UTF-8, when that is known already."""
        lines = Lines.split(data, first_line, newlines)
        rejects_before = self.quarantine.rejected
        blank, nulls = lines.blank_and_null()
        self.blank_lines += len(blank)
        for i in nulls.tolist():  # never handed to Arrow: a read that starts with one crashes it
            self._reject(lines, i, "line is a JSON null, expected an object")
        # The same for every line that starts with `null` (`null` and spaces, `nullx`): a JSON
        # null or malformed, said by Python; past the quarantine cap counted at once.
        led = lines.null_led(np.concatenate((blank, nulls)))
        for k, i in enumerate(led.tolist()):
            if self.quarantine.full:
                self.quarantine.reject_many(lines.numbers[led[k:]], "malformed JSON or a JSON null, expected an object")
                break
            problem = self.diagnose(lines.raw(i))  # never None: a JSON null is not an object
            self._reject(lines, i, problem.reason, problem.syntax)
        removed = np.concatenate((blank, nulls, led))  # numpy: a flood of blank lines costs no Python per line
        if two_values:  # known to be there: rows would not match lines in any read
            # said only of a block that is not careful (pipeline.py): no line is blank or starts with n
            found = self._two_values(lines)
            removed = np.concatenate((removed, np.array(found, dtype=np.int64)))
        if not (is_utf8(data) if utf8 is None else utf8):  # find the lines with invalid bytes
            seen, invalid = set(removed.tolist()), []
            for i in range(len(lines)):
                if i in seen:
                    continue
                try:
                    lines.raw(i).decode("utf-8")
                except UnicodeDecodeError as err:
                    invalid.append(i)
                    self._reject(lines, i, f"not valid UTF-8: {err.reason} at byte {err.start}", syntax=True)
            removed = np.concatenate((removed, np.array(invalid, dtype=np.int64)))
        failed = error is not None or dirty or self.quarantine.rejected > rejects_before
        if len(removed):  # rows would no longer match lines: keep only the others, and forget `error`
            lines = lines.without(removed)
            error = None
        if failed:
            self.sift(lines, error)
        else:  # here only for a blank line or a short first line: most likely clean
            self.read(lines)

    def read(self, lines: Lines) -> None:
        """Lines that are probably clean: one read; if it fails, sift them."""
        lines = self._without_missing_required(lines)
        if not len(lines):
            return
        outcome = self._read_whole(lines)
        if outcome is None:  # a line held two values
            self._probe(lines, None)
        elif outcome is not True:
            self.sift(lines, outcome)

    def sift(self, lines: Lines, error: Exception | None) -> None:
        """Lines with bad ones among them (`error`: a whole read of them failed, if one was tried).
        Screen out what the screen read finds, read the rest at once; what the screen missed, the
        probe pins down."""
        if error is not None and named_row(str(error)) is None:
            self._probe(lines, error)  # a conversion error: every line parsed, there is nothing to screen
            return
        filtered = self._without_missing_required(lines)
        if filtered is not lines:  # the error's row no longer matches a line
            lines, error = filtered, None
        kept = self._without_missing_required(lines.without(self._screen(lines, error)))
        if len(kept):
            outcome = self._read_whole(kept)
            if outcome is not True:
                self._probe(kept, outcome)

    def _without_missing_required(self, lines: Lines) -> Lines:
        """In a flood (see the module's words): the lines without those lacking a required
        top-level field, which are rejected: counted, not worded."""
        if not (self.quarantine.full and self.required_options and len(lines) >= FLOOD_MIN_LINES):
            return lines
        try:
            table = arrow_read.read_one_block(lines.span(0, len(lines)), self.required_options)
        except pa.ArrowInvalid:
            return lines  # a bad line of another kind: the usual path finds it
        if table.num_rows != len(lines):
            return lines  # a line held two values
        missing = np.logical_or.reduce([column.is_null().to_numpy(zero_copy_only=False)
                                        for column in table.combine_chunks().columns])
        if not missing.any():
            return lines
        cut = np.flatnonzero(missing)
        self.quarantine.reject_many(lines.numbers[cut], UNWORDED_MISSING)
        return lines.without(cut)

    def _read_whole(self, lines: Lines) -> pa.ArrowInvalid | bool | None:
        """One read of all the lines: True when they were accepted, the error when it failed, None
        when it gave more rows than lines (a line held two values)."""
        try:
            table = self._read(lines.span(0, len(lines)))
        except pa.ArrowInvalid as exc:
            # Without its traceback: kept by the caller, the exception would hold this frame, whose
            # caller holds the exception - a reference cycle that keeps the block's bytes and
            # tables alive until the cyclic garbage collector runs.
            return exc.with_traceback(None)
        if table.num_rows != len(lines):
            return None
        self.accept(table, lines.numbers, lines.raw)
        return True

    def single(self, line_no: int, line: bytes) -> None:
        """One line alone: reject it with the clearest reason, or accept it."""
        problem = self.diagnose(line)
        if problem:
            self.quarantine.reject(line_no, line, problem.reason, syntax=problem.syntax)
            return
        try:
            table = self._read(line)
        except pa.ArrowInvalid as exc:
            self.quarantine.reject(line_no, line, explain_arrow_error(str(exc)))
            return
        if table.num_rows != 1:
            self.quarantine.reject(line_no, line, "line holds more than one JSON value")
            return
        self.accept(table, np.array([line_no], dtype=np.int64), lambda i: line)

    # ---- the tools -------------------------------------------------------------------------------
    def _two_values(self, lines: Lines) -> list[int]:
        """Reject the two-value lines and return their indexes. (The screen needs no such care: a
        row it misplaces is diagnosed in Python before it is rejected, and whatever it then misses
        makes the full read fail or miscount, which leads here.)"""
        found: list[int] = []
        for i in lines.two_value_candidates():
            problem = self.diagnose(lines.raw(i))
            if problem:
                found.append(i)
                self._reject(lines, i, problem.reason, problem.syntax)
        return found

    def _screen(self, lines: Lines, error: Exception | None) -> list[int]:
        """Reject the lines the screen read refuses and return their indexes. `error` names a first
        bad line already; the lines before it parsed."""
        bad: list[int] = []
        cursor = 0
        while cursor < len(lines):
            if error is None:
                try:
                    arrow_read.parses(lines.span(cursor, len(lines)), self.suspects.screen_options)
                    break
                except pa.ArrowInvalid as exc:
                    error = exc
            found = self._locate(lines, cursor, error)
            if found is None:
                break
            index, reason, syntax = found
            self._reject(lines, index, reason, syntax)
            bad.append(index)
            cursor, error = index + 1, None
            if dense(len(bad), cursor):
                return bad + self._in_python(lines, cursor)
        return bad

    def _in_python(self, lines: Lines, start: int) -> list[int]:
        """Reject the lines from `start` on that Python finds bad, return their indexes."""
        bad = []
        for i in range(start, len(lines)):
            problem = self.diagnose(lines.raw(i))
            if problem:
                self._reject(lines, i, problem.reason, problem.syntax)
                bad.append(i)
        return bad

    def _probe(self, lines: Lines, first_error: Exception | None) -> None:
        """Locate bad lines with about one full Arrow call each. The clean lines before a bad one
        inside the failing piece are deferred and read together in one call at the end."""
        self.probes += 1
        removed = self._two_values(lines)
        if removed:  # the error's row no longer matches a line
            lines, first_error = lines.without(removed), None
        n = len(lines)
        deferred: list[tuple[int, int]] = []
        error, cursor, bad = first_error, 0, 0
        while cursor < n:
            batches, consumed = [], 0
            if error is None:
                try:
                    for batch in arrow_read.pieces(lines, cursor, self.parse_options):
                        batches.append(batch)
                        consumed += batch.num_rows
                except pa.ArrowInvalid as exc:
                    error = exc
                else:
                    if consumed != n - cursor:
                        break  # a line held two values: rows no longer match lines; go carefully
                    self._accept_batches(batches, lines, cursor)
                    cursor = n
                    break
            found = self._locate(lines, cursor + consumed, error)
            if found is None:
                break
            index, reason, syntax = found
            self._accept_batches(batches, lines, cursor)
            deferred.append((cursor + consumed, index))
            self._reject(lines, index, reason, syntax)
            cursor, error, bad = index + 1, None, bad + 1
            if dense(bad, cursor):
                rejected = self._in_python(lines, cursor)
                deferred += without(rejected, n, start=cursor)
                cursor = n
        self._leftovers(lines.pick(deferred))
        self._leftovers(lines.pick([(cursor, n)]))  # after a `break`: the careful path

    def _accept_batches(self, batches: list, lines: Lines, cursor: int) -> None:
        if not batches:
            return
        table = pa.Table.from_batches(batches, schema=self.parse_options.explicit_schema)
        self.accept(table, lines.numbers[cursor:cursor + table.num_rows], lambda i: lines.raw(cursor + i))

    def _locate(self, lines: Lines, cursor: int, error: Exception) -> tuple[int, str, bool] | None:
        """The bad line a read from `cursor` failed on, with its reason; None if it cannot be
        pinned down safely (the caller then bisects or probes)."""
        message = str(error)
        row = named_row(message)
        if row is not None:
            index = cursor + row
            if index >= len(lines):
                return None
            candidates = [index]
        else:
            # A conversion error names the value, not the row: try the lines that contain it.
            value = named_value(message)
            if value is None:
                return None
            candidates = lines.containing(value.encode(), cursor,
                                          limit=4, within=4 * arrow_read.PROBE_BLOCK_BYTES)
        for index in candidates:
            line = lines.raw(index)
            problem = self.diagnose(line)
            if problem:
                self.suspects.learn(message)
                return index, problem.reason, problem.syntax
            try:  # Python sees nothing wrong: let Arrow judge the line alone
                table = self._read(line)
            except pa.ArrowInvalid as exc:
                return index, explain_arrow_error(str(exc)), False
            if table.num_rows != 1:
                return index, "line holds more than one JSON value", False
        return None

    def _leftovers(self, lines: Lines) -> None:
        """The probe's last resort: one read when the lines are clean; otherwise pin down the
        failing line (by row, or by the value a conversion error names), drop it and read again;
        bisect only when neither works."""
        while len(lines):
            if len(lines) == 1:
                self.single(int(lines.numbers[0]), lines.raw(0))
                return
            try:
                table = self._read(lines.span(0, len(lines)))
            except pa.ArrowInvalid as exc:
                found = self._locate(lines, 0, exc)
            else:
                if table.num_rows == len(lines):
                    self.accept(table, lines.numbers, lines.raw)
                    return
                found = None  # a line held two values: rows do not match lines
            if found is None:
                mid = len(lines) // 2
                self._leftovers(lines.pick([(0, mid)]))
                self._leftovers(lines.pick([(mid, len(lines))]))
                return
            index, reason, syntax = found
            self._reject(lines, index, reason, syntax)
            lines = lines.pick([(0, index), (index + 1, len(lines))])
