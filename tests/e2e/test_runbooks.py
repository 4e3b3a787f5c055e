"""Runbooks are tested: every `console` block runs, in order, against the embedded AWS that
`eltops local up` serves, with the ELT_* values it exports; exit codes and effects are checked."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import boto3
import click
import pytest

from ops.cli import cli
from ops.gen_events import generate
from tests.conftest import wait_until
from tests.e2e.conftest import LocalAws, clean_env

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
EXIT = re.compile(r"\s+#\s*exit\s+(\d+)\s*$")
NOT_RUN = re.compile(r"#\s*not run\b")


def console_commands(path: Path) -> list[list[tuple[str, int, bool]]]:
    """Blocks of (command, expected exit code, run it?) from a runbook's ```console blocks."""
    blocks = []
    for block in re.findall(r"```console\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
        commands = []
        for line in block.splitlines():
            if not line.startswith("$ "):
                continue  # sample output
            command = line[2:]
            match = EXIT.search(command)
            expected = int(match.group(1)) if match else 0
            run = not NOT_RUN.search(command)
            commands.append((EXIT.sub("", command), expected, run))
        blocks.append(commands)
    return blocks


def all_commands() -> list[tuple[str, str]]:
    return [(p.name, c) for p in sorted(RUNBOOKS.glob("*.md")) for block in console_commands(p) for c, _, _ in block]


# --- the environment ---------------------------------------------------------------------------------
class Env:
    def __init__(self, local: LocalAws, workdir: Path):
        self.local, self.workdir = local, workdir
        self.vars = local.env
        kw = dict(endpoint_url=self.vars["AWS_ENDPOINT_URL"], region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
        self.s3, self.sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
        self.bronze, self.silver = self.vars["ELT_BRONZE_BUCKET"], self.vars["ELT_SILVER_BUCKET"]

    def depth(self, url: str) -> int:
        a = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])

    def wait_idle(self, timeout: float = 60.0) -> None:
        quiet = [0]

        def settled() -> bool:  # both queues empty on three polls in a row
            busy = self.depth(self.vars["ELT_INGEST_QUEUE_URL"]) + self.depth(self.vars["ELT_QUEUE_URL"])
            quiet[0] = 0 if busy else quiet[0] + 1
            return quiet[0] >= 3

        wait_until(settled, timeout=timeout, what="the pipeline to go idle", interval=0.3)

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.bronze, Key=key, Body=body)

    def events(self, type_: str, n: int = 30, seed: int = 1, bad: float = 0.0) -> bytes:
        return ("\n".join(t for _, t in generate(type_=type_, count=n, seed=seed, bad_ratio=bad)) + "\n").encode()

    def silver_objects(self, prefix: str = "silver/") -> dict[str, str]:
        """Key -> ETag: a rewrite changes the ETag (new _ingested_at), whatever the clock says."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.silver, Prefix=prefix)
        return {o["Key"]: o["ETag"] for p in pages for o in p.get("Contents", [])}

    def status(self, key: str) -> dict:
        return json.loads(self.eltops("status", f"s3://{self.bronze}/{key}", "--json").stdout)

    def eltops(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ops", *args], capture_output=True, text=True,
                              env=self.shell_env(), cwd=self.workdir, timeout=120)

    def shell_env(self) -> dict[str, str]:
        bin_dir = os.path.dirname(sys.executable)
        return clean_env(**self.vars, PATH=f"{bin_dir}:{os.environ.get('PATH', '')}",
                         ELT_STATE_DIR=str(self.workdir / "state"))

    def run_runbook(self, name: str) -> list[subprocess.CompletedProcess]:
        done = []
        for block in console_commands(RUNBOOKS / name):
            self.wait_idle()
            for command, expected, run in block:
                if not run:
                    continue
                result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                                        env=self.shell_env(), cwd=self.workdir, timeout=180)
                assert result.returncode == expected, (
                    f"{name}: `{command}` exited {result.returncode}, expected {expected}\n{result.stdout}\n{result.stderr}")
                done.append(result)
        self.wait_idle()
        return done


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    work = tmp_path_factory.mktemp("runbooks")
    local = LocalAws(work)
    try:
        yield Env(local, work)
    finally:
        local.stop()


# --- one test per runbook: set-up, run every command, check the effect --------------------------------------
def ledger_client(env):
    return boto3.client("dynamodb", endpoint_url=env.vars["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def plant_lapsed_claim(env, ddb, key: str) -> None:
    """The object's ingest died holding its claim: a CLAIMED item past its lease, no silver."""
    import time

    table = env.vars["ELT_LEDGER_TABLE"]
    item = ddb.query(TableName=table, KeyConditionExpression="pk = :pk",
                     ExpressionAttributeValues={":pk": {"S": f"s3://{env.bronze}/{key}"}})["Items"][0]
    item.update(status={"S": "CLAIMED"}, lease_until={"N": str(int(time.time() * 1000) - 1000)},
                claimed_at={"S": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    ddb.put_item(TableName=table, Item=item)


def test_pipeline_health(env):  # first: it expects the clean pipeline the other runbooks start from
    prefix = "bronze/shipments/dt=2025-04-05/"
    for name in "ab":
        env.put(f"{prefix}{name}.jsonl", env.events("shipments", seed=ord(name)))
    env.wait_idle()
    env.s3.delete_object(Bucket=env.silver, Key="silver/shipments/dt=2025-04-05/b.parquet")
    plant_lapsed_claim(env, ledger_client(env), f"{prefix}b.jsonl")
    results = env.run_runbook("pipeline-health.md")
    assert "FAIL  stuck-claims" in results[0].stdout and "find-and-fill-gaps.md" in results[0].stdout
    checks = {(c["name"], c["subject"]): c for c in json.loads((env.workdir / "health.json").read_text())["checks"]}
    assert [k for k, c in checks.items() if not c["ok"]] == [("stuck-claims", "ledger")]
    assert checks[("stuck-claims", "ledger")]["value"] == 1
    assert "CLAIMED" in results[2].stdout and f"{prefix}b.jsonl" in results[2].stdout
    assert results[4].stdout.startswith("HEALTHY")
    assert "no undeclared fields" in results[5].stdout


def test_find_and_fill_gaps(env):
    prefix = "bronze/orders/dt=2025-04-01/"
    for name in "abcd":
        env.put(f"{prefix}{name}.jsonl", env.events("orders", seed=ord(name)))
    env.wait_idle()
    ddb, table = ledger_client(env), env.vars["ELT_LEDGER_TABLE"]
    for name in "abc":  # silver lost for three objects ...
        env.s3.delete_object(Bucket=env.silver, Key=f"silver/orders/dt=2025-04-01/{name}.parquet")
    b = ddb.query(TableName=table, KeyConditionExpression="pk = :pk",  # ... b's event never arrived (no item),
                  ExpressionAttributeValues={":pk": {"S": f"s3://{env.bronze}/{prefix}b.jsonl"}})["Items"][0]
    ddb.delete_item(TableName=table, Key={"pk": b["pk"], "etag": b["etag"]})
    plant_lapsed_claim(env, ddb, f"{prefix}c.jsonl")  # ... and c's ingest died holding the claim
    env.run_runbook("find-and-fill-gaps.md")
    gaps = [json.loads(x) for x in (env.workdir / "gaps.jsonl").read_text().splitlines()]
    assert sorted((g["key"].rsplit("/", 1)[1], g["category"]) for g in gaps) == [
        ("a.jsonl", "silver-missing"), ("b.jsonl", "never-ingested"), ("c.jsonl", "claim-expired")]
    report = [json.loads(x) for x in (env.workdir / "fill-gaps.jsonl").read_text().splitlines()]
    assert len(report) == 3 and {r["result"] for r in report} == {"ok"}
    assert set(env.silver_objects("silver/orders/dt=2025-04-01/")) == {
        f"silver/orders/dt=2025-04-01/{n}.parquet" for n in "abcd"}


def test_replay_window_copy(env):
    for type_ in ("orders", "shipments"):
        for day in ("2025-02-01", "2025-02-02"):
            env.put(f"bronze/{type_}/dt={day}/part-0.jsonl", env.events(type_, seed=hash(day) & 0xFF))
    env.wait_idle()
    before = env.silver_objects()
    env.run_runbook("replay-window-copy.md")
    after = env.silver_objects()
    assert set(after) == set(before)
    assert sum(after[k] != before[k] for k in before) == 4  # the four objects were rewritten
    report = [json.loads(x) for x in (env.workdir / "replay-copy.jsonl").read_text().splitlines()]
    assert len(report) == 4 and {r["result"] for r in report} == {"ok"}


def test_replay_window_sqs(env):
    key = "bronze/shipments/dt=2025-02-05/part-0.jsonl"
    env.put(key, env.events("shipments", seed=5))
    env.wait_idle()
    env.run_runbook("replay-window-sqs.md")
    assert env.status(key)["versions"][0]["attempts"] == 2


def test_dlq_triage_and_redrive(env):
    key = "bronze/orders/dt=2025-02-10/batch-7.jsonl"
    env.put(key, b"\x1f\x8b\x08\x00 not gzip at all")
    wait_until(lambda: env.depth(env.vars["ELT_DLQ_URL"]) >= 1, timeout=40, what="the poison in the DLQ")
    env.put(key, env.events("orders", seed=10))  # the producer's fix
    env.wait_idle()
    results = env.run_runbook("dlq-triage-and-redrive.md")
    assert "UnreadableObject" in results[0].stdout  # inspect said why
    assert (env.workdir / "dlq-snapshot.jsonl").read_text().count("\n") == 1
    assert env.depth(env.vars["ELT_DLQ_URL"]) == 0
    versions = env.status(key)["versions"]
    assert sorted((v["status"], v.get("outcome")) for v in versions) == [("DONE", "superseded"), ("DONE", "written")]


def test_ingest_dlq(env):
    """An S3 event ingest gave up on (the real give-up path is tests/functional/test_ingest_dlq.py;
    here the event is placed in the ingest DLQ of `eltops local up`, whose ingest is healthy)."""
    import copy
    from urllib.parse import quote_plus

    from tests.conftest import load_event

    key = "bronze/orders/dt=2025-02-20/late.jsonl"
    env.put(key, env.events("orders", seed=20))
    env.wait_idle()
    silver = "silver/orders/dt=2025-02-20/late.parquet"
    head = env.s3.head_object(Bucket=env.bronze, Key=key)
    # As if ingest had never finished it: no ledger item, no silver object, the event in the DLQ.
    assert env.eltops("ledger", "purge", "--prefix", key, "--yes").returncode == 0
    env.s3.delete_object(Bucket=env.silver, Key=silver)
    event = copy.deepcopy(load_event("s3_put_event.json"))
    record = event["Records"][0]
    record["s3"]["bucket"].update(name=env.bronze, arn=f"arn:aws:s3:::{env.bronze}")
    record["s3"]["object"].update(key=quote_plus(key, safe="/"), eTag=head["ETag"].strip('"'),
                                  size=head["ContentLength"])
    env.sqs.send_message(QueueUrl=env.vars["ELT_INGEST_DLQ_URL"], MessageBody=json.dumps(event))
    results = env.run_runbook("ingest-dlq.md")
    assert key in results[0].stdout and "S3 event" in results[0].stdout  # inspect named the object
    assert env.depth(env.vars["ELT_INGEST_DLQ_URL"]) == 0
    assert silver in env.silver_objects("silver/orders/dt=2025-02-20/")
    assert [v["status"] for v in env.status(key)["versions"]] == ["DONE"]


def test_reprocess_one_object(env):
    key = "bronze/orders/dt=2025-02-12/one.jsonl"
    env.put(key, env.events("orders", seed=12))
    env.wait_idle()
    before = env.silver_objects("silver/orders/dt=2025-02-12/")
    env.run_runbook("reprocess-one-object.md")
    versions = env.status(key)["versions"]
    assert [(v["status"], v["attempts"]) for v in versions] == [("DONE", 1)]
    after = env.silver_objects("silver/orders/dt=2025-02-12/")
    assert before and all(after[k] != before[k] for k in before)


def test_laptop_backfill(env):
    for day in ("2025-03-01", "2025-03-03", "2025-03-07"):
        env.put(f"bronze/orders/dt={day}/part-0.jsonl", env.events("orders", seed=3))
    env.wait_idle()
    results = env.run_runbook("laptop-backfill.md")
    checkpoint = json.loads((env.workdir / "backfill-2025-03.json").read_text())
    assert len(checkpoint["done"]) == 3 and checkpoint["state"] == "finished"  # retired: a rerun is a new run
    assert "replayed 3 object(s)" in results[1].stdout


def test_backfill_millions_of_objects(env):
    days = ("2025-05-01", "2025-05-02", "2025-05-20")
    for day in days:
        env.put(f"bronze/orders/dt={day}/part-0.jsonl", env.events("orders", seed=7))
    env.put("bronze/orders/dt=2025-06-01/after.jsonl", env.events("orders", seed=8))  # outside the window
    env.wait_idle()
    before = env.silver_objects("silver/orders/dt=2025-05-")
    results = env.run_runbook("backfill-millions-of-objects.md")
    manifest = results[0].stdout.strip()
    assert manifest.startswith(f"s3://{env.bronze}/inventory/{env.bronze}/bronze-daily/") and manifest.endswith(
        "/manifest.json")
    assert "3 objects" in results[1].stdout and f"inventory {manifest} (CSV)" in results[1].stderr
    assert "would submit an S3 Batch Operations copy of 3 object(s)" in results[2].stdout
    assert "bronze/replay/backfill-2025-05/bronze/orders/dt=2025-05-01/part-0.jsonl" in results[2].stdout
    report = [json.loads(x) for x in (env.workdir / "backfill-2025-05.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in report if r["result"] == "ok") == [
        f"bronze/orders/dt={day}/part-0.jsonl" for day in days]
    after = env.silver_objects("silver/orders/dt=2025-05-")
    assert set(after) == set(before) and all(after[k] != before[k] for k in before)  # rewritten in place


def test_transform_poison_data(env):
    key = "bronze/orders/dt=2025-02-20/mixed.jsonl"
    env.put(key, env.events("orders", n=200, seed=20, bad=0.1))
    env.wait_idle()
    results = env.run_runbook("transform-poison-data.md")
    assert "quarantine/orders/dt=2025-02-20/mixed.jsonl" in results[0].stdout
    assert env.status(key)["versions"][0]["rejected_rows"] > 0


def test_alarms(env):
    env.run_runbook("alarms.md")


def test_index_rehearsal(env):
    results = env.run_runbook("README.md")
    assert json.loads(results[-1].stdout)["ok"] is True


def test_restricted_account_queues(env):  # last: it changes the local events queue's redrive policy
    env.run_runbook("restricted-account-queues.md")
    values = json.loads((env.workdir / "queue.auto.tfvars.json").read_text())
    assert set(values) == {"existing_queue_url", "existing_queue_arn", "existing_dlq_url", "existing_dlq_arn",
                           "existing_queue_visibility_timeout_seconds"}
    ingest = json.loads((env.workdir / "ingest-queue.auto.tfvars.json").read_text())
    assert ingest["existing_ingest_queue_url"].endswith("/elt-dev-ingest-events")
    assert ingest["existing_ingest_dlq_url"].endswith("/elt-dev-ingest-events-dlq")
    assert ingest["existing_ingest_queue_visibility_timeout_seconds"] == 180
    rerun = env.eltops("provision", "queue", "--name", "elt-dev-events", "--with-dlq", "--max-receive-count", "5",
                       "--json")  # the runbook's command again
    assert json.loads(rerun.stdout)["changed"] is False


# --- the runbooks and the CLI agree -------------------------------------------------------------------------
def leaf_commands(group: click.Group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_command_and_option_a_runbook_uses_exists():
    checked = 0
    for runbook, line in all_commands():
        tokens = shlex.split(line.split("#", 1)[0].split(">", 1)[0])
        if not tokens or tokens[0] != "eltops":
            continue
        command, rest = cli, tokens[1:]
        while isinstance(command, click.Group):
            assert rest, f"{runbook}: `{line}` names no command"
            assert rest[0] in command.commands, f"{runbook}: `{line}`: eltops has no command {rest[0]!r}"
            command, rest = command.commands[rest[0]], rest[1:]
        options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        for token in rest:
            if token.startswith("--"):
                assert token.split("=", 1)[0] in options, f"{runbook}: `{line}`: no option {token}"
        checked += 1
    assert checked >= 30


def test_every_cli_command_appears_in_a_runbook():
    used = {tuple(shlex.split(line.split("#", 1)[0].split(">", 1)[0])[1:3]) for _, line in all_commands()
            if line.startswith("eltops ")}
    flat = {u[:1] for u in used} | {u[:2] for u in used}
    missing = [" ".join(path) for path, _ in leaf_commands(cli) if path not in flat]
    assert not missing, f"commands no runbook shows: {missing}"
