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
