"""The object ledger from the operator's side: one object's story, the ledger as a list (with the
filters purge uses), lookups of many object versions at once, and purging items so objects can be
ingested again."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from lambdas.shared.keys import InvalidKey, parse_bronze_key
from lambdas.shared.ledger import STATUSES, Ledger, parse_pk, plain
from ops.aws import error_code, with_retries
from ops.errors import OpsError, UsageError
from ops.executor import BoundedExecutor, bounded_map, pause
from ops.timewindow import Window


@dataclass
class ObjectStatus:
    object: str
    bucket: str
    key: str
    current_etag: str | None  # the bronze object's ETag now (None: it does not exist)
    versions: list[dict]  # ledger items, newest first
    silver_key: str | None
    silver_exists: bool | None
    silver_last_modified: str | None = None
    silver_source_etag: str | None = None  # the bronze version silver holds (its metadata)
    silver_sequencer: str | None = None  # that version's event order ("" when not known)
    note: str = ""
    replay_copies: list[dict] = field(default_factory=list)  # copies under bronze/replay/ and their ledger story


MAX_REPLAY_STAMPS = 200  # replay copies expire by lifecycle rule; more stamps than this is a listing, not a status


def replay_copies(s3, ledger: Ledger, *, bucket: str, logical_key: str) -> list[dict]:
    """The copy replays of one logical key: for each stamp under bronze/replay/ (newest first, up to
    MAX_REPLAY_STAMPS), the copy in either layout (replay copy's and Batch Operations') that the
    ledger knows, with its versions' status."""
    from lambdas.shared.keys import REPLAY_ROOT, batch_replay_key, replay_key

    stamps = []
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=REPLAY_ROOT, Delimiter="/")
    for page in pages:
        stamps += [c["Prefix"] for c in page.get("CommonPrefixes", [])]
    found = []
    for stamp in sorted(stamps, reverse=True)[:MAX_REPLAY_STAMPS]:
        for key_for in (replay_key, batch_replay_key):
            key = key_for(logical_key, stamp)  # both layouts drop the stamp's trailing "/"
            items = ledger.versions(bucket=bucket, key=key)
            if items:
                found.append({"key": key, "versions": [
                    {name: item.get(name) for name in ("etag", "status", "outcome", "finished_at", "rows")
                     if item.get(name) is not None} for item in items]})
    return found


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise UsageError(f"{url!r} is not an s3:// URL; use s3://bucket/key")
    try:
        return parse_pk(url)
    except ValueError:
        raise UsageError(f"{url!r} has no key; use s3://bucket/key") from None


def object_status(*, s3, ddb, table: str, url: str, silver_bucket: str | None) -> ObjectStatus:
    """Every ledger item of the key (each etag), the bronze object now, and its silver object."""
    bucket, key = parse_s3_url(url)
    ledger = Ledger(ddb, table)
    versions = with_retries(lambda: ledger.versions(bucket=bucket, key=key), action="dynamodb:Query", resource=table)
    versions.sort(key=lambda item: item.get("claimed_at") or item.get("finished_at") or "", reverse=True)
    current = None
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        current = head["ETag"].strip('"')
    except Exception as exc:  # noqa: BLE001
        # Only a 404 means "no bronze object now"; anything else (a 403, a missing bucket) must not
        # read as "deleted": without s3:ListBucket S3 answers 403 for a missing key, so say which.
        if error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
            raise OpsError(f"cannot read s3://{bucket}/{key}: {exc} (AccessDenied for a key that may not exist "
                           "means this role lacks s3:ListBucket on the bucket; runbooks/oncall-permissions.md)") from exc
    for item in versions:
        item["current"] = item.get("etag") == current
    status = ObjectStatus(object=url, bucket=bucket, key=key, current_etag=current, versions=versions,
                          silver_key=None, silver_exists=None)
    try:
        parsed = parse_bronze_key(key)
        status.silver_key = parsed.silver_key
    except InvalidKey as exc:
        status.note = f"not a bronze key ({exc.reason}): ingest skips it"
    if status.silver_key and silver_bucket:
        try:
            head = s3.head_object(Bucket=silver_bucket, Key=status.silver_key)
            status.silver_exists = True
            status.silver_last_modified = head["LastModified"].astimezone(dt.UTC).isoformat()
            status.silver_source_etag = head["Metadata"].get("source-etag")  # boto3 gives {} without any
            status.silver_sequencer = head["Metadata"].get("source-sequencer")
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                status.silver_exists = False
            else:
                raise OpsError(f"cannot read s3://{silver_bucket}/{status.silver_key}: {exc}") from exc
    if status.silver_key and not parsed.replay_stamp:
        status.replay_copies = with_retries(
            lambda: replay_copies(s3, ledger, bucket=bucket, logical_key=key),
            action="s3:ListBucket on bronze/replay/ and dynamodb:Query", resource=f"s3://{bucket}/bronze/replay/")
    if not versions and not status.note:
        status.note = "no ledger item: never ingested, purged, or expired and deleted by TTL"
    elif status.silver_exists and current and status.silver_source_etag not in (None, current):
        status.note = (f"silver holds version {status.silver_source_etag}, not the current {current}: if no "
                       "work unit for it is in flight, replay it (runbooks/reprocess-one-object.md)")
    return status


# --- purge ---------------------------------------------------------------------------------------
def prefix_hint(prefix: str | None) -> str | None:
    """Why a --prefix can match no item: the filter is on the object key (bronze/…), not an
    s3:// URL or a type name."""
    if not prefix or prefix.startswith("bronze/"):
        return None
    if prefix.startswith("s3://"):
        key = prefix[5:].split("/", 1)[1] if "/" in prefix[5:] else ""
        return f"--prefix is a key prefix, not an s3:// URL: try --prefix {key or 'bronze/'} (and --bucket)"
    return f"--prefix matches object keys, which start with bronze/: try --prefix bronze/{prefix.lstrip('/')}"


@dataclass
class PurgeFilter:
    bucket: str | None = None
    prefix: str | None = None
    window: Window | None = None
    statuses: tuple[str, ...] = ()
    expired: bool = False

    def is_empty(self) -> bool:
        return not (self.bucket or self.prefix or self.window or self.statuses or self.expired)

    def expression(self, now: float) -> tuple[str | None, dict, dict]:
        """FilterExpression, names, values: each filter a named sub-condition."""
        parts, names, values = [], {}, {}
        if self.bucket:
            parts.append("#bucket = :bucket")  # objects of this bucket
            names["#bucket"], values[":bucket"] = "bucket", {"S": self.bucket}
        if self.prefix:
            parts.append("begins_with(#key, :prefix)")  # keys under this prefix
            names["#key"], values[":prefix"] = "key", {"S": self.prefix}
        if self.window:
            # claimed (ingested) in the window; items made by an SQS replay have only finished_at
            names.update({"#claimed_at": "claimed_at", "#finished_at": "finished_at"})
            values[":start"] = {"S": self.window.start.strftime("%Y-%m-%dT%H:%M:%SZ")}
            values[":end"] = {"S": self.window.end.strftime("%Y-%m-%dT%H:%M:%SZ")}
            parts.append("((#claimed_at >= :start AND #claimed_at < :end) OR (attribute_not_exists(#claimed_at) "
                         "AND #finished_at >= :start AND #finished_at < :end))")
        if self.statuses:
            names["#status"] = "status"
            placeholders = []
            for i, status in enumerate(self.statuses):
                values[f":status{i}"] = {"S": status}
                placeholders.append(f":status{i}")
            parts.append(f"#status IN ({', '.join(placeholders)})")  # only these statuses
        if self.expired:
            # past its TTL: DynamoDB deletes such items up to 48 h late
            names["#expiration"] = "expiration"
            values[":now"] = {"N": str(int(now))}
            parts.append("#expiration < :now")
        return (" AND ".join(parts) or None), names, values


@dataclass
class PurgeReport:
    table: str
    scanned: int = 0
    matched: int = 0
    deleted: int = 0
    dry_run: bool = False
    failed: list[dict] = field(default_factory=list)
    by_status: dict = field(default_factory=dict)
    sample: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _scan_pages(ddb, *, table: str, filters: PurgeFilter, segment: int, segments: int, now: float,
                projection: str | None) -> Iterator[tuple[list[dict], int]]:
    """One Scan segment, page by page: (matching items as plain dicts, items scanned)."""
    for status in filters.statuses:
        if status not in STATUSES:
            raise UsageError(f"--status {status!r} is not one of {', '.join(STATUSES)}")
    expression, names, values = filters.expression(now)
    kwargs = dict(TableName=table, Segment=segment, TotalSegments=segments)
    if projection:
        kwargs["ProjectionExpression"] = projection
        names = {**names, "#st": "status"}
    if names:
        kwargs["ExpressionAttributeNames"] = names
    if expression:
        kwargs["FilterExpression"] = expression
        kwargs["ExpressionAttributeValues"] = values
    while True:
        page = with_retries(lambda: ddb.scan(**kwargs), action="dynamodb:Scan", resource=table)
        yield [plain(i) for i in page["Items"]], page["ScannedCount"]
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def scan_matching(ddb, *, table: str, filters: PurgeFilter, segments: int = 4,
                  now: float | None = None) -> tuple[list[dict], int]:
    """Parallel Scan (one worker per segment) returning matching items' keys and status."""
    moment = now if now is not None else time.time()

    def scan(segment: int) -> tuple[list[dict], int]:
        items, scanned = [], 0
        for page, count in _scan_pages(ddb, table=table, filters=filters, segment=segment, segments=segments,
                                       now=moment, projection="pk, etag, #st"):
            items += page
            scanned += count
        return items, scanned

    results = bounded_map(scan, range(segments), concurrency=segments, name="scan")
    return [i for items, _ in results for i in items], sum(s for _, s in results)


def scan_items(ddb, *, table: str, fields: tuple[str, ...], condition: str, values: dict,
               segments: int = 4) -> list[dict]:
    """A parallel Scan (one worker per segment) of the items matching `condition`, only `fields`
    read. In `condition`, field i is written `#i` (several ledger names are reserved words)."""
    names = {f"#{i}": name for i, name in enumerate(fields)}
    base = dict(TableName=table, TotalSegments=segments, FilterExpression=condition, ExpressionAttributeNames=names,
                ExpressionAttributeValues=values, ProjectionExpression=", ".join(names))

    def scan(segment: int) -> list[dict]:
        items, call = [], dict(base, Segment=segment)
        while True:
            page = with_retries(lambda: ddb.scan(**call), action="dynamodb:Scan", resource=table)
            items += [plain(i) for i in page["Items"]]
            if "LastEvaluatedKey" not in page:
                return items
            call["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    return [item for part in bounded_map(scan, range(segments), concurrency=segments, name="scan") for item in part]


# --- ls ------------------------------------------------------------------------------------------
@dataclass
class LedgerListing:
    table: str
    scanned: int = 0
    matched: int = 0
    by_status: dict = field(default_factory=dict)


def list_items(ddb, *, table: str, filters: PurgeFilter, segments: int = 4, now: float | None = None,
               on_item: Callable[[dict], None], limit: int | None = None) -> LedgerListing:
    """Every ledger item matching the purge filters, whole (all attributes, `expired` computed),
    handed to `on_item` as the segments' Scan pages arrive (memory stays one page per segment).
    Items come in no particular order: DynamoDB scans by hash. Stops after `limit` items."""
    moment = now if now is not None else time.time()
    listing = LedgerListing(table=table)
    lock = threading.Lock()
    done = threading.Event()

    def scan(segment: int) -> None:
        for page, count in _scan_pages(ddb, table=table, filters=filters, segment=segment, segments=segments,
                                       now=moment, projection=None):
            with lock:
                listing.scanned += count
                for item in page:
                    if done.is_set():
                        return
                    item["expired"] = int(item.get("expiration") or 0) < moment
                    listing.matched += 1
                    listing.by_status[item.get("status", "?")] = listing.by_status.get(item.get("status", "?"), 0) + 1
                    on_item(item)
                    if limit is not None and listing.matched >= limit:
                        done.set()
                        return

    with BoundedExecutor(segments, name="scan") as executor:
        executor.run(scan, range(segments))
    return listing


# --- many versions at once (reconcile) -----------------------------------------------------------
BATCH_GET_LIMIT = 100  # BatchGetItem reads at most 100 items per call
LOOKUP_FIELDS = ("pk", "etag", "status", "lease_until", "expiration", "claimed_at", "queued_at", "finished_at",
                 "last_error", "outcome", "attempts", "silver_key", "rows", "rejected_rows")


def batch_get(ddb, *, table: str, keys: list[tuple[str, str]], attempts: int = 8,
              sleep: Callable[[float], None] = time.sleep, on_call: Callable[[], None] | None = None
              ) -> dict[tuple[str, str], dict]:
    """The ledger items of many (pk, etag) versions: BatchGetItem of 100, strongly consistent;
    UnprocessedKeys (throttling) are asked again with jittered backoff. Absent versions are
    absent from the result."""
    names = {f"#{i}": name for i, name in enumerate(LOOKUP_FIELDS)}
    found: dict[tuple[str, str], dict] = {}
    for start in range(0, len(keys), BATCH_GET_LIMIT):
        chunk = list(dict.fromkeys(keys[start:start + BATCH_GET_LIMIT]))  # a repeated key is a ValidationException
        request = {table: {"Keys": [{"pk": {"S": pk}, "etag": {"S": etag}} for pk, etag in chunk],
                           "ConsistentRead": True, "ProjectionExpression": ", ".join(names),
                           "ExpressionAttributeNames": names}}
        for attempt in range(attempts):
            if attempt:
                sleep(random.uniform(0, min(5.0, 0.05 * 2**attempt)))
            if on_call:
                on_call()
            response = with_retries(lambda r=request: ddb.batch_get_item(RequestItems=r),
                                    action="dynamodb:BatchGetItem", resource=table)
            for raw in response["Responses"].get(table, []):
                item = plain(raw)
                found[(item["pk"], item["etag"])] = item
            left = response["UnprocessedKeys"].get(table)
            if not left or not left.get("Keys"):
                break
            request = {table: left}
        else:
            raise OpsError(f"dynamodb:BatchGetItem on {table}: {len(request[table]['Keys'])} key(s) still unprocessed "
                           f"after {attempts} attempts (the table is throttled); run again later or raise its read "
                           "capacity")
    return found


def delete_items(ddb, *, table: str, items: list[dict], concurrency: int = 4, attempts: int = 8,
                 on_progress: Callable[[int], None] | None = None, sleep=None) -> tuple[int, list[dict]]:
    """BatchWriteItem deletes of 25; UnprocessedItems are retried with jittered backoff."""
    batches = [items[i:i + 25] for i in range(0, len(items), 25)]
    executor = BoundedExecutor(concurrency, name="delete")
    sleep = sleep or (lambda seconds: pause(executor.stop, seconds))

    def delete(batch: list[dict]) -> tuple[int, list[dict]]:
        requests = [{"DeleteRequest": {"Key": {"pk": {"S": i["pk"]}, "etag": {"S": i["etag"]}}}} for i in batch]
        for attempt in range(attempts):
            if attempt:
                sleep(random.uniform(0, min(5.0, 0.05 * 2**attempt)))
            response = with_retries(lambda r=requests: ddb.batch_write_item(RequestItems={table: r}),
                                    action="dynamodb:BatchWriteItem", resource=table, stop=executor.stop)
            requests = response["UnprocessedItems"].get(table)
            if not requests:
                return len(batch), []
        failed = [{"pk": r["DeleteRequest"]["Key"]["pk"]["S"], "etag": r["DeleteRequest"]["Key"]["etag"]["S"],
                   "error": "still unprocessed after retries"} for r in requests]
        return len(batch) - len(failed), failed

    deleted, failures = 0, []

    def record(_batch, outcome: tuple[int, list[dict]]) -> None:
        nonlocal deleted
        deleted += outcome[0]
        failures.extend(outcome[1])
        if on_progress:
            on_progress(deleted)

    with executor:
        executor.run(delete, batches, on_result=record)
    return deleted, failures


def purge(ddb, *, table: str, filters: PurgeFilter, dry_run: bool = False, confirm: Callable[[PurgeReport], bool],
          segments: int = 4, concurrency: int = 4, on_progress: Callable[[int], None] | None = None) -> PurgeReport:
    """Find matching items, ask `confirm(report)`, then delete them."""
    started = time.monotonic()
    items, scanned = scan_matching(ddb, table=table, filters=filters, segments=segments)
    report = PurgeReport(table=table, scanned=scanned, matched=len(items), dry_run=dry_run)
    for item in items:
        report.by_status[item.get("status", "?")] = report.by_status.get(item.get("status", "?"), 0) + 1
    report.sample = sorted(f"{i['pk']}#{i['etag']}" for i in items)[:5]
    if dry_run or not items or not confirm(report):
        report.seconds = round(time.monotonic() - started, 3)
        return report
    report.deleted, report.failed = delete_items(ddb, table=table, items=items, concurrency=concurrency,
                                                 on_progress=on_progress)
    report.seconds = round(time.monotonic() - started, 3)
    return report
