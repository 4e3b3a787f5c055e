"""`eltops demo`: the whole pipeline and its repairs on the embedded AWS, in one run."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ops.gen_events import write_events
from ops.local.runtime import EmbeddedAws
from ops.silver import summarize

DAYS = (dt.date(2025, 1, 1), dt.date(2025, 1, 2))
TYPES = ("shipments", "orders")
# (file name, format, count, bad ratio): JSONL, a gzipped JSONL and a JSON array per type and day.
FILES = (("events-a.jsonl", "jsonl", 300, 0.03), ("events-b.jsonl.gz", "jsonl", 200, 0.03),
         ("events-c.json", "json", 100, 0.05))
POISON_KEY = "bronze/orders/dt=2025-01-02/corrupt-upload.jsonl.gz"


@dataclass
class DemoReport:
    ok: bool
    objects: int
    rows_generated: int
    rows_good_generated: int
    rows_silver: int
    rows_quarantined: int
    silver_objects: int
    dlq_messages: int
    poison_in_dlq: bool
    poison_status: str | None
    poison_error: str | None
    duplicate_upload_key: str
    duplicate_left_silver_unchanged: bool
    replay_copy_objects: int
    replay_sqs_objects: int
    rows_silver_after_replays: int
    replays_left_silver_unchanged: bool
    silver_objects_rewritten_by_replays: int
    seconds: float
    problems: list[str] = field(default_factory=list)
    lambda_log: str = ""
    steps: list[str] = field(default_factory=list)


def run_demo(*, workdir: str | None = None, on_progress: Callable[[str], None] = lambda _: None) -> DemoReport:
    started = time.monotonic()
    workdir = workdir or tempfile.mkdtemp(prefix="eltops-demo-")
    os.makedirs(workdir, exist_ok=True)
    log_path = os.path.join(workdir, "lambda.log")
    steps: list[str] = []

    def step(message: str) -> None:
        steps.append(message)
        on_progress(message)

    with EmbeddedAws(log_path=log_path) as aws:
        s3 = aws.client("s3")
        bronze, silver = aws.names.bronze_bucket, aws.names.silver_bucket
        step(f"embedded AWS on {aws.endpoint_url}; Lambda logs in {log_path}")
        generated, good, uploads = 0, 0, []
        for type_index, type_ in enumerate(TYPES):
            for day in DAYS:
                for file_index, (name, fmt, count, bad) in enumerate(FILES):
                    path = os.path.join(workdir, f"{type_}-{day}-{name}")
                    seed = type_index * 100 + day.day * 10 + file_index
                    gen = write_events(path, type_=type_, count=count, fmt=fmt, seed=seed, bad_ratio=bad, day=day)
                    generated += gen.rows
                    good += gen.good
                    uploads.append((path, f"bronze/{type_}/dt={day}/{name}"))
        poison_path = os.path.join(workdir, "corrupt-upload.jsonl.gz")
        with open(poison_path, "wb") as f:
            f.write(b"\x1f\x8b\x08\x00" + os.urandom(64))  # a gzip header, then noise: unreadable
        uploads.append((poison_path, POISON_KEY))
        step(f"uploading {len(uploads)} objects ({generated} rows, one of them unreadable) to s3://{bronze}/bronze/")
        for path, key in uploads:
            s3.upload_file(path, bronze, key)
        if not aws.wait_idle(timeout=60):
            step("warning: queues did not drain within 60 s")
        first = summarize(s3, bucket=silver)
        step(f"first pass: {first.silver_rows} rows in {first.silver_objects} silver objects, "
             f"{first.quarantine_rows} quarantined")

        dup_path, dup_key = uploads[0]
        dup_silver = "silver/" + dup_key[len("bronze/"):].rsplit(".", 1)[0] + ".parquet"
        before = s3.head_object(Bucket=silver, Key=dup_silver)["ETag"]
        step(f"re-uploading {dup_key} unchanged (a duplicate event)")
        s3.upload_file(dup_path, bronze, dup_key)
        aws.wait_idle(timeout=30)
        after = s3.head_object(Bucket=silver, Key=dup_silver)["ETag"]
        second = summarize(s3, bucket=silver)
        dup_unchanged = before == after and second.silver_rows == first.silver_rows

        # Replays: one day by server-side copy (the S3 -> ingest path runs again), one straight to SQS.
        from ops.listing import list_window
        from ops.replay import replay_copy, replay_sqs, replay_stamp
        from ops.timewindow import make_window

        # A rewrite changes a silver object's ETag (new _ingested_at); LastModified has 1 s precision.
        etags_before = _etags(s3, silver)
        day1 = make_window(start=str(DAYS[0]), end=str(DAYS[1]), since=None)
        copied = list_window(s3, bucket=bronze, prefix="bronze/", window=day1, by="partition").objects
        copy_report = replay_copy(s3, objects=copied, bucket=bronze, dest_prefix=f"bronze/replay/{replay_stamp()}")
        day2 = make_window(start=str(DAYS[1]), end=str(DAYS[1] + dt.timedelta(days=1)), since=None)
        sent = list_window(s3, bucket=bronze, prefix="bronze/shipments/", window=day2, by="partition").objects
        sqs_report = replay_sqs(aws.client("sqs"), objects=sent, bucket=bronze, queue_url=aws.provisioned.queue_url)
        step(f"replayed {copy_report.done} object(s) of {DAYS[0]} by copy and {sqs_report.done} of {DAYS[1]} "
             "(shipments) straight to SQS")
        aws.wait_idle(timeout=60)
        third = summarize(s3, bucket=silver)
        etags_after = _etags(s3, silver)
        rewritten = sum(1 for key, etag in etags_after.items() if etags_before.get(key) != etag)
        replays_unchanged = (third.silver_rows, third.silver_objects, third.quarantine_rows) == (
            second.silver_rows, second.silver_objects, second.quarantine_rows)
        step(f"after the replays: {third.silver_rows} rows in {third.silver_objects} silver objects "
             f"({'unchanged' if replays_unchanged else 'CHANGED'}); {rewritten} silver object(s) rewritten")

        # On-call view: what is in the DLQ and why (without consuming it), and the object's story.
        from ops.dlq import inspect
        from ops.ledger import object_status

        ddb = aws.client("dynamodb")
        dlq_report = inspect(aws.client("sqs"), queue_url=aws.provisioned.dlq_url, ddb=ddb,
                             table=aws.names.ledger_table)
        for group in dlq_report.groups:
            step(f"dlq inspect: {group.count} x {group.type}/{group.dt} origin={group.origin}: {group.last_error}")
        dlq_depth = aws.queue_depth(aws.provisioned.dlq_url)
        poison_in_dlq = any(POISON_KEY in g.sample_keys for g in dlq_report.groups) and dlq_depth == dlq_report.messages
        status = object_status(s3=s3, ddb=ddb, table=aws.names.ledger_table, url=f"s3://{bronze}/{POISON_KEY}",
                               silver_bucket=silver)
        poison_status = status.versions[0].get("status") if status.versions else None
        poison_error = status.versions[0].get("last_error") if status.versions else None
        step(f"status s3://{bronze}/{POISON_KEY}: {poison_status} after {status.versions[0].get('attempts')} "
             f"attempt(s): {poison_error}; silver object exists: {status.silver_exists}")

    problems = []
    if second.silver_rows + second.quarantine_rows != generated:
        problems.append(f"silver {second.silver_rows} + quarantine {second.quarantine_rows} != generated {generated}")
    if second.silver_rows != good:
        problems.append(f"silver rows {second.silver_rows} != good rows generated {good}")
    if not poison_in_dlq:
        problems.append(f"the unreadable object {POISON_KEY} is not in the DLQ")
    if not dup_unchanged:
        problems.append("the duplicate upload changed silver")
    if not replays_unchanged:
        problems.append(f"replays changed silver: {second.silver_rows} rows before, {third.silver_rows} after")
    if copy_report.failed or sqs_report.failed or not copy_report.done or not sqs_report.done:
        problems.append("a replay did not complete")
    if rewritten != copy_report.done + sqs_report.done:
        problems.append(f"{rewritten} silver objects were rewritten by the replays, expected "
                        f"{copy_report.done + sqs_report.done}")
    return DemoReport(
        ok=not problems, objects=len(uploads), rows_generated=generated, rows_good_generated=good,
        rows_silver=second.silver_rows, rows_quarantined=second.quarantine_rows,
        silver_objects=second.silver_objects, dlq_messages=dlq_depth, poison_in_dlq=poison_in_dlq,
        poison_status=poison_status, poison_error=poison_error, duplicate_upload_key=dup_key,
        duplicate_left_silver_unchanged=dup_unchanged, replay_copy_objects=copy_report.done,
        replay_sqs_objects=sqs_report.done, rows_silver_after_replays=third.silver_rows,
        replays_left_silver_unchanged=replays_unchanged, silver_objects_rewritten_by_replays=rewritten, seconds=round(time.monotonic() - started, 2),
        problems=problems, lambda_log=log_path, steps=steps,
    )


def _etags(s3, bucket: str) -> dict[str, str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="silver/")
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}
