"""DLQ redrive and ledger purge throughput on moto's server, with a simulated round trip.

    python bench/dlq.py [--messages 300] [--items 1000] [--latency-ms 20] [--json]

Same set-up as bench/replay.py: moto in its own process on 127.0.0.1, every HTTP request delayed by
--latency-ms (a botocore `before-send` hook), API calls counted by a `before-call` hook, and DLQs
kept to a few hundred messages (moto's SQS slows as a queue deepens; every run gets fresh queues).
Measured in one run:

  redrive: the project's manual redrive vs a one-message-at-a-time receive/send/delete loop
  purge:   the project's purge (parallel Scan, BatchWriteItem of 25) vs a Scan + DeleteItem loop
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import print_report  # noqa: E402
from replay import Meter, MotoProcess  # noqa: E402


def fill(sqs, url: str, n: int) -> None:
    from lambdas.shared import work_unit

    for start in range(0, n, 10):
        entries = []
        for i in range(start, min(n, start + 10)):
            unit = work_unit.build(bucket="bench-bronze", key=f"bronze/orders/dt=2025-01-01/o{i:05d}.jsonl",
                                   etag=f"e{i}", size=i, origin="s3-event")
            entries.append({"Id": str(i - start), "MessageBody": unit.body(),
                            "MessageAttributes": unit.message_attributes()})
        sqs.send_message_batch(QueueUrl=url, Entries=entries)


def fill_table(ddb, table: str, n: int) -> None:
    for start in range(0, n, 25):
        requests = [{"PutRequest": {"Item": {"pk": {"S": f"s3://bench-bronze/bronze/orders/dt=2025-01-01/o{i}.jsonl"},
                                             "etag": {"S": f"e{i}"}, "status": {"S": "DONE"},
                                             "bucket": {"S": "bench-bronze"}, "expiration": {"N": "1"}}}}
                    for i in range(start, min(n, start + 25))]
        ddb.batch_write_item(RequestItems={table: requests})


def make_table(ddb, name: str) -> str:
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "etag", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "etag", "AttributeType": "S"}])
    return name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300, help="DLQ messages per measured run")
    parser.add_argument("--items", type=int, default=1000, help="ledger items per measured run")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=4, help="manual redrive workers")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from ops.dlq import redrive_manual
    from ops.ledger import PurgeFilter, purge

    results = {}
    with MotoProcess() as aws:
        sqs, ddb = aws.client("sqs"), aws.client("dynamodb")

        def measured(run, service):
            meter = Meter(args.latency_ms / 1000)
            client = meter.attach(aws.client(service))
            start = time.perf_counter()
            run(client)
            return time.perf_counter() - start, meter.calls

        def queues(tag):
            stamp = time.time_ns()
            return (sqs.create_queue(QueueName=f"dlq-{tag}-{stamp}")["QueueUrl"],
                    sqs.create_queue(QueueName=f"q-{tag}-{stamp}")["QueueUrl"])

        n = args.messages
        naive_dlq, naive_q = queues("naive")
        fill(sqs, naive_dlq, n)

        def naive_redrive(client):
            moved = 0
            while moved < n:
                got = client.receive_message(QueueUrl=naive_dlq, MaxNumberOfMessages=1, MessageAttributeNames=["All"])
                for m in got.get("Messages", []):
                    client.send_message(QueueUrl=naive_q, MessageBody=m["Body"],
                                        MessageAttributes=m.get("MessageAttributes", {}))
                    client.delete_message(QueueUrl=naive_dlq, ReceiptHandle=m["ReceiptHandle"])
                    moved += 1

        results["redrive_naive"] = measured(naive_redrive, "sqs")
        project_dlq, project_q = queues("project")
        fill(sqs, project_dlq, n)
        moved = {}
        results["redrive_project"] = measured(lambda c: moved.setdefault("report", redrive_manual(
            c, source_url=project_dlq, target_url=project_q, workers=args.workers)), "sqs")
        assert moved["report"].moved == n, moved["report"]

        # The emulator's ceiling for this work: the same redrive with no simulated latency.
        ceiling_dlq, ceiling_q = queues("ceiling")
        fill(sqs, ceiling_dlq, n)
        start = time.perf_counter()
        redrive_manual(aws.client("sqs"), source_url=ceiling_dlq, target_url=ceiling_q, workers=args.workers)
        ceiling = n / (time.perf_counter() - start)

        items = args.items
        naive_table = make_table(ddb, f"naive-{time.time_ns()}")
        fill_table(ddb, naive_table, items)

        def naive_purge(client):
            start = None
            while True:
                kwargs = {"TableName": naive_table, "ProjectionExpression": "pk, etag"}
                if start:
                    kwargs["ExclusiveStartKey"] = start
                page = client.scan(**kwargs)
                for item in page["Items"]:
                    client.delete_item(TableName=naive_table, Key={"pk": item["pk"], "etag": item["etag"]})
                start = page.get("LastEvaluatedKey")
                if not start:
                    return

        results["purge_naive"] = measured(naive_purge, "dynamodb")
        project_table = make_table(ddb, f"project-{time.time_ns()}")
        fill_table(ddb, project_table, items)
        purged = {}
        results["purge_project"] = measured(lambda c: purged.setdefault("report", purge(
            c, table=project_table, filters=PurgeFilter(bucket="bench-bronze"), confirm=lambda r: True)), "dynamodb")
        assert purged["report"].deleted == items, purged["report"]

    def rate(name, count):
        return count / results[name][0]

    def per_1000(name, count):
        return round(sum(results[name][1].values()) * 1000 / count, 1)

    report = {
        "messages": n, "items": items, "latency_ms": args.latency_ms,
        "redrive_naive_msgs_per_s": round(rate("redrive_naive", n), 1),
        "redrive_project_msgs_per_s": round(rate("redrive_project", n), 1),
        "redrive_speedup": round(rate("redrive_project", n) / rate("redrive_naive", n), 2),
        "moto_redrive_ceiling_msgs_per_s": round(ceiling, 1),
        "redrive_speedup_ceiling": round(ceiling / rate("redrive_naive", n), 2),
        "redrive_naive_calls_per_1000": per_1000("redrive_naive", n),
        "redrive_project_calls_per_1000": per_1000("redrive_project", n),
        "purge_naive_items_per_s": round(rate("purge_naive", items), 1),
        "purge_project_items_per_s": round(rate("purge_project", items), 1),
        "purge_speedup": round(rate("purge_project", items) / rate("purge_naive", items), 2),
        "purge_naive_calls_per_1000": per_1000("purge_naive", items),
        "purge_project_calls_per_1000": per_1000("purge_project", items),
        "redrive_project_calls": dict(results["redrive_project"][1]),
        "purge_project_calls": dict(results["purge_project"][1]),
    }
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
