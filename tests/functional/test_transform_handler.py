import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from lambdas.shared import work_unit
from ops.gen_events import generate

KEY = "bronze/shipments/dt=2025-01-01/batch.jsonl"


def events(n, bad=0.0, seed=1, type_="shipments"):
    pairs = list(generate(type_=type_, count=n, seed=seed, bad_ratio=bad))
    return ("\n".join(t for _, t in pairs) + "\n").encode(), sum(ok for ok, _ in pairs)


def silver_table(pipeline, key):
    body = pipeline.s3.get_object(Bucket=pipeline.silver, Key=key)["Body"].read()
    return pq.read_table(pa.BufferReader(body))


def test_an_object_becomes_one_silver_parquet_and_its_bad_lines_go_to_quarantine(pipeline):
    data, good = events(200, bad=0.05)
    assert pipeline.run(KEY, data) == {"batchItemFailures": []}
    table = silver_table(pipeline, "silver/shipments/dt=2025-01-01/batch.parquet")
    assert table.num_rows == good
    quarantine = pipeline.s3.get_object(Bucket=pipeline.silver, Key="quarantine/shipments/dt=2025-01-01/batch.jsonl")
    rejects = [json.loads(x) for x in quarantine["Body"].read().splitlines()]
    assert len(rejects) == 200 - good and all({"line", "reason", "raw"} <= set(r) for r in rejects)
    item = pipeline.ledger.versions(bucket=pipeline.bronze, key=KEY)[0]
    assert (item["status"], item["rows"], item["rejected_rows"], item["silver_key"]) == (
        "DONE", good, 200 - good, "silver/shipments/dt=2025-01-01/batch.parquet")


def test_a_redelivered_message_overwrites_the_same_silver_object(pipeline):
    data, good = events(50)
    etag = pipeline.put(KEY, data)
    pipeline.ingest_app.handler(pipeline.s3_event(KEY, etag))
    messages = pipeline.receive_all()
    pipeline.transform_app.handler(pipeline.sqs_event(messages))
    pipeline.transform_app.handler(pipeline.sqs_event(messages))
    listed = pipeline.s3.list_objects_v2(Bucket=pipeline.silver, Prefix="silver/")["Contents"]
    assert [o["Key"] for o in listed] == ["silver/shipments/dt=2025-01-01/batch.parquet"]
    assert silver_table(pipeline, listed[0]["Key"]).num_rows == good


def test_one_poison_record_fails_only_its_own_item(pipeline):
    data, good = events(20)
    ok_etag = pipeline.put(KEY, data)
    bad_key = "bronze/shipments/dt=2025-01-01/corrupt.jsonl.gz"
    bad_etag = pipeline.put(bad_key, b"\x1f\x8b\x08\x00not really gzip")
    units = [work_unit.build(bucket=pipeline.bronze, key=k, etag=e, size=1, origin="s3-event")
             for k, e in ((KEY, ok_etag), (bad_key, bad_etag))]
    messages = [{"MessageId": f"m{i}", "ReceiptHandle": "r", "Body": u.body()} for i, u in enumerate(units)]
    messages.append({"MessageId": "m-garbage", "ReceiptHandle": "r", "Body": '{"v": 9}'})
    result = pipeline.transform_app.handler(pipeline.sqs_event(messages))
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m-garbage"}]}
    failed = pipeline.ledger.versions(bucket=pipeline.bronze, key=bad_key)[0]
    assert failed["status"] == "FAILED" and "cannot decompress" in failed["last_error"]
    assert silver_table(pipeline, "silver/shipments/dt=2025-01-01/batch.parquet").num_rows == good


def test_an_object_overwritten_since_its_work_unit_is_skipped_as_superseded(pipeline):
    data, _ = events(10)
    old_etag = pipeline.put(KEY, data)
    pipeline.put(KEY, data + data)  # the producer wrote a newer version
    unit = work_unit.build(bucket=pipeline.bronze, key=KEY, etag=old_etag, size=1, origin="s3-event")
    result = pipeline.transform_app.handler(pipeline.sqs_event([{"MessageId": "m", "ReceiptHandle": "r",
                                                                  "Body": unit.body()}]))
    assert result == {"batchItemFailures": []}
    item = pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=old_etag)
    assert (item["status"], item["outcome"]) == ("DONE", "superseded")
    assert "Contents" not in pipeline.s3.list_objects_v2(Bucket=pipeline.silver, Prefix="silver/")


def test_an_unknown_type_fails_the_item_and_the_ledger_says_why(pipeline):
    key = "bronze/invoices/dt=2025-01-01/a.jsonl"
    result = pipeline.run(key, b'{"a": 1}\n')
    assert len(result["batchItemFailures"]) == 1
    assert "unknown event type 'invoices'" in pipeline.ledger.versions(bucket=pipeline.bronze, key=key)[0]["last_error"]


def test_gzip_json_arrays_and_replay_keys_land_under_the_logical_silver_key(pipeline):
    key = "bronze/replay/20260101T000000Z/orders/dt=2025-01-02/arr.json.gz"
    elements = [json.loads(t) for ok, t in generate(type_="orders", count=30, seed=3) if ok]
    assert pipeline.run(key, gzip.compress(json.dumps(elements).encode())) == {"batchItemFailures": []}
    table = silver_table(pipeline, "silver/orders/dt=2025-01-02/arr.parquet")
    assert table.num_rows == 30
    assert set(table.column("_source_key").to_pylist()) == {"bronze/orders/dt=2025-01-02/arr.json.gz"}


def test_a_fixed_version_without_bad_lines_removes_the_old_quarantine_object(pipeline):
    bad, _ = events(100, bad=0.1)
    pipeline.run(KEY, bad)
    clean, good = events(100)
    pipeline.run(KEY, clean)
    assert "Contents" not in pipeline.s3.list_objects_v2(Bucket=pipeline.silver, Prefix="quarantine/")
    assert silver_table(pipeline, "silver/shipments/dt=2025-01-01/batch.parquet").num_rows == good


def test_nothing_is_written_outside_silver_and_quarantine(pipeline):
    for key, body in [(KEY, events(30, bad=0.2)[0]), ("bronze/orders/dt=2025-01-01/e.json", b"")]:
        pipeline.run(key, body)
    keys = [o["Key"] for o in pipeline.s3.list_objects_v2(Bucket=pipeline.silver).get("Contents", [])]
    assert keys and all(k.startswith(("silver/", "quarantine/")) for k in keys)


def test_two_bronze_objects_that_differ_only_by_suffix_do_not_overwrite_each_others_silver(pipeline):
    first, good = events(20, seed=1)
    assert pipeline.run("bronze/shipments/dt=2025-01-01/same.jsonl", first) == {"batchItemFailures": []}
    second, _ = events(5, seed=2)
    result = pipeline.run("bronze/shipments/dt=2025-01-01/same.json", second)
    assert len(result["batchItemFailures"]) == 1
    item = pipeline.ledger.versions(bucket=pipeline.bronze, key="bronze/shipments/dt=2025-01-01/same.json")[0]
    assert item["status"] == "FAILED" and "silver key collision" in item["last_error"]
    assert silver_table(pipeline, "silver/shipments/dt=2025-01-01/same.parquet").num_rows == good


def one_unit_event(pipeline, *, bucket, key, etag="0123456789abcdef0123456789abcdef"):
    unit = work_unit.build(bucket=bucket, key=key, etag=etag, size=1, origin="replay-sqs")
    return pipeline.sqs_event([{"MessageId": "m", "ReceiptHandle": "r", "Body": unit.body()}]), unit


def test_a_missing_key_in_an_existing_bucket_is_done_as_source_deleted(pipeline):
    event, unit = one_unit_event(pipeline, bucket=pipeline.bronze, key=KEY)
    assert pipeline.transform_app.handler(event) == {"batchItemFailures": []}
    item = pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=unit.etag)
    assert (item["status"], item["outcome"]) == ("DONE", "source-deleted")


def test_a_work_unit_naming_a_bucket_that_does_not_exist_fails_and_names_the_bucket(pipeline):
    event, unit = one_unit_event(pipeline, bucket="elt-prod-bronze-typo", key=KEY)
    assert pipeline.transform_app.handler(event) == {"batchItemFailures": [{"itemIdentifier": "m"}]}
    item = pipeline.ledger.get(bucket="elt-prod-bronze-typo", key=KEY, etag=unit.etag)
    assert item["status"] == "FAILED"
    assert "bucket 'elt-prod-bronze-typo' does not exist (NoSuchBucket)" in item["last_error"]
    assert "Contents" not in pipeline.s3.list_objects_v2(Bucket=pipeline.silver)


def test_access_denied_on_the_source_fails_the_item_and_says_which_permissions_to_check(pipeline):
    """AWS answers 403 for a missing key when the role lacks s3:ListBucket: never 'source deleted'.
    moto does not enforce IAM, so the 403 comes from botocore's Stubber (request checked against
    the S3 service model)."""
    from botocore.stub import Stubber

    event, unit = one_unit_event(pipeline, bucket=pipeline.bronze, key=KEY)
    s3 = pipeline.transform_app.deps().s3
    with Stubber(s3) as stub:
        stub.add_client_error("get_object", service_error_code="AccessDenied", service_message="Access Denied",
                              http_status_code=403,
                              expected_params={"Bucket": pipeline.bronze, "Key": KEY, "IfMatch": f'"{unit.etag}"'})
        assert pipeline.transform_app.handler(event) == {"batchItemFailures": [{"itemIdentifier": "m"}]}
    item = pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=unit.etag)
    assert item["status"] == "FAILED" and "access denied (403)" in item["last_error"]
    assert "s3:ListBucket" in item["last_error"]


def test_access_denied_on_the_silver_head_fails_the_item_instead_of_writing(pipeline):
    from botocore.stub import ANY, Stubber

    data, _ = events(5)
    etag = pipeline.put(KEY, data)
    event, unit = one_unit_event(pipeline, bucket=pipeline.bronze, key=KEY, etag=etag)
    s3 = pipeline.transform_app.deps().s3
    real_get = s3.get_object
    body = real_get(Bucket=pipeline.bronze, Key=KEY)["Body"].read()
    with Stubber(s3) as stub:
        from botocore.response import StreamingBody

        stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(body), len(body)), "ETag": f'"{etag}"'},
                          expected_params={"Bucket": pipeline.bronze, "Key": KEY, "IfMatch": ANY})
        stub.add_client_error("head_object", service_error_code="403", http_status_code=403,
                              expected_params={"Bucket": pipeline.silver, "Key": ANY})
        assert pipeline.transform_app.handler(event) == {"batchItemFailures": [{"itemIdentifier": "m"}]}
    item = pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=unit.etag)
    assert item["status"] == "FAILED" and f"s3://{pipeline.silver}/silver/" in item["last_error"]
    assert "Contents" not in pipeline.s3.list_objects_v2(Bucket=pipeline.silver)


PLANTED = ("PLANTED-7f3a-not-a-time", "planted.person@example.org", 98765432109876543210987)


def test_log_lines_hold_no_rejected_value_only_line_numbers_field_names_and_counts(pipeline, capsys):
    good = [json.loads(t) for ok, t in generate(type_="shipments", count=6, seed=4) if ok]
    bad_time = dict(good[0], created_at=PLANTED[0])
    bad_type = dict(good[1], carrier={"name": PLANTED[1]})
    bad_int = dict(good[2], items=[{"sku": "A", "quantity": PLANTED[2]}])
    hostile = dict(good[3], created_at=f"x of field 'x' {PLANTED[1]} is not a valid ")  # looks like a reason
    lines = [good[4], bad_time, bad_type, bad_int, hostile, good[5]]
    data = ("\n".join(json.dumps(x) for x in lines) + "\n").encode()
    capsys.readouterr()
    assert pipeline.run(KEY, data) == {"batchItemFailures": []}
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    rejected = sorted((e for e in logged if e["message"] == "line rejected"), key=lambda e: e["line"])
    assert [e["line"] for e in rejected] == [2, 3, 4, 5]
    assert {e["problem"] for e in rejected} == {"invalid-value", "wrong-type"}
    assert [e["fields"] for e in rejected] == [["created_at"], ["carrier"], ["items[].quantity"], ["created_at"]]
    text = "\n".join(json.dumps(e) for e in logged)
    for value in PLANTED:
        assert str(value) not in text
    assert "field 'x'" not in text
    quarantine = pipeline.s3.get_object(Bucket=pipeline.silver, Key="quarantine/shipments/dt=2025-01-01/batch.jsonl")
    kept = quarantine["Body"].read().decode()
    assert all(str(value) in kept for value in PLANTED)  # the data is kept where it belongs


class _Clock:
    """A Lambda context whose remaining time drops by `per_call_ms` each time it is asked."""

    def __init__(self, remaining_ms: int, per_call_ms: int):
        self.remaining_ms, self.per_call_ms = remaining_ms, per_call_ms
        self.aws_request_id = "clock"

    def get_remaining_time_in_millis(self) -> int:
        self.remaining_ms -= self.per_call_ms
        return self.remaining_ms


def test_items_not_started_when_time_runs_low_are_failed_items_and_finished_ones_stay_done(pipeline):
    import dataclasses

    keys = [f"bronze/shipments/dt=2025-01-01/part-{i}.jsonl" for i in range(4)]
    units = [work_unit.build(bucket=pipeline.bronze, key=k, etag=pipeline.put(k, events(5, seed=i)[0]), size=1,
                             origin="s3-event") for i, k in enumerate(keys)]
    messages = [{"MessageId": f"m{i}", "ReceiptHandle": "r", "Body": u.body()} for i, u in enumerate(units)]
    app = pipeline.transform_app
    app._DEPS = dataclasses.replace(app._DEPS, min_ms_to_start=60_000)
    # Each look at the clock costs 20 s: 90 s and 70 s left start items 0 and 1; 50 s is inside the reserve.
    result = app.handler(pipeline.sqs_event(messages), _Clock(remaining_ms=110_000, per_call_ms=20_000))
    assert result == {"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}]}
    statuses = [pipeline.ledger.versions(bucket=pipeline.bronze, key=k) for k in keys]
    assert [s[0]["status"] for s in statuses[:2]] == ["DONE", "DONE"]
    assert statuses[2:] == [[], []]  # never started: no ledger change, retried from the queue as they were
    listed = pipeline.s3.list_objects_v2(Bucket=pipeline.silver, Prefix="silver/")["Contents"]
    assert sorted(o["Key"] for o in listed) == [f"silver/shipments/dt=2025-01-01/part-{i}.parquet" for i in (0, 1)]


def test_without_a_time_reserve_every_item_runs_whatever_the_remaining_time(pipeline):
    key = "bronze/shipments/dt=2025-01-01/late.jsonl"
    unit = work_unit.build(bucket=pipeline.bronze, key=key, etag=pipeline.put(key, events(3)[0]), size=1,
                           origin="s3-event")
    result = pipeline.transform_app.handler(
        pipeline.sqs_event([{"MessageId": "m", "ReceiptHandle": "r", "Body": unit.body()}]),
        _Clock(remaining_ms=1_000, per_call_ms=500))
    assert result == {"batchItemFailures": []}


def _copy_unit(pipeline, original: str, body: bytes, stamp: str = "20260101T000000Z"):
    """A replay copy's work unit whose copy has since expired (deleted), as after the lifecycle rule."""
    copy_key = original.replace("bronze/", f"bronze/replay/{stamp}/", 1)
    etag = pipeline.put(copy_key, body)
    pipeline.s3.delete_object(Bucket=pipeline.bronze, Key=copy_key)
    unit = work_unit.build(bucket=pipeline.bronze, key=copy_key, etag=etag, size=len(body), origin="redrive")
    return copy_key, [{"MessageId": "m", "ReceiptHandle": "r", "Body": unit.body()}]


def test_a_redrive_after_its_replay_copy_expired_transforms_the_original_when_it_holds_the_same_version(pipeline):
    original = "bronze/shipments/dt=2025-01-01/late-redrive.jsonl"
    body, good = events(12, seed=7)
    pipeline.put(original, body)
    copy_key, messages = _copy_unit(pipeline, original, body)
    assert pipeline.transform_app.handler(pipeline.sqs_event(messages)) == {"batchItemFailures": []}
    assert silver_table(pipeline, "silver/shipments/dt=2025-01-01/late-redrive.parquet").num_rows == good
    item = pipeline.ledger.versions(bucket=pipeline.bronze, key=copy_key)[0]
    assert (item["status"], item["outcome"]) == ("DONE", "original-transformed")
    assert "still held this version" in item["superseded_reason"]


def test_a_redrive_after_its_copy_expired_and_the_original_changed_is_a_deleted_source_not_old_rows(pipeline):
    original = "bronze/shipments/dt=2025-01-01/moved-on.jsonl"
    old, _ = events(12, seed=8)
    copy_key, messages = _copy_unit(pipeline, original, old)
    pipeline.put(original, events(3, seed=9)[0])  # the original now holds a newer version
    assert pipeline.transform_app.handler(pipeline.sqs_event(messages)) == {"batchItemFailures": []}
    assert "Contents" not in pipeline.s3.list_objects_v2(Bucket=pipeline.silver, Prefix="silver/")
    item = pipeline.ledger.versions(bucket=pipeline.bronze, key=copy_key)[0]
    assert (item["status"], item["outcome"]) == ("DONE", "source-deleted")
