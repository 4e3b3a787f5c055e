import pytest

from lambdas.shared.keys import (
    InvalidKey,
    batch_replay_key,
    has_supported_suffix,
    parse_bronze_key,
    replay_key,
)


def test_a_plain_bronze_key_parses_into_type_dt_and_name():
    k = parse_bronze_key("bronze/shipments/dt=2025-01-31/batch-001.jsonl.gz")
    assert (k.type, k.dt, k.name, k.suffix, k.fmt, k.gzipped) == (
        "shipments", "2025-01-31", "batch-001", ".jsonl.gz", "jsonl", True)
    assert k.silver_key == "silver/shipments/dt=2025-01-31/batch-001.parquet"
    assert k.quarantine_key == "quarantine/shipments/dt=2025-01-31/batch-001.jsonl"
    assert k.replay_stamp is None


def test_a_replay_key_keeps_type_and_date_and_maps_to_the_same_silver_key():
    original = parse_bronze_key("bronze/orders/dt=2025-01-02/a b+ü.json")
    replay = parse_bronze_key("bronze/replay/20260101T000000Z/orders/dt=2025-01-02/a b+ü.json")
    assert replay.replay_stamp == "20260101T000000Z"
    assert replay.logical_key == original.logical_key == "bronze/orders/dt=2025-01-02/a b+ü.json"
    assert replay.silver_key == original.silver_key
    assert replay.fmt == "json"


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("silver/shipments/dt=2025-01-01/a.jsonl", "outside bronze/"),
        ("bronze/Shipments/dt=2025-01-01/a.jsonl", "type 'Shipments' is not valid"),
        ("bronze/shipments/dt=2025-13-01/a.jsonl", "not a calendar date"),
        ("bronze/shipments/dt=20250101/a.jsonl", "not a date"),
        ("bronze/shipments/date=2025-01-01/a.jsonl", "is not dt=YYYY-MM-DD"),
        ("bronze/shipments/dt=2025-01-01/../../etc/a.jsonl", "'..' segment"),
        ("bronze/shipments/dt=2025-01-01/a.csv", "unsupported file type"),
        ("bronze/shipments/dt=2025-01-01/.jsonl", "file name is empty"),
        ("bronze/shipments/a.jsonl", "expected bronze/<type>"),
        ("bronze/shipments/dt=2025-01-01/sub/a.jsonl", "expected bronze/<type>"),
        ("bronze//dt=2025-01-01/a.jsonl", "empty"),
        ("bronze/replay/bad stamp/shipments/dt=2025-01-01/a.jsonl", "replay stamp"),
        ("bronze/shipments/dt=2025-01-01/a\x01.jsonl", "control characters"),
    ],
)
def test_an_invalid_key_is_rejected_with_its_reason(key, reason):
    with pytest.raises(InvalidKey) as info:
        parse_bronze_key(key)
    assert reason in str(info.value)


def test_replay_key_puts_the_part_after_bronze_under_the_destination_prefix():
    assert replay_key("bronze/orders/dt=2025-01-02/a.jsonl", "bronze/replay/s1/") == (
        "bronze/replay/s1/orders/dt=2025-01-02/a.jsonl")
    # A replay of a replay copy does not nest stamps.
    assert replay_key("bronze/replay/s0/orders/dt=2025-01-02/a.jsonl", "bronze/replay/s1") == (
        "bronze/replay/s1/orders/dt=2025-01-02/a.jsonl")


@pytest.mark.parametrize("key", ["", None, 7, b"bronze/a/dt=2025-01-01/x.jsonl"])
def test_an_empty_or_non_string_key_is_rejected(key):
    with pytest.raises(InvalidKey) as info:
        parse_bronze_key(key)
    assert (info.value.reason, info.value.key) == ("empty key", str(key))


def key_of_bytes(n: int, char: str = "a") -> str:
    head = "bronze/orders/dt=2025-01-02/"
    name_bytes = n - len(head) - len(".jsonl")
    width = len(char.encode("utf-8"))
    return head + char * (name_bytes // width) + "a" * (name_bytes % width) + ".jsonl"


@pytest.mark.parametrize("char", ["a", "ü", "東"])
def test_a_key_may_be_1024_bytes_of_utf_8_and_not_one_more(char):
    longest = key_of_bytes(1024, char)
    assert len(longest.encode("utf-8")) == 1024
    assert parse_bronze_key(longest).key == longest
    too_long = key_of_bytes(1025, char)
    with pytest.raises(InvalidKey) as info:
        parse_bronze_key(too_long)
    assert info.value.reason == "key longer than 1024 bytes"
    assert info.value.key == too_long[:80] + "..."  # the message stays readable


def test_a_key_with_a_lone_surrogate_is_measured_not_crashed_on():
    with pytest.raises(InvalidKey, match="file name is empty or has control characters|unsupported"):
        parse_bronze_key("bronze/orders/dt=2025-01-02/\udcff.csv")


def test_an_invalid_key_error_carries_the_key_and_the_reason():
    with pytest.raises(InvalidKey) as info:
        parse_bronze_key("bronze/orders/dt=2025-02-30/a.jsonl")
    error = info.value
    assert isinstance(error, ValueError)
    assert (error.key, error.reason) == ("bronze/orders/dt=2025-02-30/a.jsonl", "dt '2025-02-30' is not a calendar date")
    assert str(error) == "dt '2025-02-30' is not a calendar date (key 'bronze/orders/dt=2025-02-30/a.jsonl')"


@pytest.mark.parametrize(("key", "reason"), [
    ("bronze/replay/", "key has an empty, '.' or '..' segment"),
    ("bronze/replay/s1", "expected bronze/<type>/dt=YYYY-MM-DD/<file> or"),
    ("bronze/replay/s1/orders/dt=2025-01-02", "expected bronze/<type>/dt=YYYY-MM-DD/<file> or"),
    ("bronze/./orders/dt=2025-01-02/a.jsonl", "key has an empty, '.' or '..' segment"),
    ("bronze/orders/dt=2025-01-02/a.jsonl/", "key has an empty, '.' or '..' segment"),
    ("bronze/orders/dt=/a.jsonl", "dt '' is not a date: use YYYY-MM-DD"),
    ("bronze/orders/dt=2025-1-02/a.jsonl", "dt '2025-1-02' is not a date: use YYYY-MM-DD"),
    ("bronze/orders/dt=2025-01-02x/a.jsonl", "dt '2025-01-02x' is not a date: use YYYY-MM-DD"),
    ("bronze/orders/xdt=2025-01-02/a.jsonl", "partition 'xdt=2025-01-02' is not dt=YYYY-MM-DD"),
    ("bronze/or-ders/dt=2025-01-02/a.jsonl", "type 'or-ders' is not valid: use lower-case letters, digits and _"),
    ("bronze/orders/dt=2025-01-02/a.jsonl.zip", "unsupported file type: use one of .jsonl.gz, .json.gz, .jsonl, .json"),
    ("bronze/orders/dt=2025-01-02/a\x7f.json", "file name is empty or has control characters"),
    ("bronze/replay/s/1/orders/dt=2025-01-02/a.json", "expected bronze/<type>"),
    ("bronze/replay/s!/orders/dt=2025-01-02/a.json",
     "replay stamp 's!' has characters outside [A-Za-z0-9_.:-]"),
    ("bronzer/orders/dt=2025-01-02/a.json", "key is outside bronze/"),
])
def test_each_broken_part_of_a_key_gets_its_own_reason(key, reason):
    with pytest.raises(InvalidKey) as info:
        parse_bronze_key(key)
    assert info.value.reason.startswith(reason)
    assert info.value.key == key


@pytest.mark.parametrize(("name", "suffix", "fmt", "gzipped"), [
    ("a.jsonl", ".jsonl", "jsonl", False), ("a.json", ".json", "json", False),
    ("a.jsonl.gz", ".jsonl.gz", "jsonl", True), ("a.json.gz", ".json.gz", "json", True),
    ("a.b.json", ".json", "json", False), ("a.json.jsonl", ".jsonl", "jsonl", False),
])
def test_each_supported_suffix_gives_its_format_and_compression(name, suffix, fmt, gzipped):
    parsed = parse_bronze_key(f"bronze/orders/dt=2025-01-02/{name}")
    assert (parsed.suffix, parsed.fmt, parsed.gzipped, parsed.name) == (suffix, fmt, gzipped, name[: -len(suffix)])
    assert has_supported_suffix(name) and not has_supported_suffix(name + ".bak")


def test_stamps_types_and_dates_of_every_allowed_form_parse():
    parsed = parse_bronze_key("bronze/replay/2026-01-01T00:00:00.5Z_x/a_1/dt=2024-02-29/n.json")
    assert (parsed.replay_stamp, parsed.type, parsed.dt, parsed.key) == (
        "2026-01-01T00:00:00.5Z_x", "a_1", "2024-02-29", "bronze/replay/2026-01-01T00:00:00.5Z_x/a_1/dt=2024-02-29/n.json")
    assert parsed.logical_key == "bronze/a_1/dt=2024-02-29/n.json"
    assert parsed.quarantine_key == "quarantine/a_1/dt=2024-02-29/n.jsonl"


def test_a_replay_destination_keeps_its_own_prefix_even_when_outside_bronze():
    assert replay_key("bronze/orders/dt=2025-01-02/a.jsonl", "restore//") == "restore/orders/dt=2025-01-02/a.jsonl"
    assert replay_key("bronze/orders/dt=2025-01-02/a.jsonl", "bronze/replay/X/") == (
        "bronze/replay/X/orders/dt=2025-01-02/a.jsonl")


def test_a_batch_operations_copy_keeps_the_whole_source_key_and_maps_to_the_same_silver_key():
    from lambdas.shared.keys import batch_replay_key

    original = parse_bronze_key("bronze/orders/dt=2025-01-02/a b+ü.json")
    dest = batch_replay_key(original.key, "bronze/replay/batch-1/")
    assert dest == "bronze/replay/batch-1/bronze/orders/dt=2025-01-02/a b+ü.json"
    copy = parse_bronze_key(dest)
    assert (copy.replay_stamp, copy.logical_key, copy.silver_key) == ("batch-1", original.key, original.silver_key)
    with pytest.raises(InvalidKey, match="expected bronze/<type>"):
        parse_bronze_key("bronze/replay/s1/silver/orders/dt=2025-01-02/a.json")  # only bronze/ is the source root


def test_a_batch_operations_destination_keeps_the_whole_logical_key_under_the_prefix():
    assert batch_replay_key("bronze/replay/s0/orders/dt=2025-01-02/a.jsonl", "bronze/replay/X//") == (
        "bronze/replay/X/bronze/orders/dt=2025-01-02/a.jsonl")
