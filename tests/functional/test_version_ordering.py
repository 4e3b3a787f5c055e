"""Silver holds the latest bronze version: the ways S3 versions interleave (issue 15's cases).

Each case is driven by the handlers' step hooks (`lambdas.shared.steps`): at a named step of one
handler, the test does what another writer would do at that moment.
"""

from __future__ import annotations

import json
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from lambdas.shared import steps, work_unit
from lambdas.transform import conditional_write

KEY = "bronze/orders/dt=2025-01-02/a.jsonl"
SILVER = "silver/orders/dt=2025-01-02/a.parquet"


def rows(n: int, tag: str) -> bytes:
    return "".join(json.dumps({"order_id": f"{tag}-{i}", "customer": {"customer_id": "c"}, "currency": "EUR",
                               "lines": [{"sku": "s", "quantity": 1, "unit_price": 1.5}], "total_amount": 1.5,
                               "placed_at": "2025-01-02T00:00:00Z"}) + "\n" for i in range(n)).encode()


def silver_ids(pipeline) -> list[str]:
    body = pipeline.s3.get_object(Bucket=pipeline.silver, Key=SILVER)["Body"].read()
    return sorted(pq.read_table(pa.BufferReader(body)).column("order_id").to_pylist())


def ids(n: int, tag: str) -> list[str]:
    return sorted(f"{tag}-{i}" for i in range(n))


def silver_meta(pipeline) -> dict:
    return pipeline.s3.head_object(Bucket=pipeline.silver, Key=SILVER)["Metadata"]


def unit_record(pipeline, key, etag, *, origin="s3-event", sequencer="", message_id="m-1") -> dict:
    unit = work_unit.build(bucket=pipeline.bronze, key=key, etag=etag, size=1, origin=origin, sequencer=sequencer)
    return {"messageId": message_id, "body": unit.body()}


def transform(pipeline, *records) -> dict:
    return pipeline.transform_app.handler({"Records": list(records)})


def at(step_name: str, action):
    """A step hook that runs `action` the first time `step_name` is reached."""
    done = []

    def hook(name, context):
        if name == step_name and not done:
            done.append(name)
            action()

    return hook


@pytest.fixture
def hooks():
    yield steps
    steps.HOOK = None


def test_silver_metadata_records_the_logical_source_key_its_etag_and_its_order(pipeline):
    etag = pipeline.put(KEY, rows(2, "a"))
    assert transform(pipeline, unit_record(pipeline, KEY, etag, sequencer="0A")) == {"batchItemFailures": []}
    meta = silver_meta(pipeline)
    assert (unquote(meta["source-key"]), meta["source-etag"], meta["source-sequencer"]) == (KEY, etag, "0A")


def test_a_stale_write_with_a_sequencer_leaves_the_newer_version_in_silver(pipeline, hooks):
    # A passes its IfMatch read; meanwhile B is uploaded and fully processed; then A would write.
    a = pipeline.put(KEY, rows(2, "a"))
    b = {}

    def upload_and_process_b():
        steps.HOOK = None
        b["etag"] = pipeline.put(KEY, rows(3, "b"))
        transform(pipeline, unit_record(pipeline, KEY, b["etag"], sequencer="20", message_id="m-b"))

    steps.HOOK = at(steps.AFTER_READ, upload_and_process_b)
    assert transform(pipeline, unit_record(pipeline, KEY, a, sequencer="10")) == {"batchItemFailures": []}
    assert silver_ids(pipeline) == ids(3, "b")
    item = pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=a)
    assert item["outcome"] == "superseded" and "newer event (sequencer 20 > 10)" in item["superseded_reason"]
    assert pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=b["etag"])["outcome"] == "written"


def test_a_stale_write_without_a_sequencer_is_caught_after_the_write_and_the_current_version_rewritten(pipeline, hooks):
    # A replay-sqs unit has no order: it writes, then sees that the source moved on, and transforms
    # B itself, since B's own event was already consumed (it lost nothing, but A overwrote it).
    a = pipeline.put(KEY, rows(2, "a"))
    b = {}

    def upload_and_process_b():
        steps.HOOK = None
        b["etag"] = pipeline.put(KEY, rows(3, "b"))
        transform(pipeline, unit_record(pipeline, KEY, b["etag"], sequencer="20", message_id="m-b"))

    steps.HOOK = at(steps.AFTER_READ, upload_and_process_b)
    assert transform(pipeline, unit_record(pipeline, KEY, a, origin="replay-sqs")) == {"batchItemFailures": []}
    assert silver_ids(pipeline) == ids(3, "b")
    assert silver_meta(pipeline)["source-etag"] == b["etag"]
    item = pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=a)
    assert item["outcome"] == "superseded" and f"the source became {b['etag']}" in item["superseded_reason"]
    assert pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=b["etag"])["status"] == "DONE"


def test_a_writer_killed_after_a_stale_write_repairs_silver_on_its_retry(pipeline, hooks):
    a = pipeline.put(KEY, rows(2, "a"))
    b = {}

    def hook(name, context):  # B is uploaded and processed while A is between its read and write
        if name == steps.AFTER_READ and not b:
            steps.HOOK = None
            b["etag"] = pipeline.put(KEY, rows(3, "b"))
            transform(pipeline, unit_record(pipeline, KEY, b["etag"], sequencer="20", message_id="m-b"))
            steps.HOOK = die_after_write

    def die_after_write(name, context):
        if name == steps.AFTER_SILVER_WRITE:
            steps.HOOK = None
            raise steps.Killed("killed before the check after the write")

    steps.HOOK = hook
    with pytest.raises(steps.Killed):
        transform(pipeline, unit_record(pipeline, KEY, a, origin="redrive"))
    assert silver_ids(pipeline) == ids(2, "a")  # stale: the process died before it could notice
    # The message is redelivered: its read now fails (412), and silver still holds its version.
    assert transform(pipeline, unit_record(pipeline, KEY, a, origin="redrive")) == {"batchItemFailures": []}
    assert silver_ids(pipeline) == ids(3, "b")
    assert "silver still held this version" in pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=a)[
        "superseded_reason"]


def test_aba_through_the_whole_pipeline_ends_with_the_re_uploaded_rows(pipeline):
    a = pipeline.put(KEY, rows(2, "a"))
    pipeline.ingest_app.handler(pipeline.s3_event(KEY, a, sequencer="10"))
    pipeline.pump()
    b = pipeline.put(KEY, rows(3, "b"))
    pipeline.ingest_app.handler(pipeline.s3_event(KEY, b, sequencer="20"))
    pipeline.pump()
    assert pipeline.put(KEY, rows(2, "a")) == a
    pipeline.ingest_app.handler(pipeline.s3_event(KEY, a, sequencer="30"))
    pipeline.pump()
    assert silver_ids(pipeline) == ids(2, "a")
    assert silver_meta(pipeline)["source-sequencer"] == "30"
    # A late redelivery of A's first event changes nothing.
    pipeline.ingest_app.handler(pipeline.s3_event(KEY, a, sequencer="10"))
    assert pipeline.receive_all() == []


def test_an_older_event_of_the_same_version_does_not_rewrite_a_newer_ones_order(pipeline):
    a = pipeline.put(KEY, rows(2, "a"))
    transform(pipeline, unit_record(pipeline, KEY, a, sequencer="30"))
    assert transform(pipeline, unit_record(pipeline, KEY, a, sequencer="10")) == {"batchItemFailures": []}
    assert silver_meta(pipeline)["source-sequencer"] == "30"


def test_replay_and_redrive_of_the_current_version_always_rewrite_silver(pipeline):
    a = pipeline.put(KEY, rows(2, "a"))
    transform(pipeline, unit_record(pipeline, KEY, a, sequencer="30"))
    meta = silver_meta(pipeline)
    for origin in ("replay-sqs", "redrive"):
        pipeline.s3.put_object(Bucket=pipeline.silver, Key=SILVER, Body=b"damaged", Metadata=meta)  # on-call found it
        assert transform(pipeline, unit_record(pipeline, KEY, a, origin=origin)) == {"batchItemFailures": []}
        assert silver_ids(pipeline) == ids(2, "a")
        assert silver_meta(pipeline)["source-sequencer"] == "30"  # the version's known order is kept
    pipeline.s3.delete_object(Bucket=pipeline.silver, Key=SILVER)  # lost: a replay restores it
    assert transform(pipeline, unit_record(pipeline, KEY, a, origin="replay-sqs")) == {"batchItemFailures": []}
    assert silver_ids(pipeline) == ids(2, "a")


def copy_replay(pipeline, key=KEY, dest_prefix="bronze/replay/r1") -> tuple[str, str]:
    from ops.listing import ObjectInfo
    from ops.replay import replay_copy

    head = pipeline.s3.head_object(Bucket=pipeline.bronze, Key=key)
    info = ObjectInfo(bucket=pipeline.bronze, key=key, etag=head["ETag"].strip('"'), size=head["ContentLength"],
                      last_modified=head["LastModified"])
    report = replay_copy(pipeline.s3, objects=[info], bucket=pipeline.bronze, dest_prefix=dest_prefix)
    assert report.ok and report.done == 1, (report.failed, report.skipped)
    dest = f"{dest_prefix}/{key[len('bronze/'):]}"
    return dest, pipeline.s3.head_object(Bucket=pipeline.bronze, Key=dest)["ETag"].strip('"')


def test_a_replay_copy_records_its_original_version_and_rewrites_silver_while_that_is_current(pipeline):
    a = pipeline.put(KEY, rows(2, "a"))
    dest, copy_etag = copy_replay(pipeline)
    assert pipeline.s3.head_object(Bucket=pipeline.bronze, Key=dest)["Metadata"]["replay-source-etag"] == a
    assert transform(pipeline, unit_record(pipeline, dest, copy_etag)) == {"batchItemFailures": []}
    assert silver_ids(pipeline) == ids(2, "a")
    assert (unquote(silver_meta(pipeline)["source-key"]), silver_meta(pipeline)["source-etag"]) == (KEY, a)


def test_a_replay_copy_outlived_by_an_overwrite_of_its_original_is_superseded(pipeline):
    pipeline.put(KEY, rows(2, "a"))
    dest, copy_etag = copy_replay(pipeline)
    b = pipeline.put(KEY, rows(3, "b"))
    transform(pipeline, unit_record(pipeline, KEY, b, sequencer="20", message_id="m-b"))
    assert transform(pipeline, unit_record(pipeline, dest, copy_etag)) == {"batchItemFailures": []}
    assert silver_ids(pipeline) == ids(3, "b")
    item = pipeline.ledger.get(bucket=pipeline.bronze, key=dest, etag=copy_etag)
    assert item["outcome"] == "superseded" and f"the source became {b}" in item["superseded_reason"]


def test_a_suffix_collision_is_decided_by_the_conditional_write_and_the_loser_fails_with_the_reason(pipeline, hooks):
    # a.json and a.jsonl at the same time: both look at silver before either writes.
    other = "bronze/orders/dt=2025-01-02/a.json"
    first = pipeline.put(KEY, rows(2, "a"))
    second = pipeline.put(other, b"[" + rows(1, "j").strip() + b"]")

    def the_other_writes_first():
        steps.HOOK = None
        assert transform(pipeline, unit_record(pipeline, other, second, message_id="m-j")) == {"batchItemFailures": []}

    steps.HOOK = at(steps.BEFORE_SILVER_WRITE, the_other_writes_first)
    result = transform(pipeline, unit_record(pipeline, KEY, first))
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert silver_ids(pipeline) == ids(1, "j")
    item = pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=first)
    assert item["status"] == "FAILED" and "silver key collision" in item["last_error"]
    assert other in item["last_error"]


def test_a_write_that_loses_the_put_race_looks_again_and_never_replaces_a_newer_version(pipeline, hooks):
    a = pipeline.put(KEY, rows(2, "a"))
    b = {}

    def newer_writer_slips_in():
        steps.HOOK = None
        b["etag"] = pipeline.put(KEY, rows(3, "b"))
        transform(pipeline, unit_record(pipeline, KEY, b["etag"], sequencer="20", message_id="m-b"))

    steps.HOOK = at(steps.BEFORE_SILVER_WRITE, newer_writer_slips_in)
    assert transform(pipeline, unit_record(pipeline, KEY, a, sequencer="10")) == {"batchItemFailures": []}
    assert silver_ids(pipeline) == ids(3, "b")
    assert "sequencer 20 > 10" in pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=a)["superseded_reason"]


def test_the_multipart_path_sends_the_condition_on_complete_and_aborts_when_it_fails(pipeline, monkeypatch, hooks):
    # moto 5.2.5 does not enforce If-Match/If-None-Match on CompleteMultipartUpload: this test
    # injects the precondition failure S3 would return, after a newer writer took the object.
    monkeypatch.setattr(conditional_write, "MULTIPART_THRESHOLD", 0)
    monkeypatch.setattr(conditional_write.put_file, "__kwdefaults__",
                        {**conditional_write.put_file.__kwdefaults__, "threshold": 0})
    s3 = pipeline.transform_app._DEPS.s3
    real = s3.complete_multipart_upload
    sent = []
    a = pipeline.put(KEY, rows(2, "a"))
    b = {}

    def complete(**kwargs):
        sent.append({k: v for k, v in kwargs.items() if k in ("IfMatch", "IfNoneMatch")})
        if len(sent) == 1:  # a newer version is written first, so S3 refuses this completion
            b["etag"] = pipeline.put(KEY, rows(3, "b"))
            pipeline.s3.put_object(Bucket=pipeline.silver, Key=SILVER, Body=b"newer",
                                   Metadata={"source-key": KEY, "source-etag": b["etag"], "source-sequencer": "20"})
            raise ClientError({"Error": {"Code": "PreconditionFailed", "Message": "injected"},
                               "ResponseMetadata": {"HTTPStatusCode": 412}}, "CompleteMultipartUpload")
        return real(**kwargs)

    monkeypatch.setattr(s3, "complete_multipart_upload", complete)
    assert transform(pipeline, unit_record(pipeline, KEY, a, sequencer="10")) == {"batchItemFailures": []}
    assert sent == [{"IfNoneMatch": "*"}]  # the only completion: the second look saw the newer version
    assert pipeline.s3.get_object(Bucket=pipeline.silver, Key=SILVER)["Body"].read() == b"newer"
    assert pipeline.s3.list_multipart_uploads(Bucket=pipeline.silver).get("Uploads", []) == []
    # And a multipart write that wins carries If-Match of the object it replaces.
    c = pipeline.put(KEY, rows(4, "c"))
    held = pipeline.s3.head_object(Bucket=pipeline.silver, Key=SILVER)["ETag"]
    assert transform(pipeline, unit_record(pipeline, KEY, c, sequencer="30")) == {"batchItemFailures": []}
    assert sent[-1] == {"IfMatch": held} and silver_ids(pipeline) == ids(4, "c")


def test_a_transform_makes_at_most_one_request_more_per_object_than_before(pipeline):
    # Before: GetObject, HeadObject (collision check), PutObject, DeleteObject (no rejects),
    # UpdateItem. Now the HeadObject of silver also gives the If-Match ETag, and one HeadObject of
    # the source after the write is the one extra request.
    calls = []
    for c in (pipeline.transform_app._DEPS.s3, pipeline.transform_app._DEPS.ledger.client):
        c.meta.events.register("before-call", lambda model, **kw: calls.append(model.name))
    a = pipeline.put(KEY, rows(2, "a"))
    transform(pipeline, unit_record(pipeline, KEY, a, sequencer="10"))
    assert calls == ["GetObject", "HeadObject", "PutObject", "DeleteObject", "HeadObject", "UpdateItem"]


def test_eltops_status_shows_each_versions_order_and_why_it_was_superseded(pipeline, hooks):
    from click.testing import CliRunner

    from ops.cli import cli

    a = pipeline.put(KEY, rows(2, "a"))
    pipeline.ingest_app.handler(pipeline.s3_event(KEY, a, sequencer="10"))
    b = {}

    def upload_and_process_b():
        steps.HOOK = None
        b["etag"] = pipeline.put(KEY, rows(3, "b"))
        pipeline.ingest_app.handler(pipeline.s3_event(KEY, b["etag"], sequencer="20"))
        pipeline.pump()

    steps.HOOK = at(steps.AFTER_READ, upload_and_process_b)
    pipeline.pump()
    args = ["status", f"s3://{pipeline.bronze}/{KEY}", "--table", pipeline.names.ledger_table,
            "--silver-bucket", pipeline.silver]
    text = CliRunner().invoke(cli, args)
    assert text.exit_code == 0, text.output
    assert "    sequencer      10" in text.stdout and "    sequencer      20" in text.stdout
    assert f"etag {a}: DONE (superseded)" in text.stdout
    assert "superseded_reason silver holds" in text.stdout.replace("  ", " ")
    assert f"holds etag {b['etag']}, sequencer 20" in text.stdout
    status = json.loads(CliRunner().invoke(cli, [*args, "--json"]).stdout)
    assert status["silver_source_etag"] == b["etag"] and status["silver_sequencer"] == "20"
    by_etag = {v["etag"]: v for v in status["versions"]}
    assert "sequencer 20 > 10" in by_etag[a]["superseded_reason"] and by_etag[b["etag"]]["outcome"] == "written"
