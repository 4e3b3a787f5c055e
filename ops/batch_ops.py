"""Copy replay by S3 Batch Operations: AWS runs the copies, the laptop only plans and watches.

- `write_manifest`: the selected objects as a Batch Operations CSV manifest (format
  S3BatchOperations_CSV_20180820: bucket, URL-encoded key), streamed to a temporary file and
  uploaded where the user says. Objects over 5 GB (S3PutObjectCopy's limit) and keys that are not
  bronze keys stay out of it: the first go to the local multipart copy, the second are skipped,
  and the plan lists both.
- `submit_copy_job`: `s3control create_job` with S3PutObjectCopy into the replay prefix, a
  completion report of all tasks, the caller's role and priority, ConfirmationRequired unless the
  user said --yes, and a ClientRequestToken derived from the manifest's ETag and the job's
  settings, so a retried submit of the same plan returns the same job instead of a second one.
- `job_status` / `wait_for_job`: `describe_job` (progress, failure reasons) and, once the job is
  complete, its completion report turned into the same per-object report `replay copy` writes.

S3PutObjectCopy can only put a prefix in front of the whole source key, so a Batch Operations
copy of `bronze/<type>/dt=…/<name>` lands at `<dest-prefix>/bronze/<type>/dt=…/<name>`;
`lambdas.shared.keys` parses that form to the same logical key and silver key. moto has no
S3 Control jobs: the tests drive these functions through botocore's Stubber.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from boto3.s3.transfer import TransferConfig

from lambdas.shared.keys import InvalidKey, batch_replay_key, parse_bronze_key
from ops.aws import with_retries
from ops.errors import OpsError, UsageError
from ops.listing import ObjectInfo
from ops.replay import ReplayReport
from ops.state import Report

BATCH_COPY_LIMIT = 5 * 1024**3  # S3PutObjectCopy copies objects up to 5 GB
MANIFEST_FORMAT = "S3BatchOperations_CSV_20180820"
REPORT_FORMAT = "Report_CSV_20180820"
TERMINAL = ("Complete", "Failed", "Cancelled")
# List prices (us-east-1, 2025): per job, per object processed, per 1,000 COPY requests.
PRICE_PER_JOB = 0.25
PRICE_PER_MILLION_OBJECTS = 1.00
PRICE_PER_1000_COPIES = 0.005
ROLE_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/[\w+=,.@/-]+$")
JOB_ID = re.compile(r"^[0-9a-zA-Z-]{1,36}$")


def manifest_row(bucket: str, key: str) -> list[str]:
    """One Batch Operations manifest row: the bucket and the URL-encoded key."""
    return [bucket, quote(key, safe="/")]


@dataclass
class ManifestWritten:
    """What went into the manifest, and what did not."""

    url: str
    etag: str
    rows: int
    bytes: int
    large: list[ObjectInfo] = field(default_factory=list)  # over 5 GB: the local multipart copy does them
    skipped: list[dict] = field(default_factory=list)  # not bronze keys
    first_keys: list[str] = field(default_factory=list)


def _split_s3_url(url: str, option: str) -> tuple[str, str]:
    if not isinstance(url, str) or not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
        raise UsageError(f"{option} {url!r} is not an s3:// URL; use e.g. s3://<ops-bucket>/batch/<name>")
    bucket, _, key = url[5:].partition("/")
    return bucket, key


def write_manifest(s3, objects: Iterable[ObjectInfo], *, manifest_url: str, dest_prefix: str,
                   copy_limit: int = BATCH_COPY_LIMIT, dry_run: bool = False,
                   on_progress: Callable[[int], None] | None = None) -> ManifestWritten:
    """Stream `objects` into a CSV manifest and upload it to `manifest_url` (unless dry_run)."""
    bucket, key = _split_s3_url(manifest_url, "--manifest")
    if not key or key.endswith("/"):
        raise UsageError(f"--manifest {manifest_url!r} names a folder; name the manifest object, e.g. "
                         f"s3://{bucket}/{key or ''}replay-manifest.csv")
    result = ManifestWritten(url=manifest_url, etag="", rows=0, bytes=0)
    with tempfile.TemporaryFile(prefix="eltops-batch-manifest-") as handle:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        writer = csv.writer(text, lineterminator="\n")
        for obj in objects:
            try:
                parse_bronze_key(obj.key)
            except InvalidKey as exc:
                result.skipped.append({"key": obj.key, "reason": exc.reason})
                continue
            if obj.size > copy_limit:
                result.large.append(obj)
                continue
            writer.writerow(manifest_row(obj.bucket, obj.key))
            result.rows += 1
            result.bytes += obj.size
            if len(result.first_keys) < 5:
                result.first_keys.append(batch_replay_key(obj.key, dest_prefix))
            if on_progress and result.rows % 10_000 == 0:
                on_progress(result.rows)
        text.flush()
        text.detach()  # the rows are in `handle`; the upload may close it
        handle.seek(0)
        if not dry_run and result.rows:
            where = f"s3://{bucket}/{key}"
            # Two 8 MB parts in flight, not s3transfer's ten: the upload is not the slow part, memory counts.
            config = TransferConfig(max_concurrency=2)
            with_retries(lambda: s3.upload_fileobj(handle, bucket, key, Config=config), action="s3:PutObject",
                         resource=where)
            head = with_retries(lambda: s3.head_object(Bucket=bucket, Key=key), action="s3:GetObject",
                                resource=where)
            result.etag = head["ETag"].strip('"')
    return result


def read_manifest_rows(s3, manifest_url: str) -> list[tuple[str, str]]:
    """(bucket, key) of each row of a Batch Operations CSV manifest, keys decoded (for checks)."""
    bucket, key = _split_s3_url(manifest_url, "--manifest")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    return [(row[0], unquote(row[1])) for row in csv.reader(io.StringIO(body)) if row]


def _arn_parts(role_arn: str) -> tuple[str, str]:
    match = ROLE_ARN.match(role_arn or "")
    if not match:
        raise UsageError(f"--role-arn {role_arn!r} is not an IAM role ARN (arn:aws:iam::<account-id>:role/<name>); "
                         "Terraform's batch_operations_role_arn output gives it")
    return match.group(1), match.group(2)


def request_token(**settings) -> str:
    """ClientRequestToken: the same plan (manifest ETag and job settings) gives the same token."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:64]


@dataclass
class SubmittedJob:
    job_id: str
    account_id: str
    token: str
    confirmation_required: bool
    manifest: str
    report: str


def _control(s3control, fn, *, action: str, resource: str):
    """An S3 Control call; an endpoint that is not AWS and cannot be reached (the embedded AWS:
    moto has no S3 Batch Operations, and botocore puts the account id in front of its host) is
    named as such, with the way out."""
    from botocore.exceptions import EndpointConnectionError

    try:
        return with_retries(fn, action=action, resource=resource)
    except OpsError as exc:
        endpoint = str(getattr(s3control.meta, "endpoint_url", "") or "")
        if isinstance(exc.__cause__, EndpointConnectionError) and "amazonaws.com" not in endpoint:
            raise OpsError(f"{action} on {resource}: {endpoint} has no S3 Batch Operations (S3 Control) endpoint; "
                           "the embedded AWS has none: use --engine local there "
                           "(runbooks/backfill-millions-of-objects.md)") from exc
        raise


def submit_copy_job(s3control, *, manifest: ManifestWritten, bucket: str, dest_prefix: str, report_url: str,
                    role_arn: str, priority: int = 10, confirm: bool = True, account_id: str | None = None,
                    description: str = "eltops replay copy") -> SubmittedJob:
    """create_job: S3PutObjectCopy of every manifest row to `<dest_prefix>/<key>`, all-tasks report."""
    partition, role_account = _arn_parts(role_arn)
    account_id = account_id or role_account
    report_bucket, report_prefix = _split_s3_url(report_url, "--batch-report")
    if not manifest.etag:
        raise OpsError("the manifest was not uploaded (a dry run, or no objects): nothing to submit")
    manifest_bucket, manifest_key = _split_s3_url(manifest.url, "--manifest")
    token = request_token(manifest=manifest.url, etag=manifest.etag, bucket=bucket, dest_prefix=dest_prefix,
                          report=report_url, role=role_arn, priority=priority, confirm=confirm)
    request = {
        "AccountId": account_id,
        "ConfirmationRequired": confirm,
        "Operation": {"S3PutObjectCopy": {
            "TargetResource": f"arn:{partition}:s3:::{bucket}",
            "TargetKeyPrefix": dest_prefix.rstrip("/"),
            "MetadataDirective": "COPY",
        }},
        "Report": {"Bucket": f"arn:{partition}:s3:::{report_bucket}", "Format": REPORT_FORMAT, "Enabled": True,
                   "Prefix": report_prefix.rstrip("/") or "batch-reports", "ReportScope": "AllTasks"},
        "ClientRequestToken": token,
        "Manifest": {"Spec": {"Format": MANIFEST_FORMAT, "Fields": ["Bucket", "Key"]},
                     "Location": {"ObjectArn": f"arn:{partition}:s3:::{manifest_bucket}/{manifest_key}",
                                  "ETag": manifest.etag}},
        "Description": description[:256],
        "Priority": priority,
        "RoleArn": role_arn,
    }
    response = _control(s3control, lambda: s3control.create_job(**request), action="s3:CreateJob (and "
                        f"iam:PassRole on {role_arn})", resource=f"account {account_id}")
    return SubmittedJob(job_id=response["JobId"], account_id=account_id, token=token, confirmation_required=confirm,
                        manifest=manifest.url, report=report_url)


def estimate_cost(objects: int) -> dict:
    """What the job costs at list prices (us-east-1): per job, per object, per COPY request."""
    batch = PRICE_PER_JOB + objects / 1_000_000 * PRICE_PER_MILLION_OBJECTS
    copies = objects / 1000 * PRICE_PER_1000_COPIES
    return {"objects": objects, "batch_operations_usd": round(batch, 4), "copy_requests_usd": round(copies, 4),
            "total_usd": round(batch + copies, 4), "prices": "us-east-1 list prices; check your region's"}


@dataclass
class JobStatus:
    """describe_job, and (once complete) the completion report as replay copy's report."""

    job_id: str
    status: str
    total: int
    succeeded: int
    failed: int
    elapsed_seconds: int
    failure_reasons: list[dict]
    status_reason: str | None
    report: str | None
    replay: ReplayReport | None = None
    next_step: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def ok(self) -> bool:
        return self.status == "Complete" and not self.failed and not (self.replay and self.replay.failed)


def _check_job_id(job_id: str) -> str:
    if not JOB_ID.match(job_id or ""):
        raise UsageError(f"job id {job_id!r} is not an S3 Batch Operations job id (the id `replay copy --engine "
                         "batch-operations` printed, like 0f3d… 36 characters)")
    return job_id


def job_status(s3control, s3, *, job_id: str, account_id: str, report_path: str | None = None) -> JobStatus:
    """The job's state; when it is Complete, its completion report read into a ReplayReport."""
    _check_job_id(job_id)
    job = _control(s3control, lambda: s3control.describe_job(AccountId=account_id, JobId=job_id),
                   action="s3:DescribeJob", resource=f"job {job_id} in account {account_id}")["Job"]
    progress = job.get("ProgressSummary", {})
    report = job.get("Report") or {}
    report_url = None
    if report.get("Enabled") and report.get("Bucket"):
        report_url = f"s3://{report['Bucket'].rsplit(':', 1)[-1]}/{report.get('Prefix', '').strip('/')}/job-{job_id}/"
    status = JobStatus(job_id=job_id, status=job.get("Status", "?"), total=int(progress.get("TotalNumberOfTasks", 0)),
                       succeeded=int(progress.get("NumberOfTasksSucceeded", 0)),
                       failed=int(progress.get("NumberOfTasksFailed", 0)),
                       elapsed_seconds=int(progress.get("Timers", {}).get("ElapsedTimeInActiveSeconds", 0)),
                       failure_reasons=[{"code": r.get("FailureCode"), "reason": r.get("FailureReason")}
                                        for r in job.get("FailureReasons", [])],
                       status_reason=job.get("StatusUpdateReason") or job.get("SuspendedCause"), report=report_url)
    status.next_step = _next_step(status, account_id)
    if status.finished and report_url and status.status != "Cancelled":
        status.replay = read_completion_report(s3, report_url=report_url, job_id=job_id, report_path=report_path)
    return status


def _next_step(status: JobStatus, account_id: str) -> str | None:
    if status.status == "Suspended":
        return (f"the job waits for confirmation: aws s3control update-job-status --account-id {account_id} "
                f"--job-id {status.job_id} --requested-job-status Ready")
    if status.status == "Failed":
        return "the job failed (more than half of its first tasks failed, or its manifest/report/role is wrong): " \
               "read failure_reasons, fix, and submit again"
    if status.status == "Complete" and status.failed:
        return "some copies failed: the report lists them; replay them with replay copy --engine local"
    return None


def read_completion_report(s3, *, report_url: str, job_id: str, report_path: str | None = None) -> ReplayReport:
    """Every task of the completion report (`<prefix>/job-<id>/manifest.json` and its result CSVs)
    as replay copy's report: ok / failed per key, optionally written to `report_path` (JSON lines)."""
    bucket, prefix = _split_s3_url(report_url, "report")
    where = f"s3://{bucket}/{prefix}manifest.json"
    raw = with_retries(lambda: s3.get_object(Bucket=bucket, Key=f"{prefix}manifest.json")["Body"].read(),
                       action="s3:GetObject", resource=where)
    try:
        results = json.loads(raw)["Results"]
    except (ValueError, KeyError, TypeError):
        raise OpsError(f"{where} is not a Batch Operations completion report manifest (no Results)") from None
    result = ReplayReport(command="replay copy (batch operations)", bucket="", target=f"job {job_id}", planned=0,
                          bytes=0, report=report_path)
    if report_path:
        import pathlib

        pathlib.Path(report_path).unlink(missing_ok=True)  # the job's report, written anew on each read
    out = Report(report_path)
    try:
        for entry in results:
            key, where_bucket = entry["Key"], entry.get("Bucket") or bucket
            body = with_retries(lambda k=key, b=where_bucket: s3.get_object(Bucket=b, Key=k)["Body"].read(),
                                action="s3:GetObject", resource=f"s3://{where_bucket}/{key}")
            if entry.get("MD5Checksum") and hashlib.md5(body).hexdigest() != entry["MD5Checksum"]:
                raise OpsError(f"s3://{where_bucket}/{key}: MD5 does not match the completion report's manifest; "
                               "the report is incomplete: read it again later")
            for row in csv.reader(io.StringIO(body.decode("utf-8"))):
                if len(row) < 4:
                    continue
                source_bucket, source_key, _version, task_status = row[:4]
                http, code, message = (row[4:7] + ["", "", ""])[:3]
                key_text = unquote(source_key)
                result.bucket = result.bucket or source_bucket
                result.planned += 1
                if task_status == "succeeded":
                    result.done += 1
                    out.write(key=key_text, action="copy", result="ok", detail=f"job {job_id}")
                else:
                    detail = " ".join(x for x in (http, code, message) if x)
                    result.failed.append({"key": key_text, "error": detail})
                    out.write(key=key_text, action="copy", result="failed", detail=detail)
    finally:
        out.close()
    result.first_keys = [f["key"] for f in result.failed[:5]]
    return result


def wait_for_job(s3control, s3, *, job_id: str, account_id: str, interval: float = 30.0, timeout: float | None = None,
                 report_path: str | None = None, on_status: Callable[[JobStatus], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> JobStatus:
    """Poll describe_job until the job is Complete, Failed or Cancelled (or waits for confirmation,
    or `timeout` passes); returns the last status."""
    started = clock()
    while True:
        status = job_status(s3control, s3, job_id=job_id, account_id=account_id, report_path=report_path)
        if on_status:
            on_status(status)
        if status.finished or status.status == "Suspended":
            return status
        if timeout is not None and clock() - started + interval > timeout:
            return status
        sleep(interval)


def describe_plan(manifest: ManifestWritten, *, dest_prefix: str, job: SubmittedJob | None, dry_run: bool) -> dict:
    """The plan (and job) as the CLI renders it."""
    return {
        "engine": "batch-operations", "dry_run": dry_run, "manifest": manifest.url, "objects": manifest.rows,
        "bytes": manifest.bytes, "dest_prefix": dest_prefix, "first_keys": manifest.first_keys,
        "local_multipart": [{"key": o.key, "size": o.size} for o in manifest.large],
        "skipped": manifest.skipped, "cost": estimate_cost(manifest.rows),
        "job": None if job is None else {"job_id": job.job_id, "account_id": job.account_id,
                                         "confirmation_required": job.confirmation_required, "report": job.report,
                                         "client_request_token": job.token},
        "planned_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def default_report_url(manifest_url: str) -> str:
    """Reports beside manifests: s3://b/batch/manifests/x.csv -> s3://b/batch/reports/ (Terraform's layout)."""
    bucket, key = _split_s3_url(manifest_url, "--manifest")
    folder = key.rsplit("/", 1)[0] if "/" in key else ""
    if folder == "manifests" or folder.endswith("/manifests"):
        folder = folder[: -len("manifests")].rstrip("/")
    return f"s3://{bucket}/{folder + '/' if folder else ''}reports/"


def account_id_of(sts) -> str:
    """The caller's account (S3 Control calls name it)."""
    return with_retries(lambda: sts.get_caller_identity()["Account"], action="sts:GetCallerIdentity",
                        resource="the caller")


@dataclass
class BatchCopyResult:
    """The plan, the submitted job, and the local multipart copies of the objects over 5 GB."""

    manifest: ManifestWritten
    dest_prefix: str
    dry_run: bool
    job: SubmittedJob | None = None
    local: ReplayReport | None = None
    resubmitted: bool = True  # False: the job was submitted by an earlier run of the same command
    inventory: dict | None = None  # with --from-inventory: where the listing came from

    @property
    def ok(self) -> bool:
        return self.local is None or self.local.ok

    def summary(self) -> dict:
        return {**describe_plan(self.manifest, dest_prefix=self.dest_prefix, job=self.job, dry_run=self.dry_run),
                "submitted_by_an_earlier_run": not self.resubmitted,
                "local_result": None if self.local is None else {
                    "done": self.local.done, "failed": self.local.failed, "report": self.local.report},
                **({"inventory": self.inventory} if self.inventory else {})}


def batch_copy(s3, s3control, *, objects: Iterable[ObjectInfo], bucket: str, dest_prefix: str, manifest_url: str,
               report_url: str | None, role_arn: str, priority: int = 10, confirm: bool = True,
               account_id: str | None = None, dry_run: bool = False, local_report_path: str | None = None,
               description: str = "eltops replay copy", on_progress: Callable[[int], None] | None = None,
               submitted: dict | None = None, checkpoint=None) -> BatchCopyResult:
    """Write the manifest, submit the job (unless `submitted`, an earlier run's job), then copy the
    objects over 5 GB locally (multipart; `checkpoint` skips the ones an earlier run copied)."""
    from ops.replay import replay_copy

    if role_arn or not dry_run:
        _arn_parts(role_arn)  # a bad ARN is refused before anything is written
    report_url = report_url or default_report_url(manifest_url)
    _split_s3_url(report_url, "--batch-report")
    # A job submitted already reads the manifest it was given (by ETag): never rewrite it.
    manifest = write_manifest(s3, objects, manifest_url=manifest_url, dest_prefix=dest_prefix,
                              dry_run=dry_run or bool(submitted), on_progress=on_progress)
    result = BatchCopyResult(manifest=manifest, dest_prefix=dest_prefix, dry_run=dry_run)
    if submitted:
        result.job, result.resubmitted = SubmittedJob(**submitted), False
    elif manifest.rows and not dry_run:
        result.job = submit_copy_job(s3control, manifest=manifest, bucket=bucket, dest_prefix=dest_prefix,
                                     report_url=report_url, role_arn=role_arn, priority=priority, confirm=confirm,
                                     account_id=account_id, description=description)
        if checkpoint is not None:  # at once: a run killed from here on must not submit again
            checkpoint.value("job", vars(result.job))
            checkpoint.save()
    if manifest.large:
        # Batch Operations' copy stops at 5 GB; these go through the local multipart copy, to the
        # layout the job uses, so every copy of this replay sits under one prefix the same way.
        result.local = replay_copy(s3, objects=manifest.large, bucket=bucket, dest_prefix=dest_prefix,
                                   concurrency=2, dry_run=dry_run, report_path=local_report_path,
                                   key_for=batch_replay_key, checkpoint=checkpoint)
    return result


def run(s3, s3control, *, bucket: str, prefix: str, start: str | None, end: str | None, since: str | None,
        by: str = "modified", list_concurrency: int = 8, from_inventory: str | None = None,
        live_tail: bool | None = None, dest_prefix: str | None = None, manifest_url: str | None = None,
        report_url: str | None = None, role_arn: str | None = None, priority: int = 10, confirm: bool = True,
        account_id: str | None = None, checkpoint_path: str | None = None, fresh: bool = False,
        resume: str | None = None, report_path: str | None = None, dry_run: bool = False,
        on_inventory: Callable[[dict], None] | None = None) -> BatchCopyResult:
    """`replay copy --engine batch-operations` end to end: checkpoint, window, streamed listing,
    manifest, job, and the local copies of objects over 5 GB.

    The checkpoint follows replay copy's life: a run that submitted its job and copied its large
    objects is finished (the same command next time is a new run); a run that failed or was killed
    after create_job is resumed with its window and destination, and the job it submitted (kept in
    the checkpoint) is not submitted again. If it died during create_job, the resumed run writes
    the same manifest and sends the same ClientRequestToken, so S3 answers with the same job."""
    from ops import replay as lib
    from ops.listing import stream_objects

    if not manifest_url:
        raise UsageError("--engine batch-operations needs --manifest s3://<bucket>/batch/manifests/<name>.csv "
                         "(where the job's manifest is written)")
    if not role_arn and not dry_run:
        raise UsageError("--engine batch-operations needs --role-arn (Terraform output batch_operations_role_arn, "
                         "or ELT_BATCH_ROLE_ARN)")
    lib.check_dest_prefix(dest_prefix, batch_replay_key)
    identity = {"command": "replay copy", "engine": "batch-operations", "bucket": bucket, "prefix": prefix,
                "start": start, "end": end, "since": since, "by": by, "dest_prefix": dest_prefix,
                "manifest": manifest_url, **lib.source_identity(from_inventory)}
    checkpoint = lib.checkpoint_for("replay copy", identity, checkpoint_path, dry_run, fresh=fresh, resume=resume)
    submitted = checkpoint.values.get("job") if checkpoint else None
    window = lib.resolved_window(checkpoint, start=start, end=end, since=since)
    dest = lib.destination(checkpoint, dest_prefix)
    objects, source = stream_objects(s3, bucket=bucket, prefix=prefix, window=window, by=by,
                                     from_inventory=from_inventory, live_tail=live_tail, concurrency=list_concurrency)
    if source is not None and on_inventory:
        on_inventory(source.summary())
    result = batch_copy(s3, s3control, objects=objects, bucket=bucket, dest_prefix=dest, manifest_url=manifest_url,
                        report_url=report_url, role_arn=role_arn or "", priority=priority, confirm=confirm,
                        account_id=account_id, dry_run=dry_run, local_report_path=report_path,
                        description=f"eltops replay copy {prefix} {window.describe()} -> {dest}",
                        submitted=submitted, checkpoint=checkpoint)
    result.inventory = source.summary() if source is not None else None
    if checkpoint is not None:
        local_ok = result.local is None or result.local.ok
        checkpoint.finish(lib.FINISHED if local_ok else lib.INTERRUPTED if result.local.interrupted else lib.FAILED)
    return result
