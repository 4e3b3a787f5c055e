"""The ingest handler (lambdas/ingest/app.py) on in-process moto holding only what it touches: the
events queue and the ledger table (no buckets, no provisioning), so that each test takes a few
milliseconds and `make mutation` can run every mutant of the module against them. What is checked
is what ingest leaves behind: work units on the queue, ledger items, the response or the failure,
the metrics, and the fields of its log lines an operator searches by (object, etag, message id,
reason). tests/functional/test_ingest_handler.py runs the same handler on the provisioned pipeline."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.base_backend import BackendDict

from lambdas.ingest import app
from lambdas.shared import steps, work_unit
from lambdas.shared.keys import InvalidKey, parse_bronze_key
from lambdas.shared.ledger import Ledger
from tests.conftest import emf_metrics, log_lines, logs

REGION = "us-east-1"
BUCKET = "bronze-bucket"
# One session for every test's clients: a first client from a new session costs ~0.1-0.4 s.
SESSION = boto3.session.Session()


class Ingest:
    def __init__(self, sqs, ddb, queue_url: str, capsys, sleeps: list):
        self.sqs, self.ddb, self.queue_url, self.capsys, self.sleeps = sqs, ddb, queue_url, capsys, sleeps
        self.ledger = Ledger(ddb, "ledger")
        self.sends: list[list[str]] = []  # each SendMessageBatch's entry ids
        self.answer = None  # (call number, kwargs, real) -> response, to fail a send

    def install_send_hook(self, monkeypatch):
        real = self.sqs.send_message_batch

        def send(**kwargs):
            self.sends.append([e["Id"] for e in kwargs["Entries"]])
            return self.answer(len(self.sends), kwargs, real) if self.answer else real(**kwargs)

        monkeypatch.setattr(self.sqs, "send_message_batch", send)

    @staticmethod
    def record(key: str, etag: str, size: int = 0, sequencer: str = "") -> dict:
        obj = {"key": key, "eTag": etag, "size": size, **({"sequencer": sequencer} if sequencer else {})}
        return {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": BUCKET}, "object": obj}}

    def event(self, *records: dict) -> dict:
        return {"Records": list(records)}

    @staticmethod
    def message(message_id: str, body) -> dict:
        return {"eventSource": "aws:sqs", "messageId": message_id,
                "body": body if isinstance(body, str) else json.dumps(body)}

    def received(self) -> list[dict]:
        out = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                           MessageAttributeNames=["All"]).get("Messages", [])
            if not got:
                return out
            out += got

    def units(self) -> list[work_unit.WorkUnit]:
        return [work_unit.parse(m["Body"]) for m in self.received()]

    def item(self, key: str, etag: str) -> dict | None:
        return self.ledger.get(bucket=BUCKET, key=key, etag=etag)

    def lines(self) -> list[dict]:
        return log_lines(self.capsys)


def metrics(lines: list[dict]) -> dict:
    return emf_metrics(lines, function="ingest")


@pytest.fixture(scope="module")
def clients():
    """One moto and one pair of clients for the module (starting moto and making two clients cost
    a third of a test, and a mutant of `make mutation` runs up to all of them); `ingest` gives each
    test an empty queue and table all the same."""
    with mock_aws():
        yield {"sqs": SESSION.client("sqs", region_name=REGION),
               "dynamodb": SESSION.client("dynamodb", region_name=REGION)}


@pytest.fixture
def ingest(clients, capsys, monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    sleeps: list[float] = []
    monkeypatch.setattr(app.time, "sleep", sleeps.append)
    BackendDict.reset()  # the last test's queue, messages and table, as a new mock_aws() would
    sqs, ddb = clients["sqs"], clients["dynamodb"]
    queue_url = sqs.create_queue(QueueName="events")["QueueUrl"]
    ddb.create_table(
        TableName="ledger", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "etag", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "etag", "AttributeType": "S"}])
    app._DEPS = app.build_deps({"ELT_QUEUE_URL": queue_url, "ELT_LEDGER_TABLE": "ledger",
                                "ELT_CLAIM_LEASE_SECONDS": "60"}, clients.__getitem__)
    harness = Ingest(sqs, ddb, queue_url, capsys, sleeps)
    harness.install_send_hook(monkeypatch)
    capsys.readouterr()
    try:
        yield harness
    finally:
        app.reset()


def down(n, kwargs, real):
    raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessageBatch")


def refusing(ids: set[str], *, sender_fault: bool, calls: int = 99):
    """Answer the entries in `ids` as failed for the first `calls` sends, send the others."""
    def answer(n, kwargs, real):
        if n > calls:
            return real(**kwargs)
        sent = [e for e in kwargs["Entries"] if e["Id"] not in ids]
        response = real(**{**kwargs, "Entries": sent}) if sent else {"Successful": []}
        return {**response, "Failed": [{"Id": e["Id"], "Code": "Refused", "Message": f"entry {e['Id']}",
                                        "SenderFault": sender_fault} for e in kwargs["Entries"] if e["Id"] in ids]}
    return answer


# --- what a direct invocation leaves behind -----------------------------------------------------
def test_every_record_of_an_event_is_counted_by_outcome_queued_with_its_ledger_item_and_metered(ingest):
    a, b = "bronze/orders/dt=2025-01-02/a.jsonl", "bronze/shipments/dt=2025-01-03/b.json.gz"
    a2 = "bronze/orders/dt=2025-01-02/a2.jsonl"
    assert app.handler(ingest.event(ingest.record(a, "ea", 5), ingest.record(a2, "ea2", 5)))["queued"] == 2
    ingest.received()
    ingest.lines()
    bad_day = "bronze/orders/dt=2025-02-30/c.jsonl"
    result = app.handler(ingest.event(
        {"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete", "s3": {}},  # skipped by s3_events
        ingest.record(a, "ea", 5),  # the same version again: a duplicate
        ingest.record(b, '"eb"', 7),
        ingest.record("other/x.jsonl", "e1"),  # outside bronze/
        ingest.record("bronze/orders/dt=2025-01-02/x.csv", "e2"),  # unsupported suffix
        ingest.record(bad_day, "e3"),  # not a day
        ingest.record(a2, "ea2", 5),  # another duplicate
        ingest.record("bronze/orders/dt=2025-01-02/d.jsonl", "ed", 11),
    ), type("Context", (), {"aws_request_id": "req-7"})())
    assert result == {"records": 8, "queued": 2, "duplicates": 2, "in_flight": 0, "skipped": 4, "failed": 0}
    messages = ingest.received()
    units = [work_unit.parse(m["Body"]) for m in messages]
    assert sorted((u.key, u.etag, u.size, u.type, u.dt, u.origin) for u in units) == [
        ("bronze/orders/dt=2025-01-02/d.jsonl", "ed", 11, "orders", "2025-01-02", "s3-event"),
        (b, "eb", 7, "shipments", "2025-01-03", "s3-event")]
    for message, unit in zip(messages, units, strict=True):
        item = ingest.item(unit.key, unit.etag)
        assert (item["status"], item["message_id"], item["type"], item["dt"], item["size"]) == (
            "QUEUED", message["MessageId"], unit.type, unit.dt, unit.size)
    assert ingest.item("other/x.jsonl", "e1") is None and ingest.item(bad_day, "e3") is None

    lines = ingest.lines()
    assert metrics(lines) == {("Objects", "orders", None): 1, ("BytesIn", "orders", None): 11,
                              ("Objects", "shipments", None): 1, ("BytesIn", "shipments", None): 7,
                              ("ObjectsSkipped", "unknown", "not-bronze"): 4,
                              ("ObjectsSkipped", "unknown", "duplicate"): 2}
    assert {(line["aws_request_id"], line["function"]) for line in logs(lines)} == {("req-7", "ingest")}
    by_object = {}
    for line in logs(lines):
        by_object.setdefault(line.get("object"), []).append(line)
    for key in ("other/x.jsonl", "bronze/orders/dt=2025-01-02/x.csv", bad_day):
        [line] = by_object[f"s3://{BUCKET}/{key}"]
        assert line["level"] == ("WARNING" if key == bad_day else "INFO")
    with pytest.raises(InvalidKey) as invalid:
        parse_bronze_key(bad_day)
    assert by_object[f"s3://{BUCKET}/{bad_day}"][0]["reason"] == invalid.value.reason
    [duplicate] = by_object[f"s3://{BUCKET}/{a}"]
    assert (duplicate["level"], duplicate["etag"], duplicate["status"]) == ("INFO", "ea", "QUEUED")
    queued = {line["message_id"]: line for line in logs(lines) if line.get("message_id")}
    assert {(queued[m["MessageId"]]["object"], queued[m["MessageId"]]["etag"]) for m in messages} == {
        (u.object_id, u.etag) for u in units}
    assert [line for line in lines if line.get("reason") == "event 'ObjectRemoved:Delete' is not ObjectCreated"]
    [finished] = [line for line in lines if line.get("records") == 8]
    assert {k: finished[k] for k in result} == result


def test_an_invalid_work_unit_is_rejected_with_its_reason_and_nothing_is_claimed(ingest):
    key = "bronze/orders/dt=2025-01-02/a.jsonl"
    result = app.handler(ingest.event(ingest.record(key, "", 3)))  # no ETag: no version to claim
    assert (result["skipped"], result["queued"]) == (1, 0)
    assert ingest.units() == [] and ingest.ddb.scan(TableName="ledger")["Count"] == 0
    with pytest.raises(work_unit.InvalidWorkUnit) as invalid:
        work_unit.build(bucket=BUCKET, key=key, etag="", size=3, origin="s3-event")
    [line] = [line for line in logs(ingest.lines()) if line.get("object") == f"s3://{BUCKET}/{key}"]
    assert (line["level"], line["reason"]) == ("WARNING", getattr(invalid.value, "reason", str(invalid.value)))


def test_a_step_hook_sees_the_claim_before_the_send_for_each_object(ingest, monkeypatch):
    seen = []
    monkeypatch.setattr(steps, "HOOK", lambda name, context: seen.append((name, context)))
    key = "bronze/orders/dt=2025-01-02/a.jsonl"
    app.handler(ingest.event(ingest.record(key, "e", 1)))
    assert seen == [(steps.AFTER_CLAIM, {"object": f"s3://{BUCKET}/{key}"}),
                    (steps.AFTER_SEND, {"object": f"s3://{BUCKET}/{key}"})]


# --- SQS deliveries: partial batch responses, work units on the wrong queue -----------------------
def test_from_sqs_only_the_message_whose_object_is_still_claimed_elsewhere_fails(ingest):
    held_key, free_key = "bronze/orders/dt=2025-01-02/held.jsonl", "bronze/orders/dt=2025-01-02/free.jsonl"
    for key in (held_key, held_key + ".2.jsonl"):
        ingest.ledger.claim(bucket=BUCKET, key=key, etag="eh", size=1, type_="orders", dt="2025-01-02",
                            lease_seconds=300)
    event = {"Records": [
        ingest.message("m-held-2", ingest.event(ingest.record(held_key + ".2.jsonl", "eh", 1))),
        ingest.message("m-free", ingest.event(ingest.record(free_key, "ef", 2))),
        ingest.message("m-held", ingest.event(ingest.record(held_key, "eh", 1))),
        ingest.message("m-test", {"Event": "s3:TestEvent"}),
    ]}
    assert app.handler(event) == {"batchItemFailures": [{"itemIdentifier": "m-held"}, {"itemIdentifier": "m-held-2"}]}
    assert [u.key for u in ingest.units()] == [free_key]
    assert ingest.item(held_key, "eh")["status"] == "CLAIMED"
    lines = ingest.lines()
    [line] = [line for line in logs(lines) if line.get("object") == f"s3://{BUCKET}/{held_key}"]
    assert (line["level"], line["etag"], line["lease_until"]) == ("WARNING", "eh",
                                                                  ingest.item(held_key, "eh")["lease_until"])
    assert "claimed by another invocation that has not queued it yet" in line["message"]  # runbooks/alarms.md
    assert metrics(lines) == {("Objects", "orders", None): 1, ("BytesIn", "orders", None): 2,
                              ("ObjectsSkipped", "unknown", "in-flight"): 2,
                              ("ObjectsSkipped", "unknown", "not-bronze"): 1}
    # From SQS with nothing failed the answer is still a partial batch response (nothing failed).
    assert app.handler({"Records": [ingest.message("m-again", ingest.event(ingest.record(free_key, "ef")))]}) == {
        "batchItemFailures": []}


def test_a_direct_invocation_that_cannot_finish_fails_naming_both_causes(ingest):
    held_key = "bronze/orders/dt=2025-01-02/held.jsonl"
    ingest.ledger.claim(bucket=BUCKET, key=held_key, etag="eh", size=1, type_="orders", dt="2025-01-02",
                        lease_seconds=300)
    ingest.answer = down
    with pytest.raises(app.IngestFailed) as failed:
        app.handler(ingest.event(ingest.record(held_key, "eh"),
                                 ingest.record("bronze/orders/dt=2025-01-02/a.jsonl", "ea"),
                                 ingest.record("bronze/orders/dt=2025-01-02/b.jsonl", "eb")))
    assert str(failed.value) == ("2 object(s) could not be queued and 1 object(s) are still claimed by another "
                                 "invocation; the event will be retried")
    assert metrics(ingest.lines()) == {("Failed", "unknown", None): 2, ("ObjectsSkipped", "unknown", "in-flight"): 1}


def stray(i: int) -> tuple[dict, str]:
    unit = work_unit.build(bucket=BUCKET, key=f"bronze/orders/dt=2025-01-02/s{i:02d}.jsonl", etag=f"s{i}", size=i,
                           origin="redrive")
    return Ingest.message(f"w{i:02d}", unit.body()), unit.body()


def test_work_units_on_the_ingest_queue_are_forwarded_unchanged_in_batches_and_only_refused_ones_fail(ingest):
    strays = [stray(i) for i in range(12)]
    note_key = "bronze/orders/dt=2025-01-02/n.jsonl"
    event = {"Records": [*(m for m, _ in strays), ingest.message("m-note", ingest.event(ingest.record(note_key, "n")))]}

    def answer(n, kwargs, real):
        if n == 1:  # the first ten: entry 3 refused
            return refusing({"3"}, sender_fault=True)(n, kwargs, real)
        if n == 2:  # the last two: the call fails as a whole
            return down(n, kwargs, real)
        return real(**kwargs)

    ingest.answer = answer
    response = app.handler(event)
    assert response == {"batchItemFailures": [{"itemIdentifier": i} for i in ("w03", "w10", "w11")]}
    assert [len(ids) for ids in ingest.sends] == [10, 2, 1]  # strays, then the S3 event's work unit
    bodies = sorted(m["Body"] for m in ingest.received())
    forwarded = sorted(body for i, (_, body) in enumerate(strays) if i not in (3, 10, 11))
    note = [b for b in bodies if work_unit.parse(b).key == note_key]
    assert len(note) == 1 and sorted(b for b in bodies if b not in note) == forwarded
    lines = ingest.lines()
    assert metrics(lines) == {("Objects", "orders", None): 1, ("BytesIn", "orders", None): 0}  # strays: not skips
    lines = logs(lines)
    errors = {line["message_id"]: line["error"] for line in lines if line["level"] == "ERROR"}
    assert errors == {"w03": "entry 3", "w10": "ClientError: An error occurred (ServiceUnavailable) when calling "
                      "the SendMessageBatch operation: down", "w11": errors.get("w11")} and "down" in errors["w11"]
    warned = {line["message_id"]: line for line in lines if line["level"] == "WARNING"}
    assert set(warned) == {m["messageId"] for i, (m, _) in enumerate(strays) if i not in (3, 10, 11)}
    assert all("a work unit reached the ingest queue" in line["message"] for line in warned.values())  # runbook
    assert len({line["forwarded_as"] for line in warned.values()}) == 9


def test_only_a_delivery_of_the_current_work_unit_with_a_message_id_is_forwarded(ingest):
    body = json.loads(stray(1)[1])
    event = {"Records": [
        Ingest.message("old", {**body, "v": body["v"] + 1}),  # not this version: not ours to forward
        {"eventSource": "aws:sqs", "body": json.dumps(body)},  # no messageId: could not be failed
        {"eventSource": "aws:sns", "messageId": "x", "body": json.dumps(body)},  # not an SQS delivery
        Ingest.message("not-json", "{oops"),
        "not a record",
    ]}
    assert app.handler(event) == {"batchItemFailures": []}
    assert ingest.sends == [] and ingest.units() == []
    unreadable = [line["detail"] for line in ingest.lines() if line.get("reason") == "body is not JSON"]
    assert sorted(unreadable) == ["", "{oops"]  # what the body was, for the reader of the log (SNS's: none)
    assert app.handler({"Records": [stray(2)[0]]}) == {"batchItemFailures": []}  # only strays: acknowledged
    assert [u.key for u in ingest.units()] == ["bronze/orders/dt=2025-01-02/s02.jsonl"]
    assert app.handler({"Records": "oops"})["skipped"] == 1 and app.handler(["a"])["skipped"] == 1


# --- sending: batches of ten, retries, giving up ------------------------------------------------
def keys(n: int) -> list[str]:
    return [f"bronze/orders/dt=2025-01-05/part-{i:02d}.jsonl" for i in range(n)]


def test_an_answer_that_leaves_out_an_empty_list_is_read_as_empty(ingest):
    def bare(n, kwargs, real):  # JSON answers may leave out an empty Successful or Failed
        response = real(**kwargs) if n > 1 else {"Failed": [{"Id": e["Id"], "Code": "InternalError", "Message": "x",
                                                             "SenderFault": False} for e in kwargs["Entries"]]}
        return {k: v for k, v in response.items() if v}

    ingest.answer = bare
    assert app.handler(ingest.event(ingest.record(keys(1)[0], "e0", 1)))["queued"] == 1
    ingest.answer, ingest.sends[:] = bare, []
    assert app.handler({"Records": [stray(1)[0]]}) == {"batchItemFailures": [{"itemIdentifier": "w01"}]}
    assert app.handler({"Records": [stray(1)[0]]}) == {"batchItemFailures": []}
    assert [u.key for u in ingest.units()] == [keys(1)[0], "bronze/orders/dt=2025-01-02/s01.jsonl"]


def test_an_entry_sqs_failed_is_retried_alone_with_backoff_and_queued_once(ingest):
    ingest.answer = refusing({"1"}, sender_fault=False, calls=2)
    result = app.handler(ingest.event(*(ingest.record(k, f"e{i}", 1) for i, k in enumerate(keys(12)))))
    assert (result["queued"], result["failed"]) == (12, 0)
    assert ingest.sends == [[str(i) for i in range(10)], ["1"], ["1"], ["0", "1"]]
    assert ingest.sleeps == [0.2, 0.4]  # doubling from 0.2 s: all four attempts fit in ~1.4 s
    assert sorted(u.key for u in ingest.units()) == keys(12)


def test_a_send_that_keeps_failing_releases_its_claims_and_the_retry_queues_them(ingest):
    ingest.answer = down
    event = ingest.event(*(ingest.record(k, f"e{i}", 1) for i, k in enumerate(keys(2))))
    with pytest.raises(app.IngestFailed, match=r"^2 object\(s\) could not be queued; the event will be retried$"):
        app.handler(event)
    assert len(ingest.sends) == app.SEND_ATTEMPTS and ingest.sleeps == [0.2, 0.4, 0.8]
    assert [ingest.item(k, f"e{i}") for i, k in enumerate(keys(2))] == [None, None]
    lines = ingest.lines()
    failures = [line for line in logs(lines) if line["level"] == "ERROR"]
    assert sorted(line["object"] for line in failures) == [f"s3://{BUCKET}/{k}" for k in keys(2)]
    assert all("send failed; claim released" in line["message"] and line["error"] == (
        "ClientError: An error occurred (ServiceUnavailable) when calling the SendMessageBatch operation: down")
        for line in failures)  # what runbooks/ingest-dlq.md tells the reader to look for
    assert metrics(lines) == {("Failed", "unknown", None): 2}
    ingest.answer = None
    assert app.handler(event)["queued"] == 2


def test_an_entry_refused_as_the_sender_s_fault_fails_at_once_and_the_others_are_queued_and_counted(ingest):
    ingest.answer = refusing({"0"}, sender_fault=True)
    messages = [ingest.message(f"m{i}", ingest.event(ingest.record(k, f"e{i}", 4))) for i, k in enumerate(keys(3))]
    assert app.handler({"Records": messages}) == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    assert ingest.sends == [["0", "1", "2"]] and ingest.sleeps == []
    assert ingest.item(keys(3)[0], "e0") is None and ingest.item(keys(3)[1], "e1")["status"] == "QUEUED"
    lines = ingest.lines()
    [failure] = [line for line in logs(lines) if line["level"] == "ERROR"]
    assert (failure["object"], failure["error"]) == (f"s3://{BUCKET}/{keys(3)[0]}", "Refused: entry 0")
    assert metrics(lines) == {("Objects", "orders", None): 2, ("BytesIn", "orders", None): 8,
                              ("Failed", "unknown", None): 1}


def test_objects_sent_by_an_event_whose_other_object_failed_are_counted_now_their_retry_is_a_duplicate(ingest):
    ingest.answer = refusing({"1"}, sender_fault=True)
    event = ingest.event(*(ingest.record(k, f"e{i}", 3) for i, k in enumerate(keys(2))))
    with pytest.raises(app.IngestFailed):
        app.handler(event)
    assert metrics(ingest.lines()) == {("Objects", "orders", None): 1, ("BytesIn", "orders", None): 3,
                                       ("Failed", "unknown", None): 1}
    ingest.answer = None
    assert app.handler(event)["duplicates"] == 1
    assert metrics(ingest.lines()) == {("Objects", "orders", None): 1, ("BytesIn", "orders", None): 3,
                                       ("ObjectsSkipped", "unknown", "duplicate"): 1}


def test_a_claim_that_cannot_be_released_is_logged_and_left_to_its_lease(ingest, monkeypatch):
    ingest.answer = down

    def no_release(**kwargs):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "DeleteItem")

    monkeypatch.setattr(app._DEPS.ledger, "release", no_release)
    with pytest.raises(app.IngestFailed):
        app.handler(ingest.event(ingest.record(keys(1)[0], "e0")))
    assert ingest.item(keys(1)[0], "e0")["status"] == "CLAIMED"
    errors = [line for line in logs(ingest.lines()) if line["level"] == "ERROR"]
    assert [line["object"] for line in errors] == [f"s3://{BUCKET}/{keys(1)[0]}"] * 2
    assert "ThrottlingException" in errors[1]["error"] and "lease" in errors[1]["message"]


# --- versions seen before (ABA) --------------------------------------------------------------------
KEY = "bronze/orders/dt=2025-01-02/v.jsonl"


def test_a_newer_event_for_a_finished_version_retakes_it_and_queues_it_again(ingest):
    app.handler(ingest.event(ingest.record(KEY, "a", 1, sequencer="10")))
    ingest.ledger.mark_done(bucket=BUCKET, key=KEY, etag="a", silver_key="s", rows=1, rejected_rows=0,
                            sequencer="10")
    ingest.received()
    ingest.lines()
    result = app.handler(ingest.event(ingest.record(KEY, "a", 1, sequencer="30")))
    assert (result["queued"], result["duplicates"], result["in_flight"]) == (1, 0, 0)
    assert [(u.etag, u.sequencer) for u in ingest.units()] == [("a", "30")]
    item = ingest.item(KEY, "a")
    assert (item["status"], item["sequencer"], item["type"], item["dt"]) == ("QUEUED", "30", "orders", "2025-01-02")
    [again] = [line for line in logs(ingest.lines()) if line.get("previous_sequencer")]
    assert (again["object"], again["etag"], again["sequencer"], again["previous_sequencer"],
            again["previous_status"]) == (f"s3://{BUCKET}/{KEY}", "a", "30", "10", "DONE")
    assert app.handler(ingest.event(ingest.record(KEY, "a", 1, sequencer="20")))["duplicates"] == 1


def test_a_newer_event_for_a_version_first_seen_without_a_sequencer_logs_none_as_empty(ingest):
    app.handler(ingest.event(ingest.record(KEY, "a", 1)))
    ingest.lines()
    assert app.handler(ingest.event(ingest.record(KEY, "a", 1, sequencer="30")))["queued"] == 1
    [again] = [line for line in logs(ingest.lines()) if line.get("sequencer") == "30" and "previous_status" in line]
    assert (again["previous_sequencer"], again["previous_status"]) == ("", "QUEUED")


def test_a_retake_lost_to_another_event_fails_this_one_for_its_retry(ingest, monkeypatch):
    app.handler(ingest.event(ingest.record(KEY, "a", 1, sequencer="10")))
    ingest.received()
    real = app._DEPS.ledger.retake

    def racing(**kwargs):  # another event retakes first, between our read and our write
        monkeypatch.setattr(app._DEPS.ledger, "retake", real)
        app.handler(ingest.event(ingest.record(KEY, "a", 1, sequencer="40")))
        return real(**kwargs)

    monkeypatch.setattr(app._DEPS.ledger, "retake", racing)
    ingest.lines()
    ingest.ledger.claim(bucket=BUCKET, key=KEY + ".held.jsonl", etag="h", size=1, type_="orders", dt="2025-01-02",
                        lease_seconds=300)
    held = ingest.message("h", ingest.event(ingest.record(KEY + ".held.jsonl", "h", 1)))
    message = ingest.message("m", ingest.event(ingest.record(KEY, "a", 1, sequencer="30")))
    assert app.handler({"Records": [held, message]}) == {"batchItemFailures": [{"itemIdentifier": "h"},
                                                                               {"itemIdentifier": "m"}]}
    assert [u.sequencer for u in ingest.units()] == ["40"]
    lines = ingest.lines()
    [warning] = [line for line in logs(lines) if line["level"] == "WARNING" and line["object"].endswith(KEY)]
    assert (warning["object"], warning["etag"], warning["sequencer"]) == (f"s3://{BUCKET}/{KEY}", "a", "30")
    assert metrics(lines)[("ObjectsSkipped", "unknown", "in-flight")] == 2


def test_a_newer_event_while_the_version_is_still_claimed_waits_for_the_claim(ingest):
    ingest.ledger.claim(bucket=BUCKET, key=KEY, etag="a", size=1, type_="orders", dt="2025-01-02",
                        lease_seconds=300, sequencer="10")
    with pytest.raises(app.IngestFailed, match=r"^1 object\(s\) are still claimed by another invocation; the event "
                       "will be retried$"):
        app.handler(ingest.event(ingest.record(KEY, "a", 1, sequencer="30")))
    assert ingest.item(KEY, "a")["sequencer"] == "10" and ingest.units() == []


# --- configuration --------------------------------------------------------------------------------
def test_the_handler_s_clients_and_settings_come_from_the_environment_once(monkeypatch):
    monkeypatch.setenv("ELT_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/1/q")
    monkeypatch.setenv("ELT_LEDGER_TABLE", "t")
    monkeypatch.setenv("ELT_LEDGER_TTL_DAYS", "7")
    monkeypatch.setenv("ELT_CLAIM_LEASE_SECONDS", "90")
    app.reset()
    try:
        first = app.deps()
        assert (first.queue_url, first.lease_seconds, first.ledger.table) == (
            "https://sqs.us-east-1.amazonaws.com/1/q", 90, "t")
        assert first.ledger.ttl_days == 7 and first.sqs.meta.service_model.service_name == "sqs"
        assert app.deps() is first
        app.reset()
        assert app.deps() is not first
    finally:
        app.reset()
