"""Queue pre-creation for restricted accounts, on moto: idempotent, untagged, values match."""

from __future__ import annotations

import json

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from ops.cli import cli
from tests.functional.test_listing_replay import Calls


@pytest.fixture
def sqs():
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_provision_queue_twice_changes_nothing_the_second_time_and_writes_the_same_values(sqs, tmp_path):
    out = tmp_path / "queue.auto.tfvars.json"
    first = run("provision", "queue", "--name", "elt-dev-events", "--with-dlq", "--max-receive-count", "4",
                "--out", str(out), "--json")
    assert first.exit_code == 0, first.output + first.stderr
    assert json.loads(first.stdout)["changed"] is True
    values = json.loads(out.read_text())
    assert set(values) == {"existing_queue_url", "existing_queue_arn", "existing_dlq_url", "existing_dlq_arn",
                           "existing_queue_visibility_timeout_seconds"}

    queue = sqs.get_queue_attributes(QueueUrl=values["existing_queue_url"], AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=values["existing_dlq_url"], AttributeNames=["All"])["Attributes"]
    assert queue["QueueArn"] == values["existing_queue_arn"] and dlq["QueueArn"] == values["existing_dlq_arn"]
    assert json.loads(queue["RedrivePolicy"]) == {"deadLetterTargetArn": values["existing_dlq_arn"],
                                                  "maxReceiveCount": 4}
    if "RedriveAllowPolicy" in dlq:  # moto drops this attribute; real SQS keeps it
        assert json.loads(dlq["RedriveAllowPolicy"]) == {"redrivePermission": "byQueue",
                                                         "sourceQueueArns": [values["existing_queue_arn"]]}
    else:
        assert "does not keep RedriveAllowPolicy" in " ".join(json.loads(first.stdout)["notes"])
    assert queue["SqsManagedSseEnabled"] == "true" and dlq["SqsManagedSseEnabled"] == "true"
    assert sqs.list_queue_tags(QueueUrl=values["existing_queue_url"]).get("Tags", {}) == {}

    before = out.read_bytes()
    import ops.aws

    session_client = ops.aws.Aws.client
    calls = {}

    def counting(self, service):
        client = session_client(self, service)
        calls.setdefault("c", Calls(client))
        return client

    ops.aws.Aws.client = counting
    try:
        second = run("provision", "queue", "--name", "elt-dev-events", "--with-dlq", "--max-receive-count", "4",
                     "--out", str(out))
    finally:
        ops.aws.Aws.client = session_client
    assert second.exit_code == 0 and "nothing to change" in second.stdout
    assert out.read_bytes() == before
    counted = calls["c"].counts
    assert not {"CreateQueue", "TagQueue", "ListQueueTags"} & set(counted), counted
    # Only the attribute moto drops is set again; on SQS a second run makes no write at all.
    assert counted["SetQueueAttributes"] <= 1


def test_a_changed_setting_is_applied_and_shown_and_dry_run_changes_nothing(sqs, tmp_path):
    run("provision", "queue", "--name", "q1", "--visibility-timeout", "1900")
    dry = run("provision", "queue", "--name", "q1", "--visibility-timeout", "2000", "--dry-run")
    assert "would set VisibilityTimeout: 1900 -> 2000" in dry.stdout
    url = sqs.get_queue_url(QueueName="q1")["QueueUrl"]
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"][
        "VisibilityTimeout"] == "1900"
    real = run("provision", "queue", "--name", "q1", "--visibility-timeout", "2000")
    assert "set VisibilityTimeout: 1900 -> 2000" in real.stdout
    fresh = run("provision", "queue", "--name", "brand-new", "--dry-run", "--json")
    assert json.loads(fresh.stdout)["queue"]["created"] is True
    assert "brand-new" not in json.dumps(sqs.list_queues().get("QueueUrls", []))


def test_ensure_dlq_attaches_a_new_dlq_once_and_leaves_the_queue_alone(sqs, tmp_path):
    url = sqs.create_queue(QueueName="legacy", Attributes={"VisibilityTimeout": "77"})["QueueUrl"]
    out = tmp_path / "dlq.auto.tfvars.json"
    first = run("provision", "ensure-dlq", "--queue-url", url, "--dlq-name", "legacy-dlq", "--out", str(out), "--json")
    assert first.exit_code == 0, first.output + first.stderr
    values = json.loads(out.read_text())
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"] == values["existing_dlq_arn"]
    assert attrs["VisibilityTimeout"] == "77"
    second = run("provision", "ensure-dlq", "--queue-url", url, "--dlq-name", "legacy-dlq", "--json")
    assert json.loads(second.stdout)["changed"] is False


def test_a_fifo_events_queue_is_refused_with_the_reason_and_nothing_is_created(sqs, tmp_path):
    made = run("provision", "queue", "--name", "elt-dev-events.fifo", "--out", str(tmp_path / "q.auto.tfvars.json"))
    assert made.exit_code == 2
    assert "cannot be FIFO" in made.stderr and "MessageGroupId" in made.stderr and "batching window" in made.stderr
    assert sqs.list_queues().get("QueueUrls", []) == [] and not (tmp_path / "q.auto.tfvars.json").exists()


def test_ensure_dlq_still_attaches_a_fifo_dlq_to_a_fifo_queue_and_says_the_pipeline_cannot_use_it(sqs):
    legacy = sqs.create_queue(QueueName="legacy.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    attached = run("provision", "ensure-dlq", "--queue-url", legacy, "--dlq-name", "legacy-dlq.fifo", "--json")
    assert attached.exit_code == 0, attached.output + attached.stderr
    assert any("FIFO queue" in n for n in json.loads(attached.stdout)["notes"])
    mixed = run("provision", "ensure-dlq", "--queue-url", legacy, "--dlq-name", "legacy-dlq")
    assert mixed.exit_code != 0 and "a FIFO queue needs a FIFO DLQ" in mixed.stderr


def test_access_denied_names_the_permission_and_the_runbook(sqs, monkeypatch):
    import ops.aws

    real = ops.aws.Aws.client

    def denied(self, service):
        client = real(self, service)
        from botocore.exceptions import ClientError

        def refuse(model, **kwargs):
            if model.name == "CreateQueue":
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "CreateQueue")

        client.meta.events.register("before-call.sqs.CreateQueue", refuse)
        return client

    monkeypatch.setattr(ops.aws.Aws, "client", denied)
    result = run("provision", "queue", "--name", "q2")
    assert result.exit_code == 1
    assert "sqs:CreateQueue" in result.stderr and "runbooks/restricted-account-queues.md" in result.stderr


def test_out_must_be_an_auto_tfvars_json(sqs, tmp_path):
    result = run("provision", "queue", "--name", "q3", "--out", str(tmp_path / "values.json"))
    assert result.exit_code == 2 and "*.auto.tfvars.json" in result.stderr


def test_against_sqs_that_keeps_every_attribute_a_rerun_makes_no_write():
    from botocore.stub import Stubber

    from ops.provision import provision_queue

    client = boto3.client("sqs", region_name="us-east-1")
    base = "https://sqs.us-east-1.amazonaws.com/123456789012/"
    arn = "arn:aws:sqs:us-east-1:123456789012:"
    dlq_attrs = {"QueueArn": arn + "e-dlq", "SqsManagedSseEnabled": "true", "MessageRetentionPeriod": "1209600",
                 "RedriveAllowPolicy": json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn + "e"]})}
    queue_attrs = {"QueueArn": arn + "e", "SqsManagedSseEnabled": "true", "VisibilityTimeout": "1805",
                   "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn + "e-dlq", "maxReceiveCount": 5})}
    stub = Stubber(client)
    stub.add_response("get_queue_url", {"QueueUrl": base + "e-dlq"}, {"QueueName": "e-dlq"})
    stub.add_response("get_queue_attributes", {"Attributes": dlq_attrs}, {"QueueUrl": base + "e-dlq", "AttributeNames": ["All"]})
    stub.add_response("get_queue_url", {"QueueUrl": base + "e"}, {"QueueName": "e"})
    stub.add_response("get_queue_attributes", {"Attributes": queue_attrs}, {"QueueUrl": base + "e", "AttributeNames": ["All"]})
    stub.add_response("get_queue_attributes", {"Attributes": dlq_attrs}, {"QueueUrl": base + "e-dlq", "AttributeNames": ["All"]})
    with stub:
        report = provision_queue(client, name="e")
    stub.assert_no_pending_responses()  # and any SetQueueAttributes/CreateQueue would have raised
    assert report.changed is False and report.notes == []


def test_ensure_dlq_changes_only_what_was_given_and_asks_before_changing_a_live_policy(sqs):
    url = sqs.create_queue(QueueName="live")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=sqs.create_queue(QueueName="live-dlq")["QueueUrl"],
                                       AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})})

    def policy():
        return json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
                          ["Attributes"]["RedrivePolicy"])

    untouched = run("provision", "ensure-dlq", "--queue-url", url, "--dlq-name", "live-dlq", "--json")
    assert untouched.exit_code == 0, untouched.output
    assert policy()["maxReceiveCount"] == 3 and json.loads(untouched.stdout)["queue"]["changed"] == {}
    refused = run("provision", "ensure-dlq", "--queue-url", url, "--dlq-name", "live-dlq", "--max-receive-count", "5")
    assert refused.exit_code == 2 and "--yes" in refused.stderr  # no terminal to ask on
    assert "maxReceiveCount: 3 -> 5" in refused.stderr
    assert policy()["maxReceiveCount"] == 3
    changed = run("provision", "ensure-dlq", "--queue-url", url, "--dlq-name", "live-dlq", "--max-receive-count", "5",
                  "--yes")
    assert changed.exit_code == 0, changed.output
    assert policy() == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}


def test_the_visibility_timeout_defaults_to_six_transform_timeouts_plus_the_batching_window(sqs, tmp_path):
    out = tmp_path / "queue.auto.tfvars.json"
    made = run("provision", "queue", "--name", "q2", "--consumer-timeout", "120", "--batching-window", "10",
               "--out", str(out))
    assert made.exit_code == 0, made.output + made.stderr
    url = sqs.get_queue_url(QueueName="q2")["QueueUrl"]
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"][
        "VisibilityTimeout"] == "730"
    assert json.loads(out.read_text())["existing_queue_visibility_timeout_seconds"] == 730


def test_a_visibility_timeout_below_what_the_event_source_mapping_needs_is_refused(sqs):
    # Exactly 6 x 300 s leaves the default 5 s batching window uncovered.
    short = run("provision", "queue", "--name", "q3", "--visibility-timeout", "1800")
    assert short.exit_code == 2 and "6 x --consumer-timeout + --batching-window = 1805" in short.stderr
    assert sqs.list_queues().get("QueueUrls", []) == []


def test_ensure_dlq_reports_an_existing_queues_short_visibility_timeout_and_writes_it_for_terraform(sqs, tmp_path):
    url = sqs.create_queue(QueueName="platform-events")["QueueUrl"]  # SQS's default: 30 s
    out = tmp_path / "dlq.auto.tfvars.json"
    done = run("provision", "ensure-dlq", "--queue-url", url, "--dlq-name", "platform-events-dlq", "--out", str(out),
               "--json")
    assert done.exit_code == 0, done.output + done.stderr
    notes = " ".join(json.loads(done.stdout)["notes"])
    assert "VisibilityTimeout 30 s is below 6 x 300 s + 5 s = 1805 s" in notes
    assert json.loads(out.read_text())["existing_queue_visibility_timeout_seconds"] == 30  # Terraform refuses it
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "30"  # not ensure-dlq's to change


def test_without_dlq_writes_no_dlq_and_says_what_that_means(sqs, tmp_path):
    out = tmp_path / "queue.auto.tfvars.json"
    done = run("provision", "queue", "--name", "q4", "--without-dlq", "--out", str(out), "--json")
    assert done.exit_code == 0, done.output + done.stderr
    values = json.loads(out.read_text())
    assert values["existing_dlq_url"] is None and values["existing_dlq_arn"] is None
    assert any("no DLQ" in n for n in json.loads(done.stdout)["notes"])


def test_provision_queue_on_a_live_queue_keeps_its_max_receive_count_and_asks_before_changing_it(sqs):
    """The command ensure-dlq's note recommends for a short visibility timeout must not reset a live
    policy's maxReceiveCount to its own default (issue 17's ensure-dlq defect, in provision queue)."""
    url = sqs.create_queue(QueueName="live-q", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=sqs.create_queue(QueueName="live-q-dlq")["QueueUrl"],
                                       AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 7})})

    def attrs():
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return json.loads(a["RedrivePolicy"])["maxReceiveCount"], a["VisibilityTimeout"]

    raised = run("provision", "queue", "--name", "live-q", "--consumer-timeout", "300", "--batching-window", "5")
    assert raised.exit_code == 0, raised.output + raised.stderr
    assert attrs() == (7, "1805")  # the timeout it was asked to raise, and nothing else
    refused = run("provision", "queue", "--name", "live-q", "--max-receive-count", "5")
    assert refused.exit_code == 2 and "--yes" in refused.stderr  # no terminal to ask on
    assert "maxReceiveCount: 7 -> 5" in refused.stderr
    assert attrs() == (7, "1805")
    changed = run("provision", "queue", "--name", "live-q", "--max-receive-count", "5", "--yes")
    assert changed.exit_code == 0, changed.output + changed.stderr
    assert attrs() == (5, "1805")


def test_a_bad_out_is_refused_before_any_queue_is_created_or_changed(sqs, tmp_path):
    result = run("provision", "queue", "--name", "q4", "--out", str(tmp_path / "q4.tfvars.json"))
    assert result.exit_code == 2 and "*.auto.tfvars.json" in result.stderr
    assert "q4" not in json.dumps(sqs.list_queues().get("QueueUrls", []))
    url = sqs.create_queue(QueueName="q5")["QueueUrl"]
    result = run("provision", "ensure-dlq", "--queue-url", url, "--dlq-name", "q5-dlq", "--out", str(tmp_path / "x.json"))
    assert result.exit_code == 2 and "*.auto.tfvars.json" in result.stderr
    assert "q5-dlq" not in json.dumps(sqs.list_queues().get("QueueUrls", []))
    assert "RedrivePolicy" not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
