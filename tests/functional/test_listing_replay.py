"""Listing and replay on moto: windows, partition pruning, resume, idempotent silver, bodies."""

from __future__ import annotations

import collections
import datetime as dt
import json
import math

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from lambdas.shared import work_unit
from ops.cli import cli
from ops.errors import AccessDenied
from ops.listing import list_window
from ops.replay import replay_copy, replay_sqs
from ops.state import Checkpoint
from ops.timewindow import Window, make_window


class Calls:
    """Counts API calls by operation (a botocore event hook), optionally failing some."""

    def __init__(self, client, fail: dict[str, list] | None = None):
        self.counts = collections.Counter()
        self.fail = fail or {}
        client.meta.events.register("before-call.*.*", self._hook)

    def _hook(self, model, **kwargs):
        self.counts[model.name] += 1
        plan = self.fail.get(model.name)
        if plan:
            error = plan.pop(0)
            if isinstance(error, BaseException):
                raise error
            if error:
                raise ClientError({"Error": {"Code": error, "Message": "injected"},
                                   "ResponseMetadata": {"HTTPStatusCode": 503 if error != "AccessDenied" else 403}},
                                  model.name)


def put_days(pipeline, type_: str, days: int, start=dt.date(2025, 1, 1), body=b'{"a":1}\n'):
    for i in range(days):
        day = start + dt.timedelta(days=i)
        pipeline.put(f"bronze/{type_}/dt={day}/part-0.jsonl", body)


def generated(type_: str, n: int, seed: int) -> bytes:
    from ops.gen_events import generate

    return ("\n".join(t for _, t in generate(type_=type_, count=n, seed=seed, bad_ratio=0.05)) + "\n").encode()


def test_modified_listing_keeps_lastmodified_in_the_half_open_window(pipeline):
    pipeline.put("bronze/orders/dt=2025-01-01/a.jsonl", b"{}\n")
    obj = pipeline.s3.head_object(Bucket=pipeline.bronze, Key="bronze/orders/dt=2025-01-01/a.jsonl")
    moment = obj["LastModified"].astimezone(dt.UTC)
    inside = Window(moment, moment + dt.timedelta(seconds=1))
    before = Window(moment - dt.timedelta(hours=1), moment)  # end is exclusive
    for window, expected in ((inside, 1), (before, 0)):
        got = list_window(pipeline.s3, bucket=pipeline.bronze, prefix="bronze/", window=window)
        assert len(got.objects) == expected


def test_partition_listing_reads_only_the_days_in_the_window_and_calls_grow_with_the_window(pipeline):
    put_days(pipeline, "orders", 120)
    put_days(pipeline, "shipments", 120)
    calls = Calls(pipeline.s3)
    window = make_window(start="2025-02-10", end="2025-02-12", since=None)
    listing = list_window(pipeline.s3, bucket=pipeline.bronze, prefix="bronze/", window=window, by="partition")
    assert [o.key for o in listing.objects] == [
        "bronze/orders/dt=2025-02-10/part-0.jsonl", "bronze/orders/dt=2025-02-11/part-0.jsonl",
        "bronze/shipments/dt=2025-02-10/part-0.jsonl", "bronze/shipments/dt=2025-02-11/part-0.jsonl"]
    # root: one range probe + one delimiter listing; per type one range listing; per partition one listing
    assert calls.counts["ListObjectsV2"] == 2 + 2 + 4
    put_days(pipeline, "orders", 400, start=dt.date(2023, 1, 1))  # a much longer history
    calls.counts.clear()
    list_window(pipeline.s3, bucket=pipeline.bronze, prefix="bronze/", window=window, by="partition")
    assert calls.counts["ListObjectsV2"] == 8


def test_partition_listing_skips_replay_copies_unless_asked(pipeline):
    put_days(pipeline, "orders", 2)
    pipeline.put("bronze/replay/s1/orders/dt=2025-01-01/part-0.jsonl", b"{}\n")
    window = make_window(start="2025-01-01", end="2025-01-03", since=None)
    plain = list_window(pipeline.s3, bucket=pipeline.bronze, prefix="bronze/", window=window, by="partition")
    assert all(not o.key.startswith("bronze/replay/") for o in plain.objects) and len(plain.objects) == 2
    replays = list_window(pipeline.s3, bucket=pipeline.bronze, prefix="bronze/replay/s1/", window=window, by="partition")
    assert [o.key for o in replays.objects] == ["bronze/replay/s1/orders/dt=2025-01-01/part-0.jsonl"]


def test_ls_writes_an_s3_batch_operations_manifest_with_url_encoded_keys(pipeline, tmp_path):
    pipeline.put("bronze/orders/dt=2025-01-01/a b+ü.jsonl", b"{}\n")
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(cli, ["ls", "--bucket", pipeline.bronze, "--start", "2025-01-01", "--end", "2025-01-02",
                                      "--by", "partition", "--manifest-out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["objects"] == 1
    assert out.read_text() == f"{pipeline.bronze},bronze/orders/dt%3D2025-01-01/a%20b%2B%C3%BC.jsonl\n"


def test_a_bad_time_is_exit_2_naming_the_value(pipeline):
    result = CliRunner().invoke(cli, ["ls", "--bucket", pipeline.bronze, "--start", "2026-13-01", "--end", "now"])
    assert result.exit_code == 2 and "--start '2026-13-01' is not a date" in result.stderr


def test_copy_replay_then_the_pipeline_leaves_silver_rows_and_objects_unchanged(pipeline):
    for day in ("2025-01-01", "2025-01-02"):
        for part in range(3):
            pipeline.put(f"bronze/orders/dt={day}/p{part}.jsonl", generated("orders", 40, seed=part))
    pipeline.pump()
    from ops.silver import summarize

    before = summarize(pipeline.s3, bucket=pipeline.silver)
    window = make_window(start="2025-01-01", end="2025-01-03", since=None)
    listing = list_window(pipeline.s3, bucket=pipeline.bronze, prefix="bronze/", window=window, by="partition")
    report = replay_copy(pipeline.s3, objects=listing.objects, bucket=pipeline.bronze,
                         dest_prefix="bronze/replay/t1", concurrency=4)
    assert (report.done, report.failed) == (6, [])
    assert pipeline.pump() >= 12  # six notifications, six work units: the pipeline really ran again
    after = summarize(pipeline.s3, bucket=pipeline.silver)
    assert (after.silver_objects, after.silver_rows, after.quarantine_rows) == (
        before.silver_objects, before.silver_rows, before.quarantine_rows)
    replayed = pipeline.ledger.versions(bucket=pipeline.bronze, key="bronze/replay/t1/orders/dt=2025-01-01/p0.jsonl")
    assert replayed[0]["status"] == "DONE"


def test_the_sqs_replay_body_equals_ingests_body_for_the_same_object(pipeline):
    key = "bronze/shipments/dt=2025-01-01/same.jsonl"
    etag = pipeline.put(key, generated("shipments", 5, seed=1))
    pipeline.ingest_app.handler(pipeline.s3_event(key, etag, size=0))
    ingest_msg = pipeline.receive_all()[0]
    size = pipeline.s3.head_object(Bucket=pipeline.bronze, Key=key)["ContentLength"]
    listing = list_window(pipeline.s3, bucket=pipeline.bronze, prefix="bronze/",
                          window=make_window(start="2025-01-01", end="2025-01-02", since=None), by="partition")
    assert listing.objects[0].size == size
    replay_sqs(pipeline.sqs, objects=listing.objects, bucket=pipeline.bronze, queue_url=pipeline.queue_url)
    replay_msg = pipeline.receive_all()[0]
    ingest_body, replay_body = json.loads(ingest_msg["Body"]), json.loads(replay_msg["Body"])
    # The event's order between versions is the one field a listing cannot know (optional in v1).
    assert ingest_body.pop("sequencer") == "0055AED6DCD90281E5" and "sequencer" not in replay_body
    assert list(ingest_body) == list(replay_body)  # same fields, same order
    # The S3 event reported size 0 here; the listing has the real size. All else is equal:
    assert {**ingest_body, "size": size, "origin": "replay-sqs", "enqueued_at": "t"} == {
        **replay_body, "enqueued_at": "t"}
    # And one builder makes byte-identical bodies for one object, origin and clock:
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    a = work_unit.build(bucket=pipeline.bronze, key=key, etag=etag, size=size, origin="replay-sqs", now=moment)
    b = work_unit.build(bucket=pipeline.bronze, key=key, etag=f'"{etag}"', size=size, origin="replay-sqs", now=moment)
    assert a.body() == b.body()
    assert replay_msg["MessageAttributes"]["origin"]["StringValue"] == "replay-sqs"


def test_sqs_replay_sends_exactly_one_batch_per_ten_objects(pipeline):
    for i in range(23):
        pipeline.put(f"bronze/orders/dt=2025-01-01/o{i:02d}.jsonl", b"{}\n")
    listing = list_window(pipeline.s3, bucket=pipeline.bronze, prefix="bronze/",
                          window=make_window(start="2025-01-01", end="2025-01-02", since=None), by="partition")
    calls = Calls(pipeline.sqs)
    report = replay_sqs(pipeline.sqs, objects=listing.objects, bucket=pipeline.bronze, queue_url=pipeline.queue_url)
    assert report.done == 23 and calls.counts["SendMessageBatch"] == math.ceil(23 / 10)
    assert "GetObject" not in calls.counts and len(pipeline.receive_all()) == 23


def test_only_the_failed_entries_of_a_batch_are_sent_again():
    from ops.ratelimit import RateLimiter
    from ops.replay import send_units

    class FlakySqs:
        def __init__(self):
            self.batches = []

        def send_message_batch(self, QueueUrl, Entries):  # noqa: N803 - boto3's names
            self.batches.append([e["Id"] for e in Entries])
            if len(self.batches) == 1:
                return {"Successful": [{"Id": e["Id"], "MessageId": f"m{e['Id']}"} for e in Entries if e["Id"] != "3"],
                        "Failed": [{"Id": "3", "Code": "InternalError", "SenderFault": False, "Message": "x"}]}
            return {"Successful": [{"Id": e["Id"], "MessageId": f"m{e['Id']}"} for e in Entries], "Failed": []}

    units = {str(i): work_unit.build(bucket="b", key=f"bronze/orders/dt=2025-01-01/{i}.jsonl", etag="e", size=1,
                                     origin="replay-sqs") for i in range(10)}
    sqs = FlakySqs()
    outcomes = send_units(sqs, queue_url="q", units=units, limiter=RateLimiter(None), sleep=lambda s: None)
    assert sqs.batches == [[str(i) for i in range(10)], ["3"]]
    assert all(result == "ok" for _, result, _ in outcomes) and len(outcomes) == 10


def test_throttling_is_retried_and_access_denied_names_the_permission(pipeline):
    put_days(pipeline, "orders", 2)
    listing = list_window(pipeline.s3, bucket=pipeline.bronze, prefix="bronze/",
                          window=make_window(start="2025-01-01", end="2025-01-03", since=None), by="partition")
    calls = Calls(pipeline.s3, fail={"CopyObject": ["SlowDown", "ThrottlingException", "RequestThrottled"]})
    report = replay_copy(pipeline.s3, objects=listing.objects, bucket=pipeline.bronze, dest_prefix="bronze/replay/x",
                         concurrency=1)
    assert report.done == 2 and calls.counts["CopyObject"] == 5
    Calls(pipeline.s3, fail={"CopyObject": ["AccessDenied"] * 10})
    with pytest.raises(AccessDenied, match="s3:GetObject on the source and s3:PutObject on the destination"):
        replay_copy(pipeline.s3, objects=listing.objects, bucket=pipeline.bronze, dest_prefix="bronze/replay/y",
                    concurrency=1)


def test_a_killed_copy_replay_resumes_without_redoing_finished_work(pipeline, tmp_path):
    for i in range(12):
        pipeline.put(f"bronze/orders/dt=2025-01-01/o{i:02d}.jsonl", b"{}\n")
    listing = list_window(pipeline.s3, bucket=pipeline.bronze, prefix="bronze/",
                          window=make_window(start="2025-01-01", end="2025-01-02", since=None), by="partition")
    identity = {"command": "replay copy", "test": 1}
    calls = Calls(pipeline.s3, fail={"CopyObject": [None] * 5 + [KeyboardInterrupt()]})
    first = replay_copy(pipeline.s3, objects=listing.objects, bucket=pipeline.bronze, dest_prefix="bronze/replay/k",
                        concurrency=1, checkpoint=Checkpoint(tmp_path / "cp.json", identity))
    # A copy already queued behind the interrupted one may still finish; it is then recorded.
    assert first.interrupted and first.done in (5, 6)
    assert len(json.loads((tmp_path / "cp.json").read_text())["done"]) == first.done
    second = replay_copy(pipeline.s3, objects=listing.objects, bucket=pipeline.bronze, dest_prefix="bronze/replay/k",
                         concurrency=1, checkpoint=Checkpoint(tmp_path / "cp.json", identity))
    assert (second.already_done, second.done, second.interrupted) == (first.done, 12 - first.done, False)
    assert calls.counts["CopyObject"] == 12 + 1  # only the interrupted call is repeated; nothing ran twice
    copies = pipeline.s3.list_objects_v2(Bucket=pipeline.bronze, Prefix="bronze/replay/k/")["KeyCount"]
    assert copies == 12


def test_the_cli_exits_130_on_ctrl_c_and_resumes_with_the_same_command(pipeline, tmp_path, monkeypatch):
    for i in range(6):
        pipeline.put(f"bronze/orders/dt=2025-01-01/o{i}.jsonl", b"{}\n")
    args = ["replay", "copy", "--bucket", pipeline.bronze, "--start", "2025-01-01", "--end", "2025-01-02", "--by",
            "partition", "--concurrency", "1", "--checkpoint", str(tmp_path / "cp.json"), "--report",
            str(tmp_path / "r.jsonl")]
    import boto3

    real_client = boto3.session.Session.client

    def client(self, service, **kwargs):
        made = real_client(self, service, **kwargs)
        if service == "s3" and not getattr(client, "armed", False):
            client.armed = True
            Calls(made, fail={"CopyObject": [None, None, KeyboardInterrupt()]})
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 130, first.output
    assert "run the same command again to resume" in first.stderr
    second = CliRunner().invoke(cli, [*args, "--json"])
    assert second.exit_code == 0, second.output
    report = json.loads(second.stdout)
    # Work already running when Ctrl-C came finishes and is recorded: nothing lost, nothing redone.
    assert report["already_done"] >= 2 and report["already_done"] + report["done"] == 6
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert sorted(x["key"] for x in lines if x["result"] == "ok") == sorted(
        f"bronze/orders/dt=2025-01-01/o{i}.jsonl" for i in range(6))


def test_dry_run_prints_the_plan_and_changes_nothing(pipeline):
    put_days(pipeline, "orders", 3)
    result = CliRunner().invoke(cli, ["replay", "copy", "--bucket", pipeline.bronze, "--start", "2025-01-01", "--end",
                                      "2025-01-03", "--by", "partition", "--dest-prefix", "bronze/replay/d", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would replay 2 object(s), 16 B -> bronze/replay/d" in result.stdout
    assert "bronze/replay/d/orders/dt=2025-01-01/part-0.jsonl" in result.stdout
    assert pipeline.s3.list_objects_v2(Bucket=pipeline.bronze, Prefix="bronze/replay/")["KeyCount"] == 0


def test_a_dest_prefix_outside_bronze_is_refused(pipeline):
    result = CliRunner().invoke(cli, ["replay", "copy", "--bucket", pipeline.bronze, "--since", "1h",
                                      "--dest-prefix", "tmp/replay"])
    assert result.exit_code == 2 and "outside bronze/" in result.stderr


def test_objects_over_the_copy_limit_use_multipart_copy(pipeline):
    key = "bronze/orders/dt=2025-01-01/big.jsonl"
    pipeline.put(key, b'{"order_id": "x"}\n' * (6 * 1024 * 1024 // 18 + 1))
    listing = list_window(pipeline.s3, bucket=pipeline.bronze, prefix="bronze/",
                          window=make_window(start="2025-01-01", end="2025-01-02", since=None), by="partition")
    calls = Calls(pipeline.s3)
    report = replay_copy(pipeline.s3, objects=listing.objects, bucket=pipeline.bronze, dest_prefix="bronze/replay/m",
                         multipart_threshold=5 * 1024 * 1024)
    assert report.done == 1 and calls.counts["UploadPartCopy"] >= 1 and "CopyObject" not in calls.counts
    copied = pipeline.s3.head_object(Bucket=pipeline.bronze, Key="bronze/replay/m/orders/dt=2025-01-01/big.jsonl")
    assert copied["ContentLength"] == listing.objects[0].size
