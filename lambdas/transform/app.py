"""Transform Lambda: SQS batch of work units -> silver Parquet + quarantine, partial batch response.

Handler: lambdas.transform.app.handler. Environment: see lambdas.shared.config.TRANSFORM_ENV.
Each record is independent: a bad body, an unknown type or an unreadable object fails only its own
item (`batchItemFailures`), so it is retried and then reaches the DLQ; the ledger records why.
Silver keys are deterministic, so redelivery, replay and redrive overwrite rather than duplicate.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote

import pyarrow as pa
from botocore.exceptions import ClientError

from lambdas.shared import config, schemas, steps, work_unit
from lambdas.shared.aws import client
from lambdas.shared.keys import parse_bronze_key
from lambdas.shared.ledger import Ledger
from lambdas.shared.log import get_logger, log, set_context
from lambdas.shared.metrics import Metrics
from lambdas.transform import conditional_write
from lambdas.transform.core import UnreadableObject, transform_stream

LOG = get_logger("transform")
WRITE_ATTEMPTS = 5  # conditional silver writes lost to other writers before the item is retried
REPAIR_ROUNDS = 3  # times the source may move on during one item before it is retried
REPLAY_SOURCE_ETAG = "replay-source-etag"  # a replay copy's metadata: the original's ETag it copies


@dataclass
class Deps:
    s3: object
    ledger: Ledger
    silver_bucket: str
    max_json_bytes: int
    row_group_rows: int
    limits: dict | None = None  # transform_stream's bounds on hostile input (ELT_MAX_OBJECT_BYTES, ELT_QUARANTINE_MAX_*)
    min_ms_to_start: int = 0  # ELT_MIN_SECONDS_TO_START, in ms


_DEPS: Deps | None = None


def build_deps(environ=None, make_client=client) -> Deps:
    """Clients and settings from the environment (the local runtime passes its own)."""
    env = config.read(config.TRANSFORM_ENV, environ)
    return Deps(
        s3=make_client("s3"),
        ledger=Ledger(make_client("dynamodb"), env["ELT_LEDGER_TABLE"], ttl_days=int(env["ELT_LEDGER_TTL_DAYS"])),
        silver_bucket=env["ELT_SILVER_BUCKET"],
        max_json_bytes=int(env["ELT_MAX_JSON_BYTES"]),
        row_group_rows=int(env["ELT_ROW_GROUP_ROWS"]),
        limits={"max_object_bytes": int(env["ELT_MAX_OBJECT_BYTES"]),
                "quarantine_max_lines": int(env["ELT_QUARANTINE_MAX_LINES"]),
                "quarantine_max_bytes": int(env["ELT_QUARANTINE_MAX_BYTES"])},
        min_ms_to_start=int(float(env["ELT_MIN_SECONDS_TO_START"]) * 1000),
    )


def deps() -> Deps:
    global _DEPS
    if _DEPS is None:
        _DEPS = build_deps()
    return _DEPS


def reset() -> None:
    global _DEPS
    _DEPS = None


class ItemFailed(Exception):
    """This record failed; the message says why (recorded in the ledger when the object is known)."""


def handler(event, context=None):
    set_context(aws_request_id=getattr(context, "aws_request_id", None), function="transform")
    d = deps()
    failures: list[str] = []
    metrics = Metrics("transform")
    try:
        records = event.get("Records") or []
        for index, record in enumerate(records):
            message_id = record.get("messageId")
            if _out_of_time(d, context):
                # Finished items stay finished: only the ones not started are retried.
                not_started = [r.get("messageId") for r in records[index:]]
                log(LOG, logging.WARNING, "too little time left: items not started are reported as failed",
                    not_started=len(not_started), remaining_ms=context.get_remaining_time_in_millis())
                if not all(not_started):
                    raise RuntimeError("an item not started has no messageId; failing the whole batch")
                failures.extend(not_started)
                break
            started = time.monotonic()
            try:
                summary = process_record(d, record)
                count(metrics, summary, type_=_unit_type(record), seconds=time.monotonic() - started)
            except Exception as exc:  # one item's failure never fails the batch
                metrics.add("Failed", type_=_unit_type(record))
                log(LOG, logging.ERROR, "item failed", message_id=message_id, error=f"{type(exc).__name__}: {exc}")
                if not message_id:
                    # An empty identifier would fail the whole batch anyway; say so plainly.
                    raise RuntimeError("a failed record has no messageId; failing the whole batch") from exc
                failures.append(message_id)
    finally:
        metrics.flush()
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failures]}


def _out_of_time(d: Deps, context) -> bool:
    return bool(d.min_ms_to_start and context is not None
                and context.get_remaining_time_in_millis() <= d.min_ms_to_start)


def _unit_type(record: dict) -> str | None:
    try:
        return work_unit.parse(record.get("body", "")).type
    except work_unit.InvalidWorkUnit:
        return None


def count(metrics: Metrics, summary: dict, *, type_: str | None, seconds: float) -> None:
    """One record's outcome as metrics (see lambdas/shared/metrics.py)."""
    outcome = summary.get("outcome")
    if outcome == "written":
        metrics.add("Objects", type_=type_)
        metrics.add("RowsWritten", summary.get("rows", 0), type_=type_)
        metrics.add("RowsQuarantined", summary.get("rejected_rows", 0), type_=type_)
        metrics.add("BytesIn", summary.get("bytes_in", 0), type_=type_)
        metrics.value("DurationPerObject", seconds * 1000, type_=type_)
        if summary.get("unknown_fields"):
            metrics.add("ObjectsWithUnknownFields", type_=type_)
    if outcome == "superseded":
        metrics.add("Superseded", type_=type_)
    elif outcome != "written":
        metrics.skipped(outcome or "unknown", type_=type_)


def process_record(d: Deps, record: dict) -> dict:
    try:
        unit = work_unit.parse(record.get("body", ""))
    except work_unit.InvalidWorkUnit as exc:
        raise ItemFailed(f"invalid work unit: {exc}") from None
    started = time.monotonic()
    try:
        summary = _transform(d, unit)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        try:
            d.ledger.mark_failed(bucket=unit.bucket, key=unit.key, etag=unit.etag, error=error,
                                 sequencer=unit.sequencer)
        except Exception as ledger_exc:  # still fail the item; the log keeps the error
            log(LOG, logging.ERROR, "could not record the failure in the ledger", error=str(ledger_exc))
        raise
    log(LOG, logging.INFO, "transformed", object=unit.object_id, etag=unit.etag, origin=unit.origin,
        seconds=round(time.monotonic() - started, 3), **summary)
    return summary


def _transform(d: Deps, unit: work_unit.WorkUnit) -> dict:
    """Make silver hold this unit's version if it is (still) the current one; see
    docs/version-ordering.md for the rule every writer follows."""
    parsed = parse_bronze_key(unit.key)
    try:
        obj = d.s3.get_object(Bucket=unit.bucket, Key=unit.key, IfMatch=f'"{unit.etag}"')
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:  # PreconditionFailed
            return _superseded_on_read(d, unit, parsed)
        if code == "NoSuchKey" and parsed.replay_stamp:
            expired = _copy_gone(d, unit, parsed)
            if expired is not None:
                return expired
        if code == "NoSuchKey":
            # Only a missing key in a bucket that exists is a deleted source. S3 says NoSuchKey only
            # to a caller with s3:ListBucket on the bucket; without it the answer is 403 (below).
            d.ledger.mark_done(bucket=unit.bucket, key=unit.key, etag=unit.etag, silver_key="", rows=0,
                               rejected_rows=0, outcome="source-deleted", sequencer=unit.sequencer)
            log(LOG, logging.WARNING, "source deleted since queued; skipped", object=unit.object_id)
            return {"outcome": "source-deleted"}
        raise ItemFailed(s3_read_error(exc, bucket=unit.bucket, key=unit.key)) from None
    steps.step(steps.AFTER_READ, object=unit.object_id)
    # The logical version this read stands for. A replay copy stands for the original's version
    # it was copied from (recorded by `eltops replay copy`; a copy's own ETag equals it for a
    # single-part object). Its own sequencer orders the copy's key, never the original's.
    version_etag, sequencer = unit.etag, unit.sequencer
    if parsed.replay_stamp:
        metadata = obj.get("Metadata") or {}
        version_etag = work_unit.normalize_etag(metadata.get(REPLAY_SOURCE_ETAG)) or unit.etag
        sequencer = ""
    summary = _write_version(d, parsed, obj, version_etag=version_etag, sequencer=sequencer, object_id=unit.object_id)
    if summary["outcome"] == "superseded":
        d.ledger.mark_done(bucket=unit.bucket, key=unit.key, etag=unit.etag, silver_key="", rows=0, rejected_rows=0,
                           outcome="superseded", reason=summary["reason"], sequencer=unit.sequencer)
        log(LOG, logging.WARNING, "superseded: silver holds a newer version; skipped", object=unit.object_id,
            reason=summary["reason"])
        return summary
    moved = _moved_on(d, bucket=unit.bucket, key=parsed.logical_key, version_etag=version_etag)
    if moved is not None:
        # Silver now holds a version the source has left; the newer version's own event may already
        # have been consumed (it lost to this write), so transform the current version here.
        repaired = _rewrite_current(d, parsed, bucket=unit.bucket, current=moved)
        reason = (f"the source became {moved['etag']} while this version was transformed; "
                  f"{repaired['silver_etag_of']} was transformed in its place")
        d.ledger.mark_done(bucket=unit.bucket, key=unit.key, etag=unit.etag, silver_key="", rows=0, rejected_rows=0,
                           outcome="superseded", reason=reason, sequencer=unit.sequencer)
        log(LOG, logging.WARNING, "superseded after the write: the source moved on; silver rewritten from the "
            "current version", object=unit.object_id, reason=reason)
        return {**summary, "outcome": "superseded", "reason": reason}
    owned = d.ledger.mark_done(bucket=unit.bucket, key=unit.key, etag=unit.etag, silver_key=parsed.silver_key,
                               rows=summary["rows"], rejected_rows=summary["rejected_rows"], sequencer=unit.sequencer,
                               unknown_fields=summary["unknown_fields"], fields_examined=summary["fields_examined"])
    if not owned:
        log(LOG, logging.INFO, "a newer event of this version owns its ledger item; outcome not recorded",
            object=unit.object_id, sequencer=unit.sequencer)
    return summary


def _write_version(d: Deps, parsed, obj, *, version_etag: str, sequencer: str, object_id: str) -> dict:
    """Transform the body read in `obj` and write it to silver with a conditional write that cannot
    replace a newer version: {"outcome": "written", ...} or {"outcome": "superseded", "reason"}."""
    schema = schemas.get(parsed.type)
    ingested_at = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="elt-") as tmp:
        parquet_path = os.path.join(tmp, "out.parquet")
        quarantine_path = os.path.join(tmp, "quarantine.jsonl")
        with obj["Body"] as body, open(quarantine_path, "wb") as quarantine:
            result = transform_stream(
                body, schema=schema, source_key=parsed.logical_key, gzipped=parsed.gzipped,
                parquet_out=parquet_path, quarantine_out=quarantine, ingested_at=ingested_at,
                row_group_rows=d.row_group_rows, max_json_bytes=d.max_json_bytes, suffix_format=parsed.fmt,
                **(d.limits or {}),
            )
        for _ in range(WRITE_ATTEMPTS):
            current = _head(d, bucket=d.silver_bucket, key=parsed.silver_key)
            held = _held(current)
            _refuse_collision(parsed, held)
            if sequencer and held["sequencer"] and work_unit.compare_sequencers(held["sequencer"], sequencer) > 0:
                return {"outcome": "superseded",
                        "reason": f"silver holds {held['etag'] or 'a version'} from a newer event (sequencer "
                                  f"{held['sequencer']} > {sequencer})"}
            # A unit without a sequencer keeps the order silver already records for the same version.
            order = sequencer or (held["sequencer"] if held["etag"] == version_etag else "")
            # S3 metadata is ASCII only: the key is URL-encoded there.
            metadata = {"source-key": quote(parsed.logical_key, safe="/"), "source-etag": version_etag,
                        "source-sequencer": order, "rows": str(result.rows)}
            steps.step(steps.BEFORE_SILVER_WRITE, object=object_id)
            try:
                conditional_write.put_file(d.s3, bucket=d.silver_bucket, key=parsed.silver_key, path=parquet_path,
                                           extra={"Metadata": metadata, "ContentType": "application/vnd.apache.parquet"},
                                           when=conditional_write.condition(current))
            except conditional_write.PreconditionLost as exc:  # another writer came in between: look again
                log(LOG, logging.INFO, "silver changed during the write; deciding again", object=object_id,
                    detail=str(exc))
                continue
            break
        else:
            raise ItemFailed(f"silver object {parsed.silver_key} kept changing during {WRITE_ATTEMPTS} conditional "
                             "writes; the item is retried")
        if result.rejected:
            conditional_write.put_file(d.s3, bucket=d.silver_bucket, key=parsed.quarantine_key, path=quarantine_path,
                                       extra={"Metadata": metadata, "ContentType": "application/x-ndjson"})
        else:
            # A previous version's rejects no longer apply to this version.
            d.s3.delete_object(Bucket=d.silver_bucket, Key=parsed.quarantine_key)
    steps.step(steps.AFTER_SILVER_WRITE, object=object_id)
    for note in result.notes:
        log(LOG, logging.WARNING, note, object=object_id)
    for line, reason in result.first_rejects:
        # A reason may quote the rejected value (personal data, perhaps): the log says where and
        # what kind of problem; the value itself stays in quarantine.
        log(LOG, logging.WARNING, "line rejected", object=object_id, line=line, **reject_summary(reason, schema))
    return {"outcome": "written", "rows": result.rows, "rejected_rows": result.rejected,
            "blank_lines": result.blank_lines, "format": result.fmt, "bytes_in": result.bytes_in,
            "silver_key": parsed.silver_key, "source_etag": version_etag,
            "unknown_fields": result.unknown_fields, "fields_examined": result.fields_examined}


def _head(d: Deps, *, bucket: str, key: str) -> conditional_write.Current | None:
    try:
        return conditional_write.head(d.s3, bucket=bucket, key=key)
    except ClientError as exc:
        raise ItemFailed(s3_read_error(exc, bucket=bucket, key=key)) from None


def _held(current: conditional_write.Current | None) -> dict:
    """What the silver object says it holds: logical source key, its ETag and its order."""
    meta = current.metadata if current is not None else {}
    return {"key": unquote(meta.get("source-key", "")), "etag": meta.get("source-etag", ""),
            "sequencer": meta.get("source-sequencer", "")}


def _refuse_collision(parsed, held: dict) -> None:
    """`a.json` and `a.jsonl` in one partition map to one silver object: writing the second would
    silently replace the first's rows. Fail the item instead (it reaches the DLQ with this reason).
    Decided by the conditional write: two racing first writes cannot both create the object."""
    if held["key"] and held["key"] != parsed.logical_key:
        raise ItemFailed(f"silver key collision: {parsed.silver_key} already holds {held['key']}; {parsed.logical_key} "
                         "would replace its rows. Rename one of the two bronze objects (they differ only by suffix)")


def _moved_on(d: Deps, *, bucket: str, key: str, version_etag: str) -> dict | None:
    """After a write: None while the logical source is still `version_etag` (or gone), else the
    version it holds now ({"etag", "size"}). The one extra request per object (HeadObject)."""
    current = _head(d, bucket=bucket, key=key)
    if current is None:
        return None  # deleted since: silver keeps the last version it had, as for any deletion
    etag = work_unit.normalize_etag(current.etag)
    return None if etag == version_etag else {"etag": etag}


def _rewrite_current(d: Deps, parsed, *, bucket: str, current: dict) -> dict:
    """Transform the logical key's current version (no event order: its read makes it current)
    until the source holds still after the write. Records it DONE in the ledger."""
    key = parsed.logical_key
    logical = parse_bronze_key(key)
    for _ in range(REPAIR_ROUNDS):
        etag = current["etag"]
        try:
            obj = d.s3.get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 412:  # moved on again before the read
                current = _moved_on(d, bucket=bucket, key=key, version_etag=etag)
                if current is None:
                    return {"silver_etag_of": etag}
                continue
            if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
                return {"silver_etag_of": "nothing (the source was deleted)"}
            raise ItemFailed(s3_read_error(exc, bucket=bucket, key=key)) from None
        summary = _write_version(d, logical, obj, version_etag=etag, sequencer="", object_id=f"s3://{bucket}/{key}")
        moved = _moved_on(d, bucket=bucket, key=key, version_etag=etag)
        if moved is None:
            d.ledger.mark_done(bucket=bucket, key=key, etag=etag, silver_key=logical.silver_key, rows=summary["rows"],
                               rejected_rows=summary["rejected_rows"])
            log(LOG, logging.INFO, "transformed the current version in place of a superseded one",
                object=f"s3://{bucket}/{key}", etag=etag, rows=summary["rows"])
            return {"silver_etag_of": etag}
        current = moved
    raise ItemFailed(f"s3://{bucket}/{key} changed {REPAIR_ROUNDS} times while it was being transformed; "
                     "the item is retried")


def _copy_gone(d: Deps, unit: work_unit.WorkUnit, parsed) -> dict | None:
    """A replay copy that is gone (its lifecycle rule expired it before a late redrive): when the
    logical original still holds the version the copy was made of (a single-part copy keeps its
    source's ETag), transform the original instead. None when it does not (nothing to stand in)."""
    current = _head(d, bucket=unit.bucket, key=parsed.logical_key)
    if current is None or work_unit.normalize_etag(current.etag) != unit.etag:
        return None
    done = _rewrite_current(d, parsed, bucket=unit.bucket, current={"etag": unit.etag})
    reason = f"the replay copy was gone; its original s3://{unit.bucket}/{parsed.logical_key} still held this version"
    d.ledger.mark_done(bucket=unit.bucket, key=unit.key, etag=unit.etag, silver_key=parsed.silver_key, rows=0,
                       rejected_rows=0, outcome="original-transformed", reason=reason, sequencer=unit.sequencer)
    log(LOG, logging.WARNING, "replay copy gone; transformed its original instead", object=unit.object_id,
        original=parsed.logical_key, silver_etag_of=done["silver_etag_of"])
    return {"outcome": "original-transformed", "reason": reason}


def _superseded_on_read(d: Deps, unit: work_unit.WorkUnit, parsed) -> dict:
    """The unit's version is no longer the object (412 on the read). Normally its newer version has
    its own event. But if silver holds this very version, a write of it outlived the source (the
    writer died before its check after the write): transform the current version now. The same
    when silver holds a version without an order (written by a replay, a redrive or the rewrite
    after a stale write, which can replace a newer version): that writer may have died before its
    check too, and no event may be left to put the current version back."""
    reason = "the object changed since this unit was made (412 on the IfMatch read)"
    held = _held(_head(d, bucket=d.silver_bucket, key=parsed.silver_key))
    if held["key"] == parsed.logical_key and held["etag"] and (held["etag"] == unit.etag or not held["sequencer"]):
        current = _moved_on(d, bucket=unit.bucket, key=parsed.logical_key, version_etag=held["etag"])
        if current is not None:
            repaired = _rewrite_current(d, parsed, bucket=unit.bucket, current=current)
            which = "this version" if held["etag"] == unit.etag else f"{held['etag']} (written without an order)"
            reason += f"; silver still held {which}, so {repaired['silver_etag_of']} was transformed in its place"
    d.ledger.mark_done(bucket=unit.bucket, key=unit.key, etag=unit.etag, silver_key="", rows=0, rejected_rows=0,
                       outcome="superseded", reason=reason, sequencer=unit.sequencer)
    log(LOG, logging.WARNING, "superseded: the object changed since; skipped", object=unit.object_id, reason=reason)
    return {"outcome": "superseded", "reason": reason}


def s3_read_error(exc: ClientError, *, bucket: str, key: str) -> str:
    """The failed item's reason for an S3 error that is not a plain answer, naming what to fix.

    403 and 404 are taken as AWS returns them: NoSuchBucket is a work unit pointing at the wrong
    bucket (a typo in a replay, a redrive into another environment), never a deleted source; a 403
    is a permission problem, and for a missing key it is what S3 says to a caller that lacks
    s3:ListBucket (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html)."""
    error = exc.response.get("Error", {})
    code = error.get("Code") or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
    where = f"s3://{bucket}/{key}"
    if code == "NoSuchBucket":
        return (f"bucket {bucket!r} does not exist (NoSuchBucket) for {where}: the work unit names the wrong "
                "bucket; replay or redrive it against the right environment's bronze bucket")
    if code in ("AccessDenied", "403", "Forbidden"):
        return (f"access denied (403) on {where}: the transform role needs s3:GetObject on the key and "
                "s3:ListBucket on the bucket (without it S3 answers 403 for a missing key); see "
                "infra/terraform/envs/dev/main.tf")
    return f"{code} on {where}: {error.get('Message') or exc}"


_FIELD = re.compile(r"field(?:\(s\))? ((?:'[^']*'(?:, )?)+)")
_REJECT_KINDS = (  # (words in a reason, kind logged); reasons are made in lambdas.transform.core
    ("not valid UTF-8", "invalid-utf8"),
    ("malformed JSON", "malformed-json"),
    ("missing required field", "missing-field"),
    ("is not a valid", "invalid-value"),
    ("where the schema expects", "wrong-type"),
    ("expected an object", "not-an-object"),
    ("line longer than", "line-too-long"),
)


def reject_summary(reason: str, schema: schemas.EventSchema) -> dict:
    """What a log line may say about a rejected line: the kind of problem and the schema's names of
    the fields involved, never the value (quarantine keeps the raw line and the full reason).

    Only names the schema declares are kept: a value may itself contain "field '…'"."""
    kind = next((k for words, k in _REJECT_KINDS if words in reason), "other")
    known = schema_paths(schema)
    fields = [f for group in _FIELD.findall(reason) for f in re.findall(r"'([^']*)'", group) if f in known]
    return {"problem": kind, "fields": sorted(set(fields))}


def schema_paths(schema: schemas.EventSchema) -> set[str]:
    """Every field path of a schema as reasons spell them: `origin.city`, `items`, `items[].sku`."""
    paths: set[str] = set()

    def walk(type_, path: str) -> None:
        paths.add(path)
        if pa.types.is_struct(type_):
            for child in type_:
                walk(child.type, f"{path}.{child.name}")
        elif pa.types.is_list(type_) or pa.types.is_large_list(type_):
            walk(type_.value_type, path + "[]")

    for top in schema.arrow:
        walk(top.type, top.name)
    return paths


__all__ = ["handler", "UnreadableObject", "ItemFailed"]
