"""eltops commands that read Parquet exit cleanly, every time.

pyarrow reading Parquet through a Python file object can abort the interpreter at exit
("terminate called without an active exception", exit 134, about 1 run in 20 here; apache/arrow
#34314, #50482). eltops reads Parquet from paths or buffers instead; a command that reads a Parquet
inventory report runs 20 times in a row, each in a fresh interpreter, and must exit 0 each time."""

import datetime as dt
import json
import subprocess

import boto3

from ops.local.inventory import live_entries, write_report
from tests.e2e.conftest import ELTOPS, clean_env


def test_a_command_reading_a_parquet_inventory_exits_cleanly_20_times_in_a_row(local_aws):
    env = clean_env(**local_aws.env)
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    bronze = env["ELT_BRONZE_BUCKET"]
    for n in range(30):
        s3.put_object(Bucket=bronze, Key=f"bronze/orders/dt=2025-01-01/part-{n:03}.jsonl", Body=b"{}\n")
    url = write_report(s3, source_bucket=bronze, entries=live_entries(s3, bronze, "bronze/"), report_bucket=bronze,
                       prefix="inventory", file_format="Parquet", rows_per_file=10, batch_rows=5,
                       taken=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    command = [*ELTOPS, "ls", "--bucket", bronze, "--prefix", "bronze/orders/", "--from-inventory", url,
               "--since", "1d", "--json"]
    outcomes = []
    for _ in range(20):
        run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        outcomes.append((run.returncode, "terminate called" in run.stderr))
        assert run.returncode != 0 or json.loads(run.stdout)["objects"] == 30, run.stdout[-500:]
    assert outcomes == [(0, False)] * 20
