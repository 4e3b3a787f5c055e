import json

import pytest

from lambdas.shared import schemas
from ops.gen_events import generate, write_events


@pytest.mark.parametrize("type_", ["shipments", "orders"])
@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_the_same_seed_gives_byte_identical_files(tmp_path, type_, fmt):
    a = write_events(str(tmp_path / "a"), type_=type_, count=300, fmt=fmt, seed=7, bad_ratio=0.1)
    write_events(str(tmp_path / "b"), type_=type_, count=300, fmt=fmt, seed=7, bad_ratio=0.1)
    write_events(str(tmp_path / "c"), type_=type_, count=300, fmt=fmt, seed=8, bad_ratio=0.1)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() != (tmp_path / "c").read_bytes()
    assert a.rows == 300 and a.good + a.bad == 300 and 10 < a.bad < 60


def test_gzip_output_is_deterministic_too(tmp_path):
    write_events(str(tmp_path / "a.jsonl.gz"), type_="orders", count=50, seed=1)
    write_events(str(tmp_path / "b.jsonl.gz"), type_="orders", count=50, seed=1)
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()


def test_bad_lines_mix_malformed_json_wrong_types_and_missing_required_fields():
    kinds = set()
    for ok, text in generate(type_="shipments", count=3000, seed=1, bad_ratio=0.2):
        if ok:
            continue
        try:
            event = json.loads(text)
        except ValueError:
            kinds.add("malformed")
            continue
        required = [p for p in schemas.get("shipments").required if "." not in p and "[]" not in p]
        kinds.add("missing" if any(f not in event for f in required) else "wrong_type")
    assert kinds == {"malformed", "missing", "wrong_type"}


def test_good_events_carry_nested_fields_lists_and_optional_fields():
    events = [json.loads(t) for ok, t in generate(type_="orders", count=200, seed=2) if ok]
    assert all(isinstance(e["lines"], list) and "customer_id" in e["customer"] for e in events)
    assert any("coupon_code" in e for e in events) and any("coupon_code" not in e for e in events)
