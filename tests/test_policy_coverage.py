"""The policy-coverage check: every AWS call the handlers made in this test run (functional and
end-to-end tests, in-process and in `eltops local up` subprocesses; recorded by ops/local/calls.py)
is allowed by the IAM policy the Terraform builds for that function, every call `eltops` made is in
the on-call permission list (runbooks/oncall-permissions.md), and every grant of the Lambda roles
was used by some call or is listed below with the reason no test reaches it.

Runs last (tests/conftest.py orders it, and under pytest-xdist's --dist loadfile holds it back until
every other test has finished); run alone it has nothing to read and skips. The rules it
relies on (a 404 needs s3:ListBucket, wildcards, dynamic statements) are tested on their own in
tests/unit/test_policy_rules.py.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path

import pytest

from tests import policy

ONCALL = Path(__file__).resolve().parents[1] / "runbooks" / "oncall-permissions.md"
LAMBDAS = ("ingest", "transform")
PREFIX = "elt-local"  # the embedded AWS's and the functional tests' names (ops.local.resources.Names)
# A call on a resource that does not exist needs no grant: AWS fails it either way, and the code
# treats it as a failure (a work unit naming the wrong bucket, tests/functional/test_transform_handler.py).
MISSING = {"NoSuchBucket", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist",
           "ResourceNotFoundException"}
# Grants no test can reach, and why each is still needed.
NOT_EXERCISED = {
    ("transform", "s3:AbortMultipartUpload"): "upload_file aborts a multipart upload (silver over 64 MiB) that failed "
                                              "midway; tests write smaller objects",
}


def recorded() -> list[dict]:
    path = os.environ.get("ELT_CALL_RECORD")
    if not path or not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def oncall_statements() -> list[policy.Statement]:
    text = ONCALL.read_text(encoding="utf-8")
    document = json.loads(re.search(r"```json\n(.*?)\n```", text, re.S).group(1))
    out = []
    for s in document["Statement"]:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        out.append(policy.Statement(sid=s["Sid"], actions=tuple(actions), resources=("*",)))
    return out


def lambda_needs(calls: list[dict], tf: policy.Terraform) -> dict[str, list[policy.Need]]:
    needs = {who: list(wanted) for who, wanted in tf.platform_needs().items()}
    for call in calls:
        if call["who"] in LAMBDAS and call.get("code") not in MISSING:
            needs[call["who"]] += policy.required(call)
    return needs


def report(verdict: policy.Verdict) -> str:
    denied: dict[tuple, int] = defaultdict(int)
    for who, n in verdict.denied:
        denied[(who, n.action, n.resource, n.why)] += 1
    lines = [f"DENIED {who}: {action} on {resource} — {why} (x{count})"
             for (who, action, resource, why), count in sorted(denied.items())]
    lines += [f"not exercised {who}: {action} on {resource} (statement {sid})"
              for who, sid, action, resource in verdict.unused]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def calls(request):
    if not getattr(request.config, "workerinput", {}).get("elt_runs_last_held", True):
        pytest.skip("under pytest-xdist only --dist loadfile (make test) runs this file after all the others "
                    "(tests/conftest.py)")
    found = recorded()
    if not any(c["who"] in LAMBDAS for c in found):
        pytest.skip("no handler calls were recorded in this run: the check reads what the functional and e2e "
                    "tests record, so run it with them (make test)")
    return found


def test_every_call_the_lambdas_made_is_allowed_by_the_policy_terraform_gives_their_role(calls, request):
    tf = policy.load(name_prefix=PREFIX)
    verdict = policy.evaluate(tf.role_policies(), lambda_needs(calls, tf))
    print(report(verdict))
    assert not verdict.denied, "calls the Terraform policy does not allow:\n" + report(verdict)
    if not any(item.nodeid.startswith("tests/functional/") for item in request.session.items):
        return  # a partial run (e.g. only tests/e2e): grants used by the functional tests look unused
    unexplained = [u for u in verdict.unused if (u[0], u[2]) not in NOT_EXERCISED]
    assert not unexplained, ("grants no recorded call used (remove them, or say in NOT_EXERCISED why no test "
                             "reaches them):\n" + "\n".join(map(str, unexplained)))


def test_with_a_kms_key_only_the_transform_role_gets_decrypt_and_generate_data_key_on_that_key(calls):
    key = "arn:aws:kms:us-east-1:123456789012:key/0000aaaa-1111-2222-3333-444455556666"
    tf = policy.load(name_prefix=PREFIX, variables={"kms_key_arn": key})
    policies = tf.role_policies()
    kms = {who: [(s.actions, s.resources) for s in ss if any(a.startswith("kms:") for a in s.actions)]
           for who, ss in policies.items()}
    assert kms == {"ingest": [], "transform": [(("kms:Decrypt", "kms:GenerateDataKey"), (key,))]}
    # S3 calls KMS for the role on SSE-KMS objects: every GetObject needs Decrypt, every PutObject GenerateDataKey.
    needs = lambda_needs(calls, tf)
    for who in LAMBDAS:
        s3 = [n for n in needs[who] if n.action in ("s3:GetObject", "s3:PutObject")]
        needs[who] += [policy.Need("kms:Decrypt" if n.action == "s3:GetObject" else "kms:GenerateDataKey", key,
                                   f"SSE-KMS for {n.resource}") for n in s3]
    verdict = policy.evaluate(policies, needs)
    assert not verdict.denied, report(verdict)


def test_with_a_queue_kms_key_each_role_gets_what_its_sqs_calls_need_on_that_key(calls):
    key = "arn:aws:kms:us-east-1:123456789012:key/1111bbbb-2222-3333-4444-555566667777"
    tf = policy.load(name_prefix=PREFIX, variables={"queue_kms_key_arn": key})
    policies = tf.role_policies()
    kms = {who: [(s.actions, s.resources) for s in ss if any(a.startswith("kms:") for a in s.actions)]
           for who, ss in policies.items()}
    assert kms == {"ingest": [(("kms:Decrypt", "kms:GenerateDataKey"), (key,))],
                   "transform": [(("kms:Decrypt",), (key,))]}
    # SQS calls KMS for the role on an SSE-KMS queue: a receive needs Decrypt, a send GenerateDataKey and Decrypt.
    needs = lambda_needs(calls, tf)
    for who in LAMBDAS:
        for n in [n for n in needs[who] if n.action in ("sqs:ReceiveMessage", "sqs:SendMessage")]:
            needs[who].append(policy.Need("kms:Decrypt", key, f"SSE-KMS for {n.resource}"))
            if n.action == "sqs:SendMessage":
                needs[who].append(policy.Need("kms:GenerateDataKey", key, f"SSE-KMS for {n.resource}"))
    verdict = policy.evaluate(policies, needs)
    assert not verdict.denied, report(verdict)


def test_every_call_eltops_made_is_in_the_on_call_permission_list(calls):
    statements = oncall_statements()
    needs: dict[str, list[policy.Need]] = defaultdict(list)
    for call in calls:
        if call["who"] == "eltops" and call.get("code") not in MISSING:
            needs["eltops"] += policy.required(call)
    if not needs:
        pytest.skip("no eltops call was recorded in this run")
    verdict = policy.evaluate({"eltops": statements}, needs)
    print(report(verdict))
    assert not verdict.denied, "eltops calls runbooks/oncall-permissions.md does not allow:\n" + report(verdict)
