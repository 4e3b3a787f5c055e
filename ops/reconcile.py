"""Reconcile a window: join the bronze listing, the ledger and the silver listing, and report every
object whose state is wrong.

Categories (one per object, the first that applies):

- `never-ingested`: no ledger item for the object's current version (or only an expired one), and
  no silver object at least as new as the bronze object.
- `claim-expired`: CLAIMED and its lease ran out (the ingest that claimed it died before sending).
- `queued-too-long`: QUEUED longer than `queued_max_age` (the work unit was lost or is stuck).
- `failed`: FAILED (`detail` is the ledger's last_error).
- `silver-missing`: DONE but no silver object.
- `silver-stale`: the silver object is older than the bronze object (LastModified): it was made
  from an earlier version.
- `orphan-silver`: a silver object whose bronze source does not exist (nothing to replay).

A CLAIMED, QUEUED or FAILED item is not a gap when a silver object written since (at or after the
item's last time, and not older than the bronze object) exists: a copy replay processed the object
under its replay key. Likewise a version without a ledger item whose silver is current (its item
expired by TTL, or a copy replay made it).

Cost grows with the window, not the bucket (with `by="partition"`): partitions are found with
range listings, each partition's bronze and silver objects are listed once, ledger items are read
with BatchGetItem of 100 — no HeadObject or GetItem per object. Memory: one partition's silver names
(name -> LastModified) at a time, the bronze listing streamed page by page (`by="modified"` holds one
partition's in-window bronze objects too); gaps go out through `on_gap` as they are found.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from lambdas.shared.keys import BRONZE_ROOT, SILVER_ROOT, InvalidKey, parse_bronze_key
from lambdas.shared.ledger import CLAIMED, DONE, FAILED, QUEUED, object_pk
from ops.errors import UsageError
from ops.executor import BoundedExecutor
from ops.ledger import BATCH_GET_LIMIT, batch_get
from ops.listing import REPLAY_PREFIX, ObjectInfo, _info, _pages, find_partitions
from ops.timewindow import Window, as_utc

NEVER_INGESTED = "never-ingested"
CLAIM_EXPIRED = "claim-expired"
QUEUED_TOO_LONG = "queued-too-long"
FAILED_ITEM = "failed"
SILVER_MISSING = "silver-missing"
SILVER_STALE = "silver-stale"
ORPHAN_SILVER = "orphan-silver"
CATEGORIES = (NEVER_INGESTED, CLAIM_EXPIRED, QUEUED_TOO_LONG, FAILED_ITEM, SILVER_MISSING, SILVER_STALE,
              ORPHAN_SILVER)
REPLAYABLE = frozenset(CATEGORIES) - {ORPHAN_SILVER}
FIRST_KEYS = 5


@dataclass(frozen=True)
class Gap:
    key: str  # the bronze key (the silver key for orphan-silver)
    category: str
    detail: str
    bucket: str
    etag: str = ""
    size: int = 0
    last_modified: str = ""

    def as_object(self) -> ObjectInfo:
        """The bronze object to replay."""
        return ObjectInfo(bucket=self.bucket, key=self.key, size=self.size, etag=self.etag,
                          last_modified=dt.datetime.fromisoformat(self.last_modified))

    def record(self) -> dict:
        return {"key": self.key, "category": self.category, "detail": self.detail, "bucket": self.bucket,
                "etag": self.etag, "size": self.size, "last_modified": self.last_modified}


@dataclass
class ReconcileReport:
    bucket: str
    silver_bucket: str
    table: str
    prefix: str
    by: str
    start: str
    end: str
    objects: int = 0  # bronze objects checked (in the window)
    silver_objects: int = 0  # silver objects listed in the partitions read
    partitions: int = 0
    not_bronze_keys: int = 0  # keys ingest skips (not bronze keys): not gaps, replay cannot help
    gaps: int = 0
    by_category: dict = field(default_factory=dict)
    first_keys: dict = field(default_factory=dict)
    api_calls: dict = field(default_factory=dict)
    seconds: float = 0.0
    inventory: dict | None = None  # with from_inventory: the report's summary (age, live tail, warnings)

    @property
    def replayable(self) -> int:
        return sum(n for c, n in self.by_category.items() if c in REPLAYABLE)


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return as_utc(dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))).timestamp()
    except ValueError:
        return None


def classify(obj: ObjectInfo, item: dict | None, silver_modified: float | None, *, now: float,
             queued_max_age: float) -> tuple[str, str] | None:
    """The gap category and detail of one bronze object version, or None when its state is right.
    `silver_modified`: its silver object's LastModified (epoch s), None when there is none."""
    bronze_modified = obj.last_modified.timestamp()
    silver_current = silver_modified is not None and silver_modified >= bronze_modified
    stale = (SILVER_STALE, f"silver written {_iso(silver_modified)} is older than this bronze version "
                           f"({_iso(bronze_modified)})") if silver_modified is not None else None
    if item is None or int(item.get("expiration") or 0) < now:
        if silver_current:
            return None  # processed through a replay copy, or its item expired after it was done
        if stale:
            return stale[0], stale[1] + "; no ledger item for it"
        return NEVER_INGESTED, ("only an expired ledger item for this version" if item else
                                "no ledger item for this version and no silver object")
    status = item.get("status")
    last = max(filter(None, (_epoch(item.get(n)) for n in ("claimed_at", "queued_at", "finished_at"))), default=0.0)
    redone_since = silver_current and silver_modified >= last
    if status == CLAIMED:
        lease = int(item.get("lease_until") or 0) / 1000
        if lease < now and not redone_since:
            return CLAIM_EXPIRED, f"claimed {item.get('claimed_at')}, lease ran out {_iso(lease)}; never queued"
        return None
    if status == QUEUED:
        queued = _epoch(item.get("queued_at")) or last
        if now - queued > queued_max_age and not redone_since:
            return QUEUED_TOO_LONG, f"queued {item.get('queued_at')} ({(now - queued) / 60:.0f} min ago), not done"
        return None
    if status == FAILED:
        if redone_since:
            return None
        return FAILED_ITEM, str(item.get("last_error") or "failed (no error recorded)")[:300]
    if status == DONE:
        if silver_modified is None:
            return SILVER_MISSING, f"DONE ({item.get('outcome') or 'written'}) at {item.get('finished_at')}, " \
                                   "but no silver object"
        if not silver_current:
            return stale
        return None
    return NEVER_INGESTED, f"ledger item has unknown status {status!r}"


def _iso(epoch: float | None) -> str:
    return dt.datetime.fromtimestamp(epoch or 0, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Counting:
    """Counts a client's ListObjectsV2 calls (the report's cost figures); everything else passes."""

    def __init__(self, client, calls: Counter, lock: threading.Lock):
        self._client, self._calls, self._lock = client, calls, lock

    def list_objects_v2(self, **kwargs):
        with self._lock:
            self._calls["s3:ListObjectsV2"] += 1
        return self._client.list_objects_v2(**kwargs)

    def get_object(self, **kwargs):  # an inventory report's manifest and data files
        with self._lock:
            self._calls["s3:GetObject"] += 1
        return self._client.get_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


class _Reconciler:
    def __init__(self, s3, ddb, *, bucket: str, silver_bucket: str, table: str, window: Window,
                 queued_max_age: float, now: float, on_gap: Callable[[Gap], None], report: ReconcileReport,
                 silver_s3=None, concurrency: int = 4):
        self.calls: Counter = Counter()
        self.lock = threading.Lock()  # counters shared by the partition workers
        self.local = threading.local()  # a partition worker's gaps, emitted in partition order
        self.concurrency = concurrency
        self.s3 = _Counting(s3, self.calls, self.lock)
        self.silver_s3 = _Counting(silver_s3 or s3, self.calls, self.lock)
        self.ddb = ddb
        self.bucket, self.silver_bucket, self.table = bucket, silver_bucket, table
        self.window, self.queued_max_age, self.now = window, queued_max_age, now
        self.on_gap, self.report = on_gap, report

    def gap(self, g: Gap) -> None:
        buffer = getattr(self.local, "buffer", None)
        if buffer is not None:  # in a partition worker: the main thread emits it
            buffer.append(g)
            return
        r = self.report
        r.gaps += 1
        r.by_category[g.category] = r.by_category.get(g.category, 0) + 1
        first = r.first_keys.setdefault(g.category, [])
        if len(first) < FIRST_KEYS:
            first.append(g.key)
        self.on_gap(g)

    def silver_partition(self, type_: str, day: str) -> dict[str, float]:
        """name -> LastModified (epoch s) of one silver partition."""
        prefix = f"{SILVER_ROOT}{type_}/dt={day}/"
        names: dict[str, float] = {}
        for page in _pages(self.silver_s3, self.silver_bucket, prefix):
            for obj in page.get("Contents", []):
                rest = obj["Key"][len(prefix):]
                if "/" in rest or not rest.endswith(".parquet"):
                    continue
                names[rest[: -len(".parquet")]] = as_utc(obj["LastModified"]).timestamp()
        self.count("silver_objects", len(names))
        return names

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self.report, name, getattr(self.report, name) + n)

    def check(self, batch: list[tuple[ObjectInfo, str]], silver: dict[str, float]) -> None:
        """Classify bronze objects (with their names), reading their ledger items in one batch."""
        def count_call():
            with self.lock:
                self.calls["dynamodb:BatchGetItem"] += 1

        items = batch_get(self.ddb, table=self.table, keys=[(object_pk(o.bucket, o.key), o.etag) for o, _ in batch],
                          on_call=count_call)
        self.count("objects", len(batch))
        for obj, name in batch:
            found = classify(obj, items.get((object_pk(obj.bucket, obj.key), obj.etag)), silver.get(name),
                             now=self.now, queued_max_age=self.queued_max_age)
            if found:
                self.gap(Gap(key=obj.key, category=found[0], detail=found[1], bucket=obj.bucket, etag=obj.etag,
                             size=obj.size, last_modified=obj.last_modified.isoformat()))

    def orphans(self, type_: str, day: str, silver: dict[str, float], seen: set[str],
                only_in_window: bool) -> None:
        for name in sorted(set(silver) - seen):
            if only_in_window and dt.datetime.fromtimestamp(silver[name], dt.UTC) not in self.window:
                continue
            self.gap(Gap(key=f"{SILVER_ROOT}{type_}/dt={day}/{name}.parquet", category=ORPHAN_SILVER,
                         detail=f"no bronze object {BRONZE_ROOT}{type_}/dt={day}/{name}.* in s3://{self.bucket}",
                         bucket=self.silver_bucket, last_modified=_iso(silver[name])))

    def bronze_key(self, key: str):
        """The parsed key, or None for keys ingest skips (counted)."""
        if key.startswith(REPLAY_PREFIX):
            return None
        try:
            return parse_bronze_key(key)
        except InvalidKey:
            self.count("not_bronze_keys")
            return None

    # --- by partition: every object of each dt= day the window overlaps ---------------------------
    def by_partition(self, prefix: str) -> None:
        bronze = find_partitions(self.s3, bucket=self.bucket, prefix=prefix, window=self.window)
        silver_prefix = SILVER_ROOT + prefix[len(BRONZE_ROOT):]
        silver = find_partitions(self.silver_s3, bucket=self.silver_bucket, prefix=silver_prefix, window=self.window)
        parts = sorted({p[len(BRONZE_ROOT):] for p in bronze} | {p[len(SILVER_ROOT):] for p in silver})
        self.report.partitions = len(parts)
        emitted: dict[int, list[Gap]] = {}
        following = 0

        def emit(item: tuple[int, str], gaps: list[Gap]) -> None:  # in this thread, in partition order
            nonlocal following
            emitted[item[0]] = gaps
            while following in emitted:
                for g in emitted.pop(following):
                    self.gap(g)
                following += 1

        # Partitions are joined side by side (memory: one partition's silver names per worker).
        with BoundedExecutor(self.concurrency, name="reconcile") as executor:
            executor.run(lambda item: self.join_partition(item[1]), list(enumerate(parts)), on_result=emit)

    def join_partition(self, part: str) -> list[Gap]:
        """One partition ("<type>/dt=YYYY-MM-DD/"): its gaps, in key order."""
        self.local.buffer = []
        try:
            type_, _, day = part.rstrip("/").partition("/dt=")
            names = self.silver_partition(type_, day)
            seen: set[str] = set()
            batch: list[tuple[ObjectInfo, str]] = []
            for page in _pages(self.s3, self.bucket, BRONZE_ROOT + part):
                for raw in page.get("Contents", []):
                    parsed = self.bronze_key(raw["Key"])
                    if parsed is None:
                        continue
                    seen.add(parsed.name)
                    batch.append((_info(self.bucket, raw), parsed.name))
                    if len(batch) == BATCH_GET_LIMIT:
                        self.check(batch, names)
                        batch = []
            if batch:
                self.check(batch, names)
            self.orphans(type_, day, names, seen, only_in_window=False)
            return self.local.buffer
        finally:
            self.local.buffer = None

    # --- from an S3 Inventory report: its objects of the window, grouped by partition -------------
    def from_report(self, objects, prefix: str, by: str) -> None:
        """The report's rows come in no useful order, so the window's bronze objects are grouped
        by partition in memory (ObjectInfo uses slots: ~0.4 KB each) before each partition is joined."""
        groups: dict[tuple[str, str], list[tuple[ObjectInfo, str]]] = {}
        for obj in objects:
            parsed = self.bronze_key(obj.key)
            if parsed is not None:
                groups.setdefault((parsed.type, parsed.dt), []).append((obj, parsed.name))
        if by == "partition":  # silver partitions of the window without bronze objects hold orphans
            silver_prefix = SILVER_ROOT + prefix[len(BRONZE_ROOT):]
            for part in find_partitions(self.silver_s3, bucket=self.silver_bucket, prefix=silver_prefix,
                                        window=self.window):
                type_, _, day = part[len(SILVER_ROOT):].rstrip("/").partition("/dt=")
                groups.setdefault((type_, day), [])
        for (type_, day), batch in sorted(groups.items()):
            self.report.partitions += 1
            names = self.silver_partition(type_, day)
            for start in range(0, len(batch), BATCH_GET_LIMIT):
                self.check(batch[start:start + BATCH_GET_LIMIT], names)
            self.orphans(type_, day, names, {name for _, name in batch}, only_in_window=by == "modified")

    # --- by modified: objects of the prefix whose LastModified is in the window ---------------------
    def by_modified(self, prefix: str) -> None:
        current: tuple[str, str] | None = None
        in_window: list[tuple[ObjectInfo, str]] = []
        seen: set[str] = set()

        def finish() -> None:
            if current is None or not in_window:
                return
            self.report.partitions += 1
            names = self.silver_partition(*current)
            for start in range(0, len(in_window), BATCH_GET_LIMIT):
                self.check(in_window[start:start + BATCH_GET_LIMIT], names)
            self.orphans(*current, names, seen, only_in_window=True)

        for page in _pages(self.s3, self.bucket, prefix):
            for raw in page.get("Contents", []):
                parsed = self.bronze_key(raw["Key"])
                if parsed is None:
                    continue
                if (parsed.type, parsed.dt) != current:
                    finish()
                    current, in_window, seen = (parsed.type, parsed.dt), [], set()
                seen.add(parsed.name)
                info = _info(self.bucket, raw)
                if info.last_modified in self.window:
                    in_window.append((info, parsed.name))
        finish()


def reconcile(s3, ddb, *, bucket: str, prefix: str, window: Window, silver_bucket: str, table: str,
              by: str = "partition", queued_max_age: float = 3600.0, now: float | None = None,
              on_gap: Callable[[Gap], None] = lambda gap: None, silver_s3=None, from_inventory: str | None = None,
              live_tail: bool | None = None, concurrency: int = 4) -> ReconcileReport:
    """Every gap of the window, handed to `on_gap` as found; returns the summary. With
    `from_inventory` (an S3 Inventory manifest or configuration folder) the bronze objects come
    from that report (and its live tail, `ops.inventory`) instead of ListObjectsV2."""
    if by not in ("modified", "partition"):
        raise UsageError(f"--by {by!r} is not modified or partition")
    if not prefix.startswith(BRONZE_ROOT) or prefix.startswith(REPLAY_PREFIX):
        raise UsageError(f"--prefix {prefix!r}: reconcile compares original bronze objects with silver; use a prefix "
                         "under bronze/ outside bronze/replay/, e.g. bronze/ or bronze/orders/")
    started = time.monotonic()
    report = ReconcileReport(bucket=bucket, silver_bucket=silver_bucket, table=table, prefix=prefix, by=by,
                             start=window.start.isoformat(), end=window.end.isoformat(),
                             by_category={c: 0 for c in CATEGORIES})
    worker = _Reconciler(s3, ddb, bucket=bucket, silver_bucket=silver_bucket, table=table, window=window,
                         queued_max_age=queued_max_age, now=time.time() if now is None else now, on_gap=on_gap,
                         report=report, silver_s3=silver_s3, concurrency=concurrency)
    if from_inventory:
        from ops.inventory import open_inventory

        source = open_inventory(worker.s3, manifest_url=from_inventory, bucket=bucket, prefix=prefix, window=window,
                                by=by, live_tail=live_tail)
        worker.from_report(source.objects(), prefix, by)
        report.inventory = source.summary()
    elif by == "partition":
        worker.by_partition(prefix)
    else:
        worker.by_modified(prefix)
    report.api_calls = dict(worker.calls)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def gaps_digest(gaps: list[Gap]) -> str:
    """Names one set of gaps (a checkpoint belongs to the gaps it replays)."""
    import hashlib

    digest = hashlib.sha256()
    for g in sorted(gaps, key=lambda g: (g.key, g.etag)):
        digest.update(f"{g.key}\0{g.etag}\n".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


def replay_gaps(*, gaps: list[Gap], how: str, report: ReconcileReport, s3=None, sqs=None,
                queue_url: str | None = None, dest_prefix: str | None = None, concurrency: int = 16,
                max_rps: float | None = None, dry_run: bool = False, checkpoint_path: str | None = None,
                report_path: str | None = None, confirm: Callable[[str], bool] = lambda question: True,
                on_progress=None):
    """Replay exactly the replayable gaps (every category but orphan-silver) of `report` through
    the replay library: `how` is "sqs" (work units to `queue_url`) or "copy" (server-side copies
    under `dest_prefix`, default bronze/replay/<stamp>). The checkpoint belongs to this window and
    this set of gaps (`gaps_digest`), so an interrupted replay of the same gaps resumes, and a
    later reconcile that finds other gaps starts afresh. `confirm(question)` is asked before
    anything is sent (not for a dry run). Returns the ReplayReport, or None when nothing is
    replayable."""
    from ops.errors import OpsError
    from ops.replay import check_dest_prefix, checkpoint_for, destination, replay_copy, replay_sqs

    todo = [g for g in gaps if g.category in REPLAYABLE]
    if not todo:
        return None
    if how == "sqs" and not queue_url:
        raise UsageError("--replay sqs needs --queue-url (or ELT_QUEUE_URL): the events queue")
    if how not in ("sqs", "copy"):
        raise UsageError(f"--replay {how!r} is not sqs or copy")
    check_dest_prefix(dest_prefix)
    identity = {"command": f"reconcile replay {how}", "bucket": report.bucket, "prefix": report.prefix,
                "by": report.by, "start": report.start, "end": report.end, "target": queue_url or dest_prefix,
                "gaps": gaps_digest(todo)}
    checkpoint = checkpoint_for("reconcile", identity, checkpoint_path, dry_run)
    target = queue_url if how == "sqs" else destination(checkpoint, dest_prefix)
    if not dry_run and not confirm(f"Replay {len(todo)} gap(s) by {how} to {target}?"):
        raise OpsError("not confirmed; nothing replayed")
    common = dict(objects=[g.as_object() for g in todo], bucket=report.bucket, max_rps=max_rps, dry_run=dry_run,
                  checkpoint=checkpoint, report_path=report_path, on_progress=on_progress)
    if how == "sqs":
        # Each request carries 10 messages: half the copy concurrency keeps the same load.
        return replay_sqs(sqs, queue_url=queue_url, concurrency=max(1, concurrency // 2), **common)
    return replay_copy(s3, dest_prefix=target, concurrency=concurrency, **common)
