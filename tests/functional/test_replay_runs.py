"""A replay run as a scheduler and an on-call engineer run it: the checkpoint's life (a finished
run is retired, an interrupted or partly failed one resumes with its original window, --fresh,
--resume FILE), Ctrl-C, and a queue that does not exist."""

from __future__ import annotations

import _thread
import json

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from ops.cli import cli


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ELT_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def eltops(*args):
    return CliRunner().invoke(cli, list(args))


def sqs_replay(pipeline, *extra):
    return eltops("replay", "sqs", "--bucket", pipeline.bronze, "--prefix", "bronze/orders/", "--since", "1h",
                  "--queue-url", pipeline.queue_url, "--json", *extra)


def depth(pipeline) -> int:
    attrs = pipeline.sqs.get_queue_attributes(QueueUrl=pipeline.queue_url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_the_same_scheduled_command_does_the_new_windows_work_every_time(pipeline):
    pipeline.put("bronze/orders/dt=2025-01-01/a.jsonl", b"{}\n")
    pipeline.put("bronze/orders/dt=2025-01-01/b.jsonl", b"{}\n")
    first = sqs_replay(pipeline)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["done"] == 2
    pipeline.put("bronze/orders/dt=2025-01-01/c.jsonl", b"{}\n")  # new in the next run's window
    second = sqs_replay(pipeline)
    assert second.exit_code == 0, second.output
    report = json.loads(second.stdout)
    assert "resuming" not in second.stderr
    assert (report["already_done"], report["done"]) == (0, 3)  # a new run over the new window
    assert depth(pipeline) == 5


def test_an_interrupted_run_resumes_with_its_original_window_and_fresh_starts_over(pipeline, monkeypatch,
                                                                                     state_dir):
    for i in range(14):  # two batches of ten
        pipeline.put(f"bronze/orders/dt=2025-01-01/o{i:02d}.jsonl", b"{}\n")
    checkpoint_args = ("--concurrency", "2")  # one SendMessageBatch worker: the batches go one by one
    import boto3

    real_client = boto3.session.Session.client
    state = {"calls": 0}

    def client(self, service, **kwargs):
        made = real_client(self, service, **kwargs)
        if service == "sqs" and not state.get("armed"):
            state["armed"] = True

            def interrupt(model, **_):
                if model.name == "SendMessageBatch":
                    state["calls"] += 1
                    if state["calls"] == 1:
                        raise KeyboardInterrupt()

            made.meta.events.register("before-call.sqs.*", interrupt)
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)
    first = sqs_replay(pipeline, *checkpoint_args)
    assert first.exit_code == 130, first.output
    [saved] = (state_dir / "checkpoints").glob("*.json")
    data = json.loads(saved.read_text())
    assert data["state"] == "interrupted"
    window = data["values"]["window"]
    second = sqs_replay(pipeline, *checkpoint_args)
    assert second.exit_code == 0, second.output
    assert "resuming from" in second.stderr and "interrupted run" in second.stderr
    assert window[0][:19] in second.stderr  # the original window, said out loud
    report = json.loads(second.stdout)
    assert report["already_done"] + report["done"] == 14
    assert json.loads(saved.read_text())["state"] == "finished"
    fresh = sqs_replay(pipeline, *checkpoint_args, "--fresh")
    assert fresh.exit_code == 0 and json.loads(fresh.stdout)["already_done"] == 0


def test_resume_names_a_checkpoint_that_must_hold_an_unfinished_run(pipeline, tmp_path):
    pipeline.put("bronze/orders/dt=2025-01-01/a.jsonl", b"{}\n")
    missing = sqs_replay(pipeline, "--resume", str(tmp_path / "nope.json"))
    assert missing.exit_code == 2 and "no such checkpoint" in missing.stderr
    done = sqs_replay(pipeline, "--checkpoint", str(tmp_path / "cp.json"))
    assert done.exit_code == 0
    again = sqs_replay(pipeline, "--resume", str(tmp_path / "cp.json"))
    assert again.exit_code == 2 and "nothing to resume" in again.stderr
    both = sqs_replay(pipeline, "--resume", str(tmp_path / "cp.json"), "--fresh")
    assert both.exit_code == 2 and "one or the other" in both.stderr


def test_a_partly_failed_run_is_resumed_and_retries_only_what_failed(pipeline, tmp_path, monkeypatch):
    pipeline.put("bronze/orders/dt=2025-01-01/a.jsonl", b"{}\n")
    pipeline.put("bronze/orders/dt=2025-01-01/b.jsonl", b"{}\n")
    import boto3

    real_client = boto3.session.Session.client

    def client(self, service, **kwargs):
        made = real_client(self, service, **kwargs)
        if service == "s3" and not getattr(client, "armed", False):
            client.armed = True

            def fail_one(params, **_):
                if "b.jsonl" in str(params["CopySource"]) and not getattr(client, "failed", False):
                    client.failed = True
                    raise ClientError({"Error": {"Code": "InvalidRequest", "Message": "injected"},
                                       "ResponseMetadata": {"HTTPStatusCode": 400}}, "CopyObject")

            made.meta.events.register("before-parameter-build.s3.CopyObject", fail_one)
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)
    args = ("replay", "copy", "--bucket", pipeline.bronze, "--prefix", "bronze/orders/", "--since", "1h",
            "--checkpoint", str(tmp_path / "cp.json"), "--json")
    first = eltops(*args)
    assert first.exit_code == 3, first.output
    assert json.loads((tmp_path / "cp.json").read_text())["state"] == "failed"
    second = eltops(*args)
    assert second.exit_code == 0, second.output
    assert "failed run" in second.stderr
    report = json.loads(second.stdout)
    assert (report["already_done"], report["done"]) == (1, 1)
    assert report["target"] == json.loads(first.stdout)["target"]  # the same generated replay stamp


def test_a_queue_that_does_not_exist_is_named_before_any_work(pipeline):
    pipeline.put("bronze/orders/dt=2025-01-01/a.jsonl", b"{}\n")
    missing = pipeline.queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    result = eltops("replay", "sqs", "--bucket", pipeline.bronze, "--since", "1h", "--queue-url", missing)
    assert result.exit_code == 1, result.output
    assert "no-such-queue" in result.stderr and "does not exist" in result.stderr
    assert "failed" not in result.stdout


def test_ctrl_c_stops_the_pool_at_once_and_sends_nothing_after_it(pipeline, monkeypatch):
    for i in range(60):
        pipeline.put(f"bronze/orders/dt=2025-01-01/o{i:02d}.jsonl", b"{}\n")
    import boto3

    real_client = boto3.session.Session.client
    sent = {"before": 0, "after": 0, "interrupted": False}

    def client(self, service, **kwargs):
        made = real_client(self, service, **kwargs)
        if service == "sqs":
            def count(model, **_):
                if model.name != "SendMessageBatch":
                    return
                sent["after" if sent["interrupted"] else "before"] += 1
                if sent["before"] == 1 and not sent["interrupted"]:
                    sent["interrupted"] = True
                    _thread.interrupt_main()  # Ctrl-C while the other workers wait for the rate limit

            made.meta.events.register("before-call.sqs.*", count)
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)
    # 6 batches at 5 messages/s: without the stop event the workers would go on sending for ~10 s.
    result = sqs_replay(pipeline, "--max-rps", "5", "--concurrency", "16")
    assert result.exit_code == 130, result.output
    assert sent["after"] == 0


@pytest.mark.parametrize("dest", ["bronze/replay/run 1", "bronze/replay", "bronze/replay/a/b", "bronze/x",
                                  "bronze/replay/"])
def test_a_dest_prefix_whose_copies_ingest_would_skip_is_a_usage_error(pipeline, dest):
    pipeline.put("bronze/orders/dt=2025-01-01/a.jsonl", b"{}\n")
    result = eltops("replay", "copy", "--bucket", pipeline.bronze, "--since", "1h", "--dest-prefix", dest)
    assert result.exit_code == 2, result.output
    assert repr(dest) in result.stderr and "ingest would skip every copy" in result.stderr
    assert pipeline.s3.list_objects_v2(Bucket=pipeline.bronze, Prefix="bronze/replay/")["KeyCount"] == 0


def test_a_good_dest_prefix_makes_copies_ingest_reads_as_replays():
    from lambdas.shared.keys import batch_replay_key
    from ops.replay import check_dest_prefix

    check_dest_prefix("bronze/replay/run-1")
    check_dest_prefix("bronze/replay/2025-02-10T00:00:00Z")
    check_dest_prefix("bronze/replay/b1", batch_replay_key)


def test_quiet_hides_progress_and_notes_but_not_the_result(pipeline):
    pipeline.put("bronze/orders/dt=2025-01-01/a.jsonl", b"{}\n")
    pipeline.put("bronze/orders/dt=2025-01-01/b.jsonl", b"{}\n")
    result = eltops("ls", "--bucket", pipeline.bronze, "--since", "1h", "-q")
    assert result.exit_code == 0
    assert [line for line in result.stdout.splitlines() if "bronze/orders/" in line and "objects" not in line]
    assert result.stderr == ""


def test_by_modified_matching_nothing_over_dt_partitions_hints_at_by_partition(pipeline):
    pipeline.put("bronze/orders/dt=2025-01-01/a.jsonl", b"{}\n")  # uploaded now, partition of 2025-01-01
    result = eltops("ls", "--bucket", pipeline.bronze, "--start", "2025-01-01", "--end", "2025-01-02")
    assert result.exit_code == 0
    assert "--by partition" in result.stderr and "dt=2025-01-01" in result.stderr
    plan = eltops("replay", "sqs", "--bucket", pipeline.bronze, "--start", "2025-01-01", "--end", "2025-01-02",
                  "--queue-url", pipeline.queue_url, "--dry-run")
    assert "--by partition" in plan.stderr


def test_a_window_in_the_future_that_finds_nothing_says_so(pipeline):
    pipeline.put("bronze/orders/dt=2025-01-01/a.jsonl", b"{}\n")
    future = ["--start", "2999-01-01", "--end", "2999-01-02"]
    for by in ("modified", "partition"):
        listed = eltops("ls", "--bucket", pipeline.bronze, *future, "--by", by)
        assert listed.exit_code == 0 and "starts in the future" in listed.stderr, listed.output
    plan = eltops("replay", "sqs", "--bucket", pipeline.bronze, *future, "--queue-url", pipeline.queue_url,
                  "--dry-run")
    assert "starts in the future" in plan.stderr
    gaps = eltops("reconcile", "--bucket", pipeline.bronze, *future, "--silver-bucket", pipeline.silver,
                  "--table", pipeline.names.ledger_table)
    assert gaps.exit_code == 0 and "starts in the future" in gaps.stdout
    past = eltops("ls", "--bucket", pipeline.bronze, "--start", "2025-01-01", "--end", "2025-01-02", "--by",
                  "partition")
    assert "future" not in past.stderr


def test_status_of_a_key_never_ingested_exits_1_after_saying_so(pipeline):
    result = eltops("status", f"s3://{pipeline.bronze}/bronze/orders/dt=2025-01-01/never.jsonl", "--table",
                    pipeline.names.ledger_table, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["versions"] == [] and "no ledger item" in result.stderr


def test_the_redrive_prompt_says_how_many_messages_and_the_fallback_is_not_cut(pipeline, monkeypatch):
    for i in range(3):
        pipeline.sqs.send_message(QueueUrl=pipeline.dlq_url, MessageBody=f"not a work unit {i}")
    from ops import dlq as lib

    long_reason = "x" * 400 + " END"

    def unavailable(*_a, **_k):
        raise lib.NativeUnavailable(long_reason)

    monkeypatch.setattr(lib, "redrive_native", unavailable)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    result = CliRunner().invoke(cli, ["dlq", "redrive", "--queue-url", pipeline.dlq_url, "--to-url",
                                      pipeline.queue_url], input="n\n")
    assert "Move about 3 message(s)" in result.stderr
    yes = eltops("dlq", "redrive", "--queue-url", pipeline.dlq_url, "--to-url", pipeline.queue_url, "--yes")
    assert yes.exit_code == 0, yes.output
    assert long_reason in yes.stderr


def test_a_queue_can_be_given_by_url_name_or_arn(pipeline):
    pipeline.put("bronze/orders/dt=2025-01-01/a.jsonl", b"{}\n")
    name = pipeline.queue_url.rsplit("/", 1)[-1]
    arn = pipeline.sqs.get_queue_attributes(QueueUrl=pipeline.queue_url,
                                            AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for given in (name, arn):
        result = eltops("replay", "sqs", "--bucket", pipeline.bronze, "--since", "1h", "--queue-url", given,
                        "--fresh", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["target"] == pipeline.queue_url
    missing = eltops("dlq", "inspect", "--queue-url", "no-such-queue")
    assert missing.exit_code == 1 and "--queue-url no-such-queue: the queue does not exist" in missing.stderr


def test_text_output_gives_human_sizes_and_windows_and_debug_shows_the_wire(pipeline):
    from ops.commands.root import human_size

    assert [human_size(n) for n in (0, 1023, 476408, 5 * 1024**3)] == ["0 B", "1023 B", "465.2 KiB", "5.0 GiB"]
    pipeline.put("bronze/orders/dt=2025-01-01/a.jsonl", b"{}\n" * 1000)
    listed = eltops("ls", "--bucket", pipeline.bronze, "--start", "2025-01-01T00:00:00Z", "--end", "2025-01-02",
                    "--by", "partition")
    assert "2.9 KiB" in listed.stdout and "[2025-01-01T00:00:00Z, 2025-01-02T00:00:00Z)" in listed.stdout
    assert "bytes" not in listed.stdout
    import logging

    try:
        debug = CliRunner().invoke(cli, ["ls", "--bucket", pipeline.bronze, "--since", "1h", "--debug"])
        assert debug.exit_code == 0 and "ListObjectsV2" in debug.stderr
    finally:
        for name in ("botocore", "boto3"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).setLevel(logging.WARNING)
    assert logging.getLogger("botocore").level == logging.WARNING


def test_status_shows_the_replay_copies_of_a_logical_key(pipeline):
    key = "bronze/orders/dt=2025-01-01/a.jsonl"
    pipeline.put(key, b'{"order_id": "o1", "customer_id": "c", "amount": 1.5, "currency": "EUR", '
                      b'"created_at": "2025-01-01T00:00:00Z"}\n')
    pipeline.pump()
    copy = eltops("replay", "copy", "--bucket", pipeline.bronze, "--start", "2025-01-01", "--end", "2025-01-02",
                  "--by", "partition", "--dest-prefix", "bronze/replay/run-1")
    assert copy.exit_code == 0, copy.output
    pipeline.pump()
    status = eltops("status", f"s3://{pipeline.bronze}/{key}", "--table", pipeline.names.ledger_table, "--json")
    assert status.exit_code == 0, status.output
    copies = json.loads(status.stdout)["replay_copies"]
    assert [c["key"] for c in copies] == ["bronze/replay/run-1/orders/dt=2025-01-01/a.jsonl"]
    assert copies[0]["versions"][0]["status"] == "DONE"
    text = eltops("status", f"s3://{pipeline.bronze}/{key}", "--table", pipeline.names.ledger_table)
    assert "replay copy bronze/replay/run-1/orders/dt=2025-01-01/a.jsonl: DONE" in text.stdout


def test_ls_jsonl_streams_one_object_per_line(pipeline):
    for name in ("a", "b", "c"):
        pipeline.put(f"bronze/orders/dt=2025-01-01/{name}.jsonl", b"{}\n")
    result = eltops("ls", "--bucket", pipeline.bronze, "--since", "1h", "--jsonl")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["key"].rsplit("/", 1)[-1] for r in records] == ["a.jsonl", "b.jsonl", "c.jsonl"]
    assert {"key", "size", "etag", "last_modified"} == set(records[0]) and "3 objects" in result.stderr


def test_ctrl_c_stops_a_manual_redrive_at_once_and_loses_no_message(pipeline, monkeypatch):
    for i in range(30):
        pipeline.sqs.send_message(QueueUrl=pipeline.dlq_url, MessageBody=f"poison {i}")
    import boto3

    real_client = boto3.session.Session.client
    sent = {"before": 0, "after": 0, "interrupted": False}

    def client(self, service, **kwargs):
        made = real_client(self, service, **kwargs)
        if service == "sqs":
            def count(model, **_):
                if model.name != "SendMessageBatch":
                    return
                sent["after" if sent["interrupted"] else "before"] += 1
                if not sent["interrupted"]:
                    sent["interrupted"] = True
                    _thread.interrupt_main()  # Ctrl-C while the other loops wait for the rate limit

            made.meta.events.register("before-call.sqs.*", count)
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)
    result = eltops("dlq", "redrive", "--queue-url", pipeline.dlq_url, "--to-url", pipeline.queue_url, "--mode",
                    "manual", "--max-rps", "1", "--concurrency", "3", "--yes")
    assert result.exit_code == 130, result.output
    assert sent["after"] == 0
    assert depth(pipeline) + int(pipeline.sqs.get_queue_attributes(
        QueueUrl=pipeline.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
        "ApproximateNumberOfMessages"]) >= 30  # in the DLQ, the target, or both; never neither


def test_dlq_inspect_jsonl_streams_every_message_whole(pipeline, tmp_path):
    for i in range(2):
        pipeline.sqs.send_message(QueueUrl=pipeline.dlq_url, MessageBody=f"poison {i}")
    result = eltops("dlq", "inspect", "--queue-url", pipeline.dlq_url, "--jsonl", "--out", str(tmp_path / "d.jsonl"))
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["body"] for r in records) == ["poison 0", "poison 1"]
    assert (tmp_path / "d.jsonl").read_text().count("\n") == 2 and "2 message(s) read" in result.stderr


def test_status_does_not_read_a_bronze_object_it_may_not_see_as_deleted(pipeline):
    # Without s3:ListBucket S3 answers 403, not 404, for HeadObject: status must say it cannot tell.
    from ops.errors import OpsError
    from ops.ledger import object_status

    key = "bronze/orders/dt=2025-01-01/hidden.jsonl"
    pipeline.run(key, b'{"order_id": "o-1"}\n')

    def deny(params, **_):
        if params.get("Bucket") == pipeline.bronze:
            raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"},
                               "ResponseMetadata": {"HTTPStatusCode": 403}}, "HeadObject")

    pipeline.s3.meta.events.register("provide-client-params.s3.HeadObject", deny)
    try:
        with pytest.raises(OpsError, match="s3:ListBucket"):
            object_status(s3=pipeline.s3, ddb=pipeline.ddb, table=pipeline.names.ledger_table,
                          url=f"s3://{pipeline.bronze}/{key}", silver_bucket=pipeline.silver)
    finally:
        pipeline.s3.meta.events.unregister("provide-client-params.s3.HeadObject", deny)
