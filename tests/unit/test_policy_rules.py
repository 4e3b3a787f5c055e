"""The rules the policy-coverage check (tests/test_policy_coverage.py) relies on, each shown to deny
what it must on the real Terraform with one grant taken out."""

from __future__ import annotations

import pytest

from tests import policy

PREFIX = "elt-local"
SILVER_HEAD_404 = {"who": "transform", "service": "s3", "operation": "HeadObject", "status": 404, "code": "404",
                   "params": {"Bucket": "elt-local-silver", "Key": "silver/orders/dt=2025-01-01/a.parquet"}}
BRONZE_GET_NO_SUCH_KEY = {"who": "transform", "service": "s3", "operation": "GetObject", "status": 404,
                          "code": "NoSuchKey", "params": {"Bucket": "elt-local-bronze",
                                                          "Key": "bronze/orders/dt=2025-01-01/a.jsonl"}}
SEND = {"who": "ingest", "service": "sqs", "operation": "SendMessageBatch", "status": 200, "code": None,
        "params": {"QueueUrl": "http://127.0.0.1:5000/123456789012/elt-local-events"}}


def verdict(text: str | None = None, calls=(SILVER_HEAD_404, BRONZE_GET_NO_SUCH_KEY, SEND), variables=None):
    tf = policy.load(name_prefix=PREFIX, text=text, variables=variables)
    needs = {who: list(n) for who, n in tf.platform_needs().items()}
    for call in calls:
        needs[call["who"]] += policy.required(call)
    return policy.evaluate(tf.role_policies(), needs)


def main_tf_without(old: str, new: str) -> str:
    text = policy.ENV_MAIN.read_text()
    assert old in text
    return text.replace(old, new)


def denied(v) -> set[tuple[str, str]]:
    return {(who, n.action) for who, n in v.denied}


def test_a_missing_key_answered_404_needs_list_bucket_and_a_found_one_does_not():
    assert [n.action for n in policy.required(SILVER_HEAD_404)] == ["s3:GetObject", "s3:ListBucket"]
    assert [n.action for n in policy.required({**SILVER_HEAD_404, "status": 200, "code": None})] == ["s3:GetObject"]
    no_bucket = {**BRONZE_GET_NO_SUCH_KEY, "code": "NoSuchBucket"}
    assert [n.action for n in policy.required(no_bucket)] == ["s3:GetObject"]


def test_the_terraform_policies_allow_the_calls_and_the_event_source_mappings_polling():
    assert verdict().denied == []


def test_without_list_bucket_the_404_heads_and_gets_are_denied():
    text = main_tf_without('actions   = ["s3:ListBucket"]', 'actions   = ["s3:GetBucketLocation"]')
    assert denied(verdict(text)) == {("transform", "s3:ListBucket")}


def test_without_send_message_ingest_cannot_send_work_units():
    text = main_tf_without('actions   = ["sqs:SendMessage"]\n    resources = [module.queue.queue_arn]',
                           'actions   = ["sqs:SendMessageBatch"]\n    resources = [module.queue.queue_arn]')
    assert denied(verdict(text)) == {("ingest", "sqs:SendMessage")}


def test_without_get_queue_attributes_the_ingest_event_source_mapping_cannot_poll():
    text = main_tf_without(
        'sid       = "ConsumeS3Events" # the event source mapping polls with the function\'s role\n'
        '    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]',
        'sid       = "ConsumeS3Events"\n    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage"]')
    assert denied(verdict(text)) == {("ingest", "sqs:GetQueueAttributes")}


def test_a_grant_on_the_wrong_prefix_does_not_cover_a_key():
    head = {**SILVER_HEAD_404, "status": 200, "code": None,
            "params": {"Bucket": "elt-local-silver", "Key": "elsewhere/a.parquet"}}
    assert ("transform", "s3:GetObject") in denied(verdict(calls=(head,)))


def test_unused_grants_are_listed():
    v = verdict(calls=())
    assert ("transform", "ClearOldQuarantine", "s3:DeleteObject", "arn:aws:s3:::elt-local-silver/quarantine/*") in \
        v.unused


def test_wildcards_follow_iam_and_actions_ignore_case():
    s = policy.Statement(sid="x", actions=("s3:Get*",), resources=("arn:aws:s3:::b/silver/*",))
    assert s.allows("S3:GetObject", "arn:aws:s3:::b/silver/a/b.parquet")
    assert not s.allows("s3:GetObject", "arn:aws:s3:::B/silver/a")
    assert not s.allows("s3:PutObject", "arn:aws:s3:::b/silver/a")
    assert not policy.Statement(sid="c", actions=("*",), resources=("*",), conditional=True).allows("s3:GetObject", "x")


def test_a_policy_expression_the_checker_cannot_resolve_fails_loudly():
    text = main_tf_without('resources = ["${module.storage.bronze_bucket_arn}/bronze/*"]',
                           'resources = ["${module.storage.bronze_bucket_id}/bronze/*"]')
    with pytest.raises(policy.UnknownExpression, match="bronze_bucket_id"):
        policy.load(name_prefix=PREFIX, text=text).role_policies()


def test_kms_statements_exist_only_with_a_key():
    assert not any(a.startswith("kms:") for ss in policy.load(name_prefix=PREFIX).role_policies().values()
                   for s in ss for a in s.actions)


def test_the_on_call_policy_lets_eltops_write_where_the_runbooks_and_terraform_put_things():
    """The on-call policy's resource patterns, filled in for a real environment, allow the writes
    the runbooks' commands make where Terraform's batch-operations role reads them: the Batch
    Operations manifest under `<batch_operations_prefix>manifests/` of the bronze bucket, and copies
    under bronze/replay/ (tests/test_policy_coverage.py checks the actions only)."""
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    text = (root / "runbooks" / "oncall-permissions.md").read_text(encoding="utf-8")
    document = json.loads(re.search(r"```json\n(.*?)\n```", text, re.S).group(1)
                          .replace("<region>", "eu-west-1").replace("<account>", "123456789012")
                          .replace("<prefix>", "elt-dev"))
    statements = [policy.Statement(sid=s["Sid"], actions=tuple(s["Action"] if isinstance(s["Action"], list)
                                                                 else [s["Action"]]),
                                   resources=tuple(s["Resource"] if isinstance(s["Resource"], list)
                                                   else [s["Resource"]]))
                  for s in document["Statement"]]
    terraform = (root / "infra" / "terraform" / "envs" / "dev" / "batch_operations.tf").read_text(encoding="utf-8")
    batch_prefix = re.search(r'variable "batch_operations_prefix" \{.*?default\s*=\s*"([^"]+)"', terraform,
                             re.S).group(1)
    bronze = "arn:aws:s3:::elt-dev-bronze"
    needs = [policy.Need(action, f"{bronze}/{batch_prefix}manifests/backfill-2025-05.csv", "the job's manifest")
             for action in ("s3:PutObject", "s3:AbortMultipartUpload")]
    needs += [policy.Need("s3:PutObject", f"{bronze}/bronze/replay/runbook-copy/orders/dt=2025-02-01/part-0.jsonl",
                          "replay copy"),
              policy.Need("s3:GetObject", f"{bronze}/{batch_prefix}reports/job-1/manifest.json", "batch-job status")]
    denied = policy.evaluate({"oncall": statements}, {"oncall": needs}).denied
    assert not denied, [(n.action, n.resource) for _, n in denied]
