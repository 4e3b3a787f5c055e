"""Reconcile on an embedded moto server with a simulated round trip: exact gaps, API calls, memory.

    python bench/reconcile.py [--objects 3000] [--partitions 12] [--gap-every 50] [--latency-ms 20] [--json]

Seeds --objects bronze objects over --partitions dt= partitions (two types), their ledger items and
silver objects directly (no pipeline run), with one object in every --gap-every of each gap
category: never-ingested, claim-expired, queued-too-long, failed, silver-missing, silver-stale, and
as many orphan silver objects. Then, with every request delayed by --latency-ms (a botocore
`before-send` hook, as in bench/replay.py) and every call counted (`before-call`):

  reconcile    `ops.reconcile.reconcile` by partition, in a child process (its peak RSS, and the
               Python heap it allocates, measured alone)
  naive        the same listing, then per object a HeadObject of its silver key and a GetItem of its
               ledger item (16 threads), classified by the same rules (it cannot see orphans)

It checks gaps found == gaps seeded (exactly, by key and category), the naive loop's == reconcile's
(orphans aside), and prints calls per 1,000 objects, their ratio, times, memory, and projections
for 1M objects (calls; time at this latency, 4 partitions side by side; memory: the measured heap
plus what one object of a partition holds while its partition is joined, measured on 100,000 names).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_report  # noqa: E402
from replay import Meter, MotoProcess  # noqa: E402

BRONZE, SILVER, TABLE = "bench-bronze", "bench-silver", "bench-ledger"
CATEGORIES = ("never-ingested", "claim-expired", "queued-too-long", "failed", "silver-missing", "silver-stale")
TYPES = ("orders", "shipments")
WINDOW = ("2025-01-01", "2025-02-01")
BODY = b'{"a":1}\n'
ETAG = hashlib.md5(BODY).hexdigest()  # noqa: S324 - S3's ETag of a single-part object


def plan(n: int, partitions: int, gap_every: int) -> list[tuple[str, str, str]]:
    """(type, day, name, category or "") per object; partitions split between the two types."""
    out = []
    for i in range(n):
        p = i % partitions
        type_, day = TYPES[p % 2], f"2025-01-{p // 2 + 1:02d}"
        k = i % gap_every
        out.append((type_, day, f"o{i:06d}", CATEGORIES[k] if k < len(CATEGORIES) else ""))
    return out


def seed(aws, objects, gap_every: int) -> set[tuple[str, str]]:
    """Buckets, table, objects, items; returns the seeded gaps as (key, category)."""
    s3, ddb = aws.client("s3"), aws.client("dynamodb")
    for bucket in (BRONZE, SILVER):
        s3.create_bucket(Bucket=bucket)
    ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "etag", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "etag", "AttributeType": "S"}])
    pool = ThreadPoolExecutor(16)
    bronze = lambda t, d, n: f"bronze/{t}/dt={d}/{n}.jsonl"  # noqa: E731
    silver = lambda t, d, n: f"silver/{t}/dt={d}/{n}.parquet"  # noqa: E731

    def put(bucket, key):
        s3.put_object(Bucket=bucket, Key=key, Body=BODY)

    # silver written before its bronze version: stale
    list(pool.map(lambda o: put(SILVER, silver(*o[:3])), [o for o in objects if o[3] == "silver-stale"]))
    time.sleep(1.2)  # S3 LastModified has one-second resolution
    list(pool.map(lambda o: put(BRONZE, bronze(*o[:3])), objects))
    with_silver = [o for o in objects if o[3] == ""]
    list(pool.map(lambda o: put(SILVER, silver(*o[:3])), with_silver))
    orphans = [(TYPES[i % 2], f"2025-01-{(i % 10) + 1:02d}", f"gone{i:05d}") for i in range(len(objects) // gap_every)]
    list(pool.map(lambda o: put(SILVER, silver(*o)), orphans))
    now = time.time()
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731

    def item(o) -> dict | None:
        type_, day, name, category = o
        if category == "never-ingested":
            return None
        status = {"claim-expired": "CLAIMED", "queued-too-long": "QUEUED", "failed": "FAILED"}.get(category, "DONE")
        attrs = {"pk": f"s3://{BRONZE}/{bronze(type_, day, name)}", "etag": ETAG, "status": status,
                 "expiration": int(now) + 86400, "type": type_, "dt": day, "claimed_at": stamp(now - 7200),
                 "lease_until": int((now - 7000) * 1000)}
        if status == "QUEUED":
            attrs["queued_at"] = stamp(now - 7100)
        if status in ("DONE", "FAILED"):
            attrs["finished_at"] = stamp(now - 7000)
        if status == "FAILED":
            attrs["last_error"] = "UnreadableObject: not JSON"
        return {k: ({"N": str(v)} if isinstance(v, int) else {"S": v}) for k, v in attrs.items()}

    items = [i for i in map(item, objects) if i]
    batches = [items[i:i + 25] for i in range(0, len(items), 25)]
    list(pool.map(lambda b: ddb.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": i}} for i in b]}),
                  batches))
    pool.shutdown()
    seeded = {(bronze(t, d, n), c) for t, d, n, c in objects if c}
    return seeded | {(silver(*o), "orphan-silver") for o in orphans}


def child(endpoint: str, latency_ms: float, heap: bool) -> None:
    """Run reconcile alone and print its gaps, calls, time and memory as one JSON line. With
    `heap`, Python allocations are traced (slower: the timed run is another child)."""
    import tracemalloc

    import boto3

    from ops.reconcile import reconcile
    from ops.timewindow import make_window

    meter = Meter(latency_ms / 1000)
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    s3, ddb = meter.attach(boto3.client("s3", **kw)), meter.attach(boto3.client("dynamodb", **kw))
    s3.list_buckets()  # connections and models loaded before the baseline
    ddb.describe_table(TableName=TABLE)
    meter.calls.clear()
    gaps = []
    if heap:
        tracemalloc.start()
    started = time.perf_counter()
    report = reconcile(s3, ddb, bucket=BRONZE, prefix="bronze/", window=make_window(start=WINDOW[0], end=WINDOW[1],
                                                                                    since=None),
                       silver_bucket=SILVER, table=TABLE, on_gap=lambda g: gaps.append((g.key, g.category)))
    seconds = time.perf_counter() - started
    heap_peak = tracemalloc.get_traced_memory()[1] if heap else None
    print(json.dumps({"gaps": gaps, "objects": report.objects, "partitions": report.partitions, "seconds": seconds,
                      "calls": dict(meter.calls), "heap_peak_bytes": heap_peak,
                      "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def per_object_bytes(n: int = 100_000) -> float:
    """What one object of a partition holds while the partition is joined: its silver entry
    (name -> LastModified) and its name in the set of bronze names seen."""
    import tracemalloc

    tracemalloc.start()
    silver = {f"part-{i:08d}-0000-events": 1.7e9 + i for i in range(n)}
    seen = {f"part-{i:08d}-0000-events" for i in range(n)}
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del silver, seen
    return size / n


def naive(aws, latency_ms: float) -> tuple[set, float, dict]:
    """The listing, then HeadObject + GetItem per object, classified by the same rules."""
    from botocore.exceptions import ClientError

    from lambdas.shared.ledger import plain
    from ops.listing import list_window
    from ops.reconcile import classify
    from ops.timewindow import make_window

    meter = Meter(latency_ms / 1000)
    s3, ddb = meter.attach(aws.client("s3")), meter.attach(aws.client("dynamodb"))
    started = time.perf_counter()
    listing = list_window(s3, bucket=BRONZE, prefix="bronze/", by="partition",
                          window=make_window(start=WINDOW[0], end=WINDOW[1], since=None))
    now = time.time()

    def check(obj):
        silver_key = "silver/" + obj.key[len("bronze/"):].rsplit(".jsonl", 1)[0] + ".parquet"
        try:
            silver = s3.head_object(Bucket=SILVER, Key=silver_key)["LastModified"].timestamp()
        except ClientError:
            silver = None
        raw = ddb.get_item(TableName=TABLE, Key={"pk": {"S": f"s3://{BRONZE}/{obj.key}"}, "etag": {"S": obj.etag}},
                           ConsistentRead=True).get("Item")
        found = classify(obj, plain(raw) if raw else None, silver, now=now, queued_max_age=3600)
        return (obj.key, found[0]) if found else None

    with ThreadPoolExecutor(16) as pool:
        gaps = {g for g in pool.map(check, listing.objects) if g}
    return gaps, time.perf_counter() - started, dict(meter.calls)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=3000)
    parser.add_argument("--partitions", type=int, default=12, help="dt= partitions (two types), at most 62")
    parser.add_argument("--gap-every", type=int, default=50, help="one object of each category in this many")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulated round trip per request")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # endpoint: run reconcile alone (internal)
    parser.add_argument("--heap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.latency_ms, args.heap)
        return 0
    if not 1 <= args.partitions <= 62 or args.gap_every < len(CATEGORIES) + 1 or args.objects < args.gap_every:
        parser.error("--partitions must be 1..62, --gap-every at least 7 and at most --objects")
    objects = plan(args.objects, args.partitions, args.gap_every)
    with MotoProcess() as aws:
        seeded = seed(aws, objects, args.gap_every)
        def reconcile_alone(*extra: str) -> dict:
            run = subprocess.run([sys.executable, __file__, "--child", aws.endpoint, "--latency-ms",
                                  str(args.latency_ms), *extra], capture_output=True, text=True, check=True)
            return json.loads(run.stdout.strip().splitlines()[-1])

        result = reconcile_alone()
        traced = reconcile_alone("--heap")
        naive_gaps, naive_seconds, naive_calls = naive(aws, args.latency_ms)
    found = {tuple(g) for g in result["gaps"]}
    n = result["objects"]
    calls = sum(result["calls"].values())
    naive_total = sum(naive_calls.values())
    largest = max(sum(1 for o in objects if (o[0], o[1]) == (t, d)) for t, d in {(o[0], o[1]) for o in objects})
    entry = per_object_bytes()
    per_1000 = calls * 1000 / n
    heap_mb = traced["heap_peak_bytes"] / 2**20
    report = {
        "objects": n,
        "partitions": result["partitions"],
        "latency_ms": args.latency_ms,
        "gaps_seeded": len(seeded),
        "gaps_found": len(found),
        "gaps_exact": found == seeded and {tuple(g) for g in traced["gaps"]} == seeded,
        "naive_agrees": naive_gaps == {g for g in found if g[1] != "orphan-silver"},
        "reconcile_calls": result["calls"],
        "reconcile_calls_per_1000": round(per_1000, 1),
        "naive_calls": naive_calls,
        "naive_calls_per_1000": round(naive_total * 1000 / n, 1),
        "calls_ratio_naive_over_reconcile": round(naive_total / calls, 1),
        "reconcile_seconds": round(result["seconds"], 2),
        "naive_seconds_16_threads": round(naive_seconds, 2),
        "reconcile_peak_rss_mb": round(result["peak_rss_kb"] / 1024, 1),
        "reconcile_heap_peak_mb": round(heap_mb, 2),
        "largest_partition_objects": largest,
        "bytes_per_object_of_a_partition": round(entry),
        "projected_1m_calls": round(per_1000 * 1000),
        "projected_1m_naive_calls": round(naive_total * 1e6 / n),
        # reconcile joins 4 partitions side by side (its default); each partition's calls are sequential
        "projected_1m_seconds_at_latency": round(per_1000 * 1000 * args.latency_ms / 1000 / 4),
        "projected_1m_naive_seconds_at_latency_16_threads": round(naive_total * 1e6 / n * args.latency_ms / 1000 / 16),
        # the heap measured here (pages and batches in flight) plus the entries of the partitions in
        # flight (up to 2 x 4 with the default concurrency; all of it when the million is one day)
        "projected_1m_heap_mb_30_partitions": round(heap_mb + entry * 1e6 / 30 * 8 / 2**20, 1),
        "projected_1m_heap_mb_one_partition": round(heap_mb + entry * 1e6 / 2**20, 1),
    }
    print_report(report, args.json)
    return 0 if report["gaps_exact"] and report["naive_agrees"] else 1


if __name__ == "__main__":
    sys.exit(main())
