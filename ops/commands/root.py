"""The root click group of `eltops` and what every command shares: settings (the boto3 session),
the common options, option types, rendering, confirmation, progress bars, and the mapping of
OpsError to exit codes. Command modules import this; `ops/cli.py` imports the command modules."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import sys
from collections.abc import Callable

import click

from ops.errors import ExitStatus, NeedsAttention, OpsError, PartialFailure, UsageError


@dataclasses.dataclass
class Settings:
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    json: bool = False
    quiet: bool = False
    _aws: object = None

    def aws(self):
        if self._aws is None:
            from ops.aws import make_aws

            self._aws = make_aws(profile=self.profile, region=self.region, endpoint_url=self.endpoint_url)
        return self._aws


def settings(ctx: click.Context) -> Settings:
    root = ctx.find_root()
    return root.meta.setdefault("eltops.settings", Settings())


def _store(name: str):
    def callback(ctx: click.Context, param: click.Parameter, value):
        if value not in (None, False):
            setattr(settings(ctx), name, value)
        return value

    return callback


class QueueUrl(click.ParamType):
    """An SQS queue as a URL, a name or an ARN (like the AWS CLI's --queue-url, s5cmd and sqsmover
    users expect); a name or an ARN is looked up with GetQueueUrl, so the command always gets a URL.
    A URL is checked before any call: scheme://host/<12-digit account>/<queue name>."""

    name = "queue"
    _RE = re.compile(r"^https?://[^/\s]+/\d{12}/([A-Za-z0-9_-]{1,80}(?:\.fifo)?)$")
    _NAME = re.compile(r"^[A-Za-z0-9_-]{1,75}(?:\.fifo)?$|^[A-Za-z0-9_-]{1,80}$")
    _ARN = re.compile(r"^arn:aws[a-z-]*:sqs:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_-]{1,80}(?:\.fifo)?)$")

    def convert(self, value, param, ctx):
        text = str(value)
        if self._RE.match(text):
            return text
        arn = self._ARN.match(text)
        if arn is None and not self._NAME.match(text):
            self.fail(f"{value!r} is not an SQS queue URL, name or ARN (e.g. https://sqs.<region>.amazonaws.com/"
                      "<account-id>/<queue-name>, <queue-name>, or arn:aws:sqs:<region>:<account-id>:<queue-name>)",
                      param, ctx)
        return self.lookup(ctx, name=arn.group(3) if arn else text, account=arn.group(2) if arn else None,
                           given=text, option=param.opts[0] if param is not None else "--queue-url")

    @staticmethod
    def lookup(ctx, *, name: str, account: str | None, given: str, option: str) -> str:
        from ops.aws import with_retries

        kwargs = {"QueueName": name, **({"QueueOwnerAWSAccountId": account} if account else {})}
        sqs = settings(ctx).aws().client("sqs")
        try:
            return with_retries(lambda: sqs.get_queue_url(**kwargs), action="sqs:GetQueueUrl",
                                resource=given, attempts=3)["QueueUrl"]
        except OpsError as exc:
            if "does not exist" in str(exc):
                raise OpsError(f"{option} {given}: the queue does not exist (check the name, the account and "
                               "--region; `aws sqs list-queues` shows what exists)") from None
            raise


class QueueName(click.ParamType):
    """An SQS queue name (a FIFO queue's ends in .fifo), checked before any call; the command
    derives another name from it `extra` characters longer (the DLQ's)."""

    name = "queue_name"

    def __init__(self, extra: str = ""):
        self.extra = extra

    def convert(self, value, param, ctx):
        if not re.fullmatch(r"[A-Za-z0-9_-]+(\.fifo)?", str(value)) or len(value) + len(self.extra) > 80:
            self.fail(f"{value!r} is not a valid SQS queue name: use letters, digits, '-' or '_' (ending "
                      f"'.fifo' for a FIFO queue), {80 - len(self.extra)} characters at most"
                      + (f" (the command adds {self.extra!r})" if self.extra else ""), param, ctx)
        return value


QUEUE_URL = QueueUrl()


class Rate(click.ParamType):
    """A finite rate (per second) of at least `minimum`: nan and inf would disable the limiter."""

    name = "float"

    def __init__(self, minimum: float, maximum: float | None = None):
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value, param, ctx):
        import math

        try:
            rate = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(rate) or rate < self.minimum or (self.maximum is not None and rate > self.maximum):
            upper = f" and at most {self.maximum:g}" if self.maximum is not None else ""
            self.fail(f"{value!r} is not a rate: give a finite number of at least {self.minimum:g}{upper} per second",
                      param, ctx)
        return rate


def common_options(f: Callable) -> Callable:
    """--profile/--region/--endpoint-url/--json/--quiet, accepted before or after the command."""
    options = [
        # Eager: processed before the command's own options, so a queue name given before
        # --region/--endpoint-url is looked up where those point.
        click.option("--profile", expose_value=False, callback=_store("profile"), is_eager=True,
                     help="AWS profile name."),
        click.option("--region", expose_value=False, callback=_store("region"), is_eager=True, help="AWS region."),
        click.option("--endpoint-url", expose_value=False, callback=_store("endpoint_url"), is_eager=True,
                     help="AWS endpoint (the embedded AWS: see `eltops local up`). AWS_ENDPOINT_URL works too."),
        click.option("--json", "json_", is_flag=True, expose_value=False, callback=_store("json"),
                     help="Print a machine-readable JSON result on stdout."),
        click.option("--quiet", "-q", is_flag=True, expose_value=False, callback=_store("quiet"),
                     help="No progress bars or informational lines on stderr; results still print."),
        click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_debug,
                     help="Log every AWS request and response (botocore's debug log) on stderr."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def to_jsonable(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def render(ctx: click.Context, result, text: Callable[[object], str] | str | None = None) -> None:
    """Print the result: JSON with --json, else the text. --quiet does not hide it (`eltops ls -q`
    still prints the keys and the summary): it hides only progress and informational lines."""
    s = settings(ctx)
    if s.json:
        click.echo(json.dumps(to_jsonable(result), indent=2, ensure_ascii=False, default=str))
    elif text is not None:
        click.echo(text(result) if callable(text) else text)


def counts(by: dict) -> str:
    """{'DONE': 3, 'FAILED': 1} -> 'DONE 3, FAILED 1' (text output; --json keeps the mapping)."""
    return ", ".join(f"{k} {v}" for k, v in sorted(by.items())) or "none"


def human_size(n: int) -> str:
    """476408 -> '465.2 KiB' (text output; --json keeps bytes)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _debug(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """--debug: botocore's wire log (requests, responses, retries) on stderr, like the AWS CLI's."""
    if value:
        import logging

        import boto3

        boto3.set_stream_logger("botocore", logging.DEBUG)
        boto3.set_stream_logger("boto3", logging.DEBUG)
    return value


def info(ctx: click.Context, message: str) -> None:
    """An informational line on stderr (silent with --quiet or --json)."""
    s = settings(ctx)
    if not s.quiet:
        click.echo(message, err=True)


def progress_bar(ctx: click.Context, *, total: int | None, desc: str, unit: str = "obj", **kwargs):
    """tqdm on stderr, only on a terminal and without --quiet; returns None otherwise."""
    s = settings(ctx)
    if s.quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, **kwargs)


class EltGroup(click.Group):
    """Maps OpsError (and file errors) to `Error: …` on stderr with its exit code (`Needs attention: …`
    for exit 4); Ctrl-C to 130."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PartialFailure as exc:
            if exc.report is not None:
                render(ctx, exc.report, None)
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(int(exc.exit_status))
        except OpsError as exc:
            # exit 4 is a finding of a check that ran (health, reconcile), not an error of the command
            label = "Needs attention" if isinstance(exc, NeedsAttention) else "Error"
            click.echo(f"{label}: {exc}", err=True)
            ctx.exit(int(exc.exit_status))
        except OSError as exc:
            if exc.filename is None:  # not a file problem (sockets and the like): let it show
                raise
            click.echo(f"Error: cannot use {exc.filename}: {exc.strerror}; check the path and its permissions",
                       err=True)
            ctx.exit(int(ExitStatus.ERROR))
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(int(ExitStatus.INTERRUPTED))


@click.group(cls=EltGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@common_options
@click.version_option(package_name="serverless-elt", prog_name="eltops")
def cli():
    """On-call and backfill toolkit for the serverless ELT pipeline.

    Global options (--profile, --region, --endpoint-url, --json, --quiet, --debug) work before or after the
    command. Exit codes: 0 ok, 1 error, 2 usage error, 3 partial failure, 4 needs attention (health,
    reconcile), 130 interrupted.

    \b
    Try it without an AWS account:
      eltops demo
    """


def confirm(ctx: click.Context, question: str, yes: bool) -> bool:
    """Ask on the terminal unless --yes; without a terminal, refuse rather than guess."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"{question} — this asks for confirmation; pass --yes to run it without a terminal")
    return click.confirm(question, default=False, err=True)
