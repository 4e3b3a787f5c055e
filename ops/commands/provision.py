"""eltops provision queue, provision ensure-dlq."""

from __future__ import annotations

import click

from ops.commands.root import QUEUE_URL, QueueName, cli, common_options, confirm, info, render, settings


@cli.group()
def provision():
    """Pre-create SQS queues in restricted accounts and hand them to Terraform."""


def _text(r) -> str:
    lines = []
    for label, state in (("queue", r.queue), ("dlq", r.dlq)):
        if state is None:
            continue
        verb = "would create" if r.dry_run and state.created else ("created" if state.created else "found")
        lines.append(f"{label}: {verb} {state.name} {state.url or ''}".rstrip())
        for attribute, (old, new) in sorted(state.changed.items()):
            if not state.created:
                lines.append(f"  {'would set' if r.dry_run else 'set'} {attribute}: {old} -> {new}")
    if not r.changed:
        lines.append("nothing to change")
    lines += [f"note: {n}" for n in r.notes]
    if r.out and not r.dry_run:
        lines.append(f"wrote {r.out}: {', '.join(sorted(r.tfvars))}")
    return "\n".join(lines)


def _ask(ctx, queue: str, yes: bool):
    """confirm(diff lines) for a change to a queue's existing RedrivePolicy."""

    def ask(diff: list[str]) -> bool:
        info(ctx, f"{queue} already has a RedrivePolicy; this changes:\n  " + "\n  ".join(diff))
        return confirm(ctx, "Change it?", yes)

    return ask


@provision.command("queue")
@common_options
@click.option("--name", required=True, type=QueueName("-dlq"),
              help="Queue name (the DLQ is <name>-dlq). A standard queue: the pipeline cannot use FIFO.")
@click.option("--with-dlq/--without-dlq", default=True, show_default=True, help="Also create and attach the DLQ.")
@click.option("--max-receive-count", type=click.IntRange(1, 1000),
              help="Receives before the DLQ [default: the queue's current policy's, or 5 when it has none].")
@click.option("--consumer-timeout", type=int,
              help="Timeout of the Lambda that consumes the queue: transform_timeout_seconds (300) for events, "
                   "ingest_timeout_seconds (30) for ingest.")
@click.option("--batching-window", type=int,
              help="Batching window of its event source mapping: transform_batching_window_seconds (5) for "
                   "events, 0 for ingest.")
@click.option("--visibility-timeout", type=int,
              help="Seconds; at least 6 x --consumer-timeout + --batching-window, which is the default.")
@click.option("--for", "role", type=click.Choice(["events", "ingest"]), default="events", show_default=True,
              help="Which queue: events (work units for transform; writes existing_*) or ingest (S3 events for "
                   "ingest; writes existing_ingest_*).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write existing_* values to this *.auto.tfvars.json.")
@click.option("--dry-run", is_flag=True, help="Say what would be created or changed; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Change an existing queue's RedrivePolicy without asking.")
@click.pass_context
def provision_queue_command(ctx, name, with_dlq, max_receive_count, consumer_timeout, batching_window,
                            visibility_timeout, role, out, dry_run, yes):
    """Create, or find, the events queue and its DLQ without tags, and write their URLs and ARNs
    for Terraform (which then creates no queue). A second run changes nothing.

    On a queue that exists, only what you give changes: its RedrivePolicy keeps its
    maxReceiveCount unless --max-receive-count is given, and changing that policy shows the
    difference and asks first (or --yes).

    \b
    Example:
      eltops provision queue --name elt-dev-events --with-dlq --region eu-west-1 \\
        --out infra/terraform/envs/dev/queue.auto.tfvars.json
      eltops provision queue --for ingest --name elt-dev-ingest-events --visibility-timeout 180 \\
        --out infra/terraform/envs/dev/ingest-queue.auto.tfvars.json
    """
    from ops.provision import provision_queue

    report = provision_queue(settings(ctx).aws().client("sqs"), name=name, with_dlq=with_dlq,
                             max_receive_count=max_receive_count, visibility_timeout=visibility_timeout,
                             consumer_timeout=consumer_timeout, batching_window=batching_window,
                             dry_run=dry_run, out=out, role=role, confirm=_ask(ctx, name, yes))
    render(ctx, report, _text)


@provision.command("ensure-dlq")
@common_options
@click.option("--queue-url", required=True, type=QUEUE_URL, help="The existing queue.")
@click.option("--dlq-name", required=True, type=QueueName(),
              help="DLQ name (created when missing; ending .fifo for a FIFO queue's).")
@click.option("--max-receive-count", type=click.IntRange(1, 1000),
              help="Receives before the DLQ [default: the queue's current policy's, or 5 when it has none].")
@click.option("--consumer-timeout", type=int,
              help="The transform's timeout (300 by default): the queue's visibility timeout is checked against it.")
@click.option("--batching-window", type=int, help="The event source mapping's batching window (5 by default).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write existing_* values to this *.auto.tfvars.json.")
@click.option("--dry-run", is_flag=True, help="Say what would be created or changed; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Change an existing RedrivePolicy without asking.")
@click.pass_context
def ensure_dlq_command(ctx, queue_url, dlq_name, max_receive_count, consumer_timeout, batching_window, out,
                       dry_run, yes):
    """Create the DLQ if missing and attach it to an existing queue; a rerun is a no-op.

    Only what you give changes: an existing RedrivePolicy keeps its maxReceiveCount unless
    --max-receive-count is given. Changing an existing policy shows the difference and asks first
    (or --yes).

    \b
    Example:
      eltops provision ensure-dlq --queue-url $ELT_QUEUE_URL --dlq-name elt-dev-events-dlq
      eltops provision ensure-dlq --queue-url $ELT_QUEUE_URL --dlq-name elt-dev-events-dlq --max-receive-count 5 --yes
    """
    from ops.provision import ensure_dlq

    report = ensure_dlq(settings(ctx).aws().client("sqs"), queue_url=queue_url, dlq_name=dlq_name,
                        max_receive_count=max_receive_count, dry_run=dry_run, out=out,
                        confirm=_ask(ctx, queue_url, yes),
                        consumer_timeout=consumer_timeout, batching_window=batching_window)
    render(ctx, report, _text)
