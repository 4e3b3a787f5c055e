"""Bronze, silver and quarantine keys: parsing and building.

A bronze key is `bronze/<type>/dt=YYYY-MM-DD/<name>.<jsonl|json>[.gz]`, or the replay form
`bronze/replay/<stamp>/<type>/dt=YYYY-MM-DD/<name>...`, or the form an S3 Batch Operations copy
writes, `bronze/replay/<stamp>/bronze/<type>/dt=YYYY-MM-DD/<name>...` (its S3PutObjectCopy can only
put a prefix before the whole source key). Anything else is rejected with a reason and never turned
into an output path.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

BRONZE_ROOT = "bronze/"
REPLAY_ROOT = "bronze/replay/"
SILVER_ROOT = "silver/"
QUARANTINE_ROOT = "quarantine/"
SUFFIXES = (".jsonl.gz", ".json.gz", ".jsonl", ".json")
MAX_KEY_BYTES = 1024

TYPE_RE = re.compile(r"^[a-z0-9_]+$")
STAMP_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
NAME_RE = re.compile(r"^[^/\x00-\x1f\x7f]+$")


class InvalidKey(ValueError):
    """A key that is not a valid bronze key; the message says why."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{reason} (key {key!r})")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class BronzeKey:
    key: str
    type: str
    dt: str
    name: str  # file name without its format suffix: the silver object's name
    suffix: str  # one of SUFFIXES
    replay_stamp: str | None = None

    @property
    def fmt(self) -> str:
        return "json" if self.suffix.startswith(".json.") or self.suffix == ".json" else "jsonl"

    @property
    def gzipped(self) -> bool:
        return self.suffix.endswith(".gz")

    @property
    def logical_key(self) -> str:
        """The key without the replay prefix: the same for an original and its replay copies."""
        return f"{BRONZE_ROOT}{self.type}/dt={self.dt}/{self.name}{self.suffix}"

    @property
    def silver_key(self) -> str:
        return silver_key(self.type, self.dt, self.name)

    @property
    def quarantine_key(self) -> str:
        return f"{QUARANTINE_ROOT}{self.type}/dt={self.dt}/{self.name}.jsonl"


def silver_key(type_: str, dt_: str, name: str) -> str:
    return f"{SILVER_ROOT}{type_}/dt={dt_}/{name}.parquet"


def has_supported_suffix(key: str) -> bool:
    return key.endswith(SUFFIXES)


def validate_dt(value: str) -> str:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value or ""):
        raise ValueError(f"dt {value!r} is not a date: use YYYY-MM-DD")
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"dt {value!r} is not a calendar date") from None
    return value


def parse_bronze_key(key: str) -> BronzeKey:
    """Parse a (URL-decoded) bronze key or raise InvalidKey with the reason."""
    if not isinstance(key, str) or not key:
        raise InvalidKey(str(key), "empty key")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKey(key[:80] + "...", f"key longer than {MAX_KEY_BYTES} bytes")
    if not key.startswith(BRONZE_ROOT):
        raise InvalidKey(key, "key is outside bronze/")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidKey(key, "key has an empty, '.' or '..' segment")
    stamp = None
    rest = parts[1:]
    if key.startswith(REPLAY_ROOT):  # no empty segment: a stamp follows "replay/"
        stamp = rest[1]
        if not STAMP_RE.match(stamp):
            raise InvalidKey(key, f"replay stamp {stamp!r} has characters outside [A-Za-z0-9_.:-]")
        rest = rest[2:]
        if len(rest) == 4 and rest[0] == BRONZE_ROOT.rstrip("/"):
            rest = rest[1:]  # a Batch Operations copy: <stamp>/<whole source key>
    if len(rest) != 3:
        raise InvalidKey(
            key,
            "expected bronze/<type>/dt=YYYY-MM-DD/<file> or bronze/replay/<stamp>/<type>/dt=YYYY-MM-DD/<file>",
        )
    type_, part, filename = rest
    if not TYPE_RE.match(type_):
        raise InvalidKey(key, f"type {type_!r} is not valid: use lower-case letters, digits and _")
    if not part.startswith("dt="):
        raise InvalidKey(key, f"partition {part!r} is not dt=YYYY-MM-DD")
    try:
        dt_ = validate_dt(part[3:])
    except ValueError as exc:
        raise InvalidKey(key, str(exc)) from None
    suffix = next((s for s in SUFFIXES if filename.endswith(s)), None)
    if suffix is None:
        raise InvalidKey(key, f"unsupported file type: use one of {', '.join(SUFFIXES)}")
    name = filename[: -len(suffix)]
    if not name or not NAME_RE.match(name):
        raise InvalidKey(key, "file name is empty or has control characters")
    return BronzeKey(key=key, type=type_, dt=dt_, name=name, suffix=suffix, replay_stamp=stamp)


def batch_replay_key(key: str, dest_prefix: str) -> str:
    """Destination of an S3 Batch Operations copy replay: `<dest_prefix>/<logical key>`."""
    return f"{dest_prefix.rstrip('/')}/{parse_bronze_key(key).logical_key}"


def replay_key(key: str, dest_prefix: str) -> str:
    """Destination of a copy replay: `<dest_prefix>/<part after bronze/>`."""
    parsed = parse_bronze_key(key)
    tail = parsed.logical_key[len(BRONZE_ROOT):]
    return f"{dest_prefix.rstrip('/')}/{tail}"
