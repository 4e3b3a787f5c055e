"""Shared fixtures: AWS-shaped sample events, moto in-process resources wired to both handlers."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import boto3
import pytest

EVENTS = Path(__file__).parent / "events"
REGION = "us-east-1"


def pytest_configure(config):
    """Every AWS call the handlers and eltops make in this run is recorded (ops/local/calls.py) for
    tests/test_policy_coverage.py, which runs last; subprocesses inherit the variable."""
    import os
    import signal
    import tempfile

    # The Ctrl-C tests (_thread.interrupt_main) need Python's SIGINT handler. A shell that starts
    # a command in the background without job control (`make test &` in a script, nohup) starts
    # it with SIGINT ignored, and Python then installs none: in the pytest process and in each
    # xdist worker, put it back.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if not os.environ.get("ELT_CALL_RECORD"):
        folder = tempfile.mkdtemp(prefix="elt-calls-")
        os.environ["ELT_CALL_RECORD"] = os.path.join(folder, "calls.jsonl")
        config._elt_call_folder = folder


def pytest_unconfigure(config):
    import os
    import shutil

    folder = getattr(config, "_elt_call_folder", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop("ELT_CALL_RECORD", None)


RUNS_LAST = "tests/test_policy_coverage.py"
# The files that take longest (seconds on one worker, make test on 2 cores): handed out first
# under --dist loadfile, so that no long file starts when the other workers are nearly done.
# pytest-xdist's own order (--loadscope-reorder) is by number of tests, not by time.
SLOW_FIRST = (
    "tests/e2e/test_terraform_apply.py",  # ~290: plan, apply, the pipeline, destroy
    "tests/functional/test_interleavings.py",  # ~150: every seeded order
    "tests/e2e/test_chaos.py",
    "tests/e2e/test_runbooks.py",
    "tests/e2e/test_parquet_exit.py",  # ~70: 20 commands in a row
    "tests/e2e/test_laptop_kills.py",
    "tests/e2e/test_demo_and_local_up.py",
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The policy-coverage check reads what every other test recorded: it runs last."""
    last = [i for i in items if i.nodeid.startswith(RUNS_LAST)]
    items[:] = [i for i in items if i not in last] + last


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """Tells each pytest-xdist worker whether RUNS_LAST is held back (tests/test_policy_coverage.py reads it)."""
    node.workerinput["elt_runs_last_held"] = node.config.getoption("dist") == "loadfile"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist's --dist loadfile (make test), the SLOW_FIRST files go out first, and
    RUNS_LAST starts only once every other test has finished on every worker, so that it reads all
    they recorded."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LoadFileLastFileLast(LoadFileScheduling):
        # A worker runs the last test it was sent only once it is sent more or told to shut down.
        def _assign_work_unit(self, node):
            for scope in reversed(SLOW_FIRST):
                if scope in self.workqueue:
                    self.workqueue.move_to_end(scope, last=False)
            if RUNS_LAST in self.workqueue:
                self.workqueue.move_to_end(RUNS_LAST)  # --loadscope-reorder puts the larger files first
            if list(self.workqueue) == [RUNS_LAST]:
                self._hand_out_last()
            else:
                super()._assign_work_unit(node)

        def _reschedule(self, node):
            if list(self.workqueue) == [RUNS_LAST]:
                self._hand_out_last()
            else:
                super()._reschedule(node)

        def _hand_out_last(self):
            """RUNS_LAST goes to a worker once every other worker has finished all it was sent (its
            own tests run before it, in order); meanwhile idle workers but one finish and stop."""
            live = [n for n in self.nodes if not n.shutting_down]
            done = {n: not self._pending_of(self.assigned_work[n]) for n in self.nodes}
            for node in live:
                if all(done[other] for other in self.nodes if other is not node):
                    super()._assign_work_unit(node)
                    return
            idle = [n for n in live if self._pending_of(self.assigned_work[n]) <= 1]
            for node in idle[:len(live) - 1]:
                node.shutdown()

    return LoadFileLastFileLast(config, log)


def wait_until(predicate, *, timeout: float = 30.0, what: str = "the condition", interval: float = 0.2):
    """Poll `predicate` until it returns something truthy (returned); fail saying what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def most_in_flight(client, operation: str, hold: float = 0.02) -> list[int]:
    """[the most `operation` calls (e.g. "s3.ListObjectsV2") this client had in flight at once];
    each call is held `hold` s first, so that calls a pool lets overlap do overlap."""
    import threading

    lock, now, most = threading.Lock(), [0], [0]

    def before(**kwargs):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(hold)

    def after(**kwargs):
        with lock:
            now[0] -= 1
    client.meta.events.register(f"before-call.{operation}", before)
    client.meta.events.register(f"after-call.{operation}", after)
    return most


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _aws_test_env(monkeypatch, tmp_path):
    """Never reach a real account: fake credentials, a fixed region, no endpoint override."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("ELT_STATE_DIR", str(tmp_path / "eltops-state"))


_SESSION: list = []


def aws_client(service: str):
    """A client from one boto3 session shared by the tests: each mock_aws() resets boto3's default
    session, and a new session's first client costs ~0.1-0.4 s (loading the service model), a
    later one ~2 ms. moto's handler sits in every session's clients, so these reach moto too."""
    if not _SESSION:
        _SESSION.append(boto3.session.Session())
    return _SESSION[0].client(service, region_name=REGION)


class Pipeline:
    """moto (in-process) resources as Terraform creates them, with both handlers wired to them."""

    def __init__(self):
        from lambdas.ingest import app as ingest_app
        from lambdas.transform import app as transform_app
        from ops.local.resources import LocalSettings, Names, provision

        self.names = Names()
        self.s3 = aws_client("s3")
        self.sqs = aws_client("sqs")
        self.ddb = aws_client("dynamodb")
        self.settings = LocalSettings()
        self.provisioned = provision(s3=self.s3, sqs=self.sqs, dynamodb=self.ddb, names=self.names,
                                     settings=self.settings, endpoint_url="", region=REGION)
        # The ingest queue holds the bucket's s3:TestEvent now; tests send their events directly.
        self.sqs.purge_queue(QueueUrl=self.provisioned.ingest_queue_url)
        self.bronze = self.names.bronze_bucket
        self.silver = self.names.silver_bucket
        self.queue_url = self.provisioned.queue_url
        self.dlq_url = self.provisioned.dlq_url
        env = {"ELT_QUEUE_URL": self.queue_url, "ELT_LEDGER_TABLE": self.names.ledger_table,
               "ELT_SILVER_BUCKET": self.silver, "ELT_CLAIM_LEASE_SECONDS": "60"}
        self.env = env
        self.ingest_app, self.transform_app = ingest_app, transform_app
        from ops.local.calls import attach

        ingest_app._DEPS = ingest_app.build_deps(env, lambda s: attach(aws_client(s), who="ingest"))
        transform_app._DEPS = transform_app.build_deps(env, lambda s: attach(aws_client(s), who="transform"))
        from lambdas.shared.ledger import Ledger

        self.ledger = Ledger(self.ddb, self.names.ledger_table)

    def put(self, key: str, body: bytes) -> str:
        return self.s3.put_object(Bucket=self.bronze, Key=key, Body=body)["ETag"].strip('"')

    def s3_event(self, key: str, etag: str, size: int = 0, sequencer: str | None = None) -> dict:
        """The sample S3 event for this object; `sequencer` replaces the sample's ("" drops it)."""
        from urllib.parse import quote_plus

        event = copy.deepcopy(load_event("s3_put_event.json"))
        obj = event["Records"][0]["s3"]["object"]
        obj.update(key=quote_plus(key, safe="/"), eTag=etag, size=size)
        if sequencer is not None:
            obj["sequencer"] = sequencer
            if not sequencer:
                del obj["sequencer"]
        return event

    def receive_all(self, url: str | None = None) -> list[dict]:
        url = url or self.queue_url
        out = []
        while True:
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                           AttributeNames=["All"], VisibilityTimeout=30)
            if not got.get("Messages"):
                return out
            out += got["Messages"]

    def sqs_event(self, messages: list[dict]) -> dict:
        from ops.local.runtime import sqs_lambda_record

        arn = "arn:aws:sqs:us-east-1:123456789012:elt-local-events"
        return {"Records": [sqs_lambda_record(m, arn) for m in messages]}

    def run(self, key: str, body: bytes) -> dict:
        """Upload, ingest, transform; returns the transform response."""
        etag = self.put(key, body)
        self.ingest_app.handler(self.s3_event(key, etag, len(body)))
        return self.transform_app.handler(self.sqs_event(self.receive_all()))

    def pump(self, rounds: int = 50) -> int:
        """Play Lambda: ingest queue -> ingest, events queue -> transform (both as event source
        mappings with partial batch responses), until both are empty."""
        handled = 0
        for _ in range(rounds):
            notes = self.receive_all(self.provisioned.ingest_queue_url)
            if notes:
                self._deliver(self.ingest_app.handler, notes, self.provisioned.ingest_queue_url)
            units = self.receive_all()
            if units:
                self._deliver(self.transform_app.handler, units, self.queue_url)
            handled += len(notes) + len(units)
            if not notes and not units:
                return handled
        raise AssertionError("queues did not drain")

    def _deliver(self, handler, messages: list[dict], url: str) -> None:
        result = handler(self.sqs_event(messages))
        failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def close(self):
        self.ingest_app.reset()
        self.transform_app.reset()


@pytest.fixture
def pipeline():
    from moto import mock_aws

    with mock_aws():
        p = Pipeline()
        try:
            yield p
        finally:
            p.close()


def log_lines(capsys) -> list[dict]:
    """The JSON log lines the handlers wrote to stdout since the last look."""
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def logs(lines: list[dict]) -> list[dict]:
    """The log lines that are not EMF metric records."""
    return [line for line in lines if line.get("message") != "metrics"]


def emf_metrics(lines: list[dict], *, function: str) -> dict:
    """(metric, type, reason) -> value over the EMF records logged by `function`, summed over
    records (each invocation writes its own)."""
    found = {}
    for line in lines:
        if line.get("message") == "metrics":
            assert line["function"] == function
            for metric in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                where = (metric["Name"], line["type"], line.get("reason"))
                found[where] = found[where] + line[metric["Name"]] if where in found else line[metric["Name"]]
    return found
