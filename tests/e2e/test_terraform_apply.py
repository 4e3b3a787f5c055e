"""Terraform plan and apply against the embedded AWS, then the pipeline on what Terraform created.

Runs where a terraform binary is on PATH and an AWS provider mirror exists (TF_PLUGIN_DIR, or one
of the usual plugin folders); elsewhere it is skipped with the reason. Two stacks are applied side
by side on one moto server (the provider's consistency waiters dominate, so in parallel the test
takes about one apply's time):

- "created": Terraform creates everything, queues included; an upload reaches silver and a poison
  object reaches the DLQ, through the functions, notification and mapping Terraform wired;
- "restricted": `eltops provision queue ... --out queue.auto.tfvars.json` first, then Terraform
  creates no queue and the pipeline runs on the pre-created one.

The repository's envs/dev is copied to a temporary folder and a test-only `*_override.tf` (local
backend, provider endpoints on 127.0.0.1) is written into the copy only. moto's gaps are patched in
tests/e2e/moto_gaps.py, and the local runtime's part is ops/local/attach.py; both say why.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest

from ops.build import build_all
from ops.gen_events import generate
from tests.conftest import wait_until
from tests.e2e import moto_gaps

ROOT = Path(__file__).resolve().parents[2]
TF_ROOT = ROOT / "infra" / "terraform"
REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
PLUGIN_CANDIDATES = ("/opt/tf-plugins", "~/.terraform.d/plugins", "~/.local/share/terraform/plugins",
                     "/usr/local/share/terraform/plugins", "/usr/share/terraform/plugins")
SERVICES = ("cloudwatch", "dynamodb", "iam", "lambda", "logs", "s3", "sqs", "sts")
OVERRIDE = """# Test-only: written by tests/e2e/test_terraform_apply.py into a temporary copy, never committed.
terraform {{
  backend "local" {{}}
}}

provider "aws" {{
  region                      = var.region
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true
  endpoints {{
{endpoints}
  }}
}}
"""


def plugin_dir() -> str | None:
    """The folder above registry.terraform.io that holds hashicorp/aws (the -plugin-dir layout)."""
    given = os.environ.get("TF_PLUGIN_DIR")
    for candidate in ([given] if given else []) + [os.path.expanduser(p) for p in PLUGIN_CANDIDATES]:
        if (Path(candidate) / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
            return candidate
    return None


@pytest.fixture(scope="module")
def terraform_tools():
    binary = shutil.which("terraform")
    if not binary:
        pytest.skip("terraform is not on PATH: the plan/apply test needs terraform >= 1.10 "
                    "(https://developer.hashicorp.com/terraform/install)")
    plugins = plugin_dir()
    if not plugins:
        pytest.skip("no AWS provider mirror: set TF_PLUGIN_DIR to the folder holding "
                    "registry.terraform.io/hashicorp/aws/<version>/<os_arch>/ (terraform init -plugin-dir reads it)")
    return binary, plugins


class Stack:
    """A temporary copy of infra/terraform whose envs/dev talks to the embedded AWS."""

    def __init__(self, *, binary: str, folder: Path, endpoint_url: str, variables: dict):
        self.binary = binary
        shutil.copytree(TF_ROOT / "modules", folder / "modules")
        shutil.copytree(TF_ROOT / "envs" / "dev", folder / "envs" / "dev",
                        ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", "tfplan", "*.auto.tfvars.json"))
        self.dir = folder / "envs" / "dev"
        endpoints = "\n".join(f'    {s:<10} = "{endpoint_url}"' for s in SERVICES)
        (self.dir / "zz_embedded_aws_override.tf").write_text(OVERRIDE.format(endpoints=endpoints))
        (self.dir / "embedded-aws.tfvars.json").write_text(json.dumps(variables, indent=2))
        rc = folder / "terraformrc"
        rc.write_text("")  # no user CLI configuration (mirrors, credentials) leaks in
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
        self.env.update(TF_CLI_CONFIG_FILE=str(rc), TF_IN_AUTOMATION="1", TF_INPUT="0",
                        CHECKPOINT_DISABLE="1", **{k.upper(): v for k, v in CREDENTIALS.items()})
        self.var_files = ["-var-file=dev.tfvars", "-var-file=embedded-aws.tfvars.json"]

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([self.binary, *args], cwd=self.dir, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def run(self, *args: str, timeout: float = 300) -> str:
        proc = self.start(*args)
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"terraform {' '.join(args)} failed:\n{out[-6000:]}"
        return out

    def plan_args(self) -> list[str]:
        return ["plan", "-json", *self.var_files, "-out=tfplan"]

    def outputs(self) -> dict:
        return {k: v["value"] for k, v in json.loads(self.run("output", "-json")).items()}


def each(stacks: dict[str, Stack], *args: str, timeout: float = 400) -> dict[str, str]:
    """Run one terraform command in every stack at once; their outputs by stack name."""
    procs = {name: stack.start(*args) for name, stack in stacks.items()}
    outputs, failures = {}, []
    for name, proc in procs.items():
        outputs[name], _ = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            failures.append(f"{name}: terraform {' '.join(args)} failed:\n{outputs[name][-6000:]}")
    if os.environ.get("ELT_TF_TIMINGS"):
        for name, out in outputs.items():
            print(f"{name} {args[0]}:", *[line for line in out.splitlines() if "complete after" in line], sep="\n  ")
    assert not failures, "\n".join(failures)
    return outputs


def planned_types(plan_json_lines: str) -> set[str]:
    """Resource types `terraform plan -json` says it will create."""
    messages = [json.loads(line) for line in plan_json_lines.splitlines() if line.startswith("{")]
    return {m["change"]["resource"]["resource_type"] for m in messages
            if m.get("type") == "planned_change" and m["change"]["action"] == "create"}



@pytest.fixture(scope="module")
def embedded_aws():
    from moto.server import ThreadedMotoServer

    with moto_gaps.patched():
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
        try:
            yield endpoint
        finally:
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
            server.stop()


def client(endpoint: str, service: str):
    return boto3.session.Session().client(service, endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)


def stand_in_pandas_layer(endpoint: str) -> str:
    """moto has no AWS-owned layers: publish one with the SDK for pandas layer's name (moto_gaps.py)."""
    content = io.BytesIO()
    with zipfile.ZipFile(content, "w") as zf:
        zf.writestr("python/README.txt", "stand-in for AWSSDKPandas: pyarrow comes from the test's environment\n")
    return client(endpoint, "lambda").publish_layer_version(
        LayerName="AWSSDKPandas-Python312", Content={"ZipFile": content.getvalue()},
        CompatibleRuntimes=["python3.12"])["LayerVersionArn"]


def eltops(endpoint: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ELT_"))}
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION=REGION, AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing")
    return subprocess.run([sys.executable, "-m", "ops", *args], capture_output=True, text=True, env=env, timeout=120)


def events(type_: str, n: int, seed: int) -> bytes:
    return ("\n".join(text for _, text in generate(type_=type_, count=n, seed=seed)) + "\n").encode()


def depth(sqs, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def run_pipeline(endpoint: str, environment: dict, *, poison: bool) -> None:
    from ops.local.attach import AttachedRuntime

    s3, sqs = client(endpoint, "s3"), client(endpoint, "sqs")
    bronze, silver = environment["ELT_BRONZE_BUCKET"], environment["ELT_SILVER_BUCKET"]
    with AttachedRuntime(endpoint_url=endpoint, region=REGION, environment=environment) as runtime:
        assert runtime.wiring.transform.environment["ELT_SILVER_BUCKET"] == silver
        assert runtime.wiring.transform.environment["ELT_LEDGER_TABLE"] == environment["ELT_LEDGER_TABLE"]
        s3.put_object(Bucket=bronze, Key="bronze/orders/dt=2025-03-04/from-terraform.jsonl",
                      Body=events("orders", 20, seed=3))
        s3.put_object(Bucket=bronze, Key="elsewhere/orders/dt=2025-03-04/ignored.jsonl", Body=events("orders", 2, 4))
        if poison:
            s3.put_object(Bucket=bronze, Key="bronze/orders/dt=2025-03-04/poison.jsonl.gz",
                          Body=b"\x1f\x8b\x08\x00 not gzip at all")

        def silver_keys():
            return [o["Key"] for o in s3.list_objects_v2(Bucket=silver, Prefix="silver/").get("Contents", [])]

        assert wait_until(silver_keys, timeout=60, what="the upload in silver") == [
            "silver/orders/dt=2025-03-04/from-terraform.parquet"]
        if poison:
            wait_until(lambda: depth(sqs, environment["ELT_DLQ_URL"]) >= 1, timeout=90, what="the poison in the DLQ")
            message = sqs.receive_message(QueueUrl=environment["ELT_DLQ_URL"], VisibilityTimeout=0)["Messages"][0]
            assert json.loads(message["Body"])["key"] == "bronze/orders/dt=2025-03-04/poison.jsonl.gz"
        ledger = client(endpoint, "dynamodb").get_item(TableName=environment["ELT_LEDGER_TABLE"], Key={
            "pk": {"S": f"s3://{bronze}/bronze/orders/dt=2025-03-04/from-terraform.jsonl"},
            "etag": {"S": s3.head_object(Bucket=bronze, Key="bronze/orders/dt=2025-03-04/from-terraform.jsonl")[
                "ETag"].strip('"')}})
        assert ledger["Item"]["status"]["S"] == "DONE"
        assert runtime.stats.transform_invocations >= 1 and runtime.stats.ingest_invocations >= 1


BOUNDARY = "arn:aws:iam::123456789012:policy/platform-boundary"


def check_what_apply_made(endpoint: str, created: dict, restricted: dict) -> None:
    """The settings of the review list, read back from the resources (apply-time checks)."""
    s3, lam, sqs, iam = (client(endpoint, s) for s in ("s3", "lambda", "sqs", "iam"))
    # Bucket names are unique per account and region unless given.
    assert created["bronze_bucket"] == f"elt-tf-created-bronze-123456789012-{REGION}"
    # Bronze is versioned and expires noncurrent versions; silver was never versioned (no Suspended).
    assert s3.get_bucket_versioning(Bucket=created["bronze_bucket"]).get("Status") == "Enabled"
    assert "Status" not in s3.get_bucket_versioning(Bucket=created["silver_bucket"])
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=created["bronze_bucket"])["Rules"]}
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert rules["expire-replay-copies"]["Expiration"]["Days"] == 15
    assert "expire-noncurrent-versions" not in {
        r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket=created["silver_bucket"])["Rules"]}
    # /tmp sized to the largest object transform accepts (4 GiB + 64 MiB quarantine + 256 MB); ingest keeps 512.
    transform = lam.get_function_configuration(FunctionName=created["transform_function"])
    assert transform["EphemeralStorage"]["Size"] == 4096 + 64 + 256
    assert transform["Environment"]["Variables"]["ELT_MIN_SECONDS_TO_START"] == "0"
    assert lam.get_function_configuration(FunctionName=created["ingest_function"])["EphemeralStorage"]["Size"] == 512
    # Reserved concurrency only where asked for.
    assert lam.get_function_concurrency(FunctionName=created["transform_function"])["ReservedConcurrentExecutions"] == 5
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=created["ingest_function"])
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(
        FunctionName=restricted["transform_function"])
    # The permissions boundary from envs/dev reaches every role.
    role = transform["Role"].rsplit("/", 1)[1]
    assert iam.get_role(RoleName=role)["Role"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == BOUNDARY
    # The queue Terraform made: visibility 6 x 1 s + 0 s window, retention 13 days.
    attrs = sqs.get_queue_attributes(QueueUrl=created["queue_url"], AttributeNames=["All"])["Attributes"]
    assert (attrs["VisibilityTimeout"], attrs["MessageRetentionPeriod"]) == ("6", "1123200")


def test_terraform_plans_applies_runs_the_pipeline_and_destroys(terraform_tools, embedded_aws, tmp_path):
    binary, plugins = terraform_tools
    endpoint = embedded_aws
    fmt = subprocess.run([binary, "fmt", "-check", "-recursive", "-diff", str(TF_ROOT)], capture_output=True,
                         text=True, timeout=120)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr

    dist = tmp_path / "dist"
    build_all(dist)
    common = {
        "region": REGION, "dist_dir": str(dist), "aws_sdk_pandas_layer_arn": stand_in_pandas_layer(endpoint),
        "force_destroy": True, "ledger_deletion_protection": False,
        # Short timeouts so that a poison object reaches the DLQ in seconds: visibility timeout
        # 6 x 1 s, two receives; with 1 s there is no room for a start reserve.
        "transform_timeout_seconds": 1, "transform_batching_window_seconds": 0, "max_receive_count": 2,
        "transform_min_seconds_to_start": 0,
    }
    # The created stack also makes the optional S3 Batch Operations role (replay copy at scale).
    created = Stack(binary=binary, folder=tmp_path / "created", endpoint_url=endpoint,
                    variables={**common, "name_prefix": "elt-tf-created", "batch_operations_role_enabled": True,
                               "permissions_boundary_arn": BOUNDARY, "transform_reserved_concurrency": 5,
                               "transform_max_concurrency": 2})
    restricted = Stack(binary=binary, folder=tmp_path / "restricted", endpoint_url=endpoint,
                       variables={**common, "name_prefix": "elt-tf-restricted"})

    # The restricted account's path: the platform engineer pre-creates the queues.
    tfvars = restricted.dir / "queue.auto.tfvars.json"
    done = eltops(endpoint, "provision", "queue", "--name", "elt-tf-restricted-events", "--with-dlq",
                  "--max-receive-count", "2", "--consumer-timeout", "1", "--batching-window", "0",
                  "--out", str(tfvars), "--json")
    assert done.returncode == 0, done.stderr
    provisioned = json.loads(tfvars.read_text())
    ingest_tfvars = restricted.dir / "ingest-queue.auto.tfvars.json"
    done = eltops(endpoint, "provision", "queue", "--for", "ingest", "--name", "elt-tf-restricted-ingest-events",
                  "--with-dlq", "--out", str(ingest_tfvars), "--json")  # 6 x ingest's 30 s by default
    assert done.returncode == 0, done.stderr
    provisioned.update(json.loads(ingest_tfvars.read_text()))

    stacks = {"created": created, "restricted": restricted}
    each(stacks, "init", "-no-color", f"-plugin-dir={plugins}")
    each(stacks, "validate", "-no-color")
    plans = each(stacks, *created.plan_args())
    assert {"aws_sqs_queue", "aws_sqs_queue_redrive_allow_policy"} <= planned_types(plans["created"])
    assert not {t for t in planned_types(plans["restricted"]) if t.startswith("aws_sqs_")}
    assert "aws_lambda_event_source_mapping" in planned_types(plans["restricted"])

    each(stacks, "apply", "-no-color", "-auto-approve", "tfplan")
    managed = restricted.run("state", "list").split()
    assert managed and not [r for r in managed if ".aws_sqs_" in r], managed

    created_outputs, restricted_outputs = created.outputs(), restricted.outputs()
    check_what_apply_made(endpoint, created_outputs, restricted_outputs)
    created_env = created_outputs["eltops_environment"]
    restricted_env = restricted_outputs["eltops_environment"]
    assert created_outputs["batch_operations_role_arn"].endswith(":role/elt-tf-created-batch-operations")
    assert restricted_outputs.get("batch_operations_role_arn") is None
    iam = client(endpoint, "iam")
    policy = iam.get_role_policy(RoleName="elt-tf-created-batch-operations", PolicyName="replay-copy")["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    writes = {r for st in policy["Statement"] if "s3:PutObject" in st["Action"]
              for r in ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"])}
    assert writes == {f"arn:aws:s3:::{created_env['ELT_BRONZE_BUCKET']}/bronze/replay/*",
                      f"arn:aws:s3:::{created_env['ELT_BRONZE_BUCKET']}/batch/reports/*"}
    assert restricted_env["ELT_QUEUE_URL"] == provisioned["existing_queue_url"]
    assert restricted_env["ELT_DLQ_URL"] == provisioned["existing_dlq_url"]
    assert restricted_env["ELT_INGEST_QUEUE_URL"] == provisioned["existing_ingest_queue_url"]
    assert restricted_env["ELT_INGEST_DLQ_URL"] == provisioned["existing_ingest_dlq_url"]
    run_pipeline(endpoint, created_env, poison=True)
    run_pipeline(endpoint, restricted_env, poison=False)

    each(stacks, "destroy", "-no-color", "-auto-approve", "-refresh=false", *created.var_files)
    buckets = {b["Name"] for b in client(endpoint, "s3").list_buckets()["Buckets"]}
    assert not {b for b in buckets if b.startswith("elt-tf-")}, buckets
    assert client(endpoint, "lambda").list_functions()["Functions"] == []
    assert client(endpoint, "dynamodb").list_tables()["TableNames"] == []
    queues = client(endpoint, "sqs").list_queues().get("QueueUrls", [])
    assert sorted(q.rsplit("/", 1)[1] for q in queues) == [
        "elt-tf-restricted-events", "elt-tf-restricted-events-dlq", "elt-tf-restricted-ingest-events",
        "elt-tf-restricted-ingest-events-dlq"]


def test_terraform_test_runs_the_plan_time_checks(terraform_tools, tmp_path):
    """envs/dev/tests/*.tftest.hcl with a mocked provider: each validation refuses its bad value."""
    binary, plugins = terraform_tools
    dist = tmp_path / "dist"
    build_all(dist)
    stack = Stack(binary=binary, folder=tmp_path / "tf", endpoint_url="http://127.0.0.1:9", variables={})
    (stack.dir / "zz_embedded_aws_override.tf").unlink()  # mocked provider: no endpoint, no backend
    stack.run("init", "-no-color", "-backend=false", f"-plugin-dir={plugins}")
    out = stack.run("test", "-no-color", "-var-file=dev.tfvars", f"-var=dist_dir={dist}", timeout=400)
    assert "0 failed" in out and " passed" in out, out
