"""The local Lambda runtime and the embedded AWS around it.

moto does not run Lambda functions without Docker and ignores `ReportBatchItemFailures`, so this
module plays Lambda's part:

The topology is Terraform's: S3 -> ingest queue -> ingest, events queue -> transform, both through
an event-source-mapping emulator. It receives up to `batch_size` messages, builds the Lambda SQS
event, calls the handler and deletes only the records not listed in `batchItemFailures`. An invalid
response (an empty or unknown identifier) or an exception fails the whole batch, as in AWS. Failed
messages reappear after the visibility timeout, and moto moves them to the queue's DLQ after
`maxReceiveCount` receives (its RedrivePolicy): the events DLQ holds work units, the ingest DLQ
holds the S3 events ingest could not finish.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import boto3
from botocore.config import Config

from lambdas.ingest import app as ingest_app
from lambdas.shared import steps
from lambdas.shared.log import JsonFormatter
from lambdas.transform import app as transform_app
from ops.aws import all_receive_attributes
from ops.local.calls import attach
from ops.local.resources import LocalSettings, Names, Provisioned, provision

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass
class LambdaContext:
    function_name: str
    timeout_ms: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.timeout_ms - int((time.monotonic() - self._started) * 1000))


@dataclass
class RuntimeStats:
    ingest_invocations: int = 0
    ingest_errors: int = 0
    transform_invocations: int = 0
    transform_batch_errors: int = 0
    transform_item_failures: int = 0
    messages_deleted: int = 0


def sqs_lambda_record(message: dict, queue_arn: str) -> dict:
    """One SQS message in the shape Lambda's SQS event source hands to a function."""
    attributes = dict(message.get("Attributes", {}))
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": {
            name: {"stringValue": value.get("StringValue"), "dataType": value.get("DataType"),
                   "stringListValues": [], "binaryListValues": []}
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def failed_ids(response, message_ids: list[str]) -> tuple[set[str], str | None]:
    """Which messages failed, per Lambda's rules for a partial batch response.

    Returns (failed ids, reason the whole batch failed or None)."""
    if response is None or response == {}:
        return set(), None
    if not isinstance(response, dict) or "batchItemFailures" not in response:
        return set(), None  # any other return value counts as full success in AWS
    failures = response["batchItemFailures"]
    if failures is None or failures == []:
        return set(), None
    if not isinstance(failures, list):
        return set(message_ids), "batchItemFailures is not a list"
    ids = set()
    for failure in failures:
        ident = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not ident or ident not in message_ids:
            return set(message_ids), f"invalid itemIdentifier {ident!r}: the whole batch fails"
        ids.add(ident)
    return ids, None


class EventSourceMapping:
    """SQS -> handler with batch size, visibility timeout and ReportBatchItemFailures."""

    def __init__(self, *, sqs, queue_url: str, handler: Callable, batch_size: int = 10, workers: int = 1,
                 function_name: str = "transform", timeout_ms: int = 30000, stats: RuntimeStats | None = None,
                 wait_seconds: int = 1, counts_as: str = "transform"):
        self.sqs = sqs
        self.queue_url = queue_url
        self.handler = handler
        self.batch_size = batch_size
        self.workers = workers
        self.function_name = function_name
        self.counts_as = counts_as  # which RuntimeStats counters this mapping's invocations go to
        self.timeout_ms = timeout_ms
        self.stats = stats or RuntimeStats()
        self.wait_seconds = wait_seconds
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.log = logging.getLogger("elt.local.esm")

    def start(self) -> None:
        for i in range(self.workers):
            thread = threading.Thread(target=self._loop, name=f"esm-{self.function_name}-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.wait_seconds + 30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # the runtime never dies of one bad poll (e.g. server stopping)
                self.log.exception("poll failed")
                self._stop.wait(0.5)

    def poll_once(self) -> int:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size, WaitTimeSeconds=self.wait_seconds,
            **all_receive_attributes(self.sqs),
        )
        messages = response.get("Messages", [])
        if messages:
            self._invoke(messages)
        return len(messages)

    def _invoke(self, messages: list[dict]) -> None:
        event = {"Records": [sqs_lambda_record(m, self.queue_arn) for m in messages]}
        ids = [m["MessageId"] for m in messages]
        ingest = self.counts_as == "ingest"
        if ingest:
            self.stats.ingest_invocations += 1
        else:
            self.stats.transform_invocations += 1
        try:
            result = self.handler(event, LambdaContext(self.function_name, self.timeout_ms))
            failed, whole = failed_ids(result, ids)
            steps.step(steps.BEFORE_DELETE, messages=len(messages))
        except (Exception, steps.Killed) as exc:  # a crash or a kill fails the whole batch, as in AWS
            failed, whole = set(ids), f"handler raised {type(exc).__name__}: {exc}"
        if whole:
            if ingest:
                self.stats.ingest_errors += 1
            else:
                self.stats.transform_batch_errors += 1
            self.log.warning("%s batch failed: %s", self.function_name, whole)
        if not ingest:
            self.stats.transform_item_failures += len(failed)
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start:start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            self.stats.messages_deleted += len(chunk)


class EmbeddedAws:
    """moto's server on 127.0.0.1, the pipeline's resources, and the local Lambda runtime.

    Use as a context manager; `environ()` gives the variables any client needs."""

    def __init__(self, *, port: int = 0, names: Names | None = None, settings: LocalSettings | None = None,
                 log_path: str | None = None, run_lambdas: bool = True, lambda_client_hook=None):
        self.port = port
        self.names = names or Names()
        self.settings = settings or LocalSettings()
        self.log_path = log_path
        self.run_lambdas = run_lambdas
        self.lambda_client_hook = lambda_client_hook  # e.g. a fault injector's attach()
        self.stats = RuntimeStats()
        self.server = None
        self.provisioned: Provisioned | None = None
        self.mappings: list[EventSourceMapping] = []
        self._log_handler: logging.Handler | None = None
        self._saved_handlers: list[logging.Handler] = []

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> EmbeddedAws:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        # moto keeps its state per process: an embedded AWS always starts empty.
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"),
                               timeout=10).read()
        self.provisioned = provision(
            s3=self.client("s3"), sqs=self.client("sqs"), dynamodb=self.client("dynamodb"), names=self.names,
            settings=self.settings, endpoint_url=self.endpoint_url, region=REGION,
        )
        self._configure_logging()
        if self.run_lambdas:
            self.start_lambdas()
        return self

    def start_lambdas(self) -> None:
        env = {
            "ELT_QUEUE_URL": self.provisioned.queue_url,
            "ELT_LEDGER_TABLE": self.names.ledger_table,
            "ELT_SILVER_BUCKET": self.names.silver_bucket,
            "ELT_CLAIM_LEASE_SECONDS": str(self.settings.claim_lease_seconds),
        }
        ingest_app._DEPS = ingest_app.build_deps({**_defaults(ingest_app), **env},
                                                 lambda service: self.lambda_client(service, function="ingest"))
        transform_app._DEPS = transform_app.build_deps(
            {**_defaults(transform_app), **env}, lambda service: self.lambda_client(service, function="transform"))
        sqs = self.client("sqs")
        self.mappings = [
            EventSourceMapping(sqs=sqs, queue_url=self.provisioned.ingest_queue_url, handler=ingest_app.handler,
                               batch_size=10, workers=1, function_name="ingest", stats=self.stats,
                               counts_as="ingest"),
            EventSourceMapping(sqs=sqs, queue_url=self.provisioned.queue_url, handler=transform_app.handler,
                               batch_size=self.settings.batch_size, workers=self.settings.transform_workers,
                               function_name="transform", stats=self.stats),
        ]
        for mapping in self.mappings:
            mapping.start()

    def stop(self) -> None:
        for mapping in self.mappings:
            mapping.stop()
        self.mappings = []
        ingest_app.reset()
        transform_app.reset()
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.stop()
            self.server = None
        if self._log_handler is not None:
            root = logging.getLogger("elt")
            root.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
            for handler in self._saved_handlers:  # put back exactly what was there before
                if handler not in root.handlers:
                    root.addHandler(handler)

    def __enter__(self) -> EmbeddedAws:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- clients ---------------------------------------------------------------------------------
    def client(self, service: str):
        return boto3.session.Session().client(
            service, endpoint_url=self.endpoint_url, region_name=REGION,
            config=Config(retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=32), **CREDENTIALS,
        )

    def lambda_client(self, service: str, *, function: str = "lambda"):
        """A client as the Lambdas get it: botocore's standard retries, as in AWS; its calls are
        recorded under the function's name when ELT_CALL_RECORD is set (ops/local/calls.py)."""
        client = attach(boto3.session.Session().client(
            service, endpoint_url=self.endpoint_url, region_name=REGION,
            config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32), **CREDENTIALS,
        ), who=function)
        return self.lambda_client_hook(client) if self.lambda_client_hook else client

    def environ(self) -> dict[str, str]:
        return self.provisioned.environ()

    def _configure_logging(self) -> None:
        root = logging.getLogger("elt")
        from lambdas.shared.log import get_logger

        get_logger("local")  # installs the JSON handler once
        self._saved_handlers = list(root.handlers)
        for handler in self._saved_handlers:
            root.removeHandler(handler)
        if self.log_path:
            self._log_handler = logging.FileHandler(self.log_path)
        else:
            import sys

            self._log_handler = logging.StreamHandler(sys.stderr)
        self._log_handler.setFormatter(JsonFormatter())
        root.addHandler(self._log_handler)

    # -- waiting ---------------------------------------------------------------------------------
    def queue_depth(self, url: str) -> int:
        attrs = self.client("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def wait_idle(self, timeout: float = 60.0, settle: float = 0.6) -> bool:
        """Wait until the ingest and events queues are empty and no batch is running."""
        deadline = time.monotonic() + timeout
        quiet_since = None
        urls = (self.provisioned.ingest_queue_url, self.provisioned.queue_url)
        while time.monotonic() < deadline:
            busy = any(self.queue_depth(u) for u in urls)
            if not busy:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle:
                    return True
            else:
                quiet_since = None
            time.sleep(0.2)
        return False


def _defaults(app_module) -> dict[str, str]:
    from lambdas.shared import config

    env_vars = config.INGEST_ENV if app_module is ingest_app else config.TRANSFORM_ENV
    return {v.name: v.default for v in env_vars if v.default is not None}
