import threading

import boto3
import pytest
from moto import mock_aws

from lambdas.shared.ledger import CLAIM_CONDITION, CLAIMED, DONE, FAILED, QUEUED, Ledger

OBJ = dict(bucket="b", key="bronze/orders/dt=2025-01-02/a.jsonl", etag="e1", size=10, type_="orders",
           dt="2025-01-02")


class Clock:
    def __init__(self, t=1_700_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def ddb():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="ledger", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "etag", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "etag", "AttributeType": "S"}])
        yield client


def test_the_claim_condition_spells_out_its_three_cases():
    assert CLAIM_CONDITION == ("attribute_not_exists(pk) OR #expiration < :now_s OR "
                               "(#status = :claimed AND #lease_until < :now_ms)")


def test_a_first_claim_wins_and_a_second_is_a_duplicate(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    assert ledger.claim(**OBJ, lease_seconds=60).won
    second = ledger.claim(**OBJ, lease_seconds=60)
    assert not second.won and second.existing["status"] == CLAIMED


def test_a_claim_whose_lease_ran_out_is_taken_over(ddb):
    clock = Clock()
    ledger = Ledger(ddb, "ledger", clock=clock)
    assert ledger.claim(**OBJ, lease_seconds=60).won
    clock.t += 59
    assert not ledger.claim(**OBJ, lease_seconds=60).won
    clock.t += 2  # the first claimer crashed before sending: its lease lapsed
    assert ledger.claim(**OBJ, lease_seconds=60).won


def test_a_queued_item_is_not_reclaimed_when_its_lease_runs_out(ddb):
    clock = Clock()
    ledger = Ledger(ddb, "ledger", clock=clock)
    ledger.claim(**OBJ, lease_seconds=60)
    ledger.mark_queued(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1", message_id="m1")
    clock.t += 3600
    assert not ledger.claim(**OBJ, lease_seconds=60).won


def test_an_expired_item_that_ttl_has_not_deleted_yet_can_be_claimed_again(ddb):
    clock = Clock()
    ledger = Ledger(ddb, "ledger", ttl_days=1, clock=clock)
    ledger.claim(**OBJ, lease_seconds=60)
    ledger.mark_done(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1", silver_key="s", rows=1, rejected_rows=0)
    clock.t += 86400 + 1  # moto never runs TTL; the code checks expiration itself
    assert ledger.claim(**OBJ, lease_seconds=60).won
    assert ledger.versions(bucket=OBJ["bucket"], key=OBJ["key"])[0]["expired"] is False


CLAIMERS = 8


@pytest.fixture
def worst_case_interleaving(monkeypatch):
    """Every claimer's first request reaches DynamoDB, and is answered, before any claimer's second
    request; requests are applied one at a time, as DynamoDB applies conditional writes to an item.
    (Moto in-process checks a condition and then writes with no lock, so on its own it can let two
    writes through; CI saw that once.) So the test is about our code, deterministically: a claim made
    of a read and then a write has eight winners here, one conditional write has exactly one."""
    from moto.dynamodb.models import DynamoDBBackend

    arrived = threading.Barrier(CLAIMERS, timeout=30)
    answered = threading.Barrier(CLAIMERS, timeout=30)
    first = threading.local()
    lock = threading.Lock()
    for name in ("get_item", "put_item", "update_item", "delete_item"):
        original = getattr(DynamoDBBackend, name)

        def serialized(self, *args, _original=original, **kwargs):
            if getattr(first, "done", False):
                with lock:
                    return _original(self, *args, **kwargs)
            first.done = True
            arrived.wait()
            try:
                with lock:
                    return _original(self, *args, **kwargs)
            finally:
                answered.wait()

        monkeypatch.setattr(DynamoDBBackend, name, serialized)


def test_concurrent_claims_of_one_object_have_exactly_one_winner(ddb, worst_case_interleaving):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    results = []

    def claim():
        results.append(ledger.claim(**OBJ, lease_seconds=60).won)

    threads = [threading.Thread(target=claim) for _ in range(CLAIMERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * (CLAIMERS - 1) + [True]


def test_each_object_version_is_its_own_item_and_one_query_returns_them_all(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    assert ledger.claim(**OBJ, lease_seconds=60).won
    assert ledger.claim(**{**OBJ, "etag": "e2"}, lease_seconds=60).won
    assert {i["etag"] for i in ledger.versions(bucket=OBJ["bucket"], key=OBJ["key"])} == {"e1", "e2"}


def test_the_lifecycle_records_done_and_failed_with_attempts_and_errors(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    ledger.claim(**OBJ, lease_seconds=60)
    ledger.mark_queued(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1", message_id="m1")
    assert ledger.get(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1")["status"] == QUEUED
    ledger.mark_failed(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1", error="boom")
    item = ledger.get(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1")
    assert (item["status"], item["last_error"], item["attempts"]) == (FAILED, "boom", 1)
    ledger.mark_done(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1", silver_key="silver/x", rows=5,
                     rejected_rows=1)
    item = ledger.get(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1")
    assert (item["status"], item["rows"], item["rejected_rows"], item["attempts"]) == (DONE, 5, 1, 2)
    assert "last_error" not in item and item["message_id"] == "m1"


def test_a_late_queued_mark_does_not_undo_done(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    ledger.claim(**OBJ, lease_seconds=60)
    ledger.mark_done(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1", silver_key="s", rows=1, rejected_rows=0)
    ledger.mark_queued(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1", message_id="m1")
    item = ledger.get(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1")
    assert (item["status"], item["message_id"]) == (DONE, "m1")


def test_release_deletes_only_an_unfinished_claim(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    ledger.claim(**OBJ, lease_seconds=60)
    ledger.release(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1")
    assert ledger.get(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1") is None
    ledger.claim(**OBJ, lease_seconds=60)
    ledger.mark_queued(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1", message_id="m1")
    ledger.release(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1")
    assert ledger.get(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1")["status"] == QUEUED
