"""eltops ls, replay copy, replay sqs."""

from __future__ import annotations

import json
from collections.abc import Callable

import click

from ops.commands.root import (
    QUEUE_URL,
    Rate,
    cli,
    common_options,
    human_size,
    info,
    progress_bar,
    render,
    settings,
    to_jsonable,
)
from ops.errors import PartialFailure


def window_options(f: Callable) -> Callable:
    options = [
        click.option("--bucket", envvar="ELT_BRONZE_BUCKET", required=True,
                     help="Bronze bucket [env ELT_BRONZE_BUCKET]."),
        click.option("--prefix", default="bronze/", show_default=True, help="Key prefix to list under."),
        click.option("--start", help="Window start (inclusive): ISO-8601 (naive = UTC; an offset like -08:00, not a "
                                     "zone name like PST) or relative (6h, 2d)."),
        click.option("--end", help="Window end (exclusive); default now."),
        click.option("--since", help="Shorthand for --start <now - D> --end now, e.g. --since 6h."),
        click.option("--by", type=click.Choice(["modified", "partition"]), default="modified", show_default=True,
                     help="modified: LastModified in the window; partition: the dt= days the window overlaps."),
        click.option("--list-concurrency", type=click.IntRange(1, 64), default=8, show_default=True,
                     help="Partitions listed in parallel (--by partition)."),
        click.option("--from-inventory", metavar="S3_URL",
                     help="Read an S3 Inventory report instead of listing: its manifest.json, or the inventory "
                          "configuration's folder for its newest report (s3://…/<bucket>/<config-id>/)."),
        click.option("--live-tail/--no-live-tail", default=None,
                     help="With --from-inventory: list objects newer than the report live [default: yes with "
                          "--by partition (only those days), no with --by modified (it lists the whole prefix)]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def run_options(f: Callable) -> Callable:
    options = [
        click.option("--concurrency", type=click.IntRange(1, 256), default=16, show_default=True,
                     help="Requests in flight."),
        click.option("--max-rps", type=Rate(0.1), help="At most this many objects per second."),
        click.option("--checkpoint", type=click.Path(dir_okay=False),
                     help="Checkpoint file (default: one per command and options under the state directory). "
                          "An interrupted or partly failed run in it is resumed; a finished one starts anew."),
        click.option("--fresh", is_flag=True, help="Start a new run even if the checkpoint holds an unfinished one."),
        click.option("--resume", "resume", type=click.Path(dir_okay=False), metavar="FILE",
                     help="Resume the unfinished run in this checkpoint (refused if it is missing or finished)."),
        click.option("--report", "report_path", type=click.Path(dir_okay=False),
                     help="Append one JSON line per object (key, action, result) here."),
        click.option("--dry-run", is_flag=True, help="Print the plan; change nothing."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _listing(ctx, bucket, prefix, start, end, since, by, list_concurrency, from_inventory=None, live_tail=None):
    from ops.listing import list_objects
    from ops.timewindow import make_window

    window = make_window(start=start, end=end, since=since)
    s3 = settings(ctx).aws().client("s3")
    listing = list_objects(s3, bucket=bucket, prefix=prefix, window=window, by=by, concurrency=list_concurrency,
                           from_inventory=from_inventory, live_tail=live_tail)
    _say_inventory(ctx, getattr(listing, "inventory", None))
    return listing


def _say_inventory(ctx, inventory: dict | None) -> None:
    """Where the listing came from, how old the report is, and its warnings (stderr)."""
    from ops.timewindow import describe_time

    if not inventory:
        return
    tail = inventory["live_tail"]
    info(ctx, f"inventory {inventory['manifest']} ({inventory['file_format']}), taken {describe_time(inventory['report_time'])}, "
              f"{inventory['report_age_hours']} h old" + (f"; {tail['objects']} newer object(s) listed live"
                                                          if tail["listed"] else ""))
    for warning in inventory["warnings"]:
        info(ctx, f"warning: {warning}")


@cli.command("ls")
@common_options
@window_options
@click.option("--manifest-out", type=click.Path(dir_okay=False),
              help="Also write an S3 Batch Operations CSV manifest (bucket, URL-encoded key).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Keys printed in text mode (0: all); --json always lists all.")
@click.option("--jsonl", is_flag=True,
              help="One JSON object per key on stdout (key, size, etag, last_modified); the summary on stderr.")
@click.pass_context
def ls_command(ctx, bucket, prefix, start, end, since, by, list_concurrency, from_inventory, live_tail, manifest_out,
               limit, jsonl):
    """List the objects of a time window (half-open: start <= t < end).

    \b
    Example:
      eltops ls --bucket $ELT_BRONZE_BUCKET --prefix bronze/orders/ --since 6h
      eltops ls --start 2025-01-01 --end 2025-01-03 --by partition --manifest-out m.csv
      eltops ls --from-inventory s3://inventory-bucket/bronze/elt-dev-bronze/daily/ --since 30d
      eltops ls --since 1d --jsonl | jq -r 'select(.size > 1048576) | .key'
    """
    from ops.listing import partition_hint, write_manifest

    listing = _listing(ctx, bucket, prefix, start, end, since, by, list_concurrency, from_inventory=from_inventory,
                       live_tail=live_tail)
    hint = None if from_inventory else partition_hint(settings(ctx).aws().client("s3"), listing)
    if hint:
        info(ctx, f"hint: {hint}")
    if manifest_out:
        write_manifest(listing, manifest_out)
        info(ctx, f"manifest: {manifest_out} ({len(listing.objects)} rows, format S3BatchOperations_CSV_20180820)")
    keys = [{"key": o.key, "size": o.size, "etag": o.etag, "last_modified": o.last_modified} for o in listing.objects]
    if jsonl:
        for record in keys:
            click.echo(json.dumps(to_jsonable(record), ensure_ascii=False))
        summary = listing.summary()
        info(ctx, f"{summary['objects']} objects, {human_size(summary['bytes'])} in {listing.window.describe()} "
                  f"(by {by})")
        return
    result = {**listing.summary(), "keys": keys}

    def text(r):
        shown = listing.objects if limit == 0 else listing.objects[:limit]
        lines = [f"{o.last_modified:%Y-%m-%dT%H:%M:%SZ}  {human_size(o.size):>10}  {o.key}" for o in shown]
        if len(shown) < len(listing.objects):
            lines.append(f"… {len(listing.objects) - len(shown)} more (--limit 0 shows all)")
        lines.append(f"{r['objects']} objects, {human_size(r['bytes'])} in {listing.window.describe()} (by {by})")
        return "\n".join(lines)

    render(ctx, result, text)


@cli.group()
def replay():
    """Send a time window of bronze objects through the pipeline again."""


def _finish(ctx, report, text=None) -> None:
    render(ctx, report, text or _replay_text)
    if report.interrupted:
        info(ctx, f"interrupted: checkpoint saved to {report.checkpoint}; run the same command again to resume "
                  f"(or --resume {report.checkpoint})")
        ctx.exit(130)
    if report.failed:
        raise PartialFailure(f"{len(report.failed)} of {report.planned} object(s) failed; see the report above"
                             + (f" and {report.report}" if report.report else ""))


def _progress(ctx, total: int, desc: str):
    """(on_progress, bar) for a replay of `total` objects: tqdm on a terminal, else (None, None)."""
    bar = progress_bar(ctx, total=total, desc=desc, unit="obj")
    if bar is None:
        return None, None
    last = {"done": 0}

    def update(p):
        bar.update(p.done - last["done"])
        last["done"] = p.done
        bar.set_postfix_str(f"{p.bytes / 1048576:.1f} MiB")

    return update, bar


class _Progress:
    """on_start/on_progress for ops.replay.run: the source and resume lines, then the bar once the
    total is known."""

    def __init__(self, ctx, desc: str):
        self.ctx, self.desc, self.update_bar, self.bar = ctx, desc, None, None

    def start(self, plan) -> None:
        _say_inventory(self.ctx, plan.inventory)
        if plan.hint:
            info(self.ctx, f"hint: {plan.hint}")
        if plan.resumed:
            from ops.timewindow import describe_time

            info(self.ctx, f"resuming from {plan.checkpoint}: the {plan.previous_state or 'unfinished'} run started "
                           f"{describe_time(plan.started_at)}, window {plan.window.describe()}: {plan.already_done} object(s) "
                           "already done")
        self.update_bar, self.bar = _progress(self.ctx, plan.objects, self.desc)

    def update(self, p) -> None:
        if self.update_bar is not None:
            self.update_bar(p)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run_replay(ctx, command: str, **options) -> None:
    """Both replay commands: ops.replay.run with progress, then render and the exit code."""
    from ops import replay as lib

    progress = _Progress(ctx, command.split()[-1])
    aws = settings(ctx).aws()
    try:
        report = lib.run(command, s3=aws.client("s3"), sqs=aws.client("sqs") if command == "replay sqs" else None,
                         on_start=progress.start, on_progress=progress.update, **options)
    finally:
        progress.close()
    _finish(ctx, report)


def _replay_text(r) -> str:
    todo = r.planned - r.already_done
    if r.dry_run:
        head = f"would replay {todo} object(s), {human_size(r.bytes)} -> {r.target}"
    elif r.interrupted:  # the planned count is not what was done
        head = f"interrupted: replayed {r.done} of {todo} object(s) -> {r.target}"
    elif r.failed:
        head = f"replayed {r.done} of {todo} object(s), {human_size(r.bytes)} -> {r.target}; {len(r.failed)} failed"
    else:
        head = f"replayed {todo} object(s), {human_size(r.bytes)} -> {r.target}"
    lines = [head]
    if r.already_done:
        lines.append(f"{r.already_done} already done (checkpoint {r.checkpoint})")
    if r.first_keys:
        lines.append("first: " + ", ".join(r.first_keys))
    if r.skipped:
        lines.append(f"skipped {len(r.skipped)} key(s) that are not bronze keys, e.g. {r.skipped[0]}")
    if not r.dry_run:
        lines.append(f"done {r.done}, failed {len(r.failed)} in {r.seconds} s")
    return "\n".join(lines)


def batch_options(f: Callable) -> Callable:
    options = [
        click.option("--engine", type=click.Choice(["local", "batch-operations"]), default="local", show_default=True,
                     help="local: this machine sends the CopyObject calls; batch-operations: an S3 Batch "
                          "Operations job does (millions of objects; see docs/eltops.md for its cost)."),
        click.option("--manifest", "manifest_url", metavar="S3_URL",
                     help="batch-operations: where the job's CSV manifest is written (s3://…/batch/manifests/x.csv)."),
        click.option("--batch-report", metavar="S3_URL",
                     help="batch-operations: completion report prefix [default: reports/ beside manifests/]."),
        click.option("--role-arn", envvar="ELT_BATCH_ROLE_ARN",
                     help="batch-operations: the role the job assumes (Terraform output batch_operations_role_arn) "
                          "[env ELT_BATCH_ROLE_ARN]."),
        click.option("--priority", type=click.IntRange(0, 2147483647), default=10, show_default=True,
                     help="batch-operations: job priority (higher runs first)."),
        click.option("--account-id", envvar="ELT_ACCOUNT_ID",
                     help="batch-operations: the job's account [default: the role's] [env ELT_ACCOUNT_ID]."),
        click.option("--yes", "-y", is_flag=True,
                     help="batch-operations: start the job at once (otherwise it waits for confirmation in S3)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _batch_copy(ctx, **options) -> None:
    """replay copy --engine batch-operations: ops.batch_ops.run, then render and the exit code."""
    from ops.batch_ops import run

    aws = settings(ctx).aws()
    result = run(aws.client("s3"), aws.client("s3control"), on_inventory=lambda inv: _say_inventory(ctx, inv),
                 **options)
    if not result.resubmitted:
        info(ctx, f"this replay was submitted already as job {result.job.job_id}; not submitted again "
                  f"(eltops batch-job status {result.job.job_id})")
    render(ctx, result.summary(), _batch_text)
    if result.local is not None and result.local.failed:
        raise PartialFailure(f"{len(result.local.failed)} object(s) over 5 GB failed their local copy; see above"
                             + (f" and {result.local.report}" if result.local.report else ""))


def _batch_text(r: dict) -> str:
    verb = "would submit" if r["dry_run"] else "submitted"
    lines = [f"{verb} an S3 Batch Operations copy of {r['objects']} object(s), {human_size(r['bytes'])} -> {r['dest_prefix']}",
             f"manifest: {r['manifest']}" + ("" if r["dry_run"] else " (written)")]
    if r["first_keys"]:
        lines.append("first: " + ", ".join(r["first_keys"]))
    if r["local_multipart"]:
        lines.append(f"{len(r['local_multipart'])} object(s) over 5 GB (Batch Operations' copy limit) "
                     f"{'would be' if r['dry_run'] else 'were'} copied here by multipart copy, e.g. "
                     f"{r['local_multipart'][0]['key']}")
    if r["skipped"]:
        lines.append(f"skipped {len(r['skipped'])} key(s) that are not bronze keys, e.g. {r['skipped'][0]}")
    cost = r["cost"]
    lines.append(f"cost at list prices: ${cost['batch_operations_usd']:,.2f} for the job (per job and per object) + "
                 f"${cost['copy_requests_usd']:,.2f} for the COPY requests ({cost['prices']})")
    job = r["job"]
    if job:
        lines.append(f"job {job['job_id']}" + (" waits for confirmation: aws s3control update-job-status --account-id "
                                                f"{job['account_id']} --job-id {job['job_id']} --requested-job-status "
                                                "Ready" if job["confirmation_required"] else " starts now"))
        lines.append(f"then: eltops batch-job wait {job['job_id']} --report batch-report.jsonl")
    return "\n".join(lines)


@replay.command("copy")
@common_options
@window_options
@click.option("--dest-prefix", help="Where copies go (default bronze/replay/<UTC stamp>): bronze/replay/<stamp>, "
                                    "one stamp segment of letters, digits and _.:-")
@run_options
@batch_options
@click.pass_context
def replay_copy_command(ctx, bucket, prefix, start, end, since, by, list_concurrency, from_inventory, live_tail,
                        dest_prefix, concurrency, max_rps, checkpoint, fresh, resume, report_path, dry_run, engine,
                        manifest_url, batch_report, role_arn, priority, account_id, yes):
    """Replay a window by server-side copy, so the normal S3 -> ingest path runs again.

    Copies go to <dest-prefix>/<part after bronze/>; silver keys ignore the replay prefix, so silver
    objects are overwritten, not duplicated. A lifecycle rule expires bronze/replay/.

    --engine batch-operations hands the copies to an S3 Batch Operations job instead (copies land
    at <dest-prefix>/<whole source key>; objects over 5 GB are copied here); then
    `eltops batch-job wait JOB`.

    \b
    Example:
      eltops replay copy --bucket $ELT_BRONZE_BUCKET --prefix bronze/orders/ \\
        --start 2025-01-01 --end 2025-01-02 --by partition --dry-run
      eltops replay copy --from-inventory s3://inv/bronze/elt-dev-bronze/daily/ --start 2024-01-01 \\
        --end 2025-01-01 --engine batch-operations --manifest s3://ops/batch/manifests/2024.csv --role-arn R
    """
    from lambdas.shared.keys import batch_replay_key, replay_key
    from ops.replay import check_dest_prefix

    check_dest_prefix(dest_prefix, batch_replay_key if engine == "batch-operations" else replay_key)
    window = {"bucket": bucket, "prefix": prefix, "start": start, "end": end, "since": since, "by": by,
              "list_concurrency": list_concurrency, "from_inventory": from_inventory, "live_tail": live_tail}
    if engine == "batch-operations":
        _batch_copy(ctx, **window, dest_prefix=dest_prefix, checkpoint_path=checkpoint, fresh=fresh, resume=resume,
                    report_path=report_path, dry_run=dry_run, manifest_url=manifest_url, report_url=batch_report,
                    role_arn=role_arn, priority=priority, confirm=not yes, account_id=account_id)
        return
    _run_replay(ctx, "replay copy", **window, dest_prefix=dest_prefix, concurrency=concurrency, max_rps=max_rps,
                checkpoint_path=checkpoint, fresh=fresh, resume=resume, report_path=report_path, dry_run=dry_run)


@replay.command("sqs")
@common_options
@window_options
@click.option("--queue-url", envvar="ELT_QUEUE_URL", required=True, type=QUEUE_URL, help="Events queue [env ELT_QUEUE_URL].")
@run_options
@click.pass_context
def replay_sqs_command(ctx, bucket, prefix, start, end, since, by, list_concurrency, from_inventory, live_tail,
                       queue_url, concurrency, max_rps, checkpoint, fresh, resume, report_path, dry_run):
    """Replay a window straight into SQS: one work unit per object, no copy, no body read.

    For accounts where copying in bronze is not allowed. Bodies equal what ingest sends for the
    same object (origin replay-sqs); SendMessageBatch of 10, only failed entries retried.

    \b
    Example:
      eltops replay sqs --bucket $ELT_BRONZE_BUCKET --queue-url $ELT_QUEUE_URL --since 6h --max-rps 50
    """
    _run_replay(ctx, "replay sqs", bucket=bucket, prefix=prefix, start=start, end=end, since=since, by=by,
                list_concurrency=list_concurrency, from_inventory=from_inventory, live_tail=live_tail,
                queue_url=queue_url, concurrency=concurrency, max_rps=max_rps, checkpoint_path=checkpoint,
                fresh=fresh, resume=resume,
                report_path=report_path, dry_run=dry_run)
