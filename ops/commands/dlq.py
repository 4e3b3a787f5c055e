"""eltops dlq inspect, dlq redrive, status, ledger purge."""

from __future__ import annotations

import json

import click

from ops.commands.root import (
    QUEUE_URL,
    Rate,
    cli,
    common_options,
    confirm,
    counts,
    info,
    progress_bar,
    render,
    settings,
)
from ops.errors import OpsError, PartialFailure, UsageError


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@cli.group()
def dlq():
    """Dead-letter queue: see what is there and why, then move it back."""


@dlq.command("inspect")
@common_options
@click.option("--queue-url", envvar="ELT_DLQ_URL", required=True, type=QUEUE_URL, help="The DLQ [env ELT_DLQ_URL].")
@click.option("--table", envvar="ELT_LEDGER_TABLE", help="Ledger table, for each object's last_error "
                                                        "[env ELT_LEDGER_TABLE].")
@click.option("--max", "max_messages", type=click.IntRange(1, 100000), default=100, show_default=True,
              help="Messages to read.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False),
              help="Write every message whole (body, attributes, ledger item) as JSON lines.")
@click.option("--jsonl", is_flag=True,
              help="Stream every message whole as one JSON line on stdout (the summary on stderr).")
@click.pass_context
def dlq_inspect(ctx, queue_url, table, max_messages, out_path, jsonl):
    """What is in the DLQ and why, without consuming it.

    Groups messages by type, dt, origin and the ledger's last_error for the object, with age and
    receive count. Messages are held invisible while the scan runs, then made visible again.

    \b
    Example:
      eltops dlq inspect --queue-url $ELT_DLQ_URL --table $ELT_LEDGER_TABLE --out dlq.jsonl
    """
    from ops.dlq import inspect

    aws = settings(ctx).aws()
    report = inspect(aws.client("sqs"), queue_url=queue_url, ddb=aws.client("dynamodb") if table else None,
                     table=table, max_messages=max_messages, out_path=out_path,
                     on_record=(lambda r: click.echo(json.dumps(r, ensure_ascii=False, default=str))) if jsonl
                     else None)

    def text(r):
        lines = [f"{r.messages} message(s) read of about {r.approximate_depth} in {r.queue_url}"]
        for g in r.groups:
            lines.append(f"{g.count:>5}  {g.type}/{g.dt}  origin={g.origin}  oldest={_age(g.oldest_age_seconds)}  "
                         f"receives<={g.max_receive_count}  {g.last_error}")
            lines += [f"         e.g. {k}" for k in g.sample_keys[:2]]
        if r.s3_events:
            lines.append(f"{r.s3_events} message(s) are S3 events ingest could not finish: redrive puts them back "
                         "on the ingest queue (runbooks/ingest-dlq.md)")
        if r.out:
            lines.append(f"all messages written to {r.out}")
        return "\n".join(lines)

    if jsonl:
        info(ctx, text(report))
        return
    render(ctx, report, text)


@dlq.command("redrive")
@common_options
@click.option("--queue-url", envvar="ELT_DLQ_URL", required=True, type=QUEUE_URL, help="The DLQ to move from [env ELT_DLQ_URL].")
@click.option("--to-url", envvar="ELT_QUEUE_URL", type=QUEUE_URL,
              help="Target queue [env ELT_QUEUE_URL]. Not given on the command line: the DLQ's source queue "
                   "when it has exactly one (so the ingest DLQ's S3 events go back to the ingest queue).")
@click.option("--max", "max_messages", type=click.IntRange(min=1), help="Move at most this many (manual mode).")
@click.option("--max-rps", type=Rate(1), help="Messages per second (native: at most 500).")
@click.option("--filter-type", help="Only messages of this event type (manual mode).")
@click.option("--filter-dt", help="Only messages of this dt=YYYY-MM-DD (manual mode).")
@click.option("--mode", type=click.Choice(["auto", "native", "manual"]), default="auto", show_default=True,
              help="auto: a native move task when possible, else manual.")
@click.option("--concurrency", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Manual mode: receive/send/delete loops running side by side.")
@click.option("--visibility-timeout", type=click.IntRange(1, 43200), default=60, show_default=True,
              help="Manual mode: seconds a received message stays hidden while it is moved (refreshed on long "
                   "runs); after a crash, unmoved messages reappear in the DLQ after this long.")
@click.option("--wait", is_flag=True, help="Native: poll the move task until it ends, showing progress.")
@click.option("--cancel", is_flag=True, help="Cancel the running native move task of this DLQ.")
@click.option("--dry-run", is_flag=True, help="Count what would move; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def dlq_redrive(ctx, queue_url, to_url, max_messages, max_rps, filter_type, filter_dt, mode, concurrency,
                visibility_timeout, wait, cancel, dry_run, yes):
    """Move DLQ messages back to be processed again, losing none.

    Fix the cause first (see `eltops dlq inspect`). A message whose object was overwritten since
    is skipped by transform as superseded; its newer version has its own event.

    \b
    Example:
      eltops dlq redrive --queue-url $ELT_DLQ_URL --to-url $ELT_QUEUE_URL --filter-type orders --yes
      eltops dlq redrive --queue-url $ELT_DLQ_URL --mode native --wait --yes
      eltops dlq redrive --queue-url $ELT_DLQ_URL --cancel
      eltops dlq redrive --queue-url $ELT_INGEST_DLQ_URL --yes
    """
    from ops import dlq as lib

    sqs = settings(ctx).aws().client("sqs")
    if cancel:
        render(ctx, lib.cancel_native(sqs, source_url=queue_url), lambda r: r.note)
        return
    if ctx.get_parameter_source("to_url") is not click.core.ParameterSource.COMMANDLINE:
        to_url = _source_queue(ctx, sqs, queue_url, to_url)

    def ask(plan) -> bool:
        which = "those matching the filters, of about" if plan.filtered else "about"
        if max_messages is not None:
            which = f"at most {max_messages} of about"
        return confirm(ctx, f"Move {which} {plan.messages} message(s) from {plan.source} to "
                            f"{plan.target or 'their source queue'}?", yes)

    report = lib.redrive(sqs, mode=mode, source_url=queue_url, target_url=to_url, confirm=ask,
                         max_messages=max_messages, max_rps=max_rps, filter_type=filter_type, filter_dt=filter_dt,
                         wait=wait, dry_run=dry_run, workers=concurrency, visibility=visibility_timeout,
                         on_info=lambda m: info(ctx, m), on_task_progress=_task_progress(ctx))
    render(ctx, report, _redrive_text)
    if report.failed:
        raise PartialFailure(f"{len(report.failed)} message(s) not moved; they are still in the DLQ")
    if report.left_unreached:
        raise PartialFailure(report.note)


def _source_queue(ctx, sqs, queue_url: str, default: str | None) -> str | None:
    """The DLQ's one source queue, else `default`: S3 events must go back to the ingest queue and
    work units to the events queue, whichever ELT_QUEUE_URL says."""
    from ops import dlq as lib

    try:
        sources = lib.source_queues(sqs, queue_url)
    except OpsError as exc:  # e.g. no sqs:ListDeadLetterSourceQueues: keep the default
        info(ctx, f"could not read the DLQ's source queue ({str(exc)[:160]}); using {default or 'none'}")
        return default
    if len(sources) == 1 and sources[0] != default:
        info(ctx, f"target: the DLQ's source queue {sources[0]} (--to-url not given)")
        return sources[0]
    return default


def _task_progress(ctx):
    def show(task):
        moved, total = task.get("ApproximateNumberOfMessagesMoved"), task.get("ApproximateNumberOfMessagesToMove")
        info(ctx, f"move task {task.get('Status')}: {moved if moved is not None else '?'} of "
                  f"{total if total is not None else '?'} moved")

    return show


def _redrive_text(r) -> str:
    if r.mode == "native":
        return (f"move task {r.task_handle or '(not started)'}: {r.task_status or r.note}, moved "
                f"{r.task_moved if r.task_moved is not None else '?'} of "
                f"{r.task_to_move if r.task_to_move is not None else '?'}" + (f" — {r.note}" if r.note else ""))
    verb = "would move" if r.dry_run else "moved"
    return (f"{verb} {r.matched if r.dry_run else r.moved} message(s) from {r.source} to {r.target}"
            f" ({r.skipped_by_filter} left by the filters, {len(r.failed)} failed"
            + (f", {r.left_unreached} never reached" if r.left_unreached else "")
            + (f", {r.received_again} received again: not sent twice" if r.received_again else "")
            + f") in {r.seconds} s")


@cli.command("status")
@common_options
@click.argument("url", metavar="s3://BUCKET/KEY")
@click.option("--table", envvar="ELT_LEDGER_TABLE", required=True, help="Ledger table [env ELT_LEDGER_TABLE].")
@click.option("--silver-bucket", envvar="ELT_SILVER_BUCKET", help="Silver bucket [env ELT_SILVER_BUCKET].")
@click.pass_context
def status_command(ctx, url, table, silver_bucket):
    """The ledger's story of one object: every version, what happened, and its silver object.

    Each version shows its event order (sequencer) and, when superseded, why; the silver line
    says which version silver holds (docs/version-ordering.md).
    Exits 1 when the ledger has no item for the key (never ingested, purged, or expired), after
    printing what it found.

    \b
    Example:
      eltops status s3://$ELT_BRONZE_BUCKET/bronze/orders/dt=2025-01-02/batch-7.jsonl
    """
    from ops.ledger import object_status

    aws = settings(ctx).aws()
    result = object_status(s3=aws.client("s3"), ddb=aws.client("dynamodb"), table=table, url=url,
                           silver_bucket=silver_bucket)

    def text(r):
        lines = [f"{r.object}  (bronze ETag now: {r.current_etag or 'object not found'})"]
        for v in r.versions:
            mark = "*" if v.get("current") else " "
            lines.append(f"{mark} etag {v['etag']}: {v.get('status')}"
                         + (f" ({v['outcome']})" if v.get("outcome") not in (None, "written") else "")
                         + ("  [expired]" if v.get("expired") else ""))
            for name in ("sequencer", "claimed_at", "queued_at", "message_id", "finished_at", "attempts", "rows",
                         "rejected_rows", "silver_key", "superseded_reason", "previous_sequencer", "previous_outcome",
                         "last_error"):
                if v.get(name) not in (None, ""):
                    lines.append(f"    {name:<14} {v[name]}")
        if r.silver_key:
            holds = (f"; holds etag {r.silver_source_etag}" + (f", sequencer {r.silver_sequencer}"
                                                                 if r.silver_sequencer else "")
                     if r.silver_source_etag else "")
            state = {True: f"exists (last modified {r.silver_last_modified}{holds})", False: "missing",
                     None: "not checked (no --silver-bucket)"}[r.silver_exists]
            lines.append(f"silver {r.silver_key}: {state}")
        for copy in r.replay_copies:
            states = ", ".join(f"{v.get('status')}" + (f" ({v['outcome']})" if v.get("outcome") not in (None, "written")
                                                        else "") for v in copy["versions"])
            lines.append(f"replay copy {copy['key']}: {states}")
        if r.note:
            lines.append(r.note)
        return "\n".join(lines)

    render(ctx, result, text)
    if not result.versions:
        # Like `aws s3api head-object` on a missing key: a script can tell "never ingested" apart.
        raise OpsError(f"{url}: no ledger item (never ingested, purged, or expired); exit 1")


@cli.group()
def ledger():
    """The object ledger (idempotency table)."""


@ledger.command("purge")
@common_options
@click.option("--table", envvar="ELT_LEDGER_TABLE", required=True, help="Ledger table [env ELT_LEDGER_TABLE].")
@click.option("--bucket", help="Only objects of this bucket.")
@click.option("--prefix", help="Only keys under this prefix.")
@click.option("--start", help="Only items claimed at or after this time (ISO-8601 or relative).")
@click.option("--end", help="Only items claimed before this time.")
@click.option("--status", "statuses", multiple=True, type=click.Choice(["CLAIMED", "QUEUED", "DONE", "FAILED"]),
              help="Only these statuses (repeatable).")
@click.option("--expired", is_flag=True, help="Only items past their expiration (TTL deletes up to 48 h late).")
@click.option("--all", "purge_all", is_flag=True, help="Allow a purge with no filter at all.")
@click.option("--segments", type=click.IntRange(1, 64), default=4, show_default=True, help="Parallel Scan segments.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def ledger_purge(ctx, table, bucket, prefix, start, end, statuses, expired, purge_all, segments, dry_run, yes):
    """Delete ledger items so their objects can be ingested again.

    After a purge, re-uploading (or copy-replaying) an object ingests it again even with the same
    ETag.

    \b
    Example:
      eltops ledger purge --table $ELT_LEDGER_TABLE --prefix bronze/orders/dt=2025-01-02/ --status FAILED --dry-run
      eltops ledger purge --table $ELT_LEDGER_TABLE --expired --yes
    """
    from ops import ledger as lib
    from ops.timewindow import make_window

    window = make_window(start=start, end=end, since=None) if (start or end) else None
    filters = lib.PurgeFilter(bucket=bucket, prefix=prefix, window=window, statuses=tuple(statuses), expired=expired)
    if filters.is_empty() and not purge_all:
        raise UsageError("no filter given: this would delete the whole ledger; add filters, or --all if you mean it")
    bar = progress_bar(ctx, total=None, desc="delete", unit="item")

    def ask(report) -> bool:
        info(ctx, f"{report.matched} item(s) match of {report.scanned} scanned: {counts(report.by_status)}")
        return confirm(ctx, f"Delete {report.matched} ledger item(s) from {table}?", yes)

    report = lib.purge(settings(ctx).aws().client("dynamodb"), table=table, filters=filters, dry_run=dry_run,
                       confirm=ask, segments=segments, on_progress=(lambda n: bar.update(n - bar.n)) if bar else None)
    if bar is not None:
        bar.close()
    verb = "would delete" if dry_run else "deleted"
    render(ctx, report, lambda r: f"{verb} {r.matched if dry_run else r.deleted} of {r.matched} matching item(s) "
                                  f"({r.scanned} scanned) in {r.seconds} s; by status {counts(r.by_status)}")
    if not report.matched and lib.prefix_hint(prefix):
        info(ctx, f"hint: {lib.prefix_hint(prefix)}")
    if report.failed:
        raise PartialFailure(f"{len(report.failed)} item(s) could not be deleted")
