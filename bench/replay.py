"""Replay throughput on an embedded moto server, with a simulated network round trip.

    python bench/replay.py [--objects 300] [--latency-ms 20] [--json]

moto's server runs in its own process on 127.0.0.1 (as with `eltops local up`), so it does not
share the benchmark's interpreter lock. It answers in about a millisecond, which would hide what
concurrency and batching buy in AWS; so every HTTP request first sleeps --latency-ms (a botocore
`before-send` hook), like an in-region S3/SQS round trip. moto's SQS also slows as a queue deepens
(each call walks the queue), so SQS runs rotate to a fresh queue every --queue-rotate messages,
the same for both ways of sending. Measured in one run, on the same objects:

  replay copy:  concurrency 16 vs concurrency 1 (objects/s)
  replay sqs:   batched (10 per SendMessageBatch) and concurrent vs one SendMessage per object
  API calls per 1,000 objects, counted by a botocore `before-call` hook (not estimated)
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_report  # noqa: E402

BUCKET = "bench-bronze"


class Meter:
    """Adds the round trip to each request and counts calls per operation."""

    def __init__(self, latency_s: float):
        self.latency_s = latency_s
        self.calls = collections.Counter()

    def attach(self, client):
        client.meta.events.register("before-send.*.*", self._sleep)
        client.meta.events.register("before-call.*.*", self._count)
        return client

    def _sleep(self, **kwargs):
        time.sleep(self.latency_s)

    def _count(self, model, **kwargs):
        self.calls[model.name] += 1


class MotoProcess:
    """moto's server in a subprocess on 127.0.0.1 and a free port."""

    def __enter__(self):
        import socket
        import subprocess

        import boto3

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.endpoint = f"http://127.0.0.1:{port}"
        self._boto3 = boto3
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client("s3").list_buckets()
                return self
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.2)

    def client(self, service: str):
        from botocore.config import Config

        return self._boto3.session.Session().client(
            service, endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="testing",
            aws_secret_access_key="testing", config=Config(max_pool_connections=64))

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=300, help="objects per measured run (keep to hundreds)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulated round trip per request")
    parser.add_argument("--queue-rotate", type=int, default=100, help="messages per queue before a fresh one")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from lambdas.shared import work_unit
    from ops.listing import list_window
    from ops.replay import replay_copy, replay_sqs
    from ops.timewindow import make_window

    n = args.objects
    with MotoProcess() as aws:
        setup_s3, setup_sqs = aws.client("s3"), aws.client("sqs")
        setup_s3.create_bucket(Bucket=BUCKET)  # no notifications: nothing else fills a queue
        for i in range(n):
            setup_s3.put_object(Bucket=BUCKET, Key=f"bronze/orders/dt=2025-01-01/o{i:05d}.jsonl", Body=b'{"a":1}\n')
        listing = list_window(setup_s3, bucket=BUCKET, prefix="bronze/", by="partition",
                              window=make_window(start="2025-01-01", end="2025-01-02", since=None))
        objects = listing.objects
        assert len(objects) == n

        def measured(run, service: str):
            meter = Meter(args.latency_ms / 1000)
            client = meter.attach(aws.client(service))
            start = time.perf_counter()
            run(client)
            return time.perf_counter() - start, meter.calls

        # The emulator's own ceiling: raw copy_object from 16 threads, no simulated latency.
        from concurrent.futures import ThreadPoolExecutor

        raw = aws.client("s3")
        start = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda o: raw.copy_object(Bucket=BUCKET, Key="ceiling/" + o.key,
                                                    CopySource={"Bucket": BUCKET, "Key": o.key}), objects))
        ceiling = n / (time.perf_counter() - start)

        results = {}
        for concurrency in (1, 16):
            seconds, calls = measured(lambda c, k=concurrency: replay_copy(
                c, objects=objects, bucket=BUCKET, dest_prefix=f"bronze/replay/c{k}", concurrency=k), "s3")
            results[f"copy_c{concurrency}"] = (seconds, calls)

        def fresh_queue(name: str) -> str:
            return setup_sqs.create_queue(QueueName=f"bench-{name}-{time.time_ns()}")["QueueUrl"]

        moment = dt.datetime.now(dt.UTC)
        chunks = [objects[i:i + args.queue_rotate] for i in range(0, n, args.queue_rotate)]
        queues = {"one": [fresh_queue("one") for _ in chunks], "batch": [fresh_queue("batch") for _ in chunks]}

        def one_by_one(client):
            for chunk, url in zip(chunks, queues["one"], strict=True):
                for obj in chunk:
                    unit = work_unit.build(bucket=obj.bucket, key=obj.key, etag=obj.etag, size=obj.size,
                                           origin="replay-sqs", now=moment)
                    client.send_message(QueueUrl=url, MessageBody=unit.body(),
                                        MessageAttributes=unit.message_attributes())

        def batched(client):
            for chunk, url in zip(chunks, queues["batch"], strict=True):
                report = replay_sqs(client, objects=chunk, bucket=BUCKET, queue_url=url, concurrency=8)
                assert report.ok, report.failed

        results["sqs_one"] = measured(one_by_one, "sqs")
        results["sqs_batched"] = measured(batched, "sqs")
        depth = sum(int(setup_sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"]["ApproximateNumberOfMessages"]) for url in queues["batch"])

    def rate(name):
        return n / results[name][0]

    def per_1000(name, op):
        return round(results[name][1][op] * 1000 / n, 1)

    report = {
        "objects": n,
        "latency_ms": args.latency_ms,
        "copy_c1_objects_per_s": round(rate("copy_c1"), 1),
        "copy_c16_objects_per_s": round(rate("copy_c16"), 1),
        "copy_speedup": round(rate("copy_c16") / rate("copy_c1"), 2),
        "moto_copy_ceiling_per_s": round(ceiling, 1),
        "copy_speedup_ceiling": round(min(16.0, ceiling / rate("copy_c1")), 2),
        "sqs_one_per_object_msgs_per_s": round(rate("sqs_one"), 1),
        "sqs_batched_msgs_per_s": round(rate("sqs_batched"), 1),
        "sqs_speedup": round(rate("sqs_batched") / rate("sqs_one"), 2),
        "copy_calls_per_1000": per_1000("copy_c16", "CopyObject"),
        "sqs_one_calls_per_1000": per_1000("sqs_one", "SendMessage"),
        "sqs_batched_calls_per_1000": per_1000("sqs_batched", "SendMessageBatch"),
        "sqs_batches": results["sqs_batched"][1]["SendMessageBatch"],
        "sqs_batches_expected": math.ceil(n / 10),
        "sqs_messages_in_queue": depth,
    }
    print_report(report, args.json)
    ok = report["sqs_batches"] == report["sqs_batches_expected"] and depth == n
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
