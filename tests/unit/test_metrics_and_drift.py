"""EMF records (the spec's shape and limits) and schema-drift counting in the transform."""

from __future__ import annotations

import json

import pytest

from lambdas.shared import schemas
from lambdas.shared.metrics import MAX_METRICS, MAX_VALUES, UNITS, Metrics
from lambdas.transform.core import transform_bytes
from lambdas.transform.drift import FIRST_LINES, MAX_NAME_CHARS, MAX_NAMES, Drift
from ops.gen_events import generate


def assert_valid_emf(record: dict) -> None:
    """The EMF specification's rules a CloudWatch Logs extraction relies on."""
    meta = record["_aws"]
    assert isinstance(meta["Timestamp"], int)
    for directive in meta["CloudWatchMetrics"]:
        assert directive["Namespace"]
        assert len(directive["Metrics"]) <= MAX_METRICS
        for dimension_set in directive["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(record[name], str) and record[name]
        for metric in directive["Metrics"]:
            value = record[metric["Name"]]
            assert metric["Unit"] == UNITS[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert 0 < len(values) <= MAX_VALUES and all(isinstance(v, int | float) for v in values)


def test_records_group_by_type_and_carry_function_and_type_dimensions():
    out = []
    m = Metrics("transform", out=out.append, clock=lambda: 1700000000.5, environ={})
    m.add("Objects", type_="orders")
    m.add("RowsWritten", 40, type_="orders")
    m.add("RowsWritten", 2, type_="orders")
    m.value("DurationPerObject", 12.5, type_="orders")
    m.add("Failed", type_=None)
    m.skipped("source-deleted", type_="shipments")
    m.flush()
    assert [r.get("type") for r in out] == ["orders", "unknown", "shipments"]
    orders = out[0]
    assert orders["function"] == "transform" and orders["RowsWritten"] == 42 and orders["Objects"] == 1
    assert orders["DurationPerObject"] == [12.5]
    assert orders["_aws"]["Timestamp"] == 1700000000500
    assert orders["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["function", "type"], ["function"]]
    assert out[2]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["function", "type", "reason"],
                                                                     ["function", "reason"]]
    assert out[2]["ObjectsSkipped"] == 1 and out[2]["reason"] == "source-deleted"
    for record in out:
        assert_valid_emf(record)
    m.flush()
    assert len(out) == 3  # flushed: nothing twice


def test_long_arrays_are_split_over_records_and_hostile_dimension_values_are_tamed():
    out = []
    m = Metrics("x", out=out.append, environ={"AWS_LAMBDA_FUNCTION_NAME": "elt-dev-transform"})
    for i in range(250):
        m.value("DurationPerObject", i, type_='or"ders\n' + "z" * 200)
    m.add("Objects", 250, type_='or"ders\n' + "z" * 200)
    m.flush()
    assert [len(r["DurationPerObject"]) for r in out] == [100, 100, 50]
    assert "Objects" in out[0] and all("Objects" not in r for r in out[1:])
    assert {r["function"] for r in out} == {"elt-dev-transform"}
    assert all(len(r["type"]) == 64 and '"' not in r["type"] and "\n" not in r["type"] for r in out)
    for record in out:
        assert_valid_emf(record)
    with pytest.raises(ValueError):
        m.add("NoSuchMetric")


def test_metrics_go_out_as_log_lines_even_when_the_log_level_is_warning(capsys):
    import logging

    logging.getLogger("elt").setLevel("WARNING")
    try:
        m = Metrics("ingest", environ={})
        m.add("Objects", type_="orders")
        capsys.readouterr()
        m.flush()
    finally:
        logging.getLogger("elt").setLevel("INFO")
    line = json.loads(capsys.readouterr().out)
    assert line["message"] == "metrics" and line["Objects"] == 1
    assert_valid_emf(line)


def test_the_function_dimension_is_the_lambda_s_name_from_its_environment_or_else_the_role(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "elt-prod-ingest")
    out = []
    m = Metrics("ingest", out=out.append)
    m.add("Objects", type_="orders")
    m.flush()
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    m = Metrics("ingest", out=out.append)
    m.add("Objects", type_="orders")
    m.flush()
    assert [r["function"] for r in out] == ["elt-prod-ingest", "ingest"]


def test_skips_are_counted_per_type_and_reason_and_each_disallowed_character_becomes_one_underscore():
    out = []
    m = Metrics("ingest", out=out.append, environ={})
    for _ in range(3):
        m.skipped("duplicate")
    m.skipped("in flight/x", type_="or ders")
    m.flush()
    assert [(r["type"], r["reason"], r["ObjectsSkipped"]) for r in out] == [
        ("or_ders", "in_flight_x", 1), ("unknown", "duplicate", 3)]
    with pytest.raises(ValueError, match="ObjectsSkipped"):  # only through skipped(), which adds the reason
        m.add("ObjectsSkipped", type_="orders")
    assert m.records() == []


def test_a_type_with_only_observations_gets_its_record_and_fractional_sums_are_kept():
    out = []
    m = Metrics("transform", out=out.append, environ={})
    m.value("DurationPerObject", 12.3456789, type_="orders")  # kept to the microsecond
    m.add("BytesIn", 0.25, type_="shipments")
    m.add("BytesIn", 0.5, type_="shipments")
    m.add("Objects", 2, type_="shipments")
    m.flush()
    assert [(r["type"], {k: r[k] for k in ("DurationPerObject", "BytesIn", "Objects") if k in r}) for r in out] == [
        ("orders", {"DurationPerObject": [12.346]}), ("shipments", {"BytesIn": 0.75, "Objects": 2})]
    assert json.dumps(out[1]["Objects"]) == "2"  # a count reads as a count in the log line
    for record in out:
        assert_valid_emf(record)


# --- schema drift -----------------------------------------------------------------------------------------
def lines(n: int, extra: dict | None = None, every: int = 1) -> bytes:
    out = []
    for i, (_, text) in enumerate(generate(type_="orders", count=n, seed=3)):
        value = json.loads(text)
        if extra and i % every == 0:
            value.update(extra)
        out.append(json.dumps(value))
    return ("\n".join(out) + "\n").encode()


def run(data: bytes, **kwargs):
    result, table, _ = transform_bytes(data, schema=schemas.get("orders"), source_key="bronze/orders/dt=x/a.jsonl",
                                       gzipped=False, **kwargs)
    return result, table


def test_undeclared_top_level_fields_are_counted_and_never_reach_silver():
    result, table = run(lines(50, {"coupon": "X1", "loyalty": {"web": True}}, every=5))
    assert result.unknown_fields == {"coupon": 10, "loyalty": 10}
    assert result.fields_examined == 50
    assert "coupon" not in table.column_names and result.rows == 50
    clean, _ = run(lines(50))
    assert clean.unknown_fields == {} and clean.fields_examined == 50


def test_a_json_array_is_counted_element_by_element():
    data = json.dumps([dict(json.loads(t), promo=1) for _, t in generate(type_="orders", count=7, seed=1)]).encode()
    result, _ = run(data)
    assert result.fmt == "json" and result.unknown_fields == {"promo": 7} and result.fields_examined == 7


def test_names_and_their_length_are_bounded_per_object():
    extra = {f"f{i:02d}_" + "n" * 100: i for i in range(MAX_NAMES + 5)}
    result, _ = run(lines(3, extra))
    names = [n for n in result.unknown_fields if n != "(more names)"]
    assert len(names) == MAX_NAMES and all(len(n) == MAX_NAME_CHARS for n in names)
    assert result.unknown_fields["(more names)"] == 5


def test_past_the_first_lines_each_block_is_sampled():
    data = lines(FIRST_LINES) + lines(3000, {"late": 1})
    result, _ = run(data, block_bytes=64 * 1024)
    assert FIRST_LINES < result.fields_examined < FIRST_LINES + 3000 // 4  # a sample, not every line
    assert result.unknown_fields["late"] == result.fields_examined - FIRST_LINES  # every sampled late line
    drift = Drift(schemas.get("orders"))
    drift.examined = FIRST_LINES
    long_line = b'{"x": "' + b"a" * 10000 + b'"}'
    drift.block(long_line)  # one line longer than the sampling step: looked at once
    assert drift.counts == {"x": 1}


def test_bad_lines_do_not_count_as_drift():
    data = lines(5) + b'{"broken": \n[1, 2]\n'
    result, _ = run(data)
    assert result.unknown_fields == {} and result.rejected == 2
