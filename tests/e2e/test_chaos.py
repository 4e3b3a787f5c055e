"""The fault-injection property run, bounded for `make test` (longer runs: `make chaos`)."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from lambdas.shared import steps
from ops.local.faults import SERVER_ERROR, THROTTLE, TIMEOUT, FaultInjector
from tests.chaos.run import run


@pytest.mark.parametrize("seed", [11, 23])
def test_every_line_lands_exactly_once_whatever_fails(seed):
    report = run(seed=seed, objects=12, poison=2, rate=0.04)
    assert report.problems == []
    assert (report.lost, report.duplicated, report.unexpected) == (0, 0, 0), report.line()
    kills = {k for k in report.injected if k.startswith("kill.")}
    assert kills == {f"kill.{s}" for s in steps.STEPS}, report.injected  # every crash point was exercised
    assert report.faults >= 15


def test_injected_faults_reach_botocore_as_throttling_5xx_and_timeouts_and_are_retried():
    with mock_aws():
        faults = FaultInjector(seed=0)
        faults.fail(THROTTLE, service="dynamodb", operation="ListTables", nth=1)
        faults.fail(SERVER_ERROR, service="sqs", operation="ListQueues", nth=1)
        faults.fail(TIMEOUT, service="s3", operation="ListBuckets", nth=1)
        config = Config(retries={"mode": "standard", "max_attempts": 3})
        clients = [faults.attach(boto3.client(s, region_name="us-east-1", config=config)) for s in ("dynamodb", "sqs", "s3")]
        assert clients[0].list_tables()["ResponseMetadata"]["RetryAttempts"] == 1
        assert clients[1].list_queues()["ResponseMetadata"]["RetryAttempts"] == 1
        assert clients[2].list_buckets()["ResponseMetadata"]["RetryAttempts"] == 1
        assert faults.total == 3
        raw = faults.attach(boto3.client("sqs", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1})))
        faults.fail(THROTTLE, service="sqs", operation="ListQueues", nth=2)  # its own count: the 2nd matching call
        raw.list_queues()
        from botocore.exceptions import ClientError

        with pytest.raises(ClientError, match="ThrottlingException"):
            raw.list_queues()


def test_a_kill_at_a_named_step_is_not_an_exception_handlers_catch():
    faults = FaultInjector().kill_at(steps.AFTER_CLAIM, nth=2)
    with faults:
        steps.step(steps.AFTER_CLAIM)
        with pytest.raises(steps.Killed):
            try:
                steps.step(steps.AFTER_CLAIM)
            except Exception:  # what handler code catches
                pytest.fail("Killed must not be caught by `except Exception`")
    steps.step(steps.AFTER_CLAIM)  # no hook outside the context: a no-op
    with pytest.raises(ValueError, match="unknown step"):
        FaultInjector().kill_at("after-lunch", nth=1)
