"""Redrive (manual on moto, native with botocore's Stubber: moto lacks the move-task APIs) and
ledger purge."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from lambdas.shared import work_unit
from ops import dlq
from ops.errors import UsageError
from ops.ledger import PurgeFilter, delete_items, purge, scan_matching
from ops.timewindow import make_window


def fill_dlq(pipeline, n: int, types=("orders", "shipments")) -> list[work_unit.WorkUnit]:
    units = []
    for i in range(n):
        type_ = types[i % len(types)]
        day = "2025-01-01" if i % 3 else "2025-01-02"
        unit = work_unit.build(bucket=pipeline.bronze, key=f"bronze/{type_}/dt={day}/o{i:03d}.jsonl", etag=f"e{i}",
                               size=i, origin="s3-event")
        pipeline.sqs.send_message(QueueUrl=pipeline.dlq_url, MessageBody=unit.body(),
                                  MessageAttributes={**unit.message_attributes(),
                                                     "trace": {"DataType": "String", "StringValue": f"t{i}"}})
        units.append(unit)
    return units


def depth(pipeline, url):
    attrs = pipeline.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_inspect_reads_past_ten_and_leaves_every_message_visible(pipeline):
    fill_dlq(pipeline, 25)
    report = dlq.inspect(pipeline.sqs, queue_url=pipeline.dlq_url, ddb=pipeline.ddb, table=pipeline.names.ledger_table)
    assert report.messages == 25 and sum(g.count for g in report.groups) == 25
    assert {(g.type, g.last_error) for g in report.groups} >= {("orders", "(no ledger item)")}
    visible = pipeline.sqs.get_queue_attributes(QueueUrl=pipeline.dlq_url, AttributeNames=[
        "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"]
    assert visible == "25"


def test_manual_redrive_moves_everything_keeping_attributes_and_marking_origin(pipeline):
    units = fill_dlq(pipeline, 23)
    # One worker: in-process moto can hand one message to two concurrent receives (2 in 150 runs
    # of 4 threads), so exact counts need one; the concurrent path runs in e2e and bench/dlq.py.
    report = dlq.redrive_manual(pipeline.sqs, source_url=pipeline.dlq_url, target_url=pipeline.queue_url, workers=1)
    assert (report.moved, report.failed) == (23, [])
    assert depth(pipeline, pipeline.dlq_url) == 0
    moved = pipeline.receive_all()
    assert len(moved) == 23
    bodies = [work_unit.parse(m["Body"]) for m in moved]
    assert {b.key for b in bodies} == {u.key for u in units} and {b.origin for b in bodies} == {"redrive"}
    assert all(m["MessageAttributes"]["trace"]["StringValue"].startswith("t") for m in moved)
    assert {m["MessageAttributes"]["origin"]["StringValue"] for m in moved} == {"redrive"}


def test_filters_and_max_move_only_the_chosen_messages_and_leave_the_rest(pipeline):
    fill_dlq(pipeline, 30)
    # One worker for exact counts (see below): a message handed to two workers at once can end up
    # both moved and still in the DLQ (seen once: DLQ depth 27 for 26), a duplicate, never a loss.
    report = dlq.redrive_manual(pipeline.sqs, source_url=pipeline.dlq_url, target_url=pipeline.queue_url,
                                filter_type="orders", filter_dt="2025-01-01", max_messages=4, workers=1)
    assert report.moved == 4
    moved = [work_unit.parse(m["Body"]) for m in pipeline.receive_all()]
    assert all((u.type, u.dt) == ("orders", "2025-01-01") for u in moved)
    assert depth(pipeline, pipeline.dlq_url) == 26  # the rest is back, visible, untouched


def test_a_failed_send_deletes_nothing_and_a_crash_after_send_loses_nothing(pipeline, monkeypatch):
    fill_dlq(pipeline, 10)
    real = pipeline.sqs.send_message_batch

    def odd(entry) -> bool:  # the object number in the work unit's key
        return int(work_unit.parse(entry["MessageBody"]).key.rsplit("/o", 1)[1][:3]) % 2 == 1

    def half_fails(QueueUrl, Entries):  # noqa: N803
        good = [e for e in Entries if not odd(e)]
        ok = real(QueueUrl=QueueUrl, Entries=good) if good else {"Successful": []}
        ok["Failed"] = [{"Id": e["Id"], "Code": "InvalidParameterValue", "SenderFault": True, "Message": "bad"}
                        for e in Entries if odd(e)]
        return ok

    monkeypatch.setattr(pipeline.sqs, "send_message_batch", half_fails)
    # One worker: exact counts. With several, in-process moto can hand one message to two
    # concurrent receives (as SQS may); the copy is then only redriven again later, never lost.
    report = dlq.redrive_manual(pipeline.sqs, source_url=pipeline.dlq_url, target_url=pipeline.queue_url, workers=1)
    assert report.moved == 5 and len(report.failed) == 5
    assert depth(pipeline, pipeline.dlq_url) == 5 and len(pipeline.receive_all()) == 5

    monkeypatch.setattr(pipeline.sqs, "send_message_batch", real)

    def crash(**kwargs):
        raise KeyboardInterrupt  # killed after the send, before the delete

    monkeypatch.setattr(pipeline.sqs, "delete_message_batch", crash)
    with pytest.raises(KeyboardInterrupt):
        dlq.redrive_manual(pipeline.sqs, source_url=pipeline.dlq_url, target_url=pipeline.queue_url)
    # every message is in the DLQ still, and some also in the target: duplicates, never a loss
    assert depth(pipeline, pipeline.dlq_url) == 5 and len(pipeline.receive_all()) >= 1


def test_fifo_targets_get_group_and_deduplication_ids(pipeline):
    fifo = pipeline.sqs.create_queue(QueueName="events.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    fill_dlq(pipeline, 3)
    report = dlq.redrive_manual(pipeline.sqs, source_url=pipeline.dlq_url, target_url=fifo, workers=1)
    assert report.moved == 3
    got = pipeline.sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert len(got) == 3 and all(m["Attributes"]["MessageGroupId"] == "redrive" for m in got)


def test_auto_mode_picks_native_only_without_filters_or_limits():
    assert dlq.choose_mode("auto", filters=False, max_messages=None, max_rps=100)[0] == "native"
    assert dlq.choose_mode("auto", filters=True, max_messages=None, max_rps=None)[0] == "manual"
    assert dlq.choose_mode("auto", filters=False, max_messages=5, max_rps=None)[0] == "manual"
    assert dlq.choose_mode("auto", filters=False, max_messages=None, max_rps=900)[0] == "manual"
    with pytest.raises(UsageError, match="filters need manual mode"):
        dlq.choose_mode("native", filters=True, max_messages=None, max_rps=None)


DLQ_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/events-dlq"
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:events-dlq"
Q_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/events"
Q_ARN = "arn:aws:sqs:us-east-1:123456789012:events"


def stubbed_sqs():
    client = boto3.client("sqs", region_name="us-east-1")
    return client, Stubber(client)


def expect_arn(stub, url, arn):
    stub.add_response("get_queue_attributes", {"Attributes": {"QueueArn": arn}},
                      {"QueueUrl": url, "AttributeNames": ["QueueArn"]})


def test_native_redrive_starts_a_move_task_with_the_exact_request_and_waits_for_it(monkeypatch):
    client, stub = stubbed_sqs()
    expect_arn(stub, DLQ_URL, DLQ_ARN)
    stub.add_response("list_message_move_tasks", {"Results": []}, {"SourceArn": DLQ_ARN, "MaxResults": 10})
    expect_arn(stub, Q_URL, Q_ARN)
    stub.add_response("start_message_move_task", {"TaskHandle": "h1"},
                      {"SourceArn": DLQ_ARN, "DestinationArn": Q_ARN, "MaxNumberOfMessagesPerSecond": 200})
    stub.add_response("list_message_move_tasks", {"Results": [
        {"TaskHandle": "h1", "Status": "RUNNING", "ApproximateNumberOfMessagesMoved": 40,
         "ApproximateNumberOfMessagesToMove": 100}]}, {"SourceArn": DLQ_ARN, "MaxResults": 10})
    stub.add_response("list_message_move_tasks", {"Results": [
        {"TaskHandle": "h1", "Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 100,
         "ApproximateNumberOfMessagesToMove": 100}]}, {"SourceArn": DLQ_ARN, "MaxResults": 10})
    seen = []
    with stub:
        report = dlq.redrive_native(client, source_url=DLQ_URL, target_url=Q_URL, max_rps=200, wait=True,
                                    poll_seconds=0, on_progress=lambda t: seen.append(t.get("Status")))
    stub.assert_no_pending_responses()
    assert (report.task_handle, report.task_status, report.moved) == ("h1", "COMPLETED", 100)
    assert seen == ["RUNNING", "RUNNING", "COMPLETED"]


def test_an_already_running_task_is_reported_not_crashed_on():
    client, stub = stubbed_sqs()
    expect_arn(stub, DLQ_URL, DLQ_ARN)
    stub.add_response("list_message_move_tasks", {"Results": [
        {"TaskHandle": "h0", "Status": "RUNNING", "ApproximateNumberOfMessagesMoved": 3,
         "ApproximateNumberOfMessagesToMove": 9}]}, {"SourceArn": DLQ_ARN, "MaxResults": 10})
    with stub:
        report = dlq.redrive_native(client, source_url=DLQ_URL, target_url=None, max_rps=None)
    stub.assert_no_pending_responses()  # no StartMessageMoveTask
    assert (report.task_handle, report.task_moved, report.task_to_move) == ("h0", 3, 9)
    assert "already running" in report.note


def test_cancel_cancels_the_running_task():
    client, stub = stubbed_sqs()
    expect_arn(stub, DLQ_URL, DLQ_ARN)
    stub.add_response("list_message_move_tasks", {"Results": [{"TaskHandle": "h9", "Status": "RUNNING"}]},
                      {"SourceArn": DLQ_ARN, "MaxResults": 10})
    stub.add_response("cancel_message_move_task", {"ApproximateNumberOfMessagesMoved": 7}, {"TaskHandle": "h9"})
    with stub:
        report = dlq.cancel_native(client, source_url=DLQ_URL)
    assert (report.task_handle, report.task_moved) == ("h9", 7)


def test_native_unavailable_is_its_own_error_so_auto_mode_can_fall_back():
    client, stub = stubbed_sqs()
    expect_arn(stub, DLQ_URL, DLQ_ARN)
    for _ in range(3):
        stub.add_client_error("list_message_move_tasks", service_error_code="UnsupportedOperation",
                              http_status_code=400, expected_params={"SourceArn": DLQ_ARN, "MaxResults": 10})
    with stub, pytest.raises(dlq.NativeUnavailable):
        dlq.redrive_native(client, source_url=DLQ_URL, target_url=None, max_rps=None)


# --- ledger purge ----------------------------------------------------------------------------------
def seed_ledger(pipeline, n=60):
    from lambdas.shared.ledger import Ledger

    clock = {"t": 1_700_000_000.0}
    ledger = Ledger(pipeline.ddb, pipeline.names.ledger_table, ttl_days=1, clock=lambda: clock["t"])
    for i in range(n):
        key = f"bronze/{'orders' if i % 2 else 'shipments'}/dt=2025-01-0{1 + i % 3}/o{i}.jsonl"
        ledger.claim(bucket=pipeline.bronze, key=key, etag=f"e{i}", size=1, type_="orders", dt="2025-01-01",
                     lease_seconds=60)
        if i % 4 == 0:
            ledger.mark_failed(bucket=pipeline.bronze, key=key, etag=f"e{i}", error="boom")
        clock["t"] += 3600
    return clock["t"]


def test_purge_filters_combine_and_deletes_go_in_batches_of_25(pipeline):
    seed_ledger(pipeline)
    table = pipeline.names.ledger_table
    failed, _ = scan_matching(pipeline.ddb, table=table, filters=PurgeFilter(statuses=("FAILED",)))
    assert len(failed) == 15
    orders_day1, _ = scan_matching(pipeline.ddb, table=table,
                                   filters=PurgeFilter(prefix="bronze/orders/dt=2025-01-01/", bucket=pipeline.bronze))
    assert orders_day1 and all("/orders/dt=2025-01-01/" in i["pk"] for i in orders_day1)
    window = make_window(start="2023-11-14T22:13:20Z", end="2023-11-15T02:13:20Z", since=None)
    in_window, _ = scan_matching(pipeline.ddb, table=table, filters=PurgeFilter(window=window))
    assert len(in_window) == 4  # one claim an hour, half-open
    from tests.functional.test_listing_replay import Calls

    calls = Calls(pipeline.ddb)
    report = purge(pipeline.ddb, table=table, filters=PurgeFilter(bucket=pipeline.bronze), confirm=lambda r: True)
    assert (report.matched, report.deleted) == (60, 60)
    assert calls.counts["BatchWriteItem"] == 3 and calls.counts["Scan"] == 4  # 4 segments, one page each
    assert pipeline.ddb.scan(TableName=table)["Count"] == 0


def test_expired_items_are_found_by_their_expiration_not_by_ttl(pipeline):
    seed_ledger(pipeline, n=10)
    # ttl_days=1 from a 2023 clock: all are past their expiration today, none deleted by moto's TTL
    expired, _ = scan_matching(pipeline.ddb, table=pipeline.names.ledger_table, filters=PurgeFilter(expired=True))
    assert len(expired) == 10
    none, _ = scan_matching(pipeline.ddb, table=pipeline.names.ledger_table, filters=PurgeFilter(expired=True),
                            now=1_600_000_000)
    assert none == []


def test_unprocessed_items_are_retried_until_deleted():
    class Throttled:
        def __init__(self):
            self.calls = []

        def batch_write_item(self, RequestItems):  # noqa: N803
            requests = RequestItems["t"]
            self.calls.append(len(requests))
            if len(self.calls) == 1:
                return {"UnprocessedItems": {"t": requests[:7]}}
            return {"UnprocessedItems": {}}

    items = [{"pk": f"s3://b/k{i}", "etag": "e"} for i in range(25)]
    fake = Throttled()
    deleted, failed = delete_items(fake, table="t", items=items, concurrency=1, sleep=lambda s: None)
    assert (deleted, failed, fake.calls) == (25, [], [25, 7])


def test_a_declined_confirmation_deletes_nothing(pipeline):
    seed_ledger(pipeline, n=5)
    report = purge(pipeline.ddb, table=pipeline.names.ledger_table, filters=PurgeFilter(bucket=pipeline.bronze),
                   confirm=lambda r: False)
    assert (report.matched, report.deleted) == (5, 0)
    assert pipeline.ddb.scan(TableName=pipeline.names.ledger_table)["Count"] == 5


def test_a_fifo_redrive_within_the_deduplication_window_is_delivered_not_swallowed(pipeline):
    # A FIFO message fails its receives and moves to the FIFO DLQ keeping its deduplication id.
    # Redriving it within SQS's five-minute window under that same id would be accepted and then
    # dropped by SQS, and the DLQ copy deleted: the id must be new, derived from original + redrive.
    # moto delivers a reused id once the first message is gone, so the id is checked directly too.
    dlq_fifo = pipeline.sqs.create_queue(QueueName="events-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    arn = pipeline.sqs.get_queue_attributes(QueueUrl=dlq_fifo, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events_fifo = pipeline.sqs.create_queue(QueueName="events.fifo", Attributes={
        "FifoQueue": "true", "VisibilityTimeout": "0",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 1})})["QueueUrl"]
    unit = work_unit.build(bucket=pipeline.bronze, key="bronze/orders/dt=2025-01-01/f.jsonl", etag="e", size=1,
                           origin="s3-event")
    pipeline.sqs.send_message(QueueUrl=events_fifo, MessageBody=unit.body(), MessageGroupId="g",
                              MessageDeduplicationId="original-dedup-id")
    for _ in range(3):  # received once and not deleted; the next receive moves it to the DLQ
        pipeline.sqs.receive_message(QueueUrl=events_fifo, MaxNumberOfMessages=10)
    assert depth(pipeline, dlq_fifo) == 1
    report = dlq.redrive_manual(pipeline.sqs, source_url=dlq_fifo, target_url=events_fifo, workers=1)
    assert report.moved == 1 and depth(pipeline, dlq_fifo) == 0
    got = pipeline.sqs.receive_message(QueueUrl=events_fifo, MaxNumberOfMessages=10,
                                       AttributeNames=["All"]).get("Messages", [])
    assert [work_unit.parse(m["Body"]).key for m in got] == [unit.key]
    assert got[0]["Attributes"]["MessageDeduplicationId"] != "original-dedup-id"


def test_a_fifo_redrive_deduplication_id_is_stable_within_a_redrive_and_new_for_the_next():
    message = dlq.DlqMessage(message_id="m", receipt_handle="r", body="{}", attributes={"MessageDeduplicationId": "x"},
                             message_attributes={}, unit=None, parse_error=None)
    first = dlq.redrive_deduplication_id(message, "run-1")
    assert first == dlq.redrive_deduplication_id(message, "run-1") != dlq.redrive_deduplication_id(message, "run-2")
    assert first != "x" and len(first) <= 128


@pytest.mark.parametrize("args, says", [
    (["--filter-dt", "dt=2025-02-10"], "without 'dt='"),
    (["--filter-dt", "2025-13-45"], "is not a day"),
    (["--filter-type", "no_such_type"], "--filter-type 'no_such_type'"),
    (["--max-rps", "nan"], "'nan' is not a rate"),
    (["--max-rps", "inf"], "'inf' is not a rate"),
])
def test_a_redrive_filter_or_rate_that_can_match_nothing_is_a_usage_error(pipeline, args, says):
    from click.testing import CliRunner

    from ops.cli import cli

    result = CliRunner().invoke(cli, ["dlq", "redrive", "--queue-url", pipeline.dlq_url, "--to-url",
                                      pipeline.queue_url, "--dry-run", *args])
    assert result.exit_code == 2, result.output
    assert says in result.stderr


def test_a_filtered_fifo_redrive_moves_every_match_or_says_what_it_left_and_why(pipeline):
    from click.testing import CliRunner

    from lambdas.shared import work_unit
    from ops.cli import cli

    source = pipeline.sqs.create_queue(QueueName="stuck-dlq.fifo", Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    target = pipeline.sqs.create_queue(QueueName="again.fifo", Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    matching = 0
    for i in range(20):  # one message group; every third message is a shipment the filter keeps back
        type_ = "shipments" if i % 3 == 0 else "orders"
        matching += type_ == "orders"
        unit = work_unit.build(bucket=pipeline.bronze, key=f"bronze/{type_}/dt=2025-01-01/m{i:02d}.jsonl",
                               etag=f"e{i}", size=1, origin="s3-event")
        pipeline.sqs.send_message(QueueUrl=source, MessageBody=unit.body(), MessageGroupId="g",
                                  MessageAttributes=unit.message_attributes())
    result = CliRunner().invoke(cli, ["dlq", "redrive", "--queue-url", source, "--to-url", target, "--filter-type",
                                      "orders", "--concurrency", "1", "--yes", "--json"])
    report = json.loads(result.stdout)
    assert report["moved"] == depth(pipeline, target) and depth(pipeline, source) == 20 - report["moved"]
    matching_left = matching - report["moved"]
    if matching_left:  # never silently: exit 3, with what was never reached and why
        assert result.exit_code == 3, result.output
        assert report["left_unreached"] == depth(pipeline, source) - report["skipped_by_filter"] >= matching_left
        assert "message group" in result.stderr
    else:
        assert result.exit_code == 0, result.output
