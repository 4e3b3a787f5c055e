"""Copy replay by S3 Batch Operations. moto has no S3 Control jobs, so s3control runs under
botocore's Stubber (every request is validated against the service model before the stub answers);
S3 (manifest, completion report) is moto. The manifest the job names is read back and parsed."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid

import boto3
import pytest
from botocore.stub import ANY, Stubber

from lambdas.shared.keys import parse_bronze_key
from ops.batch_ops import (
    BATCH_COPY_LIMIT,
    ManifestWritten,
    estimate_cost,
    job_status,
    read_manifest_rows,
    submit_copy_job,
    wait_for_job,
    write_manifest,
)
from ops.errors import UsageError
from ops.listing import ObjectInfo

ROLE = "arn:aws:iam::123456789012:role/elt-dev-batch-operations"
OPS = "elt-local-ops"
JOB = str(uuid.UUID(int=7))
T = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def obj(bucket: str, key: str, size: int = 10) -> ObjectInfo:
    return ObjectInfo(bucket=bucket, key=key, size=size, etag="e", last_modified=T)


@pytest.fixture
def aws(pipeline):
    pipeline.s3.create_bucket(Bucket=OPS)
    control = boto3.client("s3control", region_name="us-east-1")
    with Stubber(control) as stub:
        pipeline.control, pipeline.stub = control, stub
        yield pipeline
        stub.assert_no_pending_responses()


def selection(bucket: str) -> list[ObjectInfo]:
    return [obj(bucket, "bronze/orders/dt=2025-01-01/a b+ü,x.jsonl"), obj(bucket, "bronze/orders/dt=2025-01-01/b.jsonl"),
            obj(bucket, "bronze/orders/dt=2025-01-02/huge.jsonl", size=BATCH_COPY_LIMIT + 1),
            obj(bucket, "bronze/notes.txt")]


def test_the_manifest_lists_bucket_and_url_encoded_key_and_routes_large_objects_locally(aws):
    written = write_manifest(aws.s3, selection(aws.bronze), manifest_url=f"s3://{OPS}/batch/m.csv",
                             dest_prefix="bronze/replay/b1")
    raw = aws.s3.get_object(Bucket=OPS, Key="batch/m.csv")["Body"].read().decode()
    assert raw.splitlines()[0] == f"{aws.bronze},bronze/orders/dt%3D2025-01-01/a%20b%2B%C3%BC%2Cx.jsonl"
    assert read_manifest_rows(aws.s3, written.url) == [
        (aws.bronze, "bronze/orders/dt=2025-01-01/a b+ü,x.jsonl"), (aws.bronze, "bronze/orders/dt=2025-01-01/b.jsonl")]
    assert [o.key for o in written.large] == ["bronze/orders/dt=2025-01-02/huge.jsonl"]
    assert written.skipped[0]["key"] == "bronze/notes.txt"
    assert (written.rows, written.bytes, written.etag) == (2, 20, hashlib.md5(raw.encode()).hexdigest())
    # Where the copies land parses to the original's logical key, so silver is overwritten in place.
    assert written.first_keys[1] == "bronze/replay/b1/bronze/orders/dt=2025-01-01/b.jsonl"
    assert parse_bronze_key(written.first_keys[1]).logical_key == "bronze/orders/dt=2025-01-01/b.jsonl"


def test_a_dry_run_writes_no_manifest(aws):
    written = write_manifest(aws.s3, selection(aws.bronze), manifest_url=f"s3://{OPS}/batch/m.csv",
                             dest_prefix="bronze/replay/b1", dry_run=True)
    assert written.rows == 2 and written.etag == "" and "Contents" not in aws.s3.list_objects_v2(Bucket=OPS)


def expected_job(aws, written: ManifestWritten, *, confirm: bool, token=ANY) -> dict:
    return {
        "AccountId": "123456789012", "ConfirmationRequired": confirm,
        "Operation": {"S3PutObjectCopy": {"TargetResource": f"arn:aws:s3:::{aws.bronze}",
                                          "TargetKeyPrefix": "bronze/replay/b1", "MetadataDirective": "COPY"}},
        "Report": {"Bucket": f"arn:aws:s3:::{OPS}", "Format": "Report_CSV_20180820", "Enabled": True,
                   "Prefix": "batch/reports", "ReportScope": "AllTasks"},
        "ClientRequestToken": token,
        "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
                     "Location": {"ObjectArn": f"arn:aws:s3:::{OPS}/batch/m.csv", "ETag": written.etag}},
        "Description": ANY, "Priority": 20, "RoleArn": ROLE}


def submit(aws, written, confirm=True):
    return submit_copy_job(aws.control, manifest=written, bucket=aws.bronze, dest_prefix="bronze/replay/b1/",
                           report_url=f"s3://{OPS}/batch/reports/", role_arn=ROLE, priority=20, confirm=confirm)


def test_the_job_copies_into_the_replay_prefix_and_a_retried_submit_sends_the_same_token(aws):
    written = write_manifest(aws.s3, selection(aws.bronze), manifest_url=f"s3://{OPS}/batch/m.csv",
                             dest_prefix="bronze/replay/b1")
    aws.stub.add_response("create_job", {"JobId": JOB}, expected_job(aws, written, confirm=True))
    first = submit(aws, written)
    # The same plan submitted again (a timeout, a rerun): same token, so S3 returns the same job.
    aws.stub.add_response("create_job", {"JobId": JOB}, expected_job(aws, written, confirm=True, token=first.token))
    again = submit(aws, write_manifest(aws.s3, selection(aws.bronze), manifest_url=f"s3://{OPS}/batch/m.csv",
                                       dest_prefix="bronze/replay/b1"))
    assert first.job_id == again.job_id == JOB and first.token == again.token and len(first.token) <= 64
    # --yes: no confirmation, and a different job settings hash.
    aws.stub.add_response("create_job", {"JobId": JOB}, expected_job(aws, written, confirm=False))
    assert submit(aws, written, confirm=False).token != first.token


def test_a_bad_role_arn_is_a_usage_error_before_any_call(aws):
    written = ManifestWritten(url=f"s3://{OPS}/m.csv", etag="x", rows=1, bytes=1)
    with pytest.raises(UsageError, match="--role-arn 'elt-batch' is not an IAM role ARN"):
        submit_copy_job(aws.control, manifest=written, bucket=aws.bronze, dest_prefix="bronze/replay/b1",
                        report_url=f"s3://{OPS}/r/", role_arn="elt-batch")


def put_completion_report(aws, rows: list[str]) -> None:
    body = ("\n".join(rows) + "\n").encode()
    key = f"batch/reports/job-{JOB}/results/{uuid.uuid4()}.csv"
    aws.s3.put_object(Bucket=OPS, Key=key, Body=body)
    manifest = {"Format": "Report_CSV_20180820", "ReportCreationDate": "2025-01-01T00:00:00.000Z",
                "Results": [{"TaskExecutionStatus": "failed" if "failed" in body.decode() else "succeeded",
                             "Bucket": OPS, "MD5Checksum": hashlib.md5(body).hexdigest(), "Key": key}],
                "ReportSchema": "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"}
    aws.s3.put_object(Bucket=OPS, Key=f"batch/reports/job-{JOB}/manifest.json", Body=json.dumps(manifest).encode())


def describe(status: str, total=3, ok=0, failed=0, reasons=()) -> dict:
    return {"Job": {"JobId": JOB, "Status": status, "Priority": 20,
                    "ProgressSummary": {"TotalNumberOfTasks": total, "NumberOfTasksSucceeded": ok,
                                        "NumberOfTasksFailed": failed, "Timers": {"ElapsedTimeInActiveSeconds": 9}},
                    "FailureReasons": [{"FailureCode": c, "FailureReason": r} for c, r in reasons],
                    "Report": {"Bucket": f"arn:aws:s3:::{OPS}", "Format": "Report_CSV_20180820", "Enabled": True,
                               "Prefix": "batch/reports", "ReportScope": "AllTasks"}}}


def test_wait_polls_until_complete_and_turns_failed_tasks_into_the_replay_report(aws, tmp_path):
    put_completion_report(aws, [
        f"{aws.bronze},bronze/orders/dt%3D2025-01-01/a%20b%2B%C3%BC%2Cx.jsonl,,succeeded,200,,Successful",
        f"{aws.bronze},bronze/orders/dt%3D2025-01-01/b.jsonl,,failed,404,NoSuchKey,The specified key does not exist.",
        f"{aws.bronze},bronze/orders/dt%3D2025-01-01/c.jsonl,,succeeded,200,,Successful"])
    params = {"AccountId": "123456789012", "JobId": JOB}
    aws.stub.add_response("describe_job", describe("Preparing"), params)
    aws.stub.add_response("describe_job", describe("Active", ok=1), params)
    aws.stub.add_response("describe_job", describe("Complete", ok=2, failed=1), params)
    seen, slept = [], []
    status = wait_for_job(aws.control, aws.s3, job_id=JOB, account_id="123456789012", interval=5,
                          report_path=str(tmp_path / "r.jsonl"), on_status=lambda s: seen.append(s.status),
                          sleep=slept.append)
    assert seen == ["Preparing", "Active", "Complete"] and slept == [5, 5]
    assert (status.total, status.succeeded, status.failed, status.ok) == (3, 2, 1, False)
    replay = status.replay
    assert (replay.planned, replay.done) == (3, 2)
    assert replay.failed == [{"key": "bronze/orders/dt=2025-01-01/b.jsonl",
                              "error": "404 NoSuchKey The specified key does not exist."}]
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [(x["key"], x["action"], x["result"]) for x in lines] == [
        ("bronze/orders/dt=2025-01-01/a b+ü,x.jsonl", "copy", "ok"), ("bronze/orders/dt=2025-01-01/b.jsonl", "copy", "failed"),
        ("bronze/orders/dt=2025-01-01/c.jsonl", "copy", "ok")]
    assert "replay copy --engine local" in status.next_step


def test_a_failed_job_reports_its_reasons_and_a_suspended_one_says_how_to_confirm(aws):
    aws.stub.add_response("describe_job", describe("Suspended") | {}, {"AccountId": "123456789012", "JobId": JOB})
    suspended = job_status(aws.control, aws.s3, job_id=JOB, account_id="123456789012")
    assert "--requested-job-status Ready" in suspended.next_step and suspended.replay is None
    put_completion_report(aws, [f"{aws.bronze},bronze/orders/dt%3D2025-01-01/b.jsonl,,failed,403,AccessDenied,Denied"])
    aws.stub.add_response("describe_job", describe("Failed", total=1, failed=1, reasons=[
        ("Manifest", "Reading the manifest is forbidden: AccessDenied")]), {"AccountId": "123456789012", "JobId": JOB})
    failed = job_status(aws.control, aws.s3, job_id=JOB, account_id="123456789012")
    assert failed.failure_reasons == [{"code": "Manifest", "reason": "Reading the manifest is forbidden: AccessDenied"}]
    assert failed.replay.failed[0]["error"] == "403 AccessDenied Denied"


def test_a_wrong_job_id_is_a_usage_error():
    with pytest.raises(UsageError, match="is not an S3 Batch Operations job id"):
        job_status(None, None, job_id="job/../x", account_id="123456789012")


def test_the_cost_is_per_job_plus_per_object():
    assert estimate_cost(2_000_000) == {"objects": 2_000_000, "batch_operations_usd": 2.25, "copy_requests_usd": 10.0,
                                        "total_usd": 12.25, "prices": "us-east-1 list prices; check your region's"}


def test_batch_copy_submits_the_job_and_copies_objects_over_5_gb_locally_to_the_same_layout(aws):
    from ops.batch_ops import batch_copy
    from ops.silver import summarize

    keys = ["bronze/orders/dt=2025-01-01/a.jsonl", "bronze/orders/dt=2025-01-01/huge.jsonl"]
    etags = [aws.put(key, b'{"order_id": "o1", "customer_id": "c", "amount": 1.5, "currency": "EUR", '
                          b'"created_at": "2025-01-01T00:00:00Z"}\n') for key in keys]
    aws.pump()
    before = summarize(aws.s3, bucket=aws.silver)
    # The listing says the second one is over 5 GB: it must not go into the manifest.
    objects = [obj(aws.bronze, keys[0]),
               ObjectInfo(bucket=aws.bronze, key=keys[1], size=BATCH_COPY_LIMIT + 1, etag=etags[1], last_modified=T)]
    aws.stub.add_response("create_job", {"JobId": JOB}, {**expected_job_any(), "Priority": 10})
    result = batch_copy(aws.s3, aws.control, objects=objects, bucket=aws.bronze, dest_prefix="bronze/replay/b1",
                        manifest_url=f"s3://{OPS}/batch/manifests/m.csv", report_url=None, role_arn=ROLE)
    assert result.job.job_id == JOB and result.job.report == f"s3://{OPS}/batch/reports/"
    assert read_manifest_rows(aws.s3, result.manifest.url) == [(aws.bronze, keys[0])]
    assert result.local.done == 1 and result.summary()["local_multipart"][0]["key"] == keys[1]
    copy = "bronze/replay/b1/bronze/orders/dt=2025-01-01/huge.jsonl"
    assert aws.s3.head_object(Bucket=aws.bronze, Key=copy)["Metadata"] == {"replay-source-etag": etags[1]}
    # The pipeline ingests the Batch Operations layout and rewrites the same silver object.
    assert aws.pump() >= 2
    after = summarize(aws.s3, bucket=aws.silver)
    assert (after.silver_objects, after.silver_rows) == (before.silver_objects, before.silver_rows)
    assert aws.ledger.versions(bucket=aws.bronze, key=copy)[0]["status"] == "DONE"


def expected_job_any() -> dict:
    return {name: ANY for name in ("AccountId", "ConfirmationRequired", "Operation", "Report", "ClientRequestToken",
                                   "Manifest", "Description", "RoleArn")}


# --- the CLI -------------------------------------------------------------------------------------------
@pytest.fixture
def cli_aws(aws, monkeypatch):
    """The CLI's s3control client is the stubbed one; everything else is moto."""
    from ops.aws import Aws

    real = Aws.client
    monkeypatch.setattr(Aws, "client", lambda self, service: aws.control if service == "s3control"
                        else real(self, service))
    return aws


def test_replay_copy_with_batch_operations_from_an_inventory_submits_once(cli_aws, tmp_path):
    from click.testing import CliRunner

    from ops.cli import cli
    from ops.local.inventory import live_entries, write_report

    aws = cli_aws
    for i in range(3):
        aws.put(f"bronze/orders/dt=2025-01-0{i + 1}/p.jsonl", b"{}\n")
    aws.s3.create_bucket(Bucket="elt-local-inventory")
    url = write_report(aws.s3, source_bucket=aws.bronze, entries=live_entries(aws.s3, aws.bronze),
                       report_bucket="elt-local-inventory", taken=dt.datetime.now(dt.UTC), file_format="Parquet")
    args = ["replay", "copy", "--bucket", aws.bronze, "--from-inventory", url, "--by", "partition",
            "--start", "2025-01-01", "--end", "2025-01-03", "--engine", "batch-operations", "--dest-prefix",
            "bronze/replay/b1", "--manifest", f"s3://{OPS}/batch/manifests/m.csv", "--role-arn", ROLE, "--yes",
            "--checkpoint", str(tmp_path / "cp.json"), "--json"]
    aws.stub.add_response("create_job", {"JobId": JOB}, {**expected_job_any(), "ConfirmationRequired": False,
                                                         "Priority": 10})
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    plan = json.loads(first.stdout)
    assert plan["job"]["job_id"] == JOB and plan["objects"] == 2 and plan["inventory"]["stats"]["rows"] == 3
    assert "inventory s3://elt-local-inventory/" in first.stderr and "h old" in first.stderr
    assert read_manifest_rows(aws.s3, plan["manifest"]) == [
        (aws.bronze, "bronze/orders/dt=2025-01-01/p.jsonl"), (aws.bronze, "bronze/orders/dt=2025-01-02/p.jsonl")]
    # The first run finished: the same command is a new run, and the same plan sends the same token,
    # so S3 answers with the same job instead of creating a second one.
    aws.stub.add_response("create_job", {"JobId": JOB}, {**expected_job_any(), "ConfirmationRequired": False,
                                                         "Priority": 10,
                                                         "ClientRequestToken": plan["job"]["client_request_token"]})
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["job"]["client_request_token"] == plan["job"]["client_request_token"]


def test_a_job_an_earlier_run_submitted_is_not_submitted_again_nor_its_manifest_rewritten(aws):
    from ops.batch_ops import SubmittedJob, batch_copy

    key = "bronze/orders/dt=2025-01-01/huge.jsonl"
    etag = aws.put(key, b"{}\n")
    aws.s3.put_object(Bucket=OPS, Key="batch/manifests/m.csv", Body=b"the running job's manifest")
    before = aws.s3.head_object(Bucket=OPS, Key="batch/manifests/m.csv")["ETag"]
    earlier = SubmittedJob(job_id=JOB, account_id="123456789012", token="t", confirmation_required=True,
                           manifest=f"s3://{OPS}/batch/manifests/m.csv", report=f"s3://{OPS}/batch/reports/")
    objects = [obj(aws.bronze, "bronze/orders/dt=2025-01-01/a.jsonl"),
               ObjectInfo(bucket=aws.bronze, key=key, size=BATCH_COPY_LIMIT + 1, etag=etag, last_modified=T)]
    result = batch_copy(aws.s3, aws.control, objects=objects, bucket=aws.bronze, dest_prefix="bronze/replay/b1",
                        manifest_url=earlier.manifest, report_url=None, role_arn=ROLE, submitted=vars(earlier))
    assert (result.job.job_id, result.resubmitted, result.local.done) == (JOB, False, 1)  # no create_job stubbed
    assert aws.s3.head_object(Bucket=OPS, Key="batch/manifests/m.csv")["ETag"] == before


def test_the_batch_engine_needs_a_manifest_and_a_role(cli_aws):
    from click.testing import CliRunner

    from ops.cli import cli

    base = ["replay", "copy", "--bucket", cli_aws.bronze, "--since", "1h", "--engine", "batch-operations"]
    no_manifest = CliRunner().invoke(cli, base)
    assert no_manifest.exit_code == 2 and "needs --manifest s3://" in no_manifest.stderr
    no_role = CliRunner().invoke(cli, [*base, "--manifest", f"s3://{OPS}/batch/manifests/m.csv"])
    assert no_role.exit_code == 2 and "needs --role-arn" in no_role.stderr


def test_the_dry_run_plan_names_large_objects_and_the_cost(cli_aws):
    from click.testing import CliRunner

    from ops.cli import cli

    cli_aws.put("bronze/orders/dt=2025-01-01/p.jsonl", b"{}\n")
    result = CliRunner().invoke(cli, ["replay", "copy", "--bucket", cli_aws.bronze, "--start", "2025-01-01", "--end",
                                      "2025-01-02", "--by", "partition", "--engine", "batch-operations", "--manifest",
                                      f"s3://{OPS}/batch/manifests/m.csv", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would submit an S3 Batch Operations copy of 1 object(s), 3 B" in result.stdout
    assert "cost at list prices: $0.25 for the job (per job and per object) + $0.00 for the COPY" in result.stdout
    assert "Contents" not in cli_aws.s3.list_objects_v2(Bucket=OPS)


def test_batch_job_wait_exits_3_and_writes_the_report_when_copies_failed(cli_aws, tmp_path):
    from click.testing import CliRunner

    from ops.cli import cli

    put_completion_report(cli_aws, [
        f"{cli_aws.bronze},bronze/orders/dt%3D2025-01-01/a.jsonl,,succeeded,200,,Successful",
        f"{cli_aws.bronze},bronze/orders/dt%3D2025-01-01/b.jsonl,,failed,503,SlowDown,Please reduce your request rate"])
    params = {"AccountId": "123456789012", "JobId": JOB}
    cli_aws.stub.add_response("describe_job", describe("Active", total=2, ok=1), params)
    cli_aws.stub.add_response("describe_job", describe("Complete", total=2, ok=1, failed=1), params)
    result = CliRunner().invoke(cli, ["batch-job", "wait", JOB, "--account-id", "123456789012", "--interval", "1",
                                      "--report", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 3, result.output
    assert "failed bronze/orders/dt=2025-01-01/b.jsonl: 503 SlowDown Please reduce your request rate" in result.stdout
    assert "Active: 1/2 tasks, 0 failed" in result.stderr
    assert [json.loads(x)["result"] for x in (tmp_path / "r.jsonl").read_text().splitlines()] == ["ok", "failed"]
    bad = CliRunner().invoke(cli, ["batch-job", "status", "../x", "--account-id", "123456789012"])
    assert bad.exit_code == 2 and "is not an S3 Batch Operations job id" in bad.stderr


def test_a_completion_report_file_that_fails_its_md5_is_not_turned_into_a_report(aws):
    from ops.errors import OpsError

    put_completion_report(aws, [f"{aws.bronze},bronze/orders/dt%3D2025-01-01/a.jsonl,,succeeded,200,,Successful"])
    key = json.loads(aws.s3.get_object(Bucket=OPS, Key=f"batch/reports/job-{JOB}/manifest.json")["Body"].read())[
        "Results"][0]["Key"]
    aws.s3.put_object(Bucket=OPS, Key=key, Body=b"truncated")
    aws.stub.add_response("describe_job", describe("Complete", total=1, ok=1), {"AccountId": "123456789012", "JobId": JOB})
    with pytest.raises(OpsError, match="MD5 does not match the completion report's manifest"):
        job_status(aws.control, aws.s3, job_id=JOB, account_id="123456789012")


def test_batch_job_status_finds_the_account_from_sts_and_exits_0_while_the_job_runs(cli_aws):
    from click.testing import CliRunner

    from ops.cli import cli

    cli_aws.stub.add_response("describe_job", describe("Active", total=4, ok=1), {"AccountId": "123456789012",
                                                                                   "JobId": JOB})
    result = CliRunner().invoke(cli, ["batch-job", "status", JOB, "--json"])  # moto's STS says 123456789012
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert (status["status"], status["succeeded"], status["total"], status["replay"]) == ("Active", 1, 4, None)


def test_an_endpoint_without_s3_control_is_named_with_the_way_out():
    """The embedded AWS has no S3 Batch Operations: botocore sends S3 Control calls to
    <account>.<endpoint host>, which does not resolve; the error says so and names --engine local."""
    from botocore.config import Config

    from ops.batch_ops import job_status
    from ops.errors import OpsError

    control = boto3.client("s3control", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                           aws_access_key_id="testing", aws_secret_access_key="testing",
                           config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    with pytest.raises(OpsError) as caught:
        job_status(control, None, job_id="6a1c0f4e-0000-4000-8000-000000000000", account_id="123456789012")
    assert "has no S3 Batch Operations" in str(caught.value) and "--engine local" in str(caught.value)
