import json
import subprocess

import boto3

from ops.gen_events import write_events
from tests.conftest import wait_until
from tests.e2e.conftest import ELTOPS, clean_env


def test_eltops_demo_json_reports_exact_row_accounting():
    done = subprocess.run([*ELTOPS, "demo", "--json"], capture_output=True, text=True, timeout=180, env=clean_env())
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["rows_silver"] + report["rows_quarantined"] == report["rows_generated"]
    assert report["rows_silver"] == report["rows_good_generated"]
    assert report["poison_in_dlq"] and report["poison_status"] == "FAILED"
    assert report["duplicate_left_silver_unchanged"]
    assert report["objects"] >= 9 and report["rows_quarantined"] > 0
    assert report["replays_left_silver_unchanged"] and report["rows_silver_after_replays"] == report["rows_silver"]
    assert report["silver_objects_rewritten_by_replays"] == report["replay_copy_objects"] + report["replay_sqs_objects"]


def test_local_up_prints_exports_then_serves_any_clients_upload_until_sigterm(local_aws, tmp_path):
    assert local_aws.lines[-1] == "# ready"
    # The --help recipe: redirect the output to a file, then source it.
    (tmp_path / "elt.env").write_text("\n".join(local_aws.lines) + "\n")
    sourced = subprocess.run(["bash", "-c", "set -e; source elt.env; echo $ELT_BRONZE_BUCKET"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert sourced.returncode == 0 and sourced.stdout.strip() == local_aws.env["ELT_BRONZE_BUCKET"], sourced.stderr
    assert local_aws.lines[0].startswith("export AWS_ENDPOINT_URL=http://127.0.0.1:")
    env = local_aws.env
    for name in ("AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "ELT_BRONZE_BUCKET",
                 "ELT_SILVER_BUCKET", "ELT_QUEUE_URL", "ELT_DLQ_URL", "ELT_LEDGER_TABLE"):
        assert env.get(name), name
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    gen = write_events(str(tmp_path / "o.jsonl"), type_="orders", count=120, seed=4, bad_ratio=0.05)
    s3.upload_file(gen.path, env["ELT_BRONZE_BUCKET"], "bronze/orders/dt=2025-03-04/from client.jsonl")

    def silver_listing():
        listed = s3.list_objects_v2(Bucket=env["ELT_SILVER_BUCKET"], Prefix="silver/orders/dt=2025-03-04/")
        return listed if listed.get("KeyCount") else None

    listed = wait_until(silver_listing, what="the silver object")
    assert [o["Key"] for o in listed["Contents"]] == ["silver/orders/dt=2025-03-04/from client.parquet"]
    assert local_aws.stop() == 0


def test_local_up_listens_on_loopback_only(local_aws):
    assert local_aws.env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    port = int(local_aws.env["AWS_ENDPOINT_URL"].rsplit(":", 1)[1])
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True)
    if out.returncode == 0:  # iproute2 is there: no wildcard listener on our port
        listeners = [line.split()[3] for line in out.stdout.splitlines() if line.split()[3].endswith(f":{port}")]
        assert listeners == [f"127.0.0.1:{port}"]
