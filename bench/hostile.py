"""`bench/transform.py --hostile`: the transform on what a hostile producer writes (issue 16's table).

Each input runs through the project's transform_stream in its own subprocess (one CPU, one Arrow
thread, as the other figures), next to a clean shipments object of the same decompressed size, and
the report gives its time, peak RSS, outcome (rows, rejects, quarantine bytes, or the failed item's
reason) and its time over the clean object's. Targets: peak RSS <= 512 MB, time <= 2x the clean
object's.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RUNNER = r'''
import json, os, resource, sys, time
if sys.argv[4] != "-":
    os.sched_setaffinity(0, {int(sys.argv[4])})
import pyarrow as pa
pa.set_cpu_count(1)
pa.set_io_thread_count(1)
src, gz, root = sys.argv[1], sys.argv[2] == "gz", sys.argv[3]
sys.path.insert(0, root)
from lambdas.shared import schemas
from lambdas.transform.core import UnreadableObject, transform_stream
schema = schemas.get("shipments")
out = src + ".parquet"
start = time.perf_counter()
try:
    with open(src, "rb") as raw, open(src + ".quarantine.jsonl", "wb") as quarantine:
        result = transform_stream(raw, schema=schema, source_key="bronze/shipments/dt=2025-01-01/h.jsonl",
                                  gzipped=gz, parquet_out=out, quarantine_out=quarantine)
    outcome = {"rows": result.rows, "rejected": result.rejected, "blank_lines": result.blank_lines,
               "format": result.fmt, "quarantine_mb": round(os.path.getsize(src + ".quarantine.jsonl") / 1048576, 1),
               "first_reason": result.first_rejects[0][1][:90] if result.first_rejects else None}
except UnreadableObject as exc:
    outcome = {"failed_item": str(exc)[:140]}
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "outcome": outcome,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def _good_lines(count: int, seed: int = 3) -> list[str]:
    from ops.gen_events import generate

    return [text for ok, text in generate(type_="shipments", count=count, seed=seed) if ok]


def _write_lines(path: Path, head: list[str], body: list[str], size: int) -> None:
    """`head` lines, then `body` repeated up to about `size` bytes."""
    block = ("\n".join(body) + "\n").encode()
    with open(path, "wb") as out:
        written = out.write(("\n".join(head) + "\n").encode()) if head else 0
        while written < size:
            written += out.write(block)


def _gzip_zeros(path: Path, size: int) -> None:
    zeros = bytes(1 << 20)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    with open(path, "wb") as out:
        for _ in range(size >> 20):
            out.write(squeeze.compress(zeros))
        out.write(squeeze.flush())


def build_inputs(workdir: Path, *, mb: float, bomb_gib: float) -> list[tuple[str, Path, bool]]:
    """(name, path, gzipped) of each hostile input."""
    good = _good_lines(2000)
    event = json.loads(good[0])
    inputs = []

    def add(name, filename, gzipped=False):
        inputs.append((name, workdir / filename, gzipped))
        return workdir / filename

    add("JSON array of 4M {} (12 MB)", "empties.json").write_bytes(b"[" + b"{}," * 3_999_999 + b"{}]")
    add("JSON array of 3M { } with spaces (15 MB)", "spaced-empties.json").write_bytes(
        b"[" + b"{ }, " * 2_999_999 + b"{ }]")  # no exact-match shortcut: the general cut
    add("20 MiB of blank lines, then one event", "blank.jsonl").write_bytes(b"\n" * (20 << 20) + good[0].encode())
    add("2M {} lines (6 MB)", "empties.jsonl").write_bytes(b"{}\n" * 2_000_000)
    deep = json.dumps(dict(event, tags="X")).replace('"X"', "[" * 10_000 + "]" * 10_000)
    _write_lines(add("a line nested 10,000 deep first, then 5 MB", "deep.jsonl"), [deep], good, 5 << 20)
    _write_lines(add(f"{mb:g} MB JSONL whose first line is malformed '{{'", "malformed-first.jsonl"),
                 ['{"shipment_id": "x", "carrier": '], good, int(mb * 1048576))
    _write_lines(add(".jsonl whose first line is [1, 2], then 5 MB", "array-first.jsonl"), ["[1, 2]"], good, 5 << 20)
    _write_lines(add(".jsonl whose first line is 'nullx' and spaces (Arrow crashes on it), then 5 MB",
                     "null-first.jsonl"), ["nullx" + " " * 20], good, 5 << 20)
    spoiled = list(good)
    for n, literal in zip(range(0, len(spoiled), 100), ["NaN", "Infinity", "1" + "0" * 400] * 100, strict=False):
        spoiled[n] = spoiled[n].replace(f'"weight_kg": {json.loads(spoiled[n])["weight_kg"]}',
                                        f'"weight_kg": {literal}', 1)
    _write_lines(add("NaN / Infinity / 1 and 400 zeros on 1% of lines (5 MB)", "nan.jsonl"), [], spoiled, 5 << 20)
    nanos = [re.sub(r'(:\d\d)(?:\.\d+)?Z"', r'\1.123456789Z"', line) for line in good]
    _write_lines(add("nanosecond timestamps on every line (5 MB)", "nanos.jsonl"), [], nanos, 5 << 20)
    distinct = [re.sub(r'"created_at": "[^"]*"', f'"created_at": "2025-01-01T00:00:{n % 60:02}.5 +bad{n}"', line)
                for n, line in enumerate(good)]
    _write_lines(add("a distinct bad timestamp on every line (5 MB)", "bad-times.jsonl"), [], distinct, 5 << 20)
    bomb = add(f"gzip bomb: {bomb_gib:g} GiB of zeros", "bomb.jsonl.gz", gzipped=True)
    _gzip_zeros(bomb, int(bomb_gib * (1 << 30)))
    return inputs


def decompressed_size(path: Path, gzipped: bool) -> int:
    if not gzipped:
        return path.stat().st_size
    size = 0
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(1 << 24):
            size += len(chunk)
    return size


def run_one(path: Path, gzipped: bool, cpu: int | None, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", RUNNER, str(path), "gz" if gzipped else "-", str(ROOT),
                           "-" if cpu is None else str(cpu)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"seconds": None, "peak_rss_mb": None, "outcome": {"crashed": done.returncode,
                                                                   "stderr": done.stderr[-300:]}}
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(workdir: Path, *, mb: float, bomb_gib: float, cpu: int | None, env: dict, log) -> dict:
    log("building hostile inputs ...")
    inputs = build_inputs(workdir, mb=mb, bomb_gib=bomb_gib)
    good = _good_lines(4000, seed=5)
    rows = {}
    for name, path, gzipped in inputs:
        size = decompressed_size(path, gzipped)
        clean = workdir / f"clean-{path.stem}.jsonl"
        _write_lines(clean, [], good, size)
        log(f"{name}: {size / 1048576:.1f} MB decompressed")
        hostile, baseline = run_one(path, gzipped, cpu, env), run_one(clean, False, cpu, env)
        for done in (path, clean):
            for leftover in (done, Path(f"{done}.parquet"), Path(f"{done}.quarantine.jsonl")):
                leftover.unlink(missing_ok=True)
        ratio = (round(hostile["seconds"] / baseline["seconds"], 2)
                 if hostile["seconds"] and baseline["seconds"] else None)
        rows[name] = {
            "decompressed_mb": round(size / 1048576, 1),
            "seconds": round(hostile["seconds"], 2) if hostile["seconds"] else None,
            "clean_seconds": round(baseline["seconds"], 2) if baseline["seconds"] else None,
            "time_vs_clean": ratio,
            "peak_rss_mb": round(hostile["peak_rss_mb"]) if hostile["peak_rss_mb"] else None,
            "outcome": hostile["outcome"],
            "within_targets": bool(ratio is not None and ratio <= 2 and hostile["peak_rss_mb"] <= 512),
        }
    return rows
