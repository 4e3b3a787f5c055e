"""ops.replay on one moto bucket filled once per module: copies, SQS sends, checkpoints, runs."""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from lambdas.shared import work_unit
from lambdas.shared.keys import batch_replay_key
from ops import replay
from ops.errors import AccessDenied, OpsError, UsageError
from ops.listing import ObjectInfo, list_window
from ops.ratelimit import RateLimiter
from ops.replay import (
    REPLAY_SOURCE_ETAG,
    ReplayReport,
    _stop_on_denied,
    check_dest_prefix,
    checkpoint_for,
    copy_extra_args,
    destination,
    end_state,
    replay_copy,
    replay_sqs,
    replay_stamp,
    resolved_window,
    run,
    send_units,
    source_identity,
)
from ops.state import FAILED, FINISHED, INTERRUPTED, Checkpoint
from ops.timewindow import make_window
from tests.conftest import most_in_flight

SESSION = boto3.session.Session()
BUCKET = "rpl"
DAY = "bronze/orders/dt=2025-01-01/"
KEYS = [f"{DAY}o{i:02d}.jsonl" for i in range(12)] + [f"{DAY}p.json", f"{DAY}q.jsonl.gz", f"{DAY}r.json.gz"]
WINDOW = make_window(start="2025-01-01", end="2025-01-02", since=None)


@pytest.fixture(scope="module")
def aws():
    with mock_aws():
        s3 = SESSION.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        for n, key in enumerate(KEYS):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b'{"n": %d}\n' % n * (n + 1), Metadata={"kept": "no"})
        for day in ("2025-01-02", "2025-01-03"):  # two more partitions, for runs over three days
            s3.put_object(Bucket=BUCKET, Key=f"bronze/orders/dt={day}/x.jsonl", Body=b"{}\n")
        yield


@pytest.fixture
def s3(aws):
    return SESSION.client("s3", region_name="us-east-1")


@pytest.fixture
def sqs(aws):
    return SESSION.client("sqs", region_name="us-east-1")


@pytest.fixture
def queue(sqs):
    url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    yield url
    sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def listed(s3):
    return list_window(s3, bucket=BUCKET, prefix=DAY, window=WINDOW, by="partition").objects


@pytest.fixture
def limiters(monkeypatch) -> list:
    """Every RateLimiter the replays make, recording the rate asked for and the tokens taken (and
    never waiting)."""
    made = []

    class Recording(RateLimiter):
        def __init__(self, rate, **kwargs):
            super().__init__(None, **kwargs)
            self.asked, self.acquired = rate, 0
            made.append(self)

        def acquire(self, n=1.0):
            self.acquired += n

    monkeypatch.setattr(replay, "RateLimiter", Recording)
    return made


def dest() -> str:
    return f"bronze/replay/t{uuid.uuid4().hex[:8]}"


def calls(client) -> collections.Counter:
    counts = collections.Counter()
    client.meta.events.register("before-call.*.*", lambda model, **kw: counts.update([model.name]))
    return counts


def fail_nth(client, operation: str, plan: dict[int, BaseException | str]) -> None:
    """The n-th call (1-based) of `operation` raises: an exception, or a ClientError with that code."""
    seen = [0]

    def hook(**kwargs):
        seen[0] += 1
        error = plan.get(seen[0])
        if isinstance(error, BaseException):
            raise error
        if error:
            status = {"AccessDenied": 403, "NoSuchKey": 404, "PreconditionFailed": 412}.get(error, 503)
            raise ClientError({"Error": {"Code": error, "Message": "injected"},
                               "ResponseMetadata": {"HTTPStatusCode": status}}, operation)
    client.meta.events.register(f"before-call.*.{operation}", hook)


def copies(s3, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("Contents", [])]


def receive_all(sqs, url: str) -> list[dict]:
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
        if not got.get("Messages"):
            return out
        out += got["Messages"]


def lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


# --- replay copy ---------------------------------------------------------------------------------
def test_a_copy_replay_copies_each_listed_version_under_the_destination(s3, listed, tmp_path):
    prefix = dest()
    report = replay_copy(s3, objects=listed, bucket=BUCKET, dest_prefix=prefix, concurrency=2,
                         report_path=str(tmp_path / "r.jsonl"))
    assert (report.done, report.planned, report.already_done, report.skipped, report.failed) == (15, 15, 0, [], [])
    assert report.ok and report.bytes == sum(o.size for o in listed) and report.target == prefix
    assert report.command == "replay copy" and report.bucket == BUCKET and report.report == str(tmp_path / "r.jsonl")
    assert report.checkpoint is None and report.seconds >= 0 and not report.dry_run and not report.interrupted
    expected = [f"{prefix}/orders/dt=2025-01-01/{k.rsplit('/', 1)[1]}" for k in KEYS]
    assert sorted(copies(s3, prefix)) == sorted(expected)
    assert report.first_keys == expected[:5]
    for obj in listed:
        copy = f"{prefix}/{obj.key[len('bronze/'):]}"
        head = s3.head_object(Bucket=BUCKET, Key=copy)
        assert head["Metadata"] == {REPLAY_SOURCE_ETAG: obj.etag}  # the original's metadata is replaced
        assert s3.get_object(Bucket=BUCKET, Key=copy)["Body"].read() == s3.get_object(
            Bucket=BUCKET, Key=obj.key)["Body"].read()
    written = lines(tmp_path / "r.jsonl")
    assert sorted((x["key"], x["action"], x["result"], x["detail"]) for x in written) == sorted(
        (k, "copy", "ok", f"{prefix}/{k[len('bronze/'):]}") for k in KEYS)


def test_each_copy_gets_the_content_type_of_its_suffix(s3, listed):
    prefix = dest()
    replay_copy(s3, objects=listed, bucket=BUCKET, dest_prefix=prefix, concurrency=1)
    types = {k.rsplit("/", 1)[1]: s3.head_object(Bucket=BUCKET, Key=k)["ContentType"] for k in copies(s3, prefix)}
    assert types["o00.jsonl"] == "application/x-ndjson" and types["p.json"] == "application/json"
    assert types["q.jsonl.gz"] == "application/gzip" and types["r.json.gz"] == "application/gzip"


def test_the_copy_arguments_copy_only_the_listed_version_and_name_it():
    obj = ObjectInfo(BUCKET, f"{DAY}a.json", 1, '"abc"', dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    assert copy_extra_args(obj) == {"CopySourceIfMatch": '"abc"', "MetadataDirective": "REPLACE",
                                    "Metadata": {REPLAY_SOURCE_ETAG: "abc"}, "ContentType": "application/json"}


def test_a_custom_key_layout_names_the_copies(s3, listed):
    prefix = dest()
    report = replay_copy(s3, objects=listed[:2], bucket=BUCKET, dest_prefix=prefix, key_for=batch_replay_key)
    assert sorted(copies(s3, prefix)) == sorted(f"{prefix}/{o.key}" for o in listed[:2])
    assert report.first_keys == [f"{prefix}/{o.key}" for o in listed[:2]]


def test_an_object_overwritten_since_the_listing_is_skipped_not_copied(s3, listed, tmp_path):
    # moto does not check CopySourceIfMatch on CopyObject: S3's answer to a changed source is injected.
    fail_nth(s3, "CopyObject", {1: "PreconditionFailed"})
    stale = ObjectInfo(BUCKET, listed[0].key, listed[0].size, "0" * 32, listed[0].last_modified)
    prefix = dest()
    checkpoint = Checkpoint(tmp_path / "cp.json", {"t": 1})
    report = replay_copy(s3, objects=[stale, listed[1]], bucket=BUCKET, dest_prefix=prefix, checkpoint=checkpoint,
                         concurrency=1,
                         report_path=str(tmp_path / "r.jsonl"))
    assert report.done == 1 and report.ok and [s["key"] for s in report.skipped] == [stale.key]
    assert "changed since it was listed" in report.skipped[0]["reason"]
    assert copies(s3, prefix) == [f"{prefix}/{listed[1].key[len('bronze/'):]}"]
    assert stale.key in checkpoint and listed[1].key in checkpoint  # nothing left to redo for either
    assert {x["key"]: x["result"] for x in lines(tmp_path / "r.jsonl")} == {stale.key: "skipped", listed[1].key: "ok"}


def test_objects_that_are_not_bronze_keys_are_skipped_with_the_reason(s3, listed, tmp_path):
    bad = ObjectInfo(BUCKET, "bronze/orders/notes.txt", 1000, "e", listed[0].last_modified)
    report = replay_copy(s3, objects=[bad, listed[0]], bucket=BUCKET, dest_prefix=dest(),
                         report_path=str(tmp_path / "r.jsonl"))
    assert report.planned == 2 and report.done == 1 and report.bytes == listed[0].size
    assert report.skipped == [{"key": bad.key, "reason": report.skipped[0]["reason"]}] and report.skipped[0]["reason"]
    written = {x["key"]: x for x in lines(tmp_path / "r.jsonl")}
    assert written[bad.key]["result"] == "skipped" and written[bad.key]["detail"] == report.skipped[0]["reason"]
    assert written[bad.key]["action"] == "copy"


def test_a_checkpointed_object_is_not_copied_again(s3, listed, tmp_path):
    checkpoint = Checkpoint(tmp_path / "cp.json", {"t": 2})
    checkpoint.mark([o.key for o in listed[:10]])
    counted = calls(s3)
    progress = []
    report = replay_copy(s3, objects=listed, bucket=BUCKET, dest_prefix=dest(), concurrency=1, checkpoint=checkpoint,
                         on_progress=progress.append)
    assert (report.already_done, report.done, counted["CopyObject"]) == (10, 5, 5)
    assert report.bytes == sum(o.size for o in listed[10:]) and report.checkpoint == str(tmp_path / "cp.json")
    sizes = [o.size for o in listed[10:]]
    # copies finish in any order: the running count and byte total after each
    assert [(p.done, p.total) for p in progress] == [(i + 1, 5) for i in range(5)]
    assert progress[-1].bytes == sum(sizes) and all(a.bytes < b.bytes for a, b in zip(progress, progress[1:], strict=False))
    saved = json.loads((tmp_path / "cp.json").read_text())
    assert sorted(saved["done"]) == sorted(o.key for o in listed)


def test_a_dry_run_copies_nothing_and_writes_no_report(s3, listed, tmp_path):
    prefix = dest()
    counted = calls(s3)
    report = replay_copy(s3, objects=listed, bucket=BUCKET, dest_prefix=prefix, dry_run=True,
                         report_path=str(tmp_path / "r.jsonl"))
    assert report.dry_run and report.done == 0 and report.planned == 15 and report.first_keys[0].startswith(prefix)
    assert len(report.first_keys) == 5 and counted["CopyObject"] == 0 and not (tmp_path / "r.jsonl").exists()


def test_an_object_that_cannot_be_copied_fails_alone(s3, listed, tmp_path):
    fail_nth(s3, "CopyObject", {2: "NoSuchKey"})
    checkpoint = Checkpoint(tmp_path / "cp.json", {"t": 3})
    progress = []
    report = replay_copy(s3, objects=listed[:3], bucket=BUCKET, dest_prefix=dest(), concurrency=1,
                         checkpoint=checkpoint, on_progress=progress.append, report_path=str(tmp_path / "r.jsonl"))
    assert report.done == 2 and [f["key"] for f in report.failed] == [listed[1].key] and not report.ok
    assert "NoSuchKey" in report.failed[0]["error"] and end_state(report) == FAILED
    assert listed[1].key not in checkpoint and listed[0].key in checkpoint and listed[2].key in checkpoint
    assert [p.done for p in progress] == [1, 2, 3]
    assert progress[-1].bytes == listed[0].size + listed[2].size  # a failed object's bytes are not counted
    assert {x["key"]: x["result"] for x in lines(tmp_path / "r.jsonl")}[listed[1].key] == "failed"


def test_a_throttled_copy_is_retried(s3, listed):
    fail_nth(s3, "CopyObject", {1: "SlowDown"})
    counted = calls(s3)
    report = replay_copy(s3, objects=listed[:1], bucket=BUCKET, dest_prefix=dest())
    assert report.done == 1 and counted["CopyObject"] == 2


def test_ctrl_c_during_a_back_off_ends_it_without_another_try(s3, listed, monkeypatch):
    pools = []

    class Recorded(replay.BoundedExecutor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pools.append(self)

    monkeypatch.setattr(replay, "BoundedExecutor", Recorded)
    counted = calls(s3)

    def throttled_while_stopping(**kwargs):
        if counted["CopyObject"] == 1:
            pools[0].stop.set()  # what Ctrl-C does to the pool
            raise ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "CopyObject")
    s3.meta.events.register("before-call.s3.CopyObject", throttled_while_stopping)
    report = replay_copy(s3, objects=listed[:1], bucket=BUCKET, dest_prefix=dest())
    assert report.done == 0 and counted["CopyObject"] == 1


def test_access_denied_stops_the_run_naming_the_permissions(s3, listed):
    fail_nth(s3, "CopyObject", {n: "AccessDenied" for n in range(1, 20)})
    counted = calls(s3)
    with pytest.raises(AccessDenied, match=f"s3:GetObject on the source and s3:PutObject on the destination on "
                                           f"s3://{BUCKET}/{re.escape(listed[0].key)}"):
        replay_copy(s3, objects=listed, bucket=BUCKET, dest_prefix=dest(), concurrency=1)
    assert counted["CopyObject"] == 1


def test_after_access_denied_the_other_groups_fail_without_a_call():
    seen = []

    def work(group):
        seen.append(group)
        raise AccessDenied("denied: grant it")

    guarded = _stop_on_denied(work)
    moment = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    group = [ObjectInfo(BUCKET, f"{DAY}{n}.jsonl", 1, "e", moment) for n in "ab"]
    with pytest.raises(AccessDenied):
        guarded(group[:1])
    assert guarded(group) == [(o.key, "failed", "denied: grant it") for o in group] and len(seen) == 1


def test_objects_at_the_multipart_threshold_use_multipart_copy(s3, listed):
    big, small = listed[-1], listed[0]
    counted = calls(s3)
    prefix = dest()
    report = replay_copy(s3, objects=[big, small], bucket=BUCKET, dest_prefix=prefix, concurrency=1,
                         multipart_threshold=big.size)
    assert big.size > small.size and report.done == 2
    assert counted["UploadPartCopy"] == 1 and counted["CopyObject"] == 1
    copy = f"{prefix}/{big.key[len('bronze/'):]}"
    head = s3.head_object(Bucket=BUCKET, Key=copy)
    assert head["ContentLength"] == big.size and head["Metadata"] == {REPLAY_SOURCE_ETAG: big.etag}


def test_a_multipart_copy_copies_in_parts_of_512_mib(s3):
    key = "bronze/orders/dt=2025-01-05/big.jsonl"
    etag = s3.put_object(Bucket=BUCKET, Key=key, Body=b"x" * (9 * 1024**2))["ETag"].strip('"')
    big = ObjectInfo(BUCKET, key, 9 * 1024**2, etag, dt.datetime(2025, 1, 5, tzinfo=dt.UTC))
    counted = calls(s3)
    report = replay_copy(s3, objects=[big], bucket=BUCKET, dest_prefix=dest(), multipart_threshold=5 * 1024**2)
    assert report.done == 1 and counted["UploadPartCopy"] == 1  # s3transfer's own 8 MiB parts would make two
    s3.delete_object(Bucket=BUCKET, Key=key)


def test_a_multipart_copy_of_a_changed_object_is_skipped(s3, listed):
    big = listed[-1]
    stale = ObjectInfo(BUCKET, big.key, big.size, "0" * 32, big.last_modified)
    report = replay_copy(s3, objects=[stale], bucket=BUCKET, dest_prefix=dest(), multipart_threshold=1)
    assert report.done == 0 and [s["key"] for s in report.skipped] == [big.key]


def test_the_rate_limit_is_applied_to_every_copy(s3, listed, limiters):
    made = limiters
    replay_copy(s3, objects=listed[:3], bucket=BUCKET, dest_prefix=dest(), max_rps=7.5)
    assert [(r.asked, r.acquired) for r in made] == [(7.5, 3)]
    assert made[0].stop is not None


def test_ctrl_c_keeps_what_finished_in_the_checkpoint(s3, listed, tmp_path):
    fail_nth(s3, "CopyObject", {4: KeyboardInterrupt()})
    checkpoint = Checkpoint(tmp_path / "cp.json", {"t": 4}, interval=3600)
    report = replay_copy(s3, objects=listed, bucket=BUCKET, dest_prefix=dest(), concurrency=1, checkpoint=checkpoint)
    assert report.interrupted and not report.ok and end_state(report) == INTERRUPTED
    # A copy already queued behind the interrupted one may still finish; it is then recorded.
    assert report.done in (3, 4)
    saved = json.loads((tmp_path / "cp.json").read_text())["done"]
    assert len(saved) == report.done and set(saved) >= {o.key for o in listed[:3]}


def test_a_replay_reports_its_duration_in_milliseconds(s3, sqs, queue, listed, monkeypatch):
    ticks = iter([100.0, 101.23456, 200.0, 202.4567])
    monkeypatch.setattr(replay.time, "monotonic", lambda: next(ticks))
    assert replay_copy(s3, objects=listed, bucket=BUCKET, dest_prefix=dest(), dry_run=True).seconds == 1.235
    assert replay_sqs(sqs, objects=listed, bucket=BUCKET, queue_url=queue, dry_run=True).seconds == 2.457


def test_a_replay_stamp_is_utc_whatever_the_local_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+5:30: a local stamp would be hours off
    time.tzset()
    try:
        stamp = dt.datetime.strptime(replay_stamp(), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        assert abs((dt.datetime.now(dt.UTC) - stamp).total_seconds()) < 60
    finally:
        monkeypatch.undo()
        time.tzset()


def test_end_state_says_finished_only_when_nothing_failed():
    report = ReplayReport(command="replay copy", bucket=BUCKET, target="x", planned=1, bytes=1)
    assert end_state(report) == FINISHED and report.ok
    report.failed.append({"key": "k", "error": "e"})
    assert end_state(report) == FAILED
    report.interrupted = True
    assert end_state(report) == INTERRUPTED


# --- replay sqs ----------------------------------------------------------------------------------
def test_an_sqs_replay_sends_each_objects_work_unit_in_batches_of_ten(s3, sqs, queue, listed, tmp_path):
    moment = dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC)
    counted = calls(sqs)
    progress = []
    report = replay_sqs(sqs, objects=listed, bucket=BUCKET, queue_url=queue, concurrency=1, now=lambda: moment,
                        report_path=str(tmp_path / "r.jsonl"), on_progress=progress.append)
    assert (report.done, report.planned, report.command, report.target) == (15, 15, "replay sqs", queue)
    assert report.bucket == BUCKET
    assert counted["SendMessageBatch"] == 2 and report.ok and report.first_keys == [o.key for o in listed[:5]]
    assert [p.done for p in progress] in ([10, 15], [5, 15])  # a batch of 10 and one of 5, in either order
    assert progress[-1].bytes == sum(o.size for o in listed)
    bodies = sorted(m["Body"] for m in receive_all(sqs, queue))
    assert bodies == sorted(work_unit.build(bucket=o.bucket, key=o.key, etag=o.etag, size=o.size, origin="replay-sqs",
                                            now=moment).body() for o in listed)
    written = lines(tmp_path / "r.jsonl")
    assert {x["action"] for x in written} == {"send"} and len(written) == 15


def test_an_sqs_replay_skips_keys_that_are_not_bronze_keys(sqs, queue, listed, tmp_path):
    bad = ObjectInfo(BUCKET, "bronze/orders/notes.txt", 5, "e", listed[0].last_modified)
    report = replay_sqs(sqs, objects=[bad, listed[0]], bucket=BUCKET, queue_url=queue,
                        report_path=str(tmp_path / "r.jsonl"))
    assert report.done == 1 and [s["key"] for s in report.skipped] == [bad.key] and report.bytes == listed[0].size
    assert {(x["key"], x["action"], x["result"]) for x in lines(tmp_path / "r.jsonl")} == {
        (bad.key, "send", "skipped"), (listed[0].key, "send", "ok")}


def test_an_sqs_replay_carries_the_message_attributes(sqs, queue, listed):
    replay_sqs(sqs, objects=listed[:1], bucket=BUCKET, queue_url=queue)
    (message,) = receive_all(sqs, queue)
    unit = work_unit.build(bucket=BUCKET, key=listed[0].key, etag=listed[0].etag, size=listed[0].size,
                           origin="replay-sqs")
    assert {k: v["StringValue"] for k, v in message["MessageAttributes"].items()} == {
        k: v["StringValue"] for k, v in unit.message_attributes().items()}
    assert json.loads(message["Body"])["origin"] == "replay-sqs"


def test_an_sqs_replay_resumes_from_its_checkpoint_and_dry_runs_send_nothing(sqs, queue, listed, tmp_path):
    checkpoint = Checkpoint(tmp_path / "cp.json", {"t": 5})
    checkpoint.mark([o.key for o in listed[:4]])
    dry = replay_sqs(sqs, objects=listed, bucket=BUCKET, queue_url=queue, dry_run=True, checkpoint=checkpoint)
    assert dry.dry_run and dry.done == 0 and dry.first_keys == [o.key for o in listed[4:9]] and not receive_all(sqs, queue)
    report = replay_sqs(sqs, objects=listed, bucket=BUCKET, queue_url=queue, checkpoint=checkpoint)
    assert (report.already_done, report.done) == (4, 11) and len(receive_all(sqs, queue)) == 11
    assert sorted(json.loads((tmp_path / "cp.json").read_text())["done"]) == sorted(o.key for o in listed)


def test_a_send_that_keeps_failing_is_reported_per_object(sqs, queue, listed):
    units = {str(i): work_unit.build(bucket=BUCKET, key=o.key, etag=o.etag, size=o.size, origin="replay-sqs")
             for i, o in enumerate(listed[:3])}
    sleeps = []
    outcomes = send_units(sqs, queue_url=queue + "-missing", units=units, limiter=RateLimiter(None), attempts=2,
                          sleep=sleeps.append)
    assert [(k, r) for k, r, _ in outcomes] == [(o.key, "failed") for o in listed[:3]]
    assert all("does not exist" in d for _, _, d in outcomes) and len(sleeps) == 1
    sent = send_units(sqs, queue_url=queue, units=units, limiter=RateLimiter(None))
    assert [(k, r) for k, r, _ in sent] == [(o.key, "ok") for o in listed[:3]] and all(d for _, _, d in sent)


def test_a_denied_send_stops_the_sqs_replay(sqs, queue, listed):
    fail_nth(sqs, "SendMessageBatch", {n: "AccessDenied" for n in range(1, 5)})
    with pytest.raises(AccessDenied, match="sqs:SendMessage"):
        replay_sqs(sqs, objects=listed, bucket=BUCKET, queue_url=queue, concurrency=1)


def test_the_sqs_rate_limit_counts_messages(sqs, queue, listed, limiters):
    made = limiters
    replay_sqs(sqs, objects=listed, bucket=BUCKET, queue_url=queue, max_rps=3.0)
    assert [(r.asked, r.acquired) for r in made] == [(3.0, 15)] and made[0].stop is not None


# --- one run's checkpoint, window and destination ------------------------------------------------
def test_a_replay_stamp_is_the_time_to_the_second():
    assert replay_stamp(dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)) == "20250102T030405Z"
    assert re.fullmatch(r"\d{8}T\d{6}Z", replay_stamp())


def test_a_checkpoint_is_chosen_by_resume_path_or_identity(tmp_path, monkeypatch):
    monkeypatch.setenv("ELT_STATE_DIR", str(tmp_path / "state"))
    identity = {"command": "replay copy", "x": 1}
    assert checkpoint_for("replay copy", identity, None, True) is None
    default = checkpoint_for("replay copy", identity, None, False)
    assert default.path.parent == tmp_path / "state" / "checkpoints" and default.path.name.startswith("replay-copy-")
    assert checkpoint_for("replay copy", {"x": 2}, None, False).path != default.path
    given = checkpoint_for("replay copy", identity, str(tmp_path / "cp.json"), False)
    assert given.path == tmp_path / "cp.json"
    given.mark(["k"])
    given.save()
    resumed = checkpoint_for("replay copy", identity, str(tmp_path / "cp.json"), False, resume=str(tmp_path / "cp.json"))
    assert resumed.resumed and "k" in resumed
    fresh = checkpoint_for("replay copy", identity, str(tmp_path / "cp.json"), False, fresh=True)
    assert "k" not in fresh


def test_resume_refuses_a_missing_checkpoint_and_conflicting_options(tmp_path):
    with pytest.raises(UsageError, match="--resume"):
        checkpoint_for("replay copy", {}, None, False, resume=str(tmp_path / "none.json"))
    with pytest.raises(UsageError, match="^--fresh starts over and --resume FILE continues a run: use one or the other$"):
        checkpoint_for("replay copy", {}, None, True, fresh=True, resume=str(tmp_path / "a.json"))
    with pytest.raises(UsageError, match=r"a\.json .*b\.json"):
        checkpoint_for("replay copy", {}, str(tmp_path / "b.json"), False, resume=str(tmp_path / "a.json"))


def test_a_resumed_run_reuses_the_window_of_its_first_run(tmp_path):
    first = Checkpoint(tmp_path / "cp.json", {"t": 6})
    window = resolved_window(first, start="2025-01-01", end="2025-01-02", since=None)
    assert window == WINDOW
    first.save()
    again = Checkpoint(tmp_path / "cp.json", {"t": 6})
    assert resolved_window(again, start="2025-02-01", end="2025-02-02", since=None) == WINDOW
    assert resolved_window(None, start="2025-02-01", end="2025-02-02", since=None) == make_window(
        start="2025-02-01", end="2025-02-02", since=None)


def test_the_destination_is_fixed_by_the_first_run(tmp_path):
    assert destination(None, "bronze/replay/given") == "bronze/replay/given"
    assert re.fullmatch(r"bronze/replay/\d{8}T\d{6}Z", destination(None, None))
    checkpoint = Checkpoint(tmp_path / "cp.json", {"t": 7})
    first = destination(checkpoint, None)
    assert re.fullmatch(r"bronze/replay/\d{8}T\d{6}Z", first)
    checkpoint.values["dest_prefix"] = "bronze/replay/earlier"
    assert destination(checkpoint, None) == "bronze/replay/earlier"
    assert destination(checkpoint, "bronze/replay/given") == "bronze/replay/given"


def test_a_destination_whose_copies_ingest_would_skip_is_refused_naming_it():
    check_dest_prefix(None)
    check_dest_prefix("bronze/replay/run-1")
    check_dest_prefix("bronze/replay/run-1/")
    fix = "; use bronze/replay/<stamp> with one stamp segment of [A-Za-z0-9_.:-], e.g. bronze/replay/run-1"
    for bad in ("tmp/replay", "bronze/replay/a b", "bronze/orders"):
        with pytest.raises(UsageError, match=f"^--dest-prefix {re.escape(repr(bad))}: .*{re.escape(fix)}$"):
            check_dest_prefix(bad)
    with pytest.raises(UsageError, match=re.escape("(the copies would not be replay copies of their originals)" + fix)):
        check_dest_prefix("bronze/replay/run-1", key_for=lambda key, prefix: key)
    check_dest_prefix("bronze/replay/run-1", key_for=batch_replay_key)


def test_the_inventory_joins_the_identity_only_when_used():
    assert source_identity(None) == {} and source_identity("") == {}
    assert source_identity("s3://r/m.json") == {"from_inventory": "s3://r/m.json"}


# --- run -----------------------------------------------------------------------------------------
def test_a_copy_run_lists_plans_copies_and_retires_its_checkpoint(s3, tmp_path):
    plans = []
    options = dict(s3=s3, bucket=BUCKET, prefix="bronze/", start="2025-01-01", end="2025-01-02", since=None,
                   by="partition", checkpoint_path=str(tmp_path / "cp.json"), concurrency=2)
    report = run("replay copy", **options, on_start=plans.append, report_path=str(tmp_path / "r.jsonl"))
    assert report.done == 15 and report.ok and re.fullmatch(r"bronze/replay/\d{8}T\d{6}Z", report.target)
    assert len(copies(s3, report.target)) == 15 and len(lines(tmp_path / "r.jsonl")) == 15
    (plan,) = plans
    assert (plan.command, plan.window, plan.objects, plan.checkpoint, plan.resumed, plan.already_done) == (
        "replay copy", WINDOW, 15, str(tmp_path / "cp.json"), False, 0)
    assert plan.previous_state is None and plan.started_at and plan.hint is None and plan.inventory is None
    saved = json.loads((tmp_path / "cp.json").read_text())
    # the checkpoint file's identity and values: a later eltops must read the same names to resume
    assert saved["state"] == FINISHED and saved["identity"] == {
        "command": "replay copy", "bucket": BUCKET, "prefix": "bronze/", "start": "2025-01-01", "end": "2025-01-02",
        "since": None, "by": "partition", "dest_prefix": None}
    assert saved["values"] == {"window": ["2025-01-01T00:00:00+00:00", "2025-01-02T00:00:00+00:00"],
                               "dest_prefix": report.target}
    again = run("replay copy", **options, dest_prefix=None, on_start=plans.append)
    assert not plans[1].resumed and again.done == 15  # a finished run's checkpoint is retired


def test_an_interrupted_run_resumes_with_its_window_and_destination(s3, tmp_path):
    fail_nth(s3, "CopyObject", {3: KeyboardInterrupt()})
    options = dict(s3=s3, bucket=BUCKET, prefix=DAY, start=None, end=None, since="36500d", by="modified",
                   checkpoint_path=str(tmp_path / "cp.json"), concurrency=1)
    plans = []
    first = run("replay copy", **options, on_start=plans.append)
    assert first.interrupted and first.done in (2, 3)  # plus one queued behind the interrupted copy, maybe
    second = run("replay copy", **options, on_start=plans.append)
    assert plans[1].window == plans[0].window  # "36500d" resolved once, by the first run
    plans = plans[1:]
    assert second.target == first.target and second.already_done == first.done and second.done == 15 - first.done
    assert plans[0].resumed and plans[0].already_done == first.done and plans[0].previous_state == INTERRUPTED
    assert len(copies(s3, first.target)) == 15


def test_fresh_starts_an_interrupted_run_over_and_resume_needs_its_file(s3, tmp_path):
    fail_nth(s3, "CopyObject", {2: KeyboardInterrupt()})
    options = dict(s3=s3, bucket=BUCKET, prefix=DAY, start="2025-01-01", end="2025-01-02", since=None, by="partition",
                   concurrency=1, dest_prefix=dest())
    first = run("replay copy", **options)  # the default checkpoint, named by the command and its identity
    (saved,) = (tmp_path / "eltops-state" / "checkpoints").glob("replay-copy-*.json")
    assert first.interrupted and json.loads(saved.read_text())["state"] == INTERRUPTED
    again = run("replay copy", **options, fresh=True)
    assert again.already_done == 0 and again.done == 15
    with pytest.raises(UsageError, match="--resume"):
        run("replay copy", **options, resume=str(tmp_path / "missing.json"))


def test_a_run_forwards_its_options_to_the_replay(s3, sqs, queue, tmp_path, limiters):
    made = limiters
    common = dict(s3=s3, bucket=BUCKET, prefix=DAY, start="2025-01-01", end="2025-01-02", since=None, by="partition",
                  max_rps=4.0)
    for command, extra in (("replay copy", {"dest_prefix": (prefix := dest())}), ("replay sqs", {"sqs": sqs,
                                                                                               "queue_url": queue})):
        progress = []
        name = command.replace(" ", "-")
        report = run(command, **common, **extra, report_path=str(tmp_path / f"{name}.jsonl"),
                     checkpoint_path=str(tmp_path / f"{name}.json"), on_progress=progress.append)
        assert report.done == 15 and report.bucket == BUCKET and progress[-1].done == 15
        assert len(lines(tmp_path / f"{name}.jsonl")) == 15
        saved = json.loads((tmp_path / f"{name}.json").read_text())
        assert len(saved["done"]) == 15 and saved["identity"].get("dest_prefix", "") == extra.get("dest_prefix", "")
    assert [r.asked for r in made] == [4.0, 4.0] and report.target == queue and len(receive_all(sqs, queue)) == 15
    assert len(copies(s3, prefix)) == 15
    for command, extra in (("replay copy", {"dest_prefix": dest()}), ("replay sqs", {"sqs": sqs, "queue_url": queue})):
        dry = run(command, **common, **extra, dry_run=True)
        assert dry.dry_run and dry.done == 0
    assert not receive_all(sqs, queue)


def test_a_run_lists_no_more_partitions_at_once_than_asked(s3, tmp_path):
    most = most_in_flight(s3, "s3.ListObjectsV2")
    report = run("replay copy", s3=s3, bucket=BUCKET, prefix="bronze/", start="2025-01-01", end="2025-01-04",
                 since=None, by="partition", list_concurrency=1, dest_prefix=dest(), dry_run=True)
    assert report.planned == 17 and most == [1]


def test_a_modified_run_that_finds_nothing_hints_at_by_partition(s3, tmp_path):
    plans = []
    report = run("replay copy", s3=s3, bucket=BUCKET, prefix="bronze/", start="2025-01-01", end="2025-01-02",
                 since=None, dest_prefix=dest(), dry_run=True, on_start=plans.append)
    assert report.planned == 0 and "--by partition" in plans[0].hint and plans[0].checkpoint is None
    assert plans[0].started_at is None and plans[0].already_done == 0 and not plans[0].resumed


def test_an_sqs_run_sends_to_the_queue(s3, sqs, queue, tmp_path):
    plans = []
    report = run("replay sqs", s3=s3, sqs=sqs, bucket=BUCKET, prefix=DAY, start="2025-01-01", end="2025-01-02",
                 since=None, by="partition", queue_url=queue, checkpoint_path=str(tmp_path / "cp.json"),
                 on_start=plans.append)
    assert report.done == 15 and report.target == queue and len(receive_all(sqs, queue)) == 15
    saved = json.loads((tmp_path / "cp.json").read_text())
    assert saved["identity"] == {"command": "replay sqs", "bucket": BUCKET, "prefix": DAY, "start": "2025-01-01",
                                 "end": "2025-01-02", "since": None, "by": "partition", "queue_url": queue}
    assert saved["state"] == FINISHED and plans[0].command == "replay sqs"


def test_an_sqs_run_to_a_missing_queue_fails_before_any_work(s3, sqs, queue):
    counted = calls(s3)
    with pytest.raises(OpsError, match="--queue-url .*does not exist"):
        run("replay sqs", s3=s3, sqs=sqs, bucket=BUCKET, prefix=DAY, start="2025-01-01", end="2025-01-02", since=None,
            queue_url=queue + "-missing")
    assert counted["ListObjectsV2"] == 0


def test_a_run_refuses_a_bad_destination_and_an_unknown_command(s3):
    counted = calls(s3)
    with pytest.raises(UsageError, match="tmp/x"):
        run("replay copy", s3=s3, bucket=BUCKET, prefix=DAY, start="2025-01-01", end="2025-01-02", since=None,
            dest_prefix="tmp/x")
    with pytest.raises(ValueError, match="replay move"):
        run("replay move", s3=s3, bucket=BUCKET, prefix=DAY, start="2025-01-01", end="2025-01-02", since=None)
    assert counted["ListObjectsV2"] == 0


def test_a_run_with_an_inventory_names_it_in_its_identity_and_plan(s3, tmp_path):
    from ops.local.inventory import live_entries, write_report

    s3.create_bucket(Bucket="rpl-inventory")
    url = write_report(s3, source_bucket=BUCKET, entries=live_entries(s3, BUCKET, DAY), report_bucket="rpl-inventory",
                       taken=dt.datetime.now(dt.UTC))
    plans = []
    report = run("replay copy", s3=s3, bucket=BUCKET, prefix=DAY, start="2025-01-01", end="2025-01-02", since=None,
                 by="partition", from_inventory=url, live_tail=False, dest_prefix=dest(),
                 checkpoint_path=str(tmp_path / "cp.json"), on_start=plans.append)
    assert report.done == 15 and plans[0].inventory["manifest"] == url and plans[0].hint is None
    assert json.loads((tmp_path / "cp.json").read_text())["identity"]["from_inventory"] == url
    # by modified nothing of 2025 was modified then; an inventory run gives no --by partition hint
    run("replay copy", s3=s3, bucket=BUCKET, prefix=DAY, start="2025-01-01", end="2025-01-02", since=None,
        from_inventory=url, live_tail=False, dest_prefix=dest(), dry_run=True, on_start=plans.append)
    assert plans[1].objects == 0 and plans[1].hint is None
    # a report taken before the window ends: its tail is listed live, by partition, unless live_tail=False
    empty = write_report(s3, source_bucket=BUCKET, entries=[], report_bucket="rpl-inventory",
                         taken=dt.datetime(2025, 1, 1, tzinfo=dt.UTC), config_id="empty")
    for live_tail, expected in ((False, 0), (None, 15)):
        dry = run("replay copy", s3=s3, bucket=BUCKET, prefix=DAY, start="2025-01-01", end="2025-01-02", since=None,
                  by="partition", from_inventory=empty, live_tail=live_tail, dest_prefix=dest(), dry_run=True)
        assert dry.planned == expected


def test_the_sqs_run_uses_half_the_copy_concurrency(s3, sqs, queue, monkeypatch):
    seen = []
    real = replay.replay_sqs

    def spy(*args, **kwargs):
        seen.append(kwargs["concurrency"])
        return real(*args, **kwargs)

    monkeypatch.setattr(replay, "replay_sqs", spy)
    for concurrency in (16, 5, 1):
        run("replay sqs", s3=s3, sqs=sqs, bucket=BUCKET, prefix=DAY, start="2025-01-01", end="2025-01-02", since=None,
            by="partition", queue_url=queue, concurrency=concurrency, dry_run=True)
    assert seen == [8, 2, 1] and all(isinstance(n, int) for n in seen)

