"""Transform throughput and memory against Arrow and pandas baselines, measured in one run.

    python bench/transform.py [--mb 100] [--bad-ratio 0.01] [--rss-large-mb 1000] [--repeat 5] [--json] [--no-pin]
    python bench/transform.py --hostile [--mb 149] [--bomb-gib 10] [--json]
    python bench/transform.py --instructions [--mb 20] [--bad-ratio 0.01] [--json]

Builds a shipments JSONL input with the project's own event generator, then runs, each in its own
subprocess with Arrow pinned to one thread and the whole process to one CPU (a 1,769 MB Lambda
has one vCPU):

  (a) arrow:   pyarrow.json.read_json with the explicit schema + pyarrow.parquet.write_table
  (b) project: lambdas.transform.core.transform_stream on the local file (no S3)
  (c) pandas:  pandas.read_json(lines=True) + DataFrame.to_parquet (the AWS SDK for pandas path)

Arrow and pandas alone cannot read bad lines, so with --bad-ratio > 0 they run on the same events
with the bad lines left out (the clean twin of the input); the project runs on the input itself.
MB/s is each run's input bytes over its wall time; each kind runs --repeat times (default 5) in
fresh subprocesses, arrow and project taking turns in each round (so a slow spell on a shared
machine falls on both alike; pandas runs after them, as its 1.4 GB peak slows whatever runs next),
and its fastest run counts, since noise only adds time (ratio_vs_arrow_by_round shows the
ratio within each round too, to show how much the machine's noise moves it). Each
subprocess first runs once on the first 2,000 lines of its own input, so one-time start-up (lazy
imports, first use of a code path) is not counted as throughput. Peak RSS is the subprocess's
ru_maxrss (the largest over the runs).
--rss-large-mb also runs the project on a larger input (the clean input repeated) and reports the
ratio of its peak RSS to the 100 MB run's: memory must not grow with the object's size.

--hostile runs the inputs of issue 16's table instead (bench/hostile.py): each one's time, peak RSS
and outcome beside a clean object of the same decompressed size (targets: <= 512 MB, <= 2x the
clean time); --mb sizes the "malformed first line" input, --bomb-gib the gzip bomb.

--instructions counts, under valgrind's callgrind, the instructions each of Arrow and the project
executes on the input (less a run of its warm-up alone), and reports Arrow's per byte over the
project's: the ratio above with the machine's noise taken out (on a shared VM identical runs swing
up to 2x in wall time). It counts work, not time spent waiting on memory, so the wall-time ratio
can only be lower; about 50x slower than a run, so give it --mb 20.

Why one CPU and not only one Arrow thread: pyarrow still runs its I/O pool beside the caller. On a
machine with a second core, that lets the Arrow baseline's file read-ahead run in parallel with its
parsing (measured: CPU time above wall time), which a one-vCPU Lambda cannot do, and it turns each
hand-off between the two threads into a wake-up of another core (measured on this project's 2-core
VMs: an Arrow JSON read that fails at once costs ~21 us on one CPU, 60-90 us across two). Every
kind is pinned to the same CPU; --no-pin measures the old way.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import print_report  # noqa: E402

ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "ARROW_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

RUNNER = r'''
import json, os, resource, sys, time
if sys.argv[6] != "-":  # the whole process on one CPU, like a one-vCPU Lambda
    os.sched_setaffinity(0, {int(sys.argv[6])})
import pyarrow as pa
pa.set_cpu_count(1)
pa.set_io_thread_count(1)
kind, src, out, warmup = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]
sys.path.insert(0, sys.argv[4])
from lambdas.shared import schemas
schema = schemas.get("shipments")
# Imports before the clock: each run times its work, not its start-up.
import pyarrow.json as pj, pyarrow.parquet as pq, pyarrow.compute as pc
if kind == "project":
    from lambdas.transform.core import transform_stream
if kind == "pandas":
    import pandas as pd
def work(src, out):
  rows = 0
  if kind == "arrow":
      table = pj.read_json(src, read_options=pj.ReadOptions(use_threads=False),
                           parse_options=pj.ParseOptions(explicit_schema=schema.arrow, unexpected_field_behavior="ignore"))
      pq.write_table(table, out, compression="snappy")
      rows = table.num_rows
  elif kind == "project":
      with open(src, "rb") as raw, open(out + ".quarantine.jsonl", "wb") as quarantine:
          result = transform_stream(raw, schema=schema, source_key="bronze/shipments/dt=2025-01-01/bench.jsonl",
                                    gzipped=False, parquet_out=out, quarantine_out=quarantine)
      rows = result.rows + result.rejected
  elif kind == "pandas":
      frame = pd.read_json(src, lines=True)
      frame.to_parquet(out, compression="snappy")
      rows = len(frame)
  return rows

# One-time start-up (lazy imports: pyarrow imports pandas on its first Python-to-Arrow conversion)
# is not throughput: every kind runs once on a small sample first.
work(warmup, out + ".warmup")
start = time.perf_counter()
rows = work(src, out) if src != "-" else 0  # "-": the warm-up alone (what --instructions subtracts)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "rows": rows,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def build_input(path: Path, clean_path: Path, mb: float, bad_ratio: float, seed: int) -> tuple[int, int]:
    """Write the input and its clean twin; return (lines, bytes) of the input."""
    from ops.gen_events import generate

    target = int(mb * 1024 * 1024)
    size = lines = 0
    with open(path, "wb") as out, open(clean_path, "wb") as clean:
        for ok, text in generate(type_="shipments", count=10**9, seed=seed, bad_ratio=bad_ratio):
            data = text.encode("utf-8") + b"\n"
            out.write(data)
            if ok:
                clean.write(data)
            size += len(data)
            lines += 1
            if size >= target:
                break
    return lines, size


def repeat_file(src: Path, dst: Path, mb: float) -> int:
    target = int(mb * 1024 * 1024)
    chunk = src.read_bytes()
    size = 0
    with open(dst, "wb") as out:
        while size < target:
            out.write(chunk)
            size += len(chunk)
    return size


def pin_cpu(enabled: bool) -> int | None:
    """The one CPU every subprocess runs on (the highest this process may use), or None where
    affinity cannot be set (or with --no-pin)."""
    if not enabled or not hasattr(os, "sched_setaffinity"):
        return None
    return max(os.sched_getaffinity(0))


def run(plan: dict[str, Path], workdir: Path, repeat: int = 1, cpu: int | None = None) -> dict[str, dict]:
    """Each kind in `plan` (kind -> input) `repeat` times, each run in a fresh subprocess (on CPU
    `cpu` alone, if given), the kinds taking turns within each round so that a slow spell on a
    shared machine falls on all of them alike; a kind's fastest run counts (noise only ever adds
    time)."""
    env = {**os.environ, **ONE_THREAD_ENV}
    runs: dict[str, list[dict]] = {kind: [] for kind in plan}
    for _ in range(repeat):
        for kind, src in plan.items():
            out = workdir / f"{kind}-{src.stem}.parquet"
            warmup = workdir / f"warmup-{src.stem}.jsonl"
            if not warmup.exists():  # the first lines of the run's own input, bad lines included
                with open(src, "rb") as head:
                    warmup.write_bytes(b"".join(head.readline() for _ in range(2000)))
            done = subprocess.run([sys.executable, "-c", RUNNER, kind, str(src), str(out), str(ROOT), str(warmup),
                                   "-" if cpu is None else str(cpu)],
                                  capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise SystemExit(f"{kind} run failed:\n{done.stderr}")
            runs[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    results = {}
    for kind, src in plan.items():
        result = min(runs[kind], key=lambda r: r["seconds"])
        result["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs[kind])
        result["round_seconds"] = [r["seconds"] for r in runs[kind]]  # in round order
        result["mb"] = src.stat().st_size / 1024 / 1024
        result["mbps"] = result["mb"] / result["seconds"]
        result["rows_per_s"] = result["rows"] / result["seconds"]
        results[kind] = result
    return results


def count_instructions(kind: str, src: Path, workdir: Path, cpu: int | None) -> int:
    """Instructions the kind executes on `src`, by valgrind's callgrind: the run on `src` less the
    same subprocess with only its warm-up (start-up, imports, first use of each path)."""
    counts = []
    warmup = workdir / f"warmup-{src.stem}.jsonl"
    if not warmup.exists():
        with open(src, "rb") as head:
            warmup.write_bytes(b"".join(head.readline() for _ in range(2000)))
    for what in (str(src), "-"):
        done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                               "-c", RUNNER, kind, what, str(workdir / f"{kind}-ir.parquet"), str(ROOT), str(warmup),
                               "-" if cpu is None else str(cpu)],
                              capture_output=True, text=True, env={**os.environ, **ONE_THREAD_ENV})
        found = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or not found:
            raise SystemExit(f"{kind} run under valgrind failed:\n{done.stderr[-2000:]}")
        counts.append(int(found.group(1)))
    return counts[0] - counts[1]


def instructions(args: argparse.Namespace, workdir: Path, log) -> int:
    """--instructions: the project's and Arrow's instruction counts on the same input (clean twin
    for Arrow), a figure the machine's noise does not move (a shared VM's wall times swing 2x
    between identical runs). It counts work, not waiting on memory: wall time can only be worse."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind); it is not on the PATH")
    src, clean = workdir / "input.jsonl", workdir / "input.clean.jsonl"
    lines, size = build_input(src, clean, args.mb, args.bad_ratio, args.seed)
    log(f"input: {lines} lines, {size / 1048576:.1f} MB, bad ratio {args.bad_ratio}; "
        "counting instructions under valgrind (about 50x slower than a run) ...")
    cpu = pin_cpu(not args.no_pin)
    arrow, project = count_instructions("arrow", clean, workdir, cpu), count_instructions("project", src, workdir, cpu)
    print_report({
        "input_mb": round(size / 1048576, 1),
        "bad_ratio": args.bad_ratio,
        "arrow_instructions_per_byte": round(arrow / clean.stat().st_size, 1),
        "project_instructions_per_byte": round(project / size, 1),
        # Like ratio_vs_arrow (throughput over Arrow's): Arrow's instructions a byte over the project's.
        "instruction_ratio_vs_arrow": round((arrow / clean.stat().st_size) / (project / size), 3),
    }, args.json)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=100.0, help="input size in MB")
    parser.add_argument("--bad-ratio", type=float, default=0.0, help="share of bad lines in the input")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rss-large-mb", type=float, default=0.0,
                        help="also run the project on an input this large (e.g. 1000) and compare peak RSS")
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs per kind; the fastest counts (default 5: single runs vary by about 10%%)")
    parser.add_argument("--skip-pandas", action="store_true", help="leave out the (slow) pandas baseline")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin each run to one CPU (a one-vCPU Lambda); see above for why it is the default")
    parser.add_argument("--hostile", action="store_true", help="run the hostile inputs instead (see above)")
    parser.add_argument("--bomb-gib", type=float, default=1.0, help="with --hostile: the gzip bomb's size in GiB")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions under valgrind instead of timing (noise-free; use --mb 20)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--workdir", help="keep inputs and outputs here (else a temporary directory, removed after)")
    args = parser.parse_args(argv)
    for wrong, message in ((args.mb <= 0, f"--mb {args.mb}: give a size above 0"),
                           (args.repeat < 1, f"--repeat {args.repeat}: give 1 or more runs"),
                           (not 0 <= args.bad_ratio <= 1, f"--bad-ratio {args.bad_ratio}: give a share from 0 to 1"),
                           (args.rss_large_mb < 0, f"--rss-large-mb {args.rss_large_mb}: give 0 (off) or a size"),
                           (args.bomb_gib <= 0, f"--bomb-gib {args.bomb_gib}: give a size above 0")):
        if wrong:
            parser.error(message)

    if args.workdir:
        workdir = Path(args.workdir)
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            parser.error(f"--workdir {args.workdir}: {exc.strerror}; give a directory this user can write")
        if not os.access(workdir, os.W_OK):
            parser.error(f"--workdir {args.workdir}: not writable; give a directory this user can write")
        return measure(args, workdir)
    with tempfile.TemporaryDirectory(prefix="elt-bench-") as scratch:  # inputs and outputs: ~0.5 GB
        return measure(args, Path(scratch))


def measure(args: argparse.Namespace, workdir: Path) -> int:
    if args.hostile:
        import hostile

        log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))
        rows = hostile.measure(workdir, mb=args.mb, bomb_gib=args.bomb_gib, cpu=pin_cpu(not args.no_pin),
                               env={**os.environ, **ONE_THREAD_ENV}, log=log)
        if args.json:
            print(json.dumps(rows))
        else:
            for name, row in rows.items():
                print(name)
                print_report(row, False)
                print()
        return 0
    if args.instructions:
        return instructions(args, workdir, (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr)))
    src, clean = workdir / "input.jsonl", workdir / "input.clean.jsonl"
    for old in workdir.glob("warmup*.jsonl"):
        old.unlink()
    t0 = time.perf_counter()
    lines, size = build_input(src, clean, args.mb, args.bad_ratio, args.seed)
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))
    log(f"input: {lines} lines, {size / 1048576:.1f} MB, bad ratio {args.bad_ratio} "
        f"(built in {time.perf_counter() - t0:.1f} s) in {workdir}")

    cpu = pin_cpu(not args.no_pin)
    results = run({"arrow": clean, "project": src}, workdir, args.repeat, cpu)
    if not args.skip_pandas:  # after, not between: its 1.4 GB peak slows the next runs for a while
        results |= run({"pandas": clean}, workdir, args.repeat, cpu)
    report = {
        "input_mb": round(size / 1048576, 1),
        "input_lines": lines,
        "bad_ratio": args.bad_ratio,
        "pinned_cpu": cpu,
        "arrow_mbps": round(results["arrow"]["mbps"], 1),
        "project_mbps": round(results["project"]["mbps"], 1),
        "pandas_mbps": round(results["pandas"]["mbps"], 1) if "pandas" in results else None,
        "arrow_rows_per_s": round(results["arrow"]["rows_per_s"]),
        "project_rows_per_s": round(results["project"]["rows_per_s"]),
        "pandas_rows_per_s": round(results["pandas"]["rows_per_s"]) if "pandas" in results else None,
        "ratio_vs_arrow": round(results["project"]["mbps"] / results["arrow"]["mbps"], 3),
        # The same ratio within each round (arrow and project back to back), for how much the
        # machine's noise moves it: best against best can pair runs from different spells.
        "ratio_vs_arrow_by_round": [
            round((results["project"]["mb"] / p) / (results["arrow"]["mb"] / a), 3)
            for a, p in zip(results["arrow"]["round_seconds"], results["project"]["round_seconds"], strict=True)],
        "ratio_vs_pandas": (round(results["project"]["mbps"] / results["pandas"]["mbps"], 2)
                            if "pandas" in results else None),
        "arrow_peak_rss_mb": round(results["arrow"]["peak_rss_mb"]),
        "project_peak_rss_mb": round(results["project"]["peak_rss_mb"]),
        "pandas_peak_rss_mb": round(results["pandas"]["peak_rss_mb"]) if "pandas" in results else None,
    }
    if args.rss_large_mb:
        large = workdir / "input.large.jsonl"
        repeat_file(clean if args.bad_ratio else src, large, args.rss_large_mb)
        base = run({"project": clean}, workdir, cpu=cpu)["project"] if args.bad_ratio else results["project"]
        big = run({"project": large}, workdir, cpu=cpu)["project"]
        large.unlink()
        report.update({
            "project_large_input_mb": round(big["mb"], 1),
            "project_large_mbps": round(big["mbps"], 1),
            "project_large_peak_rss_mb": round(big["peak_rss_mb"]),
            "project_small_peak_rss_mb": round(base["peak_rss_mb"]),
            "rss_ratio_large_vs_small": round(big["peak_rss_mb"] / base["peak_rss_mb"], 3),
        })
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
