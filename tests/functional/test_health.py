"""eltops health and ledger ls on moto: each check passes on a healthy pipeline and fails on its fault."""

from __future__ import annotations

import datetime as dt
import json
import time

from click.testing import CliRunner

from ops.cli import cli
from ops.gen_events import generate
from ops.health import Thresholds, check_health


def generated(type_: str, n: int, seed: int) -> bytes:
    return ("\n".join(t for _, t in generate(type_=type_, count=n, seed=seed, bad_ratio=0)) + "\n").encode()


def eltops(pipeline, *args):
    env = {"ELT_SILVER_BUCKET": pipeline.silver, "ELT_LEDGER_TABLE": pipeline.names.ledger_table,
           "ELT_QUEUE_URL": pipeline.queue_url}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def healthy_pipeline(pipeline) -> None:
    for i in range(3):
        pipeline.put(f"bronze/orders/dt=2025-03-0{i + 1}/part-0.jsonl", generated("orders", 40, seed=i))
    pipeline.pump()


def failing(report) -> list[tuple[str, str]]:
    return [(c.name, c.subject) for c in report.checks if not c.ok]


def health(pipeline, **kwargs):
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    return check_health(sqs=pipeline.sqs, ddb=pipeline.ddb, s3=pipeline.s3, queue_url=pipeline.queue_url,
                        table=pipeline.names.ledger_table, silver_bucket=pipeline.silver, since=since, **kwargs)


def past_ledger(pipeline, seconds_ago: float):
    past = time.time() - seconds_ago
    return type(pipeline.ledger)(pipeline.ddb, pipeline.ledger.table, clock=lambda: past)


def test_a_healthy_pipeline_exits_0_and_shows_every_check(pipeline):
    healthy_pipeline(pipeline)
    result = eltops(pipeline, "health", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    names = {(c["name"], c["subject"]) for c in report["checks"]}
    assert names == {("events-queue", "events queue"), ("dlq", "elt-local-events-dlq"), ("stuck-claims", "ledger"),
                     ("failed", "ledger"), ("quarantine-rate", "orders"), ("silver-freshness", "orders")}


def test_each_fault_fails_its_own_check_and_names_its_runbook(pipeline):
    healthy_pipeline(pipeline)
    old = past_ledger(pipeline, 3600)
    old.claim(bucket=pipeline.bronze, key="bronze/orders/dt=2025-03-05/crashed.jsonl", etag="e1", size=1,
              type_="orders", dt="2025-03-05", lease_seconds=60)
    old.claim(bucket=pipeline.bronze, key="bronze/orders/dt=2025-03-05/lost.jsonl", etag="e2", size=1,
              type_="orders", dt="2025-03-05", lease_seconds=60)
    old.mark_queued(bucket=pipeline.bronze, key="bronze/orders/dt=2025-03-05/lost.jsonl", etag="e2", message_id="m")
    pipeline.ledger.mark_failed(bucket=pipeline.bronze, key="bronze/orders/dt=2025-03-05/bad.jsonl", etag="e3",
                                error="UnreadableObject: cannot decompress\nmore")
    pipeline.sqs.send_message(QueueUrl=pipeline.dlq_url, MessageBody="{}")
    pipeline.put("bronze/shipments/dt=2025-03-05/dirty.jsonl", generated("shipments", 20, seed=3).replace(
        b'"shipment_id"', b'"shipment_idx"'))  # every line misses a required field
    pipeline.pump()
    report = health(pipeline)
    assert report.healthy is False
    assert sorted(failing(report)) == [("dlq", "elt-local-events-dlq"), ("events-queue", "events queue"),
                                       ("failed", "ledger"), ("quarantine-rate", "shipments"),
                                       ("stuck-claims", "ledger")]
    by_name = {c.name: c for c in report.failing}
    assert by_name["failed"].details == ["    1 x UnreadableObject: cannot decompress"]
    assert by_name["dlq"].runbook == "runbooks/dlq-triage-and-redrive.md"
    assert by_name["stuck-claims"].runbook == "runbooks/find-and-fill-gaps.md"
    assert by_name["quarantine-rate"].runbook == "runbooks/transform-poison-data.md"
    # the DLQ was only peeked at: the message is still there, visible
    assert pipeline.sqs.receive_message(QueueUrl=pipeline.dlq_url)["Messages"]
    # thresholds move each verdict
    loose = Thresholds(max_queue_age=7200, max_dlq_depth=1, max_stuck_claims=1, max_failed=1, max_quarantine_rate=1)
    assert health(pipeline, limits=loose).healthy is True


def test_silver_freshness_fails_when_the_newest_object_is_too_old(pipeline):
    healthy_pipeline(pipeline)
    later = time.time() + 7 * 3600
    report = health(pipeline, now=later)
    assert ("silver-freshness", "orders") in failing(report)
    assert health(pipeline, now=later, limits=Thresholds(max_silver_age=8 * 3600, max_queue_age=10**6)).healthy


def test_the_command_exits_4_and_says_what_to_do(pipeline):
    healthy_pipeline(pipeline)
    past_ledger(pipeline, 3600).claim(bucket=pipeline.bronze, key="bronze/orders/dt=2025-03-05/x.jsonl", etag="e",
                                      size=1, type_="orders", dt="2025-03-05", lease_seconds=60)
    result = eltops(pipeline, "health")
    assert result.exit_code == 4
    assert "FAIL  stuck-claims" in result.stdout and "eltops reconcile" in result.stdout
    assert "runbooks/find-and-fill-gaps.md" in result.stdout and "stuck-claims" in result.stderr
    assert result.stderr.startswith("Needs attention: 1 check(s) failing: stuck-claims ledger")  # a finding, not an error
    assert eltops(pipeline, "health", "--max-stuck-claims", "1").exit_code == 0
    assert eltops(pipeline, "health", "--max-queue-age", "soon").exit_code == 2


def test_ledger_ls_lists_with_the_purge_filters(pipeline):
    healthy_pipeline(pipeline)
    pipeline.ledger.mark_failed(bucket=pipeline.bronze, key="bronze/orders/dt=2025-03-05/bad.jsonl", etag="e3",
                                error="UnreadableObject: not JSON")
    result = eltops(pipeline, "ledger", "ls", "--status", "FAILED", "--json")
    body = json.loads(result.stdout)
    assert [i["pk"] for i in body["items"]] == [f"s3://{pipeline.bronze}/bronze/orders/dt=2025-03-05/bad.jsonl"]
    assert body["items"][0]["last_error"] == "UnreadableObject: not JSON" and body["matched"] == 1
    lines = eltops(pipeline, "ledger", "ls", "--prefix", "bronze/orders/dt=2025-03-0", "--jsonl", "--limit", "0")
    assert len(lines.stdout.splitlines()) == 3 and "3 item(s)" in lines.stderr  # the FAILED one has no key
    text = eltops(pipeline, "ledger", "ls", "--status", "DONE", "--limit", "2")
    assert sum(line.startswith("DONE ") for line in text.stdout.splitlines()) == 2 and "--limit reached" in text.stdout
    assert eltops(pipeline, "ledger", "ls", "--since", "1h", "--status", "DONE", "--json").exit_code == 0
    assert json.loads(eltops(pipeline, "ledger", "ls", "--start", "2020-01-01", "--end", "2020-01-02",
                             "--json").stdout)["items"] == []


def test_freshness_reads_a_bounded_number_of_pages_per_partition(pipeline, monkeypatch):
    import ops.health as health_lib

    for i in range(3):
        pipeline.s3.put_object(Bucket=pipeline.silver, Key=f"silver/orders/dt=2025-03-01/p{i}.parquet", Body=b"x")

    class OneKeyPages:  # every listing page holds one object
        def __init__(self, client):
            self.client, self.calls = client, 0

        def list_objects_v2(self, **kwargs):
            self.calls += 1
            return self.client.list_objects_v2(**({"MaxKeys": 1} | kwargs))

    s3 = OneKeyPages(pipeline.s3)
    monkeypatch.setattr(health_lib, "FRESHNESS_PAGES", 2)
    (check,) = health_lib.silver_freshness(s3, bucket=pipeline.silver, now=time.time(), limits=Thresholds())
    assert check.ok and check.details[1] == "silver/orders/dt=2025-03-01/: only the first 2000 objects looked at"
    assert s3.calls == 2 + 2  # types, partitions, then two pages of the partition


def test_the_next_step_for_stuck_claims_reconciles_the_partitions_they_are_in(pipeline):
    """A claim made today on an object of an old dt= day: `reconcile --since 1d` (by partition)
    reads only the last day's partitions and would say "no gaps"; the next step names the days."""
    healthy_pipeline(pipeline)
    key = "bronze/orders/dt=2025-03-02/part-0.jsonl"
    table = pipeline.names.ledger_table
    item = pipeline.ddb.query(TableName=table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={
        ":pk": {"S": f"s3://{pipeline.bronze}/{key}"}})["Items"][0]
    item.update(status={"S": "CLAIMED"}, lease_until={"N": str(int(time.time() * 1000) - 1000)},
                claimed_at={"S": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    pipeline.ddb.put_item(TableName=table, Item=item)
    pipeline.s3.delete_object(Bucket=pipeline.silver, Key="silver/orders/dt=2025-03-02/part-0.parquet")
    stuck = next(c for c in health(pipeline).checks if c.name == "stuck-claims")
    assert stuck.next_step.startswith("eltops reconcile ")
    import shlex

    followed = eltops(pipeline, *shlex.split(stuck.next_step)[1:], "--bucket", pipeline.bronze, "--dry-run",
                      "--jsonl")
    gaps = [json.loads(line) for line in followed.stdout.splitlines() if line.startswith("{")]
    assert [(g["key"], g["category"]) for g in gaps] == [(key, "claim-expired")], followed.output


def test_ledger_ls_text_counts_statuses_in_words_not_as_a_python_dict(pipeline):
    healthy_pipeline(pipeline)
    result = eltops(pipeline, "ledger", "ls")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "3 item(s) of 3 scanned; by status DONE 3"


def test_a_ledger_prefix_that_is_not_a_key_prefix_gets_a_hint(pipeline):
    healthy_pipeline(pipeline)
    listed = eltops(pipeline, "ledger", "ls", "--prefix", "orders/")
    assert listed.exit_code == 0 and "try --prefix bronze/orders/" in listed.stderr
    purged = eltops(pipeline, "ledger", "purge", "--prefix", f"s3://{pipeline.bronze}/bronze/orders/", "--dry-run")
    assert purged.exit_code == 0 and "try --prefix bronze/orders/" in purged.stderr
    found = eltops(pipeline, "ledger", "ls", "--prefix", "bronze/orders/")
    assert "hint" not in found.stderr
