"""Adversarial cases for issue 15 (version order) and issue 14 (403/404): kills at the step hooks
combined with racing overwrites, which the seeded interleavings (no kills) do not reach, and the
answers S3 gives that are neither a plain read nor a plain write.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from lambdas.shared import steps
from tests.functional.test_version_ordering import (
    KEY,
    SILVER,
    at,
    ids,
    rows,
    silver_ids,
    silver_meta,
    transform,
    unit_record,
)


@pytest.fixture
def hooks():
    yield steps
    steps.HOOK = None


def test_a_rewrite_killed_after_it_replaced_a_newer_version_is_repaired_by_the_retry(pipeline, hooks):
    # A redrive of A writes over B (it has no order), sees that the source moved on and rewrites B.
    # Meanwhile C is uploaded and fully processed; the rewrite of B then replaces C, and the process
    # dies before its check after the write. B's and C's own events are consumed. The redelivered
    # redrive's read is a 412, and silver holds neither its version nor the source's.
    a = pipeline.put(KEY, rows(2, "a"))
    seen = {"before": 0, "after": 0}

    def hook(name, context):
        if name == steps.BEFORE_SILVER_WRITE:
            seen["before"] += 1
            if seen["before"] in (1, 3):
                steps.HOOK = None
                version, tag, n, seq = ("b", "b", 3, "20") if seen["before"] == 1 else ("c", "c", 4, "30")
                etag = pipeline.put(KEY, rows(n, tag))
                assert transform(pipeline, unit_record(pipeline, KEY, etag, sequencer=seq, message_id=f"m-{version}")) \
                    == {"batchItemFailures": []}
                steps.HOOK = hook
        if name == steps.AFTER_SILVER_WRITE:
            seen["after"] += 1
            if seen["after"] == 2:  # the rewrite's write
                steps.HOOK = None
                raise steps.Killed("killed after the rewrite's write")

    steps.HOOK = hook
    with pytest.raises(steps.Killed):
        transform(pipeline, unit_record(pipeline, KEY, a, origin="redrive"))
    assert silver_ids(pipeline) == ids(3, "b")  # stale: C is the source
    assert transform(pipeline, unit_record(pipeline, KEY, a, origin="redrive")) == {"batchItemFailures": []}
    assert silver_ids(pipeline) == ids(4, "c")
    reason = pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=a)["superseded_reason"]
    assert "(written without an order)" in reason


def test_a_late_unit_does_not_transform_again_when_silver_holds_the_current_version_without_an_order(pipeline):
    # The embedded AWS has no sequencers: there every silver object is written without an order,
    # and a late unit of an older version must not cost a second transform of the current one.
    a = pipeline.put(KEY, rows(2, "a"))
    b = pipeline.put(KEY, rows(3, "b"))
    assert transform(pipeline, unit_record(pipeline, KEY, b, origin="redrive", message_id="m-b")) \
        == {"batchItemFailures": []}
    assert silver_meta(pipeline)["source-sequencer"] == ""
    calls = []
    pipeline.transform_app._DEPS.s3.meta.events.register("before-call", lambda model, **kw: calls.append(model.name))
    assert transform(pipeline, unit_record(pipeline, KEY, a)) == {"batchItemFailures": []}
    assert calls == ["GetObject", "HeadObject", "HeadObject"] and silver_ids(pipeline) == ids(3, "b")


def test_kill_at_every_transform_step_while_b_is_processed_ends_with_b(pipeline, hooks):
    # For each transform step: A's unit (redrive, no order) dies there after B was uploaded and
    # processed at that same step; A's retry and nothing else must leave silver with B.
    for n, step_name in enumerate((steps.AFTER_READ, steps.BEFORE_SILVER_WRITE, steps.AFTER_SILVER_WRITE)):
        key = f"bronze/orders/dt=2025-01-02/kill{n}.jsonl"
        silver = f"silver/orders/dt=2025-01-02/kill{n}.parquet"
        a = pipeline.put(key, rows(2, "a"))

        def hook(name, context, step_name=step_name, key=key):
            if name == step_name:
                steps.HOOK = None
                b = pipeline.put(key, rows(3, "b"))
                assert transform(pipeline, unit_record(pipeline, key, b, sequencer="20", message_id="m-b")) \
                    == {"batchItemFailures": []}
                raise steps.Killed(step_name)

        steps.HOOK = hook
        with pytest.raises(steps.Killed):
            transform(pipeline, unit_record(pipeline, key, a, origin="redrive"))
        assert transform(pipeline, unit_record(pipeline, key, a, origin="redrive")) == {"batchItemFailures": []}
        body = pipeline.s3.get_object(Bucket=pipeline.silver, Key=silver)["Body"].read()
        got = sorted(pq.read_table(pa.BufferReader(body)).column("order_id").to_pylist())
        assert got == ids(3, "b"), step_name
        for item in pipeline.ledger.versions(bucket=pipeline.bronze, key=key):
            assert item["status"] == "DONE", (step_name, item)


def test_silver_deleted_between_the_look_and_the_if_match_write_is_created_again(pipeline, hooks):
    # On-call deletes the silver object while a transform holds its ETag: If-Match on a missing key
    # is a 404 NoSuchKey, which means "look again", not a failure.
    a = pipeline.put(KEY, rows(2, "a"))
    assert transform(pipeline, unit_record(pipeline, KEY, a, sequencer="10")) == {"batchItemFailures": []}
    b = pipeline.put(KEY, rows(3, "b"))
    steps.HOOK = at(steps.BEFORE_SILVER_WRITE,
                    lambda: pipeline.s3.delete_object(Bucket=pipeline.silver, Key=SILVER))
    assert transform(pipeline, unit_record(pipeline, KEY, b, sequencer="20", message_id="m-b")) \
        == {"batchItemFailures": []}
    assert silver_ids(pipeline) == ids(3, "b") and silver_meta(pipeline)["source-sequencer"] == "20"


def _conflict(op="PutObject", status=409, code="ConditionalRequestConflict"):
    return ClientError({"Error": {"Code": code, "Message": "injected"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, op)


def test_409_conflicts_on_the_conditional_write_are_retried_and_then_fail_the_item_clearly(pipeline, monkeypatch):
    # S3 answers 409 ConditionalRequestConflict while another conditional write to the key is in
    # flight (moto never does: injected). One is looked at again; a key that never settles fails
    # the item with a reason, the ledger FAILED, never a traceback or a DONE without silver.
    s3 = pipeline.transform_app._DEPS.s3
    real = s3.put_object
    answers = []

    def put_object(**kwargs):
        if "IfMatch" in kwargs or "IfNoneMatch" in kwargs:
            answers.append(kwargs.get("IfNoneMatch") or kwargs.get("IfMatch"))
            if len(answers) == 1 or always:
                raise _conflict()
        return real(**kwargs)

    monkeypatch.setattr(s3, "put_object", put_object)
    always = False
    a = pipeline.put(KEY, rows(2, "a"))
    assert transform(pipeline, unit_record(pipeline, KEY, a, sequencer="10")) == {"batchItemFailures": []}
    assert len(answers) == 2 and silver_ids(pipeline) == ids(2, "a")

    always = True
    b = pipeline.put(KEY, rows(3, "b"))
    assert transform(pipeline, unit_record(pipeline, KEY, b, sequencer="20", message_id="m-b")) \
        == {"batchItemFailures": [{"itemIdentifier": "m-b"}]}
    item = pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=b)
    assert item["status"] == "FAILED" and "kept changing" in item["last_error"]
    assert silver_ids(pipeline) == ids(2, "a")


def test_work_units_redriven_to_the_ingest_queue_by_mistake_still_reach_silver(pipeline):
    # A careless on-call drains the events DLQ into the ingest queue (`--to-url` of the other
    # queue). The DLQ copies are deleted once sent, so ingest must not acknowledge them as events
    # it does not know: they are work units, and they belong on the events queue.
    from ops.dlq import redrive_manual

    a = pipeline.put(KEY, rows(2, "a"))
    for note in pipeline.receive_all(pipeline.provisioned.ingest_queue_url):  # its S3 event: long gone
        pipeline.sqs.delete_message(QueueUrl=pipeline.provisioned.ingest_queue_url, ReceiptHandle=note["ReceiptHandle"])
    pipeline.sqs.send_message(QueueUrl=pipeline.dlq_url, MessageBody=unit_record(pipeline, KEY, a)["body"])
    report = redrive_manual(pipeline.sqs, source_url=pipeline.dlq_url, target_url=pipeline.provisioned.ingest_queue_url)
    assert report.moved == 1
    pipeline.pump()
    assert silver_ids(pipeline) == ids(2, "a")
    assert pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=a)["status"] == "DONE"


def test_a_stray_work_unit_that_cannot_be_forwarded_is_failed_not_acknowledged(pipeline, monkeypatch):
    sqs = pipeline.ingest_app._DEPS.sqs

    def refused(**kwargs):
        raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"},
                           "ResponseMetadata": {"HTTPStatusCode": 503}}, "SendMessageBatch")

    monkeypatch.setattr(sqs, "send_message_batch", refused)
    a = pipeline.put(KEY, rows(2, "a"))
    record = {**unit_record(pipeline, KEY, a, message_id="m-stray"), "eventSource": "aws:sqs"}
    assert pipeline.ingest_app.handler({"Records": [record]}) == {"batchItemFailures": [
        {"itemIdentifier": "m-stray"}]}
