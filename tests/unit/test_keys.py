import pytest

from lambdas.shared.keys import InvalidKey, parse_bronze_key, replay_key


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
