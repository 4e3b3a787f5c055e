"""ops.ledger on moto (one mock per module, a table per test): status, purge filters, scans, batches."""

from __future__ import annotations

import collections
import datetime as dt
import json
import uuid

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto import mock_aws

from lambdas.shared.keys import batch_replay_key, replay_key
from lambdas.shared.ledger import _av
from ops import ledger as ops_ledger
from ops.errors import AccessDenied, OpsError, UsageError
from ops.ledger import (
    PurgeFilter,
    batch_get,
    delete_items,
    list_items,
    object_status,
    parse_s3_url,
    purge,
    scan_items,
    scan_matching,
)
from ops.timewindow import Window
from tests.conftest import most_in_flight

SESSION = boto3.session.Session()
BRONZE, SILVER = "brz", "slv"
KEY = "bronze/orders/dt=2025-01-01/a.jsonl"
SILVER_KEY = "silver/orders/dt=2025-01-01/a.parquet"
NOW = 1_750_000_000.0
LATER = 4_102_444_800  # 2100: not expired by any clock
EARLIER = int(NOW) - 60


@pytest.fixture(scope="module")
def aws():
    with mock_aws():
        yield


@pytest.fixture
def s3(aws):
    client = SESSION.client("s3", region_name="us-east-1")
    for bucket in (BRONZE, SILVER):
        try:
            client.create_bucket(Bucket=bucket)
        except ClientError:
            pass
    return client


@pytest.fixture
def ddb(aws):
    return SESSION.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def table(ddb):
    name = f"ledger-{uuid.uuid4().hex[:8]}"
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "etag", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "etag", "AttributeType": "S"}])
    yield name
    ddb.delete_table(TableName=name)


def put(ddb, table: str, *, bucket: str = BRONZE, key: str = KEY, etag: str = "e1", status: str = "DONE",
        expiration: int = LATER, **fields) -> dict:
    item = {"pk": f"s3://{bucket}/{key}", "etag": etag, "bucket": bucket, "key": key, "status": status,
            "expiration": expiration, **fields}
    ddb.put_item(TableName=table, Item={k: _av(v) for k, v in item.items()})
    return item


def fail(client, operation: str, code: str, status: int = 400, times: int = 1, after: int = 0) -> list:
    """After `after` calls of `operation`, the next `times` fail with `code` (nothing reaches moto)."""
    seen = []

    def hook(**kwargs):
        seen.append(operation)
        if after < len(seen) <= after + times:
            return AWSResponse("https://aws.example/", status, {}, None), {
                "Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return None

    client.meta.events.register(f"before-call.*.{operation}", hook)
    return seen


def counts(client) -> collections.Counter:
    seen = collections.Counter()
    client.meta.events.register("before-call.*.*", lambda model, **kw: seen.update([model.name]))
    return seen


def scan_segments(ddb) -> list[tuple[int, int]]:
    """(Segment, TotalSegments) of every Scan request."""
    seen = []
    ddb.meta.events.register("before-parameter-build.dynamodb.Scan",
                             lambda params, **kw: seen.append((params["Segment"], params["TotalSegments"])))
    return seen


def small_scans(ddb, limit: int = 1) -> None:
    def shrink(params, **kwargs):
        params["Limit"] = limit
    ddb.meta.events.register("before-parameter-build.dynamodb.Scan", shrink)


# --- parse_s3_url --------------------------------------------------------------------------------
def test_an_s3_url_is_split_into_bucket_and_key():
    assert parse_s3_url("s3://b/k/x.jsonl") == ("b", "k/x.jsonl")


@pytest.mark.parametrize("url, fix", [("b/k", "is not an s3:// URL"), ("s3://b", "has no key"), ("s3://b/", "has no key")])
def test_a_bad_url_is_a_usage_error_naming_it_and_the_form(url, fix):
    with pytest.raises(UsageError, match=f"{url!r} {fix}; use s3://bucket/key"):
        parse_s3_url(url)


# --- object_status -------------------------------------------------------------------------------
def test_an_objects_status_lists_its_versions_newest_first_and_marks_the_current(s3, ddb, table):
    current = s3.put_object(Bucket=BRONZE, Key=KEY, Body=b"{}\n")["ETag"].strip('"')
    put(ddb, table, etag="old", claimed_at="2025-01-01T00:00:00Z", finished_at="2025-01-05T00:00:00Z")
    put(ddb, table, etag=current, claimed_at="2025-01-02T00:00:00Z")
    put(ddb, table, etag="replayed", finished_at="2025-01-03T00:00:00Z")  # an SQS replay: no claimed_at
    put(ddb, table, etag="bare")  # neither: sorts last
    status = object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{BRONZE}/{KEY}", silver_bucket=None)
    assert (status.bucket, status.key, status.object, status.current_etag) == (BRONZE, KEY, f"s3://{BRONZE}/{KEY}",
                                                                               current)
    assert [v["etag"] for v in status.versions] == ["replayed", current, "old", "bare"]
    assert [v["current"] for v in status.versions] == [False, True, False, False]
    assert status.silver_key == SILVER_KEY and status.silver_exists is None and status.note == ""


def test_a_deleted_bronze_object_has_no_current_version(s3, ddb, table):
    key = "bronze/orders/dt=2025-01-01/gone.jsonl"
    put(ddb, table, key=key, etag="e1")
    status = object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{BRONZE}/{key}", silver_bucket=None)
    assert status.current_etag is None and status.versions[0]["current"] is False


def test_a_bronze_object_that_cannot_be_read_is_an_error_naming_the_permission(s3, ddb, table):
    fail(s3, "HeadObject", "403", status=403)
    with pytest.raises(OpsError, match=f"cannot read s3://{BRONZE}/{KEY}: .*s3:ListBucket") as raised:
        object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{BRONZE}/{KEY}", silver_bucket=None)
    assert str(raised.value).endswith(" means this role lacks s3:ListBucket on the bucket; "
                                      "runbooks/oncall-permissions.md)")


@pytest.mark.parametrize("code", ["NoSuchKey", "NotFound"])
def test_every_not_found_answer_means_no_object(s3, ddb, table, code):
    key = "bronze/orders/dt=2025-01-01/notfound.jsonl"
    put(ddb, table, key=key)
    fail(s3, "HeadObject", code, status=404, times=2)  # the bronze object, then its silver object
    status = object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{BRONZE}/{key}", silver_bucket=SILVER)
    assert status.current_etag is None and status.silver_exists is False


def test_the_silver_time_is_utc_whatever_the_local_zone(s3, ddb, table, monkeypatch):
    import time

    s3.put_object(Bucket=SILVER, Key=SILVER_KEY, Body=b"p")
    put(ddb, table)
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        status = object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{BRONZE}/{KEY}", silver_bucket=SILVER)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert status.silver_last_modified.endswith("+00:00")


def test_the_silver_object_says_which_bronze_version_it_holds(s3, ddb, table):
    current = s3.put_object(Bucket=BRONZE, Key=KEY, Body=b"{}\n")["ETag"].strip('"')
    s3.put_object(Bucket=SILVER, Key=SILVER_KEY, Body=b"p", Metadata={"source-etag": current, "source-sequencer": "0A"})
    put(ddb, table, etag=current, claimed_at="2025-01-02T00:00:00Z")
    status = object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{BRONZE}/{KEY}", silver_bucket=SILVER)
    head = s3.head_object(Bucket=SILVER, Key=SILVER_KEY)
    assert status.silver_exists is True and status.silver_source_etag == current and status.silver_sequencer == "0A"
    assert status.silver_last_modified == head["LastModified"].astimezone(dt.UTC).isoformat()
    assert status.silver_last_modified.endswith("+00:00") and status.note == ""


def test_silver_holding_an_older_version_is_pointed_out(s3, ddb, table):
    current = s3.put_object(Bucket=BRONZE, Key=KEY, Body=b"{}\n")["ETag"].strip('"')
    s3.put_object(Bucket=SILVER, Key=SILVER_KEY, Body=b"p", Metadata={"source-etag": "older"})
    put(ddb, table, etag=current)
    status = object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{BRONZE}/{KEY}", silver_bucket=SILVER)
    assert "silver holds version older, not the current" in status.note and status.silver_sequencer is None
    assert status.note.endswith(": if no work unit for it is in flight, replay it (runbooks/reprocess-one-object.md)")


def test_silver_without_source_metadata_is_not_called_older(s3, ddb, table):
    s3.put_object(Bucket=BRONZE, Key=KEY, Body=b"{}\n")
    s3.put_object(Bucket=SILVER, Key=SILVER_KEY, Body=b"p")
    put(ddb, table)
    status = object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{BRONZE}/{KEY}", silver_bucket=SILVER)
    assert status.silver_source_etag is None and status.note == ""


def test_a_missing_silver_object_is_reported_missing_and_another_error_raised(s3, ddb, table):
    key = "bronze/orders/dt=2025-01-01/unsilvered.jsonl"
    put(ddb, table, key=key)
    status = object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{BRONZE}/{key}", silver_bucket=SILVER)
    assert status.silver_exists is False
    fail(s3, "HeadObject", "403", status=403, after=1)  # the bronze object is read; its silver object is not
    with pytest.raises(OpsError, match=f"cannot read s3://{SILVER}/silver/orders/dt=2025-01-01/unsilvered.parquet"):
        object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{BRONZE}/{key}", silver_bucket=SILVER)


def test_a_key_that_is_not_a_bronze_key_says_ingest_skips_it(s3, ddb, table):
    calls = counts(s3)
    status = object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{BRONZE}/bronze/notes.txt", silver_bucket=SILVER)
    assert status.silver_key is None and status.note.startswith("not a bronze key (") and "ingest skips it" in status.note
    assert calls["HeadObject"] == 1 and calls["ListObjectsV2"] == 0  # bronze only: no silver, no replay copies


def test_an_object_never_ingested_says_so(s3, ddb, table):
    status = object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{BRONZE}/{KEY}", silver_bucket=None)
    assert status.versions == [] and status.note.startswith("no ledger item")


def test_a_denied_ledger_query_names_the_permission_and_table(s3, ddb, table):
    fail(ddb, "Query", "AccessDeniedException")
    with pytest.raises(AccessDenied, match=f"dynamodb:Query on {table}"):
        object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{BRONZE}/{KEY}", silver_bucket=None)


def test_replay_copies_of_both_layouts_are_listed_newest_stamp_first(s3, ddb, table):
    bucket = f"rc-{uuid.uuid4().hex[:6]}"
    s3.create_bucket(Bucket=bucket)
    for stamp in ("s1", "s2", "s3"):
        s3.put_object(Bucket=bucket, Key=f"bronze/replay/{stamp}/x", Body=b"")
    put(ddb, table, bucket=bucket, key=replay_key(KEY, "bronze/replay/s1"), etag="c1", status="DONE", outcome="written",
        finished_at="2025-01-01T00:00:00Z", rows=3)
    put(ddb, table, bucket=bucket, key=batch_replay_key(KEY, "bronze/replay/s3"), etag="c3", status="QUEUED")
    s3_pages = counts(s3)

    def one_prefix_a_page(params, **kwargs):
        params["MaxKeys"] = 1
    s3.meta.events.register("before-parameter-build.s3.ListObjectsV2", one_prefix_a_page)
    status = object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{bucket}/{KEY}", silver_bucket=None)
    assert status.replay_copies == [
        {"key": batch_replay_key(KEY, "bronze/replay/s3"), "versions": [{"etag": "c3", "status": "QUEUED"}]},
        {"key": replay_key(KEY, "bronze/replay/s1"), "versions": [
            {"etag": "c1", "status": "DONE", "outcome": "written", "finished_at": "2025-01-01T00:00:00Z", "rows": 3}]}]
    assert s3_pages["ListObjectsV2"] == 3


def test_only_the_newest_stamps_are_read_for_replay_copies(s3, ddb, table, monkeypatch):
    bucket = f"rc-{uuid.uuid4().hex[:6]}"
    s3.create_bucket(Bucket=bucket)
    for stamp in ("s1", "s2", "s3"):
        s3.put_object(Bucket=bucket, Key=f"bronze/replay/{stamp}/x", Body=b"")
        put(ddb, table, bucket=bucket, key=replay_key(KEY, f"bronze/replay/{stamp}"), etag=stamp)
    monkeypatch.setattr(ops_ledger, "MAX_REPLAY_STAMPS", 2)
    status = object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{bucket}/{KEY}", silver_bucket=None)
    assert [c["versions"][0]["etag"] for c in status.replay_copies] == ["s3", "s2"]


def test_a_replay_copy_has_no_replay_copies_of_its_own(s3, ddb, table):
    s3.put_object(Bucket=BRONZE, Key="bronze/replay/s9/x", Body=b"")
    copy = replay_key(KEY, "bronze/replay/s9")
    put(ddb, table, key=copy)
    calls = counts(s3)
    status = object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{BRONZE}/{copy}", silver_bucket=None)
    assert status.replay_copies == [] and calls["ListObjectsV2"] == 0 and status.silver_key == SILVER_KEY


def test_a_denied_replay_copy_listing_names_the_permissions(s3, ddb, table):
    put(ddb, table)
    fail(s3, "ListObjectsV2", "AccessDenied", status=403)
    with pytest.raises(AccessDenied, match="s3:ListBucket on bronze/replay/ and dynamodb:Query on s3://brz/bronze/replay/"):
        object_status(s3=s3, ddb=ddb, table=table, url=f"s3://{BRONZE}/{KEY}", silver_bucket=None)


# --- purge filters and scans ---------------------------------------------------------------------
def keys(items) -> set[tuple[str, str]]:
    return {(i["pk"], i["etag"]) for i in items}


@pytest.fixture
def varied(ddb, table):
    """Items across two buckets, prefixes, times, statuses and expirations."""
    made = [
        put(ddb, table, bucket="b1", key="bronze/orders/1", etag="a", status="DONE", claimed_at="2025-01-01T00:00:00Z"),
        put(ddb, table, bucket="b1", key="bronze/orders/2", etag="b", status="FAILED", claimed_at="2025-01-01T23:59:59Z"),
        put(ddb, table, bucket="b1", key="bronze/shipments/1", etag="c", status="CLAIMED",
            claimed_at="2025-01-02T00:00:00Z"),
        put(ddb, table, bucket="b2", key="bronze/orders/1", etag="d", status="QUEUED", claimed_at="2024-12-31T23:59:59Z",
            finished_at="2025-01-01T05:00:00Z"),
        put(ddb, table, bucket="b2", key="bronze/orders/3", etag="e", status="DONE", finished_at="2025-01-01T00:00:00Z"),
        put(ddb, table, bucket="b2", key="bronze/orders/4", etag="f", status="DONE", finished_at="2025-01-02T00:00:00Z"),
        put(ddb, table, bucket="b2", key="xbronze/orders/5", etag="g", status="DONE", expiration=EARLIER),
        put(ddb, table, bucket="b2", key="bronze/orders/6", etag="h", status="DONE", expiration=int(NOW)),
    ]
    return {i["etag"]: (i["pk"], i["etag"]) for i in made}


DAY = Window(dt.datetime(2025, 1, 1, tzinfo=dt.UTC), dt.datetime(2025, 1, 2, tzinfo=dt.UTC))


@pytest.mark.parametrize("filters, expected", [
    (PurgeFilter(bucket="b1"), "abc"),
    (PurgeFilter(prefix="bronze/orders/"), "abdefh"),
    (PurgeFilter(window=DAY), "abe"),  # claimed in the window, or (no claim) finished in it; end excluded
    (PurgeFilter(statuses=("FAILED", "QUEUED")), "bd"),
    (PurgeFilter(statuses=("CLAIMED",)), "c"),
    (PurgeFilter(expired=True), "g"),  # expiration before now; "h" expires at now exactly
    (PurgeFilter(bucket="b2", statuses=("DONE",), expired=True), "g"),
    (PurgeFilter(bucket="b2", window=DAY), "e"),
    (PurgeFilter(), "abcdefgh"),
])
def test_purge_filters_select_the_items_they_describe(ddb, table, varied, filters, expected):
    items, scanned = scan_matching(ddb, table=table, filters=filters, segments=2, now=NOW)
    assert keys(items) == {varied[e] for e in expected} and scanned == 8


def test_a_filter_is_empty_only_without_any_condition():
    assert PurgeFilter().is_empty()
    for one in (PurgeFilter(bucket="b"), PurgeFilter(prefix="p"), PurgeFilter(window=DAY),
                PurgeFilter(statuses=("DONE",)), PurgeFilter(expired=True)):
        assert not one.is_empty()


def test_the_window_is_compared_to_the_second_in_the_ledgers_format():
    _, _, values = PurgeFilter(window=Window(dt.datetime(2025, 1, 1, 1, 2, 3, 456, tzinfo=dt.UTC),
                                             dt.datetime(2025, 1, 2, tzinfo=dt.UTC))).expression(NOW)
    assert values[":start"] == {"S": "2025-01-01T01:02:03Z"} and values[":end"] == {"S": "2025-01-02T00:00:00Z"}


def test_an_unknown_status_is_a_usage_error_naming_it_and_the_choices(ddb, table):
    with pytest.raises(UsageError, match="--status 'done' is not one of CLAIMED, QUEUED, DONE, FAILED"):
        scan_matching(ddb, table=table, filters=PurgeFilter(statuses=("DONE", "done")), now=NOW)


def test_scans_follow_every_page_of_every_segment(ddb, table, varied):
    small_scans(ddb, limit=1)
    calls = counts(ddb)
    items, scanned = scan_matching(ddb, table=table, filters=PurgeFilter(bucket="b2"), segments=3, now=NOW)
    assert keys(items) == {varied[e] for e in "defgh"} and scanned == 8
    assert calls["Scan"] >= 8
    assert all(set(i) == {"pk", "etag", "status"} for i in items)  # only what a purge needs is read


def test_every_scan_runs_its_segments_four_by_default(ddb, table, varied):
    segments = scan_segments(ddb)
    scan_matching(ddb, table=table, filters=PurgeFilter(), now=NOW)
    scan_items(ddb, table=table, fields=("pk", "status"), condition="#1 <> :x", values={":x": {"S": "x"}})
    list_items(ddb, table=table, filters=PurgeFilter(), now=NOW, on_item=lambda item: None)
    purge(ddb, table=table, filters=PurgeFilter(), dry_run=True, confirm=lambda r: False)
    assert sorted(segments) == sorted([(n, 4) for n in range(4)] * 4)
    segments.clear()
    purge(ddb, table=table, filters=PurgeFilter(), dry_run=True, confirm=lambda r: False, segments=2)
    assert sorted(segments) == [(0, 2), (1, 2)]


def test_scan_matching_uses_the_clock_when_no_time_is_given(ddb, table, varied):
    items, _ = scan_matching(ddb, table=table, filters=PurgeFilter(expired=True))
    assert keys(items) == {varied["g"], varied["h"]}  # both expirations are in the past now


def test_a_throttled_scan_is_retried_and_a_denied_one_names_the_permission(ddb, table, varied):
    fail(ddb, "Scan", "ProvisionedThroughputExceededException")
    items, _ = scan_matching(ddb, table=table, filters=PurgeFilter(), segments=1, now=NOW)
    assert len(items) == 8
    fail(ddb, "Scan", "AccessDeniedException", times=10)
    with pytest.raises(AccessDenied, match=f"dynamodb:Scan on {table}"):
        scan_matching(ddb, table=table, filters=PurgeFilter(), segments=1, now=NOW)


def test_scan_items_reads_only_the_named_fields_of_matching_items(ddb, table, varied):
    small_scans(ddb, limit=1)
    got = scan_items(ddb, table=table, fields=("pk", "etag", "status"), condition="#2 = :s",
                     values={":s": {"S": "DONE"}}, segments=2)
    assert keys(got) == {varied[e] for e in "aefgh"} and all(set(i) == {"pk", "etag", "status"} for i in got)
    with pytest.raises(AccessDenied, match=f"AWS denied dynamodb:Scan on {table} "):
        fail(ddb, "Scan", "AccessDeniedException", times=10)
        scan_items(ddb, table=table, fields=("pk",), condition="attribute_exists(#0)", values={}, segments=1)


# --- ls ------------------------------------------------------------------------------------------
def test_ls_hands_over_whole_items_with_expired_computed_and_counts_them(ddb, table, varied):
    small_scans(ddb, limit=2)
    seen = []
    listing = list_items(ddb, table=table, filters=PurgeFilter(bucket="b2"), segments=2, now=NOW, on_item=seen.append)
    assert keys(seen) == {varied[e] for e in "defgh"} and listing.table == table
    assert (listing.scanned, listing.matched, listing.by_status) == (8, 5, {"QUEUED": 1, "DONE": 4})
    by_etag = {i["etag"]: i for i in seen}
    assert by_etag["g"]["expired"] is True and by_etag["h"]["expired"] is False and by_etag["d"]["expired"] is False
    assert by_etag["d"]["finished_at"] == "2025-01-01T05:00:00Z" and by_etag["d"]["expiration"] == LATER


def test_an_item_without_expiration_counts_as_expired_and_without_status_as_unknown(ddb, table):
    for etag in ("x", "y"):
        ddb.put_item(TableName=table, Item={"pk": {"S": "s3://b/k"}, "etag": {"S": etag}})
    seen = []
    listing = list_items(ddb, table=table, filters=PurgeFilter(), segments=1, now=NOW, on_item=seen.append)
    assert [i["expired"] for i in seen] == [True, True] and listing.by_status == {"?": 2}
    report = purge(ddb, table=table, filters=PurgeFilter(), dry_run=True, confirm=lambda r: False)
    assert report.by_status == {"?": 2}


def test_ls_filters_expired_items_by_the_given_time(ddb, table, varied):
    seen = []
    list_items(ddb, table=table, filters=PurgeFilter(expired=True), segments=1, now=NOW, on_item=seen.append)
    assert [i["etag"] for i in seen] == ["g"]


def test_ls_stops_after_the_limit(ddb, table, varied):
    small_scans(ddb, limit=1)
    seen = []
    listing = list_items(ddb, table=table, filters=PurgeFilter(), segments=2, now=NOW, on_item=seen.append, limit=3)
    assert len(seen) == 3 and listing.matched == 3
    one = []
    list_items(ddb, table=table, filters=PurgeFilter(), segments=1, now=NOW, on_item=one.append, limit=1)
    assert len(one) == 1


def test_ls_uses_the_clock_when_no_time_is_given(ddb, table, varied):
    seen = []
    list_items(ddb, table=table, filters=PurgeFilter(), segments=1, on_item=seen.append)
    assert {i["etag"] for i in seen if i["expired"]} == {"g", "h"}


# --- batch_get -----------------------------------------------------------------------------------
def test_batch_get_reads_many_versions_in_calls_of_a_hundred(ddb, table):
    for n in range(150):
        put(ddb, table, key=f"k{n}", etag="e", status="DONE", rows=n)
    wanted = [(f"s3://{BRONZE}/k{n}", "e") for n in range(150)] + [(f"s3://{BRONZE}/k0", "e"), ("s3://none/x", "e")]
    wanted.insert(50, (f"s3://{BRONZE}/k1", "e"))  # a repeat inside one chunk
    calls = []
    got = batch_get(ddb, table=table, keys=wanted, on_call=lambda: calls.append(1))
    assert set(got) == set(wanted) - {("s3://none/x", "e")} and len(calls) == 2
    assert got[(f"s3://{BRONZE}/k7", "e")]["rows"] == 7 and got[(f"s3://{BRONZE}/k7", "e")]["status"] == "DONE"


def unprocessed_first(ddb, times: int) -> list:
    """The first `times` BatchGetItem calls process nothing: every key comes back unprocessed."""
    seen = []

    def hook(params, **kwargs):
        params = json.loads(params["body"])
        seen.append(params)
        if len(seen) <= times:
            return AWSResponse("https://aws.example/", 200, {}, None), {
                "Responses": {}, "UnprocessedKeys": params["RequestItems"], "ResponseMetadata": {"HTTPStatusCode": 200}}
        return None

    ddb.meta.events.register("before-call.dynamodb.BatchGetItem", hook)
    return seen


def test_unprocessed_keys_are_asked_again_after_a_growing_pause(ddb, table):
    put(ddb, table, key="k", etag="e")
    seen = unprocessed_first(ddb, times=3)
    sleeps = []
    got = batch_get(ddb, table=table, keys=[(f"s3://{BRONZE}/k", "e")], sleep=sleeps.append)
    assert list(got) == [(f"s3://{BRONZE}/k", "e")] and len(seen) == 4 and len(sleeps) == 3
    assert all(0 <= s <= 0.05 * 2 ** (n + 1) for n, s in enumerate(sleeps))
    assert all(p["RequestItems"][table]["ConsistentRead"] for p in seen)


def test_keys_still_unprocessed_after_every_attempt_are_an_error_saying_what_to_do(ddb, table):
    unprocessed_first(ddb, times=3)
    with pytest.raises(OpsError, match=f"BatchGetItem on {table}: 1 key.* after 3 attempts .*read capacity"):
        batch_get(ddb, table=table, keys=[(f"s3://{BRONZE}/k", "e")], attempts=3, sleep=lambda s: None)


def test_a_denied_batch_get_names_the_permission_and_table(ddb, table):
    fail(ddb, "BatchGetItem", "AccessDeniedException")
    with pytest.raises(AccessDenied, match=f"AWS denied dynamodb:BatchGetItem on {table} "):
        batch_get(ddb, table=table, keys=[(f"s3://{BRONZE}/k", "e")])


def test_batch_get_tries_eight_times_backing_off_up_to_five_seconds(ddb, table, monkeypatch):
    monkeypatch.setattr(ops_ledger.random, "uniform", lambda low, high: high)  # the longest pause each time
    seen = unprocessed_first(ddb, times=100)
    sleeps = []
    with pytest.raises(OpsError, match="after 8 attempts"):
        batch_get(ddb, table=table, keys=[(f"s3://{BRONZE}/k", "e")], sleep=sleeps.append)
    assert len(seen) == 8 and sleeps == [min(5.0, 0.05 * 2**n) for n in range(1, 8)]


def test_deletes_try_eight_times_backing_off_up_to_five_seconds_on_the_pool(ddb, table, monkeypatch):
    monkeypatch.setattr(ops_ledger.random, "uniform", lambda low, high: high)
    pauses = []
    monkeypatch.setattr(ops_ledger, "pause", lambda stop, seconds: pauses.append((stop, seconds)))
    items = [put(ddb, table, key="k", etag="e")]
    seen = unprocessed_writes(ddb, times=100)
    deleted, failed = delete_items(ddb, table=table, items=items)
    assert (deleted, len(failed), len(seen)) == (0, 1, 8)
    assert [s for _, s in pauses] == [min(5.0, 0.05 * 2**n) for n in range(1, 8)]
    assert all(stop is not None and not stop.is_set() for stop, _ in pauses)  # the pool's stop ends a pause


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_purge_reports_its_duration_in_milliseconds(ddb, table, varied, monkeypatch, dry_run):
    ticks = iter([100.0])
    monkeypatch.setattr(ops_ledger.time, "monotonic", lambda: next(ticks, 101.23456))
    report = purge(ddb, table=table, filters=PurgeFilter(bucket="b1"), dry_run=dry_run, confirm=lambda r: True)
    assert report.seconds == 1.235 and report.deleted == (0 if dry_run else 3)


def test_batch_get_of_nothing_asks_nothing(ddb, table):
    calls = counts(ddb)
    assert batch_get(ddb, table=table, keys=[]) == {} and calls["BatchGetItem"] == 0


# --- delete_items and purge ----------------------------------------------------------------------
def remaining(ddb, table) -> int:
    return ddb.scan(TableName=table, Select="COUNT")["Count"]


def test_deletes_go_in_batches_of_25_and_report_progress(ddb, table):
    items = [put(ddb, table, key=f"k{n}", etag="e") for n in range(60)]
    calls = counts(ddb)
    progress = []
    deleted, failed = delete_items(ddb, table=table, items=items, concurrency=1, on_progress=progress.append)
    assert (deleted, failed, remaining(ddb, table)) == (60, [], 0)
    # the running total after each batch (batches finish in any order)
    steps = [b - a for a, b in zip([0, *progress], progress, strict=False)]
    assert calls["BatchWriteItem"] == 3 and progress[-1] == 60 and sorted(steps) == [10, 25, 25]


def unprocessed_writes(ddb, times: int, keep: int | None = None) -> list:
    """The first `times` BatchWriteItem calls write nothing (or all but `keep` requests come back)."""
    seen = []

    def hook(params, **kwargs):
        params = json.loads(params["body"])
        seen.append(params)
        if len(seen) <= times:
            (table, requests), = params["RequestItems"].items()
            back = requests if keep is None else requests[:keep]
            return AWSResponse("https://aws.example/", 200, {}, None), {
                "UnprocessedItems": {table: back}, "ResponseMetadata": {"HTTPStatusCode": 200}}
        return None

    ddb.meta.events.register("before-call.dynamodb.BatchWriteItem", hook)
    return seen


def test_unprocessed_deletes_are_sent_again(ddb, table):
    items = [put(ddb, table, key=f"k{n}", etag="e") for n in range(3)]
    seen = unprocessed_writes(ddb, times=2)
    sleeps = []
    deleted, failed = delete_items(ddb, table=table, items=items, sleep=sleeps.append)
    assert (deleted, failed, remaining(ddb, table), len(seen), len(sleeps)) == (3, [], 0, 3, 2)
    assert all(0 <= s <= 0.05 * 2 ** (n + 1) for n, s in enumerate(sleeps))


def test_deletes_still_unprocessed_after_every_attempt_are_reported(ddb, table):
    items = [put(ddb, table, key=f"k{n}", etag="e") for n in range(3)]
    unprocessed_writes(ddb, times=10, keep=1)
    deleted, failed = delete_items(ddb, table=table, items=items, attempts=2, sleep=lambda s: None)
    assert deleted == 2 and failed == [{"pk": f"s3://{BRONZE}/k0", "etag": "e", "error": "still unprocessed after retries"}]


def test_a_delete_without_a_sleep_backs_off_on_the_pool(ddb, table):
    items = [put(ddb, table, key="k", etag="e")]
    unprocessed_writes(ddb, times=1)
    assert delete_items(ddb, table=table, items=items) == (1, [])


def test_a_denied_delete_names_the_permission(ddb, table):
    items = [put(ddb, table, key="k", etag="e")]
    fail(ddb, "BatchWriteItem", "AccessDeniedException")
    with pytest.raises(AccessDenied, match=f"dynamodb:BatchWriteItem on {table}"):
        delete_items(ddb, table=table, items=items)


def test_purge_asks_before_deleting_and_reports_what_matched(ddb, table, varied):
    asked = []
    progress = []
    report = purge(ddb, table=table, filters=PurgeFilter(bucket="b2"), segments=2,
                   confirm=lambda r: asked.append((r.matched, r.deleted)) or True, on_progress=progress.append)
    assert asked == [(5, 0)] and (report.scanned, report.matched, report.deleted, report.failed) == (8, 5, 5, [])
    assert report.by_status == {"QUEUED": 1, "DONE": 4} and report.table == table and not report.dry_run
    assert report.sample == sorted(f"{pk}#{etag}" for pk, etag in (varied[e] for e in "defgh"))
    assert progress == [5] and remaining(ddb, table) == 3 and report.seconds >= 0


def test_purge_keeps_everything_when_refused_or_dry_run(ddb, table, varied):
    refused = purge(ddb, table=table, filters=PurgeFilter(), confirm=lambda r: False)
    assert refused.matched == 8 and refused.deleted == 0 and remaining(ddb, table) == 8
    asked = []
    dry = purge(ddb, table=table, filters=PurgeFilter(), dry_run=True, confirm=asked.append)
    assert dry.dry_run and dry.matched == 8 and asked == [] and remaining(ddb, table) == 8
    assert len(dry.sample) == 5 and dry.sample == sorted(dry.sample)
    nothing = purge(ddb, table=table, filters=PurgeFilter(bucket="none"), confirm=asked.append)
    assert nothing.matched == 0 and asked == []


def test_a_prefix_that_cannot_match_a_key_gets_the_key_prefix_to_use():
    from ops.ledger import prefix_hint

    assert prefix_hint(None) is None and prefix_hint("") is None and prefix_hint("bronze/orders/") is None
    assert prefix_hint("s3://brz/bronze/orders/") == (
        "--prefix is a key prefix, not an s3:// URL: try --prefix bronze/orders/ (and --bucket)")
    assert prefix_hint("s3://brz") == "--prefix is a key prefix, not an s3:// URL: try --prefix bronze/ (and --bucket)"
    assert prefix_hint("s3://brz/") == "--prefix is a key prefix, not an s3:// URL: try --prefix bronze/ (and --bucket)"
    assert prefix_hint("orders/") == "--prefix matches object keys, which start with bronze/: try --prefix bronze/orders/"
    assert prefix_hint("/orders/") == "--prefix matches object keys, which start with bronze/: try --prefix bronze/orders/"
    assert prefix_hint("Xorders/") == "--prefix matches object keys, which start with bronze/: try --prefix bronze/Xorders/"
    # an s3:// URL without a bucket: what follows its only "/" is the key
    assert prefix_hint("s3:///orders/x") == "--prefix is a key prefix, not an s3:// URL: try --prefix orders/x (and --bucket)"
    assert prefix_hint("s3:///orders") == "--prefix is a key prefix, not an s3:// URL: try --prefix orders (and --bucket)"


def test_ctrl_c_during_a_delete_back_off_ends_it_without_another_try(ddb, table, monkeypatch):
    pools = []

    class Recorded(ops_ledger.BoundedExecutor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pools.append(self)

    monkeypatch.setattr(ops_ledger, "BoundedExecutor", Recorded)
    items = [put(ddb, table, key="k", etag="e")]
    seen = []

    def throttled_while_stopping(**kwargs):
        seen.append(1)
        pools[0].stop.set()  # what Ctrl-C does to the pool
        return AWSResponse("https://aws.example/", 400, {}, None), {
            "Error": {"Code": "ThrottlingException", "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    ddb.meta.events.register("before-call.dynamodb.BatchWriteItem", throttled_while_stopping)
    assert delete_items(ddb, table=table, items=items) == (0, []) and len(seen) == 1


def test_a_purge_deletes_no_more_batches_at_once_than_asked(ddb, table):
    items = [put(ddb, table, key=f"k{n}", etag="e") for n in range(100)]
    most = most_in_flight(ddb, "dynamodb.BatchWriteItem")
    report = purge(ddb, table=table, filters=PurgeFilter(), confirm=lambda r: True, concurrency=1)
    assert report.deleted == len(items) and most == [1]
