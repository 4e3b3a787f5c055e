"""Ingest Lambda: S3 object-created event -> claim in the ledger -> one work unit on SQS.

Handler: lambdas.ingest.app.handler. Environment: see lambdas.shared.config.INGEST_ENV.
A duplicate event (same object version) loses the conditional claim and does nothing once the
object is queued. While another invocation still holds the claim (its lease has not lapsed), the
event is failed instead, to be retried: that invocation may yet crash before it sends, and this
event (or its retry) must then take over - acknowledging it would lose the object. A failed send
releases the claim and fails the invocation (or the SQS item), so the retry starts clean; a crash
between claim and send leaves a claim whose lease runs out, and the retry takes over.

The same ETag can come back after another version (upload A, B, then A's bytes again): its event
carries a newer `sequencer` than the ledger item of that ETag, so it retakes the item and the
version is queued again (silver holds B until then). A redelivery of the same event carries the same
sequencer and stays a no-op; so does an identical re-upload in an account whose events carry no
sequencer (see docs/version-ordering.md).

A work unit on the ingest queue (an events-DLQ redrive sent to the wrong queue) is forwarded to the
events queue unchanged, never acknowledged as an unknown event: its DLQ copy is already gone.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from lambdas.ingest.s3_events import ObjectCreated, Skipped, extract
from lambdas.shared import config, steps, work_unit
from lambdas.shared.aws import client
from lambdas.shared.keys import BRONZE_ROOT, InvalidKey, has_supported_suffix, parse_bronze_key
from lambdas.shared.ledger import CLAIMED, Ledger
from lambdas.shared.log import get_logger, log, set_context
from lambdas.shared.metrics import Metrics

LOG = get_logger("ingest")
SEND_ATTEMPTS = 4


@dataclass
class Deps:
    sqs: object
    ledger: Ledger
    queue_url: str
    lease_seconds: int


_DEPS: Deps | None = None


def build_deps(environ=None, make_client=client) -> Deps:
    """Clients and settings from the environment (the local runtime passes its own)."""
    env = config.read(config.INGEST_ENV, environ)
    return Deps(
        sqs=make_client("sqs"),
        ledger=Ledger(make_client("dynamodb"), env["ELT_LEDGER_TABLE"], ttl_days=int(env["ELT_LEDGER_TTL_DAYS"])),
        queue_url=env["ELT_QUEUE_URL"],
        lease_seconds=int(env["ELT_CLAIM_LEASE_SECONDS"]),
    )


def deps() -> Deps:
    global _DEPS
    if _DEPS is None:
        _DEPS = build_deps()
    return _DEPS


def reset() -> None:
    """Forget cached clients and configuration (tests, the local runtime)."""
    global _DEPS
    _DEPS = None


class IngestFailed(RuntimeError):
    pass


def handler(event, context=None):
    set_context(aws_request_id=getattr(context, "aws_request_id", None), function="ingest")
    d = deps()
    counts = {"records": 0, "queued": 0, "duplicates": 0, "in_flight": 0, "skipped": 0, "failed": 0}
    claimed: list[tuple[ObjectCreated, work_unit.WorkUnit]] = []
    queued: list[work_unit.WorkUnit] = []
    event, strays = _take_work_units(event)
    failed_sources: set[str | None] = _forward(d, strays)  # the strays SQS did not take

    for item in extract(event):
        counts["records"] += 1
        if isinstance(item, Skipped):
            counts["skipped"] += 1
            log(LOG, logging.INFO, "skipped", reason=item.reason, detail=item.detail)
            continue
        unit = _claim(d, item, counts)
        if unit is IN_FLIGHT:
            failed_sources.add(item.source_id)
        elif unit is not None:
            claimed.append((item, unit))

    for start in range(0, len(claimed), 10):
        failed_sources |= _send(d, claimed[start:start + 10], counts, queued)

    log(LOG, logging.INFO, "ingest finished", **counts)
    _metrics(counts, queued)
    if failed_sources:
        if all(source is not None for source in failed_sources):
            return {"batchItemFailures": [{"itemIdentifier": s} for s in sorted(failed_sources)]}
        why = [f"{counts['failed']} object(s) could not be queued"] if counts["failed"] else []
        if counts["in_flight"]:
            why.append(f"{counts['in_flight']} object(s) are still claimed by another invocation")
        raise IngestFailed(f"{' and '.join(why)}; the event will be retried")
    records = event.get("Records") if isinstance(event, dict) else None
    if strays or any(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records or []):
        return {"batchItemFailures": []}
    return counts


def _metrics(counts: dict, queued: list[work_unit.WorkUnit]) -> None:
    """EMF metrics of this invocation (lambdas/shared/metrics.py): objects queued and bytes by
    type (every object sent, also when another object of the same event failed: its retry finds
    this one a duplicate); skips by reason and send failures (type unknown there)."""
    metrics = Metrics("ingest")
    for unit in queued:
        metrics.add("Objects", type_=unit.type)
        metrics.add("BytesIn", unit.size, type_=unit.type)
    if counts["failed"]:
        metrics.add("Failed", counts["failed"])
    for reason, name in (("not-bronze", "skipped"), ("duplicate", "duplicates"), ("in-flight", "in_flight")):
        for _ in range(counts[name]):
            metrics.skipped(reason)
    metrics.flush()


def _take_work_units(event) -> tuple:
    """SQS records whose body is a work unit (v1), apart from the rest of the event. They are
    transform's messages, on the ingest queue only by mistake (an events-DLQ redrive given the
    ingest queue as --to-url): acknowledging them as unknown events would lose them, since the
    redrive deleted their DLQ copies."""
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        return event, []
    strays, rest = [], []
    for record in records:
        (strays if _is_work_unit(record) else rest).append(record)
    return {**event, "Records": rest}, strays


def _is_work_unit(record) -> bool:
    """An SQS delivery (with a messageId, to fail it by) whose body is a v1 work unit."""
    if not isinstance(record, dict) or record.get("eventSource") != "aws:sqs" or not record.get("messageId"):
        return False
    try:
        data = json.loads(record.get("body"))
    except (TypeError, ValueError):  # no body, or not JSON
        return False
    return isinstance(data, dict) and data.get("v") == work_unit.VERSION


def _forward(d: Deps, records: list[dict]) -> set[str]:
    """Send stray work units on to the events queue unchanged (transform judges them there); the
    messageIds of those SQS did not take, to be retried."""
    failed: set[str] = set()
    for start in range(0, len(records), 10):
        chunk = records[start:start + 10]
        entries = [{"Id": str(i), "MessageBody": r["body"]} for i, r in enumerate(chunk)]
        try:
            response = d.sqs.send_message_batch(QueueUrl=d.queue_url, Entries=entries)
        except Exception as exc:  # retried with the SQS item
            response = {"Failed": [{"Id": e["Id"], "Message": f"{type(exc).__name__}: {exc}"} for e in entries]}
        for bad in response.get("Failed", []):
            failed.add(chunk[int(bad["Id"])]["messageId"])
            log(LOG, logging.ERROR, "could not forward a work unit to the events queue; retried",
                message_id=chunk[int(bad["Id"])]["messageId"], error=str(bad.get("Message")))
        for ok in response.get("Successful", []):
            log(LOG, logging.WARNING, "a work unit reached the ingest queue (an events-DLQ redrive to the wrong "
                "queue?); forwarded to the events queue", message_id=chunk[int(ok["Id"])]["messageId"],
                forwarded_as=ok.get("MessageId"))
    return failed


IN_FLIGHT = object()  # another invocation holds the claim: retry this event later


def _claim(d: Deps, item: ObjectCreated, counts: dict):
    """The work unit to send, None (nothing to do), or IN_FLIGHT."""
    object_id = f"s3://{item.bucket}/{item.key}"
    if not item.key.startswith(BRONZE_ROOT):
        counts["skipped"] += 1
        log(LOG, logging.INFO, "skipped: key is outside bronze/", object=object_id)
        return None
    if not has_supported_suffix(item.key):
        counts["skipped"] += 1
        log(LOG, logging.INFO, "skipped: unsupported file type", object=object_id)
        return None
    try:
        parsed = parse_bronze_key(item.key)
        unit = work_unit.build(bucket=item.bucket, key=item.key, etag=item.etag, size=item.size,
                               origin="s3-event", sequencer=item.sequencer)
    except (InvalidKey, work_unit.InvalidWorkUnit) as exc:
        counts["skipped"] += 1
        log(LOG, logging.WARNING, "rejected: invalid bronze key", object=object_id,
            reason=getattr(exc, "reason", str(exc)))
        return None
    fields = dict(bucket=item.bucket, key=item.key, etag=unit.etag, size=item.size, type_=parsed.type,
                  dt=parsed.dt, lease_seconds=d.lease_seconds, sequencer=unit.sequencer)
    claim = d.ledger.claim(**fields)
    existing = claim.existing or {}
    if not claim.won and existing.get("status") != CLAIMED and work_unit.is_newer(
            unit.sequencer, existing.get("sequencer")):
        # ABA: this ETag's item is from an older event, and another version came in between.
        claim = d.ledger.retake(**fields, existing=existing)
        if not claim.won:  # another event changed the item meanwhile: decide again on the retry
            counts["in_flight"] += 1
            log(LOG, logging.WARNING, "ledger item changed while retaking it; failing this event so that it "
                "is retried", object=object_id, etag=unit.etag, sequencer=unit.sequencer)
            return IN_FLIGHT
        log(LOG, logging.INFO, "newer event for a version seen before: queued again", object=object_id,
            etag=unit.etag, sequencer=unit.sequencer, previous_sequencer=existing.get("sequencer") or "",
            previous_status=existing.get("status"))
    if not claim.won and (claim.existing or {}).get("status") == CLAIMED:
        counts["in_flight"] += 1
        log(LOG, logging.WARNING, "claimed by another invocation that has not queued it yet; failing this "
            "event so that it is retried (it takes over if that invocation dies)", object=object_id,
            etag=unit.etag, lease_until=(claim.existing or {}).get("lease_until"))
        return IN_FLIGHT
    if not claim.won:
        counts["duplicates"] += 1
        log(LOG, logging.INFO, "duplicate event: already claimed", object=object_id, etag=unit.etag,
            status=(claim.existing or {}).get("status"))
        return None
    steps.step(steps.AFTER_CLAIM, object=object_id)
    return unit


def _send(d: Deps, batch: list[tuple[ObjectCreated, work_unit.WorkUnit]], counts: dict,
          queued: list[work_unit.WorkUnit]) -> set:
    """SendMessageBatch; retry only the failed entries; release the claims that never got sent.
    The units sent go to `queued`; returns the sources of those that were not."""
    pending = {str(i): pair for i, pair in enumerate(batch)}
    refused: dict = {}
    last_error = ""
    for attempt in range(SEND_ATTEMPTS):
        if not pending:
            break
        if attempt:
            time.sleep(0.1 * 2**attempt)  # 0.2, 0.4, 0.8 s
        entries = [
            {"Id": i, "MessageBody": unit.body(), "MessageAttributes": unit.message_attributes()}
            for i, (_, unit) in pending.items()
        ]
        try:
            response = d.sqs.send_message_batch(QueueUrl=d.queue_url, Entries=entries)
        except Exception as exc:  # the whole call failed: retry all pending entries
            last_error = f"{type(exc).__name__}: {exc}"
            continue
        for ok in response.get("Successful", []):
            item, unit = pending.pop(ok["Id"])
            steps.step(steps.AFTER_SEND, object=unit.object_id)
            d.ledger.mark_queued(bucket=unit.bucket, key=unit.key, etag=unit.etag, message_id=ok["MessageId"])
            counts["queued"] += 1
            queued.append(unit)
            log(LOG, logging.INFO, "queued", object=unit.object_id, etag=unit.etag, message_id=ok["MessageId"])
        for bad in response.get("Failed", []):
            last_error = f"{bad.get('Code')}: {bad.get('Message')}"
            if bad.get("SenderFault") and bad.get("Id") in pending:
                # The entry itself is wrong (SQS says so): sending it again cannot succeed.
                refused[bad["Id"]] = pending.pop(bad["Id"])
    failed = set()
    for item, unit in [*refused.values(), *pending.values()]:
        counts["failed"] += 1
        failed.add(item.source_id)
        log(LOG, logging.ERROR, "send failed; claim released for the retry", object=unit.object_id,
            error=last_error)
        try:
            d.ledger.release(bucket=unit.bucket, key=unit.key, etag=unit.etag)
        except Exception as exc:  # the lease will run out instead
            log(LOG, logging.ERROR, "release failed; the claim's lease will lapse", object=unit.object_id,
                error=str(exc))
    return failed
