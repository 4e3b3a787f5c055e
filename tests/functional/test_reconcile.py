"""Reconcile on moto: every gap category seeded and found exactly, replay fills them, cost."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from click.testing import CliRunner

from ops.cli import cli
from ops.reconcile import CATEGORIES, classify, reconcile, replay_gaps
from ops.timewindow import make_window
from tests.conftest import wait_until
from tests.functional.test_listing_replay import Calls, generated

DAY = "2025-03-10"
WINDOW = make_window(start=DAY, end="2025-03-11", since=None)


def key(name: str, type_: str = "orders", day: str = DAY) -> str:
    return f"bronze/{type_}/dt={day}/{name}.jsonl"


def drop_notifications(pipeline) -> None:
    """The S3 events of what was just uploaded are lost (PurgeQueue allows one call a minute)."""
    url = pipeline.provisioned.ingest_queue_url
    # Each batch is deleted as it is received: on a loaded machine, receiving hundreds first outlasts
    # their visibility timeout, and the ones received again have a new receipt handle.
    while messages := pipeline.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                                   VisibilityTimeout=30).get("Messages"):
        pipeline.sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])


def seed_every_gap(pipeline) -> dict[str, str]:
    """One object per category (and healthy ones around them); returns key -> expected category."""
    for name in ("ok-1", "ok-2", "missing", "stale", "failed-then-copied"):
        pipeline.put(key(name), generated("orders", 5, seed=len(name)))
    pipeline.pump()
    # S3 LastModified has one-second resolution: the overwrite below must land in a later second
    # than the silver the first version made.
    first = max(o["LastModified"] for o in pipeline.s3.list_objects_v2(Bucket=pipeline.silver)["Contents"])
    wait_until(lambda: dt.datetime.now(dt.UTC).replace(microsecond=0) > first, timeout=10,
               what="a second later than the first upload", interval=0.05)
    # silver-stale: the bronze object is overwritten and its event lost.
    pipeline.put(key("stale"), generated("orders", 6, seed=99))
    # never-ingested: uploaded, event lost.
    pipeline.put(key("lost"), generated("orders", 5, seed=7))
    drop_notifications(pipeline)
    # silver-missing: DONE, silver deleted since.
    pipeline.s3.delete_object(Bucket=pipeline.silver, Key="silver/orders/dt=2025-03-10/missing.parquet")
    # claim-expired, queued-too-long, failed: items as a crashed ingest or a failing transform leave them.
    past = time.time() - 7200
    old = type(pipeline.ledger)(pipeline.ddb, pipeline.ledger.table, clock=lambda: past)
    for name in ("crashed", "stuck", "poison"):
        etag = pipeline.put(key(name), generated("orders", 5, seed=len(name)))
        old.claim(bucket=pipeline.bronze, key=key(name), etag=etag, size=10, type_="orders", dt=DAY, lease_seconds=60)
        if name == "stuck":
            old.mark_queued(bucket=pipeline.bronze, key=key(name), etag=etag, message_id="lost")
        if name == "poison":
            old.mark_failed(bucket=pipeline.bronze, key=key(name), etag=etag, error="UnreadableObject: not JSON")
    drop_notifications(pipeline)
    # orphan-silver: a silver object whose bronze source is gone.
    pipeline.s3.put_object(Bucket=pipeline.silver, Key="silver/orders/dt=2025-03-10/gone.parquet", Body=b"PAR1")
    # Not gaps: a FAILED item that a copy replay later fixed; a key ingest skips.
    etag = pipeline.s3.head_object(Bucket=pipeline.bronze, Key=key("failed-then-copied"))["ETag"].strip('"')
    old.mark_failed(bucket=pipeline.bronze, key=key("failed-then-copied"), etag=etag, error="Timeout")
    pipeline.s3.put_object(Bucket=pipeline.bronze, Key=f"bronze/orders/dt={DAY}/notes.txt", Body=b"x")
    drop_notifications(pipeline)
    return {key("lost"): "never-ingested", key("crashed"): "claim-expired", key("stuck"): "queued-too-long",
            key("poison"): "failed", key("missing"): "silver-missing", key("stale"): "silver-stale",
            "silver/orders/dt=2025-03-10/gone.parquet": "orphan-silver"}


def run(pipeline, **kwargs):
    gaps = []
    report = reconcile(pipeline.s3, pipeline.ddb, bucket=pipeline.bronze, prefix="bronze/", window=WINDOW,
                       silver_bucket=pipeline.silver, table=pipeline.names.ledger_table, on_gap=gaps.append, **kwargs)
    return report, gaps


@pytest.mark.parametrize("by", ["partition", "modified"])
def test_reconcile_finds_exactly_the_seeded_gaps_of_every_category(pipeline, by):
    expected = seed_every_gap(pipeline)
    window = WINDOW if by == "partition" else make_window(since="1h", start=None, end=None)
    gaps = []
    report = reconcile(pipeline.s3, pipeline.ddb, bucket=pipeline.bronze, prefix="bronze/", window=window,
                       silver_bucket=pipeline.silver, table=pipeline.names.ledger_table, on_gap=gaps.append, by=by)
    assert report.objects == 9
    assert {g.key: g.category for g in gaps} == expected
    assert set(expected.values()) == set(CATEGORIES)
    assert report.gaps == len(expected) and report.not_bronze_keys == 1
    assert report.by_category == {c: 1 for c in CATEGORIES}
    poison = next(g for g in gaps if g.category == "failed")
    assert "UnreadableObject" in poison.detail


def test_replaying_the_gaps_fills_them_and_a_second_reconcile_finds_only_the_orphan(pipeline):
    seed_every_gap(pipeline)
    _, gaps = run(pipeline)
    pipeline.s3.put_object(Bucket=pipeline.bronze, Key=key("poison"),  # the producer's fix for the poison object
                           Body=generated("orders", 5, seed=1))
    drop_notifications(pipeline)
    gaps = [g for g in run(pipeline)[1]]
    report = run(pipeline)[0]
    result = replay_gaps(gaps=gaps, how="sqs", report=report, sqs=pipeline.sqs, queue_url=pipeline.queue_url)
    assert result.done == 6 and not result.failed  # every gap but the orphan
    pipeline.pump()
    report, again = run(pipeline)
    assert [(g.key, g.category) for g in again] == [("silver/orders/dt=2025-03-10/gone.parquet", "orphan-silver")]
    assert report.objects == 9


def test_a_copy_replay_fills_the_gaps_too(pipeline):
    seed_every_gap(pipeline)
    pipeline.s3.delete_object(Bucket=pipeline.silver, Key="silver/orders/dt=2025-03-10/gone.parquet")
    pipeline.s3.delete_object(Bucket=pipeline.bronze, Key=key("poison"))
    report, gaps = run(pipeline)
    assert len(gaps) == 5
    result = replay_gaps(gaps=gaps, how="copy", report=report, s3=pipeline.s3, dest_prefix="bronze/replay/r1")
    assert result.done == 5
    pipeline.pump()
    assert run(pipeline)[1] == []


def test_cost_grows_with_the_window_not_the_bucket_and_no_object_is_headed(pipeline):
    for day in range(1, 29):
        for i in range(3):
            pipeline.put(key(f"p{i}", day=f"2025-02-{day:02d}"), b'{"a":1}\n')
    for i in range(250):
        pipeline.put(key(f"n{i:03d}"), b'{"a":1}\n')
    drop_notifications(pipeline)
    s3_calls, ddb_calls = Calls(pipeline.s3), Calls(pipeline.ddb)
    report, gaps = run(pipeline)
    assert len(gaps) == 250 and report.objects == 250
    assert ddb_calls.counts == {"BatchGetItem": 3}  # ceil(250 / 100)
    assert set(s3_calls.counts) == {"ListObjectsV2"}  # no HeadObject, no GetObject
    # bronze: root probe + delimiter + type range; silver the same; one listing per partition each
    listed = s3_calls.counts["ListObjectsV2"]
    assert listed == report.api_calls["s3:ListObjectsV2"] <= 8
    for day in range(1, 29):  # a month more history costs nothing more
        pipeline.put(key("p0", day=f"2025-01-{day:02d}"), b'{"a":1}\n')
    s3_calls.counts.clear()
    run(pipeline)
    assert s3_calls.counts["ListObjectsV2"] == listed


def test_unprocessed_keys_are_asked_again(pipeline):
    pipeline.put(key("lost"), b'{"a":1}\n')
    drop_notifications(pipeline)
    real = pipeline.ddb.batch_get_item
    calls = []

    def throttled(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            return {"Responses": {}, "UnprocessedKeys": kwargs["RequestItems"]}
        return real(**kwargs)

    pipeline.ddb.batch_get_item = throttled
    from ops import ledger

    found = ledger.batch_get(pipeline.ddb, table=pipeline.names.ledger_table, keys=[("s3://b/k", "e")],
                             sleep=lambda s: None)
    assert found == {} and len(calls) == 2


def test_classify_rules_at_their_edges():
    from ops.listing import ObjectInfo

    moment = dt.datetime(2025, 3, 10, 12, tzinfo=dt.UTC)
    obj = ObjectInfo(bucket="b", key=key("x"), size=1, etag="e", last_modified=moment)
    now = moment.timestamp() + 10
    item = {"status": "DONE", "expiration": now + 100, "finished_at": "2025-03-10T12:00:01Z"}
    assert classify(obj, item, moment.timestamp(), now=now, queued_max_age=60) is None  # same second: current
    assert classify(obj, item, moment.timestamp() - 1, now=now, queued_max_age=60)[0] == "silver-stale"
    assert classify(obj, {**item, "expiration": now - 1}, None, now=now, queued_max_age=60)[0] == "never-ingested"
    claimed = {"status": "CLAIMED", "expiration": now + 100, "lease_until": int(now * 1000) + 1,
               "claimed_at": "2025-03-10T12:00:00Z"}
    assert classify(obj, claimed, None, now=now, queued_max_age=60) is None  # lease still running
    assert classify(obj, {**claimed, "lease_until": int(now * 1000) - 1}, None, now=now,
                    queued_max_age=60)[0] == "claim-expired"
    queued = {"status": "QUEUED", "expiration": now + 100, "queued_at": "2025-03-10T12:00:00Z"}
    assert classify(obj, queued, None, now=now, queued_max_age=60) is None
    assert classify(obj, queued, None, now=now + 60, queued_max_age=60)[0] == "queued-too-long"


# --- the command ------------------------------------------------------------------------------------
def eltops(pipeline, *args, input=None):
    env = {"ELT_BRONZE_BUCKET": pipeline.bronze, "ELT_SILVER_BUCKET": pipeline.silver,
           "ELT_LEDGER_TABLE": pipeline.names.ledger_table, "ELT_QUEUE_URL": pipeline.queue_url}
    return CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)


def test_the_command_summarises_streams_and_exits_4_on_gaps(pipeline, tmp_path):
    expected = seed_every_gap(pipeline)
    result = eltops(pipeline, "reconcile", "--start", DAY, "--end", "2025-03-11")
    assert result.exit_code == 4, result.output
    assert "never-ingested" in result.stdout and key("lost") in result.stdout
    assert "runbooks/find-and-fill-gaps.md" in result.stderr
    result = eltops(pipeline, "reconcile", "--start", DAY, "--end", "2025-03-11", "--jsonl",
                    "--out", str(tmp_path / "gaps.jsonl"))
    streamed = [json.loads(line) for line in result.stdout.splitlines()]
    assert {g["key"]: g["category"] for g in streamed} == expected
    assert (tmp_path / "gaps.jsonl").read_text().splitlines() == result.stdout.splitlines()
    result = eltops(pipeline, "reconcile", "--start", DAY, "--end", "2025-03-11", "--json")
    body = json.loads(result.stdout)
    assert body["gaps"] and body["by_category"]["orphan-silver"] == 1 and body["replayable"] == 6


def test_the_command_replays_after_confirmation_and_then_reports_nothing_replayable(pipeline):
    seed_every_gap(pipeline)
    window = ["--start", DAY, "--end", "2025-03-11"]
    refused = eltops(pipeline, "reconcile", *window, "--replay", "sqs")  # no terminal, no --yes
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    dry = eltops(pipeline, "reconcile", *window, "--replay", "sqs", "--dry-run")
    assert dry.exit_code == 4 and "would replay 6 object(s)" in dry.stdout
    done = eltops(pipeline, "reconcile", *window, "--replay", "sqs", "--yes", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["done"] == 6
    pipeline.pump()
    again = eltops(pipeline, "reconcile", *window, "--json")
    assert [g["category"] for g in json.loads(again.stdout)["gaps"]] == ["orphan-silver"]


def test_bad_options_are_usage_errors(pipeline):
    assert eltops(pipeline, "reconcile", "--since", "1d", "--prefix", "silver/").exit_code == 2
    assert eltops(pipeline, "reconcile", "--since", "1d", "--yes").exit_code == 2
    assert eltops(pipeline, "reconcile", "--since", "1d", "--queued-max-age", "soon").exit_code == 2


def test_partitions_joined_side_by_side_give_the_same_gaps_in_the_same_order(pipeline):
    for day in range(1, 7):
        for i in range(3):
            pipeline.put(key(f"n{i}", type_=("orders", "shipments")[day % 2], day=f"2025-03-{day:02d}"), b'{"a":1}\n')
    drop_notifications(pipeline)
    window = make_window(start="2025-03-01", end="2025-03-07", since=None)
    results = []
    for concurrency in (1, 4):
        gaps = []
        report = reconcile(pipeline.s3, pipeline.ddb, bucket=pipeline.bronze, prefix="bronze/", window=window,
                           silver_bucket=pipeline.silver, table=pipeline.names.ledger_table, on_gap=gaps.append,
                           concurrency=concurrency)
        results.append(([g.key for g in gaps], report.objects, report.partitions, report.api_calls))
    assert results[0] == results[1]
    keys = results[0][0]
    assert len(keys) == 18 and keys == sorted(keys, key=lambda k: (k.split("/")[1], k.split("/")[2], k))


def test_a_mistyped_bucket_or_table_is_named_with_the_option_that_gave_it(pipeline):
    seed_every_gap(pipeline)
    window = ["--start", DAY, "--end", "2025-03-11"]
    silver = eltops(pipeline, "reconcile", *window, "--silver-bucket", "elt-local-silverr")
    assert silver.exit_code == 1
    assert "bucket elt-local-silverr does not exist" in silver.stderr and "--silver-bucket" in silver.stderr
    table = eltops(pipeline, "reconcile", *window, "--table", "elt-local-ledgr")
    assert table.exit_code == 1
    assert "table elt-local-ledgr does not exist" in table.stderr and "--table" in table.stderr


def test_a_bad_dest_prefix_for_replay_copy_is_refused_before_any_listing(pipeline, monkeypatch):
    import ops.reconcile

    def no_listing(*args, **kwargs):
        raise AssertionError("reconcile listed before refusing --dest-prefix")

    monkeypatch.setattr(ops.reconcile, "reconcile", no_listing)
    result = eltops(pipeline, "reconcile", "--start", DAY, "--end", "2025-03-11", "--replay", "copy",
                    "--dest-prefix", "bronze/replay/a/b", "--yes")
    assert result.exit_code == 2 and "--dest-prefix 'bronze/replay/a/b'" in result.stderr
