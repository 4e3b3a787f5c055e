"""eltops reconcile, health, ledger ls, schema drift: seeing the pipeline (and filling its gaps)."""

from __future__ import annotations

import datetime as dt
import json

import click

from ops.commands.root import QUEUE_URL, Rate, cli, common_options, counts, info, render, settings
from ops.errors import NeedsAttention, UsageError


def _duration(text: str, option: str) -> float:
    from ops.timewindow import parse_duration

    return parse_duration(text, option=option).total_seconds()


def _window(start, end, since):
    from ops.timewindow import make_window

    return make_window(start=start, end=end, since=since)


# --- reconcile -----------------------------------------------------------------------------------
@cli.command("reconcile")
@common_options
@click.option("--bucket", envvar="ELT_BRONZE_BUCKET", required=True, help="Bronze bucket [env ELT_BRONZE_BUCKET].")
@click.option("--prefix", default="bronze/", show_default=True, help="Key prefix under bronze/ to reconcile.")
@click.option("--start", help="Window start (inclusive): ISO-8601 (naive = UTC) or relative (6h, 2d).")
@click.option("--end", help="Window end (exclusive); default now.")
@click.option("--since", help="Shorthand for --start <now - D> --end now, e.g. --since 24h.")
@click.option("--by", type=click.Choice(["partition", "modified"]), default="partition", show_default=True,
              help="partition: every object of the dt= days the window overlaps (cost grows with the window); "
                   "modified: objects whose LastModified is in the window (lists the whole prefix).")
@click.option("--from-inventory", metavar="S3_URL",
              help="Read the bronze objects from an S3 Inventory report (its manifest.json, or the configuration's "
                   "folder for its newest report) instead of listing them.")
@click.option("--live-tail/--no-live-tail", default=None,
              help="With --from-inventory: list objects newer than the report live [default: yes with --by "
                   "partition, no with --by modified].")
@click.option("--list-concurrency", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Partitions joined side by side (--by partition); memory holds one partition's names per worker.")
@click.option("--silver-bucket", envvar="ELT_SILVER_BUCKET", required=True, help="Silver bucket [env ELT_SILVER_BUCKET].")
@click.option("--table", envvar="ELT_LEDGER_TABLE", required=True, help="Ledger table [env ELT_LEDGER_TABLE].")
@click.option("--queued-max-age", default="1h", show_default=True,
              help="A QUEUED item older than this is a gap (its work unit was lost or is stuck).")
@click.option("--jsonl", is_flag=True, help="Stream every gap as one JSON line on stdout (summary on stderr).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Also write every gap as JSON lines here.")
@click.option("--replay", "how", type=click.Choice(["sqs", "copy"]),
              help="Replay exactly the gaps (not orphan-silver): sqs sends work units, copy copies under bronze/replay/.")
@click.option("--queue-url", envvar="ELT_QUEUE_URL", type=QUEUE_URL, help="Events queue for --replay sqs [env ELT_QUEUE_URL].")
@click.option("--dest-prefix", help="Where --replay copy puts copies (default bronze/replay/<UTC stamp>).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=16, show_default=True, help="Replay requests in flight.")
@click.option("--max-rps", type=Rate(0.1), help="Replay at most this many objects per second.")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="Replay resume file (default: one per window and set of gaps under the state directory).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Append one JSON line per replayed object (key, action, result) here.")
@click.option("--dry-run", is_flag=True, help="With --replay: say what would be replayed; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Replay without asking for confirmation.")
@click.pass_context
def reconcile_command(ctx, bucket, prefix, start, end, since, by, from_inventory, live_tail, list_concurrency,
                      silver_bucket, table,
                      queued_max_age, jsonl,
                      out_path, how, queue_url, dest_prefix, concurrency, max_rps, checkpoint, report_path, dry_run,
                      yes):
    """Find the objects of a window whose state is wrong (bronze vs ledger vs silver); replay them.

    Categories: never-ingested, claim-expired, queued-too-long, failed, silver-missing,
    silver-stale, orphan-silver. Exit 4 when gaps were found and not replayed, 0 when there are
    none (or all were replayed), 3 when some replays failed. After a replay and once the queue
    has drained, the same command reports nothing (orphan-silver aside: it has no source).

    \b
    Example:
      eltops reconcile --since 24h
      eltops reconcile --start 2025-01-01 --end 2025-01-02 --jsonl > gaps.jsonl
      eltops reconcile --since 24h --replay sqs --yes
    """
    from ops import reconcile as lib

    if (dry_run or yes or checkpoint or report_path or dest_prefix) and not how:
        raise UsageError("--dry-run, --yes, --checkpoint, --report and --dest-prefix go with --replay sqs|copy")
    if how == "copy":  # before the listings: a reconcile of a long window is not repeated for a typo
        from ops.replay import check_dest_prefix

        check_dest_prefix(dest_prefix)
    aws = settings(ctx).aws()
    with _GapOutput(ctx, jsonl=jsonl, out_path=out_path, keep=bool(how) or settings(ctx).json) as output:
        report = lib.reconcile(aws.client("s3"), aws.client("dynamodb"), bucket=bucket, prefix=prefix,
                               window=_window(start, end, since), silver_bucket=silver_bucket, table=table, by=by,
                               on_gap=output.gap, queued_max_age=_duration(queued_max_age, "--queued-max-age"),
                               from_inventory=from_inventory, live_tail=live_tail, concurrency=list_concurrency)
    gaps = output.kept
    if report.inventory:
        from ops.commands.listing import _say_inventory

        _say_inventory(ctx, report.inventory)
    if jsonl:
        info(ctx, _reconcile_text(report))
    elif settings(ctx).json:
        if not how:  # with --replay, the replay report is the JSON result (below)
            render(ctx, {**_jsonable(report), "gaps": [g.record() for g in gaps]})
    else:
        render(ctx, report, _reconcile_text)
    if how:
        _replay_gaps(ctx, report, gaps, how=how, queue_url=queue_url, dest_prefix=dest_prefix, concurrency=concurrency,
                     max_rps=max_rps, checkpoint=checkpoint, report_path=report_path, dry_run=dry_run, yes=yes)
    elif report.gaps:
        raise NeedsAttention(f"{report.gaps} gap(s) found ({report.replayable} replayable); to fill them run the "
                             "same command with --replay sqs (or copy); see runbooks/find-and-fill-gaps.md")


class _GapOutput:
    """Where gaps go as reconcile finds them: stdout (--jsonl), a file (--out), kept for --json
    and --replay."""

    def __init__(self, ctx, *, jsonl: bool, out_path: str | None, keep: bool):
        self.jsonl, self.out_path, self.keep = jsonl, out_path, keep
        self.kept: list = []
        self.out = None

    def __enter__(self):
        self.out = open(self.out_path, "w", encoding="utf-8") if self.out_path else None  # noqa: SIM115
        return self

    def gap(self, gap) -> None:
        if self.keep:
            self.kept.append(gap)
        line = json.dumps(gap.record(), ensure_ascii=False)
        if self.jsonl:
            click.echo(line)
        if self.out:
            self.out.write(line + "\n")

    def __exit__(self, *exc):
        if self.out:
            self.out.close()


def _jsonable(report) -> dict:
    from ops.commands.root import to_jsonable

    return {**to_jsonable(report), "replayable": report.replayable}


def _reconcile_text(r) -> str:
    from ops.timewindow import describe_time

    lines = [f"reconciled s3://{r.bucket}/{r.prefix} [{describe_time(r.start)}, {describe_time(r.end)}) by {r.by}: {r.objects} bronze object(s) in "
             f"{r.partitions} partition(s), {r.silver_objects} silver object(s)"]
    for category, count in r.by_category.items():
        if count:
            first = r.first_keys.get(category, [])
            lines.append(f"  {category:<16} {count:>7}  " + ", ".join(first) + (" …" if count > len(first) else ""))
    if r.not_bronze_keys:
        lines.append(f"  ({r.not_bronze_keys} key(s) are not bronze keys: ingest skips them, not counted as gaps)")
    lines.append(f"{r.gaps} gap(s), {r.replayable} replayable" if r.gaps else "no gaps")
    if not r.objects and _in_future(r.start):
        lines.append(f"hint: the window starts in the future (now is {describe_time(dt.datetime.now(dt.UTC))}): "
                     "check --start/--end")
    lines.append("cost: " + ", ".join(f"{n} {call}" for call, n in sorted(r.api_calls.items())) + f" in {r.seconds} s")
    return "\n".join(lines)


def _in_future(moment: str) -> bool:
    try:
        return dt.datetime.fromisoformat(moment.replace("Z", "+00:00")) > dt.datetime.now(dt.UTC)
    except ValueError:
        return False


def _replay_gaps(ctx, report, gaps, *, how, queue_url, dest_prefix, concurrency, max_rps, checkpoint, report_path,
                 dry_run, yes) -> None:
    from ops import reconcile as lib
    from ops.commands.listing import _finish, _progress, _replay_text
    from ops.commands.root import confirm

    aws = settings(ctx).aws()
    on_progress, bar = _progress(ctx, sum(g.category in lib.REPLAYABLE for g in gaps), f"replay {how}")
    try:
        result = lib.replay_gaps(gaps=gaps, how=how, report=report, s3=aws.client("s3"), sqs=aws.client("sqs"),
                                 queue_url=queue_url, dest_prefix=dest_prefix, concurrency=concurrency,
                                 max_rps=max_rps, dry_run=dry_run, checkpoint_path=checkpoint, report_path=report_path,
                                 confirm=lambda question: confirm(ctx, question, yes), on_progress=on_progress)
    finally:
        if bar is not None:
            bar.close()
    if result is None:
        info(ctx, "nothing to replay")
        return
    _finish(ctx, result, _replay_text)  # with --json: the replay report, as `eltops replay sqs --json` prints
    if dry_run:
        raise NeedsAttention(f"{result.planned} gap(s) would be replayed (dry run); nothing was sent")


# --- health --------------------------------------------------------------------------------------
@cli.command("health")
@common_options
@click.option("--since", default="24h", show_default=True, help="Window for FAILED items and quarantine rates.")
@click.option("--queue-url", envvar="ELT_QUEUE_URL", required=True, type=QUEUE_URL, help="Events queue [env ELT_QUEUE_URL].")
@click.option("--dlq-url", "dlq_urls", multiple=True, type=QUEUE_URL, envvar="ELT_INGEST_DLQ_URL",
              help="Another DLQ to check (repeatable) [env ELT_INGEST_DLQ_URL: the ingest DLQ]; the events queue's "
                   "own DLQ is found from its redrive policy.")
@click.option("--table", envvar="ELT_LEDGER_TABLE", required=True, help="Ledger table [env ELT_LEDGER_TABLE].")
@click.option("--silver-bucket", envvar="ELT_SILVER_BUCKET", required=True, help="Silver bucket [env ELT_SILVER_BUCKET].")
@click.option("--max-queue-age", default="15m", show_default=True, help="Oldest waiting work unit allowed.")
@click.option("--max-dlq-depth", type=click.IntRange(min=0), default=0, show_default=True, help="Messages allowed in a DLQ.")
@click.option("--max-stuck-claims", type=click.IntRange(min=0), default=0, show_default=True,
              help="Claims past their lease allowed.")
@click.option("--max-failed", type=click.IntRange(min=0), default=0, show_default=True,
              help="FAILED items allowed in the window.")
@click.option("--max-silver-age", default="6h", show_default=True, help="Age allowed for a type's newest silver object.")
@click.option("--max-quarantine-rate", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Share of a type's lines allowed in quarantine.")
@click.pass_context
def health_command(ctx, since, queue_url, dlq_urls, table, silver_bucket, max_queue_age, max_dlq_depth,
                   max_stuck_claims, max_failed, max_silver_age, max_quarantine_rate):
    """Is the pipeline healthy? Queues, DLQs, stuck claims, failures, silver freshness, quarantine rate.

    Needs no CloudWatch (works on the embedded AWS). Exit 0 when healthy, 4 when something needs
    attention: the text names each failing check, the next command and the runbook.

    \b
    Example:
      eltops health
      eltops health --since 6h --max-silver-age 2h --json
    """
    from ops.health import Thresholds, check_health

    limits = Thresholds(max_queue_age=_duration(max_queue_age, "--max-queue-age"), max_dlq_depth=max_dlq_depth,
                        max_stuck_claims=max_stuck_claims, max_failed=max_failed,
                        max_silver_age=_duration(max_silver_age, "--max-silver-age"),
                        max_quarantine_rate=max_quarantine_rate)
    aws = settings(ctx).aws()
    report = check_health(sqs=aws.client("sqs"), ddb=aws.client("dynamodb"), s3=aws.client("s3"), queue_url=queue_url,
                          table=table, silver_bucket=silver_bucket, since=_window(None, None, since).start,
                          extra_dlq_urls=dlq_urls, limits=limits)
    render(ctx, report, _health_text)
    if not report.healthy:
        raise NeedsAttention(f"{len(report.failing)} check(s) failing: "
                             + ", ".join(f"{c.name} {c.subject}" for c in report.failing)
                             + f"; see {report.failing[0].runbook}")


def _health_text(r) -> str:
    from ops.timewindow import describe_time

    lines = [("HEALTHY" if r.healthy else f"NEEDS ATTENTION ({len(r.failing)} of {len(r.checks)} checks)")
             + f" at {r.checked_at}, window since {describe_time(r.since)}"]
    width = max([24, *(len(c.subject) for c in r.checks)])  # a long queue name keeps its row in line
    for c in r.checks:
        lines.append(f"  {'ok  ' if c.ok else 'FAIL'}  {c.name:<16} {c.subject:<{width}} {c.summary}")
        if not c.ok:
            lines += [f"          {d}" for d in c.details[:5]]
            lines.append(f"          next: {c.next_step or 'see the runbook'}  (runbook: {c.runbook})")
    return "\n".join(lines)


# --- ledger ls -----------------------------------------------------------------------------------
def _ledger_group():
    from ops.commands.dlq import ledger

    return ledger


@_ledger_group().command("ls")
@common_options
@click.option("--table", envvar="ELT_LEDGER_TABLE", required=True, help="Ledger table [env ELT_LEDGER_TABLE].")
@click.option("--status", "statuses", multiple=True, type=click.Choice(["CLAIMED", "QUEUED", "DONE", "FAILED"]),
              help="Only these statuses (repeatable).")
@click.option("--bucket", help="Only objects of this bucket.")
@click.option("--prefix", help="Only keys under this prefix.")
@click.option("--start", help="Only items claimed (or, without a claim, finished) at or after this time.")
@click.option("--end", help="Only items claimed before this time.")
@click.option("--since", help="Shorthand for --start <now - D>, e.g. --since 6h.")
@click.option("--expired", is_flag=True, help="Only items past their expiration (TTL deletes up to 48 h late).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Stop after this many items (0: all). --jsonl and --json list up to the limit too.")
@click.option("--jsonl", is_flag=True, help="One JSON object per item on stdout, as they are read.")
@click.option("--segments", type=click.IntRange(1, 64), default=4, show_default=True, help="Parallel Scan segments.")
@click.pass_context
def ledger_ls(ctx, table, statuses, bucket, prefix, start, end, since, expired, limit, jsonl, segments):
    """The ledger as a list: items matching the filters `ledger purge` takes (order: DynamoDB's).

    \b
    Example:
      eltops ledger ls --status FAILED --since 1d
      eltops ledger ls --prefix bronze/orders/dt=2025-01-02/ --limit 0 --jsonl > items.jsonl
    """
    from ops.ledger import PurgeFilter, list_items, prefix_hint

    window = _window(start, end, since) if (start or end or since) else None
    filters = PurgeFilter(bucket=bucket, prefix=prefix, window=window, statuses=tuple(statuses), expired=expired)
    items: list[dict] = []

    def on_item(item: dict) -> None:
        if jsonl:
            click.echo(json.dumps(item, ensure_ascii=False, default=str))
        else:
            items.append(item)

    listing = list_items(settings(ctx).aws().client("dynamodb"), table=table, filters=filters, segments=segments,
                         on_item=on_item, limit=limit or None)
    if not listing.matched and prefix_hint(prefix):
        info(ctx, f"hint: {prefix_hint(prefix)}")
    if jsonl:
        info(ctx, f"{listing.matched} item(s) of {listing.scanned} scanned; by status {counts(listing.by_status)}")
        return
    render(ctx, {**listing.__dict__, "items": items}, lambda r: "\n".join(
        [_item_line(i) for i in items] + [f"{r['matched']} item(s) of {r['scanned']} scanned"
                                          + (" (--limit reached)" if limit and r["matched"] >= limit else "")
                                          + f"; by status {counts(r['by_status'])}"]))


def _item_line(i: dict) -> str:
    when = i.get("finished_at") or i.get("queued_at") or i.get("claimed_at") or "-"
    counts = f"rows={i['rows']} rejected={i.get('rejected_rows', 0)}" if "rows" in i else ""
    error = f"  {str(i['last_error'])[:100]}" if i.get("last_error") else ""
    return f"{i.get('status', '?'):<8} {when:<20} {i.get('pk')}#{i.get('etag')}  {counts}{error}".rstrip()


# --- schema drift --------------------------------------------------------------------------------
@cli.group("schema")
def schema_group():
    """The event schemas against what arrives."""


@schema_group.command("drift")
@common_options
@click.option("--table", envvar="ELT_LEDGER_TABLE", required=True, help="Ledger table [env ELT_LEDGER_TABLE].")
@click.option("--since", default="7d", show_default=True, help="Objects transformed since (ISO-8601 or relative).")
@click.option("--type", "type_", help="Only this event type.")
@click.pass_context
def schema_drift_command(ctx, table, since, type_):
    """Top-level fields seen in bronze that the type's schema lacks: since when, in how many objects.

    Counted by the transform on the lines it examines (every line of an object's start, a sample
    after) and kept in each object's ledger item. To add a field: declare it in
    lambdas/shared/schemas.py, deploy, then replay the window (eltops replay sqs --since …).

    \b
    Example:
      eltops schema drift --since 7d
      eltops schema drift --type orders --json
    """
    from ops.schema_drift import schema_drift
    from ops.timewindow import parse_time

    report = schema_drift(settings(ctx).aws().client("dynamodb"), table=table, type_=type_,
                          since=parse_time(since, option="--since"))

    from ops.timewindow import describe_time

    def text(r) -> str:
        if not r.fields:
            return f"no undeclared fields in objects transformed since {describe_time(r.since)}"
        lines = [f"{'type':<14} {'field':<24} {'objects':>7} {'lines':>15}  first seen            last seen"]
        for f in r.fields:
            lines.append(f"{f.type:<14} {f.field:<24} {f.objects:>7} {f'{f.lines}/{f.lines_examined}':>15}  "
                         f"{f.first_seen:<20}  {f.last_seen}")
        lines.append(f"{r.objects_with_drift} object(s) with undeclared fields since {describe_time(r.since)}; "
                     "lines: had it / "
                     "examined. Add a field: docs/observability.md#schema-drift")
        return "\n".join(lines)

    render(ctx, report, text)
