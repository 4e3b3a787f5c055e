"""eltops reconcile, health, ledger ls, schema drift: seeing the pipeline (and filling its gaps)."""

from __future__ import annotations

import json

import click

from ops.cli import QUEUE_URL, cli, common_options, info, render, settings
from ops.errors import NeedsAttention, OpsError, UsageError


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
@click.option("--max-rps", type=click.FloatRange(min=0.1), help="Replay at most this many objects per second.")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="Replay resume file (default: one per window and set of gaps under the state directory).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Append one JSON line per replayed object (key, action, result) here.")
@click.option("--dry-run", is_flag=True, help="With --replay: say what would be replayed; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Replay without asking for confirmation.")
@click.pass_context
def reconcile_command(ctx, bucket, prefix, start, end, since, by, silver_bucket, table, queued_max_age, jsonl,
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
    window = _window(start, end, since)
    aws = settings(ctx).aws()
    gaps: list = []
    out = open(out_path, "w", encoding="utf-8") if out_path else None  # noqa: SIM115 - closed below

    def on_gap(gap) -> None:
        if how or settings(ctx).json:
            gaps.append(gap)
        line = json.dumps(gap.record(), ensure_ascii=False)
        if jsonl:
            click.echo(line)
        if out:
            out.write(line + "\n")

    try:
        report = lib.reconcile(aws.client("s3"), aws.client("dynamodb"), bucket=bucket, prefix=prefix, window=window,
                               silver_bucket=silver_bucket, table=table, by=by, on_gap=on_gap,
                               queued_max_age=_duration(queued_max_age, "--queued-max-age"))
    finally:
        if out:
            out.close()
    if jsonl:
        info(ctx, _reconcile_text(report))
    elif settings(ctx).json:
        if not how:  # with --replay, the replay report is the JSON result (below)
            render(ctx, {**_jsonable(report), "gaps": [g.record() for g in gaps]})
    else:
        render(ctx, report, _reconcile_text)
    if how:
        _replay_gaps(ctx, report, gaps, how=how, bucket=bucket, queue_url=queue_url, dest_prefix=dest_prefix,
                     concurrency=concurrency, max_rps=max_rps, checkpoint=checkpoint, report_path=report_path,
                     dry_run=dry_run, yes=yes, window=window)
    elif report.gaps:
        raise NeedsAttention(f"{report.gaps} gap(s) found ({report.replayable} replayable); to fill them run the "
                             "same command with --replay sqs (or copy); see runbooks/find-and-fill-gaps.md")


def _jsonable(report) -> dict:
    from ops.cli import to_jsonable

    return {**to_jsonable(report), "replayable": report.replayable}


def _reconcile_text(r) -> str:
    lines = [f"reconciled s3://{r.bucket}/{r.prefix} [{r.start}, {r.end}) by {r.by}: {r.objects} bronze object(s) in "
             f"{r.partitions} partition(s), {r.silver_objects} silver object(s)"]
    for category, count in r.by_category.items():
        if count:
            first = r.first_keys.get(category, [])
            lines.append(f"  {category:<16} {count:>7}  " + ", ".join(first) + (" …" if count > len(first) else ""))
    if r.not_bronze_keys:
        lines.append(f"  ({r.not_bronze_keys} key(s) are not bronze keys: ingest skips them, not counted as gaps)")
    lines.append(f"{r.gaps} gap(s), {r.replayable} replayable" if r.gaps else "no gaps")
    lines.append("cost: " + ", ".join(f"{n} {call}" for call, n in sorted(r.api_calls.items())) + f" in {r.seconds} s")
    return "\n".join(lines)


def _replay_gaps(ctx, report, gaps, *, how, bucket, queue_url, dest_prefix, concurrency, max_rps, checkpoint,
                 report_path, dry_run, yes, window) -> None:
    from ops import reconcile as lib
    from ops.commands.dlq import confirm
    from ops.commands.listing import _finish, _progress, _replay_text
    from ops.replay import replay_stamp
    from ops.state import Checkpoint, default_checkpoint

    todo = [g for g in gaps if g.category in lib.REPLAYABLE]
    if not todo:
        info(ctx, "nothing to replay")
        return
    identity = {"command": f"reconcile replay {how}", "bucket": bucket, "prefix": report.prefix, "by": report.by,
                "start": window.start.isoformat(), "end": window.end.isoformat(), "target": queue_url or dest_prefix,
                "gaps": lib.gaps_digest(todo)}
    cp = None if dry_run else Checkpoint(checkpoint or default_checkpoint("reconcile", identity), identity)
    if how == "copy":
        dest_prefix = dest_prefix or (cp.value("dest_prefix", lambda: f"bronze/replay/{replay_stamp()}") if cp
                                      else f"bronze/replay/{replay_stamp()}")
    target = queue_url if how == "sqs" else dest_prefix
    if not dry_run and not confirm(ctx, f"Replay {len(todo)} gap(s) by {how} to {target}?", yes):
        raise OpsError("not confirmed; nothing replayed")
    on_progress, bar = _progress(ctx, len(todo), f"replay {how}")
    aws = settings(ctx).aws()
    try:
        result = lib.replay_gaps(gaps=todo, how=how, bucket=bucket, s3=aws.client("s3"), sqs=aws.client("sqs"),
                                 queue_url=queue_url, dest_prefix=dest_prefix, concurrency=concurrency,
                                 max_rps=max_rps, dry_run=dry_run, checkpoint=cp, report_path=report_path,
                                 on_progress=on_progress)
    finally:
        if bar is not None:
            bar.close()
    _finish(ctx, result, _replay_text)  # with --json: the replay report, as `eltops replay sqs --json` prints
    if dry_run:
        raise NeedsAttention(f"{len(todo)} gap(s) would be replayed (dry run); nothing was sent")
