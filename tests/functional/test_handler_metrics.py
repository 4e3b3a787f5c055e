"""Both handlers emit EMF records per invocation; the transform records schema drift in the ledger."""

from __future__ import annotations

import json

from ops.gen_events import generate
from tests.unit.test_metrics_and_drift import assert_valid_emf

KEY = "bronze/orders/dt=2025-01-01/drift.jsonl"


def emf(capsys) -> list[dict]:
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    return [x for x in lines if "_aws" in x]


def body(n: int = 20, bad: float = 0.0, extra: dict | None = None) -> bytes:
    out = []
    for ok, text in generate(type_="orders", count=n, seed=8, bad_ratio=bad):
        if ok and extra:
            text = json.dumps({**json.loads(text), **extra})
        out.append(text)
    return ("\n".join(out) + "\n").encode()


def test_ingest_and_transform_emit_their_metrics(pipeline, capsys):
    data = body(bad=0.2, extra={"coupon": "C"})
    etag = pipeline.put(KEY, data)
    capsys.readouterr()
    pipeline.ingest_app.handler(pipeline.s3_event(KEY, etag, len(data)))
    ingest = emf(capsys)
    assert [(r["function"], r["type"], r["Objects"], r["BytesIn"]) for r in ingest] == [
        ("ingest", "orders", 1, len(data))]
    pipeline.ingest_app.handler(pipeline.s3_event(KEY, etag, len(data)))  # the duplicate event
    assert [(r["reason"], r["ObjectsSkipped"]) for r in emf(capsys)] == [("duplicate", 1)]
    pipeline.transform_app.handler(pipeline.sqs_event(pipeline.receive_all()))
    (record,) = emf(capsys)
    item = pipeline.ledger.versions(bucket=pipeline.bronze, key=KEY)[0]
    assert record["function"] == "transform" and record["type"] == "orders"
    assert record["Objects"] == 1 and record["BytesIn"] == len(data)
    assert record["RowsWritten"] == item["rows"] and record["RowsQuarantined"] == item["rejected_rows"] > 0
    assert len(record["DurationPerObject"]) == 1 and record["ObjectsWithUnknownFields"] == 1
    for r in [*ingest, record]:
        assert_valid_emf(r)
    assert json.loads(item["unknown_fields"]) == {"coupon": item["rows"]}
    assert item["fields_examined"] == sum(1 for x in data.splitlines() if _json_object(x))


def _json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_failures_and_superseded_objects_are_counted(pipeline, capsys):
    etag = pipeline.put(KEY, b"\x1f\x8b not gzip, not json")
    pipeline.ingest_app.handler(pipeline.s3_event(KEY, etag, 10))
    units = pipeline.receive_all()
    capsys.readouterr()
    pipeline.transform_app.handler(pipeline.sqs_event(units))
    assert [(r["type"], r.get("Failed")) for r in emf(capsys)] == [("orders", 1)]
    pipeline.put(KEY, body())  # overwritten: the old unit is superseded
    pipeline.transform_app.handler(pipeline.sqs_event(units))
    assert [(r["type"], r.get("Superseded")) for r in emf(capsys)] == [("orders", 1)]


def test_a_later_version_without_drift_clears_the_ledger_items_drift(pipeline):
    pipeline.run(KEY, body(extra={"coupon": "C"}))
    pipeline.run("bronze/orders/dt=2025-01-01/clean.jsonl", body())
    clean = pipeline.ledger.versions(bucket=pipeline.bronze, key="bronze/orders/dt=2025-01-01/clean.jsonl")[0]
    assert "unknown_fields" not in clean


def test_schema_drift_aggregates_fields_objects_and_first_sight(pipeline):
    from click.testing import CliRunner

    from ops.cli import cli

    pipeline.run("bronze/orders/dt=2025-01-01/a.jsonl", body(n=10, extra={"coupon": "C"}))
    pipeline.run("bronze/orders/dt=2025-01-02/b.jsonl", body(n=10, extra={"coupon": "C", "promo": 1}))
    pipeline.run("bronze/orders/dt=2025-01-03/c.jsonl", body(n=10))
    env = {"ELT_LEDGER_TABLE": pipeline.names.ledger_table}
    result = CliRunner().invoke(cli, ["schema", "drift", "--json"], env=env, catch_exceptions=False)
    report = json.loads(result.stdout)
    assert report["objects_with_drift"] == 2
    fields = {(f["type"], f["field"]): f for f in report["fields"]}
    assert set(fields) == {("orders", "coupon"), ("orders", "promo")}
    assert (fields[("orders", "coupon")]["objects"], fields[("orders", "coupon")]["lines"]) == (2, 20)
    assert fields[("orders", "promo")]["examples"] == [f"s3://{pipeline.bronze}/bronze/orders/dt=2025-01-02/b.jsonl"]
    assert fields[("orders", "coupon")]["first_seen"] <= fields[("orders", "promo")]["first_seen"]
    text = CliRunner().invoke(cli, ["schema", "drift", "--type", "orders"], env=env, catch_exceptions=False)
    assert "coupon" in text.stdout and "20/20" in text.stdout
    none = CliRunner().invoke(cli, ["schema", "drift", "--type", "shipments"], env=env, catch_exceptions=False)
    assert "no undeclared fields" in none.stdout
    assert CliRunner().invoke(cli, ["schema", "drift", "--type", "nope"], env=env).exit_code == 2
    old = CliRunner().invoke(cli, ["schema", "drift", "--since", "2020-01-01", "--json"], env=env)
    assert json.loads(old.stdout)["objects_with_drift"] == 2
