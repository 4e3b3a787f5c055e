"""Is the pipeline healthy? One look at the queues, the ledger and silver, without CloudWatch.

Checks (each with a threshold and the runbook to follow when it fails):

- `events-queue`: depth of the events queue, and the oldest work unit still waiting (the oldest
  QUEUED ledger item: SQS gives no message age without CloudWatch).
- `dlq`: each DLQ's depth and its oldest message (a peek of up to 10 messages, made visible again
  at once).
- `stuck-claims`: CLAIMED items whose lease has run out (ingest died between claim and send).
- `failed`: FAILED items finished in the window, grouped by last error.
- `silver-freshness`: per type, the newest silver object (the latest two `dt=` partitions).
- `quarantine-rate`: per type, rejected / (rows + rejected) of the items done in the window.

The ledger is read with one parallel Scan filtered to what the checks need (unfinished items, and
items finished in the window); it holds 30 days of items (their TTL), so its cost is bounded by that.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from lambdas.shared.keys import SILVER_ROOT
from lambdas.shared.ledger import CLAIMED, DONE, FAILED, QUEUED
from ops.aws import with_retries
from ops.ledger import scan_items
from ops.listing import _pages

RUNBOOK = "runbooks/pipeline-health.md"


@dataclass(frozen=True)
class Thresholds:
    max_queue_age: float = 900.0  # s: the oldest QUEUED work unit
    max_dlq_depth: int = 0
    max_stuck_claims: int = 0
    max_failed: int = 0
    max_silver_age: float = 6 * 3600.0  # s since the newest silver object of a type
    max_quarantine_rate: float = 0.05


@dataclass
class Check:
    name: str
    subject: str  # what was checked: a queue, a type, the ledger
    ok: bool
    summary: str
    value: float | int | None = None
    threshold: float | int | None = None
    runbook: str = RUNBOOK
    next_step: str = ""
    details: list = field(default_factory=list)


@dataclass
class HealthReport:
    healthy: bool
    since: str
    checked_at: str
    checks: list[Check]
    seconds: float = 0.0

    @property
    def failing(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _epoch(text) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp() if text else None
    except ValueError:
        return None


# --- queues --------------------------------------------------------------------------------------
def _depth(sqs, url: str) -> tuple[int, int, dict]:
    attrs = with_retries(lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]),
                         action="sqs:GetQueueAttributes", resource=url)["Attributes"]
    return int(attrs.get("ApproximateNumberOfMessages", 0)), int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)), attrs


def dlq_urls(sqs, *, queue_url: str, attributes: dict) -> list[str]:
    """The DLQ named by the queue's RedrivePolicy (if any), as a URL."""
    import json

    policy = attributes.get("RedrivePolicy")
    if not policy:
        return []
    arn = json.loads(policy).get("deadLetterTargetArn", "")
    name, account = arn.rsplit(":", 1)[-1], arn.split(":")[4] if arn.count(":") >= 5 else None
    response = with_retries(lambda: sqs.get_queue_url(QueueName=name, **({"QueueOwnerAWSAccountId": account}
                                                                          if account else {})),
                            action="sqs:GetQueueUrl", resource=arn)
    return [response["QueueUrl"]]


def _peek(sqs, url: str) -> list:
    """Up to 10 messages peeked at (held for a moment, then visible again)."""
    from ops.dlq import Held, receive

    held = Held(sqs, url, visibility=30)
    try:
        messages = receive(sqs, url, visibility=30, wait_seconds=0)
        for m in messages:
            held.add(m)
        return messages
    finally:
        held.release()


def check_dlq(sqs, url: str, limits: Thresholds) -> Check:
    visible, in_flight, _ = _depth(sqs, url)
    depth = visible + in_flight
    peeked = _peek(sqs, url) if visible else []
    oldest = max((m.age_seconds for m in peeked), default=None)
    ok = depth <= limits.max_dlq_depth
    name = url.rsplit("/", 1)[-1]
    # The ingest DLQ holds S3 events (ingest gave up), the events DLQ work units (transform gave up).
    s3_events = any(m.kind == "s3-event" for m in peeked)
    return Check(name="dlq", subject=name, ok=ok, value=depth, threshold=limits.max_dlq_depth,
                 summary=f"{depth} message(s)" + (f", oldest seen {_age(oldest)}" if oldest is not None else ""),
                 runbook="runbooks/ingest-dlq.md" if s3_events else "runbooks/dlq-triage-and-redrive.md",
                 next_step="" if ok else f"eltops dlq inspect --queue-url {url}")


# --- ledger --------------------------------------------------------------------------------------
def scan_ledger(ddb, *, table: str, since: float, segments: int = 4) -> list[dict]:
    """Unfinished items, and items finished since `since` (only the attributes the checks use)."""
    fields = ("pk", "etag", "status", "finished_at", "type", "key", "lease_until", "claimed_at", "queued_at", "rows",
              "rejected_rows", "last_error", "outcome", "expiration", "unknown_fields")
    values = {":c": {"S": CLAIMED}, ":q": {"S": QUEUED}, ":since": {"S": _iso(since)}}
    # unfinished (claimed or queued), or finished in the window
    return scan_items(ddb, table=table, fields=fields, condition="#2 IN (:c, :q) OR #3 >= :since", values=values,
                      segments=segments)


def ledger_checks(items: list[dict], *, now: float, limits: Thresholds, queue_depth: int) -> list[Check]:
    live = [i for i in items if int(i.get("expiration") or 0) >= now]  # TTL lags: skip what has expired
    stuck = [i for i in live if i.get("status") == CLAIMED and int(i.get("lease_until") or 0) / 1000 < now]
    queued = [(_epoch(i.get("queued_at")) or now, i) for i in live if i.get("status") == QUEUED]
    oldest_queued = now - min(t for t, _ in queued) if queued else None
    failed = [i for i in live if i.get("status") == FAILED]
    errors = Counter(str(i.get("last_error") or "(no error recorded)").split("\n", 1)[0][:160] for i in failed)
    checks = [
        Check(name="events-queue", subject="events queue", ok=(oldest_queued or 0) <= limits.max_queue_age,
              value=oldest_queued, threshold=limits.max_queue_age,
              summary=f"{queue_depth} message(s); oldest waiting work unit {_age(oldest_queued)} "
                      f"({len(queued)} QUEUED in the ledger)",
              runbook="runbooks/alarms.md",
              details=[f"{i.get('pk')} queued {i.get('queued_at')}" for _, i in sorted(queued, key=lambda p: p[0])[:5]]),
        Check(name="stuck-claims", subject="ledger", ok=len(stuck) <= limits.max_stuck_claims, value=len(stuck),
              threshold=limits.max_stuck_claims,
              summary=f"{len(stuck)} claim(s) past their lease", runbook="runbooks/find-and-fill-gaps.md",
              details=[f"{i.get('pk')} claimed {i.get('claimed_at')}" for i in stuck[:5]]),
        Check(name="failed", subject="ledger", ok=len(failed) <= limits.max_failed, value=len(failed),
              threshold=limits.max_failed, summary=f"{len(failed)} FAILED in the window",
              runbook="runbooks/dlq-triage-and-redrive.md",
              details=[f"{n:>5} x {e}" for e, n in errors.most_common(5)]),
    ]
    if checks[0].ok is False:
        checks[0].next_step = "eltops ledger ls --status QUEUED --since 1d  (then eltops reconcile)"
    if stuck:
        checks[1].next_step = _reconcile_step(stuck)
    if failed:
        checks[2].next_step = "eltops ledger ls --status FAILED --since 1d; eltops dlq inspect"
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i in live:
        if i.get("status") == DONE and i.get("outcome", "written") == "written" and i.get("type"):
            rows[i["type"]][0] += int(i.get("rows") or 0)
            rows[i["type"]][1] += int(i.get("rejected_rows") or 0)
    for type_, (good, bad) in sorted(rows.items()):
        rate = bad / (good + bad) if good + bad else 0.0
        ok = rate <= limits.max_quarantine_rate
        checks.append(Check(name="quarantine-rate", subject=type_, ok=ok, value=round(rate, 4),
                            threshold=limits.max_quarantine_rate,
                            summary=f"{rate:.1%} of {good + bad} line(s) quarantined",
                            runbook="runbooks/transform-poison-data.md",
                            next_step="" if ok else f"eltops ledger ls --prefix bronze/{type_}/ --since 1d"))
    return checks


def _reconcile_step(items: list[dict]) -> str:
    """The reconcile that finds these items' objects: by partition over the dt= days they are in
    (a claim made today may be of an object of any day, so `--since 1d` would miss it)."""
    from lambdas.shared.keys import InvalidKey, parse_bronze_key

    parsed = []
    for i in items:
        try:
            parsed.append(parse_bronze_key(str(i.get("key") or str(i.get("pk", "")).split("/", 3)[-1])))
        except InvalidKey:
            continue
    if not parsed:
        return "eltops reconcile --since 1d --replay sqs"
    types = {k.type for k in parsed}
    days = sorted({k.dt for k in parsed})
    end = (dt.date.fromisoformat(days[-1]) + dt.timedelta(days=1)).isoformat()
    prefix = f" --prefix bronze/{types.pop()}/" if len(types) == 1 else ""
    return f"eltops reconcile{prefix} --start {days[0]} --end {end} --replay sqs"


# --- silver ----------------------------------------------------------------------------------------
FRESHNESS_PAGES = 20  # listing pages read per partition (20,000 objects): health stays cheap on huge days


def silver_freshness(s3, *, bucket: str, now: float, limits: Thresholds) -> list[Check]:
    """Per type: the newest silver object of its latest two dt= partitions (at most
    FRESHNESS_PAGES listing pages of each; the detail says so when a partition was cut short)."""
    types = [c["Prefix"] for page in _pages(s3, bucket, SILVER_ROOT, Delimiter="/")
             for c in page.get("CommonPrefixes", [])]
    checks = []
    for prefix in types:
        parts = sorted(c["Prefix"] for page in _pages(s3, bucket, prefix + "dt=", Delimiter="/")
                       for c in page.get("CommonPrefixes", []))
        newest, newest_key, cut = None, None, []
        for part in parts[-2:]:
            for number, page in enumerate(_pages(s3, bucket, part), start=1):
                for obj in page.get("Contents", []):
                    moment = obj["LastModified"].timestamp()
                    if newest is None or moment > newest:
                        newest, newest_key = moment, obj["Key"]
                if number == FRESHNESS_PAGES and page.get("IsTruncated"):
                    cut.append(f"{part}: only the first {FRESHNESS_PAGES * 1000} objects looked at")
                    break
        if newest is None:
            continue
        age = max(0.0, now - newest)
        ok = age <= limits.max_silver_age
        type_ = prefix[len(SILVER_ROOT):].rstrip("/")
        checks.append(Check(name="silver-freshness", subject=type_, ok=ok, value=round(age, 1),
                            threshold=limits.max_silver_age, summary=f"newest silver object {_age(age)} old",
                            runbook=f"{RUNBOOK}#silver-freshness", details=[newest_key, *cut],
                            next_step="" if ok else f"eltops ls --prefix bronze/{type_}/ --since {_age(age)}"))
    return checks


def check_health(*, sqs, ddb, s3, queue_url: str, table: str, silver_bucket: str, since: dt.datetime,
                 extra_dlq_urls: tuple[str, ...] = (), limits: Thresholds = Thresholds(),
                 now: float | None = None) -> HealthReport:
    """Run every check; `healthy` is False when any fails."""
    started = time.monotonic()
    now = time.time() if now is None else now
    visible, in_flight, attributes = _depth(sqs, queue_url)
    checks = ledger_checks(scan_ledger(ddb, table=table, since=since.timestamp()), now=now, limits=limits,
                           queue_depth=visible + in_flight)
    urls = list(dict.fromkeys([*dlq_urls(sqs, queue_url=queue_url, attributes=attributes), *extra_dlq_urls]))
    checks[1:1] = [check_dlq(sqs, url, limits) for url in urls]
    checks += silver_freshness(s3, bucket=silver_bucket, now=now, limits=limits)
    return HealthReport(healthy=all(c.ok for c in checks), since=since.isoformat(), checked_at=_iso(now),
                        checks=checks, seconds=round(time.monotonic() - started, 3))


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
