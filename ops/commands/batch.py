"""eltops batch-job status|wait: an S3 Batch Operations copy replay and its completion report."""

from __future__ import annotations

import click

from ops.commands.root import cli, common_options, info, render, settings
from ops.errors import OpsError, PartialFailure


def job_options(f):
    options = [
        click.argument("job_id", metavar="JOB"),
        click.option("--account-id", envvar="ELT_ACCOUNT_ID",
                     help="Account that owns the job (default: the caller's, from STS) [env ELT_ACCOUNT_ID]."),
        click.option("--report", "report_path", type=click.Path(dir_okay=False),
                     help="When the job is complete, write its report here as replay copy does (one JSON line "
                          "per object: key, action, result, detail)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _clients(ctx, account_id):
    from ops.batch_ops import account_id_of

    aws = settings(ctx).aws()
    return aws.client("s3control"), aws.client("s3"), account_id or account_id_of(aws.client("sts"))


def _status_text(s) -> str:
    lines = [f"job {s.job_id}: {s.status}" + (f" ({s.status_reason})" if s.status_reason else ""),
             f"tasks: {s.succeeded} succeeded, {s.failed} failed of {s.total}, {s.elapsed_seconds} s active"]
    lines += [f"failure: {r['code']}: {r['reason']}" for r in s.failure_reasons]
    if s.replay is not None:
        lines.append(f"report: {s.replay.done} copied, {len(s.replay.failed)} failed ({s.report})")
        lines += [f"  failed {f['key']}: {f['error']}" for f in s.replay.failed[:10]]
        if len(s.replay.failed) > 10:
            lines.append(f"  … {len(s.replay.failed) - 10} more in the report")
    if s.next_step:
        lines.append(f"next: {s.next_step}")
    return "\n".join(lines)


def _finish(ctx, status) -> None:
    render(ctx, status, _status_text)
    if status.status in ("Failed", "Cancelled"):
        raise OpsError(f"job {status.job_id} is {status.status}"
                       + (f": {status.failure_reasons[0]['reason']}" if status.failure_reasons else ""))
    failed = len(status.replay.failed) if status.replay is not None else status.failed
    if status.status == "Complete" and failed:
        raise PartialFailure(f"{failed} of {status.total} copies failed; see the report above")


@cli.group("batch-job")
def batch_job():
    """An S3 Batch Operations replay job (from `replay copy --engine batch-operations`)."""


@batch_job.command("status")
@common_options
@job_options
@click.pass_context
def batch_job_status(ctx, job_id, account_id, report_path):
    """Progress and failure reasons of a job; once complete, its report as replay copy writes it.

    Exit 0 while it runs or when every copy succeeded, 3 when some copies failed, 1 when the job
    failed or was cancelled (Batch Operations fails a job whose first tasks fail by more than half).

    \b
    Example:
      eltops batch-job status 6a1c0f4e-… --report batch-report.jsonl
    """
    from ops.batch_ops import job_status

    control, s3, account = _clients(ctx, account_id)
    _finish(ctx, job_status(control, s3, job_id=job_id, account_id=account, report_path=report_path))


@batch_job.command("wait")
@common_options
@job_options
@click.option("--interval", type=click.FloatRange(min=1), default=30, show_default=True,
              help="Seconds between describe_job calls.")
@click.option("--timeout", type=click.FloatRange(min=1), help="Give up waiting after this many seconds (exit 1).")
@click.pass_context
def batch_job_wait(ctx, job_id, account_id, report_path, interval, timeout):
    """Wait until a job is Complete, Failed or Cancelled (or waits for confirmation), then report.

    \b
    Example:
      eltops batch-job wait 6a1c0f4e-… --interval 60 --report batch-report.jsonl
    """
    from ops.batch_ops import wait_for_job

    control, s3, account = _clients(ctx, account_id)

    def progress(s):
        info(ctx, f"{s.status}: {s.succeeded + s.failed}/{s.total} tasks, {s.failed} failed")

    status = wait_for_job(control, s3, job_id=job_id, account_id=account, interval=interval, timeout=timeout,
                          report_path=report_path, on_status=progress)
    if not status.finished:
        render(ctx, status, _status_text)
        raise OpsError(f"job {job_id} is {status.status}, not finished"
                       + (f": {status.next_step}" if status.next_step else f" after {timeout} s; wait again"))
    _finish(ctx, status)
