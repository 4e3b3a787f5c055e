"""DLQ inspect and redrive (ops/dlq.py) on in-process moto, fast enough to run against every mutant
of the module (make mutation): the tests share one moto and one pair of clients, each test starts
from no queues and no table and makes what it needs (a monkeypatch of a client is undone at the
test's end; a hook registered on one would outlive its test), and receives are sent as short
polls. The code long-polls (WaitTimeSeconds=1: a short poll asks only some of SQS's servers, so an
empty answer would not mean an empty queue); moto waits out the whole second on an empty queue,
which is every scan's last receive. A client hook records the wait each receive asked for, which
the tests check, and sends it as 0. The move-task APIs, which moto lacks, go through botocore's Stubber (the
requests validated against the service model). tests/functional/test_dlq_tools.py and
test_dlq_repair.py run the same tools end to end."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws
from moto.core.base_backend import BackendDict

from lambdas.shared import work_unit
from lambdas.shared.ledger import Ledger
from ops import dlq
from ops.errors import OpsError, UsageError
from ops.executor import Cancelled

REGION = "us-east-1"
BUCKET = "bronze-bucket"
SESSION = boto3.session.Session()  # a first client from a new session costs ~0.1-0.4 s


class Aws:
    def __init__(self, sqs, ddb):
        self.sqs, self.ddb = sqs, ddb
        self.waits: list[int] = []  # WaitTimeSeconds of each ReceiveMessage asked for
        self.calls: dict[str, list[dict]] = {}  # spied operation -> each call's kwargs

    def queue(self, name: str = "", **attributes) -> str:
        name = name or f"q-{uuid.uuid4().hex[:8]}"
        return self.sqs.create_queue(QueueName=name, Attributes={k: str(v) for k, v in attributes.items()})[
            "QueueUrl"]

    def table(self) -> str:
        self.ddb.create_table(
            TableName="ledger", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "etag", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "etag", "AttributeType": "S"}])
        return "ledger"

    def spy(self, monkeypatch, client, operation: str, answer=None):
        """Record each call of `operation`; `answer(kwargs, real)` may replace the response."""
        real = getattr(client, operation)
        calls = self.calls.setdefault(operation, [])

        def call(**kwargs):
            calls.append(kwargs)
            return answer(kwargs, real) if answer else real(**kwargs)

        monkeypatch.setattr(client, operation, call)
        return calls

    def depth(self, url: str) -> tuple[int, int]:
        """(visible, in flight)."""
        attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def take(self, url: str) -> list[dict]:
        out, waits = [], len(self.waits)
        while True:
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                           MessageAttributeNames=["All"]).get("Messages", [])
            if not got:
                del self.waits[waits:]  # the tools' receives only
                return out
            out += got


@pytest.fixture(scope="module")
def shared():
    """One moto and one pair of clients for the module (starting moto and making the clients cost
    about a quarter of a test, and every mutant of `make mutation` runs up to all of them); `aws`
    gives each test empty queues and tables all the same. The client hooks stay on for the module
    and record into the current test's harness."""
    with mock_aws():
        sqs = SESSION.client("sqs", region_name=REGION)
        ddb = SESSION.client("dynamodb", region_name=REGION)
        current: list[Aws] = []

        def short_poll(params, **_):
            current[-1].waits.append(params.get("WaitTimeSeconds"))
            params["WaitTimeSeconds"] = 0

        def distinct_ids(params, model, **_):  # a rule SQS enforces and moto does not
            ids = [entry["Id"] for entry in params["Entries"]]
            assert len(ids) == len(set(ids)), f"{model.name}: batch entry ids not distinct: {ids}"

        sqs.meta.events.register("provide-client-params.sqs.ReceiveMessage", short_poll)
        for operation in ("SendMessageBatch", "DeleteMessageBatch", "ChangeMessageVisibilityBatch"):
            sqs.meta.events.register(f"provide-client-params.sqs.{operation}", distinct_ids)
        yield sqs, ddb, current


@pytest.fixture
def aws(shared):
    sqs, ddb, current = shared
    BackendDict.reset()  # the last test's queues, messages and table, as a new mock_aws() would
    current[:] = [Aws(sqs, ddb)]
    yield current[0]


def unit(i: int, type_: str = "orders", day: str = "2025-01-01", origin: str = "s3-event") -> work_unit.WorkUnit:
    return work_unit.build(bucket=BUCKET, key=f"bronze/{type_}/dt={day}/o{i:03d}.jsonl", etag=f"e{i}", size=i,
                           origin=origin)


def send_units(aws: Aws, url: str, units, **extra) -> list[str]:
    return [aws.sqs.send_message(QueueUrl=url, MessageBody=u.body(), MessageAttributes={
        **u.message_attributes(), "trace": {"DataType": "String", "StringValue": f"t-{u.etag}"}}, **extra)["MessageId"]
        for u in units]


def s3_event(*objects: tuple[str, str]) -> str:
    return json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                    "s3": {"bucket": {"name": BUCKET}, "object": {"key": k, "eTag": e, "size": 1}}}
                                   for k, e in objects]})


class FakeTime:
    """dlq's clock: `time()` fixed, `monotonic()` moved by hand."""

    def __init__(self, now: float = 2_000_000_000.0):
        self.now, self.mono, self.slept = now, 1000.0, []

    def time(self):
        return self.now

    def monotonic(self):
        return self.mono

    def sleep(self, seconds):
        self.slept.append(seconds)


# --- a message, as read from a DLQ -----------------------------------------------------------------
def raw(body: str, **fields) -> dict:
    return {"MessageId": "m", "ReceiptHandle": "r", "Body": body, **fields}


def test_a_work_unit_message_is_described_by_its_unit():
    u = unit(1, "shipments", "2025-01-02", origin="replay-sqs")
    m = dlq._message(raw(u.body(), Attributes={"ApproximateReceiveCount": "4"}))
    assert (m.kind, m.type, m.dt, m.origin, m.keys, m.versions, m.parse_error) == (
        "work-unit", "shipments", "2025-01-02", "replay-sqs", [u.key], [(u.object_id, "e1")], None)
    assert m.receive_count == 4 and m.unit == u


def test_an_s3_event_message_is_described_by_its_first_bronze_object():
    m = dlq._message(raw(s3_event(("not-bronze/x.jsonl", '"e0"'), ("bronze/orders/dt=2025-01-04/a.jsonl", '"e1"'),
                                  ("bronze/shipments/dt=2025-01-05/b.jsonl", "e2"))))
    assert (m.kind, m.type, m.dt, m.origin, m.parse_error, m.unit) == (
        "s3-event", "orders", "2025-01-04", "s3-event", None, None)
    assert m.keys == ["not-bronze/x.jsonl", "bronze/orders/dt=2025-01-04/a.jsonl", "bronze/shipments/dt=2025-01-05/b.jsonl"]
    assert m.versions == [(f"s3://{BUCKET}/not-bronze/x.jsonl", "e0"),
                          (f"s3://{BUCKET}/bronze/orders/dt=2025-01-04/a.jsonl", "e1"),
                          (f"s3://{BUCKET}/bronze/shipments/dt=2025-01-05/b.jsonl", "e2")]


def test_an_unreadable_message_is_described_by_its_attributes_or_question_marks():
    attributes = {name: {"DataType": "String", "StringValue": value}
                  for name, value in (("type", "orders"), ("dt", "2025-01-06"), ("origin", "replay"))}
    m = dlq._message(raw("{not json", MessageAttributes=attributes))
    assert (m.kind, m.type, m.dt, m.origin, m.keys, m.versions) == ("invalid", "orders", "2025-01-06", "replay", [], [])
    with pytest.raises(work_unit.InvalidWorkUnit) as invalid:
        work_unit.parse("{not json")
    assert m.parse_error == str(invalid.value)
    bare = dlq._message(raw(s3_event(("other/x.jsonl", "e"))))  # an S3 event naming no bronze object
    assert (bare.kind, bare.type, bare.dt) == ("s3-event", "?", "?")
    empty = dlq._message({"MessageId": "m", "ReceiptHandle": "r", "Body": "{}",
                          "MessageAttributes": {"type": {"DataType": "String"}}})
    assert (empty.type, empty.dt, empty.origin, empty.receive_count, empty.age_seconds) == ("?", "?", "?", 0, 0.0)


def test_a_message_s_age_is_from_its_sent_timestamp_and_never_negative(monkeypatch):
    clock = FakeTime(now=1_700_000_100.0)
    monkeypatch.setattr(dlq, "time", clock)
    assert dlq._message(raw("{}", Attributes={"SentTimestamp": "1700000000000"})).age_seconds == 100.0
    assert dlq._message(raw("{}", Attributes={"SentTimestamp": "1700000200000"})).age_seconds == 0.0


# --- held messages ---------------------------------------------------------------------------------
def test_held_messages_are_made_visible_again_ten_at_a_time_and_refreshed_only_when_due(aws, monkeypatch):
    url = aws.queue()
    send_units(aws, url, [unit(i) for i in range(12)])
    clock = FakeTime()
    monkeypatch.setattr(dlq, "time", clock)
    changes = aws.spy(monkeypatch, aws.sqs, "change_message_visibility_batch")
    held = dlq.Held(aws.sqs, url, visibility=20)
    for m in dlq.receive(aws.sqs, url, visibility=20) + dlq.receive(aws.sqs, url, visibility=20):
        held.add(m)
    assert aws.depth(url) == (0, 12)
    clock.mono += 10  # half the visibility: not yet
    held.refresh_if_due()
    assert changes == []
    clock.mono += 0.5
    held.refresh_if_due()
    assert [[e["VisibilityTimeout"] for e in c["Entries"]] for c in changes] == [[20] * 10, [20] * 2]
    held.refresh_if_due()  # just refreshed
    assert len(changes) == 2
    held.release()
    assert [len(c["Entries"]) for c in changes[2:]] == [10, 2]
    assert {e["VisibilityTimeout"] for c in changes[2:] for e in c["Entries"]} == {0}
    assert aws.depth(url) == (12, 0)
    held.release()  # released once: nothing left to release
    assert len(changes) == 4


def test_receive_asks_for_ten_messages_with_all_attributes_by_long_polling(aws):
    url = aws.queue()
    send_units(aws, url, [unit(i) for i in range(12)])
    got = dlq.receive(aws.sqs, url, visibility=45, wait_seconds=3)
    assert len(got) == 10 and aws.waits == [3]
    assert all(m.receive_count == 1 and m.attributes["SentTimestamp"] for m in got)
    assert {m.message_attributes["trace"]["StringValue"] for m in got} == {f"t-e{i}" for i in range(10)}
    assert aws.depth(url) == (2, 10)
    dlq.receive(aws.sqs, url)
    assert aws.waits == [3, 1]


# --- inspect ---------------------------------------------------------------------------------------
def test_inspect_groups_every_message_by_type_day_origin_and_ledger_error_and_leaves_them_visible(aws, monkeypatch,
                                                                                                tmp_path):
    url = aws.queue()
    table = aws.table()
    ledger = Ledger(aws.ddb, table)
    units = [unit(i, "orders" if i % 3 else "shipments", "2025-01-01" if i < 20 else "2025-01-02")
             for i in range(25)]
    send_units(aws, url, units)
    for u in units[:4]:  # four failed with an error, one queued with none
        ledger.claim(bucket=BUCKET, key=u.key, etag=u.etag, size=u.size, type_=u.type, dt=u.dt, lease_seconds=60)
        if u is not units[3]:
            ledger.mark_failed(bucket=u.bucket, key=u.key, etag=u.etag, error="ValueError: boom")
        else:
            ledger.mark_queued(bucket=u.bucket, key=u.key, etag=u.etag, message_id="x")
    aws.sqs.send_message(QueueUrl=url, MessageBody="{oops")
    aws.sqs.send_message(QueueUrl=url, MessageBody=s3_event(("bronze/orders/dt=2025-01-03/s.jsonl", "es")))
    aws.sqs.send_message(QueueUrl=url, MessageBody=s3_event(("bronze/orders/dt=2025-01-03/t.jsonl", "et")))
    ledger.claim(bucket=BUCKET, key="bronze/orders/dt=2025-01-03/t.jsonl", etag="et", size=1, type_="orders",
                 dt="2025-01-03", lease_seconds=60)
    aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=5, VisibilityTimeout=0)  # counted twice below
    aws.waits.clear()
    clock = FakeTime()
    monkeypatch.setattr(dlq, "time", clock)
    records = []
    out = tmp_path / "dlq.jsonl"
    report = dlq.inspect(aws.sqs, queue_url=url, ddb=aws.ddb, table=table, out_path=str(out),
                         on_record=records.append)
    assert (report.messages, report.approximate_depth, report.invalid_bodies, report.s3_events, report.out) == (
        28, 28, 1, 2, str(out))
    assert aws.depth(url) == (28, 0) and set(aws.waits) == {1}
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == records
    assert sorted(r["body"] for r in records) == sorted([u.body() for u in units] + ["{oops"] + [
        s3_event(("bronze/orders/dt=2025-01-03/s.jsonl", "es")), s3_event(("bronze/orders/dt=2025-01-03/t.jsonl", "et"))])
    by_body = {r["body"]: r for r in records}
    assert by_body[units[0].body()]["ledger"]["last_error"] == "ValueError: boom"
    assert by_body[units[0].body()]["message_attributes"]["trace"]["StringValue"] == "t-e0"
    assert by_body[units[5].body()]["ledger"] is None and by_body["{oops"]["kind"] == "invalid"
    assert by_body[units[5].body()]["kind"] == "work-unit"

    def expected(select):
        chosen = [r for r in records if select(r)]
        return (len(chosen), max(round(clock.now - int(r["attributes"]["SentTimestamp"]) / 1000, 1) for r in chosen),
                max(int(r["attributes"]["ApproximateReceiveCount"]) for r in chosen))

    groups = {(g.type, g.dt, g.origin, g.last_error): g for g in report.groups}
    with pytest.raises(work_unit.InvalidWorkUnit) as invalid:
        work_unit.parse("{oops")
    assert set(groups) == {
        ("shipments", "2025-01-01", "s3-event", "ValueError: boom"),
        ("orders", "2025-01-01", "s3-event", "ValueError: boom"),
        ("shipments", "2025-01-01", "s3-event", "(ledger: QUEUED, no last_error)"),
        ("orders", "2025-01-01", "s3-event", "(no ledger item)"),
        ("shipments", "2025-01-01", "s3-event", "(no ledger item)"),
        ("orders", "2025-01-02", "s3-event", "(no ledger item)"),
        ("shipments", "2025-01-02", "s3-event", "(no ledger item)"),
        ("?", "?", "?", f"invalid body: {invalid.value}"),
        ("orders", "2025-01-03", "s3-event",
         "S3 event ingest could not finish (no ledger item: never claimed, or the claim was released)"),
        ("orders", "2025-01-03", "s3-event", "S3 event ingest could not finish (ledger: CLAIMED)"),
    }
    for (type_, day, _, error), group in groups.items():
        def member(r, type_=type_, day=day, error=error):
            m = dlq._message({"MessageId": r["message_id"], "ReceiptHandle": "", "Body": r["body"],
                              "MessageAttributes": r["message_attributes"]})
            item = r["ledger"] or {}
            found = (f"invalid body: {m.parse_error}" if m.parse_error else item.get("last_error")
                     or dlq._no_error(m, item))
            return (m.type, m.dt, found) == (type_, day, error)

        assert (group.count, group.oldest_age_seconds, group.max_receive_count) == expected(member)
        samples = []
        for r in records:
            for key in dlq._message({"MessageId": "", "ReceiptHandle": "", "Body": r["body"]}).keys if member(r) else []:
                if len(samples) < 3 and key not in samples:
                    samples.append(key)
        assert group.sample_keys == samples
    counts = [(g.count, g.type, g.dt, g.origin, g.last_error) for g in report.groups]
    assert counts == sorted(counts, key=lambda c: (-c[0], *c[1:]))
    assert max(g.max_receive_count for g in report.groups) == 2


def test_inspect_reads_at_most_max_and_without_a_table_says_the_ledger_was_not_read(aws):
    url = aws.queue()
    send_units(aws, url, [unit(i) for i in range(25)])
    seen = []
    report = dlq.inspect(aws.sqs, queue_url=url, max_messages=12, on_record=seen.append)
    assert report.messages == 12 and len(seen) == 12 and len({r["message_id"] for r in seen}) == 12
    assert [(g.count, g.last_error, len(g.sample_keys)) for g in report.groups] == [(12, "(ledger not read)", 3)]
    assert aws.depth(url) == (25, 0)
    report = dlq.inspect(aws.sqs, queue_url=url, max_messages=1)
    assert report.messages == 1 and report.out is None


def test_a_long_inspect_keeps_its_messages_hidden_until_it_ends(aws, monkeypatch):
    url = aws.queue()
    send_units(aws, url, [unit(i) for i in range(15)])
    clock = FakeTime()
    monkeypatch.setattr(dlq, "time", clock)
    real = dlq.receive

    def slow_receive(*args, **kwargs):
        clock.mono += 31  # each receive takes more than half the scan visibility
        return real(*args, **kwargs)

    monkeypatch.setattr(dlq, "receive", slow_receive)
    changes = aws.spy(monkeypatch, aws.sqs, "change_message_visibility_batch")
    assert dlq.inspect(aws.sqs, queue_url=url).messages == 15
    timeouts = [{e["VisibilityTimeout"] for e in c["Entries"]} for c in changes]
    assert timeouts[:1] == [{dlq.SCAN_VISIBILITY}] and timeouts[-2:] == [{0}, {0}]


def test_ledger_items_are_read_consistently_a_hundred_keys_at_a_time_retrying_unprocessed_keys(aws, monkeypatch):
    table = aws.table()
    ledger = Ledger(aws.ddb, table)
    objects = [(f"bronze/orders/dt=2025-01-01/k{i:03d}.jsonl", f"e{i}") for i in range(101)]
    for key, etag in objects:
        ledger.claim(bucket=BUCKET, key=key, etag=etag, size=1, type_="orders", dt="2025-01-01", lease_seconds=60)
    versions = [(f"s3://{BUCKET}/{k}", e) for k, e in objects]

    def defer_one(kwargs, real):  # the first call leaves one key unprocessed, as DynamoDB may
        response = real(**kwargs)
        if len(aws.calls["batch_get_item"]) == 1:
            request = kwargs["RequestItems"][table]
            response["UnprocessedKeys"] = {table: {**request, "Keys": request["Keys"][:1]}}
            first = request["Keys"][0]
            response["Responses"][table] = [i for i in response["Responses"][table]
                                            if (i["pk"], i["etag"]) != (first["pk"], first["etag"])]
        return response

    calls = aws.spy(monkeypatch, aws.ddb, "batch_get_item", defer_one)
    found = dlq._ledger_errors(aws.ddb, table, versions + versions[:5])  # a version named twice: asked once
    assert sorted(found) == sorted(versions)
    assert all(found[v]["status"] == "CLAIMED" for v in versions)
    assert [len(c["RequestItems"][table]["Keys"]) for c in calls] == [100, 1, 1]
    assert all(c["RequestItems"][table]["ConsistentRead"] is True for c in calls)
    assert dlq._ledger_errors(aws.ddb, None, versions) == {} and dlq._ledger_errors(aws.ddb, table, []) == {}
    assert len(calls) == 3


def test_the_source_queues_of_a_dlq_are_read_page_by_page():
    client = boto3.client("sqs", region_name=REGION)
    stub = Stubber(client)
    stub.add_response("list_dead_letter_source_queues", {"queueUrls": [Q_URL], "NextToken": "t1"},
                      {"QueueUrl": DLQ_URL})
    stub.add_response("list_dead_letter_source_queues", {"queueUrls": [Q_URL + "-2"]},
                      {"QueueUrl": DLQ_URL, "NextToken": "t1"})
    with stub:
        assert dlq.source_queues(client, DLQ_URL) == [Q_URL, Q_URL + "-2"]
    stub.assert_no_pending_responses()


def test_the_source_queue_of_a_dlq_is_found_by_its_redrive_policy(aws):
    dlq_url = aws.queue()
    arn = dlq.queue_arn(aws.sqs, dlq_url)
    source = aws.queue(RedrivePolicy=json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 3}))
    aws.queue()
    assert dlq.source_queues(aws.sqs, dlq_url) == [source]


# --- choosing the mode -----------------------------------------------------------------------------
def test_auto_mode_is_native_unless_something_needs_manual_mode_and_native_refuses_what_it_cannot_do():
    def choose(mode="auto", filters=False, max_messages=None, max_rps=None):
        return dlq.choose_mode(mode, filters=filters, max_messages=max_messages, max_rps=max_rps)

    assert choose() == ("native", "no filters: SQS message move task")
    assert choose(max_rps=dlq.NATIVE_MAX_RPS) == choose()
    assert choose(max_rps=dlq.NATIVE_MAX_RPS + 1) == ("manual", "--max-rps above 500 needs manual mode")
    assert choose(filters=True, max_messages=0) == ("manual", "filters need manual mode; --max needs manual mode")
    assert choose("manual") == ("manual", "manual mode requested")
    assert choose("manual", filters=True) == ("manual", "manual mode requested")
    with pytest.raises(UsageError) as refused:
        choose("native", filters=True, max_messages=3, max_rps=501)
    assert str(refused.value) == ("--mode native is not possible: filters need manual mode; --max needs manual mode; "
                                  "--max-rps above 500 needs manual mode")
    assert choose("native", max_rps=500) == choose()


# --- native mode: StartMessageMoveTask (moto lacks it: Stubber) ---------------------------------
DLQ_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/events-dlq"
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:events-dlq"
Q_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/events"
Q_ARN = "arn:aws:sqs:us-east-1:123456789012:events"
LIST = {"SourceArn": DLQ_ARN, "MaxResults": 10}


@pytest.fixture
def stubbed(monkeypatch):
    client = boto3.client("sqs", region_name=REGION)
    stub = Stubber(client)
    clock = FakeTime()
    monkeypatch.setattr(dlq, "time", clock)
    stub.add_response("get_queue_attributes", {"Attributes": {"QueueArn": DLQ_ARN}},
                      {"QueueUrl": DLQ_URL, "AttributeNames": ["QueueArn"]})
    with stub:
        yield client, stub, clock
    stub.assert_no_pending_responses()


def task(handle: str, status: str, moved: int | None = None, to_move: int | None = None, **more) -> dict:
    found = {"TaskHandle": handle, "Status": status, **more}
    if moved is not None:
        found["ApproximateNumberOfMessagesMoved"] = moved
    if to_move is not None:
        found["ApproximateNumberOfMessagesToMove"] = to_move
    return found


def test_a_native_redrive_to_the_source_queue_asks_for_nothing_but_the_source(stubbed):
    client, stub, clock = stubbed
    stub.add_response("list_message_move_tasks", {"Results": [task("old", "COMPLETED", 5, 5)]}, LIST)
    stub.add_response("start_message_move_task", {"TaskHandle": "h1"}, {"SourceArn": DLQ_ARN})
    report = dlq.redrive_native(client, source_url=DLQ_URL, target_url=None, max_rps=None)
    assert (report.mode, report.task_handle, report.task_status, report.moved, report.failed, report.note) == (
        "native", "h1", "RUNNING", 0, [], "")


def test_a_native_redrive_with_a_rate_and_a_target_waits_and_reports_a_failed_task(stubbed):
    client, stub, clock = stubbed
    stub.add_response("list_message_move_tasks", {"Results": []}, LIST)
    stub.add_response("get_queue_attributes", {"Attributes": {"QueueArn": Q_ARN}},
                      {"QueueUrl": Q_URL, "AttributeNames": ["QueueArn"]})
    stub.add_response("start_message_move_task", {"TaskHandle": "h2"},
                      {"SourceArn": DLQ_ARN, "DestinationArn": Q_ARN, "MaxNumberOfMessagesPerSecond": 12})
    stub.add_response("list_message_move_tasks", {"Results": [task("other", "RUNNING"), task("h2", "RUNNING", 3, 9)]},
                      LIST)
    stub.add_response("list_message_move_tasks", {"Results": [task("h2", "FAILED", 4, 9, FailureReason="denied")]},
                      LIST)
    seen = []
    report = dlq.redrive_native(client, source_url=DLQ_URL, target_url=Q_URL, max_rps=12.9, wait=True,
                                poll_seconds=0.25, on_progress=lambda t: seen.append((t["Status"], t.get(
                                    "ApproximateNumberOfMessagesMoved"))))
    assert seen == [("RUNNING", None), ("RUNNING", 3), ("FAILED", 4)] and clock.slept == [0.25, 0.25]
    assert (report.task_status, report.moved, report.task_moved, report.task_to_move) == ("FAILED", 4, 4, 9)
    assert (report.source, report.target) == (DLQ_URL, Q_URL)
    assert report.failed == [{"task": "h2", "error": "denied"}]


def test_a_task_that_fails_without_a_reason_and_vanishes_from_the_list_is_still_reported(stubbed):
    client, stub, clock = stubbed
    stub.add_response("list_message_move_tasks", {"Results": [task("h0", "RUNNING", 1, 9)]}, LIST)
    stub.add_response("list_message_move_tasks", {"Results": [task("newer", "FAILED")]}, LIST)
    report = dlq.redrive_native(client, source_url=DLQ_URL, target_url=None, max_rps=None, wait=True)
    assert report.failed == [{"task": "h0", "error": "move task failed"}] and clock.slept == [2.0]
    assert report.note == "a move task is already running for this queue; reporting it instead of starting another"
    assert report.task_handle == "h0"


def test_a_task_the_list_no_longer_shows_is_polled_until_the_list_shows_one(stubbed):
    client, stub, clock = stubbed
    stub.add_response("list_message_move_tasks", {"Results": [task("h0", "RUNNING", 1, 9)]}, LIST)
    stub.add_response("list_message_move_tasks", {}, LIST)  # an empty list may be left out
    stub.add_response("list_message_move_tasks", {"Results": []}, LIST)
    stub.add_response("list_message_move_tasks", {"Results": [task("h0", "COMPLETED", 9, 9)]}, LIST)
    report = dlq.redrive_native(client, source_url=DLQ_URL, target_url=None, max_rps=None, wait=True,
                                poll_seconds=0)
    assert (report.task_status, report.moved) == ("COMPLETED", 9)


def test_a_native_dry_run_starts_nothing_and_a_running_task_is_reported_instead(stubbed):
    client, stub, clock = stubbed
    stub.add_response("list_message_move_tasks", {"Results": [task("done", "COMPLETED")]}, LIST)
    report = dlq.redrive_native(client, source_url=DLQ_URL, target_url=Q_URL, max_rps=None, dry_run=True)
    assert (report.dry_run, report.task_handle, report.note) == (True, None, "would start a message move task")


def test_a_native_redrive_measures_its_time(stubbed, monkeypatch):
    client, stub, clock = stubbed
    stub.add_response("list_message_move_tasks", {"Results": [task("h0", "RUNNING", 2, 4)]}, LIST)
    real = dlq.running_task

    def slow(*args):
        clock.mono += 1.23456
        return real(*args)

    monkeypatch.setattr(dlq, "running_task", slow)
    report = dlq.redrive_native(client, source_url=DLQ_URL, target_url=None, max_rps=None)
    assert (report.seconds, report.moved, report.task_moved, report.task_to_move) == (1.235, 2, 2, 4)


def test_move_task_apis_that_fail_make_native_mode_unavailable(stubbed):
    client, stub, clock = stubbed
    stub.add_response("list_message_move_tasks", {"Results": []}, LIST)
    stub.add_client_error("start_message_move_task", service_error_code="AccessDenied", http_status_code=403)
    with pytest.raises(dlq.NativeUnavailable, match="AccessDenied|sqs:StartMessageMoveTask"):
        dlq.redrive_native(client, source_url=DLQ_URL, target_url=None, max_rps=None)


def test_cancel_cancels_only_a_running_task(stubbed):
    client, stub, clock = stubbed
    stub.add_response("list_message_move_tasks", {"Results": [task("h8", "COMPLETED"), task("h9", "RUNNING")]}, LIST)
    stub.add_response("cancel_message_move_task", {"ApproximateNumberOfMessagesMoved": 7}, {"TaskHandle": "h9"})
    report = dlq.cancel_native(client, source_url=DLQ_URL)
    assert (report.mode, report.source, report.task_handle, report.task_status, report.task_moved) == (
        "native", DLQ_URL, "h9", "CANCELLING", 7)
    assert report.note == "cancel requested; messages already moved stay moved"
    stub.add_response("get_queue_attributes", {"Attributes": {"QueueArn": DLQ_ARN}},
                      {"QueueUrl": DLQ_URL, "AttributeNames": ["QueueArn"]})
    stub.add_response("list_message_move_tasks", {"Results": [task("h9", "CANCELLED")]}, LIST)
    report = dlq.cancel_native(client, source_url=DLQ_URL)  # no CancelMessageMoveTask expected
    assert (report.task_handle, report.note) == (None, "no move task is running for this queue: nothing to cancel")


# --- manual mode: what is sent ---------------------------------------------------------------------
def test_a_redriven_work_unit_is_marked_redrive_and_keeps_its_other_attributes():
    u = unit(3, origin="s3-event")
    attributes = {**u.message_attributes(), "trace": {"DataType": "String", "StringValue": "t",
                                                      "StringListValues": [], "BinaryListValues": []},
                  "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01", "BinaryListValues": []}}
    m = dlq._message(raw(u.body(), MessageAttributes=attributes, Attributes={"MessageGroupId": "g1"}))
    entry = dlq._outgoing(m, fifo=False, run_id="r0")
    sent = work_unit.parse(entry["MessageBody"])
    assert (sent.bucket, sent.key, sent.etag, sent.size, sent.type, sent.origin) == (
        u.bucket, u.key, u.etag, u.size, u.type, "redrive")
    assert entry["MessageAttributes"]["trace"] == {"DataType": "String", "StringValue": "t"}
    assert entry["MessageAttributes"]["blob"] == {"DataType": "Binary", "BinaryValue": b"\x00\x01"}
    assert entry["MessageAttributes"]["origin"]["StringValue"] == "redrive"
    assert set(entry) == {"MessageBody", "MessageAttributes"}
    fifo = dlq._outgoing(m, fifo=True, run_id="r1")
    assert (fifo["MessageGroupId"], fifo["MessageDeduplicationId"]) == ("g1", dlq.redrive_deduplication_id(m, "r1"))


def test_an_s3_event_is_redriven_unchanged_and_a_fifo_one_without_a_group_gets_one():
    body = s3_event(("bronze/orders/dt=2025-01-01/a.jsonl", "e"))
    m = dlq._message(raw(body))
    assert dlq._outgoing(m, fifo=False, run_id="r") == {"MessageBody": body}
    fifo = dlq._outgoing(m, fifo=True, run_id="r")
    assert fifo == {"MessageBody": body, "MessageGroupId": "redrive",
                    "MessageDeduplicationId": dlq.redrive_deduplication_id(m, "r")}


def test_a_redrive_deduplication_id_is_new_per_redrive_and_derived_from_the_original_s_id():
    m = dlq.DlqMessage(message_id="m", receipt_handle="r", body="{}", attributes={"MessageDeduplicationId": "x"},
                       message_attributes={}, unit=None, parse_error=None)
    other = dlq.DlqMessage(message_id="m", receipt_handle="r", body="{}", attributes={"MessageDeduplicationId": "y"},
                           message_attributes={}, unit=None, parse_error=None)
    no_id = dlq.DlqMessage(message_id="m", receipt_handle="r", body="{}", attributes={}, message_attributes={},
                           unit=None, parse_error=None)
    first = dlq.redrive_deduplication_id(m, "run-1")
    assert first == dlq.redrive_deduplication_id(m, "run-1") != dlq.redrive_deduplication_id(m, "run-2")
    assert first != dlq.redrive_deduplication_id(other, "run-1") != dlq.redrive_deduplication_id(no_id, "run-1")
    assert len(first) <= 128 and first.isalnum()


# --- manual mode: moving -----------------------------------------------------------------------------
def test_a_manual_redrive_moves_every_message_once_and_reports_as_it_goes(aws, monkeypatch):
    source, target = aws.queue(), aws.queue()
    units = [unit(i) for i in range(23)]
    send_units(aws, source, units)
    progress = []
    clock = FakeTime()
    monkeypatch.setattr(dlq, "time", clock)
    real = dlq.receive

    def receive(*args, **kwargs):
        clock.mono += 0.123456
        return real(*args, **kwargs)

    monkeypatch.setattr(dlq, "receive", receive)
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, workers=1,
                                on_progress=lambda r: progress.append(r.moved))
    assert report.seconds == 0.494  # four receives, the last one empty
    assert (report.mode, report.source, report.target, report.moved, report.matched, report.failed,
            report.skipped_by_filter, report.dry_run, report.left_unreached) == (
        "manual", source, target, 23, 23, [], 0, False, 0)
    assert aws.depth(source) == (0, 0)
    moved = aws.take(target)
    assert sorted(work_unit.parse(m["Body"]).key for m in moved) == sorted(u.key for u in units)
    assert {work_unit.parse(m["Body"]).origin for m in moved} == {"redrive"}
    assert sorted(m["MessageAttributes"]["trace"]["StringValue"] for m in moved) == sorted(f"t-{u.etag}" for u in units)
    assert progress == [10, 20, 23] and set(aws.waits) == {1}


def test_several_workers_share_the_redrive(aws):
    source, target = aws.queue(), aws.queue()
    send_units(aws, source, [unit(i) for i in range(30)])
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, workers=3)
    # in-process moto may hand one message to two workers at once (as SQS may): a duplicate, never a loss
    assert report.moved >= 30 and aws.depth(source) == (0, 0) and len(aws.take(target)) >= 30
    source = aws.queue()
    send_units(aws, source, [unit(i) for i in range(3)])
    assert dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, workers=0).moved == 3


def test_filters_and_max_move_only_matching_messages_and_leave_the_rest_visible(aws):
    source, target = aws.queue(), aws.queue()
    units = [unit(i, "orders" if i % 2 else "shipments", "2025-01-01" if i % 3 else "2025-01-02") for i in range(30)]
    send_units(aws, source, units)
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, filter_type="orders",
                                filter_dt="2025-01-01", max_messages=4, workers=1)
    moved = [work_unit.parse(m["Body"]) for m in aws.take(target)]
    assert (report.moved, report.matched, len(moved)) == (4, 4, 4)
    assert {(u.type, u.dt) for u in moved} == {("orders", "2025-01-01")}
    assert aws.depth(source) == (26, 0)
    left = aws.take(source)  # the redrive stopped receiving at --max: some were never read
    assert 1 in {int(m["Attributes"]["ApproximateReceiveCount"]) for m in left}
    aws.sqs.change_message_visibility_batch(QueueUrl=source, Entries=[
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(left[:10])])
    aws.sqs.change_message_visibility_batch(QueueUrl=source, Entries=[
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(left[10:20])])
    aws.sqs.change_message_visibility_batch(QueueUrl=source, Entries=[
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(left[20:])])
    # every message not matching was counted as filtered out; matching ones past --max were not
    assert 0 < report.skipped_by_filter <= sum(1 for u in units if (u.type, u.dt) != ("orders", "2025-01-01"))
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, filter_dt="2025-01-02", workers=1)
    assert (report.moved, report.skipped_by_filter) == (10, 16)
    assert {u.dt for u in (work_unit.parse(m["Body"]) for m in aws.take(target))} == {"2025-01-02"}
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, filter_type="shipments", workers=1)
    assert (report.moved, report.skipped_by_filter, aws.depth(source)) == (10, 6, (6, 0))


def test_a_dry_run_moves_nothing_and_counts_what_would_move(aws):
    source, target = aws.queue(), aws.queue()
    send_units(aws, source, [unit(i, "orders" if i % 2 else "shipments") for i in range(12)])
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, filter_type="orders", dry_run=True,
                                workers=1)
    assert (report.dry_run, report.matched, report.moved, report.skipped_by_filter) == (True, 6, 0, 6)
    assert aws.depth(source) == (12, 0) and aws.depth(target) == (0, 0)


def test_a_refused_send_deletes_nothing_and_the_message_stays_in_the_dlq_visible(aws, monkeypatch):
    source, target = aws.queue(), aws.queue()
    send_units(aws, source, [unit(i) for i in range(6)])

    def refuse_odd(kwargs, real):
        odd = [e for e in kwargs["Entries"] if work_unit.parse(e["MessageBody"]).size % 2]
        even = [e for e in kwargs["Entries"] if e not in odd]
        response = real(QueueUrl=kwargs["QueueUrl"], Entries=even) if even else {"Successful": []}
        return {**response, "Failed": [{"Id": e["Id"], "Code": "InvalidParameterValue", "SenderFault": True,
                                        "Message": "bad"} for e in odd]}

    aws.spy(monkeypatch, aws.sqs, "send_message_batch", refuse_odd)
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, workers=1)
    assert report.moved == 3 and len(report.failed) == 3
    assert all(f["error"] == "InvalidParameterValue: bad" for f in report.failed)
    left = aws.take(source)
    assert sorted(f["message_id"] for f in report.failed) == sorted(m["MessageId"] for m in left)
    assert sorted(work_unit.parse(m["Body"]).size for m in left) == [1, 3, 5]
    assert sorted(work_unit.parse(m["Body"]).size for m in aws.take(target)) == [0, 2, 4]


def test_a_message_sent_but_not_deleted_is_reported_and_stays_a_duplicate_never_a_loss(aws, monkeypatch):
    source, target = aws.queue(), aws.queue()
    ids = send_units(aws, source, [unit(i) for i in range(3)])

    def keep_first(kwargs, real):
        entries = kwargs["Entries"]
        response = real(QueueUrl=kwargs["QueueUrl"], Entries=entries[1:])
        return {**response, "Failed": [{"Id": entries[0]["Id"], "Code": "ReceiptHandleIsInvalid",
                                        "SenderFault": True, "Message": "x"}]}

    aws.spy(monkeypatch, aws.sqs, "delete_message_batch", keep_first)
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, workers=1)
    assert report.moved == 2 and len(aws.take(target)) == 3
    [failed] = report.failed
    assert failed["error"] == "sent, but not deleted from the DLQ: ReceiptHandleIsInvalid"
    assert set(failed) == {"message_id", "error"} and failed["message_id"] in ids
    assert aws.depth(source) == (0, 1)  # back in the DLQ when its scan visibility runs out: redriven again later


def test_a_delete_answer_without_an_empty_failed_list_counts_every_message_moved(aws, monkeypatch):
    source, target = aws.queue(), aws.queue()
    send_units(aws, source, [unit(i) for i in range(2)])

    def delete_all(kwargs, real):  # JSON answers may leave out an empty list
        return {k: v for k, v in real(**kwargs).items() if v}

    aws.spy(monkeypatch, aws.sqs, "delete_message_batch", delete_all)
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, workers=1)
    assert (report.moved, report.failed, aws.depth(source)) == (2, [], (0, 0))


def test_a_delete_answer_with_every_delete_failed_and_no_successful_list_reports_each_and_keeps_them(
        aws, monkeypatch):
    source, target = aws.queue(), aws.queue()
    ids = send_units(aws, source, [unit(i) for i in range(2)])

    def refuse_all(kwargs, real):  # nothing deleted; a JSON answer may leave out the empty list
        return {"Failed": [{"Id": e["Id"], "Code": "ReceiptHandleIsInvalid", "SenderFault": True, "Message": "x"}
                           for e in kwargs["Entries"]]}

    aws.spy(monkeypatch, aws.sqs, "delete_message_batch", refuse_all)
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, workers=1)
    assert report.moved == 0 and sorted(f["message_id"] for f in report.failed) == sorted(ids)
    assert len(aws.take(target)) == 2 and aws.depth(source) == (0, 2)  # redriven again later: never lost


def test_a_redrive_stopped_during_a_send_leaves_the_unsent_messages_visible_in_the_dlq(aws, monkeypatch):
    source, target = aws.queue(), aws.queue()
    send_units(aws, source, [unit(i) for i in range(4)])

    def stopped(*args, **kwargs):
        raise Cancelled()

    monkeypatch.setattr(dlq, "_move", stopped)
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, workers=1, visibility=600)
    assert report.moved == 0 and aws.depth(source) == (4, 0) and aws.depth(target) == (0, 0)


def test_sends_are_rate_limited_and_a_filtered_out_message_is_held_for_the_whole_redrive(aws, monkeypatch):
    source, target = aws.queue(), aws.queue()
    send_units(aws, source, [unit(i, "orders" if i % 2 else "shipments") for i in range(12)])
    limits = []

    class Limiter(dlq.RateLimiter):
        def __init__(self, rate, *, stop=None):
            super().__init__(rate, stop=stop, sleep=lambda s: None)
            limits.append((rate, self))

        def acquire(self, n=1.0):
            limits.append(n)
            super().acquire(n)

    monkeypatch.setattr(dlq, "RateLimiter", Limiter)
    clock = FakeTime()
    monkeypatch.setattr(dlq, "time", clock)
    real = dlq.receive
    visibility = []

    def receive(*args, **kwargs):
        visibility.append(kwargs.get("visibility"))
        clock.mono += 100
        return real(*args, **kwargs)

    monkeypatch.setattr(dlq, "receive", receive)
    changes = aws.spy(monkeypatch, aws.sqs, "change_message_visibility_batch")
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, filter_type="orders", max_rps=7,
                                workers=1, visibility=120)
    assert report.moved == 6 and limits[0][0] == 7 and sum(limits[1:]) == 6  # each send takes its entries
    assert set(visibility) == {120}
    assert {e["VisibilityTimeout"] for c in changes[:-1] for e in c["Entries"]} == {120}  # refreshed while running
    assert {e["VisibilityTimeout"] for e in changes[-1]["Entries"]} == {0} and aws.depth(source) == (6, 0)


def test_a_filtered_fifo_redrive_says_how_many_messages_it_could_not_reach(aws):
    source = aws.queue("stuck.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    target = aws.queue("again.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    for i in range(15):  # one message group whose first message the filter keeps back
        u = unit(i, "shipments" if i == 0 else "orders")
        aws.sqs.send_message(QueueUrl=source, MessageBody=u.body(), MessageGroupId="g",
                             MessageAttributes=u.message_attributes())
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, filter_type="orders", workers=1)
    assert (report.moved, report.skipped_by_filter) == (9, 1)
    assert report.left_unreached == 5 == sum(aws.depth(source)) - 1
    assert report.note == ("5 message(s) were never received: in a FIFO queue a message the filters keep back "
                           "blocks the rest of its message group, so matching messages behind it cannot be "
                           "reached; redrive without filters (or move the blocking ones first) to reach them")
    got = aws.take(target)
    assert len(got) == 9 and {m["Attributes"]["MessageGroupId"] for m in got} == {"g"}


def test_a_filtered_fifo_dry_run_counts_what_it_matched_as_reached(aws):
    source = aws.queue("dry.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    target = aws.queue("dry-target.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    for i in range(4):
        u = unit(i, "shipments" if i == 0 else "orders")
        aws.sqs.send_message(QueueUrl=source, MessageBody=u.body(), MessageGroupId="g")
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, filter_type="orders", dry_run=True,
                                workers=1)
    assert (report.matched, report.skipped_by_filter, report.left_unreached, report.note) == (3, 1, 0, "")
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, workers=1)  # no filter: not counted
    assert (report.moved, report.left_unreached) == (4, 0)


# --- filters and the whole redrive as the CLI runs it -----------------------------------------------
def test_filters_that_can_match_nothing_are_usage_errors_naming_the_fix():
    dlq.check_filters(filter_type="orders", filter_dt="2025-01-01")
    dlq.check_filters(filter_type=None, filter_dt=None)
    with pytest.raises(UsageError, match="^--filter-type 'nope': "):
        dlq.check_filters(filter_type="nope", filter_dt=None)
    with pytest.raises(UsageError) as prefixed:
        dlq.check_filters(filter_type=None, filter_dt="dt=2025-01-01")
    assert str(prefixed.value) == "--filter-dt 'dt=2025-01-01': give the day without 'dt=', e.g. --filter-dt 2025-01-01"
    with pytest.raises(UsageError) as bad:
        dlq.check_filters(filter_type=None, filter_dt="dt=2025-13-01")
    assert str(bad.value).startswith("--filter-dt 'dt=2025-13-01' is not a day: ")
    assert str(bad.value).endswith("; give it as YYYY-MM-DD, e.g. 2025-13-01")
    with pytest.raises(UsageError) as bad:
        dlq.check_filters(filter_type=None, filter_dt="2025-13-01")
    assert str(bad.value).endswith("; give it as YYYY-MM-DD")


def test_a_redrive_asks_before_moving_and_a_refusal_moves_nothing(aws):
    source, target = aws.queue(), aws.queue()
    send_units(aws, source, [unit(i) for i in range(3)])
    plans, said = [], []
    with pytest.raises(OpsError, match="^not confirmed; nothing moved$"):
        dlq.redrive(aws.sqs, mode="manual", source_url=source, target_url=target, confirm=lambda p: plans.append(p),
                    filter_type="orders", on_info=said.append)
    assert plans == [dlq.RedrivePlan(mode="manual", reason="manual mode requested", source=source, target=target,
                                     messages=3, filtered=True)]
    assert said == ["mode: manual (manual mode requested)"] and aws.depth(source) == (3, 0)
    report = dlq.redrive(aws.sqs, mode="manual", source_url=source, target_url=target, confirm=lambda p: True,
                         workers=1, max_messages=2)
    assert (report.mode, report.moved, aws.depth(source)) == ("manual", 2, (1, 0))
    report = dlq.redrive(aws.sqs, mode="manual", source_url=source, target_url=target, confirm=None, dry_run=True,
                         filter_dt="2025-01-01")
    assert (report.dry_run, report.matched, aws.depth(source)) == (True, 1, (1, 0))


def test_auto_mode_falls_back_to_manual_where_the_move_task_apis_are_missing(aws, monkeypatch):
    source, target = aws.queue(), aws.queue()

    def unsupported(kwargs, real):  # what an endpoint without the move-task APIs answers
        raise ClientError({"Error": {"Code": "UnsupportedOperation", "Message": "no move tasks"}},
                          "ListMessageMoveTasks")

    aws.spy(monkeypatch, aws.sqs, "list_message_move_tasks", unsupported)
    send_units(aws, source, [unit(i) for i in range(3)])
    said = []
    report = dlq.redrive(aws.sqs, mode="auto", source_url=source, target_url=target, confirm=lambda p: p.mode == "native",
                         on_info=said.append, workers=1)
    assert (report.mode, report.moved, aws.depth(target)) == ("manual", 3, (3, 0))
    assert said[0] == "mode: native (no filters: SQS message move task)"
    assert said[1].startswith("native move task unavailable (") and said[1].endswith("); using manual mode")
    with pytest.raises(dlq.NativeUnavailable):
        dlq.redrive(aws.sqs, mode="native", source_url=source, target_url=target, confirm=lambda p: True)
    with pytest.raises(dlq.NativeUnavailable):
        dlq.redrive(aws.sqs, mode="auto", source_url=source, target_url=None, confirm=lambda p: True)


def test_a_redrive_checks_its_queues_and_filters_before_asking(aws):
    source = aws.queue()
    asked = []
    with pytest.raises(UsageError) as no_target:
        dlq.redrive(aws.sqs, mode="manual", source_url=source, target_url=None, confirm=asked.append)
    assert str(no_target.value) == "manual redrive needs --to-url (or ELT_QUEUE_URL): the queue to send messages to"
    with pytest.raises(UsageError, match="--filter-type 'nope'"):
        dlq.redrive(aws.sqs, mode="manual", source_url=source, target_url=source, confirm=asked.append,
                    filter_type="nope")
    with pytest.raises(OpsError, match="--to-url .*does not exist"):
        dlq.redrive(aws.sqs, mode="manual", source_url=source, target_url=source + "-gone", confirm=asked.append)
    with pytest.raises(OpsError, match="--queue-url .*does not exist"):
        dlq.redrive(aws.sqs, mode="manual", source_url=source + "-gone", target_url=source, confirm=asked.append)
    with pytest.raises(UsageError, match="--filter-dt"):
        dlq.redrive(aws.sqs, mode="manual", source_url=source, target_url=source, confirm=asked.append,
                    filter_dt="dt=2025-01-01")
    with pytest.raises(UsageError, match="--max needs manual mode"):
        dlq.redrive(aws.sqs, mode="native", source_url=source, target_url=source, confirm=asked.append, max_messages=1)
    assert asked == []


def test_a_redrive_passes_its_settings_to_the_mode_it_runs(aws, monkeypatch):
    source, target = aws.queue(), aws.queue()
    got = {}
    monkeypatch.setattr(dlq, "redrive_manual", lambda sqs, **kwargs: got.setdefault("manual", kwargs))
    monkeypatch.setattr(dlq, "redrive_native", lambda sqs, **kwargs: got.setdefault("native", kwargs))
    dlq.redrive(aws.sqs, mode="manual", source_url=source, target_url=target, confirm=lambda p: True,
                max_messages=5, max_rps=9.5, filter_type="orders", filter_dt="2025-01-01", dry_run=False, workers=3,
                visibility=77)
    assert got["manual"] == dict(source_url=source, target_url=target, max_messages=5, max_rps=9.5,
                                 filter_type="orders", filter_dt="2025-01-01", dry_run=False, workers=3, visibility=77)
    progress = print
    dlq.redrive(aws.sqs, mode="auto", source_url=source, target_url=None, confirm=lambda p: True, max_rps=50,
                wait=True, dry_run=True, on_task_progress=progress)
    assert got["native"] == dict(source_url=source, target_url=None, max_rps=50, wait=True, dry_run=True,
                                 on_progress=progress)
    got.clear()
    dlq.redrive(aws.sqs, mode="auto", source_url=source, target_url=target, confirm=lambda p: True)
    assert got["native"] == dict(source_url=source, target_url=target, max_rps=None, wait=False, dry_run=False,
                                 on_progress=None)
    for auto_manual in ({"filter_type": "orders"}, {"filter_dt": "2025-01-01"}, {"max_rps": 501}):
        got.clear()
        dlq.redrive(aws.sqs, mode="auto", source_url=source, target_url=target, confirm=lambda p: True, **auto_manual)
        assert list(got) == ["manual"], auto_manual


# --- errors name the permission; retries; rules the loops keep ----------------------------------------
def denied(kwargs, real):
    raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
                      "Call")


@pytest.mark.parametrize("operation, only, action, run", [
    ("get_queue_attributes", ["ApproximateNumberOfMessages"], "sqs:GetQueueAttributes", "inspect"),
    ("receive_message", None, "sqs:ReceiveMessage", "inspect"),
    ("change_message_visibility_batch", None, "sqs:ChangeMessageVisibility", "inspect"),
    ("batch_get_item", None, "dynamodb:BatchGetItem", "inspect"),
    ("delete_message_batch", None, "sqs:DeleteMessage", "redrive"),
    ("get_queue_attributes", ["ApproximateNumberOfMessages"], "sqs:GetQueueAttributes", "redrive"),
    ("get_queue_attributes", ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
     "sqs:GetQueueAttributes", "fifo"),
    ("get_queue_attributes", ["QueueArn"], "sqs:GetQueueAttributes", "arn"),
    ("list_dead_letter_source_queues", None, "sqs:ListDeadLetterSourceQueues", "sources"),
])
def test_an_access_denied_names_the_permission_and_the_resource_to_grant(aws, monkeypatch, operation, only, action,
                                                                         run):
    from ops.aws import AccessDenied

    fifo = run == "fifo"
    source = aws.queue("denied.fifo" if fifo else "", **({"FifoQueue": "true", "ContentBasedDeduplication": "true"}
                                                         if fifo else {}))
    target = aws.queue("target.fifo" if fifo else "", **({"FifoQueue": "true", "ContentBasedDeduplication": "true"}
                                                         if fifo else {}))
    table = aws.table()
    u = unit(1)
    aws.sqs.send_message(QueueUrl=source, MessageBody=u.body(), **({"MessageGroupId": "g"} if fifo else {}))
    client = aws.ddb if operation == "batch_get_item" else aws.sqs
    aws.spy(monkeypatch, client, operation, lambda kwargs, real: denied(kwargs, real)
            if only is None or kwargs.get("AttributeNames") == only else real(**kwargs))
    resource = table if operation == "batch_get_item" else source
    with pytest.raises(AccessDenied) as refused:
        if run == "inspect":
            dlq.inspect(aws.sqs, queue_url=source, ddb=aws.ddb, table=table)
        elif run == "redrive":
            dlq.redrive(aws.sqs, mode="manual", source_url=source, target_url=target, confirm=lambda p: True,
                        workers=1)
        elif run == "fifo":
            dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, filter_type="orders", workers=1)
        elif run == "arn":
            dlq.queue_arn(aws.sqs, source)
        else:
            dlq.source_queues(aws.sqs, source)
    assert f"AWS denied {action} on {resource} " in str(refused.value)


@pytest.mark.parametrize("operation, action, expected", [
    ("list_message_move_tasks", "sqs:ListMessageMoveTasks", LIST),
    ("start_message_move_task", "sqs:StartMessageMoveTask", {"SourceArn": DLQ_ARN}),
])
def test_move_task_calls_are_tried_three_times_then_native_mode_is_unavailable_naming_the_call(
        stubbed, monkeypatch, operation, action, expected):
    client, stub, clock = stubbed
    monkeypatch.setattr("ops.aws.pause", lambda stop, seconds: None)
    if operation == "start_message_move_task":
        stub.add_response("list_message_move_tasks", {}, LIST)  # no task (the list left out)
    for _ in range(3):
        stub.add_client_error(operation, service_error_code="ThrottlingException", http_status_code=400,
                              expected_params=expected)
    with pytest.raises(dlq.NativeUnavailable) as unavailable:
        dlq.redrive_native(client, source_url=DLQ_URL, target_url=None, max_rps=None)
    assert str(unavailable.value).startswith(f"{action} on {DLQ_ARN} failed: ")  # and no fourth call (the stub)


def test_polling_and_cancelling_a_task_name_the_permission_when_denied(stubbed):
    from ops.aws import AccessDenied

    client, stub, clock = stubbed
    stub.add_response("list_message_move_tasks", {"Results": [task("h0", "RUNNING")]}, LIST)
    stub.add_client_error("list_message_move_tasks", service_error_code="AccessDenied", http_status_code=403,
                          expected_params=LIST)
    with pytest.raises(AccessDenied, match=f"AWS denied sqs:ListMessageMoveTasks on {DLQ_ARN} "):
        dlq.redrive_native(client, source_url=DLQ_URL, target_url=None, max_rps=None, wait=True, poll_seconds=0)
    stub.add_response("get_queue_attributes", {"Attributes": {"QueueArn": DLQ_ARN}},
                      {"QueueUrl": DLQ_URL, "AttributeNames": ["QueueArn"]})
    stub.add_response("list_message_move_tasks", {"Results": [task("h0", "RUNNING")]}, LIST)
    stub.add_client_error("cancel_message_move_task", service_error_code="AccessDenied", http_status_code=403,
                          expected_params={"TaskHandle": "h0"})
    with pytest.raises(AccessDenied, match=f"AWS denied sqs:CancelMessageMoveTask on {DLQ_ARN} "):
        dlq.cancel_native(client, source_url=DLQ_URL)


def test_a_denied_task_list_makes_native_mode_unavailable_naming_the_permission(stubbed):
    client, stub, clock = stubbed
    stub.add_client_error("list_message_move_tasks", service_error_code="AccessDenied", http_status_code=403,
                          expected_params=LIST)
    with pytest.raises(dlq.NativeUnavailable, match=f"^AWS denied sqs:ListMessageMoveTasks on {DLQ_ARN} "):
        dlq.redrive_native(client, source_url=DLQ_URL, target_url=None, max_rps=None)


def test_a_send_that_keeps_failing_is_tried_six_times_and_its_message_stays(aws, monkeypatch):
    source, target = aws.queue(), aws.queue()
    send_units(aws, source, [unit(1)])
    monkeypatch.setattr("ops.aws.random.uniform", lambda low, high: 0)

    def internal(kwargs, real):
        return {"Successful": [], "Failed": [{"Id": e["Id"], "Code": "InternalError", "SenderFault": False,
                                              "Message": "try again"} for e in kwargs["Entries"]]}

    calls = aws.spy(monkeypatch, aws.sqs, "send_message_batch", internal)
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, workers=1)
    assert len(calls) == dlq.SEND_ATTEMPTS == 6
    assert (report.moved, [f["error"] for f in report.failed], aws.depth(source)) == (
        0, ["InternalError: try again"], (1, 0))


def test_a_delete_throttled_until_its_retries_run_out_stops_the_redrive_and_leaves_a_duplicate_not_a_loss(
        aws, monkeypatch):
    from ops.aws import RETRY_ATTEMPTS

    source, target = aws.queue(), aws.queue()
    send_units(aws, source, [unit(1)])
    monkeypatch.setattr("ops.aws.random.uniform", lambda low, high: 0)

    def throttled(kwargs, real):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"},
                           "ResponseMetadata": {"HTTPStatusCode": 400}}, "DeleteMessageBatch")

    calls = aws.spy(monkeypatch, aws.sqs, "delete_message_batch", throttled)
    with pytest.raises(OpsError, match="sqs:DeleteMessage"):
        dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, workers=1)
    assert len(calls) == RETRY_ATTEMPTS
    # Sent, not deleted: visible in the DLQ again at once (a later redrive sends it again), never lost.
    assert (aws.depth(target), aws.depth(source)) == ((1, 0), (1, 0))


def test_each_fifo_redrive_of_a_message_gets_its_own_deduplication_id(aws, monkeypatch):
    source = aws.queue("again-dlq.fifo", FifoQueue="true")
    target = aws.queue("again.fifo", FifoQueue="true")
    sent = aws.spy(monkeypatch, aws.sqs, "send_message_batch")
    for _ in range(2):  # the same message back in the DLQ (it failed again) and redriven again
        aws.sqs.send_message(QueueUrl=source, MessageBody=unit(1).body(), MessageGroupId="g",
                             MessageDeduplicationId="d")  # the original's id, kept by the DLQ copy
        assert dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, workers=1).moved == 1
    first, second = (call["Entries"][0]["MessageDeduplicationId"] for call in sent)
    assert first != second
    assert len(aws.take(target)) == 2  # both delivered: the second was not dropped as a duplicate


def test_unreached_messages_are_counted_only_for_a_filtered_fifo_redrive_and_in_flight_ones_count(aws, monkeypatch):
    source, target = aws.queue(), aws.queue()
    send_units(aws, source, [unit(i) for i in range(5)])
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, filter_type="orders",
                                max_messages=2, workers=1)
    assert (report.moved, report.left_unreached, report.note) == (2, 0, "")  # not FIFO: the rest was not wanted
    fifo = aws.queue("inflight.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    fifo_target = aws.queue("inflight-target.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    for i in range(13):
        u = unit(i, "shipments" if i == 0 else "orders")
        aws.sqs.send_message(QueueUrl=fifo, MessageBody=u.body(), MessageGroupId="g")

    def keep_first(kwargs, real):  # one message sent but not deleted: still in flight in the DLQ
        entries = kwargs["Entries"]
        return {**real(QueueUrl=kwargs["QueueUrl"], Entries=entries[1:]),
                "Failed": [{"Id": entries[0]["Id"], "Code": "X", "SenderFault": True, "Message": "x"}]}

    aws.spy(monkeypatch, aws.sqs, "delete_message_batch", keep_first)
    report = dlq.redrive_manual(aws.sqs, source_url=fifo, target_url=fifo_target, filter_type="orders", workers=1)
    assert (report.moved, report.skipped_by_filter, len(report.failed)) == (8, 1, 1)
    assert aws.depth(fifo) == (4, 1) and report.left_unreached == 3  # 5 in the DLQ: 1 kept back, 1 failed


def test_a_message_received_again_during_a_redrive_is_handled_once(aws):
    source, target = aws.queue(), aws.queue()
    send_units(aws, source, [unit(i, "orders" if i % 2 else "shipments") for i in range(6)])
    # held for 0 s: the filtered-out messages are visible again at once and come back in the next receive
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, filter_type="orders", workers=1,
                                visibility=0)
    assert (report.moved, report.skipped_by_filter, report.matched) == (3, 3, 3)
    assert len(aws.take(target)) == 3


def test_messages_received_again_in_several_receives_are_each_counted(aws, monkeypatch):
    source, target = aws.queue(), aws.queue()
    send_units(aws, source, [unit(i) for i in range(3)])
    got: list[dict] = []

    def one_new_and_the_last_again(kwargs, real):  # at-least-once: each receive repeats the one before
        messages = real(**{**kwargs, "MaxNumberOfMessages": 1}).get("Messages", [])
        again = got[-1:] if messages else []
        got.extend(messages)
        return {"Messages": messages + again}

    aws.spy(monkeypatch, aws.sqs, "receive_message", one_new_and_the_last_again)
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, workers=1)
    assert (report.moved, report.received_again, report.failed) == (3, 2, [])
    assert (aws.depth(target), aws.depth(source)) == ((3, 0), (0, 0))  # each sent once, none left behind


def test_a_duplicate_receive_is_never_sent_twice_nor_left_hidden_and_the_summary_counts_it(aws, monkeypatch):
    from ops.commands.dlq import _redrive_text

    source, target = aws.queue(), aws.queue()
    send_units(aws, source, [unit(i, "orders" if i % 2 else "shipments") for i in range(4)])
    first: list[dict] = []
    receives, newest = [], []
    make_visible = aws.sqs.change_message_visibility_batch  # the test's own call, not one of the redrive's

    def duplicate(kwargs, real):
        receives.append(kwargs)
        if len(receives) == 2:  # SQS is at-least-once: the held ones again with new receipt handles, the moved ones too
            held = [m for m in first if "shipments" in m["Body"]]
            make_visible(QueueUrl=source, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(held)])
            again = real(**kwargs)["Messages"]
            newest.extend(m["ReceiptHandle"] for m in again)
            assert set(newest).isdisjoint(m["ReceiptHandle"] for m in held)
            return {"Messages": again + [m for m in first if m not in held]}
        response = real(**kwargs)
        first.extend(response.get("Messages", []) if len(receives) == 1 else [])
        return response

    aws.spy(monkeypatch, aws.sqs, "receive_message", duplicate)
    deletes = aws.spy(monkeypatch, aws.sqs, "delete_message_batch")
    releases = aws.spy(monkeypatch, aws.sqs, "change_message_visibility_batch")
    report = dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, filter_type="orders", workers=1)
    assert (report.moved, report.skipped_by_filter, report.received_again, report.failed) == (2, 2, 4, [])
    assert sorted(work_unit.parse(m["Body"]).size for m in aws.take(target)) == [1, 3]  # not sent twice
    # the moved ones deleted again with the handle they came back with; the held ones visible at once
    assert [sorted(e["ReceiptHandle"] for e in d["Entries"]) for d in deletes] == [
        sorted(m["ReceiptHandle"] for m in first if "orders" in m["Body"])] * 2
    # released with the receipt handles they came back with: SQS may not honour an older one
    assert [sorted(e["ReceiptHandle"] for e in r["Entries"]) for r in releases] == [sorted(newest)]
    assert aws.depth(source) == (2, 0)
    assert "4 received again: not sent twice" in _redrive_text(report)


def test_inspect_receives_nothing_past_its_maximum_and_exports_any_ledger_value(aws, tmp_path):
    url = aws.queue()
    table = aws.table()
    units = [unit(i) for i in range(25)]
    send_units(aws, url, units)
    ledger = Ledger(aws.ddb, table)
    for u in units:
        ledger.claim(bucket=BUCKET, key=u.key, etag=u.etag, size=1, type_="orders", dt="2025-01-01", lease_seconds=60)
        aws.ddb.update_item(TableName=table, Key={"pk": {"S": u.object_id}, "etag": {"S": u.etag}},
                            UpdateExpression="SET raw_note = :b", ExpressionAttributeValues={":b": {"B": b"\x00"}})
    out = tmp_path / "out.jsonl"
    report = dlq.inspect(aws.sqs, queue_url=url, max_messages=10, ddb=aws.ddb, table=table, out_path=str(out))
    assert (report.queue_url, report.messages) == (url, 10)
    assert [json.loads(line)["ledger"]["raw_note"] for line in out.read_text(encoding="utf-8").splitlines()] == [
        str(b"\x00")] * 10
    counts = sorted(int(m["Attributes"]["ApproximateReceiveCount"]) for m in aws.take(url))
    assert counts == [1] * 15 + [2] * 10  # only ten were received by inspect


def test_receive_holds_messages_for_the_visibility_it_is_given(aws):
    url = aws.queue(VisibilityTimeout=0)
    send_units(aws, url, [unit(1)])
    dlq.receive(aws.sqs, url, visibility=300)
    assert aws.depth(url) == (0, 1)


def test_a_throttled_ledger_read_with_nothing_processed_is_asked_again(aws, monkeypatch):
    table = aws.table()
    Ledger(aws.ddb, table).claim(bucket=BUCKET, key=unit(1).key, etag="e1", size=1, type_="orders",
                                 dt="2025-01-01", lease_seconds=60)

    def none_processed(kwargs, real):
        if len(aws.calls["batch_get_item"]) == 1:
            return {"UnprocessedKeys": kwargs["RequestItems"]}  # no Responses at all
        return real(**kwargs)

    aws.spy(monkeypatch, aws.ddb, "batch_get_item", none_processed)
    found = dlq._ledger_errors(aws.ddb, table, [(unit(1).object_id, "e1")])
    assert list(found) == [(unit(1).object_id, "e1")] and len(aws.calls["batch_get_item"]) == 2


def test_an_empty_source_queue_page_and_a_task_list_without_results_read_as_empty(stubbed):
    client, stub, clock = stubbed
    stub.add_response("list_message_move_tasks", {}, LIST)
    stub.add_response("start_message_move_task", {"TaskHandle": "h"}, {"SourceArn": DLQ_ARN})
    assert dlq.redrive_native(client, source_url=DLQ_URL, target_url=None, max_rps=None).task_handle == "h"
    stub.add_response("list_dead_letter_source_queues", {"queueUrls": [], "NextToken": "t"}, {"QueueUrl": DLQ_URL})
    stub.add_response("list_dead_letter_source_queues", {"queueUrls": [Q_URL]}, {"QueueUrl": DLQ_URL, "NextToken": "t"})
    assert dlq.source_queues(client, DLQ_URL) == [Q_URL]


def test_an_error_in_one_worker_stops_the_rate_limited_senders_too(aws, monkeypatch):
    from ops.aws import AccessDenied

    source, target = aws.queue(), aws.queue()
    send_units(aws, source, [unit(i) for i in range(3)])
    limiters = []

    class Limiter(dlq.RateLimiter):
        def __init__(self, rate, *, stop=None):
            super().__init__(rate, stop=stop)
            limiters.append(self)

    monkeypatch.setattr(dlq, "RateLimiter", Limiter)
    aws.spy(monkeypatch, aws.sqs, "send_message_batch", denied)
    with pytest.raises(AccessDenied):
        dlq.redrive_manual(aws.sqs, source_url=source, target_url=target, workers=1, max_rps=5)
    [limiter] = limiters
    assert limiter.stop is not None and limiter.stop.is_set()  # a waiting sender ends with the run
    assert aws.depth(source) == (3, 0)  # not sent: visible in the DLQ again at once, not after the scan visibility


def test_receive_works_with_a_botocore_that_predates_message_system_attribute_names(aws):
    # setup.cfg allows boto3 1.28.57, whose SQS model has no MessageSystemAttributeNames (added in
    # 2024): a client that does not know it refuses the request before sending it. Such a client,
    # from its model with the member removed:
    old = boto3.session.Session().client("sqs", region_name=REGION)
    members = old.meta.service_model.operation_model("ReceiveMessage").input_shape.members
    del members["MessageSystemAttributeNames"]
    url = aws.queue()
    send_units(aws, url, [unit(1)])
    (message,) = dlq.receive(old, url, wait_seconds=0)
    assert message.unit is not None and message.unit.etag == "e1"
    assert int(message.attributes["ApproximateReceiveCount"]) == 1  # the system attributes still come
