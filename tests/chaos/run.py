"""Exactly-once silver under faults: a seeded end-to-end property run on the embedded AWS.

    python -m tests.chaos.run [--seed S] [--objects M] [--rounds R]      (make chaos)

Random objects (types, days, JSONL/JSON/gzip, random bad lines, some unreadable) go through the
whole pipeline while faults are injected: duplicate S3 events (1-3 extra copies), ingest killed
between claim and send and after the send, SQS send failures that outlast botocore's retries,
transform killed after writing silver and before its messages are deleted, throttling, 5xx and
timeouts on S3, SQS and DynamoDB, and, in the middle, a copy replay, an SQS replay and a DLQ
redrive. A quarter of the objects get a new version (right after the first one, while the replays
of the old one are in flight, and beside the last uploads). After the queues drain it checks: every
good line of each object's current version in silver exactly once, every bad line in quarantine
exactly once, silver holding each object's current version (else the object counts as lost),
every unreadable object in the DLQ with its ledger error, no ledger item CLAIMED past its lease.
It ends with one line:

    faults injected: N, objects: M, lost: 0, duplicated: 0
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote_plus

import pyarrow as pa
import pyarrow.parquet as pq

from ops.gen_events import generate
from ops.local.faults import SERVER_ERROR, THROTTLE, TIMEOUT, FaultInjector
from ops.local.runtime import EmbeddedAws

DAYS = ("2025-04-01", "2025-04-02", "2025-04-03")


@dataclass
class Expected:
    key: str  # logical bronze key
    good: set[int] = field(default_factory=set)
    bad: set[int] = field(default_factory=set)
    unreadable: bool = False


@dataclass
class ChaosReport:
    seed: int
    objects: int
    faults: int
    lost: int
    duplicated: int
    unexpected: int
    problems: list[str]
    injected: dict
    seconds: float

    def line(self) -> str:
        return (f"faults injected: {self.faults}, objects: {self.objects}, lost: {self.lost}, "
                f"duplicated: {self.duplicated}")


def make_objects(rng: random.Random, count: int, poison: int) -> list[tuple[Expected, bytes]]:
    made = []
    for i in range(count):
        type_ = rng.choice(("orders", "shipments"))
        fmt = rng.choice(("jsonl", "jsonl", "json"))
        gz = rng.random() < 0.3
        key = f"bronze/{type_}/dt={rng.choice(DAYS)}/obj-{i:03d}.{fmt}" + (".gz" if gz else "")
        expected = Expected(key=key)
        made.append((expected, new_version(rng, expected)))
    for i in range(poison):
        key = f"bronze/orders/dt={rng.choice(DAYS)}/poison-{i:02d}.jsonl" + (".gz" if i % 2 == 0 else "")
        body = b"\x1f\x8b\x08\x00" + bytes(rng.randrange(256) for _ in range(40)) if i % 2 == 0 else \
            b"<html>not json</html>\n" * 3
        made.append((Expected(key=key, unreadable=True), body))
    return made


def new_version(rng: random.Random, expected: Expected) -> bytes:
    """Random content for `expected.key` (type, format and gzip follow the key); `expected` now
    describes this version's lines."""
    type_, fmt = expected.key.split("/")[1], expected.key.rsplit("/", 1)[1].split(".")[1]
    pairs = list(generate(type_=type_, count=rng.randint(5, 120), fmt=fmt, seed=rng.randrange(10**6),
                          bad_ratio=rng.choice((0.0, 0.02, 0.1))))
    if fmt == "json":
        data = ("[\n" + ",\n".join(t for _, t in pairs) + "\n]\n").encode()
    else:
        data = ("\n".join(t for _, t in pairs) + "\n").encode()
    expected.good = {j + 1 for j, (ok, _) in enumerate(pairs) if ok}
    expected.bad = {j + 1 for j, (ok, _) in enumerate(pairs) if not ok}
    return gzip.compress(data, mtime=0) if expected.key.endswith(".gz") else data


def s3_event(bucket: str, key: str, etag: str, size: int) -> str:
    return json.dumps({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                                    "eventName": "ObjectCreated:Put",
                                    "s3": {"bucket": {"name": bucket}, "object": {
                                        "key": quote_plus(key, safe="/"), "size": size, "eTag": etag}}}]})


def run(*, seed: int = 1, objects: int = 12, poison: int = 2, rate: float = 0.04,
        timeout: float = 150.0) -> ChaosReport:
    started = time.monotonic()
    rng = random.Random(seed)
    faults = FaultInjector(seed=seed)
    for service in ("s3", "sqs", "dynamodb"):  # throttling, 5xx and timeouts on every service
        faults.fail(THROTTLE, service=service, rate=rate)
        faults.fail(SERVER_ERROR, service=service, rate=rate / 2)
        faults.fail(TIMEOUT, service=service, rate=rate / 4)
    # An SQS send failure that outlasts botocore's 5 attempts: ingest's own retry must handle it.
    first = rng.randint(2, 6)
    for nth in range(first, first + 5):
        faults.fail(SERVER_ERROR, service="sqs", operation="SendMessageBatch", nth=nth)
    for step, count in (("after-claim", 2), ("after-send", 1), ("after-read", 1), ("before-silver-write", 1),
                        ("after-silver-write", 2), ("before-delete", 1)):
        for nth in sorted(rng.sample(range(1, 8), count)):
            faults.kill_at(step, nth=nth)

    made = make_objects(rng, objects, poison)
    problems: list[str] = []
    workdir = tempfile.mkdtemp(prefix="elt-chaos-")
    with faults, EmbeddedAws(log_path=str(Path(workdir) / "lambda.log"), lambda_client_hook=faults.attach) as aws:
        s3, sqs = aws.client("s3"), aws.client("sqs")
        bronze, silver = aws.names.bronze_bucket, aws.names.silver_bucket

        def upload(batch):
            for expected, body in batch:
                etag = s3.put_object(Bucket=bronze, Key=expected.key, Body=body)["ETag"].strip('"')
                for _ in range(rng.choice((0, 0, 1, 2, 3))):  # duplicate S3 events
                    sqs.send_message(QueueUrl=aws.provisioned.ingest_queue_url,
                                     MessageBody=s3_event(bronze, expected.key, etag, len(body)))

        # New versions of a quarter of the good objects, at three moments: right after the first
        # version (both in flight), while the mid-run replays of the old version are in flight, and
        # beside the second half's uploads. Silver must end with each object's current version.
        good = [e for e, _ in made if not e.unreadable]
        overwritten = rng.sample(good, max(3, len(good) // 4))
        waves = [overwritten[i::3] for i in range(3)]

        def overwrite(wave):
            upload([(e, new_version(rng, e)) for e in wave])

        half = len(made) // 2
        first_half = {x.key for x, _ in made[:half]}
        upload(made[:half])
        overwrite([e for e in waves[0] if e.key in first_half])
        aws.wait_idle(timeout=timeout)

        # In the middle: a copy replay, an SQS replay and a redrive, through faulty clients too.
        from ops.dlq import redrive_manual
        from ops.listing import list_window
        from ops.replay import replay_copy, replay_sqs
        from ops.timewindow import make_window

        ops_s3, ops_sqs = faults.attach(aws.client("s3")), faults.attach(aws.client("sqs"))
        day1 = list_window(s3, bucket=bronze, prefix="bronze/", by="partition",
                           window=make_window(start=DAYS[0], end=DAYS[1], since=None)).objects
        day2 = list_window(s3, bucket=bronze, prefix="bronze/", by="partition",
                           window=make_window(start=DAYS[1], end=DAYS[2], since=None)).objects
        copy = replay_copy(ops_s3, objects=day1, bucket=bronze, dest_prefix="bronze/replay/chaos", concurrency=4)
        sent = replay_sqs(ops_sqs, objects=day2, bucket=bronze, queue_url=aws.provisioned.queue_url, concurrency=2)
        overwrite([e for e in waves[1] if e.key in first_half])
        moved = redrive_manual(ops_sqs, source_url=aws.provisioned.dlq_url, target_url=aws.provisioned.queue_url)
        if copy.failed or sent.failed or moved.failed:
            problems.append(f"a mid-run repair failed: {copy.failed or sent.failed or moved.failed}")
        upload(made[half:])
        overwrite([e for e in overwritten if e.key not in first_half] + [e for e in waves[2] if e.key in first_half])
        if not aws.wait_idle(timeout=timeout):
            problems.append("the queues did not drain")
        faults.enabled = False  # read the results without faults
        lost, duplicated, unexpected = check(aws, s3, bronze, silver, [e for e, _ in made], problems)
    return ChaosReport(seed=seed, objects=len(made), faults=faults.total, lost=lost, duplicated=duplicated,
                       unexpected=unexpected, problems=problems, injected=dict(faults.injected),
                       seconds=round(time.monotonic() - started, 1))


def check(aws, s3, bronze: str, silver: str, expected: list[Expected], problems: list[str]) -> tuple[int, int, int]:
    by_name = {(e.key.split("/")[1], e.key.split("/")[2], e.key.rsplit("/", 1)[1].split(".")[0]): e for e in expected}
    good_seen, bad_seen = collections.Counter(), collections.Counter()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=silver)
    for obj in [o for p in pages for o in p.get("Contents", [])]:
        body = s3.get_object(Bucket=silver, Key=obj["Key"])["Body"].read()
        if obj["Key"].startswith("silver/"):
            table = pq.read_table(pa.BufferReader(body), columns=["_source_key", "_line"])
            for source, line in zip(table.column("_source_key").to_pylist(), table.column("_line").to_pylist(),
                                    strict=True):
                good_seen[(source, line)] += 1
        else:
            _, type_, dt_, name = obj["Key"].split("/", 3)
            source = by_name.get((type_, dt_, name.rsplit(".", 1)[0]))
            for record in body.splitlines():
                bad_seen[(source.key if source else obj["Key"], json.loads(record)["line"])] += 1
    want_good = {(e.key, n) for e in expected for n in e.good}
    want_bad = {(e.key, n) for e in expected for n in e.bad}
    lost = len(want_good - set(good_seen)) + len(want_bad - set(bad_seen))
    duplicated = sum(c - 1 for c in good_seen.values() if c > 1) + sum(c - 1 for c in bad_seen.values() if c > 1)
    unexpected = len(set(good_seen) - want_good) + len(set(bad_seen) - want_bad)
    if unexpected:
        problems.append(f"{unexpected} row(s) in silver/quarantine that were not expected there")

    from lambdas.shared.ledger import Ledger
    from ops.dlq import inspect

    with tempfile.NamedTemporaryFile(suffix=".jsonl") as out:  # every DLQ message, not just samples
        inspect(aws.client("sqs"), queue_url=aws.provisioned.dlq_url, max_messages=1000, out_path=out.name)
        keys_in_dlq = {json.loads(json.loads(line)["body"]).get("key") for line in Path(out.name).read_text().splitlines()}
    ledger = Ledger(aws.client("dynamodb"), aws.names.ledger_table)
    for e in expected:
        if not e.unreadable:
            continue
        versions = ledger.versions(bucket=bronze, key=e.key)
        if not versions or versions[0].get("status") != "FAILED" or not versions[0].get("last_error"):
            lost += 1
            problems.append(f"unreadable {e.key}: ledger says {versions[:1]}")
        if e.key not in keys_in_dlq:
            lost += 1
            problems.append(f"unreadable {e.key} is not in the DLQ")
    for e in expected:  # silver holds the current version of each object, or the object is lost
        if e.unreadable:
            continue
        current = s3.head_object(Bucket=bronze, Key=e.key)["ETag"].strip('"')
        name = e.key.rsplit("/", 1)[1].split(".")[0]
        silver_key = f"silver/{e.key.split('/')[1]}/{e.key.split('/')[2]}/{name}.parquet"
        try:
            held = s3.head_object(Bucket=silver, Key=silver_key)["Metadata"].get("source-etag")
        except Exception:  # noqa: BLE001 - a missing silver object is lost too
            held = None
        if held != current:
            lost += 1
            problems.append(f"{e.key}: silver holds version {held}, bronze holds {current}")
    now_ms = int(time.time() * 1000)
    scan = aws.client("dynamodb").scan(TableName=aws.names.ledger_table)
    stuck = [i for i in scan["Items"] if i["status"]["S"] == "CLAIMED" and int(i["lease_until"]["N"]) < now_ms]
    if stuck:
        problems.append(f"{len(stuck)} ledger item(s) still CLAIMED past their lease")
    return lost, duplicated, unexpected


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=None, help="one seed (default: a fresh one per round)")
    parser.add_argument("--objects", type=int, default=40)
    parser.add_argument("--poison", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.05, help="fault rate per call and kind")
    args = parser.parse_args(argv)
    totals = collections.Counter()
    ok = True
    for round_ in range(args.rounds):
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
        report = run(seed=seed, objects=args.objects, poison=args.poison, rate=args.rate)
        print(f"round {round_ + 1}: seed {seed}: {report.line()} ({report.seconds} s)", file=sys.stderr)
        for problem in report.problems:
            print(f"  problem: {problem}", file=sys.stderr)
        ok &= not report.problems and not report.lost and not report.duplicated
        totals.update(faults=report.faults, objects=report.objects, lost=report.lost, duplicated=report.duplicated)
    print(f"faults injected: {totals['faults']}, objects: {totals['objects']}, lost: {totals['lost']}, "
          f"duplicated: {totals['duplicated']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
