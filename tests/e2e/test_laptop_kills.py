"""Laptop-side faults: replay copy, replay sqs and dlq redrive killed with SIGKILL at random
points, then rerun with the same checkpoint: nothing missed, nothing sent twice beyond the work
in flight when the process died."""

from __future__ import annotations

import collections
import json
import random
import signal
import subprocess
import sys

import boto3
import pytest

from lambdas.shared import work_unit
from tests.conftest import wait_until
from tests.e2e.conftest import ELTOPS, LocalAws, clean_env

N = 120


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    local = LocalAws(tmp_path_factory.mktemp("kills"))
    env = local.env
    kw = dict(endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    yield env, boto3.client("s3", **kw), boto3.client("sqs", **kw)
    local.stop()


def eltops(env, tmp_path, *args) -> subprocess.Popen:
    return subprocess.Popen([*ELTOPS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env(**env, ELT_STATE_DIR=str(tmp_path / "state")), cwd=tmp_path)


def start_and_kill(env, tmp_path, args: list[str], progress, seed: int) -> int:
    """Start the command and SIGKILL it once `progress()` (work visible on the server) reaches a
    random point between a sixth and a half of the objects; returns that point."""
    point = random.Random(seed).randint(N // 6, N // 2)
    first = eltops(env, tmp_path, *args)
    wait_until(lambda: first.poll() is not None or progress() >= point, timeout=60, interval=0.05,
               what=f"{point} objects done before the kill")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL, "the command finished before it could be killed"
    return point


def finish(env, tmp_path, args: list[str]) -> subprocess.CompletedProcess:
    second = eltops(env, tmp_path, *args)
    out, err = second.communicate(timeout=180)
    return subprocess.CompletedProcess(args, second.returncode, out, err)


def visible(sqs, url: str, attribute: str = "ApproximateNumberOfMessages") -> int:
    return int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[attribute])["Attributes"][attribute])


def drain_keys(sqs, url: str) -> collections.Counter:
    """How many times each object's work unit is in the queue (nothing else consumes it)."""
    counts = collections.Counter()
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300).get("Messages", [])
        if not got:
            return counts
        counts.update(work_unit.parse(m["Body"]).key for m in got)


def put_objects(s3, bucket: str, day: str, n: int = N) -> list[str]:
    keys = [f"bronze/orders/dt={day}/k{i:04d}.jsonl" for i in range(n)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b'{"order_id": "x"}\n')
    return keys


@pytest.mark.parametrize("seed", [1, 2])
def test_replay_sqs_killed_and_resumed_sends_everything_and_repeats_at_most_the_batch_in_flight(aws, tmp_path, seed):
    env, s3, sqs = aws
    day = f"2025-05-0{seed}"
    keys = put_objects(s3, env["ELT_BRONZE_BUCKET"], day)
    target = sqs.create_queue(QueueName=f"kill-sqs-{seed}")["QueueUrl"]  # nothing consumes it
    args = ["replay", "sqs", "--bucket", env["ELT_BRONZE_BUCKET"], "--queue-url", target, "--start", day,
            "--end", f"2025-05-0{seed + 1}", "--by", "partition", "--concurrency", "2", "--max-rps", "40",
            "--checkpoint", "sqs.json"]
    moment = start_and_kill(env, tmp_path, args, lambda: visible(sqs, target), seed)
    done = finish(env, tmp_path, args)
    assert done.returncode == 0, done.stderr
    assert "resuming from" in done.stderr
    counts = drain_keys(sqs, target)
    assert set(counts) == set(keys), f"missed {set(keys) - set(counts)} (killed after {moment} sent)"
    duplicates = sum(c - 1 for c in counts.values())
    assert duplicates <= 10, f"{duplicates} sent twice (one worker: at most one batch of 10 was in flight)"


def test_replay_copy_killed_and_resumed_copies_everything_and_repeats_at_most_the_copies_in_flight(aws, tmp_path):
    env, s3, _ = aws
    keys = put_objects(s3, env["ELT_BRONZE_BUCKET"], "2025-05-10")
    args = ["replay", "copy", "--bucket", env["ELT_BRONZE_BUCKET"], "--start", "2025-05-10", "--end", "2025-05-11",
            "--by", "partition", "--dest-prefix", "bronze/replay/killed", "--concurrency", "4", "--max-rps", "40",
            "--checkpoint", "copy.json", "--report", "copy.jsonl"]
    def copies_made() -> int:
        return s3.list_objects_v2(Bucket=env["ELT_BRONZE_BUCKET"], Prefix="bronze/replay/killed/")["KeyCount"]

    moment = start_and_kill(env, tmp_path, args, copies_made, seed=3)
    done = finish(env, tmp_path, args)
    assert done.returncode == 0, done.stderr
    copies = {o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(
        Bucket=env["ELT_BRONZE_BUCKET"], Prefix="bronze/replay/killed/") for o in p.get("Contents", [])}
    assert copies == {k.replace("bronze/", "bronze/replay/killed/", 1) for k in keys}
    lines = [json.loads(x) for x in (tmp_path / "copy.jsonl").read_text().splitlines() if x.endswith("}")]
    counts = collections.Counter(x["key"] for x in lines if x["result"] == "ok")
    assert set(counts) == set(keys)
    assert sum(c - 1 for c in counts.values()) <= 4, f"copied twice beyond the 4 in flight (killed after {moment} copies)"


def test_dlq_redrive_killed_and_rerun_moves_every_message_and_repeats_at_most_the_batches_in_flight(aws, tmp_path):
    env, _, sqs = aws
    dlq = sqs.create_queue(QueueName="kill-dlq")["QueueUrl"]
    target = sqs.create_queue(QueueName="kill-target")["QueueUrl"]
    keys = [f"bronze/orders/dt=2025-05-20/m{i:04d}.jsonl" for i in range(N)]
    for start in range(0, N, 10):
        sqs.send_message_batch(QueueUrl=dlq, Entries=[
            {"Id": str(i), "MessageBody": work_unit.build(bucket="b", key=k, etag="e", size=1, origin="s3-event").body()}
            for i, k in enumerate(keys[start:start + 10])])
    args = ["dlq", "redrive", "--queue-url", dlq, "--to-url", target, "--mode", "manual", "--concurrency", "2",
            "--max-rps", "40", "--visibility-timeout", "3", "--yes"]
    start_and_kill(env, tmp_path, args, lambda: visible(sqs, target), seed=4)
    # What the killed run held becomes visible again when its visibility timeout runs out.
    wait_until(lambda: visible(sqs, dlq, "ApproximateNumberOfMessagesNotVisible") == 0, timeout=30,
               what="the killed run's held messages to reappear")
    done = finish(env, tmp_path, args)
    assert done.returncode == 0, done.stderr
    depth = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])["Attributes"]
    assert int(depth["ApproximateNumberOfMessages"]) + int(depth["ApproximateNumberOfMessagesNotVisible"]) == 0
    counts = drain_keys(sqs, target)
    assert set(counts) == set(keys)
    assert sum(c - 1 for c in counts.values()) <= 2 * 10, "more than the two workers' batches were repeated"


def test_the_checkpoint_journal_survives_a_kill_mid_write(tmp_path):
    from ops.state import Checkpoint

    cp = Checkpoint(tmp_path / "c.json", {"a": 1}, interval=3600)
    cp.mark(["k1", "k2"])
    cp.mark("k3")
    with open(tmp_path / "c.json.journal", "ab") as journal:
        journal.write(b'"k4')  # torn by a kill
    again = Checkpoint(tmp_path / "c.json", {"a": 1})
    assert again.done == {"k1", "k2", "k3"} and again.resumed
    again.save()
    assert not (tmp_path / "c.json.journal").exists()
    assert Checkpoint(tmp_path / "c.json", {"a": 1}).done == {"k1", "k2", "k3"}
    assert sys.version_info >= (3, 11)
