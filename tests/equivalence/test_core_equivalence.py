"""The split transform gives the same silver rows and quarantine records as the core it replaced.

The replaced core (one 1,192-line module) is read from git at LEGACY_COMMIT, not kept in the tree:
`git show LEGACY_COMMIT:lambdas/transform/core.py` is loaded as a module of its own. Without git
or that commit (a source tarball), the test is skipped and says why.

Inputs: the event generator's seeds, bad-line ratios and both types, in JSONL, as JSON arrays and
gzipped, at several block sizes (small blocks exercise the carry-over between blocks and the
young-object screen); and generated lines with seeded random damage that the generator does not
make (blank and whitespace lines, `null`, two values on a line, invalid UTF-8, CRLF, a BOM, arrays,
over-long lines). Inputs whose handling the hostile-input policies changed on purpose (NaN,
nanosecond timestamps, huge integers, deep nesting) are left out here and tested in the unit tests.
"""

from __future__ import annotations

import datetime as dt
import gzip
import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from lambdas.shared import schemas
from lambdas.transform import core
from ops.gen_events import generate

LEGACY_COMMIT = "ef3035e89531668436bb3d9109987f4026e73e32"  # main before the split (issue 16)
ROOT = Path(__file__).resolve().parents[2]
AT = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _legacy_core():
    try:
        source = subprocess.run(["git", "show", f"{LEGACY_COMMIT}:lambdas/transform/core.py"], cwd=ROOT,
                                capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the legacy core is read from git commit {LEGACY_COMMIT[:10]}, not available here: {exc}")
    spec = importlib.util.spec_from_loader("legacy_transform_core", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, "legacy_transform_core.py", "exec"), module.__dict__)  # noqa: S102
    return module


@pytest.fixture(scope="module")
def legacy():
    return _legacy_core()


def outcome(module, data: bytes, **kwargs):
    """Everything a caller sees: result fields, silver rows, quarantine records, or the failure."""
    kwargs = {"schema": schemas.get("shipments"), "source_key": "bronze/t/dt=2025-01-01/a.jsonl",
              "gzipped": False, "ingested_at": AT, **kwargs}
    try:
        result, table, rejects = module.transform_bytes(data, **kwargs)
    except module.UnreadableObject as exc:
        return ("unreadable", str(exc))
    # Row order within an object is not a promise (each row carries _line), nor which five rejects
    # `first_rejects` holds: a JSONL object whose first line is malformed was one block before the
    # sniffing fix and is streamed in blocks now.
    fields = (result.rows, result.rejected, result.blank_lines, result.fmt, result.bytes_in, result.notes)
    return fields, table.sort_by("_line").to_pylist(), rejects


def as_values(outcome_):
    """For JSON arrays: quarantine's raw was the element re-serialized, and is now the element's
    own text (json_array.py); the same element either way."""
    fields, rows, rejects = outcome_

    def value(raw: str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw  # a malformed line (the gzipped JSONL case): its text

    return fields, rows, [dict(r, raw=value(r["raw"])) for r in rejects]


def generated(type_: str, seed: int, ratio: float, count: int, fmt: str = "jsonl") -> list[str]:
    return [text for _, text in generate(type_=type_, count=count, seed=seed, bad_ratio=ratio, fmt=fmt)]


DAMAGE = [
    lambda line, rng: "",
    lambda line, rng: "   \t",
    lambda line, rng: "null",
    lambda line, rng: " null\r",
    lambda line, rng: line + " " + line,
    lambda line, rng: line + line,
    lambda line, rng: line + "null",
    lambda line, rng: "[1, 2]",
    lambda line, rng: "42",
    lambda line, rng: '"text"',
    lambda line, rng: line + "\r",
    lambda line, rng: "  " + line,
    lambda line, rng: line[: rng.randrange(1, max(2, len(line)))],
    lambda line, rng: line.replace('"', "", 1),
    lambda line, rng: line.replace('": "', '": "\udcff', 1),  # becomes an invalid UTF-8 byte
    lambda line, rng: line.replace('": "', '": "Zürich 🚚 ', 1),
    lambda line, rng: line.replace('"carrier"', '"carrier": 5, "x"', 1),
    lambda line, rng: line.replace('"status"', '"status": 5, "x"', 1),
    lambda line, rng: line.replace('"carrier"', '"carrier": 1, "carrier"', 1),
    lambda line, rng: line.replace('"created_at": "', '"created_at": "soon', 1),
    lambda line, rng: line.replace('"weight_kg": ', '"weight_kg": "heavy", "w": ', 1),
    lambda line, rng: '{"shipment_id": "' + "x" * 70_000 + '"}',
]


def damaged(seed: int, count: int, rate: float) -> bytes:
    rng = random.Random(seed)
    lines = generated("shipments", seed, 0.02, count)
    for i in range(len(lines)):
        if rng.random() < rate:
            lines[i] = rng.choice(DAMAGE)(lines[i], rng)
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    return (b"\xef\xbb\xbf" + data) if seed % 2 else data


CASES = [
    pytest.param(type_, seed, ratio, block, id=f"{type_}-seed{seed}-bad{ratio}-block{block}")
    for type_ in ("shipments", "orders")
    for seed in (1, 2, 3)
    for ratio in (0.0, 0.01, 0.05, 0.3)
    for block in (1 << 20, 16384)
]


@pytest.mark.parametrize(("type_", "seed", "ratio", "block"), CASES)
def test_generated_jsonl_gives_the_same_rows_and_rejects(legacy, type_, seed, ratio, block):
    data = ("\n".join(generated(type_, seed, ratio, 2500)) + "\n").encode()
    kwargs = {"schema": schemas.get(type_), "block_bytes": block, "row_group_rows": 1000}
    assert outcome(core, data, **kwargs) == outcome(legacy, data, **kwargs)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("ratio", [0.0, 0.05])
def test_json_arrays_and_gzip_give_the_same_rows_and_rejects(legacy, seed, ratio):
    array = json.dumps([json.loads(text) for text in generated("orders", seed, ratio, 1500, fmt="json")]).encode()
    lines = ("\n".join(generated("orders", seed, ratio, 1500)) + "\n").encode()
    for data, kwargs in ((array, {"suffix_format": "json"}), (array, {"block_bytes": 8192}),
                         (gzip.compress(lines), {"gzipped": True, "block_bytes": 8192})):
        kwargs["schema"] = schemas.get("orders")
        assert as_values(outcome(core, data, **kwargs)) == as_values(outcome(legacy, data, **kwargs))


@pytest.mark.parametrize("seed", range(1, 13))
@pytest.mark.parametrize("block", [1 << 20, 4096, 65536])
def test_randomly_damaged_lines_give_the_same_rows_and_rejects(legacy, seed, block):
    data = damaged(seed, 1200, rate=0.02 if seed <= 6 else 0.2)
    kwargs = {"block_bytes": block, "max_json_bytes": 65536 if block == 4096 else 1 << 20}
    assert outcome(core, data, **kwargs) == outcome(legacy, data, **kwargs)
