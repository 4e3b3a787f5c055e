"""Fault injection for tests and `make chaos`: AWS calls that fail, and handlers that die.

`FaultInjector.attach(client)` registers a botocore `before-send` hook. For a matching call it
answers, instead of the server, with a throttling error (HTTP 400/503 with the service's own error
code), a 5xx, or a read timeout — so botocore's and the project's real retry code runs. Rules match
service and operation names and fire at a rate (seeded) or on the Nth matching call.

`FaultInjector.kill_at(step, rate|nth)` makes `lambdas.shared.steps.step()` raise `Killed` at a
named step (after-claim, after-send, after-silver-write, before-delete).
"""

from __future__ import annotations

import fnmatch
import random
import threading
from collections import Counter
from dataclasses import dataclass

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

from lambdas.shared import steps

THROTTLE = "throttle"
SERVER_ERROR = "5xx"
TIMEOUT = "timeout"

# (status, body) of a throttling answer in each service's own protocol.
_THROTTLE_BODIES = {
    "s3": (503, b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                b"<Message>Please reduce your request rate.</Message></Error>"),
    "dynamodb": (400, b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException",'
                      b'"message":"Rate of requests exceeds the allowed throughput."}'),
    "sqs": (400, b'{"__type":"com.amazonaws.sqs#ThrottlingException","message":"Rate exceeded"}'),
}


@dataclass
class Rule:
    kind: str
    service: str = "*"
    operation: str = "*"
    rate: float = 0.0
    nth: int | None = None
    seen: int = 0


class _Raw:
    """Enough of a urllib3 response for botocore to read a body from."""

    def __init__(self, body: bytes):
        self.body = body

    def stream(self, *args, **kwargs):
        yield self.body


class FaultInjector:
    def __init__(self, seed: int = 0):
        self.random = random.Random(seed)
        self.rules: list[Rule] = []
        self.kills: list[Rule] = []
        self.injected: Counter = Counter()
        self.lock = threading.Lock()
        self.enabled = True

    # -- AWS calls ------------------------------------------------------------------------------
    def fail(self, kind: str, *, service: str = "*", operation: str = "*", rate: float = 0.0,
             nth: int | None = None) -> FaultInjector:
        if kind not in (THROTTLE, SERVER_ERROR, TIMEOUT):
            raise ValueError(f"unknown fault kind {kind!r}")
        self.rules.append(Rule(kind=kind, service=service, operation=operation, rate=rate, nth=nth))
        return self

    def attach(self, client):
        service = client.meta.service_model.service_name
        client.meta.events.register_first("before-send.*.*",
                                          lambda request, **kw: self._before_send(service, request, kw))
        return client

    def _fire(self, rule: Rule) -> bool:
        rule.seen += 1
        if rule.nth is not None:
            return rule.seen == rule.nth
        return self.random.random() < rule.rate

    def _before_send(self, service: str, request, kwargs):
        if not self.enabled:
            return None
        operation = kwargs.get("event_name", "").rsplit(".", 1)[-1]
        with self.lock:
            rule = next((r for r in self.rules if fnmatch.fnmatch(service, r.service)
                         and fnmatch.fnmatch(operation, r.operation) and self._fire(r)), None)
            if rule is None:
                return None
            self.injected[f"{service}.{operation}.{rule.kind}"] += 1
        if rule.kind == TIMEOUT:
            raise ReadTimeoutError(endpoint_url=request.url)
        if rule.kind == THROTTLE:
            status, body = _THROTTLE_BODIES.get(service, (503, b""))
        else:
            status, body = 500, (b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
                                 if service == "s3" else b'{"__type":"InternalFailure","message":"injected"}')
        headers = {"Content-Type": "application/xml" if service == "s3" else "application/x-amz-json-1.0",
                   "x-amzn-query-error": "" if service != "sqs" else "ThrottlingException;Sender"}
        return AWSResponse(request.url, status, headers, _Raw(body))

    # -- handler kills ------------------------------------------------------------------------------
    def kill_at(self, step: str, *, rate: float = 0.0, nth: int | None = None) -> FaultInjector:
        if step not in steps.STEPS:
            raise ValueError(f"unknown step {step!r}; known: {', '.join(steps.STEPS)}")
        self.kills.append(Rule(kind=step, rate=rate, nth=nth))
        return self

    def _step(self, name: str, context: dict) -> None:
        if not self.enabled:
            return
        with self.lock:
            hit = any(rule.kind == name and self._fire(rule) for rule in self.kills)
            if hit:
                self.injected[f"kill.{name}"] += 1
        if hit:
            raise steps.Killed(f"killed at {name}")

    def __enter__(self) -> FaultInjector:
        steps.HOOK = self._step
        return self

    def __exit__(self, *exc) -> None:
        steps.HOOK = None

    @property
    def total(self) -> int:
        return sum(self.injected.values())
