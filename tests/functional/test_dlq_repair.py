"""The on-call repair story on moto through the local runtime: poison -> DLQ -> inspect -> status ->
fix -> redrive (stale message superseded) -> purge -> identical re-upload re-ingests."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ops.cli import cli
from ops.local.runtime import EmbeddedAws
from tests.conftest import wait_until

POISON = "bronze/orders/dt=2025-01-05/batch-7.jsonl"


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    log = tmp_path_factory.mktemp("lambda") / "lambda.log"
    with EmbeddedAws(log_path=str(log)) as aws:
        yield aws


def eltops(local, *args, input=None):
    env = {k: v for k, v in local.environ().items()}
    result = CliRunner(env=env).invoke(cli, list(args), input=input)
    return result


def test_the_repair_story(local, tmp_path):
    s3 = local.client("s3")
    bronze = local.names.bronze_bucket
    s3.put_object(Bucket=bronze, Key=POISON, Body=b"this is not json\nneither is this\n")
    wait_until(lambda: local.queue_depth(local.provisioned.dlq_url) == 1, timeout=30, what="the poison in the DLQ")

    # inspect: the error, grouped; the message stays in the DLQ
    out = tmp_path / "dlq.jsonl"
    result = eltops(local, "dlq", "inspect", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["messages"] == 1
    group = report["groups"][0]
    assert (group["type"], group["dt"], group["origin"]) == ("orders", "2025-01-05", "s3-event")
    assert group["last_error"].startswith("UnreadableObject: no line is JSON")
    exported = json.loads(out.read_text().splitlines()[0])
    assert json.loads(exported["body"])["key"] == POISON and exported["ledger"]["status"] == "FAILED"
    assert local.queue_depth(local.provisioned.dlq_url) == 1

    # status: FAILED with the error, no silver object
    result = eltops(local, "status", f"s3://{bronze}/{POISON}", "--json")
    status = json.loads(result.stdout)
    assert status["versions"][0]["status"] == "FAILED" and "no line is JSON" in status["versions"][0]["last_error"]
    assert status["silver_exists"] is False
    old_etag = status["versions"][0]["etag"]

    # the producer fixes the object; then redrive empties the DLQ; the stale message is superseded
    from ops.gen_events import generate

    fixed = ("\n".join(t for _, t in generate(type_="orders", count=40, seed=9)) + "\n").encode()
    s3.put_object(Bucket=bronze, Key=POISON, Body=fixed)
    result = eltops(local, "dlq", "redrive", "--yes", "--json")
    assert result.exit_code == 0, result.output + result.stderr
    assert json.loads(result.stdout)["moved"] == 1
    assert "using manual mode" in result.stderr  # moto has no move-task APIs
    local.wait_idle(timeout=30)
    assert local.queue_depth(local.provisioned.dlq_url) == 0
    status = json.loads(eltops(local, "status", f"s3://{bronze}/{POISON}", "--json").stdout)
    by_etag = {v["etag"]: v for v in status["versions"]}
    assert (by_etag[old_etag]["status"], by_etag[old_etag]["outcome"]) == ("DONE", "superseded")
    current = by_etag[status["current_etag"]]
    assert (current["status"], current["rows"]) == ("DONE", 40) and status["silver_exists"] is True

    # purge, then an identical re-upload is ingested again (without the purge it is a duplicate)
    s3.put_object(Bucket=bronze, Key=POISON, Body=fixed)
    local.wait_idle(timeout=20)
    assert json.loads(eltops(local, "status", f"s3://{bronze}/{POISON}", "--json").stdout)["versions"][0][
        "attempts"] == 1
    result = eltops(local, "ledger", "purge", "--prefix", POISON, "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["deleted"] == 2
    assert json.loads(eltops(local, "status", f"s3://{bronze}/{POISON}", "--json").stdout)["versions"] == []
    s3.put_object(Bucket=bronze, Key=POISON, Body=fixed)
    wait_until(lambda: json.loads(eltops(local, "status", f"s3://{bronze}/{POISON}", "--json").stdout)["versions"],
               what="the re-upload to be claimed")
    local.wait_idle(timeout=20)
    again = json.loads(eltops(local, "status", f"s3://{bronze}/{POISON}", "--json").stdout)["versions"]
    assert [(v["status"], v["rows"]) for v in again] == [("DONE", 40)]


def test_destructive_commands_refuse_without_a_terminal_or_yes(local):
    result = eltops(local, "dlq", "redrive")
    assert result.exit_code == 2 and "pass --yes" in result.stderr
    result = eltops(local, "ledger", "purge")
    assert result.exit_code == 2 and "--all if you mean it" in result.stderr
