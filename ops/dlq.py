"""Dead-letter queue tools: inspect without consuming, and redrive without losing a message.

Inspect holds the messages it reads invisible only while it scans (so it can read past the first
ten), then makes every one visible again at once; receive counts go up by one, which a DLQ with
no redrive policy of its own does not act on.

Redrive, manual mode: receive 10, send them to the target with SendMessageBatch (body and message
attributes kept; MessageGroupId and MessageDeduplicationId for FIFO; a v1 work unit's origin set
to `redrive`), then delete from the DLQ only what was sent. A crash at any point loses nothing: at
worst a message is in both queues, and silver output is idempotent. Native mode uses SQS's
StartMessageMoveTask (no filters, at most 500 messages/s, one task per queue at a time).

Two DLQs hold two kinds of message: the events DLQ holds work units (transform gave up), the
ingest DLQ holds S3 event notifications (ingest gave up). Both are read here: an S3 event's objects
give its type, dt and sample keys, and it is redriven unchanged, to the queue it came from (the
DLQ's source queue, from ListDeadLetterSourceQueues), so ingest sees it again.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from lambdas.ingest.s3_events import ObjectCreated, extract
from lambdas.shared import work_unit
from lambdas.shared.keys import InvalidKey, parse_bronze_key
from lambdas.shared.ledger import plain
from ops.aws import all_receive_attributes, require_queue, send_batch, with_retries
from ops.errors import OpsError, UsageError
from ops.executor import BoundedExecutor
from ops.ratelimit import RateLimiter

SCAN_VISIBILITY = 60  # seconds a scanned message stays hidden while inspect/redrive runs
NATIVE_MAX_RPS = 500  # StartMessageMoveTask's MaxNumberOfMessagesPerSecond limit
SEND_ATTEMPTS = 6  # SendMessageBatch attempts per redriven batch (only failed entries are sent again)
RUNNING = "RUNNING"


@dataclass
class DlqMessage:
    message_id: str
    receipt_handle: str
    body: str
    attributes: dict
    message_attributes: dict
    unit: work_unit.WorkUnit | None
    parse_error: str | None
    objects: list[ObjectCreated] = field(default_factory=list)  # an S3 event's objects (ingest DLQ)

    @property
    def kind(self) -> str:
        """work-unit, s3-event or invalid."""
        return "work-unit" if self.unit else "s3-event" if self.objects else "invalid"

    @property
    def type(self) -> str:
        return self.unit.type if self.unit else self._from_key("type") or self._attr("type")

    @property
    def dt(self) -> str:
        return self.unit.dt if self.unit else self._from_key("dt") or self._attr("dt")

    @property
    def origin(self) -> str:
        if self.unit:
            return self.unit.origin
        return "s3-event" if self.objects else self._attr("origin")

    @property
    def keys(self) -> list[str]:
        return [self.unit.key] if self.unit else [o.key for o in self.objects]

    @property
    def versions(self) -> list[tuple[str, str]]:
        """(object id, etag) of each object the message names, as the ledger keys them."""
        if self.unit:
            return [(self.unit.object_id, self.unit.etag)]
        return [(f"s3://{o.bucket}/{o.key}", o.etag.strip('"')) for o in self.objects]

    def _from_key(self, name: str) -> str | None:
        for obj in self.objects:
            try:
                return getattr(parse_bronze_key(obj.key), name)
            except InvalidKey:
                continue
        return None

    def _attr(self, name: str) -> str:
        return (self.message_attributes.get(name) or {}).get("StringValue") or "?"

    @property
    def age_seconds(self) -> float:
        sent = int(self.attributes.get("SentTimestamp", "0")) / 1000
        return max(0.0, time.time() - sent) if sent else 0.0

    @property
    def receive_count(self) -> int:
        return int(self.attributes.get("ApproximateReceiveCount", "0"))


def _message(raw: dict) -> DlqMessage:
    body = raw["Body"]  # SQS has no message without one
    try:
        unit, error = work_unit.parse(body), None
    except work_unit.InvalidWorkUnit as exc:
        unit, error = None, str(exc)
    objects = [o for o in extract(body) if isinstance(o, ObjectCreated)]  # none in a work unit
    return DlqMessage(message_id=raw["MessageId"], receipt_handle=raw["ReceiptHandle"], body=body,
                      attributes=raw.get("Attributes", {}), message_attributes=raw.get("MessageAttributes", {}),
                      unit=unit, parse_error=None if objects else error, objects=objects)


class Held:
    """Messages received and held invisible; refreshed on long runs, released at the end."""

    def __init__(self, sqs, queue_url: str, visibility: int = SCAN_VISIBILITY):
        self.sqs, self.queue_url, self.visibility = sqs, queue_url, visibility
        self.receipts: dict[str, str] = {}
        self.since = time.monotonic()
        self.lock = threading.Lock()

    def add(self, message: DlqMessage) -> None:
        with self.lock:
            self.receipts[message.message_id] = message.receipt_handle

    def refresh_if_due(self) -> None:
        if time.monotonic() - self.since > self.visibility / 2:
            self._change(self.visibility)
            self.since = time.monotonic()

    def release(self) -> None:
        self._change(0)
        with self.lock:
            self.receipts.clear()

    def _change(self, timeout: int) -> None:
        with self.lock:
            items = list(self.receipts.items())
        for start in range(0, len(items), 10):
            entries = [{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": timeout}
                       for i, (_, h) in enumerate(items[start:start + 10])]
            with_retries(lambda e=entries: self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=e),
                         action="sqs:ChangeMessageVisibility", resource=self.queue_url)


def receive(sqs, queue_url: str, *, visibility: int = SCAN_VISIBILITY, wait_seconds: int = 1) -> list[DlqMessage]:
    """Up to ten messages, held for `visibility` seconds. A long poll (`wait_seconds` > 0) asks
    every SQS server, so an empty answer means an empty queue; a short poll asks only some."""
    response = with_retries(lambda: sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=visibility, WaitTimeSeconds=wait_seconds,
        **all_receive_attributes(sqs)),
        action="sqs:ReceiveMessage", resource=queue_url)
    return [_message(m) for m in response.get("Messages", [])]


# --- inspect -------------------------------------------------------------------------------------
@dataclass
class Group:
    type: str
    dt: str
    origin: str
    last_error: str
    count: int = 0
    oldest_age_seconds: float = 0.0
    max_receive_count: int = 0
    sample_keys: list[str] = field(default_factory=list)


@dataclass
class InspectReport:
    queue_url: str
    messages: int
    approximate_depth: int
    groups: list[Group]
    invalid_bodies: int
    out: str | None = None
    s3_events: int = 0  # messages that are S3 event notifications (the ingest DLQ), not work units


def _ledger_errors(ddb, table: str | None, versions: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """Ledger items for these object versions, (object id, etag) (BatchGetItem, 100 at a time)."""
    if not table or not versions:
        return {}
    found: dict[tuple[str, str], dict] = {}
    keys = list(set(versions))
    for start in range(0, len(keys), 100):
        request = {table: {"Keys": [{"pk": {"S": pk}, "etag": {"S": etag}} for pk, etag in keys[start:start + 100]],
                           "ConsistentRead": True}}
        while request:
            response = with_retries(lambda r=request: ddb.batch_get_item(RequestItems=r),
                                    action="dynamodb:BatchGetItem", resource=table)
            for raw in response.get("Responses", {}).get(table, []):
                item = plain(raw)
                found[(item["pk"], item["etag"])] = item
            request = response.get("UnprocessedKeys") or None
    return found


def inspect(sqs, *, queue_url: str, ddb=None, table: str | None = None, max_messages: int = 100,
            out_path: str | None = None, on_record: Callable[[dict], None] | None = None) -> InspectReport:
    """Read up to `max_messages` without consuming them, grouped by type, dt, origin and the
    ledger's last_error; `out_path` gets every message whole, one JSON line each, and `on_record`
    each such record (the CLI's --jsonl)."""
    depth = int(with_retries(lambda: sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]), action="sqs:GetQueueAttributes",
        resource=queue_url)["Attributes"]["ApproximateNumberOfMessages"])
    held = Held(sqs, queue_url)
    seen: dict[str, DlqMessage] = {}
    try:
        while len(seen) < max_messages:
            new = [m for m in receive(sqs, queue_url) if m.message_id not in seen]
            for message in new:
                seen[message.message_id] = message
                held.add(message)
            held.refresh_if_due()
            if not new:  # one empty long poll: long polling asks every SQS server
                break
    finally:
        held.release()
    messages = list(seen.values())[:max_messages]
    ledger = _ledger_errors(ddb, table, [v for m in messages for v in m.versions])
    groups: dict[tuple, Group] = {}
    for message in messages:
        item = next((ledger[v] for v in message.versions if v in ledger), {})
        error = message.parse_error and f"invalid body: {message.parse_error}" or item.get("last_error") or (
            _no_error(message, item) if table else "(ledger not read)")
        key = (message.type, message.dt, message.origin, error)
        group = groups.setdefault(key, Group(*key))
        group.count += 1
        group.oldest_age_seconds = max(group.oldest_age_seconds, round(message.age_seconds, 1))
        group.max_receive_count = max(group.max_receive_count, message.receive_count)
        for key in message.keys:
            if len(group.sample_keys) < 3 and key not in group.sample_keys:
                group.sample_keys.append(key)
    records = ({"message_id": message.message_id, "kind": message.kind, "body": message.body,
                "attributes": message.attributes, "message_attributes": message.message_attributes,
                "ledger": next((ledger[v] for v in message.versions if v in ledger), None)} for message in messages)
    if out_path or on_record:
        out = open(out_path, "w", encoding="utf-8") if out_path else None  # noqa: SIM115 - closed below
        try:
            for record in records:
                if out is not None:
                    out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                if on_record is not None:
                    on_record(record)
        finally:
            if out is not None:
                out.close()
    ordered = sorted(groups.values(), key=lambda g: (-g.count, g.type, g.dt, g.origin, g.last_error))
    return InspectReport(queue_url=queue_url, messages=len(messages), approximate_depth=depth, groups=ordered,
                         invalid_bodies=sum(1 for m in messages if m.kind == "invalid"), out=out_path,
                         s3_events=sum(1 for m in messages if m.kind == "s3-event"))


def _no_error(message: DlqMessage, item: dict) -> str:
    if message.kind != "s3-event":
        return "(no ledger item)" if not item else f"(ledger: {item.get('status')}, no last_error)"
    if not item:
        return "S3 event ingest could not finish (no ledger item: never claimed, or the claim was released)"
    return f"S3 event ingest could not finish (ledger: {item.get('status')})"


def source_queues(sqs, dlq_url: str) -> list[str]:
    """The queues whose RedrivePolicy points at this DLQ: where its messages came from."""
    urls: list[str] = []
    kwargs: dict = {"QueueUrl": dlq_url}
    while True:
        page = with_retries(lambda k=dict(kwargs): sqs.list_dead_letter_source_queues(**k),
                            action="sqs:ListDeadLetterSourceQueues", resource=dlq_url)
        urls += page["queueUrls"]  # required in the answer
        if not page.get("NextToken"):
            return urls
        kwargs["NextToken"] = page["NextToken"]


# --- redrive -------------------------------------------------------------------------------------
@dataclass
class RedriveReport:
    mode: str
    source: str
    target: str | None
    moved: int = 0
    matched: int = 0
    skipped_by_filter: int = 0
    failed: list[dict] = field(default_factory=list)
    dry_run: bool = False
    task_handle: str | None = None
    task_status: str | None = None
    task_moved: int | None = None
    task_to_move: int | None = None
    note: str = ""
    seconds: float = 0.0
    left_unreached: int = 0  # FIFO with filters: messages never received, behind filtered ones in their group
    received_again: int = 0  # receives that returned a message this redrive already had (SQS is at-least-once)


def queue_arn(sqs, queue_url: str) -> str:
    return with_retries(lambda: sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]),
                        action="sqs:GetQueueAttributes", resource=queue_url)["Attributes"]["QueueArn"]


def choose_mode(mode: str, *, filters: bool, max_messages: int | None, max_rps: float | None) -> tuple[str, str]:
    """'native' or 'manual' for the requested mode, with the reason."""
    blockers = []
    if filters:
        blockers.append("filters need manual mode")
    if max_messages is not None:
        blockers.append("--max needs manual mode")
    if max_rps is not None and max_rps > NATIVE_MAX_RPS:
        blockers.append(f"--max-rps above {NATIVE_MAX_RPS} needs manual mode")
    if mode == "native" and blockers:
        raise UsageError("--mode native is not possible: " + "; ".join(blockers))
    if mode == "manual":
        return "manual", "manual mode requested"
    if blockers:
        return "manual", "; ".join(blockers)
    return "native", "no filters: SQS message move task"


class NativeUnavailable(OpsError):
    """The move-task APIs failed before any task started (not implemented here, or not allowed)."""


def running_task(sqs, source_arn: str) -> dict | None:
    try:
        tasks = with_retries(lambda: sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10),
                             action="sqs:ListMessageMoveTasks", resource=source_arn, attempts=3).get("Results", [])
    except OpsError as exc:
        raise NativeUnavailable(str(exc)) from exc
    return next((t for t in tasks if t.get("Status") == RUNNING), None)


def redrive_native(sqs, *, source_url: str, target_url: str | None, max_rps: float | None, wait: bool = False,
                   on_progress: Callable[[dict], None] | None = None, poll_seconds: float = 2.0,
                   dry_run: bool = False) -> RedriveReport:
    """Start (or report the already running) StartMessageMoveTask; with `wait`, poll until it ends."""
    started = time.monotonic()
    source_arn = queue_arn(sqs, source_url)
    report = RedriveReport(mode="native", source=source_url, target=target_url, dry_run=dry_run)
    task = running_task(sqs, source_arn)
    if task:
        report.note = "a move task is already running for this queue; reporting it instead of starting another"
    elif dry_run:
        report.note = "would start a message move task"
        return report
    else:
        kwargs = {"SourceArn": source_arn}
        if target_url:
            kwargs["DestinationArn"] = queue_arn(sqs, target_url)
        if max_rps:
            kwargs["MaxNumberOfMessagesPerSecond"] = int(max_rps)
        try:
            started_task = with_retries(lambda: sqs.start_message_move_task(**kwargs),
                                        action="sqs:StartMessageMoveTask", resource=source_arn, attempts=3)
        except OpsError as exc:
            raise NativeUnavailable(str(exc)) from exc
        task = {"TaskHandle": started_task["TaskHandle"], "Status": RUNNING}
    report.task_handle = task.get("TaskHandle")
    while True:
        report.task_status = task.get("Status")
        report.task_moved = task.get("ApproximateNumberOfMessagesMoved")
        report.task_to_move = task.get("ApproximateNumberOfMessagesToMove")
        if on_progress:
            on_progress(task)
        if not wait or report.task_status != RUNNING:
            break
        time.sleep(poll_seconds)
        tasks = with_retries(lambda: sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10),
                             action="sqs:ListMessageMoveTasks", resource=source_arn).get("Results", [])
        task = next((t for t in tasks if t.get("TaskHandle") == report.task_handle), tasks[0] if tasks else task)
    if report.task_status == "FAILED":
        report.failed.append({"task": report.task_handle, "error": task.get("FailureReason", "move task failed")})
    report.moved = report.task_moved or 0
    report.seconds = round(time.monotonic() - started, 3)
    return report


def cancel_native(sqs, *, source_url: str) -> RedriveReport:
    source_arn = queue_arn(sqs, source_url)
    report = RedriveReport(mode="native", source=source_url, target=None)
    task = running_task(sqs, source_arn)
    if not task:
        report.note = "no move task is running for this queue: nothing to cancel"
        return report
    moved = with_retries(lambda: sqs.cancel_message_move_task(TaskHandle=task["TaskHandle"]),
                         action="sqs:CancelMessageMoveTask", resource=source_arn)
    report.task_handle, report.task_status = task["TaskHandle"], "CANCELLING"
    report.task_moved = moved.get("ApproximateNumberOfMessagesMoved")
    report.note = "cancel requested; messages already moved stay moved"
    return report


def redrive_deduplication_id(message: DlqMessage, run_id: str) -> str:
    """The MessageDeduplicationId of a redriven FIFO message: derived from the original's id and
    this redrive. Reusing the original's id would be accepted by SQS but not delivered within its
    five-minute deduplication window (and the DLQ copy would then be deleted: a loss); a retried
    send within this redrive keeps the same id, so SQS still drops that duplicate."""
    original = message.attributes.get("MessageDeduplicationId") or message.message_id
    return hashlib.sha256(f"{original}|redrive|{run_id}".encode()).hexdigest()


def _outgoing(message: DlqMessage, *, fifo: bool, run_id: str) -> dict:
    """The entry to send: same body and attributes; a v1 work unit is marked origin=redrive."""
    body, attributes = message.body, dict(message.message_attributes)
    if message.unit is not None:
        unit = work_unit.build(bucket=message.unit.bucket, key=message.unit.key, etag=message.unit.etag,
                               size=message.unit.size, origin="redrive")
        body = unit.body()
        attributes.update(unit.message_attributes())
    entry = {"MessageBody": body}
    if attributes:
        entry["MessageAttributes"] = {
            name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
            for name, value in attributes.items()}
    if fifo:
        entry["MessageGroupId"] = message.attributes.get("MessageGroupId") or "redrive"
        entry["MessageDeduplicationId"] = redrive_deduplication_id(message, run_id)
    return entry


def redrive_manual(sqs, *, source_url: str, target_url: str, max_messages: int | None = None,
                   max_rps: float | None = None, filter_type: str | None = None, filter_dt: str | None = None,
                   dry_run: bool = False, on_progress: Callable[[RedriveReport], None] | None = None,
                   visibility: int = SCAN_VISIBILITY, workers: int = 4) -> RedriveReport:
    """Receive 10, send what matches, delete only what was sent; retry only failed entries.
    `workers` loops run side by side (each receive/send/delete is a round trip)."""
    started = time.monotonic()
    report = RedriveReport(mode="manual", source=source_url, target=target_url, dry_run=dry_run)
    fifo = target_url.endswith(".fifo")
    run_id = uuid.uuid4().hex  # this redrive, for FIFO deduplication ids
    held = Held(sqs, source_url, visibility)  # skipped (filtered) and unsent messages, released at the end
    seen: set[str] = set()
    moved_ids: set[str] = set()  # sent and deleted from the DLQ
    lock = threading.Lock()
    executor = BoundedExecutor(workers, name="redrive")
    limiter = RateLimiter(max_rps, stop=executor.stop)

    def full() -> bool:
        return max_messages is not None and report.matched >= max_messages

    def loop(_worker: int) -> None:
        while not executor.stopping() and not full():
            batch = receive(sqs, source_url, visibility=visibility)
            chosen = []
            with lock:
                again = [m for m in batch if m.message_id in seen]
                batch = [m for m in batch if m.message_id not in seen]
                report.received_again += len(again)
                # Never sent twice. Its newest receipt handle is the one SQS honours: one already moved
                # is deleted with it, any other is held with it so it is visible again at the end.
                moved_again = [m for m in again if m.message_id in moved_ids]
                for message in again:
                    if message.message_id not in moved_ids:
                        held.add(message)
                for message in batch:
                    seen.add(message.message_id)
                    wanted = (filter_type is None or message.type == filter_type) and (
                        filter_dt is None or message.dt == filter_dt)
                    if wanted and not full():
                        report.matched += 1
                        chosen.append(message)
                    else:
                        report.skipped_by_filter += wanted is False
                        held.add(message)
            if moved_again:
                _delete(sqs, moved_again, source_url=source_url)
            if not batch:  # one empty long poll ends a worker: long polling asks every SQS server
                break
            if dry_run:
                for message in chosen:
                    held.add(message)
            elif chosen:
                try:
                    _move(sqs, chosen, source_url=source_url, target_url=target_url, fifo=fifo, limiter=limiter,
                          report=report, held=held, lock=lock, run_id=run_id, moved_ids=moved_ids)
                except BaseException:  # stopped, denied, interrupted: visible in the DLQ again at the end
                    for message in chosen:  # not sent (or not known to be): at worst a duplicate later
                        held.add(message)
                    raise
            held.refresh_if_due()
            if on_progress:
                on_progress(report)

    try:
        executor.run(loop, range(max(1, workers)))
    finally:
        executor.shutdown()
        held.release()
        report.seconds = round(time.monotonic() - started, 3)
    if source_url.endswith(".fifo") and (filter_type or filter_dt):
        _count_unreached(sqs, source_url, report)
    return report


def _count_unreached(sqs, source_url: str, report: RedriveReport) -> None:
    """A FIFO queue hands out a message group in order: a message the filters keep back blocks the
    messages behind it in its group, so the redrive never sees them. Count them (the queue's
    depth less what the filters kept and what failed) so the report says what was left and why."""
    attributes = with_retries(lambda: sqs.get_queue_attributes(
        QueueUrl=source_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]),
        action="sqs:GetQueueAttributes", resource=source_url)["Attributes"]
    depth = int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])
    accounted = report.skipped_by_filter + len(report.failed) + (report.matched if report.dry_run else 0)
    report.left_unreached = max(0, depth - accounted)
    if report.left_unreached:
        report.note = (f"{report.left_unreached} message(s) were never received: in a FIFO queue a message the "
                       "filters keep back blocks the rest of its message group, so matching messages behind it "
                       "cannot be reached; redrive without filters (or move the blocking ones first) to reach them")


def _move(sqs, messages: list[DlqMessage], *, source_url: str, target_url: str, fifo: bool, limiter: RateLimiter,
          report: RedriveReport, held: Held, lock: threading.Lock, run_id: str, moved_ids: set[str]) -> None:
    """Send one receive's messages (at most ten), then delete from the DLQ those that were sent."""
    entries = {str(i): _outgoing(m, fifo=fifo, run_id=run_id) for i, m in enumerate(messages)}
    sent: list[DlqMessage] = []
    for i, (ok, detail) in send_batch(sqs, queue_url=target_url, entries=entries, limiter=limiter,
                                      attempts=SEND_ATTEMPTS).items():
        message = messages[int(i)]
        if ok:
            sent.append(message)
            continue
        with lock:  # never sent: stays in the DLQ
            report.failed.append({"message_id": message.message_id, "error": detail})
        held.add(message)
    if not sent:
        return
    # Delete only what reached the target: one batch.
    response = _delete(sqs, sent, source_url=source_url)
    with lock:
        report.moved += len(response.get("Successful", []))
        moved_ids.update(sent[int(ok["Id"])].message_id for ok in response.get("Successful", []))
        for bad in response.get("Failed", []):
            # Sent but not deleted: it will be redriven again later (a duplicate, never a loss).
            report.failed.append({"message_id": sent[int(bad["Id"])].message_id,
                                  "error": f"sent, but not deleted from the DLQ: {bad.get('Code')}"})


def _delete(sqs, messages: list[DlqMessage], *, source_url: str) -> dict:
    entries = [{"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(messages)]
    return with_retries(lambda: sqs.delete_message_batch(QueueUrl=source_url, Entries=entries),
                        action="sqs:DeleteMessage", resource=source_url)


def check_filters(*, filter_type: str | None, filter_dt: str | None) -> None:
    """A filter that can match nothing is a mistake, not an empty redrive: name it and the fix."""
    from lambdas.shared import schemas
    from lambdas.shared.keys import validate_dt

    if filter_type is not None:
        try:
            schemas.get(filter_type)
        except schemas.UnknownType as exc:
            raise UsageError(f"--filter-type {filter_type!r}: {exc}") from None
    if filter_dt is not None:
        value = filter_dt[3:] if filter_dt.startswith("dt=") else filter_dt
        try:
            validate_dt(value)
        except ValueError as exc:
            raise UsageError(f"--filter-dt {filter_dt!r} is not a day: {exc}; give it as YYYY-MM-DD"
                             + (f", e.g. {value}" if value != filter_dt else "")) from None
        if value != filter_dt:
            raise UsageError(f"--filter-dt {filter_dt!r}: give the day without 'dt=', e.g. --filter-dt {value}")


# --- one redrive, as the CLI asks for it --------------------------------------------------------
@dataclass(frozen=True)
class RedrivePlan:
    """What a redrive is about to do, handed to `confirm` before anything moves."""

    mode: str
    reason: str
    source: str
    target: str | None
    messages: int = 0  # ApproximateNumberOfMessages in the DLQ now
    filtered: bool = False  # only those matching --filter-type/--filter-dt will move


def redrive(sqs, *, mode: str, source_url: str, target_url: str | None, confirm: Callable[[RedrivePlan], bool],
            max_messages: int | None = None, max_rps: float | None = None, filter_type: str | None = None,
            filter_dt: str | None = None, wait: bool = False, dry_run: bool = False, workers: int = 4,
            visibility: int = SCAN_VISIBILITY, on_info: Callable[[str], None] | None = None,
            on_task_progress: Callable[[dict], None] | None = None) -> RedriveReport:
    """Redrive in the requested mode (auto, native, manual): pick the mode, ask `confirm(plan)`
    (not for a dry run), then move. In auto mode an endpoint without the move-task APIs (the
    embedded AWS) falls back to manual mode."""
    check_filters(filter_type=filter_type, filter_dt=filter_dt)
    chosen, why = choose_mode(mode, filters=bool(filter_type or filter_dt), max_messages=max_messages,
                              max_rps=max_rps)
    if chosen == "manual" and not target_url:
        raise UsageError("manual redrive needs --to-url (or ELT_QUEUE_URL): the queue to send messages to")
    def say(message: str) -> None:
        if on_info:
            on_info(message)

    require_queue(sqs, source_url)
    if target_url:
        require_queue(sqs, target_url, option="--to-url")
    say(f"mode: {chosen} ({why})")
    depth = int(with_retries(lambda: sqs.get_queue_attributes(
        QueueUrl=source_url, AttributeNames=["ApproximateNumberOfMessages"]), action="sqs:GetQueueAttributes",
        resource=source_url)["Attributes"]["ApproximateNumberOfMessages"])
    plan = RedrivePlan(mode=chosen, reason=why, source=source_url, target=target_url, messages=depth,
                       filtered=bool(filter_type or filter_dt))
    if not dry_run and not confirm(plan):
        raise OpsError("not confirmed; nothing moved")
    if chosen == "native":
        try:
            return redrive_native(sqs, source_url=source_url, target_url=target_url, max_rps=max_rps, wait=wait,
                                  dry_run=dry_run, on_progress=on_task_progress)
        except NativeUnavailable as exc:
            if mode == "native" or not target_url:
                raise
            say(f"native move task unavailable ({exc}); using manual mode")
    return redrive_manual(sqs, source_url=source_url, target_url=target_url, max_messages=max_messages,
                          max_rps=max_rps, filter_type=filter_type, filter_dt=filter_dt, dry_run=dry_run,
                          workers=workers, visibility=visibility)
