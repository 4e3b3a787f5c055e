import threading

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.base_backend import BackendDict

from lambdas.shared.ledger import (
    CLAIM_CONDITION,
    CLAIMED,
    DONE,
    FAILED,
    MAX_ERROR_CHARS,
    QUEUED,
    Ledger,
    _av,
    object_pk,
    parse_pk,
    plain,
)

OBJ = dict(bucket="b", key="bronze/orders/dt=2025-01-02/a.jsonl", etag="e1", size=10, type_="orders",
           dt="2025-01-02")


# One session for every test's client: each mock_aws() resets boto3's default session, and a first
# client from a new session costs ~0.1-0.4 s (loading the service model), a later one ~2 ms.
SESSION = boto3.session.Session()


class Clock:
    def __init__(self, t=1_700_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture(scope="module")
def moto():
    """One moto for the module: starting and stopping it was most of a test's cost, and every
    mutant of `make mutation` runs up to all of them."""
    with mock_aws():
        yield


@pytest.fixture
def ddb(moto):
    """An empty ledger table and a client of the test's own (tests hook its events; the hooks go
    with it)."""
    BackendDict.reset()  # the last test's table, as a new mock_aws() would
    client = SESSION.client("dynamodb", region_name="us-east-1")
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


# --- errors other than a failed condition ---------------------------------------------------------
def answer_next_call_with(client, operation: str, code: str):
    """The next `operation` call (its request built and validated by botocore) fails with error
    `code`, as when DynamoDB refused it and botocore's retries ran out; nothing reaches moto. Later
    calls reach moto. Returns the calls seen."""
    seen = []

    def before_call(**kwargs):
        seen.append(operation)
        if len(seen) == 1:
            return AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", 400, {}, None), {
                "Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None

    client.meta.events.register(f"before-call.dynamodb.{operation}", before_call)
    return seen


OTHER_ERRORS = ("ThrottlingException", "ProvisionedThroughputExceededException", "AccessDeniedException")
K = dict(bucket=OBJ["bucket"], key=OBJ["key"], etag="e1")


@pytest.mark.parametrize("code", OTHER_ERRORS)
def test_a_claim_that_dynamodb_refuses_for_another_reason_raises_instead_of_calling_it_a_duplicate(
        ddb, code):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    answer_next_call_with(ddb, "PutItem", code)
    with pytest.raises(ClientError) as info:
        ledger.claim(**OBJ, lease_seconds=60)
    assert info.value.response["Error"]["Code"] == code
    assert ledger.get(**K) is None
    assert ledger.claim(**OBJ, lease_seconds=60).won  # the retried event claims it


@pytest.mark.parametrize("code", OTHER_ERRORS)
def test_a_release_that_dynamodb_refuses_raises_and_keeps_the_claim(ddb, code):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    ledger.claim(**OBJ, lease_seconds=60)
    answer_next_call_with(ddb, "DeleteItem", code)
    with pytest.raises(ClientError) as info:
        ledger.release(**K)
    assert info.value.response["Error"]["Code"] == code
    assert ledger.get(**K)["status"] == CLAIMED


MARKS = {
    "mark_queued": dict(message_id="m1"),
    "mark_done": dict(silver_key="silver/x", rows=1, rejected_rows=0),
    "mark_failed": dict(error="boom"),
}


@pytest.mark.parametrize("code", OTHER_ERRORS)
@pytest.mark.parametrize("mark", sorted(MARKS))
def test_a_status_update_that_dynamodb_refuses_raises_and_changes_nothing(ddb, mark, code):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    ledger.claim(**OBJ, lease_seconds=60)
    before = ledger.get(**K)
    calls = answer_next_call_with(ddb, "UpdateItem", code)
    with pytest.raises(ClientError) as info:
        getattr(ledger, mark)(**K, **MARKS[mark])
    assert info.value.response["Error"]["Code"] == code
    assert calls == ["UpdateItem"]  # no second, unconditional update after the refused one
    assert ledger.get(**K) == before


@pytest.mark.parametrize("code", OTHER_ERRORS)
def test_reading_an_item_that_dynamodb_refuses_raises_instead_of_reading_as_absent(ddb, code):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    ledger.claim(**OBJ, lease_seconds=60)
    answer_next_call_with(ddb, "GetItem", code)
    with pytest.raises(ClientError) as info:
        ledger.get(**K)
    assert info.value.response["Error"]["Code"] == code


@pytest.mark.parametrize("code", OTHER_ERRORS)
def test_reading_versions_that_dynamodb_refuses_raises(ddb, code):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    answer_next_call_with(ddb, "Query", code)
    with pytest.raises(ClientError) as info:
        ledger.versions(bucket=OBJ["bucket"], key=OBJ["key"])
    assert info.value.response["Error"]["Code"] == code


# --- reading items back ------------------------------------------------------------------------------
def test_versions_follows_every_page(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    etags = [f"e{i}" for i in range(5)]
    for etag in etags:
        ledger.claim(**{**OBJ, "etag": etag}, lease_seconds=60)
    ledger.claim(**{**OBJ, "key": OBJ["key"] + "x", "etag": "other"}, lease_seconds=60)
    queries = []
    ddb.meta.events.register("before-parameter-build.dynamodb.Query",
                             lambda params, **kw: queries.append(dict(params)))
    got = ledger.versions(bucket=OBJ["bucket"], key=OBJ["key"], page_size=2)
    assert sorted(i["etag"] for i in got) == etags
    assert [q.get("Limit") for q in queries] == [2, 2, 2]
    assert "ExclusiveStartKey" not in queries[0] and all("ExclusiveStartKey" in q for q in queries[1:])


def test_versions_refuses_a_page_that_does_not_move_on(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    stuck = {"pk": {"S": "s3://b/k"}, "etag": {"S": "e1"}}
    ddb.meta.events.register("before-call.dynamodb.Query", lambda **kw: (
        AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", 200, {}, None),
        {"Items": [], "LastEvaluatedKey": stuck}))
    with pytest.raises(RuntimeError, match=f"query for {object_pk(OBJ['bucket'], OBJ['key'])} made no progress"):
        ledger.versions(bucket=OBJ["bucket"], key=OBJ["key"])


def test_versions_says_which_items_outlived_their_ttl(ddb):
    clock = Clock()
    ledger = Ledger(ddb, "ledger", ttl_days=1, clock=clock)
    ledger.claim(**OBJ, lease_seconds=60)
    clock.t += 86400
    ledger.claim(**{**OBJ, "etag": "e2"}, lease_seconds=60)
    assert [i["expired"] for i in ledger.versions(bucket=OBJ["bucket"], key=OBJ["key"])] == [False, False]
    clock.t += 1
    expired = {i["etag"]: i["expired"] for i in ledger.versions(bucket=OBJ["bucket"], key=OBJ["key"])}
    assert expired == {"e1": True, "e2": False}


def test_whole_numbers_read_back_as_ints_and_others_as_floats_none_and_text():
    assert plain({"n": {"N": "5"}, "neg": {"N": "-3"}, "f": {"N": "1.5"}, "e": {"N": "-0.25"},
                  "z": {"NULL": True}, "s": {"S": "12"}}) == {"n": 5, "neg": -3, "f": 1.5, "e": -0.25,
                                                              "z": None, "s": "12"}
    assert [type(v) for v in plain({"n": {"N": "5"}, "neg": {"N": "-3"}, "f": {"N": "2.0"}}).values()] == [
        int, int, float]


def test_counts_and_times_read_back_with_their_types(ddb):
    clock = Clock(1_700_000_000.75)
    ledger = Ledger(ddb, "ledger", ttl_days=2, clock=clock)
    ledger.claim(**OBJ, lease_seconds=60)
    item = ledger.get(**K)
    assert (item["size"], item["attempts"], item["lease_until"], item["expiration"]) == (
        10, 0, 1_700_000_060_750, 1_700_000_000 + 2 * 86400)
    assert all(type(item[f]) is int for f in ("size", "attempts", "lease_until", "expiration"))
    assert item["claimed_at"] == "2023-11-14T22:13:20Z"
    ledger.mark_done(**K, silver_key="s", rows=7, rejected_rows=2)
    item = ledger.get(**K)
    assert (type(item["rows"]), item["rows"], item["rejected_rows"], item["attempts"]) == (int, 7, 2, 1)


def test_a_long_error_is_kept_up_to_its_limit(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    ledger.claim(**OBJ, lease_seconds=60)
    error = "".join(f"{i:05d}" for i in range(MAX_ERROR_CHARS))  # 5x the limit, every prefix distinct
    ledger.mark_failed(**K, error=error)
    assert ledger.get(**K)["last_error"] == error[:MAX_ERROR_CHARS]
    ledger.mark_failed(**K, error="short")
    assert ledger.get(**K)["last_error"] == "short"


def test_a_done_mark_keeps_the_last_error_unless_the_object_was_written(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    ledger.claim(**OBJ, lease_seconds=60)
    ledger.mark_failed(**K, error="boom")
    ledger.mark_done(**K, silver_key="s", rows=0, rejected_rows=0, outcome="source-deleted")
    item = ledger.get(**K)
    assert (item["status"], item["outcome"], item["last_error"]) == (DONE, "source-deleted", "boom")
    ledger.mark_done(**K, silver_key="s", rows=1, rejected_rows=0)
    assert "last_error" not in ledger.get(**K)


def test_an_update_of_a_purged_item_recreates_it_with_an_expiration(ddb):
    clock = Clock()
    ledger = Ledger(ddb, "ledger", ttl_days=3, clock=clock)
    ledger.mark_queued(**K, message_id="m1")  # no claim: TTL purged it, or it never existed
    item = ledger.get(**K)
    assert (item["message_id"], item["expiration"]) == ("m1", int(clock.t) + 3 * 86400)
    clock.t += 100
    ledger.mark_queued(**K, message_id="m2")
    assert ledger.get(**K)["expiration"] == int(clock.t) - 100 + 3 * 86400  # not moved by a re-mark


def test_a_pk_names_the_bucket_and_the_whole_key():
    assert object_pk("b", "bronze/x/dt=2025-01-01/a b.jsonl") == "s3://b/bronze/x/dt=2025-01-01/a b.jsonl"
    assert parse_pk("s3://b/bronze/x/dt=2025-01-01/a b.jsonl") == ("b", "bronze/x/dt=2025-01-01/a b.jsonl")
    assert parse_pk("s3://b/k/") == ("b", "k/")


@pytest.mark.parametrize("pk", ["b/k", "s3:/b/k", "S3://b/k", "s3://bucket-only", "s3://", "", "x3://b/k",
                                "s3:///k", "s3://b/", "s3://b"])
def test_a_pk_that_is_not_s3_bucket_key_is_refused(pk):
    with pytest.raises(ValueError, match="is not s3://bucket/key"):
        parse_pk(pk)


# --- retaking an item for a newer event of the same ETag, and updates owned by one event -------------
def finished(ledger, sequencer="0055AA"):
    ledger.claim(**OBJ, lease_seconds=60, sequencer=sequencer)
    ledger.mark_done(**K, silver_key="silver/x", rows=3, rejected_rows=0, sequencer=sequencer)
    return ledger.get(**K)


def test_a_newer_event_retakes_a_finished_item_as_a_fresh_claim(ddb):
    clock = Clock()
    ledger = Ledger(ddb, "ledger", ttl_days=2, clock=clock)
    existing = finished(ledger)
    clock.t += 10
    claim = ledger.retake(**OBJ, lease_seconds=60, sequencer="0055BB", existing=existing)
    assert (claim.won, claim.reason, claim.existing) == (True, "retaken", existing)
    item = ledger.get(**K)
    assert (item["status"], item["sequencer"], item["previous_sequencer"], item["previous_outcome"]) == (
        CLAIMED, "0055BB", "0055AA", "written")
    assert (item["lease_until"], item["expiration"], item["attempts"]) == (
        int(clock.t * 1000) + 60_000, int(clock.t) + 2 * 86400, 0)


def test_of_two_events_racing_to_retake_one_item_only_the_first_wins(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    existing = finished(ledger)
    assert ledger.retake(**OBJ, lease_seconds=60, sequencer="0055BB", existing=existing).won
    late = ledger.retake(**OBJ, lease_seconds=60, sequencer="0055CC", existing=existing)
    assert (late.won, late.reason) == (False, "changed")
    assert ledger.get(**K)["sequencer"] == "0055BB"


def test_an_item_from_before_sequencers_is_retaken_only_while_it_still_has_none(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    ledger.claim(**OBJ, lease_seconds=60)
    ledger.mark_queued(**K, message_id="m1")
    existing = ledger.get(**K)
    assert "sequencer" not in existing
    claim = ledger.retake(**OBJ, lease_seconds=60, sequencer="0055BB", existing=existing)
    assert claim.won
    item = ledger.get(**K)
    assert (item["previous_sequencer"], item["previous_outcome"]) == ("", QUEUED)
    assert not ledger.retake(**OBJ, lease_seconds=60, sequencer="0055CC", existing=existing).won


def test_a_retake_fails_when_the_status_moved_on_since_it_was_read(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    ledger.claim(**OBJ, lease_seconds=60, sequencer="0055AA")
    ledger.mark_queued(**K, message_id="m1")
    existing = ledger.get(**K)
    ledger.mark_done(**K, silver_key="s", rows=1, rejected_rows=0, sequencer="0055AA")
    assert ledger.retake(**OBJ, lease_seconds=60, sequencer="0055BB", existing=existing).reason == "changed"
    assert ledger.get(**K)["status"] == DONE


@pytest.mark.parametrize("code", OTHER_ERRORS)
def test_a_retake_that_dynamodb_refuses_for_another_reason_raises(ddb, code):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    existing = finished(ledger)
    answer_next_call_with(ddb, "PutItem", code)
    with pytest.raises(ClientError) as info:
        ledger.retake(**OBJ, lease_seconds=60, sequencer="0055BB", existing=existing)
    assert info.value.response["Error"]["Code"] == code
    assert ledger.get(**K) == existing


def test_an_older_events_outcome_is_kept_off_an_item_a_newer_event_retook(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    existing = finished(ledger)
    ledger.retake(**OBJ, lease_seconds=60, sequencer="0055BB", existing=existing)
    retaken = ledger.get(**K)
    assert ledger.mark_done(**K, silver_key="old", rows=9, rejected_rows=0, sequencer="0055AA") is False
    assert ledger.mark_failed(**K, error="old", sequencer="0055AA") is False
    assert ledger.get(**K) == retaken
    assert ledger.mark_done(**K, silver_key="new", rows=1, rejected_rows=0, sequencer="0055BB") is True
    assert ledger.get(**K)["silver_key"] == "new"


def test_updates_without_a_sequencer_apply_to_any_item(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    ledger.claim(**OBJ, lease_seconds=60, sequencer="0055AA")
    assert ledger.mark_failed(**K, error="replayed") is True
    assert ledger.mark_done(**K, silver_key="s", rows=1, rejected_rows=0) is True
    assert ledger.get(**K)["sequencer"] == "0055AA"


def test_a_superseded_outcome_keeps_its_reason_and_a_written_one_clears_it(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    ledger.claim(**OBJ, lease_seconds=60)
    ledger.mark_failed(**K, error="boom")
    ledger.mark_done(**K, silver_key="s", rows=0, rejected_rows=0, outcome="superseded", reason="r" * 5000)
    item = ledger.get(**K)
    assert (item["outcome"], item["superseded_reason"]) == ("superseded", "r" * MAX_ERROR_CHARS)
    assert "last_error" not in item
    ledger.mark_done(**K, silver_key="s", rows=1, rejected_rows=0)
    item = ledger.get(**K)
    assert "superseded_reason" not in item and item["outcome"] == "written"


def test_a_claim_says_which_object_version_it_is_about_and_stores_its_fields(ddb):
    clock = Clock()
    ledger = Ledger(ddb, "ledger", clock=clock)
    won = ledger.claim(**OBJ, lease_seconds=60)
    assert (won.won, won.pk, won.etag, won.reason, won.existing) == (
        True, "s3://b/bronze/orders/dt=2025-01-02/a.jsonl", "e1", "claimed", None)
    item = ledger.get(**K)
    assert {f: item[f] for f in ("bucket", "key", "type", "dt", "status")} == {
        "bucket": "b", "key": OBJ["key"], "type": "orders", "dt": "2025-01-02", "status": CLAIMED}
    lost = ledger.claim(**OBJ, lease_seconds=60)
    assert (lost.won, lost.pk, lost.etag, lost.reason, lost.existing) == (False, won.pk, "e1", "duplicate", item)


def test_a_failed_claim_condition_without_the_old_item_is_a_duplicate_with_nothing_known(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    answer_next_call_with(ddb, "PutItem", "ConditionalCheckFailedException")
    lost = ledger.claim(**OBJ, lease_seconds=60)
    assert (lost.won, lost.reason, lost.existing) == (False, "duplicate", None)


def test_a_retake_says_which_object_version_it_is_about(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    existing = finished(ledger)
    won = ledger.retake(**OBJ, lease_seconds=60, sequencer="0055BB", existing=existing)
    lost = ledger.retake(**OBJ, lease_seconds=60, sequencer="0055CC", existing=existing)
    pk = object_pk(OBJ["bucket"], OBJ["key"])
    assert (won.pk, won.etag, lost.pk, lost.etag, lost.existing) == (pk, "e1", pk, "e1", existing)
    assert {f: ledger.get(**K)[f] for f in ("bucket", "key", "type", "dt")} == {
        "bucket": "b", "key": OBJ["key"], "type": "orders", "dt": "2025-01-02"}


def test_a_retake_of_an_item_without_outcome_or_status_records_no_previous_outcome(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    claim = ledger.retake(**OBJ, lease_seconds=60, sequencer="0055BB", existing={"status": None})
    assert not claim.won  # nothing is as that reading showed it: no item has status None
    ledger.claim(**OBJ, lease_seconds=60)
    ledger.mark_done(**K, silver_key="s", rows=1, rejected_rows=0, outcome="")
    existing = ledger.get(**K)
    assert ledger.retake(**OBJ, lease_seconds=60, sequencer="0055BB", existing=existing).won
    assert ledger.get(**K)["previous_outcome"] == DONE


def test_each_mark_records_when_it_happened_by_the_ledger_clock(ddb):
    clock = Clock()
    ledger = Ledger(ddb, "ledger", ttl_days=1, clock=clock)
    ledger.claim(**OBJ, lease_seconds=60)
    clock.t = 1_800_000_000.0
    ledger.mark_queued(**K, message_id="m1")
    assert ledger.get(**K)["queued_at"] == "2027-01-15T08:00:00Z"
    clock.t += 3600
    ledger.mark_failed(**K, error="boom")
    item = ledger.get(**K)
    assert (item["finished_at"], item["expiration"]) == ("2027-01-15T09:00:00Z", int(clock.t) + 86400)
    clock.t += 3600
    ledger.mark_done(**K, silver_key="s", rows=1, rejected_rows=0)
    item = ledger.get(**K)
    assert (item["finished_at"], item["expiration"]) == ("2027-01-15T10:00:00Z", int(clock.t) + 86400)
    clock.t += 3600
    ledger.mark_queued(**K, message_id="m2")  # late: DONE stays, the send is still recorded
    item = ledger.get(**K)
    assert (item["status"], item["queued_at"], item["message_id"]) == (DONE, "2027-01-15T11:00:00Z", "m2")


def test_versions_reads_consistently_unless_told_otherwise(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    queries = []
    ddb.meta.events.register("before-parameter-build.dynamodb.Query",
                             lambda params, **kw: queries.append(params.get("ConsistentRead")))
    ledger.versions(bucket=OBJ["bucket"], key=OBJ["key"])
    ledger.versions(bucket=OBJ["bucket"], key=OBJ["key"], consistent=False)
    assert queries == [True, False]


def test_an_item_without_an_expiration_reads_as_expired_and_a_page_without_items_as_empty(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    ddb.put_item(TableName="ledger", Item={"pk": {"S": object_pk(OBJ["bucket"], OBJ["key"])}, "etag": {"S": "old"}})
    assert [(i["etag"], i["expired"]) for i in ledger.versions(bucket=OBJ["bucket"], key=OBJ["key"])] == [
        ("old", True)]
    ddb.meta.events.register("before-call.dynamodb.Query", lambda **kw: (
        AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", 200, {}, None), {"Count": 0}))
    assert ledger.versions(bucket=OBJ["bucket"], key=OBJ["key"]) == []


def test_values_written_to_dynamodb_read_back_as_they_were(ddb):
    values = {"none": None, "yes": True, "no": False, "n": 5, "f": 1.5, "s": "x", "zero": 0}
    key = {"pk": {"S": "s3://b/k"}, "etag": {"S": "e"}}
    ddb.put_item(TableName="ledger", Item={**key, **{k: _av(v) for k, v in values.items()}})
    item = plain(ddb.get_item(TableName="ledger", Key=key)["Item"])
    assert {k: item[k] for k in values} == values and _av(None) == {"NULL": True}


def test_a_get_reads_consistently_and_items_live_30_days_by_default(ddb):
    clock = Clock()
    ledger = Ledger(ddb, "ledger", clock=clock)
    reads = []
    ddb.meta.events.register("before-parameter-build.dynamodb.GetItem",
                             lambda params, **kw: reads.append(params.get("ConsistentRead")))
    ledger.claim(**OBJ, lease_seconds=60)
    assert ledger.get(**K)["expiration"] == int(clock.t) + 30 * 86400
    assert reads == [True]


def test_schema_drift_is_recorded_with_a_written_object_and_cleared_by_the_next_clean_one(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    ledger.claim(**OBJ, lease_seconds=60)
    drift = {"zeta": 2, "größe": 1}
    ledger.mark_done(**K, silver_key="s", rows=3, rejected_rows=0, unknown_fields=drift, fields_examined=3)
    item = ledger.get(**K)
    assert item["unknown_fields"] == '{"größe": 1, "zeta": 2}' and item["fields_examined"] == 3
    ledger.mark_done(**K, silver_key="s", rows=0, rejected_rows=0, outcome="source-deleted")
    assert ledger.get(**K)["unknown_fields"] == '{"größe": 1, "zeta": 2}'  # not a written version: kept
    ledger.mark_done(**K, silver_key="s", rows=3, rejected_rows=0)
    item = ledger.get(**K)
    assert "unknown_fields" not in item and "fields_examined" not in item


def test_a_long_drift_record_is_cut_at_the_error_limit(ddb):
    ledger = Ledger(ddb, "ledger", clock=Clock())
    ledger.claim(**OBJ, lease_seconds=60)
    drift = {f"field_{i:04d}": i for i in range(500)}
    ledger.mark_done(**K, silver_key="s", rows=1, rejected_rows=0, unknown_fields=drift)
    item = ledger.get(**K)
    assert len(item["unknown_fields"]) == MAX_ERROR_CHARS and item["fields_examined"] == 0
