"""Object-created notifications in every shape the ingest Lambda receives.

- an S3 event notification (keys URL-encoded, spaces as '+': decoded with unquote_plus);
- the EventBridge "Object Created" event (keys are not encoded there);
- either of those wrapped in an SQS body or an SNS message (or SNS inside SQS).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote_plus


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    etag: str
    size: int
    event_name: str
    source_id: str | None  # the SQS messageId that carried it, for a partial batch response
    sequencer: str = ""  # the event's order between versions of this key ("" when absent)


@dataclass(frozen=True)
class Skipped:
    reason: str
    source_id: str | None = None
    detail: str = ""


def extract(event, source_id: str | None = None) -> Iterator[ObjectCreated | Skipped]:
    if isinstance(event, str | bytes):
        try:
            event = json.loads(event)
        except ValueError:
            yield Skipped("body is not JSON", source_id, str(event)[:200])
            return
    if not isinstance(event, dict):
        yield Skipped("event is not a JSON object", source_id)
        return
    if event.get("Event") == "s3:TestEvent":
        yield Skipped("s3:TestEvent", source_id)
        return
    if event.get("Type") == "Notification" and "Message" in event:  # SNS envelope (e.g. inside SQS)
        yield from extract(event["Message"], source_id)
        return
    if event.get("source") == "aws.s3" and "detail" in event:
        yield from _eventbridge(event, source_id)
        return
    records = event.get("Records")
    if not isinstance(records, list):
        yield Skipped("not an S3, EventBridge, SQS or SNS event", source_id, ",".join(sorted(event))[:200])
        return
    for record in records:
        if not isinstance(record, dict):
            yield Skipped("record is not an object", source_id)
            continue
        source = record.get("eventSource") or record.get("EventSource")
        if source == "aws:s3":
            yield from _s3_record(record, source_id)
        elif source == "aws:sqs":
            yield from extract(record.get("body", ""), record.get("messageId") or source_id)
        elif source == "aws:sns":
            yield from extract((record.get("Sns") or {}).get("Message", ""), source_id)
        else:
            yield Skipped(f"unsupported event source {source!r}", source_id)


def _s3_record(record: dict, source_id: str | None) -> Iterator[ObjectCreated | Skipped]:
    name = record.get("eventName", "")
    if not name.startswith("ObjectCreated:"):
        yield Skipped(f"event {name!r} is not ObjectCreated", source_id)
        return
    s3 = record.get("s3") or {}
    obj = s3.get("object") or {}
    bucket = (s3.get("bucket") or {}).get("name")
    if not bucket or "key" not in obj:
        yield Skipped("S3 record lacks bucket or key", source_id)
        return
    yield ObjectCreated(
        bucket=bucket,
        key=unquote_plus(obj["key"]),
        etag=obj.get("eTag") or obj.get("etag") or "",
        size=int(obj.get("size") or 0),
        event_name=name,
        source_id=source_id,
        sequencer=obj.get("sequencer") or "",
    )


def _eventbridge(event: dict, source_id: str | None) -> Iterator[ObjectCreated | Skipped]:
    if event.get("detail-type") != "Object Created":
        yield Skipped(f"EventBridge {event.get('detail-type')!r} is not Object Created", source_id)
        return
    detail = event.get("detail") or {}
    obj = detail.get("object") or {}
    bucket = (detail.get("bucket") or {}).get("name")
    if not bucket or "key" not in obj:
        yield Skipped("EventBridge event lacks bucket or key", source_id)
        return
    yield ObjectCreated(
        bucket=bucket,
        key=obj["key"],  # EventBridge keys are not URL-encoded
        etag=obj.get("etag") or obj.get("eTag") or "",
        size=int(obj.get("size") or 0),
        event_name="ObjectCreated:" + str(detail.get("reason", "")),
        source_id=source_id,
        sequencer=obj.get("sequencer") or "",
    )
