import copy
import json

import pytest
from botocore.exceptions import ClientError

from lambdas.shared import work_unit
from tests.conftest import load_event

KEY = "bronze/shipments/dt=2025-01-01/night batch+1 über.jsonl"


def bodies(pipeline):
    return [m["Body"] for m in pipeline.receive_all()]


def test_an_s3_event_with_an_encoded_key_claims_and_queues_one_work_unit(pipeline):
    etag = pipeline.put(KEY, b'{"a":1}\n')
    event = load_event("s3_put_event.json")  # key: spaces as '+', '+' as %2B, non-ASCII, '=' as %3D
    event["Records"][0]["s3"]["object"]["eTag"] = etag
    pipeline.ingest_app.handler(event)
    messages = pipeline.receive_all()
    assert len(messages) == 1
    unit = work_unit.parse(messages[0]["Body"])
    assert (unit.key, unit.etag, unit.type, unit.dt, unit.origin) == (KEY, etag, "shipments", "2025-01-01", "s3-event")
    assert messages[0]["MessageAttributes"]["origin"]["StringValue"] == "s3-event"
    item = pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=etag)
    assert item["status"] == "QUEUED" and item["message_id"] == messages[0]["MessageId"]


def test_a_duplicate_event_is_a_no_op(pipeline):
    etag = pipeline.put(KEY, b'{"a":1}\n')
    event = pipeline.s3_event(KEY, etag)
    pipeline.ingest_app.handler(event)
    result = pipeline.ingest_app.handler(copy.deepcopy(event))
    assert result["duplicates"] == 1 and result["queued"] == 0
    assert len(bodies(pipeline)) == 1


def test_the_s3_test_event_is_skipped(pipeline):
    result = pipeline.ingest_app.handler(load_event("s3_test_event.json"))
    assert result["skipped"] == 1 and bodies(pipeline) == []


def test_the_eventbridge_object_created_shape_is_ingested_without_url_decoding(pipeline):
    event = load_event("eventbridge_object_created.json")
    key = event["detail"]["object"]["key"]  # contains a literal '+': must stay a '+'
    event["detail"]["object"]["etag"] = pipeline.put(key, b"{}\n")
    pipeline.ingest_app.handler(event)
    assert [work_unit.parse(b).key for b in bodies(pipeline)] == [key]


def test_an_s3_event_wrapped_in_sns_inside_sqs_is_ingested_with_a_partial_batch_response(pipeline):
    event = load_event("sqs_wrapped_sns_s3_event.json")
    etag = pipeline.put("bronze/orders/dt=2025-01-03/wrapped.jsonl", b"{}\n")
    event["Records"][0]["body"] = event["Records"][0]["body"].replace("REPLACED-BY-TEST", etag)
    assert pipeline.ingest_app.handler(event) == {"batchItemFailures": []}
    assert [work_unit.parse(b).key for b in bodies(pipeline)] == ["bronze/orders/dt=2025-01-03/wrapped.jsonl"]


@pytest.mark.parametrize("key", [
    "other/x.jsonl",  # outside bronze/
    "bronze/shipments/dt=2025-01-01/a.csv",  # unsupported suffix
    "bronze/shipments/dt=2025-02-30/a.jsonl",  # not a date
    "bronze/shipments/dt=2025-01-01/../../../silver/x.jsonl",  # .. segments
    "bronze/Bad-Type/dt=2025-01-01/a.jsonl",
])
def test_keys_that_are_not_valid_bronze_keys_are_skipped_with_a_logged_reason(pipeline, key, capsys):
    result = pipeline.ingest_app.handler(pipeline.s3_event(key, "e"))
    assert result["skipped"] == 1 and result["queued"] == 0
    assert bodies(pipeline) == []
    assert pipeline.ddb.scan(TableName=pipeline.names.ledger_table)["Count"] == 0
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert any(line["message"].startswith(("skipped", "rejected")) for line in logged)


def test_a_failed_send_releases_the_claim_and_fails_the_invocation_so_the_retry_works(pipeline, monkeypatch):
    etag = pipeline.put(KEY, b"{}\n")
    event = pipeline.s3_event(KEY, etag)
    sqs = pipeline.ingest_app._DEPS.sqs
    real = sqs.send_message_batch

    def fail(**kwargs):
        raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessageBatch")

    monkeypatch.setattr(sqs, "send_message_batch", fail)
    monkeypatch.setattr("lambdas.ingest.app.time.sleep", lambda s: None)
    with pytest.raises(pipeline.ingest_app.IngestFailed):
        pipeline.ingest_app.handler(event)
    assert pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=etag) is None
    monkeypatch.setattr(sqs, "send_message_batch", real)
    pipeline.ingest_app.handler(event)  # Lambda's retry of the same event
    assert len(bodies(pipeline)) == 1


def test_an_event_for_an_object_another_invocation_still_holds_is_retried_not_dropped(pipeline):
    # Invocation A claimed the object and has not queued it yet. A second delivery of the event
    # must not be acknowledged as a duplicate: if A then dies before its send, nothing would ever
    # queue the object. It fails (S3 retries it; from SQS, a partial batch failure), and its retry
    # takes over once A's lease lapses.
    etag = pipeline.put(KEY, b"{}\n")
    held = pipeline.ledger.claim(bucket=pipeline.bronze, key=KEY, etag=etag, size=3, type_="shipments",
                                 dt="2025-01-01", lease_seconds=300)
    assert held.won
    with pytest.raises(pipeline.ingest_app.IngestFailed, match=r"^1 object\(s\) are still claimed by another invocation; the event will be retried$"):
        pipeline.ingest_app.handler(pipeline.s3_event(KEY, etag))
    from_sqs = {"Records": [{"eventSource": "aws:sqs", "messageId": "m-1",
                             "body": json.dumps(pipeline.s3_event(KEY, etag))}]}
    assert pipeline.ingest_app.handler(from_sqs) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert bodies(pipeline) == [] and pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=etag)["status"] == "CLAIMED"

    # A died: its lease lapses, and the retried event takes over and queues the object, once.
    pipeline.ddb.update_item(TableName=pipeline.names.ledger_table, Key={"pk": {"S": held.pk}, "etag": {"S": etag}},
                             UpdateExpression="SET lease_until = :past", ExpressionAttributeValues={":past": {"N": "1"}})
    assert pipeline.ingest_app.handler(pipeline.s3_event(KEY, etag))["queued"] == 1
    assert pipeline.ingest_app.handler(pipeline.s3_event(KEY, etag))["duplicates"] == 1
    assert [work_unit.parse(b).key for b in bodies(pipeline)] == [KEY]


def test_a_missing_environment_variable_is_named(monkeypatch):
    from lambdas.shared import config

    with pytest.raises(config.ConfigError, match="ELT_QUEUE_URL"):
        config.read(config.INGEST_ENV, {"ELT_LEDGER_TABLE": "t"})


@pytest.mark.parametrize("event", ["not json", ["a", "list"], {"Records": "oops"}, {}])
def test_an_event_of_no_known_shape_is_skipped_not_a_crash(pipeline, event):
    result = pipeline.ingest_app.handler(event)
    assert result["skipped"] == 1 and result["queued"] == 0


def test_the_sequencer_of_an_s3_event_and_of_an_eventbridge_event_reaches_the_work_unit_and_the_ledger(pipeline):
    etag = pipeline.put(KEY, b"{}\n")
    pipeline.ingest_app.handler(pipeline.s3_event(KEY, etag, sequencer="0055aed6dcd90281e5"))
    event = load_event("eventbridge_object_created.json")
    key = event["detail"]["object"]["key"]
    event["detail"]["object"]["etag"] = bridged = pipeline.put(key, b"{}\n")
    pipeline.ingest_app.handler(event)
    units = sorted((work_unit.parse(b) for b in bodies(pipeline)), key=lambda u: u.key)
    assert [(u.key, u.sequencer) for u in units] == sorted([(KEY, "0055AED6DCD90281E5"), (key, "00617F08299329D189")])
    assert pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=etag)["sequencer"] == "0055AED6DCD90281E5"
    assert pipeline.ledger.get(bucket=pipeline.bronze, key=key, etag=bridged)["sequencer"] == "00617F08299329D189"


def _finish(pipeline, key, etag, sequencer):
    pipeline.ledger.mark_done(bucket=pipeline.bronze, key=key, etag=etag, silver_key="s", rows=1, rejected_rows=0,
                              sequencer=sequencer)


def test_the_same_etag_uploaded_again_after_another_version_is_queued_again(pipeline):
    # ABA: A (seq ...10), B (seq ...20), then A's exact bytes (seq ...30): same ETag as A's DONE item.
    a = pipeline.put(KEY, b'{"a":1}\n')
    pipeline.ingest_app.handler(pipeline.s3_event(KEY, a, sequencer="0000000000000010"))
    _finish(pipeline, KEY, a, "0000000000000010")
    b = pipeline.put(KEY, b'{"b":1}\n')
    pipeline.ingest_app.handler(pipeline.s3_event(KEY, b, sequencer="0000000000000020"))
    assert pipeline.put(KEY, b'{"a":1}\n') == a
    result = pipeline.ingest_app.handler(pipeline.s3_event(KEY, a, sequencer="0000000000000030"))
    assert result["queued"] == 1 and result["duplicates"] == 0
    units = [work_unit.parse(x) for x in bodies(pipeline)]
    assert [(u.etag, u.sequencer) for u in units] == [(a, "0000000000000010"), (b, "0000000000000020"),
                                                      (a, "0000000000000030")]
    item = pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=a)
    assert (item["status"], item["sequencer"], item["previous_sequencer"], item["previous_outcome"]) == (
        "QUEUED", "0000000000000030", "0000000000000010", "written")
    # A redelivery of the newest event, and a late copy of the oldest one, are no-ops.
    assert pipeline.ingest_app.handler(pipeline.s3_event(KEY, a, sequencer="0000000000000030"))["duplicates"] == 1
    assert pipeline.ingest_app.handler(pipeline.s3_event(KEY, a, sequencer="0000000000000010"))["duplicates"] == 1
    assert bodies(pipeline) == []


def test_an_older_events_outcome_is_kept_off_an_item_a_newer_event_retook(pipeline):
    a = pipeline.put(KEY, b'{"a":1}\n')
    pipeline.ingest_app.handler(pipeline.s3_event(KEY, a, sequencer="10"))
    pipeline.ingest_app.handler(pipeline.s3_event(KEY, a, sequencer="30"))  # item QUEUED, retaken
    assert not pipeline.ledger.mark_done(bucket=pipeline.bronze, key=KEY, etag=a, silver_key="", rows=0,
                                         rejected_rows=0, outcome="superseded", reason="old", sequencer="10")
    assert pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=a)["status"] == "QUEUED"
    assert pipeline.ledger.mark_done(bucket=pipeline.bronze, key=KEY, etag=a, silver_key="s", rows=1,
                                     rejected_rows=0, sequencer="30")
    assert pipeline.ledger.get(bucket=pipeline.bronze, key=KEY, etag=a)["outcome"] == "written"


def test_a_newer_event_while_the_item_is_still_claimed_is_retried_not_dropped(pipeline):
    a = pipeline.put(KEY, b"{}\n")
    pipeline.ledger.claim(bucket=pipeline.bronze, key=KEY, etag=a, size=3, type_="shipments", dt="2025-01-01",
                          lease_seconds=300, sequencer="10")
    with pytest.raises(pipeline.ingest_app.IngestFailed, match="still claimed"):
        pipeline.ingest_app.handler(pipeline.s3_event(KEY, a, sequencer="30"))


def test_two_newer_events_racing_to_retake_one_item_queue_it_once(pipeline, monkeypatch):
    a = pipeline.put(KEY, b"{}\n")
    pipeline.ingest_app.handler(pipeline.s3_event(KEY, a, sequencer="10"))
    ledger = pipeline.ingest_app._DEPS.ledger
    real = ledger.retake

    def racing(**kwargs):  # the other event retakes first, between our read and our write
        monkeypatch.setattr(ledger, "retake", real)
        pipeline.ingest_app.handler(pipeline.s3_event(KEY, a, sequencer="40"))
        return real(**kwargs)

    monkeypatch.setattr(ledger, "retake", racing)
    with pytest.raises(pipeline.ingest_app.IngestFailed, match="still claimed"):
        pipeline.ingest_app.handler(pipeline.s3_event(KEY, a, sequencer="30"))
    assert [work_unit.parse(x).sequencer for x in bodies(pipeline)] == ["10", "40"]
    # Its retry sees the newer item and is a duplicate.
    assert pipeline.ingest_app.handler(pipeline.s3_event(KEY, a, sequencer="30"))["duplicates"] == 1


# --- SendMessageBatch: batches of ten, partial failures, retries running out ------------------------
def many_objects(pipeline, n):
    keys = [f"bronze/orders/dt=2025-01-05/part-{i:02d}.jsonl" for i in range(n)]
    records = []
    for key in keys:
        records += pipeline.s3_event(key, pipeline.put(key, b"{}\n"), size=3)["Records"]
    return keys, {"Records": records}


def queued_keys(pipeline):
    return sorted(work_unit.parse(b).key for b in bodies(pipeline))


@pytest.fixture
def sends(pipeline, monkeypatch):
    """Every SendMessageBatch call's entry ids; `sends.answer` may rewrite a call's outcome."""
    sqs = pipeline.ingest_app._DEPS.sqs
    real = sqs.send_message_batch
    calls = []

    def send(**kwargs):
        calls.append([e["Id"] for e in kwargs["Entries"]])
        return send.answer(len(calls), kwargs, real)

    send.answer = lambda n, kwargs, real: real(**kwargs)
    send.calls = calls
    monkeypatch.setattr(sqs, "send_message_batch", send)
    monkeypatch.setattr("lambdas.ingest.app.time.sleep", lambda s: None)
    return send


def refuse(kwargs, ids, *, sender_fault):
    """Send the entries not in `ids`; answer the others as failed, as SQS does."""
    sent = [e for e in kwargs["Entries"] if e["Id"] not in ids]
    return sent, [{"Id": i, "Code": "InternalError" if not sender_fault else "InvalidMessageContents",
                   "Message": "refused", "SenderFault": sender_fault} for i in ids]


def test_twelve_objects_are_sent_in_batches_of_ten_and_two(pipeline, sends):
    keys, event = many_objects(pipeline, 12)
    result = pipeline.ingest_app.handler(event)
    assert (result["queued"], result["failed"]) == (12, 0)
    assert [len(c) for c in sends.calls] == [10, 2]
    assert queued_keys(pipeline) == keys
    assert [[v["status"] for v in pipeline.ledger.versions(bucket=pipeline.bronze, key=k)] for k in keys] == [
        ["QUEUED"]] * 12


def test_entries_sqs_failed_are_retried_alone_and_each_object_is_queued_once(pipeline, sends):
    keys, event = many_objects(pipeline, 3)

    def answer(n, kwargs, real):
        if n > 1:
            return real(**kwargs)
        sent, failed = refuse(kwargs, {"1"}, sender_fault=False)
        response = real(**{**kwargs, "Entries": sent})
        return {**response, "Failed": failed}

    sends.answer = answer
    result = pipeline.ingest_app.handler(event)
    assert (result["queued"], result["failed"]) == (3, 0)
    assert sends.calls == [["0", "1", "2"], ["1"]]
    assert queued_keys(pipeline) == keys


def test_an_entry_refused_as_the_sender_s_fault_is_not_retried_and_only_it_fails(pipeline, sends, capsys):
    keys, event = many_objects(pipeline, 3)

    def answer(n, kwargs, real):
        sent, failed = refuse(kwargs, {"0"}, sender_fault=True)
        return {**real(**{**kwargs, "Entries": sent}), "Failed": failed}

    sends.answer = answer
    with pytest.raises(pipeline.ingest_app.IngestFailed, match="1 object\\(s\\) could not be queued"):
        pipeline.ingest_app.handler(event)
    assert sends.calls == [["0", "1", "2"]]
    assert queued_keys(pipeline) == keys[1:]
    etag = pipeline.s3.head_object(Bucket=pipeline.bronze, Key=keys[0])["ETag"].strip('"')
    assert pipeline.ledger.get(bucket=pipeline.bronze, key=keys[0], etag=etag) is None  # released
    assert "InvalidMessageContents: refused" in capsys.readouterr().out


def test_from_sqs_only_the_message_whose_object_could_not_be_sent_is_failed(pipeline, sends):
    keys, event = many_objects(pipeline, 2)
    messages = [{"eventSource": "aws:sqs", "messageId": f"m{i}", "body": json.dumps({"Records": [r]})}
                for i, r in enumerate(event["Records"])]

    def answer(n, kwargs, real):
        failing = {e["Id"] for e in kwargs["Entries"] if keys[1] in e["MessageBody"]}
        sent, failed = refuse(kwargs, failing, sender_fault=False)
        return {**real(**{**kwargs, "Entries": sent}), "Failed": failed}

    sends.answer = answer
    assert pipeline.ingest_app.handler({"Records": messages}) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert len(sends.calls) == pipeline.ingest_app.SEND_ATTEMPTS
    assert queued_keys(pipeline) == keys[:1]


def test_a_claim_that_cannot_be_released_is_left_to_its_lease_and_the_event_still_fails(pipeline, sends,
                                                                                    monkeypatch, capsys):
    keys, event = many_objects(pipeline, 1)

    def down(n, kwargs, real):
        raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessageBatch")

    def no_release(**kwargs):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "DeleteItem")

    sends.answer = down
    monkeypatch.setattr(pipeline.ingest_app._DEPS.ledger, "release", no_release)
    with pytest.raises(pipeline.ingest_app.IngestFailed):
        pipeline.ingest_app.handler(event)
    assert len(sends.calls) == pipeline.ingest_app.SEND_ATTEMPTS
    etag = pipeline.s3.head_object(Bucket=pipeline.bronze, Key=keys[0])["ETag"].strip('"')
    assert pipeline.ledger.get(bucket=pipeline.bronze, key=keys[0], etag=etag)["status"] == "CLAIMED"
    out = capsys.readouterr().out
    assert "release failed; the claim's lease will lapse" in out and "ServiceUnavailable" in out
