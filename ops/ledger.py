"""The object ledger from the operator's side: one object's story, and purging items so objects
can be ingested again."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lambdas.shared.keys import InvalidKey, parse_bronze_key
from lambdas.shared.ledger import STATUSES, Ledger, parse_pk, plain
from ops.aws import error_code, with_retries
from ops.errors import OpsError, UsageError
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
    note: str = ""


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
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot tell", said below
        if error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
            current = None
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
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                status.silver_exists = False
            else:
                raise OpsError(f"cannot read s3://{silver_bucket}/{status.silver_key}: {exc}") from exc
    if not versions and not status.note:
        status.note = "no ledger item: never ingested, purged, or expired and deleted by TTL"
    return status


# --- purge ---------------------------------------------------------------------------------------
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


def scan_matching(ddb, *, table: str, filters: PurgeFilter, segments: int = 4,
                  now: float | None = None) -> tuple[list[dict], int]:
    """Parallel Scan (one worker per segment) returning matching items' keys and status."""
    for status in filters.statuses:
        if status not in STATUSES:
            raise UsageError(f"--status {status!r} is not one of {', '.join(STATUSES)}")
    expression, names, values = filters.expression(now if now is not None else time.time())

    def scan(segment: int) -> tuple[list[dict], int]:
        items, scanned, start = [], 0, None
        while True:
            kwargs = dict(TableName=table, Segment=segment, TotalSegments=segments,
                          ProjectionExpression="pk, etag, #st", ExpressionAttributeNames={**names, "#st": "status"})
            if expression:
                kwargs["FilterExpression"] = expression
                kwargs["ExpressionAttributeValues"] = values
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = with_retries(lambda k=kwargs: ddb.scan(**k), action="dynamodb:Scan", resource=table)
            scanned += page.get("ScannedCount", 0)
            items += [plain(i) for i in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if not start:
                return items, scanned

    with ThreadPoolExecutor(max_workers=segments) as pool:
        results = list(pool.map(scan, range(segments)))
    return [i for items, _ in results for i in items], sum(s for _, s in results)


def delete_items(ddb, *, table: str, items: list[dict], concurrency: int = 4, attempts: int = 8,
                 on_progress: Callable[[int], None] | None = None, sleep=time.sleep) -> tuple[int, list[dict]]:
    """BatchWriteItem deletes of 25; UnprocessedItems are retried with jittered backoff."""
    batches = [items[i:i + 25] for i in range(0, len(items), 25)]

    def delete(batch: list[dict]) -> tuple[int, list[dict]]:
        requests = [{"DeleteRequest": {"Key": {"pk": {"S": i["pk"]}, "etag": {"S": i["etag"]}}}} for i in batch]
        for attempt in range(attempts):
            if attempt:
                sleep(random.uniform(0, min(5.0, 0.05 * 2**attempt)))
            response = with_retries(lambda r=requests: ddb.batch_write_item(RequestItems={table: r}),
                                    action="dynamodb:BatchWriteItem", resource=table)
            requests = response.get("UnprocessedItems", {}).get(table, [])
            if not requests:
                return len(batch), []
        failed = [{"pk": r["DeleteRequest"]["Key"]["pk"]["S"], "etag": r["DeleteRequest"]["Key"]["etag"]["S"],
                   "error": "still unprocessed after retries"} for r in requests]
        return len(batch) - len(failed), failed

    deleted, failures = 0, []
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for count, failed in pool.map(delete, batches):
            deleted += count
            failures += failed
            if on_progress:
                on_progress(deleted)
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
