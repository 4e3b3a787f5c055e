"""Record every AWS call the local Lambdas and eltops make, for the policy-coverage check.

With `ELT_CALL_RECORD=<file>` set, `attach(client, who=…)` registers botocore event hooks on a
client: `provide-client-params` keeps the call's resource parameters (bucket, key, queue, table),
`after-call` appends one JSON line with who made it (`ingest`, `transform`, `eltops`), the service,
the operation, those parameters, the HTTP status and the error code. Errors are recorded too: a
404 the code relies on is what makes `s3:ListBucket` necessary. Without the variable nothing is
registered. Lines are appended with one write each, so several processes (`eltops local up`,
`eltops` commands) can share one file.

`tests/test_policy_coverage.py` reads the file at the end of the test run and checks every call
against the IAM policies built from the Terraform and the on-call permission list in runbooks/.
"""

from __future__ import annotations

import json
import os

RECORD_ENV = "ELT_CALL_RECORD"
# The parameters that name what a call touches (the resource of its IAM action).
RESOURCE_PARAMS = ("Bucket", "Key", "CopySource", "Prefix", "QueueUrl", "QueueName", "TableName", "SourceArn",
                   "DestinationArn", "TaskHandle", "JobId", "AccountId", "FunctionName", "UUID")


def attach(client, *, who: str):
    """`client` with call recording when ELT_CALL_RECORD is set; unchanged otherwise."""
    path = os.environ.get(RECORD_ENV)
    if not path:
        return client
    service = client.meta.service_model.service_name

    def keep_params(params, context, **_):
        found = {name: params[name] for name in RESOURCE_PARAMS if isinstance(params.get(name), str | dict)}
        if isinstance(found.get("CopySource"), dict):
            found["CopySource"] = f"{found['CopySource'].get('Bucket')}/{found['CopySource'].get('Key')}"
        if isinstance(params.get("RequestItems"), dict):  # BatchGetItem / BatchWriteItem
            found["Tables"] = sorted(params["RequestItems"])
        context["elt_call_params"] = found

    def record(http_response, parsed, model, context, **_):
        error = (parsed or {}).get("Error", {}) if isinstance(parsed, dict) else {}
        line = json.dumps({"who": who, "service": service, "operation": model.name,
                           "params": context.get("elt_call_params", {}),
                           "status": getattr(http_response, "status_code", None),
                           "code": error.get("Code")}, default=str) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    # The client's own event emitter: every operation of this client, whatever its event prefix.
    client.meta.events.register("provide-client-params", keep_params)
    client.meta.events.register("after-call", record)
    return client
