"""eltops demo, local up, local inventory, gen-events."""

from __future__ import annotations

import signal
import threading

import click

from ops.commands.root import cli, common_options, human_size, info, render, settings
from ops.errors import OpsError, UsageError


@cli.command()
@common_options
@click.option("--workdir", type=click.Path(file_okay=False), help="Keep generated files and Lambda logs here.")
@click.pass_context
def demo(ctx, workdir):
    """Run the whole pipeline and its repairs on the embedded AWS, then check the numbers.

    Generates events (2 types x 2 days, with bad lines and one unreadable object), uploads them to
    bronze, waits until the queues drain, re-uploads one object unchanged, replays one day by copy
    and one straight to SQS, and prints a summary. Exits 0 only when silver + quarantine rows equal
    the rows generated, duplicates and replays left silver unchanged, and the unreadable object is
    in the DLQ.

    \b
    Example:
      eltops demo
      eltops demo --json | jq .rows_silver
    """
    from ops.demo import run_demo

    report = run_demo(workdir=workdir, on_progress=lambda m: info(ctx, m))
    render(ctx, report, _demo_text)
    if not report.ok:
        raise OpsError("demo check failed: " + "; ".join(report.problems))


def _demo_text(r) -> str:
    return "\n".join([
        f"objects uploaded      {r.objects}",
        f"rows generated        {r.rows_generated} ({r.rows_good_generated} good)",
        f"rows in silver        {r.rows_silver} (read back from {r.silver_objects} Parquet objects)",
        f"rows quarantined      {r.rows_quarantined}",
        f"DLQ messages          {r.dlq_messages} (unreadable object there: {'yes' if r.poison_in_dlq else 'NO'})",
        f"duplicate upload      {'no new rows' if r.duplicate_left_silver_unchanged else 'CHANGED SILVER'}",
        f"replays               {r.replay_copy_objects} by copy, {r.replay_sqs_objects} by SQS: "
        f"{'silver unchanged' if r.replays_left_silver_unchanged else 'SILVER CHANGED'} ({r.rows_silver_after_replays} rows)",
        f"seconds               {r.seconds}",
        "result                " + ("OK: silver + quarantine = generated" if r.ok else "FAILED"),
    ])


@cli.group()
def local():
    """The embedded AWS (moto on 127.0.0.1) with the local Lambda runtime."""


@local.command("up")
@common_options
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Write Lambda logs here instead of stderr.")
@click.pass_context
def local_up(ctx, port, log_file):
    """Serve the embedded AWS and run both Lambdas until Ctrl-C or SIGTERM.

    Prints `export` lines for any client (the AWS CLI, boto3, eltops), then `# ready` (a comment, so
    the whole output can be sourced).

    \b
    Example:
      eltops local up --port 4566 > /tmp/elt.env &
      until grep -q '^# ready' /tmp/elt.env; do sleep 1; done
      source /tmp/elt.env
      aws s3 cp events.jsonl s3://$ELT_BRONZE_BUCKET/bronze/orders/dt=2025-01-01/events.jsonl
    """
    from ops.local.runtime import EmbeddedAws

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        aws = EmbeddedAws(port=port, log_path=log_file).start()
    except OSError as exc:
        raise OpsError(f"cannot serve on 127.0.0.1:{port}: {exc}; pick another --port or 0") from None
    try:
        env = aws.environ()
        aws_keys = ["AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        elt_keys = [k for k in env if k.startswith("ELT_")]
        click.echo(f"export AWS_ENDPOINT_URL={env['AWS_ENDPOINT_URL']}")
        click.echo("export " + " ".join(f"{k}={env[k]}" for k in aws_keys))
        click.echo("export " + " ".join(f"{k}={env[k]}" for k in elt_keys))
        click.echo("# ready")  # a comment: the whole output can be sourced by a shell
        import sys

        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        info(ctx, "stopping the embedded AWS")
        aws.stop()


@local.command("inventory")
@common_options
@click.option("--bucket", envvar="ELT_BRONZE_BUCKET", required=True, help="Source bucket.  [env: ELT_BRONZE_BUCKET]")
@click.option("--to", "to", help="Destination s3://bucket/prefix/ (default: s3://<bucket>/inventory/).")
@click.option("--config-id", default="bronze-daily", show_default=True, help="The inventory configuration's name.")
@click.option("--format", "file_format", type=click.Choice(["CSV", "Parquet", "ORC"]), default="CSV", show_default=True)
@click.pass_context
def local_inventory(ctx, bucket, to, config_id, file_format):
    """Deliver an S3 Inventory report of the bucket's bronze/ now, as a daily configuration would.

    The embedded AWS never delivers inventory reports; this writes one (manifest and data files)
    from a live listing, for rehearsing the inventory runbooks. Prints the manifest's URL.

    \b
    Example:
      eltops local inventory --bucket $ELT_BRONZE_BUCKET --to s3://$ELT_BRONZE_BUCKET/inventory/
    """
    from ops.local.inventory import live_entries, write_report

    to = to or f"s3://{bucket}/inventory/"
    if not to.startswith("s3://") or not to[5:].partition("/")[0]:
        raise UsageError(f"--to {to!r} is not an s3://bucket/prefix/ URL; give one like s3://{bucket}/inventory/")
    dest_bucket, _, prefix = to[5:].partition("/")
    s3 = settings(ctx).aws().client("s3")
    url = write_report(s3, source_bucket=bucket, entries=live_entries(s3, bucket, "bronze/"), report_bucket=dest_bucket,
                       prefix=prefix or "inventory", config_id=config_id, file_format=file_format)
    render(ctx, {"manifest": url}, lambda r: r["manifest"])


@cli.command("gen-events")
@common_options
@click.option("--type", "type_", required=True, help="Event type (a schema in the registry).")
@click.option("--count", type=click.IntRange(min=0), required=True, help="Number of events (lines or elements).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "json"]), default="jsonl", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, writable=True),
              help="Output file; a name ending in .gz is gzipped.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--bad-ratio", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of bad lines: malformed JSON, wrong types, missing required fields.")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default="2025-01-01", show_default=True,
              help="Day the events' timestamps fall on.")
@click.pass_context
def gen_events(ctx, type_, count, fmt, out, seed, bad_ratio, day):
    """Write fake bronze events, byte-identical for the same seed.

    \b
    Example:
      eltops gen-events --type shipments --count 1000 --format jsonl --out s.jsonl --bad-ratio 0.01
    """
    from lambdas.shared import schemas
    from ops.gen_events import write_events

    try:
        schemas.get(type_)
    except schemas.UnknownType as exc:
        raise UsageError(f"--type: {exc}") from None
    result = write_events(out, type_=type_, count=count, fmt=fmt, seed=seed, bad_ratio=bad_ratio, day=day.date())
    render(ctx, result, lambda r: f"wrote {r.rows} {r.type} events ({r.bad} bad) to {r.path} ({human_size(r.bytes)})")

