"""The v1 work-unit message: one small SQS body per bronze object.

Built and parsed only here, so ingest and `eltops replay sqs` send byte-identical bodies for one
object (given the same origin and clock), apart from the optional `sequencer`.

`sequencer` (optional, v1): the S3 event's `sequencer` for this object version, the order between
versions of one key. Only S3 notifications and EventBridge events carry it; a unit without it
(replay sqs, redrive, messages from before the field existed) is ordered by its read instead: the
transform reads with `IfMatch=<etag>`, so it only ever writes a version that was current when read
(see docs/version-ordering.md). The field is left out of the body when absent, so bodies from
before it existed parse unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass

from lambdas.shared.keys import InvalidKey, parse_bronze_key

VERSION = 1
ORIGINS = ("s3-event", "replay-sqs", "redrive")
FIELDS = ("v", "bucket", "key", "etag", "size", "type", "dt", "origin", "enqueued_at")
OPTIONAL_FIELDS = ("sequencer",)
# S3 sequencers are 16-18 hex digits today; the bound only keeps hostile bodies out of the ledger.
MAX_SEQUENCER_CHARS = 64
_HEX = re.compile(r"^[0-9A-Fa-f]+$")


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
    sequencer: str = ""  # empty: no order known (see the module docstring)

    @property
    def object_id(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def body(self) -> str:
        """Canonical JSON: fixed field order, no spaces."""
        data = asdict(self)
        out = {f: data[f] for f in FIELDS}
        out.update({f: data[f] for f in OPTIONAL_FIELDS if data[f]})
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False)

    def message_attributes(self) -> dict:
        return {
            name: {"DataType": "String", "StringValue": getattr(self, name)}
            for name in ("type", "dt", "origin")
        }


def normalize_etag(etag: str) -> str:
    """S3 events carry the ETag bare, HEAD/List quote it: the ledger and messages keep it bare."""
    return (etag or "").strip().strip('"')


def normalize_sequencer(value) -> str:
    """A bare, upper-case hex sequencer, "" when absent; InvalidWorkUnit when it is not hex."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not _HEX.match(value) or len(value) > MAX_SEQUENCER_CHARS:
        raise InvalidWorkUnit(f"field 'sequencer' must be a hex string of at most {MAX_SEQUENCER_CHARS} "
                              f"characters (the S3 event's sequencer), got {str(value)[:80]!r}")
    return value.upper()


def compare_sequencers(a: str, b: str) -> int:
    """-1, 0 or 1 as sequencer `a` is older than, equal to or newer than `b` (same key only).

    As S3 documents: right-pad the shorter with zeros, then compare the strings
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html).
    """
    a, b = normalize_sequencer(a), normalize_sequencer(b)
    if not a or not b:
        raise ValueError("compare_sequencers needs two sequencers; an absent one has no order")
    width = max(len(a), len(b))
    a, b = a.ljust(width, "0"), b.ljust(width, "0")
    return (a > b) - (a < b)


def is_newer(candidate: str, than: str | None) -> bool:
    """True when `candidate` is a sequencer newer than `than`; a missing `than` counts as older
    (a ledger item or silver object written before sequencers were recorded)."""
    if not candidate:
        return False
    return not than or compare_sequencers(candidate, than) > 0


def utc_now_iso(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(
    *, bucket: str, key: str, etag: str, size: int, origin: str, now: dt.datetime | None = None,
    sequencer: str | None = None,
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
        sequencer=normalize_sequencer(sequencer),
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
    return WorkUnit(**{f: data[f] for f in FIELDS}, sequencer=normalize_sequencer(data.get("sequencer")))
