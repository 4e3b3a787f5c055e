"""ops.listing on one moto bucket filled once per module: windows, pages, partitions, manifests."""

from __future__ import annotations

import collections
import datetime as dt
import re

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from ops.errors import AccessDenied, OpsError, UsageError
from ops.listing import (
    Listing,
    ObjectInfo,
    find_partitions,
    list_objects,
    list_window,
    partition_hint,
    stream_objects,
    write_manifest,
)
from ops.local.inventory import Entry, write_report
from ops.timewindow import Window, make_window
from tests.conftest import most_in_flight

SESSION = boto3.session.Session()
BUCKET = "lst"
DAYS = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(6)]  # 2025-01-01 .. 2025-01-06
KEYS = (
    [f"bronze/orders/dt={d}/part-{i}.jsonl" for d in DAYS for i in range(2)]
    + [f"bronze/shipments/dt={d}/part-0.jsonl" for d in DAYS[2:4]]
    + ["bronze/replay/s1/orders/dt=2025-01-03/part-0.jsonl", "bronze/replay/s2/orders/dt=2025-01-04/part-0.jsonl",
       "bronze/orders/notes.txt"]
    # one folder level per name: a partition 6 folders under the root, and one 7 under it
    + ["deep/a/b/c/d/e/dt=2025-01-03/x.jsonl", "deeper/a/b/c/d/e/f/dt=2025-01-03/x.jsonl"]
    # not dates: "2025-01-02x" sorts between two days of the range listing, "2025-01-04X" is one stripped of X
    + ["odd/dt=2025-01-03/x.jsonl", "odd/dt=junk/x.jsonl", "odd/dtx/x.jsonl", "odd/dt=2025-01-02x/x.jsonl",
       "odd/dt=2025-01-04X/x.jsonl"]
)


REPORTS = "lst-inventory"
INVENTORIED = 10_000  # list_from_inventory reports progress every 10,000 objects
REPORT: dict[str, str] = {}  # the manifest URL, once the module fixture wrote it


@pytest.fixture(scope="module")
def bucket():
    with mock_aws():
        s3 = SESSION.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        for n, key in enumerate(KEYS):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"x" * (n + 1))
        s3.create_bucket(Bucket=REPORTS)
        entries = [Entry(key=f"bronze/orders/dt=2025-01-02/inv-{i:05d}.jsonl", size=3, etag=f"e{i}",
                         last_modified=dt.datetime(2025, 1, 2, 1, tzinfo=dt.UTC)) for i in range(INVENTORIED)]
        entries.append(Entry(key="bronze/orders/dt=2025-01-03/inv.jsonl", size=3, etag="e",
                             last_modified=dt.datetime(2025, 1, 3, 1, tzinfo=dt.UTC)))
        entries.append(Entry(key="bronze/orders/dt=2025-01-03/late.jsonl", size=3, etag="e",  # uploaded days late
                             last_modified=dt.datetime(2025, 1, 5, 1, tzinfo=dt.UTC)))
        REPORT["manifest"] = write_report(s3, source_bucket=BUCKET, entries=entries, report_bucket=REPORTS,
                                       taken=dt.datetime(2025, 1, 10, tzinfo=dt.UTC))
        REPORT["early"] = write_report(s3, source_bucket=BUCKET, entries=[], report_bucket=REPORTS, config_id="early",
                                       taken=dt.datetime(2025, 1, 2, tzinfo=dt.UTC))
        yield s3


@pytest.fixture
def s3(bucket):
    """A client of its own (its event hooks die with it) over the module's bucket."""
    return SESSION.client("s3", region_name="us-east-1")


def count_calls(client) -> collections.Counter:
    counts = collections.Counter()
    client.meta.events.register("before-call.s3.*", lambda model, **kw: counts.update([model.name]))
    return counts


def small_pages(client, size: int = 1) -> None:
    """Every ListObjectsV2 page holds at most `size` entries: pagination on every listing."""
    def limit(params, **kwargs):
        params["MaxKeys"] = size
    client.meta.events.register("before-parameter-build.s3.ListObjectsV2", limit)


def fail(client, operation: str, code: str, status: int) -> None:
    def hook(**kwargs):
        raise ClientError({"Error": {"Code": code, "Message": "injected"},
                           "ResponseMetadata": {"HTTPStatusCode": status}}, operation)
    client.meta.events.register(f"before-call.s3.{operation}", hook)


def window(start: str, end: str) -> Window:
    return make_window(start=start, end=end, since=None)


def everything() -> Window:
    return Window(dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC))


def modified_times(s3) -> dict[str, dt.datetime]:
    return {o["Key"]: o["LastModified"].astimezone(dt.UTC)
            for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="bronze/")["Contents"]}


# --- by modified ---------------------------------------------------------------------------------
def test_a_modified_listing_holds_every_object_of_the_prefix_but_replay_copies_sorted_by_key(s3):
    got = list_window(s3, bucket=BUCKET, prefix="bronze/", window=everything())
    expected = sorted(k for k in KEYS if k.startswith("bronze/") and not k.startswith("bronze/replay/"))
    assert [o.key for o in got.objects] == expected
    assert got.skipped_replay_copies == 2 and got.partitions == [] and got.by == "modified"


def test_each_object_is_described_by_its_listing_entry(s3):
    key = "bronze/orders/dt=2025-01-02/part-1.jsonl"
    head = s3.head_object(Bucket=BUCKET, Key=key)
    (got,) = [o for o in list_window(s3, bucket=BUCKET, prefix=key, window=everything()).objects]
    assert got == ObjectInfo(bucket=BUCKET, key=key, size=KEYS.index(key) + 1, etag=head["ETag"].strip('"'),
                             last_modified=head["LastModified"].astimezone(dt.UTC))
    assert '"' not in got.etag and got.last_modified.utcoffset() == dt.timedelta(0)


def test_the_modified_window_is_half_open(s3):
    times = modified_times(s3)
    key = "bronze/orders/dt=2025-01-01/part-0.jsonl"
    moment = times[key]
    at = Window(moment, moment + dt.timedelta(microseconds=1))
    before = Window(moment - dt.timedelta(hours=1), moment)
    assert key in [o.key for o in list_window(s3, bucket=BUCKET, prefix=key, window=at).objects]
    assert list_window(s3, bucket=BUCKET, prefix=key, window=before).objects == []


def test_a_prefix_inside_bronze_replay_lists_the_replay_copies(s3):
    got = list_window(s3, bucket=BUCKET, prefix="bronze/replay/", window=everything())
    assert [o.key for o in got.objects] == ["bronze/replay/s1/orders/dt=2025-01-03/part-0.jsonl",
                                            "bronze/replay/s2/orders/dt=2025-01-04/part-0.jsonl"]
    assert got.skipped_replay_copies == 0


def test_a_listing_of_many_pages_reads_every_page_once(s3):
    small_pages(s3, size=3)
    calls = count_calls(s3)
    got = list_window(s3, bucket=BUCKET, prefix="bronze/orders/", window=everything())
    assert len(got.objects) == 13  # 12 partition objects and notes.txt
    assert calls["ListObjectsV2"] == 5  # ceil(13 / 3)
    assert len({o.key for o in got.objects}) == 13


def test_progress_is_reported_after_each_page_with_the_objects_so_far(s3):
    small_pages(s3, size=5)
    seen = []
    list_window(s3, bucket=BUCKET, prefix="bronze/orders/", window=everything(), on_progress=seen.append)
    assert seen == [5, 10, 13]


def test_progress_counts_only_objects_in_the_window(s3):
    seen = []
    list_window(s3, bucket=BUCKET, prefix="bronze/orders/", window=window("2001-01-01", "2001-01-02"),
                on_progress=seen.append)
    assert seen == [0]


def test_an_unknown_by_is_a_usage_error_naming_it(s3):
    with pytest.raises(UsageError, match="'day'"):
        list_window(s3, bucket=BUCKET, prefix="bronze/", window=everything(), by="day")


def test_a_denied_listing_names_the_permission_and_the_prefix(s3):
    fail(s3, "ListObjectsV2", "AccessDenied", 403)
    with pytest.raises(AccessDenied, match=r"s3:ListBucket on s3://lst/bronze/orders/"):
        list_window(s3, bucket=BUCKET, prefix="bronze/orders/", window=everything())


def test_a_throttled_listing_is_retried(s3):
    calls = count_calls(s3)
    throttled = iter([True, True])

    def hook(**kwargs):
        if next(throttled, False):
            raise ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}},
                              "ListObjectsV2")
    s3.meta.events.register("before-call.s3.ListObjectsV2", hook)
    assert len(list_window(s3, bucket=BUCKET, prefix="bronze/orders/", window=everything()).objects) == 13
    assert calls["ListObjectsV2"] == 3


def test_a_missing_bucket_is_an_error_naming_it(s3):
    with pytest.raises(OpsError, match="s3://nope/"):
        list_window(s3, bucket="nope", prefix="bronze/", window=everything())


# --- by partition --------------------------------------------------------------------------------
def test_a_partition_listing_holds_whole_days_overlapping_the_window(s3):
    got = list_window(s3, bucket=BUCKET, prefix="bronze/", window=window("2025-01-03T12:00:00Z", "2025-01-04T01:00:00Z"),
                      by="partition")
    assert got.partitions == ["bronze/orders/dt=2025-01-03/", "bronze/orders/dt=2025-01-04/",
                              "bronze/shipments/dt=2025-01-03/", "bronze/shipments/dt=2025-01-04/"]
    assert [o.key for o in got.objects] == sorted(
        [f"bronze/orders/dt=2025-01-0{d}/part-{i}.jsonl" for d in (3, 4) for i in range(2)]
        + ["bronze/shipments/dt=2025-01-03/part-0.jsonl", "bronze/shipments/dt=2025-01-04/part-0.jsonl"])
    sizes = {o.key: o.size for o in got.objects}
    assert sizes["bronze/shipments/dt=2025-01-04/part-0.jsonl"] == KEYS.index(
        "bronze/shipments/dt=2025-01-04/part-0.jsonl") + 1
    assert got.bytes == sum(sizes.values()) and got.by == "partition"
    assert {o.bucket for o in got.objects} == {BUCKET}


def test_the_first_and_last_day_of_the_window_are_included_and_no_other(s3):
    got = find_partitions(s3, bucket=BUCKET, prefix="bronze/orders/", window=window("2025-01-02", "2025-01-05"))
    assert got == ["bronze/orders/dt=2025-01-02/", "bronze/orders/dt=2025-01-03/", "bronze/orders/dt=2025-01-04/"]


def test_a_window_before_or_after_every_partition_finds_none(s3):
    for start, end in (("2024-12-01", "2025-01-01"), ("2025-01-07", "2025-02-01")):
        assert find_partitions(s3, bucket=BUCKET, prefix="bronze/", window=window(start, end)) == []


def test_partition_listings_grow_with_the_window_not_with_the_history(s3):
    small_pages(s3, size=1)
    calls = count_calls(s3)
    got = find_partitions(s3, bucket=BUCKET, prefix="bronze/orders/", window=window("2025-01-02", "2025-01-03"))
    assert got == ["bronze/orders/dt=2025-01-02/"]
    # One page with the window's day, one with the next (the stop): neither the day before nor the
    # days after are read.
    assert calls["ListObjectsV2"] == 2


def test_a_range_listing_over_several_pages_reads_on_to_the_last_day(s3):
    small_pages(s3, size=1)
    got = find_partitions(s3, bucket=BUCKET, prefix="bronze/orders/", window=window("2025-01-01", "2025-01-07"))
    assert got == [f"bronze/orders/dt={d}/" for d in DAYS]


def test_partitions_are_found_below_folder_levels_and_replay_copies_left_out(s3):
    small_pages(s3, size=1)
    got = find_partitions(s3, bucket=BUCKET, prefix="bronze", window=window("2025-01-03", "2025-01-04"))
    assert got == ["bronze/orders/dt=2025-01-03/", "bronze/shipments/dt=2025-01-03/"]


def test_replay_copies_are_found_when_the_prefix_is_inside_bronze_replay(s3):
    got = find_partitions(s3, bucket=BUCKET, prefix="bronze/replay/", window=window("2025-01-03", "2025-01-04"))
    assert got == ["bronze/replay/s1/orders/dt=2025-01-03/"]


def test_the_search_goes_six_folders_deep_and_no_deeper(s3):
    day = window("2025-01-03", "2025-01-04")
    assert find_partitions(s3, bucket=BUCKET, prefix="deep/", window=day) == ["deep/a/b/c/d/e/dt=2025-01-03/"]
    assert find_partitions(s3, bucket=BUCKET, prefix="", window=day) == [
        "bronze/orders/dt=2025-01-03/", "bronze/shipments/dt=2025-01-03/", "deep/a/b/c/d/e/dt=2025-01-03/",
        "odd/dt=2025-01-03/"]
    assert find_partitions(s3, bucket=BUCKET, prefix="deeper/a/", window=day) == [
        "deeper/a/b/c/d/e/f/dt=2025-01-03/"]


def test_names_that_only_look_like_partitions_are_passed_over(s3):
    got = find_partitions(s3, bucket=BUCKET, prefix="odd/", window=window("2025-01-01", "2025-01-07"))
    assert got == ["odd/dt=2025-01-03/"]


def test_a_level_of_partitions_outside_the_window_is_not_searched_below(s3):
    calls = count_calls(s3)
    assert find_partitions(s3, bucket=BUCKET, prefix="bronze/orders/", window=window("2026-01-01", "2026-01-02")) == []
    assert calls["ListObjectsV2"] == 2  # the range probe and the level's folders, nothing under dt=…/


def test_a_prefix_that_is_one_partition_is_taken_as_it_is_when_its_day_is_in_the_window(s3):
    calls = count_calls(s3)
    partition = "bronze/orders/dt=2025-01-02/"
    assert find_partitions(s3, bucket=BUCKET, prefix=partition, window=window("2025-01-02", "2025-01-03")) == [partition]
    assert find_partitions(s3, bucket=BUCKET, prefix=partition, window=window("2025-01-01", "2025-01-02")) == []
    assert find_partitions(s3, bucket=BUCKET, prefix=partition, window=window("2025-01-03", "2025-01-04")) == []
    assert find_partitions(s3, bucket=BUCKET, prefix=partition, window=window("2025-01-01", "2025-01-04")) == [partition]
    assert calls["ListObjectsV2"] == 0


def test_a_prefix_without_its_slash_is_a_folder(s3):
    day = window("2025-01-03", "2025-01-04")
    # "deep" is "deep/" (not also "deeper/"), and its partition, six folders under it, is in reach
    assert find_partitions(s3, bucket=BUCKET, prefix="deep", window=day) == ["deep/a/b/c/d/e/dt=2025-01-03/"]
    # "deeper" is the folder "deeper/": its partition is six folders under it, not seven
    assert find_partitions(s3, bucket=BUCKET, prefix="deeper", window=day) == ["deeper/a/b/c/d/e/f/dt=2025-01-03/"]


def test_an_empty_listing_or_partition_holds_no_objects(s3):
    assert list_window(s3, bucket=BUCKET, prefix="nothing/", window=everything()).objects == []
    empty = "bronze/orders/dt=2025-01-09/"  # a partition prefix is taken as it is, here one without objects
    got = list_window(s3, bucket=BUCKET, prefix=empty, window=window("2025-01-09", "2025-01-10"), by="partition")
    assert got.partitions == [empty] and got.objects == []


def test_a_partition_prefix_without_its_slash_is_searched_as_a_folder(s3):
    got = find_partitions(s3, bucket=BUCKET, prefix="bronze/orders/dt=2025-01-02",
                          window=window("2025-01-02", "2025-01-03"))
    assert got == []  # "…/dt=2025-01-02/" holds objects, no partitions below it


def test_partition_progress_reports_the_running_total(s3):
    seen = []
    list_window(s3, bucket=BUCKET, prefix="bronze/orders/", window=window("2025-01-01", "2025-01-04"), by="partition",
                concurrency=1, on_progress=seen.append)
    assert seen == [2, 4, 6]


def test_a_denied_partition_listing_names_the_permission(s3):
    fail(s3, "ListObjectsV2", "AccessDenied", 403)
    with pytest.raises(AccessDenied, match="s3:ListBucket on s3://lst/bronze/dt="):
        list_window(s3, bucket=BUCKET, prefix="bronze/", window=window("2025-01-01", "2025-01-02"), by="partition")


def test_every_source_lists_partitions_no_more_than_concurrency_at_once(s3):
    w = window("2025-01-01", "2025-01-07")
    most = most_in_flight(s3, "s3.ListObjectsV2")
    list_window(s3, bucket=BUCKET, prefix="bronze/orders/", window=w, by="partition", concurrency=1)
    list_objects(s3, bucket=BUCKET, prefix="bronze/orders/", window=w, by="partition", concurrency=1)
    stream_objects(s3, bucket=BUCKET, prefix="bronze/orders/", window=w, by="partition", concurrency=1)
    # a report of 2025-01-02: the days from 2025-01-01 on are its tail, listed live by partition
    listed = list_objects(s3, bucket=BUCKET, prefix="bronze/orders/", window=w, by="partition", concurrency=1,
                          from_inventory=REPORT["early"])
    objects, _ = stream_objects(s3, bucket=BUCKET, prefix="bronze/orders/", window=w, by="partition", concurrency=1,
                                from_inventory=REPORT["early"])
    assert len(listed.objects) == len(list(objects)) == 12
    assert most == [1]


# --- the shared source, summaries, manifests, hints ---------------------------------------------
def test_list_objects_and_stream_objects_list_live_without_an_inventory(s3):
    w = window("2025-01-02", "2025-01-03")
    live = list_window(s3, bucket=BUCKET, prefix="bronze/", window=w, by="partition")
    listed = list_objects(s3, bucket=BUCKET, prefix="bronze/", window=w, by="partition", concurrency=1)
    objects, source = stream_objects(s3, bucket=BUCKET, prefix="bronze/", window=w, by="partition", concurrency=1)
    assert listed.objects == live.objects == list(objects) and source is None
    assert listed.by == "partition" and listed.partitions == live.partitions


def test_list_objects_reads_an_inventory_report_when_given_one(s3):
    w = window("2025-01-02", "2025-01-03")
    seen = []
    listed = list_objects(s3, bucket=BUCKET, prefix="bronze/orders/dt=2025-01-02/inv-0000", window=w, by="partition",
                          from_inventory=REPORT["manifest"], on_progress=seen.append)
    assert [o.key for o in listed.objects] == [f"bronze/orders/dt=2025-01-02/inv-{i:05d}.jsonl" for i in range(10)]
    assert listed.by == "partition" and listed.inventory["manifest"] == REPORT["manifest"]
    assert seen == []  # fewer than 10,000
    whole = list_objects(s3, bucket=BUCKET, prefix="bronze/", window=w, from_inventory=REPORT["manifest"],
                         on_progress=seen.append)
    assert len(whole.objects) == INVENTORIED and seen == [INVENTORIED] and whole.by == "modified"
    with pytest.raises(UsageError, match="--bucket other"):
        list_objects(s3, bucket="other", prefix="bronze/", window=w, from_inventory=REPORT["manifest"])


def test_an_inventory_listing_adds_the_live_tail_only_when_asked(s3):
    w = window("2025-01-03", "2100-01-01")
    report_only = [o.key for o in list_objects(s3, bucket=BUCKET, prefix="bronze/shipments/", window=w,
                                               from_inventory=REPORT["manifest"]).objects]
    assert report_only == []  # the report holds no shipments; by modified lists no tail unless asked
    with_tail = list_objects(s3, bucket=BUCKET, prefix="bronze/shipments/", window=w, from_inventory=REPORT["manifest"],
                             live_tail=True)
    assert [o.key for o in with_tail.objects] == [k for k in KEYS if k.startswith("bronze/shipments/")]
    objects, source = stream_objects(s3, bucket=BUCKET, prefix="bronze/shipments/", window=w,
                                     from_inventory=REPORT["manifest"], live_tail=True)
    assert sorted(o.key for o in objects) == [o.key for o in with_tail.objects]
    assert source.summary()["live_tail"]["listed"] is True
    objects, source = stream_objects(s3, bucket=BUCKET, prefix="bronze/orders/", window=window("2025-01-03", "2025-01-04"),
                                     by="partition", from_inventory=REPORT["manifest"])
    assert sorted(o.key for o in objects) == ["bronze/orders/dt=2025-01-03/inv.jsonl",
                                              "bronze/orders/dt=2025-01-03/late.jsonl"]
    assert source.manifest.url == REPORT["manifest"]
    with pytest.raises(UsageError, match="--bucket other"):
        stream_objects(s3, bucket="other", prefix="bronze/", window=w, from_inventory=REPORT["manifest"])


def test_list_objects_reports_progress(s3):
    seen = []
    list_objects(s3, bucket=BUCKET, prefix="bronze/orders/", window=window("2025-01-01", "2025-01-02"), by="partition",
                 on_progress=seen.append)
    assert seen == [2]


def test_the_summary_says_what_was_listed(s3):
    w = window("2025-01-02", "2025-01-03")
    got = list_window(s3, bucket=BUCKET, prefix="bronze/orders/", window=w, by="partition")
    assert got.summary() == {
        "bucket": BUCKET, "prefix": "bronze/orders/", "by": "partition", "start": "2025-01-02T00:00:00+00:00",
        "end": "2025-01-03T00:00:00+00:00", "objects": 2, "bytes": got.bytes,
        "partitions": ["bronze/orders/dt=2025-01-02/"], "skipped_replay_copies": 0}
    assert got.bytes == sum(KEYS.index(f"bronze/orders/dt=2025-01-02/part-{i}.jsonl") + 1 for i in range(2))
    replayed = list_window(s3, bucket=BUCKET, prefix="bronze/", window=everything())
    assert replayed.summary()["skipped_replay_copies"] == 2


def test_an_unknown_by_is_refused_by_every_source(s3):
    with pytest.raises(UsageError, match="'day'"):
        stream_objects(s3, bucket=BUCKET, prefix="bronze/", window=everything(), by="day")


def test_a_manifest_has_one_row_per_object_with_the_key_url_encoded(tmp_path):
    moment = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    objects = [ObjectInfo("b", "bronze/orders/dt=2025-01-01/a b+ü,x.jsonl", 1, "e", moment),
               ObjectInfo("b", "bronze/orders/dt=2025-01-01/plain.jsonl", 1, "e", moment)]
    listing = Listing(bucket="b", prefix="bronze/", by="modified", window=everything(), objects=objects)
    out = tmp_path / "manifest.csv"
    assert write_manifest(listing, str(out)) == 2
    assert out.read_bytes() == (b"b,bronze/orders/dt%3D2025-01-01/a%20b%2B%C3%BC%2Cx.jsonl\r\n"
                                b"b,bronze/orders/dt%3D2025-01-01/plain.jsonl\r\n")


def test_the_hint_points_to_by_partition_when_only_partitions_fall_in_the_window(s3):
    w = window("2025-01-02", "2025-01-04")
    empty = list_window(s3, bucket=BUCKET, prefix="bronze/orders/", window=w)
    assert empty.objects == []
    hint = partition_hint(s3, empty)
    assert "2 dt= partition(s)" in hint and "bronze/orders/dt=2025-01-02/" in hint and "--by partition" in hint


def test_no_hint_when_something_was_listed_or_nothing_is_partitioned_in_the_window(s3):
    found = list_window(s3, bucket=BUCKET, prefix="bronze/orders/", window=everything())
    assert found.objects and partition_hint(s3, found) is None
    by_partition = list_window(s3, bucket=BUCKET, prefix="bronze/orders/", window=window("2001-01-01", "2001-01-02"),
                               by="partition")
    calls = count_calls(s3)
    assert partition_hint(s3, by_partition) is None and calls["ListObjectsV2"] == 0
    nothing = list_window(s3, bucket=BUCKET, prefix="bronze/orders/", window=window("2001-01-01", "2001-01-02"))
    assert partition_hint(s3, nothing) is None


def test_an_empty_window_in_the_future_is_named_as_the_likely_mistake(s3):
    for by in ("modified", "partition"):
        future = list_window(s3, bucket=BUCKET, prefix="bronze/orders/", window=window("2099-01-01", "2099-01-02"), by=by)
        hint = partition_hint(s3, future)
        assert hint.startswith("the window [2099-01-01T00:00:00Z, 2099-01-02T00:00:00Z) starts in the future")
        assert hint.endswith("check --start/--end")
        now = re.search(r"\(now is (\S+)\)", hint).group(1)  # the current time, for comparison
        assert abs(dt.datetime.fromisoformat(now.replace("Z", "+00:00")) - dt.datetime.now(dt.UTC)) < dt.timedelta(
            minutes=5)
