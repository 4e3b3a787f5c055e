import copy
import json

import pytest

from lambdas.ingest.s3_events import ObjectCreated, Skipped, extract
from tests.conftest import load_event

S3_KEY = "bronze/shipments/dt=2025-01-01/night batch+1 über.jsonl"
SNS_KEY = "bronze/orders/dt=2025-01-04/via sns+ü.jsonl.gz"


def s3_record(key="bronze/a/dt=2025-01-01/x.jsonl", size=5, etag="e", name="ObjectCreated:Put"):
    record = copy.deepcopy(load_event("s3_put_event.json")["Records"][0])
    record["eventName"] = name
    record["s3"]["object"].update(key=key, size=size, eTag=etag)
    return record


def created(items):
    return [(o.bucket, o.key, o.etag, o.size, o.event_name, o.source_id) for o in items if isinstance(o, ObjectCreated)]


def skipped(items):
    return [(s.reason, s.source_id) for s in items if isinstance(s, Skipped)]


def test_an_s3_record_gives_the_decoded_key_its_etag_and_size():
    event = load_event("s3_put_event.json")
    event["Records"][0]["s3"]["object"].update(size=1234, eTag="abc")
    assert created(extract(event)) == [("elt-local-bronze", S3_KEY, "abc", 1234, "ObjectCreated:Put", None)]


def test_an_sns_notification_delivered_straight_to_the_lambda_is_read():
    items = list(extract(load_event("sns_s3_event.json")))
    assert created(items) == [("elt-local-bronze", SNS_KEY, "9b2cf535f27731c974343645a3985328-2", 7340032,
                               "ObjectCreated:CompleteMultipartUpload", None)]


def test_sqs_records_carry_their_message_id_and_each_body_is_read_on_its_own():
    wrapped = load_event("sqs_wrapped_sns_s3_event.json")["Records"][0]
    first = {**wrapped, "messageId": "m1"}
    not_json = {**wrapped, "messageId": "m2", "body": "{not json"}
    direct = {**wrapped, "messageId": "m3", "body": json.dumps({"Records": [s3_record(size=9)]})}
    items = list(extract({"Records": [first, not_json, direct]}))
    assert [(o.key, o.size, o.source_id) for o in items if isinstance(o, ObjectCreated)] == [
        ("bronze/orders/dt=2025-01-03/wrapped.jsonl", 0, "m1"), ("bronze/a/dt=2025-01-01/x.jsonl", 9, "m3")]
    assert skipped(items) == [("body is not JSON", "m2")]


def test_an_sqs_record_without_a_message_id_keeps_the_outer_one():
    record = {"eventSource": "aws:sqs", "body": json.dumps({"Records": [s3_record()]})}
    assert [o.source_id for o in extract({"Records": [record]}, "outer")] == ["outer"]


def test_bad_records_are_skipped_and_the_good_ones_after_them_still_read():
    event = {"Records": [
        "not a record",
        s3_record(key="bronze/a/dt=2025-01-01/1.jsonl"),
        {**s3_record(), "s3": {"object": {"key": "k"}}},
        s3_record(key="bronze/a/dt=2025-01-01/2.jsonl"),
        {**s3_record(), "s3": {"bucket": {"name": "b"}, "object": {"size": 1}}},
        {"eventSource": "aws:kinesis"},
        s3_record(name="ObjectRemoved:Delete"),
        {**s3_record(), "s3": None},
        s3_record(key="bronze/a/dt=2025-01-01/3.jsonl", size=None, etag=None),
    ]}
    items = list(extract(event, "m"))
    assert [(o.key, o.size, o.etag) for o in items if isinstance(o, ObjectCreated)] == [
        ("bronze/a/dt=2025-01-01/1.jsonl", 5, "e"), ("bronze/a/dt=2025-01-01/2.jsonl", 5, "e"),
        ("bronze/a/dt=2025-01-01/3.jsonl", 0, "")]
    assert skipped(items) == [
        ("record is not an object", "m"), ("S3 record lacks bucket or key", "m"),
        ("S3 record lacks bucket or key", "m"), ("unsupported event source 'aws:kinesis'", "m"),
        ("event 'ObjectRemoved:Delete' is not ObjectCreated", "m"), ("S3 record lacks bucket or key", "m")]


def test_an_etag_is_taken_from_either_spelling():
    record = s3_record()
    del record["s3"]["object"]["eTag"]
    record["s3"]["object"]["etag"] = "lower"
    assert [o.etag for o in extract({"Records": [record]})] == ["lower"]


def test_a_record_without_an_event_name_is_not_object_created():
    record = s3_record()
    del record["eventName"]
    assert skipped(extract({"Records": [record]})) == [("event '' is not ObjectCreated", None)]


def test_an_eventbridge_event_keeps_its_key_as_is_and_names_the_reason():
    event = load_event("eventbridge_object_created.json")
    event["detail"]["object"].update(size=77, etag="xyz")
    assert created(extract(event, "s")) == [
        ("elt-local-bronze", "bronze/orders/dt=2025-01-02/eu+us orders ü.jsonl", "xyz", 77,
         "ObjectCreated:PutObject", "s")]
    del event["detail"]["object"]["etag"]
    event["detail"]["object"]["eTag"] = "upper"
    del event["detail"]["object"]["size"]
    del event["detail"]["reason"]
    assert [(o.etag, o.size, o.event_name) for o in extract(event)] == [("upper", 0, "ObjectCreated:")]


@pytest.mark.parametrize(("change", "reason"), [
    (lambda e: e.update({"detail-type": "Object Deleted"}), "EventBridge 'Object Deleted' is not Object Created"),
    (lambda e: e["detail"].pop("bucket"), "EventBridge event lacks bucket or key"),
    (lambda e: e["detail"]["object"].pop("key"), "EventBridge event lacks bucket or key"),
    (lambda e: e["detail"].update(object=None), "EventBridge event lacks bucket or key"),
])
def test_an_eventbridge_event_that_is_not_a_creation_with_a_bucket_and_key_is_skipped(change, reason):
    event = load_event("eventbridge_object_created.json")
    change(event)
    assert skipped(extract(event, "s")) == [(reason, "s")]


def test_an_eventbridge_event_whose_detail_is_empty_is_skipped():
    event = {**load_event("eventbridge_object_created.json"), "detail": None}
    assert skipped(extract(event)) == [("EventBridge event lacks bucket or key", None)]


@pytest.mark.parametrize(("event", "reason"), [
    ("{nope", "body is not JSON"),
    (b"\xff", "body is not JSON"),
    ("[1, 2]", "event is not a JSON object"),
    (42, "event is not a JSON object"),
    ({"Event": "s3:TestEvent"}, "s3:TestEvent"),
    ({"Records": "x"}, "not an S3, EventBridge, SQS or SNS event"),
    ({"source": "aws.s3"}, "not an S3, EventBridge, SQS or SNS event"),
])
def test_an_event_of_no_known_shape_is_skipped_with_its_reason(event, reason):
    assert skipped(extract(event, "m")) == [(reason, "m")]


def test_a_skipped_body_keeps_its_start_for_the_log():
    (skip,) = extract("x" * 500, "m")
    assert skip.detail == "x" * 200
    (skip,) = extract({"b": 1, "a": 2})
    assert skip.detail == "a,b"


def test_an_s3_event_as_a_json_string_and_an_sns_envelope_are_unwrapped():
    s3 = {"Records": [s3_record(size=3)]}
    envelope = {"Type": "Notification", "Message": json.dumps(s3)}
    assert [o.size for o in extract(json.dumps(s3))] == [3]
    assert [o.size for o in extract(json.dumps(envelope).encode(), "m")] == [3]
    assert skipped(extract({"Type": "Notification"})) == [("not an S3, EventBridge, SQS or SNS event", None)]


def test_an_sns_record_without_a_message_is_skipped():
    assert skipped(extract({"Records": [{"EventSource": "aws:sns", "Sns": {}}]}, "m")) == [("body is not JSON", "m")]
    assert skipped(extract({"Records": [{"EventSource": "aws:sns"}]})) == [("body is not JSON", None)]


def test_records_without_a_body_or_message_are_skipped_with_nothing_to_show():
    items = list(extract({"Records": [{"eventSource": "aws:sqs", "messageId": "m1"},
                                      {"EventSource": "aws:sns", "Sns": {"Type": "Notification"}}]}))
    assert [(s.reason, s.source_id, s.detail) for s in items] == [("body is not JSON", "m1", ""),
                                                                  ("body is not JSON", None, "")]


def test_an_eventbridge_object_without_etag_or_sequencer_has_them_empty():
    event = load_event("eventbridge_object_created.json")
    for name in ("etag", "eTag", "sequencer"):
        event["detail"]["object"].pop(name, None)
    (obj,) = extract(event)
    assert (obj.etag, obj.sequencer) == ("", "")


def test_the_field_names_of_an_unknown_event_are_shown_up_to_200_characters():
    (skip,) = extract({f"field{i:03d}": i for i in range(100)})
    assert skip.detail == ",".join(f"field{i:03d}" for i in range(100))[:200] and len(skip.detail) == 200
