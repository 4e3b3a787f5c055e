"""Replays: send a time window of bronze objects through the pipeline again.

- `replay_copy`: server-side CopyObject of each object to `<dest_prefix>/<part after bronze/>`, so
  the normal S3 -> ingest path runs again (objects over 5 GB use multipart copy). The laptop never
  moves the data.
- `replay_sqs`: the v1 work unit of each object (built by lambdas.shared from listing data, origin
  `replay-sqs`) sent straight to the events queue with SendMessageBatch; no object body is read.

Both run a bounded pool, honour a rate limit, write a checkpoint as work completes (a rerun
resumes without redoing finished work), append one report line per object, and stop cleanly on
Ctrl-C with the checkpoint saved. Failures are collected, not raised: the report lists them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from lambdas.shared import work_unit
from lambdas.shared.keys import InvalidKey, parse_bronze_key, replay_key
from ops.aws import require_queue, send_batch, with_retries
from ops.errors import AccessDenied, OpsError, UsageError
from ops.executor import BoundedExecutor
from ops.listing import ObjectInfo, list_objects, partition_hint
from ops.ratelimit import RateLimiter
from ops.state import FAILED, FINISHED, INTERRUPTED, Checkpoint, Report, default_checkpoint
from ops.timewindow import Window, make_window

COPY_OBJECT_LIMIT = 5 * 1024**3  # CopyObject copies at most 5 GB; above that, multipart copy
SQS_BATCH = 10
SEND_ATTEMPTS = 8


@dataclass
class ReplayReport:
    command: str
    bucket: str
    target: str  # destination prefix or queue URL
    planned: int
    bytes: int = 0  # of the objects still to do (set once the checkpoint is read)
    done: int = 0
    already_done: int = 0
    skipped: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    dry_run: bool = False
    interrupted: bool = False
    checkpoint: str | None = None
    report: str | None = None
    first_keys: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


@dataclass
class Progress:
    """What on_progress receives after each finished item."""

    done: int
    total: int
    bytes: int


def replay_stamp(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")


def _pool(executor: BoundedExecutor, items: list, work: Callable[[list], list[tuple[str, str, str]]], *,
          checkpoint: Checkpoint | None, report_file: Report, action: str, result: ReplayReport,
          on_progress: Callable[[Progress], None] | None, sizes: dict[str, int]) -> None:
    """Run `work(group)` over groups of items on the bounded executor; record each item's
    (key, outcome, detail). Ctrl-C cancels what has not started, lets what is running end (it sees
    the executor's `stop`), and saves the checkpoint with everything that finished."""
    counted_bytes = 0

    def finish(_group, outcomes: list[tuple[str, str, str]]) -> None:
        nonlocal counted_bytes
        ok_keys = []
        for key, outcome, detail in outcomes:
            if outcome == "ok":
                result.done += 1
                counted_bytes += sizes[key]
                ok_keys.append(key)
            elif outcome == "skipped":
                result.skipped.append({"key": key, "reason": detail})
                ok_keys.append(key)
            else:
                result.failed.append({"key": key, "error": detail})
            report_file.write(key=key, action=action, result=outcome, detail=detail)
        if checkpoint is not None and ok_keys:
            checkpoint.mark(ok_keys)
        if on_progress:
            on_progress(Progress(done=result.done + len(result.failed), total=result.planned - result.already_done,
                                 bytes=counted_bytes))

    try:
        executor.run(work, items, on_result=finish)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        executor.shutdown()
        if checkpoint is not None:
            checkpoint.save()


def _plan(objects: Iterable[ObjectInfo], checkpoint: Checkpoint | None, result: ReplayReport,
          report_file: Report, action: str) -> list[ObjectInfo]:
    todo = []
    for obj in objects:
        try:
            parse_bronze_key(obj.key)
        except InvalidKey as exc:
            result.skipped.append({"key": obj.key, "reason": exc.reason})
            report_file.write(key=obj.key, action=action, result="skipped", detail=exc.reason)
            continue
        if checkpoint is not None and obj.key in checkpoint:
            result.already_done += 1
            continue
        todo.append(obj)
    return todo


def _begin(command: str, *, objects, bucket: str, target: str, dry_run: bool, checkpoint, report_path,
           action: str) -> tuple[ReplayReport, Report, list[ObjectInfo]]:
    """The report, the audit file and the objects still to do (after the checkpoint)."""
    result = ReplayReport(command=command, bucket=bucket, target=target, planned=len(objects), dry_run=dry_run,
                          checkpoint=str(checkpoint.path) if checkpoint else None, report=report_path)
    report_file = Report(None if dry_run else report_path)
    todo = _plan(objects, checkpoint, result, report_file, action)
    result.bytes = sum(o.size for o in todo)
    return result, report_file, todo


def replay_copy(s3, *, objects: list[ObjectInfo], bucket: str, dest_prefix: str, concurrency: int = 16,
                max_rps: float | None = None, dry_run: bool = False, checkpoint: Checkpoint | None = None,
                report_path: str | None = None, on_progress: Callable[[Progress], None] | None = None,
                multipart_threshold: int = COPY_OBJECT_LIMIT,
                key_for: Callable[[str, str], str] = replay_key) -> ReplayReport:
    """Copy each object to `<dest_prefix>/<part after bronze/>` in the same bucket, server-side
    (`key_for` names the destination; the Batch Operations engine passes its own layout)."""
    started = time.monotonic()
    result, report_file, todo = _begin("replay copy", objects=objects, bucket=bucket, target=dest_prefix,
                                       dry_run=dry_run, checkpoint=checkpoint, report_path=report_path, action="copy")
    try:
        result.first_keys = [key_for(o.key, dest_prefix) for o in todo[:5]]
        if dry_run:
            return result
        executor = BoundedExecutor(concurrency, name="copy")
        stop = executor.stop
        limiter = RateLimiter(max_rps, stop=stop)
        transfer = TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=512 * 1024**2,
                                  max_concurrency=4)

        def copy(group: list[ObjectInfo]) -> list[tuple[str, str, str]]:
            obj = group[0]
            dest = key_for(obj.key, dest_prefix)
            source = {"Bucket": bucket, "Key": obj.key}
            # Copy exactly the listed version, and record it on the copy: the transform checks the
            # copy against its original with it (a copy outlived by an overwrite is superseded).
            extra = copy_extra_args(obj)
            limiter.acquire()

            def attempt():
                try:
                    if obj.size >= multipart_threshold:
                        return s3.copy(source, bucket, dest, ExtraArgs=extra, Config=transfer)
                    return s3.copy_object(Bucket=bucket, Key=dest, CopySource=source, **extra)
                except ClientError as exc:
                    if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:
                        return ORIGINAL_CHANGED
                    raise

            try:
                done = with_retries(attempt, action="s3:GetObject on the source and s3:PutObject on the destination",
                                    resource=f"s3://{bucket}/{obj.key}", stop=stop)
            except AccessDenied:
                raise
            except OpsError as exc:
                return [(obj.key, "failed", str(exc))]
            if done is ORIGINAL_CHANGED:
                return [(obj.key, "skipped", "the object changed since it was listed; its newer version has "
                                             "its own event, so there is nothing to replay")]
            return [(obj.key, "ok", dest)]

        _pool(executor, [[o] for o in todo], _stop_on_denied(copy), checkpoint=checkpoint,
              report_file=report_file, action="copy", result=result, on_progress=on_progress,
              sizes={o.key: o.size for o in todo})
        return result
    finally:
        report_file.close()
        result.seconds = round(time.monotonic() - started, 3)


ORIGINAL_CHANGED = object()
REPLAY_SOURCE_ETAG = "replay-source-etag"  # read by lambdas.transform.app (same name there)
_CONTENT_TYPES = {".jsonl": "application/x-ndjson", ".json": "application/json"}


def copy_extra_args(obj: ObjectInfo) -> dict:
    """CopyObject arguments for a replay copy of the listed version `obj`: only that version is
    copied (CopySourceIfMatch), and the copy's metadata names it. Replacing the metadata drops the
    original's user metadata, which the pipeline never reads."""
    parsed = parse_bronze_key(obj.key)
    content_type = "application/gzip" if parsed.gzipped else _CONTENT_TYPES[parsed.suffix]
    return {"CopySourceIfMatch": f'"{work_unit.normalize_etag(obj.etag)}"', "MetadataDirective": "REPLACE",
            "Metadata": {REPLAY_SOURCE_ETAG: work_unit.normalize_etag(obj.etag)}, "ContentType": content_type}


def replay_sqs(sqs, *, objects: list[ObjectInfo], bucket: str, queue_url: str, concurrency: int = 8,
               max_rps: float | None = None, dry_run: bool = False, checkpoint: Checkpoint | None = None,
               report_path: str | None = None, on_progress: Callable[[Progress], None] | None = None,
               now: Callable[[], dt.datetime] | None = None) -> ReplayReport:
    """Send each object's work unit (origin replay-sqs) to the queue in batches of 10."""
    started = time.monotonic()
    result, report_file, todo = _begin("replay sqs", objects=objects, bucket=bucket, target=queue_url,
                                       dry_run=dry_run, checkpoint=checkpoint, report_path=report_path, action="send")
    try:
        result.first_keys = [o.key for o in todo[:5]]
        if dry_run:
            return result
        executor = BoundedExecutor(concurrency, name="send")
        limiter = RateLimiter(max_rps, stop=executor.stop)
        groups = [todo[i:i + SQS_BATCH] for i in range(0, len(todo), SQS_BATCH)]

        def send(group: list[ObjectInfo]) -> list[tuple[str, str, str]]:
            moment = now() if now else None
            units = {str(i): work_unit.build(bucket=obj.bucket, key=obj.key, etag=obj.etag, size=obj.size,
                                             origin="replay-sqs", now=moment) for i, obj in enumerate(group)}
            return send_units(sqs, queue_url=queue_url, units=units, limiter=limiter)

        _pool(executor, groups, _stop_on_denied(send), checkpoint=checkpoint, report_file=report_file,
              action="send", result=result, on_progress=on_progress, sizes={o.key: o.size for o in todo})
        return result
    finally:
        report_file.close()
        result.seconds = round(time.monotonic() - started, 3)


def send_units(sqs, *, queue_url: str, units: dict[str, work_unit.WorkUnit], limiter: RateLimiter,
               attempts: int = SEND_ATTEMPTS, sleep: Callable[[float], None] = time.sleep) -> list[tuple[str, str, str]]:
    """One SendMessageBatch of up to 10 work units (`send_batch`). Returns (key, "ok"|"failed",
    message id or error) per unit."""
    entries = {i: {"MessageBody": u.body(), "MessageAttributes": u.message_attributes()} for i, u in units.items()}
    results = send_batch(sqs, queue_url=queue_url, entries=entries, limiter=limiter, attempts=attempts, sleep=sleep)
    return [(units[i].key, "ok" if sent else "failed", detail) for i, (sent, detail) in results.items()]


def _stop_on_denied(work):
    """AccessDenied fails every object alike: stop the run and say which permission is missing."""
    denied: list[AccessDenied] = []

    def guarded(group):
        if denied:
            return [(o.key, "failed", str(denied[0])) for o in group]
        try:
            return work(group)
        except AccessDenied as exc:
            denied.append(exc)
            raise

    return guarded




# --- one replay run, as the CLI (or a scheduler) asks for it -------------------------------------
@dataclass(frozen=True)
class ReplayPlan:
    """What a run is about to do, handed to `on_start` before any work."""

    command: str
    window: Window
    objects: int
    checkpoint: str | None
    resumed: bool
    already_done: int
    inventory: dict | None = None  # where an --from-inventory listing came from (ops.inventory)
    previous_state: str | None = None  # how the resumed run ended: interrupted, failed, running (killed)
    started_at: str | None = None  # when the resumed run started
    hint: str | None = None  # e.g. --by partition, when --by modified found nothing


def checkpoint_for(command: str, identity: dict, path: str | None, dry_run: bool, *, fresh: bool = False,
                   resume: str | None = None) -> Checkpoint | None:
    """The run's checkpoint (None for a dry run): `resume` (which must hold an unfinished run),
    `path`, or one per command and identity. A finished run's checkpoint is retired: the same
    command starts a new run; `fresh` starts over even from an unfinished one."""
    if fresh and resume:
        raise UsageError("--fresh starts over and --resume FILE continues a run: use one or the other")
    if dry_run:
        return None
    if resume and path and Path(resume) != Path(path):
        raise UsageError(f"--resume {resume} and --checkpoint {path} name different files; give one of them")
    return Checkpoint(resume or path or default_checkpoint(command, identity), identity, fresh=fresh,
                      resume_only=bool(resume))


def end_state(report: ReplayReport) -> str:
    """The checkpoint state a finished replay leaves: interrupted, failed (some objects) or finished."""
    if report.interrupted:
        return INTERRUPTED
    return FAILED if report.failed else FINISHED


def resolved_window(checkpoint: Checkpoint | None, *, start: str | None, end: str | None,
                    since: str | None) -> Window:
    """A resumed run reuses the window its first run resolved (a relative --since must not move)."""
    window = make_window(start=start, end=end, since=since)
    if checkpoint is None:
        return window
    stored = checkpoint.value("window", lambda: [window.start.isoformat(), window.end.isoformat()])
    return Window(start=dt.datetime.fromisoformat(stored[0]), end=dt.datetime.fromisoformat(stored[1]))


def destination(checkpoint: Checkpoint | None, dest_prefix: str | None) -> str:
    """The copy destination: the given prefix, or bronze/replay/<stamp> fixed by the first run (so a
    resumed run copies to the same place)."""
    if dest_prefix:
        return dest_prefix
    if checkpoint is None:
        return f"bronze/replay/{replay_stamp()}"
    return checkpoint.value("dest_prefix", lambda: f"bronze/replay/{replay_stamp()}")


def check_dest_prefix(dest_prefix: str | None, key_for: Callable[[str, str], str] = replay_key) -> None:
    """Refuse a destination whose copies ingest would skip: a sample copy key must parse (with the
    pipeline's own key parser) as a replay copy of the same logical object."""
    if not dest_prefix:
        return
    sample = "bronze/orders/dt=2025-01-01/part-0.jsonl"
    try:
        parsed = parse_bronze_key(key_for(sample, dest_prefix))
        ok = parsed.replay_stamp is not None and parsed.logical_key == sample
        reason = "the copies would not be replay copies of their originals"
    except InvalidKey as exc:
        ok, reason = False, exc.reason
    if not ok:
        raise UsageError(f"--dest-prefix {dest_prefix!r}: ingest would skip every copy ({reason}); use "
                         "bronze/replay/<stamp> with one stamp segment of [A-Za-z0-9_.:-], e.g. "
                         "bronze/replay/run-1")


def source_identity(from_inventory: str | None) -> dict:
    """A checkpoint of a live listing stays valid: the inventory source only joins the identity when used."""
    return {"from_inventory": from_inventory} if from_inventory else {}


def run(command: str, *, s3, sqs=None, bucket: str, prefix: str, start: str | None, end: str | None,
        since: str | None, by: str = "modified", list_concurrency: int = 8, from_inventory: str | None = None,
        live_tail: bool | None = None, dest_prefix: str | None = None, queue_url: str | None = None,
        concurrency: int = 16, max_rps: float | None = None, checkpoint_path: str | None = None,
        fresh: bool = False, resume: str | None = None, report_path: str | None = None, dry_run: bool = False,
        on_start: Callable[[ReplayPlan], None] | None = None,
        on_progress: Callable[[Progress], None] | None = None) -> ReplayReport:
    """`replay copy` or `replay sqs` end to end: checkpoint, window, listing, then the replay.

    The checkpoint is named by the command's identity (its options as given), so the same command
    run again finds it. A finished run retires it: the next run is a new one (a relative --since
    resolves again). An interrupted, killed or partly failed run is resumed: with the window and
    generated replay stamp of its first run, skipping what it finished.
    """
    if command not in ("replay copy", "replay sqs"):
        raise ValueError(f"unknown replay command {command!r}")
    identity = {"command": command, "bucket": bucket, "prefix": prefix, "start": start, "end": end,
                "since": since, "by": by}
    if command == "replay copy":
        check_dest_prefix(dest_prefix)
        identity["dest_prefix"] = dest_prefix
    else:
        identity["queue_url"] = queue_url
    identity.update(source_identity(from_inventory))
    if command == "replay sqs":
        require_queue(sqs, queue_url)
    checkpoint = checkpoint_for(command, identity, checkpoint_path, dry_run, fresh=fresh, resume=resume)
    window = resolved_window(checkpoint, start=start, end=end, since=since)
    listing = list_objects(s3, bucket=bucket, prefix=prefix, window=window, by=by, concurrency=list_concurrency,
                           from_inventory=from_inventory, live_tail=live_tail)
    if on_start is not None:
        on_start(ReplayPlan(command=command, window=window, objects=len(listing.objects),
                            checkpoint=str(checkpoint.path) if checkpoint else None,
                            resumed=bool(checkpoint and checkpoint.resumed),
                            already_done=len(checkpoint.done) if checkpoint else 0,
                            inventory=getattr(listing, "inventory", None),
                            previous_state=checkpoint.previous_state if checkpoint and checkpoint.resumed else None,
                            started_at=checkpoint.started_at if checkpoint else None,
                            hint=None if from_inventory else partition_hint(s3, listing)))
    if command == "replay copy":
        report = replay_copy(s3, objects=listing.objects, bucket=bucket,
                             dest_prefix=destination(checkpoint, dest_prefix), concurrency=concurrency,
                             max_rps=max_rps, dry_run=dry_run, checkpoint=checkpoint, report_path=report_path,
                             on_progress=on_progress)
    else:
        # Each request carries 10 messages: half the copy concurrency keeps the same load.
        report = replay_sqs(sqs, objects=listing.objects, bucket=bucket, queue_url=queue_url,
                            concurrency=max(1, concurrency // 2), max_rps=max_rps, dry_run=dry_run,
                            checkpoint=checkpoint, report_path=report_path, on_progress=on_progress)
    if checkpoint is not None:
        checkpoint.finish(end_state(report))
    return report
