"""S3 Inventory as a listing source, on moto: reports written in the documented layout (moto
delivers none), read back through the manifest, with windows, versions, checksums and the live tail."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import pytest

from ops.errors import UsageError
from ops.inventory import InventoryError, list_from_inventory, open_inventory, read_manifest
from ops.local.inventory import Entry, live_entries, write_report
from ops.timewindow import Window

T0 = dt.datetime(2025, 1, 1, 6, tzinfo=dt.UTC)
REPORTS = "elt-local-inventory"
HOSTILE = "bronze/orders/dt=2025-01-01/a b+ü%20,\"q\".jsonl"


@pytest.fixture
def reports(pipeline):
    pipeline.s3.create_bucket(Bucket=REPORTS)
    return pipeline


def entries() -> list[Entry]:
    """Two days of orders, one key with every awkward character, versions and a delete marker."""
    out = [Entry(key=f"bronze/orders/dt=2025-01-0{d}/p{i}.jsonl", size=100 + i, etag=f"e{d}{i}",
                 last_modified=T0 + dt.timedelta(days=d - 1, minutes=i)) for d in (1, 2) for i in range(3)]
    out += [
        Entry(key=HOSTILE, size=7, etag="h", last_modified=T0),
        Entry(key="bronze/orders/dt=2025-01-01/old.jsonl", size=1, etag="v1", last_modified=T0, version_id="1",
              is_latest=False),  # non-current version: the key's latest is the delete marker below
        Entry(key="bronze/orders/dt=2025-01-01/old.jsonl", size=0, etag="", last_modified=T0, version_id="2",
              is_delete_marker=True),
        Entry(key="bronze/replay/s1/orders/dt=2025-01-01/p0.jsonl", size=100, etag="r", last_modified=T0),
        Entry(key="bronze/shipments/dt=2025-01-01/s.jsonl", size=5, etag="s", last_modified=T0),
    ]
    return out


def report(p, file_format="CSV", taken=T0 + dt.timedelta(days=3), **kw) -> str:
    return write_report(p.s3, source_bucket=p.bronze, entries=entries(), report_bucket=REPORTS, taken=taken,
                        file_format=file_format, versioned=True, **kw)


ALL = Window(dt.datetime(2025, 1, 1, tzinfo=dt.UTC), dt.datetime(2025, 1, 3, tzinfo=dt.UTC))


@pytest.mark.parametrize("file_format", ["CSV", "Parquet", "ORC"])
def test_every_format_lists_the_current_objects_with_decoded_keys(reports, file_format, monkeypatch):
    monkeypatch.setattr("ops.inventory.BATCH_ROWS", 3)  # Parquet batches and ORC stripe slices of 3 rows
    url = report(reports, file_format, rows_per_file=4)  # several data files
    assert len(read_manifest(reports.s3, url).files) == 3
    got = list_from_inventory(reports.s3, manifest_url=url, bucket=reports.bronze, prefix="bronze/orders/",
                              window=ALL, now=T0 + dt.timedelta(days=3))
    keys = [o.key for o in got.objects]
    assert HOSTILE in keys  # URL-decoded exactly once
    assert "bronze/orders/dt=2025-01-01/old.jsonl" not in keys  # delete marker and its older version
    assert not any(k.startswith(("bronze/replay/", "bronze/shipments/")) for k in keys)
    assert len(keys) == 7 and keys == sorted(keys)
    first = next(o for o in got.objects if o.key.endswith("dt=2025-01-01/p1.jsonl"))
    assert (first.size, first.etag, first.last_modified) == (101, "e11", T0 + dt.timedelta(minutes=1))
    stats = got.inventory["stats"]
    assert (stats["rows"], stats["delete_markers"], stats["noncurrent_versions"], stats["files"]) == (11, 1, 1, 3)


def test_the_modified_window_is_half_open_on_last_modified(reports):
    url = report(reports)
    window = Window(T0 + dt.timedelta(minutes=1), T0 + dt.timedelta(days=1, minutes=1))
    got = list_from_inventory(reports.s3, manifest_url=url, bucket=reports.bronze, prefix="bronze/orders/",
                              window=window, now=T0 + dt.timedelta(days=3))
    assert [o.key.rsplit("/", 2)[-2:] for o in got.objects] == [
        ["dt=2025-01-01", "p1.jsonl"], ["dt=2025-01-01", "p2.jsonl"], ["dt=2025-01-02", "p0.jsonl"]]


def test_the_partition_window_reads_the_keys_dt(reports):
    url = report(reports)
    day2 = Window(dt.datetime(2025, 1, 2, 12, tzinfo=dt.UTC), dt.datetime(2025, 1, 2, 13, tzinfo=dt.UTC))
    got = list_from_inventory(reports.s3, manifest_url=url, bucket=reports.bronze, prefix="bronze/", window=day2,
                              by="partition", now=T0 + dt.timedelta(days=3))
    assert [o.key for o in got.objects] == [f"bronze/orders/dt=2025-01-02/p{i}.jsonl" for i in range(3)]


def test_replay_copies_are_listed_when_the_prefix_is_inside_bronze_replay(reports):
    got = list_from_inventory(reports.s3, manifest_url=report(reports), bucket=reports.bronze,
                              prefix="bronze/replay/", window=ALL, now=T0 + dt.timedelta(days=3))
    assert [o.key for o in got.objects] == ["bronze/replay/s1/orders/dt=2025-01-01/p0.jsonl"]


def test_columns_are_found_by_the_file_schema_not_by_position(reports):
    fields = ("ETag", "Size", "StorageClass", "LastModifiedDate", "Key", "IsDeleteMarker", "Bucket", "IsLatest",
              "VersionId")
    url = report(reports, csv_fields=fields)
    got = list_from_inventory(reports.s3, manifest_url=url, bucket=reports.bronze, prefix="bronze/orders/",
                              window=ALL, now=T0 + dt.timedelta(days=3))
    hostile = next(o for o in got.objects if o.key == HOSTILE)
    assert (hostile.size, hostile.etag, len(got.objects)) == (7, "h", 7)


def test_a_data_file_that_does_not_match_its_md5_is_refused_naming_it(reports):
    url = report(reports)
    manifest = read_manifest(reports.s3, url)
    data = manifest.files[0]
    raw = reports.s3.get_object(Bucket=REPORTS, Key=data.key)["Body"].read()
    tampered = bytearray(raw)
    tampered[-12] ^= 0xFF  # same size, different bytes
    reports.s3.put_object(Bucket=REPORTS, Key=data.key, Body=bytes(tampered))
    with pytest.raises(InventoryError, match=f"{data.key}: .* MD5 .* the manifest says .* MD5 {data.md5}"):
        list_from_inventory(reports.s3, manifest_url=url, bucket=reports.bronze, prefix="bronze/", window=ALL,
                            now=T0 + dt.timedelta(days=3))


def test_a_changed_manifest_is_refused_by_its_checksum(reports):
    url = report(reports)
    key = url.split("/", 3)[3]
    doc = json.loads(reports.s3.get_object(Bucket=REPORTS, Key=key)["Body"].read())
    doc["files"] = doc["files"][:0]
    reports.s3.put_object(Bucket=REPORTS, Key=key, Body=json.dumps(doc).encode())
    with pytest.raises(InventoryError, match="does not match manifest.checksum"):
        read_manifest(reports.s3, url)


def test_a_report_without_etag_says_which_optional_field_to_add(reports):
    fields = ("Bucket", "Key", "Size", "LastModifiedDate")
    url = write_report(reports.s3, source_bucket=reports.bronze, entries=entries()[:2], report_bucket=REPORTS,
                       taken=T0, csv_fields=fields)
    with pytest.raises(InventoryError, match="no ETag column; add ETag to the inventory configuration's optional"):
        read_manifest(reports.s3, url)


def test_a_csv_row_with_the_wrong_number_of_values_names_file_and_line(reports):
    url = report(reports)
    data = read_manifest(reports.s3, url).files[0]
    body = gzip.compress(b'"a","b"\n')
    reports.s3.put_object(Bucket=REPORTS, Key=data.key, Body=body)
    key = url.split("/", 3)[3]
    doc = json.loads(reports.s3.get_object(Bucket=REPORTS, Key=key)["Body"].read())
    doc["files"][0].update(size=len(body), MD5checksum=__import__("hashlib").md5(body).hexdigest())
    reports.s3.put_object(Bucket=REPORTS, Key=key, Body=json.dumps(doc).encode())
    reports.s3.delete_object(Bucket=REPORTS, Key=key.replace("manifest.json", "manifest.checksum"))
    with pytest.raises(InventoryError, match=f"{data.key} line 1: 2 values, fileSchema names 9"):
        list_from_inventory(reports.s3, manifest_url=url, bucket=reports.bronze, prefix="bronze/", window=ALL,
                            now=T0 + dt.timedelta(days=3))


def test_the_report_of_another_bucket_is_a_usage_error(reports):
    with pytest.raises(UsageError, match=f"lists bucket {reports.bronze}"):
        open_inventory(reports.s3, manifest_url=report(reports), bucket="other-bucket", prefix="bronze/", window=ALL)


def test_a_configuration_folder_means_its_newest_report(reports):
    report(reports, taken=T0)
    newest = report(reports, taken=T0 + dt.timedelta(days=1))
    folder = newest.rsplit("/", 2)[0] + "/"
    source = open_inventory(reports.s3, manifest_url=folder, bucket=None, prefix="bronze/", window=ALL,
                            now=T0 + dt.timedelta(days=1))
    assert source.manifest.url == newest


def test_objects_newer_than_the_report_are_listed_live_by_partition(reports):
    """The report was taken two hours ago; one object arrived since, another was overwritten."""
    now = dt.datetime.now(dt.UTC)
    today = now.date().isoformat()
    for i in range(3):
        reports.put(f"bronze/orders/dt={today}/old{i}.jsonl", b"{}\n")
    url = write_report(reports.s3, source_bucket=reports.bronze, entries=live_entries(reports.s3, reports.bronze),
                       report_bucket=REPORTS, taken=now - dt.timedelta(hours=2))
    reports.put(f"bronze/orders/dt={today}/new.jsonl", b"{}\n")
    new_etag = reports.put(f"bronze/orders/dt={today}/old0.jsonl", b'{"v":2}\n')
    reports.s3.delete_object(Bucket=reports.bronze, Key=f"bronze/orders/dt={today}/old2.jsonl")  # gone since
    window = Window(now - dt.timedelta(days=2), now + dt.timedelta(minutes=1))
    got = list_from_inventory(reports.s3, manifest_url=url, bucket=reports.bronze, prefix="bronze/", window=window,
                              by="partition", now=now)
    by_key = {o.key.rsplit("/", 1)[1]: o for o in got.objects}
    assert sorted(by_key) == ["new.jsonl", "old0.jsonl", "old1.jsonl"]  # a day listed live is taken whole
    assert by_key["old0.jsonl"].etag == new_etag  # the live entry wins
    assert got.inventory["live_tail"]["listed"] is True
    assert any("come from the report only" in w for w in got.inventory["warnings"])


def test_by_modified_the_tail_is_a_warning_unless_asked_for(reports):
    now = dt.datetime.now(dt.UTC)
    url = write_report(reports.s3, source_bucket=reports.bronze, entries=[], report_bucket=REPORTS,
                       taken=now - dt.timedelta(hours=3))
    reports.put("bronze/orders/dt=2025-01-01/late.jsonl", b"{}\n")
    window = Window(now - dt.timedelta(hours=6), now + dt.timedelta(minutes=1))
    quiet = list_from_inventory(reports.s3, manifest_url=url, bucket=reports.bronze, prefix="bronze/", window=window,
                                now=now)
    assert quiet.objects == [] and "pass --live-tail to list them live" in quiet.inventory["warnings"][0]
    live = list_from_inventory(reports.s3, manifest_url=url, bucket=reports.bronze, prefix="bronze/", window=window,
                               now=now, live_tail=True)
    assert [o.key for o in live.objects] == ["bronze/orders/dt=2025-01-01/late.jsonl"]


def test_an_old_report_says_how_old_it_is(reports):
    got = list_from_inventory(reports.s3, manifest_url=report(reports, taken=T0), bucket=reports.bronze,
                              prefix="bronze/", window=Window(T0 - dt.timedelta(days=1), T0 - dt.timedelta(hours=2)),
                              now=T0 + dt.timedelta(days=5))
    assert got.inventory["report_age_hours"] == 120.0
    assert got.inventory["warnings"] == [
        "the report is 120 h old (taken 2025-01-01T06:00Z); check that inventory deliveries still arrive"]


def test_the_shared_listing_source_reads_the_report_when_given_one(reports):
    from ops.listing import list_objects

    url = report(reports)
    reports.put("bronze/orders/dt=2025-01-01/live-only.jsonl", b"{}\n")
    live = list_objects(reports.s3, bucket=reports.bronze, prefix="bronze/orders/", window=ALL, by="partition")
    from_report = list_objects(reports.s3, bucket=reports.bronze, prefix="bronze/orders/", window=ALL, by="partition",
                               from_inventory=url)
    assert [o.key for o in live.objects] == ["bronze/orders/dt=2025-01-01/live-only.jsonl"]
    assert len(from_report.objects) == 7 and from_report.summary()["inventory"]["manifest"] == url


def test_ls_and_replay_sqs_read_the_report_and_say_how_old_it_is(reports):
    from click.testing import CliRunner

    from ops.cli import cli

    url = report(reports, taken=T0)
    window = ["--start", "2025-01-01", "--end", "2025-01-03", "--bucket", reports.bronze, "--from-inventory", url]
    ls = CliRunner().invoke(cli, ["ls", *window, "--prefix", "bronze/orders/", "--json"])
    assert ls.exit_code == 0, ls.output
    listed = json.loads(ls.stdout)
    assert listed["objects"] == 7 and listed["inventory"]["manifest"] == url
    assert HOSTILE in [k["key"] for k in listed["keys"]]
    assert f"inventory {url} (CSV), taken 2025-01-01T06:00:00Z" in ls.stderr and "warning: the report is" in ls.stderr
    sent = CliRunner().invoke(cli, ["replay", "sqs", *window, "--queue-url", reports.queue_url, "--json"])
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.stdout)["done"] == 8  # the seven orders and the shipment; the replay copy is left out
    bodies = [json.loads(m["Body"]) for m in reports.receive_all()]
    assert {b["key"]: b["etag"] for b in bodies}["bronze/orders/dt=2025-01-01/p1.jsonl"] == "e11"
    other = CliRunner().invoke(cli, ["ls", *window[:4], "--bucket", "not-this-one", "--from-inventory", url])
    assert other.exit_code == 2 and "lists bucket" in other.stderr


@pytest.mark.parametrize("by", ["partition", "modified"])
def test_reconcile_from_a_report_finds_the_same_gaps_without_listing_bronze(reports, by):
    from click.testing import CliRunner

    from ops.cli import cli
    from ops.reconcile import CATEGORIES
    from tests.functional.test_reconcile import WINDOW, seed_every_gap

    expected = seed_every_gap(reports)
    url = write_report(reports.s3, source_bucket=reports.bronze, entries=live_entries(reports.s3, reports.bronze),
                       report_bucket=REPORTS, taken=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1),
                       file_format="Parquet")
    now = dt.datetime.now(dt.UTC)
    window = WINDOW if by == "partition" else Window(now - dt.timedelta(hours=1), now + dt.timedelta(minutes=1))
    result = CliRunner().invoke(cli, [
        "reconcile", "--bucket", reports.bronze, "--silver-bucket", reports.silver, "--table", reports.names.ledger_table,
        "--prefix", "bronze/", "--start", window.start.isoformat(), "--end", window.end.isoformat(), "--by", by,
        "--from-inventory", url, "--no-live-tail", "--json"])
    assert result.exit_code == 4, result.output
    found = json.loads(result.stdout)
    assert {g["key"]: g["category"] for g in found["gaps"]} == expected and set(expected.values()) == set(CATEGORIES)
    assert found["objects"] == 9 and found["not_bronze_keys"] == 1
    assert found["inventory"]["manifest"] == url and f"inventory {url} (Parquet)" in result.stderr
    # Bronze came from the report (manifest, its checksum, one data file); only silver was listed:
    # by partition 3 calls to find its partitions and 1 for the partition, by modified the partition.
    listed = found["api_calls"]["s3:ListObjectsV2"]
    assert found["api_calls"]["s3:GetObject"] == 3 and listed == (4 if by == "partition" else 1)


def test_a_throttled_download_is_retried_whole_and_access_denied_names_the_permission(reports):
    from ops.errors import AccessDenied
    from tests.functional.test_listing_replay import Calls

    url = report(reports)
    # manifest.json, manifest.checksum, then the data file: throttled twice, then read whole.
    calls = Calls(reports.s3, fail={"GetObject": [None, None, "SlowDown", "InternalError"]})
    got = list_from_inventory(reports.s3, manifest_url=url, bucket=reports.bronze, prefix="bronze/orders/",
                              window=ALL, now=T0 + dt.timedelta(days=3))
    assert len(got.objects) == 7 and calls.counts["GetObject"] == 5
    Calls(reports.s3, fail={"GetObject": ["AccessDenied"]})
    with pytest.raises(AccessDenied, match=f"s3:GetObject on {url}"):
        read_manifest(reports.s3, url)


def test_eltops_local_inventory_delivers_a_report_that_lists_the_bronze_objects(reports):
    from click.testing import CliRunner

    from ops.cli import cli

    reports.put("bronze/orders/dt=2025-01-01/a.jsonl", b"{}\n")
    result = CliRunner().invoke(cli, ["--json", "local", "inventory", "--bucket", reports.bronze,
                                      "--to", f"s3://{REPORTS}/inv/"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)["manifest"]
    assert manifest.startswith(f"s3://{REPORTS}/inv/") and manifest.endswith("manifest.json")
    bad = CliRunner().invoke(cli, ["local", "inventory", "--bucket", reports.bronze, "--to", "inv/"])
    assert bad.exit_code == 2 and "s3://bucket/prefix/" in bad.output
