"""The local Lambda runtime on resources something else created (Terraform applied to the embedded AWS).

`EmbeddedAws` provisions its own copy of the pipeline. `AttachedRuntime` instead starts from the
names Terraform hands out (`terraform output -json eltops_environment`) and follows the wiring
Terraform made, so that a test proves the wiring and not only the names:

- the bronze bucket's ObjectCreated notification names the ingest queue; ingest is the function of
  the event source mapping on that queue, transform the function of the mapping on the events
  queue. Each handler runs with the environment variables Terraform set on its function
  (get_function_configuration), and each emulator with its mapping's batch size and response types
  and its function's timeout. moto writes the real S3 event JSON into the ingest queue.

moto stores functions and mappings but cannot run them without Docker, and it invokes a mapping's
function itself on every SendMessage (through Docker, which fails here) and would make the messages
visible again: both mappings are disabled while this runs, the emulators read the queues in their
place, and `stop()` enables them again.
"""

from __future__ import annotations

from dataclasses import dataclass

import boto3
from botocore.config import Config

from lambdas.ingest import app as ingest_app
from lambdas.transform import app as transform_app
from ops.local.runtime import CREDENTIALS, EventSourceMapping, RuntimeStats, _defaults

ENVIRONMENT_KEYS = ("ELT_BRONZE_BUCKET", "ELT_SILVER_BUCKET", "ELT_QUEUE_URL", "ELT_DLQ_URL", "ELT_INGEST_QUEUE_URL",
                    "ELT_INGEST_DLQ_URL", "ELT_LEDGER_TABLE")


class WiringError(RuntimeError):
    """The resources are not wired as the pipeline needs (names the resource and what is wrong)."""


@dataclass(frozen=True)
class Mapping:
    """An event source mapping as Lambda would run it."""

    uuid: str
    function: str
    environment: dict
    timeout_seconds: int
    batch_size: int
    batching_window_seconds: int
    function_response_types: tuple
    queue_arn: str


@dataclass(frozen=True)
class Wiring:
    """What the runtime found by following the resources from the Terraform outputs."""

    ingest: Mapping
    notification_events: tuple
    notification_filter: dict
    transform: Mapping


class AttachedRuntime:
    """Run ingest and transform in-process on resources Terraform created in the embedded AWS."""

    def __init__(self, *, endpoint_url: str, region: str, environment: dict, transform_workers: int = 2):
        missing = [k for k in ENVIRONMENT_KEYS if not environment.get(k)]
        if missing:
            raise WiringError(f"eltops_environment lacks {', '.join(missing)}")
        self.endpoint_url = endpoint_url
        self.region = region
        self.environment = dict(environment)
        self.transform_workers = transform_workers
        self.stats = RuntimeStats()
        self.mappings: list[EventSourceMapping] = []
        self.wiring: Wiring | None = None

    def client(self, service: str):
        return boto3.session.Session().client(
            service, endpoint_url=self.endpoint_url, region_name=self.region,
            config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32), **CREDENTIALS)

    # -- following the wiring ----------------------------------------------------------------------
    def discover(self) -> Wiring:
        s3, sqs = self.client("s3"), self.client("sqs")
        bronze = self.environment["ELT_BRONZE_BUCKET"]
        notification = s3.get_bucket_notification_configuration(Bucket=bronze)
        targets = [c for c in notification.get("QueueConfigurations", [])
                   if any(e.startswith("s3:ObjectCreated:") for e in c.get("Events", []))]
        if len(targets) != 1:
            raise WiringError(f"bucket {bronze}: expected one ObjectCreated notification to an SQS queue (the ingest "
                              f"queue), found {len(targets)}")
        ingest_queue_arn = self._queue_arn(sqs, self.environment["ELT_INGEST_QUEUE_URL"])
        if targets[0]["QueueArn"] != ingest_queue_arn:
            raise WiringError(f"bucket {bronze} notifies {targets[0]['QueueArn']}, not the ingest queue "
                              f"{ingest_queue_arn}")
        ingest = self._mapping(ingest_queue_arn)
        transform = self._mapping(self._queue_arn(sqs, self.environment["ELT_QUEUE_URL"]))
        if ingest.environment.get("ELT_QUEUE_URL") != self.environment["ELT_QUEUE_URL"]:
            raise WiringError(f"ingest {ingest.function} sends to {ingest.environment.get('ELT_QUEUE_URL')!r}, "
                              f"not to the events queue {self.environment['ELT_QUEUE_URL']}")
        return Wiring(ingest=ingest, notification_events=tuple(targets[0]["Events"]),
                      notification_filter=targets[0].get("Filter", {}), transform=transform)

    @staticmethod
    def _queue_arn(sqs, url: str) -> str:
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def _mapping(self, queue_arn: str) -> Mapping:
        lam = self.client("lambda")
        found = lam.list_event_source_mappings(EventSourceArn=queue_arn)["EventSourceMappings"]
        if len(found) != 1:
            raise WiringError(f"queue {queue_arn}: expected one event source mapping, found {len(found)}")
        mapping = found[0]
        function = lam.get_function_configuration(FunctionName=mapping["FunctionArn"])
        found = Mapping(uuid=mapping["UUID"], function=function["FunctionName"],
                        environment=function.get("Environment", {}).get("Variables", {}),
                        timeout_seconds=int(function["Timeout"]), batch_size=int(mapping.get("BatchSize", 10)),
                        batching_window_seconds=int(mapping.get("MaximumBatchingWindowInSeconds", 0)),
                        function_response_types=tuple(mapping.get("FunctionResponseTypes", [])), queue_arn=queue_arn)
        if "ReportBatchItemFailures" not in found.function_response_types:
            raise WiringError(f"event source mapping {found.uuid} ({found.function}) lacks ReportBatchItemFailures: "
                              "one failed item would retry the whole batch")
        return found

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> AttachedRuntime:
        wiring = self.wiring = self.discover()
        sqs, lam = self.client("sqs"), self.client("lambda")
        for mapping in (wiring.ingest, wiring.transform):  # see the module docstring
            lam.update_event_source_mapping(UUID=mapping.uuid, Enabled=False)
        ingest_app._DEPS = ingest_app.build_deps({**_defaults(ingest_app), **wiring.ingest.environment},
                                                 self.client)
        transform_app._DEPS = transform_app.build_deps(
            {**_defaults(transform_app), **wiring.transform.environment}, self.client)
        self.mappings = [
            EventSourceMapping(sqs=sqs, queue_url=self.environment["ELT_INGEST_QUEUE_URL"], handler=ingest_app.handler,
                               batch_size=wiring.ingest.batch_size, function_name=wiring.ingest.function,
                               timeout_ms=wiring.ingest.timeout_seconds * 1000, stats=self.stats, counts_as="ingest"),
            EventSourceMapping(sqs=sqs, queue_url=self.environment["ELT_QUEUE_URL"], handler=transform_app.handler,
                               batch_size=wiring.transform.batch_size, workers=self.transform_workers,
                               function_name=wiring.transform.function,
                               timeout_ms=wiring.transform.timeout_seconds * 1000,
                               stats=self.stats),
        ]
        for mapping in self.mappings:
            mapping.start()
        return self

    def stop(self) -> None:
        """Stop the emulators and enable the mappings again, as Terraform left them."""
        for mapping in self.mappings:
            mapping.stop()
        self.mappings = []
        ingest_app.reset()
        transform_app.reset()
        if self.wiring is not None:
            lam = self.client("lambda")
            for mapping in (self.wiring.ingest, self.wiring.transform):
                lam.update_event_source_mapping(UUID=mapping.uuid, Enabled=True)

    def __enter__(self) -> AttachedRuntime:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
