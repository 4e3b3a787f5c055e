"""IAM policies as the Terraform builds them, and AWS calls as IAM sees them.

- `role_policies()` reads infra/terraform/envs/dev/main.tf (python-hcl2): each Lambda module's
  `policy_json` names an `aws_iam_policy_document`; its statements (and `dynamic "statement"`
  blocks, which exist only when their `for_each` variable is set) become `Statement`s whose
  resources are resolved to this environment's ARNs (module outputs and locals from the same HCL,
  with a name prefix, region and account chosen by the caller). An expression the resolver does not
  know fails loudly: a policy the check cannot read is not a policy it can vouch for.
- `required(call)` maps one recorded call (ops/local/calls.py) to the (action, resource ARN) pairs
  IAM evaluates for it. A GET or HEAD that was answered 404 also needs `s3:ListBucket` on the
  bucket: without it S3 answers 403, and the code that relies on the 404 would break.
- `platform_needs()` adds what the Lambda service does with each function's role: poll the queue of
  its event source mapping (ReceiveMessage, DeleteMessage, GetQueueAttributes), write its log group,
  send X-Ray traces.
- `evaluate()` matches each need against Allow statements (IAM's `*` and `?` wildcards; there is
  no Deny and no Condition in these role policies, and a statement with a Condition is not trusted
  here) and returns the denied needs and the grants no need used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import hcl2

ROOT = Path(__file__).resolve().parents[1]
ENV_MAIN = ROOT / "infra" / "terraform" / "envs" / "dev" / "main.tf"
ACCOUNT = "123456789012"
REGION = "us-east-1"


class UnknownExpression(ValueError):
    pass


@dataclass(frozen=True)
class Statement:
    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditional: bool = False

    def allows(self, action: str, resource: str) -> bool:
        if self.conditional:
            return False
        return any(_match(a, action, case=False) for a in self.actions) and any(
            _match(r, resource, case=True) for r in self.resources)


@dataclass(frozen=True)
class Need:
    action: str
    resource: str
    why: str  # "Operation on …" or "platform: …"


def _match(pattern: str, value: str, *, case: bool) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _blocks(items: list, kind: str | None = None) -> dict:
    """hcl2's list of one-key dicts as {label: body} (labels unquoted); `kind` picks a block type."""
    found = {}
    for item in items:
        for label, body in item.items():
            label = _unquote(label)
            if kind is None:
                found[label] = body
            elif label == kind:
                found.update({_unquote(k): v for k, v in body.items()})
    return found


class Terraform:
    """The dev environment's HCL with enough evaluation to resolve policy resources."""

    def __init__(self, text: str, *, name_prefix: str, region: str = REGION, account: str = ACCOUNT,
                 variables: dict | None = None):
        self.doc = hcl2.loads(text)
        # The embedded AWS names its buckets <prefix>-bronze/-silver; the Terraform derives
        # <prefix>-bronze-<account>-<region> unless the names are given, as they are here.
        self.variables = {"name_prefix": name_prefix, "region": region, "kms_key_arn": None, "queue_kms_key_arn": None,
                          "bronze_bucket_name": f"{name_prefix}-bronze", "silver_bucket_name": f"{name_prefix}-silver",
                          **(variables or {})}
        self.region, self.account = region, account
        self.modules = _blocks(self.doc.get("module", []))
        self.documents = _blocks(self.doc.get("data", []), "aws_iam_policy_document")
        self.resources = self.doc.get("resource", [])
        locals_ = {}
        for block in self.doc.get("locals", []):
            locals_.update(block)
        self.locals = locals_

    # -- expressions -----------------------------------------------------------------------------
    def resolve(self, text: str) -> str:
        """Each ${...} replaced by its value; a template may nest inside one (coalesce's default)."""
        text = _unquote(text)
        out, i = [], 0
        while (start := text.find("${", i)) >= 0:
            out.append(text[i:start])
            depth, j = 1, start + 2
            while depth and j < len(text):
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth -= text[j] == "}"
                j += 1
            out.append(self._reference(text[start + 2:j - 1].strip()))
            i = j
        return "".join(out) + text[i:]

    def _reference(self, ref: str) -> str:
        if ref.startswith("var."):
            value = self.variables.get(ref[4:])
            if value is None:
                raise UnknownExpression(f"variable {ref} has no value here")
            return str(value)
        if ref == "data.aws_partition.current.partition":
            return "aws"
        if ref == "data.aws_caller_identity.current.account_id":
            return self.account
        m = re.fullmatch(r'coalesce\((var\.\w+),\s*"(.*)"\)', ref, re.S)
        if m:  # a given value, else the derived default (bucket names)
            value = self.variables.get(m.group(1)[4:])
            return str(value) if value is not None else self.resolve(m.group(2))
        if ref.startswith("local."):
            value = self.locals
            for part in ref.split(".")[1:]:
                value = value[part]
            return self.resolve(value)
        m = re.fullmatch(r"module\.(\w+)\.(\w+)", ref)
        if m:
            return self.module_output(m.group(1), m.group(2))
        raise UnknownExpression(f"cannot resolve ${{{ref}}} in a policy")

    def module_output(self, module: str, output: str) -> str:
        call = self.modules[module]
        source = Path(_unquote(call["source"])).name
        arg = lambda name: self.resolve(call[name])  # noqa: E731
        arns = {
            ("storage", "bronze_bucket_arn"): lambda: f"arn:aws:s3:::{arg('bronze_bucket_name')}",
            ("storage", "silver_bucket_arn"): lambda: f"arn:aws:s3:::{arg('silver_bucket_name')}",
            ("queue", "queue_arn"): lambda: f"arn:aws:sqs:{self.region}:{self.account}:{arg('name')}",
            ("queue", "dlq_arn"): lambda: f"arn:aws:sqs:{self.region}:{self.account}:{arg('name')}-dlq",
            ("ledger", "table_arn"): lambda: f"arn:aws:dynamodb:{self.region}:{self.account}:table/{arg('table_name')}",
            ("lambda_function", "function_arn"):
                lambda: f"arn:aws:lambda:{self.region}:{self.account}:function:{arg('function_name')}",
        }
        if (source, output) not in arns:
            raise UnknownExpression(f"module.{module}.{output} ({source}) is not known to tests/policy.py")
        return arns[(source, output)]()

    # -- policies ----------------------------------------------------------------------------------
    def statements(self, document: str) -> list[Statement]:
        body = self.documents[document]
        out = [self._statement(s) for s in body.get("statement", [])]
        for dynamic in body.get("dynamic", []):
            for label, block in dynamic.items():
                if _unquote(label) != "statement":
                    continue
                values = self._for_each(block["for_each"])
                for value in values:
                    for content in block.get("content", []):
                        out.append(self._statement(content, iterator=value))
        return out

    def _for_each(self, expression: str) -> list[str]:
        m = re.fullmatch(r"\$\{var\.(\w+) == null \? \[\] : \[var\.\1\]\}", expression)
        if not m:
            raise UnknownExpression(f"dynamic statement for_each {expression!r} is not understood")
        value = self.variables.get(m.group(1))
        return [] if value is None else [value]

    def _statement(self, body: dict, iterator: str | None = None) -> Statement:
        if _unquote(body.get("effect", "Allow")) != "Allow":
            raise UnknownExpression("a Deny statement in a role policy: the check does not evaluate Deny")

        def value(text):
            if iterator is not None and text == "${statement.value}":
                return iterator
            return self.resolve(text)

        return Statement(sid=_unquote(body.get("sid", "")), actions=tuple(_unquote(a) for a in body["actions"]),
                         resources=tuple(value(r) for r in body["resources"]), conditional=bool(body.get("condition")))

    def function_documents(self) -> dict[str, str]:
        """{lambda module name: policy document name} from each module's policy_json."""
        found = {}
        for name, call in self.modules.items():
            m = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", str(call.get("policy_json", "")))
            if m:
                found[name] = m.group(1)
        return found

    def role_policies(self) -> dict[str, list[Statement]]:
        return {function: self.statements(document) for function, document in self.function_documents().items()}

    def platform_needs(self) -> dict[str, list[Need]]:
        """What the Lambda service does with each function's role (event source mapping, logs, traces)."""
        needs: dict[str, list[Need]] = {f: [] for f in self.function_documents()}
        for block in self.resources:
            for kind, items in _blocks([block]).items():
                if kind != "aws_lambda_event_source_mapping":
                    continue
                for body in items.values():
                    m = re.fullmatch(r"\$\{module\.(\w+)\.function_arn\}", body["function_name"])
                    queue = self.resolve(body["event_source_arn"])
                    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
                        needs[m.group(1)].append(Need(action, queue, "platform: event source mapping polls"))
        for function in needs:
            name = self.resolve(self.modules[function]["function_name"])
            group = f"arn:aws:logs:{self.region}:{self.account}:log-group:/aws/lambda/{name}"
            for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
                needs[function].append(Need(action, f"{group}:log-stream:2026/01/01/[$LATEST]0", "platform: logs"))
            for action in ("xray:PutTraceSegments", "xray:PutTelemetryRecords"):  # tracing_config Active
                needs[function].append(Need(action, "*", "platform: X-Ray tracing"))
        return needs


def load(*, name_prefix: str, variables: dict | None = None, text: str | None = None) -> Terraform:
    return Terraform(text if text is not None else ENV_MAIN.read_text(), name_prefix=name_prefix, variables=variables)


# --- calls -> IAM ---------------------------------------------------------------------------------
S3_OBJECT_ACTIONS = {
    "GetObject": "s3:GetObject", "HeadObject": "s3:GetObject", "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject", "UploadPart": "s3:PutObject", "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload", "DeleteObject": "s3:DeleteObject",
    "UploadPartCopy": "s3:PutObject",
}
S3_BUCKET_ACTIONS = {
    "ListObjectsV2": "s3:ListBucket", "ListObjects": "s3:ListBucket", "HeadBucket": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions", "CreateBucket": "s3:CreateBucket",
    "GetBucketNotificationConfiguration": "s3:GetBucketNotification",
    "PutBucketNotificationConfiguration": "s3:PutBucketNotification",
    "GetBucketLocation": "s3:GetBucketLocation",
}
SQS_ACTIONS = {"SendMessageBatch": "sqs:SendMessage", "DeleteMessageBatch": "sqs:DeleteMessage",
               "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility"}
DYNAMODB_BATCH = {"BatchGetItem": "dynamodb:BatchGetItem", "BatchWriteItem": "dynamodb:BatchWriteItem"}


def queue_arn(url_or_name: str, *, region: str = REGION, account: str = ACCOUNT) -> str:
    name = urlparse(url_or_name).path.rstrip("/").rsplit("/", 1)[-1] if "/" in url_or_name else url_or_name
    if url_or_name.startswith("arn:"):
        return url_or_name
    return f"arn:aws:sqs:{region}:{account}:{name}"


def required(call: dict, *, region: str = REGION, account: str = ACCOUNT) -> list[Need]:
    """The (action, resource) pairs IAM evaluates for one recorded call."""
    service, op, p = call["service"], call["operation"], call.get("params", {})
    why = f"{op} ({call.get('status')}{' ' + call['code'] if call.get('code') else ''})"
    if service == "s3":
        bucket = p.get("Bucket", "")
        if op in S3_OBJECT_ACTIONS:
            needs = [Need(S3_OBJECT_ACTIONS[op], f"arn:aws:s3:::{bucket}/{p.get('Key', '')}", why)]
            if op in ("GetObject", "HeadObject") and call.get("status") == 404 and call.get("code") != "NoSuchBucket":
                needs.append(Need("s3:ListBucket", f"arn:aws:s3:::{bucket}", why + ": a 404 needs s3:ListBucket"))
            return needs
        if op == "CopyObject":
            return [Need("s3:GetObject", f"arn:aws:s3:::{p.get('CopySource', '')}", why),
                    Need("s3:PutObject", f"arn:aws:s3:::{bucket}/{p.get('Key', '')}", why)]
        if op in S3_BUCKET_ACTIONS:
            return [Need(S3_BUCKET_ACTIONS[op], f"arn:aws:s3:::{bucket}", why)]
        return [Need(f"s3:{op}", f"arn:aws:s3:::{bucket}", why)]
    if service == "sqs":
        action = SQS_ACTIONS.get(op, f"sqs:{op}")
        if op in ("ListQueues",):
            return [Need(action, "*", why)]
        target = p.get("QueueUrl") or p.get("QueueName") or p.get("SourceArn") or "*"
        needs = [Need(action, queue_arn(target, region=region, account=account), why)]
        if p.get("DestinationArn"):
            needs.append(Need("sqs:SendMessage", p["DestinationArn"], why + " (destination)"))
        return needs
    if service == "dynamodb":
        tables = p.get("Tables") or ([p["TableName"]] if p.get("TableName") else [])
        action = DYNAMODB_BATCH.get(op, f"dynamodb:{op}")
        if not tables:
            return [Need(action, "*", why)]
        return [Need(action, f"arn:aws:dynamodb:{region}:{account}:table/{t}", why) for t in tables]
    if service == "s3control":  # S3 Batch Operations: actions in the s3 namespace; the job's role is passed
        needs = [Need(f"s3:{op}", "*", why)]
        return needs + ([Need("iam:PassRole", "*", why)] if op == "CreateJob" else [])
    if (service, op) == ("sts", "GetCallerIdentity"):
        return []  # needs no permission
    return [Need(f"{service}:{op}", "*", why)]


@dataclass
class Verdict:
    denied: list[tuple[str, Need]]  # (who, need)
    unused: list[tuple[str, str, str, str]]  # (who, sid, action, resource pattern)


def evaluate(policies: dict[str, list[Statement]], needs: dict[str, list[Need]]) -> Verdict:
    """Which needs no statement allows, and which (statement, action, resource) grants no need used."""
    denied: list[tuple[str, Need]] = []
    used: set[tuple[str, str, str, str]] = set()
    for who, wanted in needs.items():
        statements = policies.get(who, [])
        for need in wanted:
            matched = False
            for s in statements:
                if not s.allows(need.action, need.resource):
                    continue
                matched = True
                for a in s.actions:
                    for r in s.resources:
                        if _match(a, need.action, case=False) and _match(r, need.resource, case=True):
                            used.add((who, s.sid, a, r))
            if not matched:
                denied.append((who, need))
    unused = [(who, s.sid, a, r) for who, statements in policies.items() for s in statements
              for a in s.actions for r in s.resources if (who, s.sid, a, r) not in used]
    return Verdict(denied=denied, unused=unused)
