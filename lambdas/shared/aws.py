"""boto3 clients for the Lambdas, built once per container (AWS_ENDPOINT_URL is honoured)."""

from __future__ import annotations

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


def client(service: str):
    return boto3.session.Session().client(service, config=_CONFIG)
