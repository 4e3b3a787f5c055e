"""sinks.py on small tables: the silver Parquet file a SilverWriter leaves (rows with their lineage
columns, dropped rows left out, row groups of `row_group_rows`, Snappy, nothing of what was pending
when aborted) and the quarantine records a Quarantine writes (line order, the raw line and its
preview cap, the reason's subject, the counts, the record and byte caps and the summary of what they
dropped)."""

from __future__ import annotations

import datetime as dt
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lambdas.shared.schemas import TS, EventSchema
from lambdas.transform.sinks import FIRST_REJECTS, RAW_PREVIEW_CHARS, Quarantine, SilverWriter

SCHEMA = EventSchema(name="tests", arrow=pa.schema([("id", pa.string()), ("n", pa.int64())]), required=())
INGESTED = dt.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


def events(ids) -> pa.Table:
    ids = list(ids)
    return pa.table({"id": [f"e{i}" for i in ids], "n": ids}, schema=SCHEMA.arrow)


def writer(row_group_rows: int = 1000) -> tuple[SilverWriter, pa.BufferOutputStream]:
    out = pa.BufferOutputStream()
    return SilverWriter(schema=SCHEMA, source_key="bronze/tests/dt=2025-01-02/a.jsonl", parquet_out=out,
                        ingested_at=INGESTED, row_group_rows=row_group_rows), out


def parquet(out: pa.BufferOutputStream) -> pq.ParquetFile:
    return pq.ParquetFile(pa.BufferReader(out.getvalue()))


def test_silver_rows_carry_the_source_key_their_line_and_the_ingest_time():
    w, out = writer()
    w.emit(events(range(3)), np.array([7, 8, 10]))
    w.close()
    table = parquet(out).read()
    assert table.schema == SCHEMA.silver
    assert table.to_pylist() == [
        {"id": f"e{i}", "n": i, "_source_key": "bronze/tests/dt=2025-01-02/a.jsonl", "_line": line,
         "_ingested_at": INGESTED} for i, line in zip(range(3), [7, 8, 10], strict=True)]
    assert w.rows == 3


def test_line_numbers_of_any_integer_type_are_written_as_int64():
    w, out = writer()
    w.emit(events(range(2)), np.array([1, 2], dtype=np.int32))
    w.close()
    assert parquet(out).read().column("_line").to_pylist() == [1, 2]


@pytest.mark.parametrize("drop", [[0], [4], [1, 2], [0, 2, 4], [3, 4], [0, 1, 2, 3]])
def test_dropped_rows_are_left_out_with_their_line_numbers(drop):
    w, out = writer()
    w.emit(events(range(5)), np.arange(101, 106), drop)
    kept = [i for i in range(5) if i not in drop]
    assert w.rows == w.pending_rows == len(kept)
    [piece] = w.pending  # the rows around the dropped ones are one piece of one chunk
    assert {column.num_chunks for column in piece.columns} == {1}
    w.close()
    table = parquet(out).read()
    assert table.column("n").to_pylist() == kept
    assert table.column("_line").to_pylist() == [101 + i for i in kept]


@pytest.mark.parametrize("table", [events(range(3)), events([])])
def test_a_table_whose_rows_are_all_dropped_or_none_adds_nothing(table):
    w, out = writer(row_group_rows=1)
    w.emit(table, np.arange(table.num_rows), list(range(table.num_rows)))
    w.emit(events([]), np.arange(0))
    assert (w.rows, w.pending_rows, w.pending) == (0, 0, [])
    w.close()
    assert parquet(out).metadata.num_row_groups == 0


def test_pending_rows_are_written_once_they_fill_a_row_group():
    w, out = writer(row_group_rows=4)
    w.emit(events(range(3)), np.arange(3))
    assert w.pending_rows == 3
    w.emit(events(range(3, 4)), np.arange(3, 4))  # 4: exactly a row group
    assert (w.pending_rows, w.pending) == (0, [])
    w.emit(events(range(4, 7)), np.arange(4, 7))
    w.emit(events(range(7, 13)), np.arange(7, 13))  # 3 + 6 pending: written as row groups of 4
    assert w.pending_rows == 0
    w.emit(events(range(13, 15)), np.arange(13, 15))
    assert w.pending_rows == 2
    w.close()
    f = parquet(out)
    assert [f.metadata.row_group(i).num_rows for i in range(f.metadata.num_row_groups)] == [4, 4, 4, 1, 2]
    assert f.read().column("n").to_pylist() == list(range(15))
    assert w.rows == 15


def test_many_small_pieces_are_written_as_the_same_rows():
    w, out = writer(row_group_rows=1000)
    for i in range(40):
        w.emit(events([i]), np.array([i]))
    w.flush()
    w.emit(events([40]), np.array([40]))
    w.close()
    f = parquet(out)
    assert f.read().column("n").to_pylist() == list(range(41))
    assert [f.metadata.row_group(i).num_rows for i in range(f.metadata.num_row_groups)] == [40, 1]


def test_silver_is_snappy_compressed():
    w, out = writer()
    w.emit(events(range(3)), np.arange(3))
    w.close()
    columns = parquet(out).metadata.row_group(0)
    assert {columns.column(i).compression for i in range(columns.num_columns)} == {"SNAPPY"}


def test_an_aborted_writer_leaves_what_was_written_and_not_what_was_pending():
    w, out = writer(row_group_rows=2)
    w.emit(events(range(2)), np.arange(2))
    w.emit(events(range(2, 3)), np.arange(2, 3))
    w.abort()
    assert parquet(out).read().column("n").to_pylist() == [0, 1]


def test_an_ingest_time_in_another_zone_is_written_as_the_same_instant_in_utc():
    out = pa.BufferOutputStream()
    paris = dt.timezone(dt.timedelta(hours=1))
    w = SilverWriter(schema=SCHEMA, source_key="k", parquet_out=out, ingested_at=INGESTED.astimezone(paris),
                     row_group_rows=10)
    w.emit(events(range(1)), np.arange(1))
    w.close()
    column = parquet(out).read().column("_ingested_at")
    assert column.type == TS and column.to_pylist() == [INGESTED]


# Quarantine


def records(out: io.BytesIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().decode("utf-8").splitlines()]


def test_rejected_lines_become_records_written_in_line_order_per_write():
    out = io.BytesIO()
    q = Quarantine(out)
    q.reject(10, b'{"n": "x"}', "field 'n' is a string where the schema expects a number")
    q.reject(9, b"not json", "malformed JSON: Invalid value.", syntax=True)
    assert out.getvalue() == b""  # held until the block is written
    q.write()
    q.reject(1, b"{}", "line lacks required field 'id'")
    q.close()
    assert records(out) == [  # 9 before 10: in line order, not in the order of the records' text
        {"line": 9, "reason": "malformed JSON: Invalid value.", "raw": "not json"},
        {"line": 10, "reason": "field 'n' is a string where the schema expects a number", "raw": '{"n": "x"}'},
        {"line": 1, "reason": "line lacks required field 'id'", "raw": "{}"},
    ]
    assert (q.rejected, q.syntax_rejects, q.kept, q.dropped) == (3, 1, 3, 0)
    assert q.first_rejects == [(10, "field 'n' is a string where the schema expects a number"),
                               (9, "malformed JSON: Invalid value."), (1, "line lacks required field 'id'")]


def test_a_record_keeps_non_ascii_as_utf_8_and_escapes_invalid_utf_8():
    out = io.BytesIO()
    q = Quarantine(out)
    q.reject(np.int64(2), "café".encode() + b"\xff", "malformed JSON")
    q.close()
    assert "café".encode() in out.getvalue()  # not \u00e9: the byte cap counts what is written
    assert records(out) == [{"line": 2, "reason": "malformed JSON", "raw": "café\\xff"}]
    assert q.kept_bytes == len(out.getvalue())


@pytest.mark.parametrize(("size", "truncated"), [(RAW_PREVIEW_CHARS, False), (RAW_PREVIEW_CHARS + 1, True)])
def test_the_raw_line_is_kept_up_to_1_mib_and_a_longer_one_says_how_long_it_was(size, truncated):
    assert RAW_PREVIEW_CHARS == 1 << 20
    out = io.BytesIO()
    q = Quarantine(out)
    q.reject(1, b"a" * (size - 1) + b"b", "too long")
    q.close()
    [record] = records(out)
    assert record["raw"] == ("a" * RAW_PREVIEW_CHARS if truncated else "a" * (size - 1) + "b")
    assert record.get("raw_truncated_from_bytes") == (size if truncated else None)


def test_each_record_is_its_own_json_when_lines_and_reasons_repeat_and_change():
    """A flood repeats one (reason, raw) pair: each record is still exactly its own JSON, whichever
    of the two changes from one reject to the next."""
    rejects = [(1, b"{}", "a"), (2, b"{}", "a"), (3, b"[]", "a"), (4, b"[]", "b"), (5, b"{}", "b"),
               (6, b"x" * (RAW_PREVIEW_CHARS + 5), "b"), (7, b"x" * (RAW_PREVIEW_CHARS + 5), "b"),
               (8, b"x" * RAW_PREVIEW_CHARS, "b"), (9, b'"\xc3\xa9\xff', "c \u00e9"), (10, b'"\xc3\xa9\xff', "c \u00e9")]
    out = io.BytesIO()
    q = Quarantine(out)
    for line, raw, reason in rejects:
        q.reject(line, raw, reason)
    q.close()
    expected = []
    for line, raw, reason in rejects:
        record = {"line": line, "reason": reason, "raw": raw[:RAW_PREVIEW_CHARS].decode("utf-8", "backslashreplace")}
        if len(raw) > RAW_PREVIEW_CHARS:
            record["raw_truncated_from_bytes"] = len(raw)
        expected.append(json.dumps(record, ensure_ascii=False).encode() + b"\n")
    assert out.getvalue().splitlines(keepends=True) == expected
    assert q.kept_bytes == len(out.getvalue())


def test_a_reason_about_the_line_names_the_subject_instead():
    out = io.BytesIO()
    q = Quarantine(out)
    q.subject = "array element"
    q.reject(1, b"5", "line is a JSON number, expected an object")
    q.reject(2, b"{}", "lines of the file: not about the line itself")
    q.reject(3, b"{}", "malformed JSON: line 3")
    q.close()
    assert [r["reason"] for r in records(out)] == [
        "array element is a JSON number, expected an object", "lines of the file: not about the line itself",
        "malformed JSON: line 3"]
    assert q.first_rejects[0] == (1, "array element is a JSON number, expected an object")


def test_only_the_first_five_reasons_are_kept_for_the_result():
    assert FIRST_REJECTS == 5
    q = Quarantine(io.BytesIO(), max_records=3)
    for line in range(1, 8):
        q.reject(line, b"x", f"reason {line}")
    q.reject_many(np.array([20, 21]), "counted")
    assert q.first_rejects == [(line, f"reason {line}") for line in range(1, 6)]
    q = Quarantine(io.BytesIO(), max_records=0)
    q.reject_many(np.array([30, 31]), "counted")
    q.reject_many(np.array([32]), "again")
    assert q.first_rejects == [(30, "counted"), (32, "again")]


def test_the_default_cap_is_10_000_records_or_64_mib():
    q = Quarantine(io.BytesIO())
    assert (q.max_records, q.max_bytes) == (10_000, 64 << 20)
    assert not q.full


def summary(out: io.BytesIO) -> dict:
    return records(out)[-1]


def test_rejects_past_the_record_cap_are_counted_and_summed_up_in_one_last_record():
    out = io.BytesIO()
    q = Quarantine(out, max_records=2)
    for line in (5, 3, 9, 12, 7):
        q.reject(line, b"bad", "malformed JSON", syntax=True)
    q.close()
    kept = records(out)[:-1]
    assert [r["line"] for r in kept] == [3, 5]
    assert (q.rejected, q.syntax_rejects, q.kept, q.dropped) == (5, 5, 2, 3)
    last = summary(out)
    assert {k: v for k, v in last.items() if k != "reason"} == {
        "line": 7, "raw": "", "dropped_lines": 3, "last_dropped_line": 12}
    reason = last["reason"]
    assert reason.startswith("quarantine cap reached: 3 more rejected line(s) between lines 7 and 12 ")
    assert "the cap is 2 records or 67108864 bytes per object: ELT_QUARANTINE_MAX_LINES, ELT_QUARANTINE_MAX_BYTES)" \
        in reason
    assert reason.endswith("; their rows are not in silver either")


def test_a_zero_record_cap_keeps_nothing():
    out = io.BytesIO()
    q = Quarantine(out, max_records=0)
    assert q.full
    q.reject(4, b"bad", "malformed JSON")
    q.close()
    assert [r.get("dropped_lines") for r in records(out)] == [1]
    assert summary(out)["line"] == summary(out)["last_dropped_line"] == 4


def test_a_record_that_would_pass_the_byte_cap_is_dropped_and_so_is_everything_after_it():
    one = len(json.dumps({"line": 1, "reason": "r", "raw": "x"}, ensure_ascii=False)) + 1
    out = io.BytesIO()
    q = Quarantine(out, max_records=100, max_bytes=2 * one)
    q.reject(1, b"x", "r")
    q.reject(2, b"y", "r")  # exactly at the cap: kept
    assert q.kept_bytes == 2 * one and not q.full
    q.reject(3, b"z", "r")
    assert q.full
    q.reject(4, b"", "r")  # smaller, but the quarantine is full
    q.close()
    assert [r["line"] for r in records(out)[:-1]] == [1, 2]
    assert (summary(out)["line"], summary(out)["last_dropped_line"], summary(out)["dropped_lines"]) == (3, 4, 2)
    assert q.kept == 2


def test_rejects_counted_at_once_widen_the_dropped_range():
    out = io.BytesIO()
    q = Quarantine(out, max_records=1)
    q.reject(50, b"kept", "r")
    q.reject_many(np.array([], dtype=np.int64), "nothing")
    assert (q.rejected, q.dropped, q.first_rejects) == (1, 0, [(50, "r")])
    q.reject_many(np.array([60, 55, 70]), "missing")
    q.reject(40, b"late", "r")
    q.reject_many(np.array([80, 90]), "missing")
    q.close()
    assert (q.rejected, q.dropped) == (7, 6)
    assert {k: summary(out)[k] for k in ("line", "last_dropped_line", "dropped_lines")} == {
        "line": 40, "last_dropped_line": 90, "dropped_lines": 6}


def test_a_quarantine_without_rejects_writes_nothing():
    out = io.BytesIO()
    q = Quarantine(out)
    q.write()
    q.close()
    assert out.getvalue() == b""
