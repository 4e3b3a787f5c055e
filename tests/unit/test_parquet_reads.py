"""No Parquet or ORC read goes through a Python file object (apache/arrow #34314: such reads can
abort the interpreter at exit, about 1 run in 20-30 here). tests/e2e/test_parquet_exit.py runs a
command 20 times; this check catches the pattern itself, every time."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READERS = r"(?:pq\.read_table|pq\.ParquetFile|pq\.read_metadata|pq\.read_schema|orc\.ORCFile|orc\.read_table|ds\.dataset)"
# A reader handed a BytesIO, an open file (`handle`, `f`, `fh`, `fileobj`) or an open() call.
FILE_OBJECT = re.compile(READERS + r"\(\s*(?:io\.BytesIO\(|open\(|(?:handle|fh|f|fileobj|body_stream)\s*[,)])")


def test_parquet_and_orc_are_read_from_paths_or_buffers_only():
    offenders = []
    for folder in ("ops", "lambdas", "tests", "bench", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if FILE_OBJECT.search(line) and path.name != "test_parquet_reads.py":
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == [], "read from a path or pa.BufferReader(bytes) instead:\n" + "\n".join(offenders)
