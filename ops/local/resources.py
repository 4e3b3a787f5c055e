"""Names and settings of the pipeline's resources: one place for the embedded AWS, `eltops` option
defaults and (by convention `<prefix>-<role>`) the Terraform environment."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Names:
    prefix: str = "elt-local"

    @property
    def bronze_bucket(self) -> str:
        return f"{self.prefix}-bronze"

    @property
    def silver_bucket(self) -> str:
        return f"{self.prefix}-silver"

    @property
    def queue(self) -> str:
        return f"{self.prefix}-events"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}-events-dlq"

    @property
    def ledger_table(self) -> str:
        return f"{self.prefix}-ledger"

    @property
    def ingest_queue(self) -> str:
        """S3 events for bronze/ (moto writes the real S3 event JSON here), consumed by ingest."""
        return f"{self.prefix}-ingest-events"

    @property
    def ingest_dlq(self) -> str:
        """S3 events ingest could not finish after maxReceiveCount receives."""
        return f"{self.prefix}-ingest-events-dlq"


@dataclass(frozen=True)
class LocalSettings:
    """Short timeouts so a poison object reaches the DLQ within about ten seconds."""

    visibility_timeout: int = 2
    max_receive_count: int = 3
    ingest_visibility_timeout: int = 3
    ingest_max_receive_count: int = 5
    claim_lease_seconds: int = 2
    batch_size: int = 10
    transform_workers: int = 2


@dataclass(frozen=True)
class Provisioned:
    endpoint_url: str
    region: str
    names: Names
    queue_url: str
    dlq_url: str
    ingest_queue_url: str
    ingest_dlq_url: str

    def environ(self) -> dict[str, str]:
        """The `ELT_*` and AWS variables that `eltops local up` exports."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "ELT_BRONZE_BUCKET": self.names.bronze_bucket,
            "ELT_SILVER_BUCKET": self.names.silver_bucket,
            "ELT_QUEUE_URL": self.queue_url,
            "ELT_DLQ_URL": self.dlq_url,
            "ELT_INGEST_QUEUE_URL": self.ingest_queue_url,
            "ELT_INGEST_DLQ_URL": self.ingest_dlq_url,
            "ELT_LEDGER_TABLE": self.names.ledger_table,
        }


def provision(*, s3, sqs, dynamodb, names: Names, settings: LocalSettings, endpoint_url: str,
              region: str) -> Provisioned:
    """Create what Terraform creates (idempotent): buckets, both queues with their DLQs, the ledger,
    and the bronze notification to the ingest queue."""
    for bucket in (names.bronze_bucket, names.silver_bucket):
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
    dlq_url = sqs.create_queue(QueueName=names.dlq, Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    queue_url = sqs.create_queue(
        QueueName=names.queue,
        Attributes={
            "VisibilityTimeout": str(settings.visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": _arn(sqs, dlq_url), "maxReceiveCount": settings.max_receive_count}
            ),
        },
    )["QueueUrl"]
    ingest_dlq_url = sqs.create_queue(QueueName=names.ingest_dlq,
                                      Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    ingest_url = sqs.create_queue(
        QueueName=names.ingest_queue,
        Attributes={
            "VisibilityTimeout": str(settings.ingest_visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": _arn(sqs, ingest_dlq_url),
                                         "maxReceiveCount": settings.ingest_max_receive_count}),
        },
    )["QueueUrl"]
    existing = [t for page in dynamodb.get_paginator("list_tables").paginate() for t in page["TableNames"]]
    if names.ledger_table not in existing:
        dynamodb.create_table(
            TableName=names.ledger_table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "etag", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "etag", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.update_time_to_live(
            TableName=names.ledger_table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"},
        )
    s3.put_bucket_notification_configuration(
        Bucket=names.bronze_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{
                "Id": "bronze-to-ingest",
                "QueueArn": _arn(sqs, ingest_url),
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "bronze/"}]}},
            }]
        },
    )
    return Provisioned(endpoint_url=endpoint_url, region=region, names=names, queue_url=queue_url,
                       dlq_url=dlq_url, ingest_queue_url=ingest_url, ingest_dlq_url=ingest_dlq_url)


def _arn(sqs, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
