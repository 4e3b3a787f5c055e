"""The v1 work-unit message: one small SQS body per bronze object.

Built and parsed only here, so ingest and `eltops replay sqs` send byte-identical bodies for one
object (given the same origin and clock).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass

from lambdas.shared.keys import InvalidKey, parse_bronze_key

VERSION = 1
ORIGINS = ("s3-event", "replay-sqs", "redrive")
FIELDS = ("v", "bucket", "key", "etag", "size", "type", "dt", "origin", "enqueued_at")


class InvalidWorkUnit(ValueError):
    """A body that is not a valid v1 work unit; the message says why."""


@dataclass(frozen=True)
class WorkUnit:
    bucket: str
    key: str
    etag: str
    size: int
    type: str
    dt: str
    origin: str
    enqueued_at: str
    v: int = VERSION

    @property
    def object_id(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def body(self) -> str:
        """Canonical JSON: fixed field order, no spaces."""
        data = asdict(self)
        return json.dumps({f: data[f] for f in FIELDS}, separators=(",", ":"), ensure_ascii=False)

    def message_attributes(self) -> dict:
        return {
            name: {"DataType": "String", "StringValue": getattr(self, name)}
            for name in ("type", "dt", "origin")
        }


def normalize_etag(etag: str) -> str:
    """S3 events carry the ETag bare, HEAD/List quote it: the ledger and messages keep it bare."""
    return (etag or "").strip().strip('"')


def utc_now_iso(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(
    *, bucket: str, key: str, etag: str, size: int, origin: str, now: dt.datetime | None = None
) -> WorkUnit:
    """Build a work unit for one object; type and dt come from the key, which must parse."""
    if origin not in ORIGINS:
        raise InvalidWorkUnit(f"origin {origin!r} is not one of {', '.join(ORIGINS)}")
    parsed = parse_bronze_key(key)
    etag = normalize_etag(etag)
    if not etag:
        raise InvalidWorkUnit(f"object s3://{bucket}/{key} has no ETag")
    return WorkUnit(
        bucket=bucket,
        key=key,
        etag=etag,
        size=int(size),
        type=parsed.type,
        dt=parsed.dt,
        origin=origin,
        enqueued_at=utc_now_iso(now),
    )


def parse(body: str | bytes) -> WorkUnit:
    """Parse and validate a v1 body or raise InvalidWorkUnit saying what is wrong."""
    try:
        data = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise InvalidWorkUnit(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidWorkUnit(f"body is a JSON {type(data).__name__}, expected an object")
    if data.get("v") != VERSION:
        raise InvalidWorkUnit(f"unknown work-unit version v={data.get('v')!r}; this code reads v={VERSION}")
    missing = [f for f in FIELDS if f not in data]
    if missing:
        raise InvalidWorkUnit(f"body lacks field(s) {', '.join(missing)}")
    for f in ("bucket", "key", "etag", "type", "dt", "origin", "enqueued_at"):
        if not isinstance(data[f], str) or not data[f]:
            raise InvalidWorkUnit(f"field {f!r} must be a non-empty string, got {data[f]!r}")
    if not isinstance(data["size"], int) or isinstance(data["size"], bool) or data["size"] < 0:
        raise InvalidWorkUnit(f"field 'size' must be a non-negative integer, got {data['size']!r}")
    if data["origin"] not in ORIGINS:
        raise InvalidWorkUnit(f"origin {data['origin']!r} is not one of {', '.join(ORIGINS)}")
    try:
        parsed = parse_bronze_key(data["key"])
    except InvalidKey as exc:
        raise InvalidWorkUnit(f"key is not a bronze key: {exc.reason}") from None
    if (parsed.type, parsed.dt) != (data["type"], data["dt"]):
        raise InvalidWorkUnit(
            f"type/dt {data['type']}/{data['dt']} do not match the key's {parsed.type}/{parsed.dt}"
        )
    return WorkUnit(**{f: data[f] for f in FIELDS})
