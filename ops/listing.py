"""Time-windowed S3 listing.

- `modified`: every object under the prefix whose LastModified is in [start, end).
- `partition`: only the `dt=YYYY-MM-DD` partitions whose day overlaps the window, found with
  delimiter listings that start at the window's first day (StartAfter) and stop after its last,
  then listed in parallel. API calls grow with the partitions and objects in the window, not with
  the whole prefix. A partition is a whole day: every object in it is listed.

Copies under `bronze/replay/` are left out unless the prefix itself is inside `bronze/replay/`:
they are replays of originals that are listed already.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from ops.aws import with_retries
from ops.errors import UsageError
from ops.executor import BoundedExecutor
from ops.timewindow import Window, as_utc, describe_time

REPLAY_PREFIX = "bronze/replay/"
MAX_DEPTH = 6


@dataclass(frozen=True, slots=True)  # slots: a million of them in memory cost ~150 MB less
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str
    last_modified: dt.datetime


@dataclass
class Listing:
    bucket: str
    prefix: str
    by: str
    window: Window
    objects: list[ObjectInfo]
    partitions: list[str] = field(default_factory=list)
    skipped_replay_copies: int = 0

    @property
    def bytes(self) -> int:
        return sum(o.size for o in self.objects)

    def summary(self) -> dict:
        return {"bucket": self.bucket, "prefix": self.prefix, "by": self.by,
                "start": self.window.start.isoformat(), "end": self.window.end.isoformat(),
                "objects": len(self.objects), "bytes": self.bytes, "partitions": self.partitions,
                "skipped_replay_copies": self.skipped_replay_copies}


def _info(bucket: str, obj: dict) -> ObjectInfo:
    return ObjectInfo(bucket=bucket, key=obj["Key"], size=int(obj["Size"]), etag=obj["ETag"].strip('"'),
                      last_modified=as_utc(obj["LastModified"]))


def _pages(s3, bucket: str, prefix: str, **kwargs):
    call = dict(Bucket=bucket, Prefix=prefix, **kwargs)
    while True:
        page = with_retries(lambda: s3.list_objects_v2(**call), action="s3:ListBucket", resource=f"s3://{bucket}/{prefix}")
        yield page
        if not page.get("IsTruncated"):
            return
        call["ContinuationToken"] = page["NextContinuationToken"]  # S3 sends it with every truncated page


def _keep_replay(prefix: str) -> bool:
    return prefix.startswith(REPLAY_PREFIX)


def list_window(s3, *, bucket: str, prefix: str, window: Window, by: str = "modified", concurrency: int = 8,
                on_progress: Callable[[int], None] | None = None) -> Listing:
    """List the objects of one time window, sorted by key."""
    if by not in ("modified", "partition"):
        raise UsageError(f"--by {by!r} is not modified or partition")
    keep_replay = _keep_replay(prefix)
    skipped = 0
    objects: list[ObjectInfo] = []
    partitions: list[str] = []
    if by == "modified":
        for page in _pages(s3, bucket, prefix):
            for obj in page.get("Contents", []):
                if not keep_replay and obj["Key"].startswith(REPLAY_PREFIX):
                    skipped += 1
                    continue
                info = _info(bucket, obj)
                if info.last_modified in window:
                    objects.append(info)
            if on_progress:
                on_progress(len(objects))
    else:
        partitions = find_partitions(s3, bucket=bucket, prefix=prefix, window=window)

        def list_partition(partition: str) -> list[ObjectInfo]:
            return [_info(bucket, o) for page in _pages(s3, bucket, partition) for o in page.get("Contents", [])]

        def record(_partition, found: list[ObjectInfo]) -> None:
            objects.extend(found)
            if on_progress:
                on_progress(len(objects))

        with BoundedExecutor(concurrency, name="list") as executor:
            executor.run(list_partition, partitions, on_result=record)
    objects.sort(key=lambda o: o.key)
    return Listing(bucket=bucket, prefix=prefix, by=by, window=window, objects=objects, partitions=partitions,
                   skipped_replay_copies=skipped)


def list_objects(s3, *, bucket: str, prefix: str, window: Window, by: str = "modified",
                 from_inventory: str | None = None, live_tail: bool | None = None, concurrency: int = 8,
                 on_progress: Callable[[int], None] | None = None) -> Listing:
    """The listing source every command shares: live ListObjectsV2 (`list_window`), or an S3
    Inventory report when `from_inventory` names its manifest (`ops.inventory`; the result is an
    InventoryListing whose `inventory` dict says how old the report is and what was listed live)."""
    if not from_inventory:
        return list_window(s3, bucket=bucket, prefix=prefix, window=window, by=by, concurrency=concurrency,
                           on_progress=on_progress)
    from ops.inventory import list_from_inventory

    return list_from_inventory(s3, manifest_url=from_inventory, bucket=bucket, prefix=prefix, window=window, by=by,
                               live_tail=live_tail, concurrency=concurrency, on_progress=on_progress)


def stream_objects(s3, *, bucket: str, prefix: str, window: Window, by: str = "modified",
                   from_inventory: str | None = None, live_tail: bool | None = None, concurrency: int = 8):
    """Like `list_objects` without holding an inventory's objects in memory: returns (objects,
    source), `source` being the InventorySource (its `summary()` is complete once the objects are
    consumed) or None for a live listing."""
    if not from_inventory:
        return list_window(s3, bucket=bucket, prefix=prefix, window=window, by=by, concurrency=concurrency).objects, None
    from ops.inventory import open_inventory

    source = open_inventory(s3, manifest_url=from_inventory, bucket=bucket, prefix=prefix, window=window, by=by,
                            live_tail=live_tail, concurrency=concurrency)
    return source.objects(), source


def _partition_day(prefix: str) -> dt.date | None:
    last = prefix.rstrip("/").rpartition("/")[2]
    if not last.startswith("dt="):
        return None
    try:
        return dt.date.fromisoformat(last[3:])
    except ValueError:
        return None


def find_partitions(s3, *, bucket: str, prefix: str, window: Window) -> list[str]:
    """The `…/dt=YYYY-MM-DD/` prefixes under `prefix` whose day overlaps the window."""
    days = window.days()
    first, last = days[0], days[-1]
    keep_replay = _keep_replay(prefix)
    found: list[str] = []
    day = _partition_day(prefix) if prefix.endswith("/") else None
    if day is not None:
        return [prefix] if first <= day <= last else []

    def walk(node: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            return
        # Partitions right under this node, from the window's first day on: a range listing.
        in_range = []
        pages = _pages(s3, bucket, f"{node}dt=", Delimiter="/", StartAfter=f"{node}dt={first.isoformat()}")
        for candidate in (c["Prefix"] for page in pages for c in page.get("CommonPrefixes", [])):
            day = _partition_day(candidate)
            if day is None:
                continue
            if day > last:
                break  # the pages are read lazily: none after this one is asked for
            if day >= first:
                in_range.append(candidate)
        if in_range:
            found.extend(in_range)
            return
        # Nothing in range here: either a partition level without the window, or a level above.
        children = [c["Prefix"] for page in _pages(s3, bucket, node, Delimiter="/")
                    for c in page.get("CommonPrefixes", [])]
        if any(_partition_day(c) is not None for c in children):
            return
        for child in children:
            if not keep_replay and child.startswith(REPLAY_PREFIX):
                continue
            walk(child, depth + 1)

    # A partition search walks folders: "bronze/orders" means "bronze/orders/".
    walk(prefix if prefix.endswith("/") or not prefix else prefix + "/", 0)
    return sorted(found)


def write_manifest(listing: Listing, path: str) -> int:
    """An S3 Batch Operations manifest (format S3BatchOperations_CSV_20180820): bucket, URL-encoded key."""
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        for obj in listing.objects:
            writer.writerow([obj.bucket, quote(obj.key)])  # quote keeps "/" as it is
    return len(listing.objects)


def partition_hint(s3, listing: Listing) -> str | None:
    """When nothing was found: a window that starts in the future is named as the likely mistake;
    and when `--by modified` found nothing but `dt=` partitions fall in the window, say that
    `--by partition` selects by the partition's day (objects uploaded later than their day)."""
    if listing.objects:
        return None
    now = dt.datetime.now(dt.UTC)
    if listing.window.start > now:
        return (f"the window {listing.window.describe()} starts in the future (now is "
                f"{describe_time(now)}): check --start/--end")
    if listing.by != "modified":
        return None
    partitions = find_partitions(s3, bucket=listing.bucket, prefix=listing.prefix, window=listing.window)
    if not partitions:
        return None
    return (f"no object was modified in the window, but {len(partitions)} dt= partition(s) fall in it (e.g. "
            f"{partitions[0]}): --by partition selects objects by their partition's day")
