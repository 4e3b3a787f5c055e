"""Interleaving proof: two versions of one key, a replay copy and a duplicate delivery, driven step
by step through ingest and transform in a few hundred seeded orders.

Every handler runs in its own thread, but only one runs at a time: a step hook
(`lambdas.shared.steps`) hands control back to the scheduler at each named step (after-claim,
after-send, after-read, before-silver-write, after-silver-write), and the scheduler picks, by a seeded
random choice, which paused handler or which outside action (an upload, a duplicate delivery, a
`replay copy`, an SQS receive) goes next. Afterwards: silver holds the latest bronze version's rows,
every ledger item of the key and of its copy is terminal (DONE or FAILED), and the DLQ is empty (no
object here may fail). Odd seeds add a third upload with the first version's exact bytes (ABA).

ELT_INTERLEAVINGS sets the number of orders (default 200).
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from lambdas.shared import steps
from tests.functional.test_version_ordering import rows

ORDERS = int(os.environ.get("ELT_INTERLEAVINGS", "200"))
MAX_SLICES = 400


class Task:
    """A handler call in its own thread that runs only while the scheduler lets it."""

    def __init__(self, name: str, fn: Callable[[], None], by_thread: dict):
        self.name, self.fn = name, fn
        self.turn, self.back = threading.Semaphore(0), threading.Semaphore(0)
        self.finished, self.error, self.at = False, None, "start"
        self.thread = threading.Thread(target=self._body, name=name, daemon=True)
        self.by_thread = by_thread
        self.thread.start()

    def _body(self) -> None:
        self.by_thread[threading.get_ident()] = self
        self.turn.acquire()
        try:
            self.fn()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.finished = True
            self.back.release()

    def run_slice(self) -> None:
        """Run until the next step hook or the end."""
        self.turn.release()
        self.back.acquire()

    def pause(self, step_name: str) -> None:
        self.at = step_name
        self.back.release()
        self.turn.acquire()


class World:
    """One seeded order of everything that happens to one key."""

    def __init__(self, pipeline, seed: int):
        self.p, self.seed = pipeline, seed
        self.rng = random.Random(seed)
        self.key = f"bronze/orders/dt=2025-01-02/k{seed:04d}.jsonl"
        self.silver = f"silver/orders/dt=2025-01-02/k{seed:04d}.parquet"
        self.versions = [rows(2, f"a{seed}"), rows(3, f"b{seed}")] + ([rows(2, f"a{seed}")] if seed % 2 else [])
        self.uploaded: list[tuple[str, str]] = []  # (etag, sequencer) in upload order
        self.by_thread: dict[int, Task] = {}
        self.tasks: list[Task] = []
        self.trace: list[str] = []
        self.copy_key: str | None = None
        self.duplicate_done = self.copy_done = False
        self.eagerness = self.rng.choice((0.05, 0.2, 0.5, 0.8))  # chance that the outside world goes next

    # -- what can happen next ----------------------------------------------------------------------
    def actions(self) -> list[tuple[str, Callable[[], None]]]:
        out = []
        if len(self.uploaded) < len(self.versions):
            out.append(("upload", self.upload))
        if self.uploaded and not self.duplicate_done:
            out.append(("duplicate", self.duplicate))
        if self.uploaded and not self.copy_done:
            out.append(("replay-copy", self.replay_copy))
        out.append(("receive", self.receive))
        return out

    def upload(self) -> None:
        body = self.versions[len(self.uploaded)]
        etag = self.p.put(self.key, body)
        sequencer = f"{len(self.uploaded) + 1:02X}0000000000000000"
        self.uploaded.append((etag, sequencer))
        self.spawn(f"ingest v{len(self.uploaded)}", self.ingest(self.key, etag, sequencer))

    def duplicate(self) -> None:
        etag, sequencer = self.rng.choice(self.uploaded)
        self.duplicate_done = True
        self.spawn(f"ingest duplicate {sequencer[:2]}", self.ingest(self.key, etag, sequencer))

    def replay_copy(self) -> None:
        from tests.functional.test_version_ordering import copy_replay

        self.copy_done = True
        self.copy_key, copy_etag = copy_replay(self.p, self.key, dest_prefix=f"bronze/replay/s{self.seed}")
        self.spawn("ingest copy", self.ingest(self.copy_key, copy_etag, "01"))

    def receive(self) -> bool:
        got = self.p.sqs.receive_message(QueueUrl=self.p.queue_url, MaxNumberOfMessages=1, VisibilityTimeout=300,
                                         AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
        for message in got:
            self.spawn(f"transform {message['MessageId'][:6]}", self.transform(message))
        return bool(got)

    # -- handlers as tasks -------------------------------------------------------------------------
    def ingest(self, key: str, etag: str, sequencer: str) -> Callable[[], None]:
        def run() -> None:
            try:
                self.p.ingest_app.handler(self.p.s3_event(key, etag, sequencer=sequencer))
            except self.p.ingest_app.IngestFailed:  # in flight elsewhere: S3 retries the event
                self.spawn(f"ingest retry {sequencer[:2]}", self.ingest(key, etag, sequencer))
        return run

    def transform(self, message: dict) -> Callable[[], None]:
        def run() -> None:
            result = self.p.transform_app.handler(self.p.sqs_event([message]))
            if result["batchItemFailures"]:  # visible again: retried, then the DLQ (redrive policy)
                self.p.sqs.change_message_visibility(QueueUrl=self.p.queue_url,
                                                     ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
            else:
                self.p.sqs.delete_message(QueueUrl=self.p.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return run

    def spawn(self, name: str, fn: Callable[[], None]) -> None:
        self.tasks.append(Task(name, fn, self.by_thread))

    def hook(self, name: str, context: dict) -> None:
        task = self.by_thread.get(threading.get_ident())
        if task is not None:
            task.pause(name)

    # -- the run -----------------------------------------------------------------------------------
    def run(self) -> None:
        steps.HOOK = self.hook
        try:
            for _ in range(MAX_SLICES):
                live = [t for t in self.tasks if not t.finished]
                running = [(f"{t.name} @{t.at}", t.run_slice) for t in live]
                # How eager the outside world is varies by seed: from handlers running to the end
                # between uploads (sequential orders, ABA after a finished B) to everything at once.
                if running and self.rng.random() >= self.eagerness:
                    name, go = self.rng.choice(running)
                else:
                    name, go = self.rng.choice(self.actions())
                self.trace.append(name)
                progressed = go()
                errors = [t for t in self.tasks if t.error is not None]
                assert not errors, f"seed {self.seed}: {errors[0].name} raised {errors[0].error!r}; {self.trace}"
                if name == "receive" and not progressed and not live and len(self.actions()) == 1:
                    return  # nothing running, nothing left to happen, nothing queued
            raise AssertionError(f"seed {self.seed}: no end after {MAX_SLICES} steps: {self.trace}")
        finally:
            steps.HOOK = None
            for task in self.tasks:  # never leave a thread waiting
                while not task.finished:
                    task.run_slice()

    def check(self) -> None:
        p, why = self.p, f"seed {self.seed}: {self.trace}"
        latest = self.versions[-1]
        body = p.s3.get_object(Bucket=p.silver, Key=self.silver)["Body"].read()
        got = sorted(pq.read_table(pa.BufferReader(body)).column("order_id").to_pylist())
        want = sorted(line.split('"order_id": "')[1].split('"')[0] for line in latest.decode().splitlines())
        assert got == want, why
        assert p.s3.head_object(Bucket=p.silver, Key=self.silver)["Metadata"]["source-etag"] == self.uploaded[-1][0], why
        for key in filter(None, (self.key, self.copy_key)):
            for item in p.ledger.versions(bucket=p.bronze, key=key):
                assert item["status"] in ("DONE", "FAILED"), f"{key} {item['etag']} is {item['status']}; {why}"
                assert item["status"] == "DONE", f"{key} failed: {item.get('last_error')}; {why}"
        dlq = p.sqs.receive_message(QueueUrl=p.dlq_url, MaxNumberOfMessages=10).get("Messages", [])
        assert dlq == [], why


def test_silver_ends_with_the_latest_version_in_every_seeded_order(pipeline):
    endings = set()
    for seed in range(ORDERS):
        world = World(pipeline, seed)
        world.run()
        world.check()
        endings.add(tuple(step for step in world.trace if step != "receive")[:6])
    assert len(endings) > ORDERS // 2  # the orders really differ
