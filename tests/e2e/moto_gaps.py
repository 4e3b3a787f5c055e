"""Where moto differs from AWS in a way that stops `terraform apply` or the pipeline, patched for the
Terraform test only (in this process, where the moto server runs; undone afterwards).

Each patch makes moto behave as AWS documents; none changes what the Terraform says:

- SQS `RedriveAllowPolicy`: moto accepts it in SetQueueAttributes but never returns it, and rejects
  it as an attribute name in GetQueueAttributes. The provider reads it back after
  `aws_sqs_queue_redrive_allow_policy` and waits forever. Patched: moto returns what was set.
- S3 bucket policies: moto ignores `Condition` blocks, so the buckets' TLS-only statement (Deny s3:*
  when `aws:SecureTransport` is false) denies every request. The embedded AWS serves plain HTTP on
  loopback; a client of the real S3 uses TLS. Patched: a statement conditioned only on
  `aws:SecureTransport = false` is evaluated as not matching (what it does for a TLS client); every
  other statement is evaluated as moto does.
- Lambda layers: moto knows no AWS-owned layers, and CreateFunction refuses an unknown layer ARN.
  Not patched: the test publishes a stand-in layer with the SDK for pandas layer's name in moto's
  account and passes its ARN (pyarrow comes from the test's own environment).
- Lambda and event source mappings: moto cannot run functions without Docker. Handled by
  `ops.local.attach.AttachedRuntime`, which says how.
"""

from __future__ import annotations

import contextlib
import json


def _is_tls_only(statement: dict) -> bool:
    condition = statement.get("Condition") or {}
    return (statement.get("Effect") == "Deny" and list(condition) == ["Bool"]
            and {k.lower(): v for k, v in condition["Bool"].items()} in ({"aws:securetransport": "false"},
                                                                         {"aws:securetransport": ["false"]}))


@contextlib.contextmanager
def patched():
    from moto.s3 import models as s3_models
    from moto.sqs import models as sqs_models

    queue_attributes = sqs_models.Queue.attributes
    get_queue_attributes = sqs_models.SQSBackend.get_queue_attributes
    get_permission = s3_models.FakeBucket.get_permission

    def attributes(self):
        result = queue_attributes.fget(self)
        if getattr(self, "redrive_allow_policy", None):
            result["RedriveAllowPolicy"] = self.redrive_allow_policy
        return result

    def get_attributes(self, queue_name, attribute_names):
        rest = [n for n in attribute_names if n != "RedriveAllowPolicy"]
        result = get_queue_attributes(self, queue_name, rest) if rest else {}
        policy = getattr(self.get_queue(queue_name), "redrive_allow_policy", None)
        if "RedriveAllowPolicy" in attribute_names and policy:
            result["RedriveAllowPolicy"] = policy
        return result

    def permission(self, action, resource):
        from moto.iam.access_control import IAMPolicy, PermissionResult

        if self.policy is None:
            return PermissionResult.NEUTRAL
        document = json.loads(self.policy.decode())
        statements = document.get("Statement", [])
        statements = [statements] if isinstance(statements, dict) else statements
        kept = [s for s in statements if not _is_tls_only(s)]
        if not kept:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps({**document, "Statement": kept})).is_action_permitted(action, resource)

    sqs_models.Queue.attributes = property(attributes)
    sqs_models.SQSBackend.get_queue_attributes = get_attributes
    s3_models.FakeBucket.get_permission = permission
    try:
        yield
    finally:
        sqs_models.Queue.attributes = queue_attributes
        sqs_models.SQSBackend.get_queue_attributes = get_queue_attributes
        s3_models.FakeBucket.get_permission = get_permission
