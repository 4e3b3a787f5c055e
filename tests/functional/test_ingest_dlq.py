"""Nothing is lost when ingest cannot finish: S3 -> ingest queue -> ingest (event source mapping,
partial batch responses) -> after maxReceiveCount receives the S3 event waits in the ingest DLQ;
`eltops dlq inspect` says what it is, `eltops dlq redrive` (runbooks/ingest-dlq.md) puts it back on
the ingest queue, and silver then holds the object. Same topology as the Terraform."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ops.cli import cli
from ops.gen_events import generate
from ops.local.faults import FaultInjector
from ops.local.resources import LocalSettings
from ops.local.runtime import EmbeddedAws
from tests.conftest import wait_until

KEY = "bronze/orders/dt=2025-03-01/during-the-outage.jsonl"


def eltops(aws, *args):
    return CliRunner(env=dict(aws.environ())).invoke(cli, list(args))


def test_an_s3_event_ingest_gives_up_on_waits_in_the_ingest_dlq_and_redrive_brings_it_to_silver(tmp_path):
    # Every ingest invocation dies after its claim (a bad deploy; an SQS outage ends the same way, only
    # slower, as botocore retries each send first): the event source mapping retries, then the DLQ.
    faults = FaultInjector(seed=1).kill_at("after-claim", rate=1.0)
    settings = LocalSettings(ingest_max_receive_count=2, ingest_visibility_timeout=1)
    with faults, EmbeddedAws(settings=settings, log_path=str(tmp_path / "lambda.log"),
                             lambda_client_hook=faults.attach) as aws:
        s3 = aws.client("s3")
        body = ("\n".join(t for _, t in generate(type_="orders", count=25, seed=3)) + "\n").encode()
        s3.put_object(Bucket=aws.names.bronze_bucket, Key=KEY, Body=body)
        ingest_dlq = aws.provisioned.ingest_dlq_url
        wait_until(lambda: aws.queue_depth(ingest_dlq) == 1, timeout=90, what="the S3 event in the ingest DLQ")
        assert faults.injected["kill.after-claim"] >= 1
        assert aws.queue_depth(aws.provisioned.ingest_queue_url) == 0
        assert "Contents" not in s3.list_objects_v2(Bucket=aws.names.silver_bucket, Prefix="silver/")

        # inspect: an S3 event with the object's type, day and key, and why (nothing in the ledger)
        result = eltops(aws, "dlq", "inspect", "--queue-url", ingest_dlq, "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert (report["messages"], report["s3_events"], report["invalid_bodies"]) == (1, 1, 0)
        group = report["groups"][0]
        assert (group["type"], group["dt"], group["origin"], group["sample_keys"]) == (
            "orders", "2025-03-01", "s3-event", [KEY])
        assert "ingest could not finish" in group["last_error"]
        assert aws.queue_depth(ingest_dlq) == 1  # inspect consumed nothing

        # health sees it too (ELT_INGEST_DLQ_URL) and names the ingest DLQ's runbook
        result = eltops(aws, "health", "--json")
        assert result.exit_code == 4, result.output
        checks = {(c["name"], c["subject"]): c for c in json.loads(result.stdout)["checks"]}
        ingest_check = checks[("dlq", "elt-local-ingest-events-dlq")]
        assert (ingest_check["ok"], ingest_check["value"], ingest_check["runbook"]) == (
            False, 1, "runbooks/ingest-dlq.md")
        assert checks[("dlq", "elt-local-events-dlq")]["ok"] is True

        # the outage ends; the runbook's command moves the event back to the ingest queue (the
        # DLQ's source queue, although ELT_QUEUE_URL names the events queue)
        faults.enabled = False
        result = eltops(aws, "dlq", "redrive", "--queue-url", ingest_dlq, "--yes", "--json")
        assert result.exit_code == 0, result.output
        moved = json.loads(result.stdout)
        assert moved["moved"] == 1 and moved["target"] == aws.provisioned.ingest_queue_url
        silver = "silver/orders/dt=2025-03-01/during-the-outage.parquet"
        wait_until(lambda: s3.list_objects_v2(Bucket=aws.names.silver_bucket, Prefix=silver).get("KeyCount"),
                   timeout=60, what="the object in silver")
        assert aws.queue_depth(ingest_dlq) == 0 and aws.queue_depth(aws.provisioned.dlq_url) == 0
        result = eltops(aws, "status", f"s3://{aws.names.bronze_bucket}/{KEY}", "--json")
        assert json.loads(result.stdout)["versions"][0]["status"] == "DONE"
