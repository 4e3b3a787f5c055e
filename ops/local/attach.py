"""The local Lambda runtime on resources something else created (Terraform applied to the embedded AWS).

`EmbeddedAws` provisions its own copy of the pipeline. `AttachedRuntime` instead starts from the
names Terraform hands out (`terraform output -json eltops_environment`) and follows the wiring
Terraform made, so that a test proves the wiring and not only the names:

- ingest is the function the bronze bucket's notification invokes; its handler runs with the
  environment variables Terraform set on that function (get_function_configuration);
- transform is the function of the event source mapping on the events queue; the emulator uses that
  mapping's batch size and response types, and the function's environment and timeout.

moto stores functions and mappings but cannot run them without Docker, so two things are done
visibly here, and undone on `stop()`:

- moto invokes a mapping's function itself on every SendMessage (through Docker, which fails here)
  and would make the messages visible again: the mapping is disabled, and the emulator reads the
  queue in its place with the mapping's settings;
- S3 -> Lambda notifications cannot reach a handler in this process: a queue notification with the
  same events and filter is added beside the Lambda one (moto writes the real S3 event JSON there),
  and ingest is fed from it as S3 would invoke it.
"""

from __future__ import annotations

from dataclasses import dataclass

import boto3
from botocore.config import Config

from lambdas.ingest import app as ingest_app
from lambdas.transform import app as transform_app
from ops.local.runtime import CREDENTIALS, EventSourceMapping, RuntimeStats, S3Invoker, _defaults

ENVIRONMENT_KEYS = ("ELT_BRONZE_BUCKET", "ELT_SILVER_BUCKET", "ELT_QUEUE_URL", "ELT_DLQ_URL", "ELT_LEDGER_TABLE")


class WiringError(RuntimeError):
    """The resources are not wired as the pipeline needs (names the resource and what is wrong)."""


@dataclass(frozen=True)
class Wiring:
    """What the runtime found by following the resources from the Terraform outputs."""

    ingest_function: str
    ingest_environment: dict
    notification_events: tuple
    notification_filter: dict
    transform_function: str
    transform_environment: dict
    transform_timeout_seconds: int
    mapping_uuid: str
    batch_size: int
    batching_window_seconds: int
    function_response_types: tuple
    queue_arn: str


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
        self.notification_queue_url: str | None = None
        self._original_notification: dict | None = None

    def client(self, service: str):
        return boto3.session.Session().client(
            service, endpoint_url=self.endpoint_url, region_name=self.region,
            config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32), **CREDENTIALS)

    # -- following the wiring ----------------------------------------------------------------------
    def discover(self) -> Wiring:
        s3, sqs, lam = self.client("s3"), self.client("sqs"), self.client("lambda")
        bronze = self.environment["ELT_BRONZE_BUCKET"]
        notification = s3.get_bucket_notification_configuration(Bucket=bronze)
        targets = [c for c in notification.get("LambdaFunctionConfigurations", [])
                   if any(e.startswith("s3:ObjectCreated:") for e in c.get("Events", []))]
        if len(targets) != 1:
            raise WiringError(f"bucket {bronze}: expected one ObjectCreated notification to a Lambda function, "
                              f"found {len(targets)}")
        ingest = lam.get_function_configuration(FunctionName=targets[0]["LambdaFunctionArn"])
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.environment["ELT_QUEUE_URL"],
                                             AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        found = lam.list_event_source_mappings(EventSourceArn=queue_arn)["EventSourceMappings"]
        if len(found) != 1:
            raise WiringError(f"queue {queue_arn}: expected one event source mapping, found {len(found)}")
        mapping = found[0]
        transform = lam.get_function_configuration(FunctionName=mapping["FunctionArn"])
        ingest_env = ingest.get("Environment", {}).get("Variables", {})
        if ingest_env.get("ELT_QUEUE_URL") != self.environment["ELT_QUEUE_URL"]:
            raise WiringError(f"ingest {ingest['FunctionName']} sends to {ingest_env.get('ELT_QUEUE_URL')!r}, "
                              f"not to the events queue {self.environment['ELT_QUEUE_URL']}")
        return Wiring(
            ingest_function=ingest["FunctionName"], ingest_environment=ingest_env,
            notification_events=tuple(targets[0]["Events"]), notification_filter=targets[0].get("Filter", {}),
            transform_function=transform["FunctionName"],
            transform_environment=transform.get("Environment", {}).get("Variables", {}),
            transform_timeout_seconds=int(transform["Timeout"]), mapping_uuid=mapping["UUID"],
            batch_size=int(mapping.get("BatchSize", 10)),
            batching_window_seconds=int(mapping.get("MaximumBatchingWindowInSeconds", 0)),
            function_response_types=tuple(mapping.get("FunctionResponseTypes", [])), queue_arn=queue_arn)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> AttachedRuntime:
        wiring = self.wiring = self.discover()
        if "ReportBatchItemFailures" not in wiring.function_response_types:
            raise WiringError(f"event source mapping {wiring.mapping_uuid} lacks ReportBatchItemFailures: "
                              "one failed item would retry the whole batch")
        s3, sqs, lam = self.client("s3"), self.client("sqs"), self.client("lambda")
        lam.update_event_source_mapping(UUID=wiring.mapping_uuid, Enabled=False)  # see the module docstring
        bronze = self.environment["ELT_BRONZE_BUCKET"]
        self.notification_queue_url = sqs.create_queue(
            QueueName=f"{bronze}-local-s3-notifications", Attributes={"VisibilityTimeout": "3"})["QueueUrl"]
        notification_arn = sqs.get_queue_attributes(QueueUrl=self.notification_queue_url,
                                                     AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        current = s3.get_bucket_notification_configuration(Bucket=bronze)
        current.pop("ResponseMetadata", None)
        self._original_notification = current
        queue_config = {"Id": "local-runtime-ingest", "QueueArn": notification_arn,
                        "Events": list(wiring.notification_events)}
        if wiring.notification_filter:
            queue_config["Filter"] = wiring.notification_filter
        s3.put_bucket_notification_configuration(Bucket=bronze, NotificationConfiguration={
            **current, "QueueConfigurations": [*current.get("QueueConfigurations", []), queue_config]})
        ingest_app._DEPS = ingest_app.build_deps({**_defaults(ingest_app), **wiring.ingest_environment},
                                                 self.client)
        transform_app._DEPS = transform_app.build_deps(
            {**_defaults(transform_app), **wiring.transform_environment}, self.client)
        self.mappings = [
            S3Invoker(sqs=sqs, queue_url=self.notification_queue_url, handler=ingest_app.handler, batch_size=10,
                      function_name=wiring.ingest_function, stats=self.stats),
            EventSourceMapping(sqs=sqs, queue_url=self.environment["ELT_QUEUE_URL"], handler=transform_app.handler,
                               batch_size=wiring.batch_size, workers=self.transform_workers,
                               function_name=wiring.transform_function,
                               timeout_ms=wiring.transform_timeout_seconds * 1000, stats=self.stats),
        ]
        for mapping in self.mappings:
            mapping.start()
        return self

    def stop(self) -> None:
        """Stop the emulators and put the notification and the mapping back as Terraform left them."""
        for mapping in self.mappings:
            mapping.stop()
        self.mappings = []
        ingest_app.reset()
        transform_app.reset()
        if self._original_notification is not None:
            self.client("s3").put_bucket_notification_configuration(
                Bucket=self.environment["ELT_BRONZE_BUCKET"], NotificationConfiguration=self._original_notification)
            self._original_notification = None
        if self.notification_queue_url:
            self.client("sqs").delete_queue(QueueUrl=self.notification_queue_url)
            self.notification_queue_url = None
        if self.wiring is not None:
            self.client("lambda").update_event_source_mapping(UUID=self.wiring.mapping_uuid, Enabled=True)

    def __enter__(self) -> AttachedRuntime:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
