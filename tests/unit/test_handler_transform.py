"""The transform handler (lambdas/transform/app.py) on in-process moto holding only what it touches:
the bronze and silver buckets and the ledger table (no queues, no provisioning), so that each test
takes milliseconds and `make mutation` can run every mutant of the module against them. What is
checked is what the transform leaves behind: silver and quarantine objects with their metadata,
ledger items, the partial batch response, the metrics, and the fields of its log lines an operator
searches by (object, etag, message id, reason, problem). AWS errors come from botocore before-send
hooks (as ops/local/faults.py makes them), on clients that do not retry, so an injected error
reaches the handler at once. tests/functional/test_transform_handler.py runs the same handler on
the provisioned pipeline."""

from __future__ import annotations

import dataclasses
import gzip
import json
from urllib.parse import quote, unquote

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from moto import mock_aws
from moto.core.base_backend import BackendDict

from lambdas.shared import schemas, steps, work_unit
from lambdas.shared.ledger import Ledger
from lambdas.transform import app
from ops.local.faults import THROTTLE, FaultInjector
from tests.conftest import emf_metrics, log_lines, logs

REGION = "us-east-1"
BRONZE, SILVER, TABLE = "bronze-bucket", "silver-bucket", "ledger"
# One session for every test's clients: a first client from a new session costs ~0.1-0.4 s.
SESSION = boto3.session.Session()
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})
KEY = "bronze/orders/dt=2025-01-02/a.jsonl"
SILVER_KEY = "silver/orders/dt=2025-01-02/a.parquet"
QUARANTINE_KEY = "quarantine/orders/dt=2025-01-02/a.jsonl"


def order(n: int, **changes) -> dict:
    return {"order_id": f"o{n}", "customer": {"customer_id": f"c{n}"},
            "lines": [{"sku": "A", "quantity": n, "unit_price": 2.5}], "currency": "EUR",
            "total_amount": 2.5 * n, "placed_at": "2025-01-02T00:00:00Z", **changes}


def jsonl(*events) -> bytes:
    return b"".join((e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n" for e in events)


def good(n: int, start: int = 1) -> bytes:
    return jsonl(*(order(i) for i in range(start, start + n)))


class _Raw:
    """Enough of a urllib3 response for botocore to read a body from (as in ops/local/faults.py)."""

    def __init__(self, body: bytes):
        self.body = body

    def stream(self, *args, **kwargs):
        yield self.body


def _text(request) -> str:
    """A request's URL (decoded) and, for a JSON request, its body."""
    body = request.body
    body = body.decode("utf-8", "replace") if isinstance(body, bytes) else body if isinstance(body, str) else ""
    return unquote(request.url) + body


def answer(client, operation: str, *, status: int, code: str = "", where: str = "", times: int = 99,
           then=None) -> list:
    """Answer `operation` calls whose URL or body holds `where` with an error (at most `times`;
    `then()` runs before each answer), the way ops/local/faults.py does: a botocore before-send
    hook, so the real parsing runs. Returns the list of requests answered."""
    answered = []
    service = client.meta.service_model.service_name

    def before_send(request, **kwargs):
        if where not in _text(request) or len(answered) >= times:
            return None
        answered.append(request.url)
        if then is not None:
            then()
        if service == "s3":
            payload = b"" if operation == "HeadObject" else (
                f"<Error><Code>{code}</Code><Message>injected {code}</Message></Error>".encode())
            headers = {"Content-Type": "application/xml"}
        else:
            payload = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}",
                                  "message": f"injected {code}"}).encode()
            headers = {"Content-Type": "application/x-amz-json-1.0"}
        response = AWSResponse(request.url, status, headers, _Raw(payload))
        # Every before-send handler runs and the first answer wins: point the request away from
        # in-process moto's handler (after this one), or the refused call would be applied too.
        request.url = "https://fault-injected.invalid/"
        return response

    on_send(client, operation, before_send)
    return answered


class Transform:
    def __init__(self, s3, ddb, capsys):
        self.s3, self.ddb, self.capsys = s3, ddb, capsys
        self.ledger = Ledger(ddb, TABLE)

    def put(self, key: str, body: bytes, metadata: dict | None = None) -> str:
        return self.s3.put_object(Bucket=BRONZE, Key=key, Body=body, Metadata=metadata or {})["ETag"].strip('"')

    @staticmethod
    def unit(key: str, etag: str, *, sequencer: str = "", origin: str = "s3-event", bucket: str = BRONZE):
        return work_unit.build(bucket=bucket, key=key, etag=etag, size=1, origin=origin, sequencer=sequencer)

    def message(self, message_id: str | None, key: str, etag: str, **unit) -> dict:
        return self.raw_message(message_id, self.unit(key, etag, **unit).body())

    @staticmethod
    def raw_message(message_id: str | None, body: str) -> dict:
        record = {"eventSource": "aws:sqs", "body": body, "receiptHandle": "r"}
        return {**record, "messageId": message_id} if message_id is not None else record

    def run(self, *records, context=None) -> dict:
        return app.handler({"Records": list(records)}, context)

    def one(self, key: str, etag: str, **unit) -> dict:
        return self.run(self.message("m", key, etag, **unit))

    def silver(self, key: str = SILVER_KEY) -> tuple[pa.Table, dict]:
        got = self.s3.get_object(Bucket=SILVER, Key=key)
        table = pq.read_table(pa.BufferReader(got["Body"].read()))
        return table, {"metadata": got["Metadata"], "content_type": got["ContentType"]}

    def silver_keys(self) -> list[str]:
        return [o["Key"] for o in self.s3.list_objects_v2(Bucket=SILVER).get("Contents", [])]

    def item(self, key: str, etag: str, bucket: str = BRONZE) -> dict | None:
        return self.ledger.get(bucket=bucket, key=key, etag=etag)

    def lines(self) -> list[dict]:
        return log_lines(self.capsys)


def metrics(lines: list[dict]) -> dict:
    return emf_metrics(lines, function="transform")


def counts(lines: list[dict]) -> dict:
    """metrics() without the durations (their values are timings)."""
    return {k: v for k, v in metrics(lines).items() if k[0] != "DurationPerObject"}


def by_message(lines: list[dict], message: str) -> list[dict]:
    return [line for line in logs(lines) if line["message"] == message]


@pytest.fixture(scope="module")
def clients():
    """One moto and one pair of clients for the module: starting moto and making two clients cost
    ~25 ms, a quarter of a test, and every mutant of `make mutation` runs up to all of them.
    `transform` gives each test empty buckets and an empty table all the same."""
    with mock_aws():
        yield {"s3": SESSION.client("s3", region_name=REGION, config=NO_RETRIES),
               "dynamodb": SESSION.client("dynamodb", region_name=REGION, config=NO_RETRIES)}


@pytest.fixture
def transform(clients, capsys, monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.setattr(steps, "HOOK", None)
    BackendDict.reset()  # the last test's buckets, objects and table, as a new mock_aws() would
    s3, ddb = clients["s3"], clients["dynamodb"]
    for bucket in (BRONZE, SILVER):
        s3.create_bucket(Bucket=bucket)
    ddb.create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "etag", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "etag", "AttributeType": "S"}])
    app._DEPS = app.build_deps({"ELT_SILVER_BUCKET": SILVER, "ELT_LEDGER_TABLE": TABLE}, clients.__getitem__)
    harness = Transform(s3, ddb, capsys)
    capsys.readouterr()
    try:
        yield harness
    finally:
        app.reset()
        while _HOOKS:
            client, event, handler = _HOOKS.pop()
            client.meta.events.unregister(event, handler)


_HOOKS: list = []


def on_send(client, operation: str, handler) -> None:
    """Call `handler` before each `operation` request the client sends, for this test only (the
    clients outlive it: a hook left behind would answer the next test's calls)."""
    event = f"before-send.{client.meta.service_model.service_name}.{operation}"
    client.meta.events.register_first(event, handler)
    _HOOKS.append((client, event, handler))


def hook_at(monkeypatch, step: str, action, times: int = 1) -> list:
    """Run `action()` at a named step of the handler (the first `times` times)."""
    seen = []

    def hook(name, context):
        if name == step:
            seen.append(context)
            if len(seen) <= times:
                action()

    monkeypatch.setattr(steps, "HOOK", hook)
    return seen


class Clock:
    """time.monotonic for app.py: each look moves it on by `step` seconds."""

    def __init__(self, step: float = 0.25):
        self.now, self.step = 100.0, step

    def monotonic(self) -> float:
        self.now += self.step
        return self.now


class Context:
    """A Lambda context whose remaining time drops by `per_call_ms` each time it is asked."""

    aws_request_id = "req-1"

    def __init__(self, remaining_ms: int = 900_000, per_call_ms: int = 0):
        self.remaining_ms, self.per_call_ms = remaining_ms, per_call_ms

    def get_remaining_time_in_millis(self) -> int:
        self.remaining_ms -= self.per_call_ms
        return self.remaining_ms


SHIPMENTS_KEY = "bronze/shipments/dt=2025-01-03/b.json.gz"


def shipments(n: int) -> list[dict]:
    from ops.gen_events import generate

    return [json.loads(text) for ok, text in generate(type_="shipments", count=n, seed=1) if ok][:n]


# --- a good batch ----------------------------------------------------------------------------------
def test_a_good_batch_is_written_to_silver_recorded_done_metered_and_logged(transform, monkeypatch):
    monkeypatch.setattr(app, "time", Clock(0.1234))
    body_a = jsonl(order(1), b"{oops", order(2))
    etag_a = transform.put(KEY, body_a)
    array = json.dumps(shipments(3)).encode()
    etag_b = transform.put(SHIPMENTS_KEY, gzip.compress(array))
    result = transform.run(transform.message("m-a", KEY, etag_a, sequencer="00AB"),
                           transform.message("m-b", SHIPMENTS_KEY, etag_b, origin="replay-sqs"), context=Context())
    assert result == {"batchItemFailures": []}

    table, got = transform.silver()
    assert table.column("order_id").to_pylist() == ["o1", "o2"]
    assert got == {"metadata": {"source-key": quote(KEY, safe="/"), "source-etag": etag_a, "source-sequencer": "00AB", "rows": "2"},
                   "content_type": "application/vnd.apache.parquet"}
    quarantine = transform.s3.get_object(Bucket=SILVER, Key=QUARANTINE_KEY)
    assert quarantine["ContentType"] == "application/x-ndjson" and quarantine["Metadata"] == got["metadata"]
    [reject] = [json.loads(x) for x in quarantine["Body"].read().splitlines()]
    assert (reject["line"], reject["raw"]) == (2, "{oops")
    table_b, got_b = transform.silver("silver/shipments/dt=2025-01-03/b.parquet")
    assert table_b.num_rows == 3 and got_b["metadata"]["source-sequencer"] == ""
    assert sorted(transform.silver_keys()) == [QUARANTINE_KEY, SILVER_KEY, "silver/shipments/dt=2025-01-03/b.parquet"]

    item = transform.item(KEY, etag_a)
    assert (item["status"], item["outcome"], item["rows"], item["rejected_rows"], item["silver_key"]) == (
        "DONE", "written", 2, 1, SILVER_KEY)
    assert (transform.item(SHIPMENTS_KEY, etag_b)["rows"], transform.item(SHIPMENTS_KEY, etag_b)["rejected_rows"]) == (
        3, 0)

    lines = transform.lines()
    assert metrics(lines) == {
        ("Objects", "orders", None): 1, ("RowsWritten", "orders", None): 2, ("RowsQuarantined", "orders", None): 1,
        ("BytesIn", "orders", None): len(body_a), ("DurationPerObject", "orders", None): [370.2],
        ("Objects", "shipments", None): 1, ("RowsWritten", "shipments", None): 3,
        ("RowsQuarantined", "shipments", None): 0, ("BytesIn", "shipments", None): len(array),
        ("DurationPerObject", "shipments", None): [370.2]}
    assert {(line["aws_request_id"], line["function"]) for line in lines} == {("req-1", "transform")}
    done = {line["object"]: line for line in by_message(lines, "transformed")}
    assert {k: done[f"s3://{BRONZE}/{KEY}"][k] for k in (
        "level", "etag", "origin", "seconds", "outcome", "rows", "rejected_rows", "blank_lines", "format", "bytes_in",
        "silver_key", "source_etag")} == {
        "level": "INFO", "etag": etag_a, "origin": "s3-event", "seconds": 0.123, "outcome": "written", "rows": 2,
        "rejected_rows": 1, "blank_lines": 0, "format": "jsonl", "bytes_in": len(body_a), "silver_key": SILVER_KEY,
        "source_etag": etag_a}
    shipped = done[f"s3://{BRONZE}/{SHIPMENTS_KEY}"]
    assert (shipped["origin"], shipped["format"], shipped["rows"]) == ("replay-sqs", "json", 3)
    [rejected] = by_message(lines, "line rejected")
    assert {k: rejected[k] for k in ("level", "object", "line", "problem", "fields")} == {
        "level": "WARNING", "object": f"s3://{BRONZE}/{KEY}", "line": 2, "problem": "malformed-json", "fields": []}


def test_an_empty_or_recordless_event_is_an_empty_partial_batch_response(transform):
    assert app.handler({}) == {"batchItemFailures": []}
    assert app.handler({"Records": None}) == {"batchItemFailures": []}
    assert transform.lines() == []


def test_a_record_without_message_id_that_succeeds_is_fine_but_one_that_fails_fails_the_whole_batch(transform):
    etag = transform.put(KEY, good(1))
    assert transform.run(transform.message(None, KEY, etag)) == {"batchItemFailures": []}
    transform.lines()
    with pytest.raises(RuntimeError, match="^a failed record has no messageId; failing the whole batch$") as raised:
        transform.run(transform.message("m1", KEY, etag), transform.raw_message(None, "{"))
    assert isinstance(raised.value.__cause__, app.ItemFailed)
    lines = transform.lines()
    assert counts(lines) == {("Objects", "orders", None): 1, ("RowsWritten", "orders", None): 1,
                             ("RowsQuarantined", "orders", None): 0, ("BytesIn", "orders", None): len(good(1)),
                             ("Failed", "unknown", None): 1}  # flushed although the batch failed


# --- poison messages -------------------------------------------------------------------------------
def test_each_poison_message_fails_only_its_own_item_and_the_ledger_says_why(transform):
    ok1, ok2 = "bronze/orders/dt=2025-01-02/ok1.jsonl", "bronze/orders/dt=2025-01-02/ok2.jsonl"
    unknown = "bronze/invoices/dt=2025-01-02/i.jsonl"
    corrupt = "bronze/orders/dt=2025-01-02/corrupt.jsonl.gz"
    etags = {k: transform.put(k, body) for k, body in (
        (ok1, good(2)), (ok2, good(1)), (unknown, b'{"a": 1}\n'), (corrupt, b"\x1f\x8b\x08\x00not really gzip"))}
    result = transform.run(
        transform.message("m-ok1", ok1, etags[ok1]),
        transform.raw_message("m-garbage", '{"v": 9}'),
        transform.message("m-unknown", unknown, etags[unknown], sequencer="0A"),
        transform.message("m-corrupt", corrupt, etags[corrupt]),
        transform.message("m-ok2", ok2, etags[ok2]))
    assert result == {"batchItemFailures": [{"itemIdentifier": m} for m in ("m-garbage", "m-unknown", "m-corrupt")]}
    assert (transform.item(ok1, etags[ok1])["status"], transform.item(ok2, etags[ok2])["status"]) == ("DONE", "DONE")
    failed = transform.item(unknown, etags[unknown])
    assert failed["status"] == "FAILED"
    assert failed["last_error"] == "UnknownType: unknown event type 'invoices'; known types: orders, shipments"
    assert transform.item(corrupt, etags[corrupt])["last_error"].startswith("UnreadableObject: ")
    assert transform.ddb.scan(TableName=TABLE)["Count"] == 4  # nothing for the body that is no work unit
    lines = transform.lines()
    assert {k: v for k, v in counts(lines).items() if k[0] == "Failed"} == {
        ("Failed", "unknown", None): 1, ("Failed", "invoices", None): 1, ("Failed", "orders", None): 1}
    assert counts(lines)[("Objects", "orders", None)] == 2
    errors = {line["message_id"]: line for line in by_message(lines, "item failed")}
    assert sorted(errors) == ["m-corrupt", "m-garbage", "m-unknown"]
    assert all(line["level"] == "ERROR" for line in errors.values())
    assert errors["m-garbage"]["error"].startswith("ItemFailed: invalid work unit: ")
    assert errors["m-unknown"]["error"] == failed["last_error"]


# --- AWS errors on one item ------------------------------------------------------------------------
def two_objects(transform) -> tuple[tuple[str, str], tuple[str, str]]:
    first, second = "bronze/orders/dt=2025-01-02/first.jsonl", "bronze/orders/dt=2025-01-02/second.jsonl"
    return (first, transform.put(first, good(1))), (second, transform.put(second, good(2)))


def test_a_throttled_read_fails_only_its_own_item(transform):
    (first, etag1), (second, etag2) = two_objects(transform)
    faults = FaultInjector().fail(THROTTLE, service="s3", operation="GetObject", nth=2)
    faults.attach(transform.s3)
    result = transform.run(transform.message("m1", first, etag1), transform.message("m2", second, etag2))
    assert result == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert dict(faults.injected) == {"s3.GetObject.throttle": 1}
    assert transform.item(first, etag1)["status"] == "DONE"
    failed = transform.item(second, etag2)
    assert failed["status"] == "FAILED"
    assert failed["last_error"] == (f"ItemFailed: SlowDown on s3://{BRONZE}/{second}: "
                                    "Please reduce your request rate.")
    assert transform.silver_keys() == ["silver/orders/dt=2025-01-02/first.parquet"]


def test_a_throttled_ledger_update_fails_only_its_item_and_the_failure_is_recorded(transform):
    (first, etag1), (second, etag2) = two_objects(transform)
    answered = answer(transform.ddb, "UpdateItem", status=400, code="ThrottlingException", where=second, times=1)
    result = transform.run(transform.message("m1", first, etag1), transform.message("m2", second, etag2))
    assert result == {"batchItemFailures": [{"itemIdentifier": "m2"}]} and len(answered) == 1
    assert transform.item(first, etag1)["status"] == "DONE"
    failed = transform.item(second, etag2)
    assert failed["status"] == "FAILED" and failed["attempts"] == 1
    assert failed["last_error"] == ("ThrottlingException: An error occurred (ThrottlingException) when calling the "
                                    "UpdateItem operation (reached max retries: 0): injected ThrottlingException")


def test_a_failure_the_ledger_cannot_record_is_logged_and_still_fails_the_item(transform):
    (first, etag1), (second, etag2) = two_objects(transform)
    answer(transform.ddb, "UpdateItem", status=400, code="ThrottlingException", where=second)
    result = transform.run(transform.message("m1", first, etag1), transform.message("m2", second, etag2))
    assert result == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert transform.item(second, etag2) is None and transform.item(first, etag1)["status"] == "DONE"
    lines = transform.lines()
    [unrecorded] = by_message(lines, "could not record the failure in the ledger")
    assert unrecorded["level"] == "ERROR" and "ThrottlingException" in unrecorded["error"]
    [failed] = by_message(lines, "item failed")
    assert failed["message_id"] == "m2" and failed["error"].startswith("ThrottlingException: ")


DENIED = ("access denied (403) on s3://{where}: the transform role needs s3:GetObject on the key and "
          "s3:ListBucket on the bucket (without it S3 answers 403 for a missing key); see "
          "infra/terraform/envs/dev/main.tf")


@pytest.mark.parametrize("code", ["AccessDenied", "Forbidden", ""])
def test_a_missing_key_answered_403_without_list_bucket_fails_the_item_naming_the_permissions(transform, code):
    """S3 answers 404 NoSuchKey for a missing key only to a caller with s3:ListBucket; without it, 403:
    never a deleted source."""
    (first, etag1), _ = two_objects(transform)
    gone = "bronze/orders/dt=2025-01-02/gone.jsonl"
    answer(transform.s3, "GetObject", status=403, code=code, where=gone)
    result = transform.run(transform.message("m1", gone, "0" * 32), transform.message("m2", first, etag1))
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    failed = transform.item(gone, "0" * 32)
    assert failed["status"] == "FAILED" and "outcome" not in failed
    assert failed["last_error"] == "ItemFailed: " + DENIED.format(where=f"{BRONZE}/{gone}")


def test_a_missing_key_answered_404_is_done_as_a_deleted_source(transform):
    gone = "bronze/orders/dt=2025-01-02/gone.jsonl"
    assert transform.one(gone, "0" * 32, sequencer="0C") == {"batchItemFailures": []}
    item = transform.item(gone, "0" * 32)
    assert (item["status"], item["outcome"], item["silver_key"], item["rows"], item["rejected_rows"]) == (
        "DONE", "source-deleted", "", 0, 0)
    lines = transform.lines()
    [warning] = by_message(lines, "source deleted since queued; skipped")
    assert (warning["level"], warning["object"]) == ("WARNING", f"s3://{BRONZE}/{gone}")
    assert counts(lines) == {("ObjectsSkipped", "orders", "source-deleted"): 1}
    assert transform.silver_keys() == []


def test_a_work_unit_naming_a_bucket_that_does_not_exist_fails_naming_the_bucket(transform):
    assert transform.run(transform.message("m", KEY, "e" * 32, bucket="typo-bucket")) == {
        "batchItemFailures": [{"itemIdentifier": "m"}]}
    item = transform.item(KEY, "e" * 32, bucket="typo-bucket")
    assert item["status"] == "FAILED"
    assert item["last_error"] == (
        f"ItemFailed: bucket 'typo-bucket' does not exist (NoSuchBucket) for s3://typo-bucket/{KEY}: the work unit "
        "names the wrong bucket; replay or redrive it against the right environment's bronze bucket")


def test_access_denied_on_the_silver_head_fails_the_item_before_anything_is_written(transform):
    etag = transform.put(KEY, good(1))
    answer(transform.s3, "HeadObject", status=403, where=SILVER_KEY)
    assert transform.one(KEY, etag) == {"batchItemFailures": [{"itemIdentifier": "m"}]}
    assert transform.item(KEY, etag)["last_error"] == "ItemFailed: " + DENIED.format(where=f"{SILVER}/{SILVER_KEY}")
    assert transform.silver_keys() == []


def test_a_server_error_on_the_silver_write_fails_the_item(transform):
    etag = transform.put(KEY, good(1))
    answer(transform.s3, "PutObject", status=500, code="InternalError", where=SILVER_KEY)
    assert transform.one(KEY, etag) == {"batchItemFailures": [{"itemIdentifier": "m"}]}
    assert transform.item(KEY, etag)["last_error"] == (
        "ClientError: An error occurred (InternalError) when calling the PutObject operation (reached max retries: 0): "
        "injected InternalError")


@pytest.mark.parametrize("error, where, expected", [
    ({"Code": "SlowDown", "Message": "slow"}, {}, "SlowDown on s3://b/k: slow"),
    ({}, {"HTTPStatusCode": 418}, "418 on s3://b/k: An error occurred (Unknown) when calling the GetObject "
                                  "operation: Unknown"),
    ({"Code": "X"}, {}, "X on s3://b/k: An error occurred (X) when calling the GetObject operation: Unknown"),
    ({}, {}, "? on s3://b/k: An error occurred (Unknown) when calling the GetObject operation: Unknown"),
    ({"Code": "403"}, {}, DENIED.format(where="b/k")),
])
def test_an_s3_error_s_reason_names_its_code_and_the_object(error, where, expected):
    from botocore.exceptions import ClientError

    exc = ClientError({"Error": error, "ResponseMetadata": where}, "GetObject")
    assert app.s3_read_error(exc, bucket="b", key="k") == expected
    exc.response = {k: v for k, v in exc.response.items() if v}  # an answer that leaves out an empty part
    assert app.s3_read_error(exc, bucket="b", key="k") == expected


# --- stale versions: the bronze object changed since its work unit ---------------------------------
PLAIN_412 = "the object changed since this unit was made (412 on the IfMatch read)"


def test_a_version_overwritten_since_its_work_unit_is_superseded_and_nothing_is_written(transform):
    old = transform.put(KEY, good(1))
    transform.put(KEY, good(2))
    assert transform.one(KEY, old, sequencer="0B") == {"batchItemFailures": []}
    item = transform.item(KEY, old)
    assert (item["status"], item["outcome"], item["superseded_reason"], item["silver_key"], item["rows"]) == (
        "DONE", "superseded", PLAIN_412, "", 0)
    assert transform.silver_keys() == []
    lines = transform.lines()
    [warning] = by_message(lines, "superseded: the object changed since; skipped")
    assert (warning["level"], warning["object"], warning["reason"]) == ("WARNING", f"s3://{BRONZE}/{KEY}", PLAIN_412)
    assert counts(lines) == {("Superseded", "orders", None): 1}


def test_a_stale_read_of_the_version_silver_holds_puts_the_current_version_back(transform):
    """A writer of this version died before its check after the write: silver kept the version the
    source has left, and the newer version's event may be gone, so the current version is transformed."""
    old = transform.put(KEY, good(1))
    assert transform.one(KEY, old, sequencer="10") == {"batchItemFailures": []}
    new = transform.put(KEY, good(3))
    transform.lines()
    assert transform.one(KEY, old, sequencer="10") == {"batchItemFailures": []}
    table, got = transform.silver()
    assert table.num_rows == 3 and got["metadata"]["source-etag"] == new
    reason = f"{PLAIN_412}; silver still held this version, so {new} was transformed in its place"
    assert transform.item(KEY, old)["superseded_reason"] == reason
    current = transform.item(KEY, new)
    assert (current["status"], current["outcome"], current["rows"], current["silver_key"]) == (
        "DONE", "written", 3, SILVER_KEY)
    [line] = by_message(transform.lines(), "transformed the current version in place of a superseded one")
    assert (line["object"], line["etag"], line["rows"]) == (f"s3://{BRONZE}/{KEY}", new, 3)


def test_a_stale_read_while_silver_holds_a_version_written_without_an_order_puts_the_current_one_back(transform):
    first = transform.put(KEY, good(1))
    assert transform.one(KEY, first) == {"batchItemFailures": []}  # a redrive: no sequencer
    stale = transform.put(KEY, good(2))
    current = transform.put(KEY, good(4))
    assert transform.one(KEY, stale, sequencer="20") == {"batchItemFailures": []}
    assert transform.silver()[1]["metadata"]["source-etag"] == current
    assert transform.item(KEY, stale)["superseded_reason"] == (
        f"{PLAIN_412}; silver still held {first} (written without an order), so {current} was transformed in its place")


def test_a_stale_read_leaves_silver_alone_when_it_holds_an_ordered_other_version_a_deleted_one_or_another_key(
        transform):
    first = transform.put(KEY, good(1))
    assert transform.one(KEY, first, sequencer="10") == {"batchItemFailures": []}
    stale = transform.put(KEY, good(2))
    transform.put(KEY, good(3))
    assert transform.one(KEY, stale, sequencer="20") == {"batchItemFailures": []}  # silver: first, in order
    assert transform.item(KEY, stale)["superseded_reason"] == PLAIN_412
    assert transform.silver()[1]["metadata"]["source-etag"] == first

    # Silver holds this very version, but the source has been deleted since: nothing to put back.
    other = "bronze/orders/dt=2025-01-02/b.jsonl"
    mine = transform.put(other, good(1))
    assert transform.one(other, mine, sequencer="10") == {"batchItemFailures": []}
    transform.s3.delete_object(Bucket=BRONZE, Key=other)
    answer(transform.s3, "GetObject", status=412, code="PreconditionFailed", where=other)  # deleted after the 412
    assert transform.one(other, mine, sequencer="10") == {"batchItemFailures": []}
    assert transform.item(other, mine)["superseded_reason"] == PLAIN_412
    assert transform.silver("silver/orders/dt=2025-01-02/b.parquet")[1]["metadata"]["source-etag"] == mine


def test_a_stale_read_where_silver_holds_the_same_etag_of_another_key_is_not_repaired(transform):
    json_key = "bronze/orders/dt=2025-01-02/a.json"
    etag = transform.put(json_key, good(1))
    assert transform.one(json_key, etag) == {"batchItemFailures": []}  # silver holds a.json's rows, no order
    transform.put(KEY, good(1))
    transform.put(KEY, good(2))
    assert transform.one(KEY, etag) == {"batchItemFailures": []}  # a.jsonl's stale unit: 412
    assert transform.item(KEY, etag)["superseded_reason"] == PLAIN_412
    assert transform.silver()[1]["metadata"]["source-key"] == quote(json_key, safe="/")


# --- duplicate deliveries and the order between events ---------------------------------------------
def test_a_message_delivered_again_overwrites_the_same_silver_object(transform):
    etag = transform.put(KEY, good(2))
    message = transform.message("m", KEY, etag, sequencer="10")
    assert transform.run(message, message) == {"batchItemFailures": []}
    assert transform.run(message) == {"batchItemFailures": []}
    assert transform.silver_keys() == [SILVER_KEY]
    table, got = transform.silver()
    assert table.num_rows == 2 and got["metadata"]["source-sequencer"] == "10"
    item = transform.item(KEY, etag)
    assert (item["status"], item["outcome"], item["rows"], item["attempts"]) == ("DONE", "written", 2, 3)
    assert counts(transform.lines())[("Objects", "orders", None)] == 3


def test_an_older_event_than_the_one_silver_holds_is_superseded_and_leaves_silver_alone(transform):
    etag = transform.put(KEY, good(2))
    assert transform.one(KEY, etag, sequencer="20") == {"batchItemFailures": []}
    before = transform.s3.head_object(Bucket=SILVER, Key=SILVER_KEY)["ETag"]
    transform.lines()
    assert transform.one(KEY, etag, sequencer="1F") == {"batchItemFailures": []}
    assert transform.s3.head_object(Bucket=SILVER, Key=SILVER_KEY)["ETag"] == before
    lines = transform.lines()
    [warning] = by_message(lines, "superseded: silver holds a newer version; skipped")
    reason = f"silver holds {etag} from a newer event (sequencer 20 > 1F)"
    assert (warning["level"], warning["object"], warning["reason"]) == ("WARNING", f"s3://{BRONZE}/{KEY}", reason)
    assert counts(lines) == {("Superseded", "orders", None): 1}
    older = "bronze/orders/dt=2025-01-02/older.jsonl"
    etag2 = transform.put(older, good(1))
    transform.s3.put_object(Bucket=SILVER, Key="silver/orders/dt=2025-01-02/older.parquet", Body=b"x",
                            Metadata={"source-key": older, "source-sequencer": "30"})
    assert transform.one(older, etag2, sequencer="10") == {"batchItemFailures": []}
    item = transform.item(older, etag2)
    assert (item["outcome"], item["superseded_reason"]) == (
        "superseded", "silver holds a version from a newer event (sequencer 30 > 10)")


def test_the_same_event_again_and_a_newer_one_are_written(transform):
    etag = transform.put(KEY, good(2))
    for sequencer in ("20", "20", "21"):
        assert transform.one(KEY, etag, sequencer=sequencer) == {"batchItemFailures": []}
        assert transform.silver()[1]["metadata"]["source-sequencer"] == sequencer
    assert counts(transform.lines())[("Objects", "orders", None)] == 3


def test_a_unit_without_an_order_keeps_the_order_silver_records_for_the_same_version_only(transform):
    etag = transform.put(KEY, good(2))
    assert transform.one(KEY, etag, sequencer="20") == {"batchItemFailures": []}
    assert transform.one(KEY, etag, origin="redrive") == {"batchItemFailures": []}
    assert transform.silver()[1]["metadata"] == {"source-key": quote(KEY, safe="/"), "source-etag": etag, "source-sequencer": "20",
                                                 "rows": "2"}
    newer = transform.put(KEY, good(3))
    assert transform.one(KEY, newer, origin="replay-sqs") == {"batchItemFailures": []}
    assert transform.silver()[1]["metadata"] == {"source-key": quote(KEY, safe="/"), "source-etag": newer, "source-sequencer": "",
                                                 "rows": "3"}


def test_a_newer_event_of_the_version_owning_its_ledger_item_keeps_it_and_silver_is_still_written(transform):
    etag = transform.put(KEY, good(1))
    transform.ledger.claim(bucket=BRONZE, key=KEY, etag=etag, size=1, type_="orders", dt="2025-01-02",
                           lease_seconds=60, sequencer="30")
    assert transform.one(KEY, etag, sequencer="10") == {"batchItemFailures": []}
    item = transform.item(KEY, etag)
    assert (item["status"], item["sequencer"]) == ("CLAIMED", "30")
    assert transform.silver()[1]["metadata"]["source-sequencer"] == "10"
    [line] = by_message(transform.lines(), "a newer event of this version owns its ledger item; outcome not recorded")
    assert (line["level"], line["object"], line["sequencer"]) == ("INFO", f"s3://{BRONZE}/{KEY}", "10")
    transform.ledger.claim(bucket=BRONZE, key=KEY, etag="e" * 32, size=1, type_="orders", dt="2025-01-02",
                           lease_seconds=60, sequencer="30")
    answer(transform.s3, "GetObject", status=500, code="InternalError", where=KEY)
    assert transform.one(KEY, "e" * 32, sequencer="10") == {"batchItemFailures": [{"itemIdentifier": "m"}]}
    assert transform.item(KEY, "e" * 32)["status"] == "CLAIMED"  # the failure is not this event's to record


# --- silver changing under the conditional write ----------------------------------------------------
def other_writer(transform, key: str = SILVER_KEY, **metadata):
    """Another writer's silver object (a new body each time, so a new ETag)."""
    writes = []

    def write():
        writes.append(1)
        transform.s3.put_object(Bucket=SILVER, Key=key, Body=b"other %d" % len(writes), Metadata=metadata)
    return write


def test_a_write_lost_to_a_newer_writer_looks_again_and_is_superseded(transform, monkeypatch):
    etag = transform.put(KEY, good(1))
    hook_at(monkeypatch, steps.BEFORE_SILVER_WRITE,
            other_writer(transform, **{"source-key": KEY, "source-etag": "n" * 32, "source-sequencer": "99"}))
    assert transform.one(KEY, etag, sequencer="10") == {"batchItemFailures": []}
    assert transform.s3.get_object(Bucket=SILVER, Key=SILVER_KEY)["Body"].read() == b"other 1"
    item = transform.item(KEY, etag)
    assert (item["outcome"], item["superseded_reason"]) == (
        "superseded", f"silver holds {'n' * 32} from a newer event (sequencer 99 > 10)")
    [line] = by_message(transform.lines(), "silver changed during the write; deciding again")
    assert (line["level"], line["object"]) == ("INFO", f"s3://{BRONZE}/{KEY}")
    assert "changed since it was looked at (PreconditionFailed)" in line["detail"]


def test_a_write_lost_to_an_older_writer_looks_again_and_writes(transform, monkeypatch):
    etag = transform.put(KEY, good(2))
    seen = hook_at(monkeypatch, steps.BEFORE_SILVER_WRITE,
                   other_writer(transform, **{"source-key": KEY, "source-sequencer": "01"}))
    assert transform.one(KEY, etag, sequencer="10") == {"batchItemFailures": []}
    assert seen == [{"object": f"s3://{BRONZE}/{KEY}"}] * 2
    table, got = transform.silver()
    assert table.num_rows == 2 and got["metadata"]["source-sequencer"] == "10"


def test_silver_that_keeps_changing_fails_the_item_after_five_writes(transform, monkeypatch):
    etag = transform.put(KEY, good(1))
    seen = hook_at(monkeypatch, steps.BEFORE_SILVER_WRITE, other_writer(transform), times=99)
    assert transform.one(KEY, etag) == {"batchItemFailures": [{"itemIdentifier": "m"}]}
    assert len(seen) == app.WRITE_ATTEMPTS == 5
    assert transform.item(KEY, etag)["last_error"] == (
        f"ItemFailed: silver object {SILVER_KEY} kept changing during 5 conditional writes; the item is retried")


def test_two_bronze_objects_that_differ_only_by_suffix_do_not_overwrite_each_other(transform):
    etag = transform.put(KEY, good(2))
    assert transform.one(KEY, etag) == {"batchItemFailures": []}
    json_key = "bronze/orders/dt=2025-01-02/a.json"
    etag2 = transform.put(json_key, good(1))
    assert transform.one(json_key, etag2) == {"batchItemFailures": [{"itemIdentifier": "m"}]}
    assert transform.item(json_key, etag2)["last_error"] == (
        f"ItemFailed: silver key collision: {SILVER_KEY} already holds {KEY}; {json_key} would replace its rows. "
        "Rename one of the two bronze objects (they differ only by suffix)")
    assert transform.silver()[0].num_rows == 2


def test_a_key_with_characters_s3_metadata_cannot_hold_is_url_encoded_there_and_rewritten_in_place(transform):
    key = "bronze/orders/dt=2025-01-02/a b+é%.jsonl"
    silver_key = "silver/orders/dt=2025-01-02/a b+é%.parquet"
    for n in (1, 2):
        etag = transform.put(key, good(n))
        assert transform.one(key, etag) == {"batchItemFailures": []}
        assert transform.silver(silver_key)[1]["metadata"]["source-key"] == quote(key, safe="/")
    assert transform.silver(silver_key)[0].num_rows == 2


# --- the source moving on while its version is transformed -----------------------------------------
def test_a_source_that_moved_on_during_the_write_has_its_current_version_transformed_in_place(transform, monkeypatch):
    old = transform.put(KEY, good(1))
    news = []
    seen = hook_at(monkeypatch, steps.AFTER_SILVER_WRITE, lambda: news.append(transform.put(KEY, good(3))))
    assert transform.one(KEY, old, sequencer="10") == {"batchItemFailures": []}
    [new] = news
    assert len(seen) == 2  # this version's write, then the current version's
    table, got = transform.silver()
    assert table.num_rows == 3 and got["metadata"] == {"source-key": quote(KEY, safe="/"), "source-etag": new, "source-sequencer": "",
                                                       "rows": "3"}
    reason = f"the source became {new} while this version was transformed; {new} was transformed in its place"
    item = transform.item(KEY, old)
    assert (item["status"], item["outcome"], item["superseded_reason"], item["silver_key"], item["rows"]) == (
        "DONE", "superseded", reason, "", 0)
    current = transform.item(KEY, new)
    assert (current["status"], current["outcome"], current["rows"], current["rejected_rows"], current["silver_key"]) == (
        "DONE", "written", 3, 0, SILVER_KEY)
    lines = transform.lines()
    [warning] = by_message(lines, "superseded after the write: the source moved on; silver rewritten from the current "
                                  "version")
    assert (warning["level"], warning["object"], warning["reason"]) == ("WARNING", f"s3://{BRONZE}/{KEY}", reason)
    [done] = by_message(lines, "transformed")
    assert (done["outcome"], done["reason"], done["rows"]) == ("superseded", reason, 1)
    assert counts(lines) == {("Superseded", "orders", None): 1}


def test_a_source_that_keeps_moving_fails_the_item_after_three_rounds(transform, monkeypatch):
    old = transform.put(KEY, good(1))
    seen = hook_at(monkeypatch, steps.AFTER_SILVER_WRITE, lambda: transform.put(KEY, good(len(seen) + 1)), times=99)
    assert transform.one(KEY, old) == {"batchItemFailures": [{"itemIdentifier": "m"}]}
    assert len(seen) == 1 + app.REPAIR_ROUNDS == 4
    assert transform.item(KEY, old)["last_error"] == (
        f"ItemFailed: s3://{BRONZE}/{KEY} changed 3 times while it was being transformed; the item is retried")


def moved_on_and_then_unreadable(transform, monkeypatch, *, status: int, code: str) -> str:
    """The source's ETag: after its write a newer version arrives, whose read answers `status`."""
    old = transform.put(KEY, good(1))

    def moving():
        transform.put(KEY, good(2))
        answer(transform.s3, "GetObject", status=status, code=code, where=KEY)

    hook_at(monkeypatch, steps.AFTER_SILVER_WRITE, moving)
    return old


def test_a_source_deleted_before_its_current_version_is_read_leaves_silver_as_it_was(transform, monkeypatch):
    old = moved_on_and_then_unreadable(transform, monkeypatch, status=404, code="NoSuchKey")
    assert transform.one(KEY, old) == {"batchItemFailures": []}
    reason = transform.item(KEY, old)["superseded_reason"]
    assert reason.endswith("; nothing (the source was deleted) was transformed in its place")
    assert transform.silver()[0].num_rows == 1


def test_a_current_version_that_moves_again_before_its_read_is_followed(transform, monkeypatch):
    old = transform.put(KEY, good(1))
    versions = []
    other = SESSION.client("s3", region_name=REGION)  # writes without this client's hooks

    def moving():
        versions.append(transform.put(KEY, good(2)))
        answered = []

        def before_read(request, **kwargs):
            if not answered:
                answered.append(1)
                versions.append(other.put_object(Bucket=BRONZE, Key=KEY, Body=good(3))["ETag"].strip('"'))

        on_send(transform.s3, "GetObject", before_read)

    hook_at(monkeypatch, steps.AFTER_SILVER_WRITE, moving)
    assert transform.one(KEY, old) == {"batchItemFailures": []}
    second, third = versions
    assert transform.silver()[1]["metadata"]["source-etag"] == third
    assert transform.item(KEY, old)["superseded_reason"].endswith(f"; {third} was transformed in its place")
    assert transform.item(KEY, second) is None and transform.item(KEY, third)["rows"] == 3


def test_a_current_version_that_moves_and_is_deleted_before_its_read_ends_the_rewrite(transform, monkeypatch):
    old = transform.put(KEY, good(1))
    versions = []

    def moving():
        versions.append(transform.put(KEY, good(2)))
        answer(transform.s3, "GetObject", status=412, code="PreconditionFailed", where=KEY,
               then=lambda: transform.s3.delete_object(Bucket=BRONZE, Key=KEY))

    hook_at(monkeypatch, steps.AFTER_SILVER_WRITE, moving)
    assert transform.one(KEY, old) == {"batchItemFailures": []}
    assert transform.item(KEY, old)["superseded_reason"].endswith(f"; {versions[0]} was transformed in its place")
    assert transform.silver()[0].num_rows == 1


def test_a_denied_read_of_the_current_version_fails_the_item(transform, monkeypatch):
    old = moved_on_and_then_unreadable(transform, monkeypatch, status=403, code="AccessDenied")
    assert transform.one(KEY, old) == {"batchItemFailures": [{"itemIdentifier": "m"}]}
    assert transform.item(KEY, old)["last_error"] == "ItemFailed: " + DENIED.format(where=f"{BRONZE}/{KEY}")


# --- replay copies -----------------------------------------------------------------------------------
COPY_KEY = "bronze/replay/20260101T000000Z/orders/dt=2025-01-02/a.jsonl"


def test_a_replay_copy_is_written_under_the_logical_key_as_the_version_it_copies_without_an_order(transform):
    original = transform.put(KEY, good(2))
    copy = transform.put(COPY_KEY, good(2) + b"\n", metadata={app.REPLAY_SOURCE_ETAG: f'"{original}"'})
    assert transform.one(COPY_KEY, copy, sequencer="40", origin="redrive") == {"batchItemFailures": []}
    table, got = transform.silver()
    assert got["metadata"] == {"source-key": quote(KEY, safe="/"), "source-etag": original, "source-sequencer": "",
                               "rows": "2"}
    assert set(table.column("_source_key").to_pylist()) == {KEY}
    item = transform.item(COPY_KEY, copy)
    assert (item["status"], item["outcome"], item["silver_key"]) == ("DONE", "written", SILVER_KEY)
    assert transform.item(KEY, original) is None  # the original is still that version: no rewrite


def test_a_replay_copy_without_the_source_etag_stands_for_its_own_etag(transform):
    copy = transform.put(COPY_KEY, good(1))
    assert transform.one(COPY_KEY, copy) == {"batchItemFailures": []}
    assert transform.silver()[1]["metadata"]["source-etag"] == copy


def test_a_replay_copy_of_a_version_the_original_has_left_puts_the_current_version_in_silver(transform):
    old = transform.put(KEY, good(1))
    copy = transform.put(COPY_KEY, good(1), metadata={app.REPLAY_SOURCE_ETAG: old})
    current = transform.put(KEY, good(3))
    assert transform.one(COPY_KEY, copy) == {"batchItemFailures": []}
    assert transform.silver()[1]["metadata"]["source-etag"] == current
    assert transform.item(COPY_KEY, copy)["outcome"] == "superseded"
    assert transform.item(KEY, current)["rows"] == 3


def test_a_redrive_after_its_copy_expired_transforms_the_original_while_it_holds_the_same_version(transform):
    etag = transform.put(KEY, good(2))
    assert transform.one(COPY_KEY, etag, sequencer="50", origin="redrive") == {"batchItemFailures": []}
    table, got = transform.silver()
    assert table.num_rows == 2 and got["metadata"]["source-etag"] == etag
    reason = f"the replay copy was gone; its original s3://{BRONZE}/{KEY} still held this version"
    item = transform.item(COPY_KEY, etag)
    assert (item["status"], item["outcome"], item["superseded_reason"], item["silver_key"], item["rows"]) == (
        "DONE", "original-transformed", reason, SILVER_KEY, 0)
    assert (transform.item(KEY, etag)["outcome"], transform.item(KEY, etag)["rows"]) == ("written", 2)
    lines = transform.lines()
    [warning] = by_message(lines, "replay copy gone; transformed its original instead")
    assert {k: warning[k] for k in ("level", "object", "original", "silver_etag_of")} == {
        "level": "WARNING", "object": f"s3://{BRONZE}/{COPY_KEY}", "original": KEY, "silver_etag_of": etag}
    assert counts(lines) == {("ObjectsSkipped", "orders", "original-transformed"): 1}
    [done] = by_message(lines, "transformed")
    assert (done["outcome"], done["reason"]) == ("original-transformed", reason)


@pytest.mark.parametrize("original", [None, good(3)])
def test_a_redrive_after_its_copy_expired_is_a_deleted_source_when_the_original_moved_on_or_is_gone(
        transform, original):
    if original is not None:
        transform.put(KEY, original)
    assert transform.one(COPY_KEY, "c" * 32) == {"batchItemFailures": []}
    assert transform.item(COPY_KEY, "c" * 32)["outcome"] == "source-deleted"
    assert transform.silver_keys() == [] and transform.item(KEY, "c" * 32) is None


# --- time left ---------------------------------------------------------------------------------------
def test_items_not_started_when_time_runs_low_are_failed_items_and_finished_ones_stay_done(transform):
    keys = [f"bronze/orders/dt=2025-01-02/p{i}.jsonl" for i in range(4)]
    messages = [transform.message(f"m{i}", k, transform.put(k, good(1, start=i))) for i, k in enumerate(keys)]
    app._DEPS = dataclasses.replace(app._DEPS, min_ms_to_start=60_000)
    # Each look at the clock costs 20 s: 90 s and 70 s left start items 0 and 1; 50 s is inside the reserve.
    result = transform.run(*messages, context=Context(remaining_ms=110_000, per_call_ms=20_000))
    assert result == {"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}]}
    assert sorted(transform.silver_keys()) == [f"silver/orders/dt=2025-01-02/p{i}.parquet" for i in (0, 1)]
    assert [transform.ddb.scan(TableName=TABLE)["Count"]] == [2]
    [warning] = by_message(transform.lines(), "too little time left: items not started are reported as failed")
    assert (warning["level"], warning["not_started"], warning["remaining_ms"]) == ("WARNING", 2, 30_000)


def test_an_item_starts_while_more_than_the_reserve_is_left_and_not_at_exactly_the_reserve(transform):
    etag = transform.put(KEY, good(1))
    app._DEPS = dataclasses.replace(app._DEPS, min_ms_to_start=60_000)
    assert transform.one(KEY, etag) == {"batchItemFailures": []}  # no context: no clock to go by
    assert transform.run(transform.message("m", KEY, etag), context=Context(60_001)) == {"batchItemFailures": []}
    assert transform.run(transform.message("m", KEY, etag), context=Context(60_000)) == {
        "batchItemFailures": [{"itemIdentifier": "m"}]}
    with pytest.raises(RuntimeError, match="^an item not started has no messageId; failing the whole batch$"):
        transform.run(transform.message("m", KEY, etag), transform.message(None, KEY, etag), context=Context(1))
    app._DEPS = dataclasses.replace(app._DEPS, min_ms_to_start=0)
    assert transform.run(transform.message("m", KEY, etag), context=Context(1)) == {"batchItemFailures": []}


# --- what one object's transform leaves besides silver ----------------------------------------------
def test_a_version_without_bad_lines_removes_the_previous_version_s_quarantine_object(transform):
    assert transform.one(KEY, transform.put(KEY, jsonl(order(1), b"{bad"))) == {"batchItemFailures": []}
    assert QUARANTINE_KEY in transform.silver_keys()
    assert transform.one(KEY, transform.put(KEY, good(2))) == {"batchItemFailures": []}
    assert transform.silver_keys() == [SILVER_KEY]


def test_notes_about_the_content_are_logged_as_warnings_of_the_object(transform):
    etag = transform.put(KEY, b"\xef\xbb\xbf" + good(1))
    assert transform.one(KEY, etag) == {"batchItemFailures": []}
    [note] = by_message(transform.lines(), "UTF-8 byte order mark removed")
    assert (note["level"], note["object"]) == ("WARNING", f"s3://{BRONZE}/{KEY}")


def test_fields_the_schema_does_not_declare_are_counted_and_recorded(transform):
    etag = transform.put(KEY, jsonl(order(1, promo="x"), order(2)))
    assert transform.one(KEY, etag) == {"batchItemFailures": []}
    item = transform.item(KEY, etag)
    assert (json.loads(item["unknown_fields"]), item["fields_examined"]) == ({"promo": 1}, 2)
    lines = transform.lines()
    assert counts(lines)[("ObjectsWithUnknownFields", "orders", None)] == 1
    [done] = by_message(lines, "transformed")
    assert done["unknown_fields"] == {"promo": 1}
    assert transform.one(KEY, transform.put(KEY, good(1))) == {"batchItemFailures": []}
    assert "ObjectsWithUnknownFields" not in {k[0] for k in counts(transform.lines())}


def test_the_environment_s_bounds_reach_the_transform(transform, monkeypatch):
    passed = []
    real = app.transform_stream
    monkeypatch.setattr(app, "transform_stream", lambda body, **kwargs: passed.append(kwargs) or real(body, **kwargs))
    app._DEPS = app.build_deps({"ELT_SILVER_BUCKET": SILVER, "ELT_LEDGER_TABLE": TABLE, "ELT_ROW_GROUP_ROWS": "2",
                                "ELT_QUARANTINE_MAX_LINES": "1", "ELT_MAX_JSON_BYTES": "100",
                                "ELT_MAX_OBJECT_BYTES": "2000"}, {"s3": transform.s3, "dynamodb": transform.ddb}.get)
    etag = transform.put(KEY, jsonl(order(1), b"{bad", b"{bad", order(2), order(3)))
    assert transform.one(KEY, etag) == {"batchItemFailures": []}
    body = transform.s3.get_object(Bucket=SILVER, Key=SILVER_KEY)["Body"].read()
    assert pq.ParquetFile(pa.BufferReader(body)).metadata.num_row_groups == 2  # 3 rows, 2 a group
    quarantined = transform.s3.get_object(Bucket=SILVER, Key=QUARANTINE_KEY)["Body"].read().splitlines()
    assert len(quarantined) == 2  # one record kept, one summary of the rest
    etag = transform.put(KEY, good(20))
    assert transform.one(KEY, etag) == {"batchItemFailures": [{"itemIdentifier": "m"}]}  # past 2000 bytes
    assert transform.item(KEY, etag)["last_error"].startswith("UnreadableObject: ")
    assert {k: passed[0][k] for k in ("max_json_bytes", "row_group_rows", "max_object_bytes", "quarantine_max_lines",
                                      "quarantine_max_bytes", "source_key", "gzipped", "suffix_format")} == {
        "max_json_bytes": 100, "row_group_rows": 2, "max_object_bytes": 2000, "quarantine_max_lines": 1,
        "quarantine_max_bytes": 64 * 1024 * 1024, "source_key": KEY, "gzipped": False, "suffix_format": "jsonl"}


def test_the_handler_s_clients_and_settings_come_from_the_environment_once(monkeypatch):
    for name, value in {"ELT_SILVER_BUCKET": "silver", "ELT_LEDGER_TABLE": "t", "ELT_LEDGER_TTL_DAYS": "7",
                        "ELT_MAX_JSON_BYTES": "11", "ELT_ROW_GROUP_ROWS": "12", "ELT_MAX_OBJECT_BYTES": "13",
                        "ELT_QUARANTINE_MAX_LINES": "14", "ELT_QUARANTINE_MAX_BYTES": "15",
                        "ELT_MIN_SECONDS_TO_START": "1.5"}.items():
        monkeypatch.setenv(name, value)
    app.reset()
    try:
        first = app.deps()
        assert (first.silver_bucket, first.max_json_bytes, first.row_group_rows, first.min_ms_to_start) == (
            "silver", 11, 12, 1500)
        assert first.limits == {"max_object_bytes": 13, "quarantine_max_lines": 14, "quarantine_max_bytes": 15}
        assert (first.ledger.table, first.ledger.ttl_days) == ("t", 7)
        assert first.s3.meta.service_model.service_name == "s3"
        assert first.ledger.client.meta.service_model.service_name == "dynamodb"
        assert app.deps() is first
        app.reset()
        assert app.deps() is not first
    finally:
        app.reset()


# --- log lines about rejected lines and metrics per outcome -----------------------------------------
@pytest.mark.parametrize("reason, expected", [
    ("line is not valid UTF-8", ("invalid-utf8", [])),
    ("malformed JSON: Expecting value", ("malformed-json", [])),
    ("missing required field(s) 'order_id', 'customer.customer_id'", ("missing-field",
                                                                       ["customer.customer_id", "order_id"])),
    ("value of field 'placed_at' is not a valid timestamp", ("invalid-value", ["placed_at"])),
    ("field 'lines[].quantity' holds a string where the schema expects int64", ("wrong-type", ["lines[].quantity"])),
    ("expected an object, got a list", ("not-an-object", [])),
    ("line longer than 1048576 bytes", ("line-too-long", [])),
    ("something else about field 'currency'", ("other", ["currency"])),
    ("field 'x@example.org' is not a valid field 'currency'", ("invalid-value", ["currency"])),  # a value, not a name
    ("field 'customer' and field 'customer'", ("other", ["customer"])),
])
def test_a_rejected_line_is_logged_by_kind_and_schema_field_names_only(reason, expected):
    assert app.reject_summary(reason, schemas.get("orders")) == {"problem": expected[0], "fields": expected[1]}


def test_schema_paths_name_nested_and_list_fields_as_reasons_spell_them():
    paths = app.schema_paths(schemas.get("shipments"))
    assert {"origin", "origin.city", "items", "items[]", "items[].sku", "tags", "tags[]",
            "dimensions_cm.height"} <= paths
    assert "city" not in paths and "sku" not in paths
    large = schemas.EventSchema(name="x", arrow=pa.schema([pa.field("l", pa.large_list(pa.struct([("a", pa.int64())])))]),
                                 required=())
    assert app.schema_paths(large) == {"l", "l[]", "l[].a"}


@pytest.mark.parametrize("summary, expected", [
    ({"outcome": "superseded"}, {("Superseded", "t", None): 1}),
    ({"outcome": "source-deleted"}, {("ObjectsSkipped", "t", "source-deleted"): 1}),
    ({}, {("ObjectsSkipped", "t", "unknown"): 1}),
    ({"outcome": "written"}, {("Objects", "t", None): 1, ("RowsWritten", "t", None): 0,
                              ("RowsQuarantined", "t", None): 0, ("BytesIn", "t", None): 0,
                              ("DurationPerObject", "t", None): [1500.0]}),
    ({"outcome": "written", "rows": 3, "rejected_rows": 2, "bytes_in": 9, "unknown_fields": {"a": 1}},
     {("Objects", "t", None): 1, ("RowsWritten", "t", None): 3, ("RowsQuarantined", "t", None): 2,
      ("BytesIn", "t", None): 9, ("DurationPerObject", "t", None): [1500.0], ("ObjectsWithUnknownFields", "t", None): 1}),
])
def test_each_outcome_is_counted_as_its_own_metric(summary, expected):
    from lambdas.shared.metrics import Metrics

    records = []
    metrics_ = Metrics("transform", out=records.append, environ={})
    app.count(metrics_, summary, type_="t", seconds=1.5)
    metrics_.flush()
    assert metrics([{"message": "metrics", **r} for r in records]) == expected


# --- what mutation testing found untested -------------------------------------------------------------
def newer_event_owns(transform, key: str, etag: str) -> None:
    transform.ledger.claim(bucket=BRONZE, key=key, etag=etag, size=1, type_="orders", dt="2025-01-02",
                           lease_seconds=60, sequencer="30")


def test_an_older_event_s_skip_never_lands_on_a_ledger_item_a_newer_event_owns(transform, monkeypatch):
    stale = transform.put(KEY, good(1))
    transform.put(KEY, good(2))
    gone = "bronze/orders/dt=2025-01-02/gone.jsonl"
    held = "bronze/orders/dt=2025-01-02/held.jsonl"
    held_etag = transform.put(held, good(1))
    transform.s3.put_object(Bucket=SILVER, Key="silver/orders/dt=2025-01-02/held.parquet", Body=b"x",
                            Metadata={"source-key": held, "source-sequencer": "40"})
    moving = "bronze/orders/dt=2025-01-02/moving.jsonl"
    moving_etag = transform.put(moving, good(1))
    copy_key = "bronze/replay/20260101T000000Z/orders/dt=2025-01-02/orig.jsonl"
    orig_etag = transform.put("bronze/orders/dt=2025-01-02/orig.jsonl", good(1))
    cases = [(KEY, stale), (gone, "0" * 32), (held, held_etag), (moving, moving_etag), (copy_key, orig_etag)]
    for key, etag in cases:
        newer_event_owns(transform, key, etag)
    hook_at(monkeypatch, steps.AFTER_SILVER_WRITE,
            lambda: transform.put(moving, good(3)) if transform.silver_keys() == [
                "silver/orders/dt=2025-01-02/held.parquet", "silver/orders/dt=2025-01-02/moving.parquet"] else None,
            times=99)
    result = transform.run(*(transform.message(f"m{i}", key, etag, sequencer="10") for i, (key, etag) in
                             enumerate(cases)))
    assert result == {"batchItemFailures": []}
    assert [(transform.item(key, etag)["status"], transform.item(key, etag)["sequencer"]) for key, etag in cases] == [
        ("CLAIMED", "30")] * len(cases)


def test_a_skipped_version_s_ledger_item_records_no_rows_and_no_silver_key(transform, monkeypatch):
    stale = transform.put(KEY, good(1))
    transform.put(KEY, good(2))
    assert transform.one(KEY, stale) == {"batchItemFailures": []}
    older = "bronze/orders/dt=2025-01-02/older.jsonl"
    older_etag = transform.put(older, good(1))
    transform.s3.put_object(Bucket=SILVER, Key="silver/orders/dt=2025-01-02/older.parquet", Body=b"x",
                            Metadata={"source-key": older, "source-sequencer": "30"})
    assert transform.one(older, older_etag, sequencer="10") == {"batchItemFailures": []}
    moving = "bronze/orders/dt=2025-01-02/moving.jsonl"
    moving_etag = transform.put(moving, jsonl(order(1), b"{bad"))
    hook_at(monkeypatch, steps.AFTER_SILVER_WRITE, lambda: transform.put(moving, good(3)))
    assert transform.one(moving, moving_etag) == {"batchItemFailures": []}
    monkeypatch.setattr(steps, "HOOK", None)
    etag = transform.put("bronze/orders/dt=2025-01-02/orig.jsonl", jsonl(order(1), b"{bad"))
    copy_key = "bronze/replay/20260101T000000Z/orders/dt=2025-01-02/orig.jsonl"
    assert transform.one(copy_key, etag) == {"batchItemFailures": []}
    items = [transform.item(KEY, stale), transform.item(older, older_etag), transform.item(moving, moving_etag),
             transform.item(copy_key, etag)]
    assert [(i["outcome"], i["silver_key"], i["rows"], i["rejected_rows"]) for i in items] == [
        ("superseded", "", 0, 0), ("superseded", "", 0, 0), ("superseded", "", 0, 0),
        ("original-transformed", "silver/orders/dt=2025-01-02/orig.parquet", 0, 0)]


def test_a_replay_copy_that_cannot_be_read_fails_rather_than_standing_in_with_its_original(transform):
    etag = transform.put(KEY, good(1))
    answer(transform.s3, "GetObject", status=403, code="AccessDenied", where=COPY_KEY)
    assert transform.one(COPY_KEY, etag) == {"batchItemFailures": [{"itemIdentifier": "m"}]}
    assert transform.silver_keys() == [] and transform.item(KEY, etag) is None


def test_a_step_hook_sees_the_read_and_the_writes_of_each_version_with_its_object(transform, monkeypatch):
    seen = []
    old = transform.put(KEY, good(1))

    def hook(name, context):
        seen.append((name, context))
        if name == steps.AFTER_SILVER_WRITE and len(seen) == 3:
            transform.put(KEY, good(2))  # the source moves on: its current version is rewritten

    monkeypatch.setattr(steps, "HOOK", hook)
    assert transform.one(KEY, old) == {"batchItemFailures": []}
    assert seen == [(name, {"object": f"s3://{BRONZE}/{KEY}"}) for name in (
        steps.AFTER_READ, steps.BEFORE_SILVER_WRITE, steps.AFTER_SILVER_WRITE, steps.BEFORE_SILVER_WRITE,
        steps.AFTER_SILVER_WRITE)]


def test_a_rewrite_whose_read_finds_a_newer_version_writes_only_that_one(transform, monkeypatch):
    old = transform.put(KEY, good(1))
    other = SESSION.client("s3", region_name=REGION)
    writes = []

    def moving():
        transform.put(KEY, good(2))
        answered = []

        def before_read(request, **kwargs):
            if not answered:
                answered.append(other.put_object(Bucket=BRONZE, Key=KEY, Body=good(3)))

        on_send(transform.s3, "GetObject", before_read)

    hook_at(monkeypatch, steps.AFTER_SILVER_WRITE, lambda: writes.append(1) or (moving() if len(writes) == 1 else None),
            times=99)
    assert transform.one(KEY, old) == {"batchItemFailures": []}
    assert len(writes) == 2  # this version, then the newest: never the one that moved on before its read


def test_a_stale_read_logs_its_reason_and_leaves_a_current_unordered_version_in_silver_alone(transform):
    first = transform.put(KEY, good(1))
    transform.put(KEY, good(2))
    current = transform.put(KEY, good(3))
    assert transform.one(KEY, current) == {"batchItemFailures": []}  # no order: a redrive
    before = transform.s3.head_object(Bucket=SILVER, Key=SILVER_KEY)["ETag"]
    transform.lines()
    assert transform.one(KEY, first, sequencer="10") == {"batchItemFailures": []}
    assert transform.s3.head_object(Bucket=SILVER, Key=SILVER_KEY)["ETag"] == before
    [done] = by_message(transform.lines(), "transformed")
    assert (done["outcome"], done["reason"]) == ("superseded", PLAIN_412)


def test_silver_holding_the_same_version_without_an_order_is_rewritten_without_one(transform):
    etag = transform.put(KEY, good(2))
    transform.s3.put_object(Bucket=SILVER, Key=SILVER_KEY, Body=b"x", Metadata={"source-key": KEY, "source-etag": etag})
    assert transform.one(KEY, etag) == {"batchItemFailures": []}
    assert transform.silver()[1]["metadata"]["source-sequencer"] == ""


def test_the_handler_leaves_no_file_where_it_runs(transform, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert transform.one(KEY, transform.put(KEY, jsonl(order(1), b"{bad"))) == {"batchItemFailures": []}
    assert list(tmp_path.iterdir()) == []


def test_rows_are_stamped_with_the_utc_time_of_the_transform_whatever_the_local_zone(transform, monkeypatch):
    import datetime as dt
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        before = dt.datetime.now(dt.UTC)
        assert transform.one(KEY, transform.put(KEY, good(1))) == {"batchItemFailures": []}
        [stamp] = transform.silver()[0].column("_ingested_at").to_pylist()
        assert before <= stamp <= dt.datetime.now(dt.UTC)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
