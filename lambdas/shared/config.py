"""Environment variables each Lambda reads: the one list that docs/architecture.md, Terraform and tests check."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str | None  # None: required
    doc: str


LEDGER_TABLE = EnvVar("ELT_LEDGER_TABLE", None, "DynamoDB object ledger (idempotency table) name")
LEDGER_TTL_DAYS = EnvVar("ELT_LEDGER_TTL_DAYS", "30", "days a ledger item lives (its `expiration`)")
LOG_LEVEL = EnvVar("ELT_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR")

INGEST_ENV: tuple[EnvVar, ...] = (
    EnvVar("ELT_QUEUE_URL", None, "SQS events queue that receives one work unit per object"),
    LEDGER_TABLE,
    LEDGER_TTL_DAYS,
    EnvVar(
        "ELT_CLAIM_LEASE_SECONDS",
        "120",
        "how long a claim blocks other events for the same object; keep it above the ingest timeout "
        "and below the S3 event retry delay so a crashed claim is taken over on retry",
    ),
    LOG_LEVEL,
)

TRANSFORM_ENV: tuple[EnvVar, ...] = (
    EnvVar("ELT_SILVER_BUCKET", None, "bucket that receives silver/ Parquet and quarantine/ lines"),
    LEDGER_TABLE,
    LEDGER_TTL_DAYS,
    EnvVar(
        "ELT_MAX_JSON_BYTES",
        str(64 * 1024 * 1024),
        "largest JSON array/document (decompressed) read whole; JSONL streams at any size",
    ),
    EnvVar("ELT_ROW_GROUP_ROWS", "131072", "rows per Parquet row group"),
    EnvVar(
        "ELT_MAX_OBJECT_BYTES",
        str(4 * 1024 * 1024 * 1024),
        "largest bronze object (decompressed) transformed; past it the object is a failed item (a gzip bomb stops here)",
    ),
    EnvVar(
        "ELT_QUARANTINE_MAX_LINES",
        "10000",
        "quarantine records kept per object; past the cap rejects are counted in one summary record",
    ),
    EnvVar(
        "ELT_QUARANTINE_MAX_BYTES",
        str(64 * 1024 * 1024),
        "quarantine bytes kept per object (it is staged in /tmp); past the cap as for the line cap",
    ),
    EnvVar(
        "ELT_MIN_SECONDS_TO_START",
        "0",
        "a batch's next item starts only while more than this many seconds of the invocation remain; the "
        "rest are reported as failed items (retried) instead of being cut off by the timeout, which "
        "would retry the whole batch (0: no check; Terraform sets 60)",
    ),
    LOG_LEVEL,
)

ENV_BY_FUNCTION = {"ingest": INGEST_ENV, "transform": TRANSFORM_ENV}


class ConfigError(RuntimeError):
    pass


def read(env_vars: tuple[EnvVar, ...], environ=None) -> dict[str, str]:
    """Values of the given variables; a missing required one is an error naming it."""
    environ = os.environ if environ is None else environ
    values, missing = {}, []
    for var in env_vars:
        value = environ.get(var.name, var.default)
        if value in (None, ""):
            missing.append(var.name)
        values[var.name] = value
    if missing:
        raise ConfigError(f"missing environment variable(s): {', '.join(missing)}")
    return values
