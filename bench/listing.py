"""Listing a bucket from an S3 Inventory report vs live ListObjectsV2, on an embedded moto server.

    python bench/listing.py [--keys 1000000] [--live-keys 5000] [--latency-ms 20] [--format CSV] [--json]

The bench writes an inventory report of --keys objects (--format: gzipped CSV, Parquet or ORC;
250,000 rows per data file, the documented layout; moto delivers no reports) into moto's server,
which runs in its own process. Then, each in a fresh child process so that its peak RSS is its own:

  inventory-stream: the report read as `replay copy --engine batch-operations` reads it (rows
                    streamed into a Batch Operations manifest uploaded to S3): API calls, wall
                    time, peak RSS. The target is <= 300 MB at 1M keys.
  inventory-list:   the same report as `ls` / the local replays read it (the whole listing in
                    memory, sorted), for comparison.
  live:             ListObjectsV2 over --live-keys real objects, projected to --keys: calls grow as
                    keys / 1,000, wall time with them. Its listing is held in memory like inventory-list's.

Every request sleeps --latency-ms first (a botocore `before-send` hook), like an in-region round
trip, so the projection is not flattered by moto's sub-millisecond answers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_report  # noqa: E402
from replay import Meter, MotoProcess  # noqa: E402

BRONZE = "bench-bronze"
REPORTS = "bench-inventory"
WINDOW = ("2025-01-01", "2025-02-01")


def _client(endpoint: str, meter: Meter):
    import boto3
    from botocore.config import Config

    return meter.attach(boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(max_pool_connections=16)))


def _entries(n: int):
    from ops.local.inventory import Entry

    base = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    for i in range(n):
        day = i % 31
        yield Entry(key=f"bronze/orders/dt=2025-01-{day + 1:02d}/part-{i:08d}.jsonl", size=1000 + i % 977,
                    etag=f"{i:032x}", last_modified=base + dt.timedelta(days=day, seconds=i % 86_000))


def child(mode: str, endpoint: str, manifest: str, latency_s: float) -> dict:
    """One measured run in this (fresh) process; prints its figures as JSON."""
    from ops.timewindow import make_window

    meter = Meter(latency_s)
    s3 = _client(endpoint, meter)
    window = make_window(start=WINDOW[0], end=WINDOW[1], since=None, now=dt.datetime(2025, 3, 1, tzinfo=dt.UTC))
    start = time.perf_counter()
    if mode == "inventory-stream":
        from ops.batch_ops import write_manifest
        from ops.inventory import open_inventory

        source = open_inventory(s3, manifest_url=manifest, bucket=BRONZE, prefix="bronze/", window=window,
                                now=dt.datetime(2025, 2, 2, tzinfo=dt.UTC))
        written = write_manifest(s3, source.objects(), manifest_url=f"s3://{REPORTS}/batch/manifest.csv",
                                 dest_prefix="bronze/replay/bench")
        objects = written.rows
    elif mode == "inventory-list":
        from ops.inventory import list_from_inventory

        objects = len(list_from_inventory(s3, manifest_url=manifest, bucket=BRONZE, prefix="bronze/", window=window,
                                          now=dt.datetime(2025, 2, 2, tzinfo=dt.UTC)).objects)
    else:
        from ops.listing import list_window

        objects = len(list_window(s3, bucket=BRONZE, prefix="bronze/", window=window).objects)
    wall = time.perf_counter() - start
    return {"objects": objects, "calls": dict(meter.calls), "wall_s": round(wall, 2), "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM of its address space. (ru_maxrss would not do: Linux
    carries the forking parent's high-water mark across exec.)"""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _run_child(mode: str, endpoint: str, manifest: str, latency_ms: float) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--endpoint", endpoint, "--manifest", manifest,
                          "--latency-ms", str(latency_ms)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000, help="objects in the inventory report")
    parser.add_argument("--live-keys", type=int, default=5_000, help="real objects listed live (then projected)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulated round trip per request")
    parser.add_argument("--format", dest="file_format", choices=["CSV", "Parquet", "ORC"], default="CSV",
                        help="the report's data file format")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=["inventory-stream", "inventory-list", "live"], help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.endpoint, args.manifest, args.latency_ms / 1000)))
        return 0
    for name in ("keys", "live_keys"):
        if getattr(args, name) < 1000:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)} is too small to measure; use >= 1000")

    from concurrent.futures import ThreadPoolExecutor

    from ops.local.inventory import write_report

    with MotoProcess() as aws:
        s3 = aws.client("s3")
        for bucket in (BRONZE, REPORTS):
            s3.create_bucket(Bucket=bucket)
        began = time.perf_counter()
        manifest = write_report(s3, source_bucket=BRONZE, entries=_entries(args.keys), report_bucket=REPORTS,
                                taken=dt.datetime(2025, 2, 2, tzinfo=dt.UTC), file_format=args.file_format)
        written_s = time.perf_counter() - began
        data_mb = sum(f["size"] for f in json.loads(s3.get_object(
            Bucket=REPORTS, Key=manifest.split("/", 3)[3])["Body"].read())["files"]) / 1e6
        stream = _run_child("inventory-stream", aws.endpoint, manifest, args.latency_ms)
        in_memory = _run_child("inventory-list", aws.endpoint, manifest, args.latency_ms)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda e: s3.put_object(Bucket=BRONZE, Key=e.key, Body=b"{}\n"), _entries(args.live_keys)))
        live = _run_child("live", aws.endpoint, manifest, args.latency_ms)

    live_calls = sum(live["calls"].values())
    projected_calls = math.ceil(args.keys / 1000)
    projected_wall = live["wall_s"] * projected_calls / max(1, live_calls)
    stream_calls = sum(stream["calls"].values())
    report = {
        "keys": args.keys, "format": args.file_format, "latency_ms": args.latency_ms,
        "report_write_s": round(written_s, 1), "report_data_mb": round(data_mb, 1),
        "inventory_stream_calls": stream["calls"], "inventory_stream_wall_s": stream["wall_s"],
        "inventory_stream_peak_rss_mb": stream["peak_rss_mb"], "inventory_stream_objects": stream["objects"],
        "inventory_list_wall_s": in_memory["wall_s"], "inventory_list_peak_rss_mb": in_memory["peak_rss_mb"],
        "live_measured_keys": args.live_keys, "live_measured_calls": live["calls"], "live_measured_wall_s": live["wall_s"],
        "live_measured_peak_rss_mb": live["peak_rss_mb"],
        "live_projected_calls": projected_calls, "live_projected_wall_s": round(projected_wall, 1),
        "calls_ratio_live_vs_inventory": round(projected_calls / max(1, stream_calls), 1),
        "wall_ratio_live_vs_inventory": round(projected_wall / max(0.01, stream["wall_s"]), 2),
        "target_rss_mb": 300, "within_target": stream["peak_rss_mb"] <= 300,
    }
    print_report(report, args.json)
    return 0 if report["within_target"] and stream["objects"] == args.keys else 1


if __name__ == "__main__":
    sys.exit(main())
