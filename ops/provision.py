"""Pre-create the events queue and its DLQ for accounts where Terraform may not create or tag
queues, and hand their identities to Terraform as a *.auto.tfvars.json.

Queues are created without tags (no sqs:TagQueue needed, and nothing here calls ListQueueTags),
with SSE-SQS on, the queue's RedrivePolicy pointing at the DLQ and the DLQ's RedriveAllowPolicy
naming the queue. Everything is find-or-create and compare-then-set: a second run changes nothing
and writes the same file.

A queue must suit the event source mapping that consumes it: a standard queue (a FIFO events queue
is refused with the reason) whose visibility timeout covers 6x the consumer's timeout plus the
batching window. That timeout is written to the file too, so Terraform checks it at plan time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ops.aws import error_code, with_retries
from ops.errors import AccessDenied, OpsError, UsageError
from ops.state import atomic_write

TFVARS_KEYS = ("existing_queue_url", "existing_queue_arn", "existing_dlq_url", "existing_dlq_arn",
               "existing_queue_visibility_timeout_seconds",
               "existing_ingest_queue_url", "existing_ingest_queue_arn", "existing_ingest_dlq_url",
               "existing_ingest_dlq_arn", "existing_ingest_queue_visibility_timeout_seconds")
QUEUE_ROLES = ("events", "ingest")  # the events queue (work units) or the ingest queue (S3 events)


# The consumer of each queue role, as envs/dev sets it up: (Lambda timeout, batching window) in seconds.
CONSUMERS = {"events": (300, 5), "ingest": (30, 0)}  # transform_timeout/_batching_window; ingest_timeout
FIFO_REFUSED = ("the events queue cannot be FIFO: ingest sends no MessageGroupId, and Lambda allows no "
                "batching window on a FIFO event source mapping (transform_batching_window_seconds); use a "
                "standard queue (version order is kept by the ledger's sequencers, not by the queue)")


def tfvars_for(role: str, *, queue_url, queue_arn, dlq_url, dlq_arn, visibility_timeout) -> dict:
    """The existing_* Terraform variables of one queue role (existing_ingest_* for the ingest queue)."""
    infix = "" if role == "events" else f"{role}_"
    return {f"existing_{infix}queue_url": queue_url, f"existing_{infix}queue_arn": queue_arn,
            f"existing_{infix}dlq_url": dlq_url, f"existing_{infix}dlq_arn": dlq_arn,
            f"existing_{infix}queue_visibility_timeout_seconds": visibility_timeout}


def minimum_visibility_timeout(*, consumer_timeout: int, batching_window: int) -> int:
    """What Lambda's event source mapping needs of its queue: 6x the function's timeout (AWS
    guidance) plus the batching window."""
    return 6 * consumer_timeout + batching_window


def _consumer(role: str, consumer_timeout: int | None, batching_window: int | None) -> tuple[int, int]:
    default_timeout, default_window = CONSUMERS[role]
    timeout = default_timeout if consumer_timeout is None else consumer_timeout
    window = default_window if batching_window is None else batching_window
    if not 1 <= timeout <= 900:
        raise UsageError(f"--consumer-timeout {timeout} is outside 1..900 seconds (Lambda's limit)")
    if not 0 <= window <= 300:
        raise UsageError(f"--batching-window {window} is outside 0..300 seconds")
    return timeout, window
RUNBOOK = "runbooks/restricted-account-queues.md"
DLQ_RETENTION = "1209600"  # 14 days, the SQS maximum: time to triage


@dataclass
class QueueState:
    name: str
    url: str | None
    arn: str | None
    created: bool = False
    changed: dict = field(default_factory=dict)  # attribute -> (old, new)


@dataclass
class ProvisionReport:
    queue: QueueState | None
    dlq: QueueState | None
    dry_run: bool
    out: str | None
    tfvars: dict
    changed: bool
    notes: list[str] = field(default_factory=list)


def _call(fn, action: str, resource: str):
    try:
        return with_retries(fn, action=action, resource=resource)
    except AccessDenied as exc:
        raise AccessDenied(f"{exc}. Ask for {action} on {resource}, or follow {RUNBOOK}") from exc


def _find(sqs, name: str) -> str | None:
    try:
        return with_retries(lambda: sqs.get_queue_url(QueueName=name), action="sqs:GetQueueUrl",
                            resource=name)["QueueUrl"]
    except OpsError as exc:
        if error_code(exc.__cause__) in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            return None
        if isinstance(exc, AccessDenied):
            raise AccessDenied(f"{exc}. Ask for sqs:GetQueueUrl, or follow {RUNBOOK}") from exc
        raise


def _attributes(sqs, url: str) -> dict:
    return _call(lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]),
                 "sqs:GetQueueAttributes", url).get("Attributes", {})


def _same(name: str, current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    if name in ("RedrivePolicy", "RedriveAllowPolicy"):
        try:
            a, b = json.loads(current), json.loads(wanted)
        except ValueError:
            return False
        normalize = {k: (str(v) if k == "maxReceiveCount" else v) for k, v in a.items()}
        return normalize == {k: (str(v) if k == "maxReceiveCount" else v) for k, v in b.items()}
    return str(current).lower() == str(wanted).lower()


def ensure_queue(sqs, *, name: str, attributes: dict[str, str], dry_run: bool,
                 redrive: tuple[str, int | None] | None = None,
                 confirm: Callable[[list[str]], bool] | None = None) -> QueueState:
    """Find or create one queue without tags; set the attributes that differ. `redrive` is the
    (DLQ ARN, maxReceiveCount or None) to attach: a live policy keeps its maxReceiveCount unless
    one is given, and changing a policy the queue already has needs `confirm(diff lines)`."""
    if name.endswith(".fifo"):
        attributes = {**attributes, "FifoQueue": "true"}
    url = _find(sqs, name)
    current = _attributes(sqs, url) if url else {}
    if redrive is not None:
        dlq_arn, count = redrive
        current_policy = current.get("RedrivePolicy")
        policy = redrive_policy_change(current_policy, dlq_arn=dlq_arn, max_receive_count=count)
        if policy is not None:
            attributes = {**attributes, "RedrivePolicy": policy}
            if current_policy and not dry_run:
                diff = policy_diff(current_policy, policy)
                if confirm is None or not confirm(diff):
                    raise OpsError(f"not confirmed; {url} keeps its RedrivePolicy ({'; '.join(diff)} not applied)")
    if url is None:
        state = QueueState(name=name, url=None, arn=None, created=True,
                           changed={k: (None, v) for k, v in attributes.items()})
        if dry_run:
            return state
        url = _call(lambda: sqs.create_queue(QueueName=name, Attributes=attributes), "sqs:CreateQueue", name)["QueueUrl"]
        state.url = url
        state.arn = _attributes(sqs, url)["QueueArn"]
        return state
    changes = {k: (current.get(k), v) for k, v in attributes.items() if k != "FifoQueue" and not _same(k, current.get(k), v)}
    state = QueueState(name=name, url=url, arn=current["QueueArn"], changed=changes)
    if changes and not dry_run:
        _call(lambda: sqs.set_queue_attributes(QueueUrl=url, Attributes={k: v for k, (_, v) in changes.items()}),
              "sqs:SetQueueAttributes", url)
    return state


def _arn_for(sqs, name: str) -> str:
    """The ARN a queue will have (dry run of a queue not created yet), from the account's URL form."""
    region = sqs.meta.region_name
    return f"arn:aws:sqs:{region}:<account>:{name}"


def provision_queue(sqs, *, name: str, with_dlq: bool = True, max_receive_count: int | None = None,
                    visibility_timeout: int | None = None, consumer_timeout: int | None = None,
                    batching_window: int | None = None, dry_run: bool = False, out: str | None = None,
                    dlq_name: str | None = None, role: str = "events",
                    confirm: Callable[[list[str]], bool] | None = None) -> ProvisionReport:
    """Create, or find, the events or ingest queue (and its DLQ) and write existing_* (or
    existing_ingest_*) for Terraform. A queue that already has a RedrivePolicy keeps its
    maxReceiveCount unless one is given, and changing that policy needs `confirm(diff lines)`."""
    check_out(out)
    if role not in QUEUE_ROLES:
        raise UsageError(f"queue role {role!r} is not one of {', '.join(QUEUE_ROLES)}")
    if role == "ingest" and name.endswith(".fifo"):
        raise UsageError(f"--name {name}: the ingest queue receives S3 event notifications, which S3 cannot send "
                         "to a FIFO queue; use a standard queue name")
    if name.endswith(".fifo"):
        raise UsageError(f"--name {name!r}: {FIFO_REFUSED}")
    if max_receive_count is not None and not 1 <= max_receive_count <= 1000:
        raise UsageError(f"--max-receive-count {max_receive_count} is outside 1..1000")
    timeout, window = _consumer(role, consumer_timeout, batching_window)
    minimum = minimum_visibility_timeout(consumer_timeout=timeout, batching_window=window)
    visibility_timeout = minimum if visibility_timeout is None else visibility_timeout
    if not minimum <= visibility_timeout <= 43200:
        raise UsageError(f"--visibility-timeout {visibility_timeout} must be between 6 x --consumer-timeout + "
                         f"--batching-window = {minimum} and 43200 seconds: a shorter one makes the event "
                         "source mapping fail")
    dlq_name = dlq_name or f"{name}-dlq"
    dlq = None
    if with_dlq:
        dlq = ensure_queue(sqs, name=dlq_name, attributes={"SqsManagedSseEnabled": "true",
                                                           "MessageRetentionPeriod": DLQ_RETENTION}, dry_run=dry_run)
    queue_attributes = {"SqsManagedSseEnabled": "true", "VisibilityTimeout": str(visibility_timeout)}
    redrive = (dlq.arn or _arn_for(sqs, dlq_name), max_receive_count) if dlq else None
    queue = ensure_queue(sqs, name=name, attributes=queue_attributes, dry_run=dry_run, redrive=redrive,
                         confirm=confirm)
    notes: list[str] = []
    if dlq:
        _ensure_allow_policy(sqs, dlq, queue.arn or _arn_for(sqs, name), dry_run, notes)
    else:
        notes.append("no DLQ: a poison message is retried until the queue's retention drops it (Terraform warns; "
                     "attach one later with eltops provision ensure-dlq)")
    tfvars = tfvars_for(role, queue_url=queue.url, queue_arn=queue.arn, dlq_url=dlq.url if dlq else None,
                        dlq_arn=dlq.arn if dlq else None, visibility_timeout=visibility_timeout)
    changed = bool(queue.created or queue.changed or (dlq and (dlq.created or dlq.changed)))
    if out and not dry_run:
        write_tfvars(out, tfvars)
    return ProvisionReport(queue=queue, dlq=dlq, dry_run=dry_run, out=out, tfvars=tfvars, changed=changed,
                           notes=notes)


DEFAULT_MAX_RECEIVE_COUNT = 5  # for a queue that has no redrive policy yet


def redrive_policy_change(current: str | None, *, dlq_arn: str, max_receive_count: int | None) -> str | None:
    """The RedrivePolicy to set, or None when the current one already says it. Only what was asked
    changes: an existing policy keeps its maxReceiveCount unless one is given."""
    try:
        old = json.loads(current) if current else None
    except ValueError:
        old = None
    if not isinstance(old, dict):
        old = None
    count = max_receive_count if max_receive_count is not None else (
        int(old.get("maxReceiveCount", DEFAULT_MAX_RECEIVE_COUNT)) if old else DEFAULT_MAX_RECEIVE_COUNT)
    new = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": count}, separators=(",", ":"))
    return None if _same("RedrivePolicy", current, new) else new


def policy_diff(old: str | None, new: str) -> list[str]:
    """`field: old -> new` lines between two redrive policies (what a confirmation shows)."""
    before = json.loads(old) if old else {}
    after = json.loads(new)
    return [f"{name}: {before.get(name, '(none)')} -> {after[name]}" for name in sorted(after)
            if str(before.get(name)) != str(after[name])]


def ensure_dlq(sqs, *, queue_url: str, dlq_name: str, max_receive_count: int | None = None, dry_run: bool = False,
               out: str | None = None, confirm: Callable[[list[str]], bool] | None = None,
               consumer_timeout: int | None = None, batching_window: int | None = None) -> ProvisionReport:
    """Create the DLQ if missing and attach it to an existing queue (only its RedrivePolicy is
    touched, and in it only what was asked); a rerun is a no-op. Changing a policy the queue
    already has needs `confirm(diff lines)` to say yes (the CLI asks, or --yes)."""
    check_out(out)
    current = _attributes(sqs, queue_url)
    name = queue_url.rstrip("/").rsplit("/", 1)[-1]
    if name.endswith(".fifo") != dlq_name.endswith(".fifo"):
        raise UsageError(f"--dlq-name {dlq_name!r}: a FIFO queue needs a FIFO DLQ (name ending .fifo) and a "
                         "standard queue a standard one")
    queue = QueueState(name=name, url=queue_url, arn=current["QueueArn"])
    # The DLQ lives in the queue's account and region: its ARN is known before it exists.
    dlq_arn = f"{queue.arn.rsplit(':', 1)[0]}:{dlq_name}"
    redrive = redrive_policy_change(current.get("RedrivePolicy"), dlq_arn=dlq_arn,
                                    max_receive_count=max_receive_count)
    if redrive is not None and current.get("RedrivePolicy") and not dry_run:
        diff = policy_diff(current.get("RedrivePolicy"), redrive)
        if confirm is None or not confirm(diff):
            raise OpsError(f"not confirmed; {queue_url} keeps its RedrivePolicy ({'; '.join(diff)} not applied)")
    dlq = ensure_queue(sqs, name=dlq_name, attributes={"SqsManagedSseEnabled": "true",
                                                       "MessageRetentionPeriod": DLQ_RETENTION}, dry_run=dry_run)
    if redrive is not None:
        queue.changed["RedrivePolicy"] = (current.get("RedrivePolicy"), redrive)
        if not dry_run:
            _call(lambda: sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"RedrivePolicy": redrive}),
                  "sqs:SetQueueAttributes", queue_url)
    notes: list[str] = []
    _ensure_allow_policy(sqs, dlq, queue.arn, dry_run, notes)
    # Only the RedrivePolicy is ensure-dlq's to change; a short visibility timeout is reported (and
    # written, so that Terraform refuses it at plan time with the same numbers).
    timeout, window = _consumer("events", consumer_timeout, batching_window)
    visibility = int(current.get("VisibilityTimeout", 30))
    minimum = minimum_visibility_timeout(consumer_timeout=timeout, batching_window=window)
    if visibility < minimum:
        notes.append(f"the queue's VisibilityTimeout {visibility} s is below 6 x {timeout} s + {window} s = "
                     f"{minimum} s: the transform's event source mapping fails to create. Raise it with eltops "
                     f"provision queue --name {name} --consumer-timeout {timeout} --batching-window {window}, or "
                     "ask the queue's owner")
    if name.endswith(".fifo"):
        notes.append(f"{name} is a FIFO queue: fine for a DLQ of its own, but not as the pipeline's events queue "
                     f"({FIFO_REFUSED.split(': ', 1)[1]})")
    tfvars = tfvars_for("events", queue_url=queue.url, queue_arn=queue.arn, dlq_url=dlq.url, dlq_arn=dlq.arn,
                        visibility_timeout=visibility)
    if out and not dry_run:
        write_tfvars(out, tfvars)
    return ProvisionReport(queue=queue, dlq=dlq, dry_run=dry_run, out=out, tfvars=tfvars,
                           changed=bool(dlq.created or dlq.changed or queue.changed), notes=notes)


def _ensure_allow_policy(sqs, dlq: QueueState, source_arn: str, dry_run: bool, notes: list[str]) -> None:
    """The DLQ accepts redrives from this queue only. Some endpoints (moto) do not keep the
    attribute: that is reported, not counted as a change on every run."""
    allow = json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [source_arn]}, separators=(",", ":"))
    current = _attributes(sqs, dlq.url).get("RedriveAllowPolicy") if dlq.url else None
    if _same("RedriveAllowPolicy", current, allow):
        return
    if dry_run:
        dlq.changed["RedriveAllowPolicy"] = (current, allow)
        return
    _call(lambda: sqs.set_queue_attributes(QueueUrl=dlq.url, Attributes={"RedriveAllowPolicy": allow}),
          "sqs:SetQueueAttributes", dlq.url)
    if _attributes(sqs, dlq.url).get("RedriveAllowPolicy") is None:
        notes.append("this endpoint does not keep RedriveAllowPolicy (SQS does; moto does not)")
    else:
        dlq.changed["RedriveAllowPolicy"] = (current, allow)


def check_out(path: str | None) -> None:
    """--out is checked before any queue is created or changed (a usage error changes nothing)."""
    if path is not None and not path.endswith(".auto.tfvars.json"):
        raise UsageError(f"--out {path!r}: Terraform reads only files named *.auto.tfvars.json automatically; "
                         "nothing was created or changed")


def write_tfvars(path: str, tfvars: dict) -> None:
    check_out(path)
    atomic_write(Path(path), (json.dumps(tfvars, indent=2, sort_keys=True) + "\n").encode("utf-8"))
