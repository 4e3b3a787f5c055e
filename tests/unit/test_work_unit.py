import datetime as dt
import json

import pytest

from lambdas.shared import work_unit

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def make(**overrides):
    kwargs = dict(bucket="b", key="bronze/orders/dt=2025-01-02/a.jsonl", etag='"abc"', size=12,
                  origin="s3-event", now=NOW)
    kwargs.update(overrides)
    return work_unit.build(**kwargs)


def test_the_body_is_canonical_v1_json_with_a_bare_etag():
    body = make().body()
    assert body == ('{"v":1,"bucket":"b","key":"bronze/orders/dt=2025-01-02/a.jsonl","etag":"abc","size":12,'
                    '"type":"orders","dt":"2025-01-02","origin":"s3-event","enqueued_at":"2026-01-01T00:00:00Z"}')


def test_a_body_round_trips_through_parse():
    unit = make(key="bronze/replay/x/orders/dt=2025-01-02/ü b.json.gz")
    assert work_unit.parse(unit.body()) == unit
    assert unit.message_attributes()["origin"] == {"DataType": "String", "StringValue": "s3-event"}


def test_the_same_object_gives_byte_identical_bodies_whatever_etag_quoting():
    assert make(etag='"abc"').body() == make(etag="abc").body()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[1]", "expected an object"),
        ('{"v":2}', "unknown work-unit version v=2"),
        ('{"v":1,"bucket":"b"}', r"lacks field\(s\) key, etag"),
    ],
)
def test_a_malformed_body_is_rejected_with_a_reason(body, reason):
    with pytest.raises(work_unit.InvalidWorkUnit, match=reason):
        work_unit.parse(body)


def test_a_body_whose_type_does_not_match_its_key_is_rejected():
    data = json.loads(make().body())
    data["type"] = "shipments"
    with pytest.raises(work_unit.InvalidWorkUnit, match="do not match"):
        work_unit.parse(json.dumps(data))


def test_a_body_with_a_path_traversal_key_is_rejected():
    data = json.loads(make().body())
    data["key"] = "bronze/orders/dt=2025-01-02/../../x.jsonl"
    with pytest.raises(work_unit.InvalidWorkUnit, match="not a bronze key"):
        work_unit.parse(json.dumps(data))


def test_an_unknown_origin_cannot_be_built():
    with pytest.raises(work_unit.InvalidWorkUnit, match="origin"):
        make(origin="manual")


# --- boundary values ------------------------------------------------------------------------------
def good_body(**changes) -> str:
    data = json.loads(make().body())
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize("etag", ["", '""', "  ", None])
def test_an_object_without_an_etag_cannot_be_built(etag):
    with pytest.raises(work_unit.InvalidWorkUnit, match="has no ETag"):
        make(etag=etag)


def test_an_etag_is_kept_bare_whatever_the_quoting_and_spacing():
    assert work_unit.normalize_etag(' "abc-2" ') == "abc-2"
    assert work_unit.normalize_etag(None) == ""


def test_a_work_unit_is_built_with_the_key_s_type_and_date_and_the_given_size_and_origin():
    unit = make(key="bronze/replay/s1/shipments/dt=2024-02-29/x.json", size="7", origin="redrive")
    assert (unit.type, unit.dt, unit.size, unit.origin, unit.v) == ("shipments", "2024-02-29", 7, "redrive", 1)
    assert unit.object_id == "s3://b/bronze/replay/s1/shipments/dt=2024-02-29/x.json"
    assert unit.enqueued_at == "2026-01-01T00:00:00Z"


def test_enqueued_at_is_utc_to_the_second_whatever_the_clock_s_zone():
    paris = dt.timezone(dt.timedelta(hours=1))
    assert work_unit.utc_now_iso(dt.datetime(2026, 1, 1, 1, 30, 15, 999999, tzinfo=paris)) == "2026-01-01T00:30:15Z"
    now = work_unit.utc_now_iso()
    assert dt.datetime.strptime(now, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC) <= dt.datetime.now(dt.UTC)


def test_a_key_that_is_not_a_bronze_key_cannot_be_built():
    with pytest.raises(ValueError, match="outside bronze/"):
        make(key="silver/orders/dt=2025-01-02/a.jsonl")


@pytest.mark.parametrize("field", ["bucket", "key", "etag", "type", "dt", "origin", "enqueued_at"])
@pytest.mark.parametrize("value", ["", None, 7, ["b"]])
def test_a_text_field_that_is_empty_or_not_a_string_is_rejected(field, value):
    with pytest.raises(work_unit.InvalidWorkUnit, match=f"field '{field}' must be a non-empty string"):
        work_unit.parse(good_body(**{field: value}))


@pytest.mark.parametrize("size", [-1, True, False, "12", 1.5, None])
def test_a_size_that_is_not_a_non_negative_integer_is_rejected(size):
    with pytest.raises(work_unit.InvalidWorkUnit, match="field 'size' must be a non-negative integer"):
        work_unit.parse(good_body(size=size))


def test_a_size_of_zero_and_a_large_size_are_accepted():
    assert work_unit.parse(good_body(size=0)).size == 0
    assert work_unit.parse(good_body(size=5 * 1024**4)).size == 5 * 1024**4


def test_a_body_with_an_unknown_origin_is_rejected():
    with pytest.raises(work_unit.InvalidWorkUnit, match="origin 'manual' is not one of s3-event, replay-sqs"):
        work_unit.parse(good_body(origin="manual"))


@pytest.mark.parametrize("origin", work_unit.ORIGINS)
def test_every_known_origin_is_accepted(origin):
    assert work_unit.parse(good_body(origin=origin)).origin == origin


@pytest.mark.parametrize("body", [None, b"\xff\xfe", '"just a string"', "null", "1"])
def test_a_body_that_is_no_json_object_is_rejected(body):
    with pytest.raises(work_unit.InvalidWorkUnit, match="not JSON|expected an object"):
        work_unit.parse(body)


def test_a_body_without_a_version_names_the_missing_version():
    data = json.loads(good_body())
    del data["v"]
    with pytest.raises(work_unit.InvalidWorkUnit, match="v=None"):
        work_unit.parse(json.dumps(data))


def test_a_body_of_bytes_parses_like_text():
    unit = make(key="bronze/orders/dt=2025-01-02/ü.jsonl")
    assert work_unit.parse(unit.body().encode("utf-8")) == unit


def test_non_ascii_keys_travel_as_utf_8_not_escaped():
    unit = make(key="bronze/orders/dt=2025-01-02/zürich 東京.jsonl")
    body = unit.body()
    assert "zürich 東京" in body and "\\u" not in body
    assert json.loads(body)["key"] == unit.key


def test_the_message_attributes_are_type_dt_and_origin():
    attributes = make().message_attributes()
    assert attributes == {
        "type": {"DataType": "String", "StringValue": "orders"},
        "dt": {"DataType": "String", "StringValue": "2025-01-02"},
        "origin": {"DataType": "String", "StringValue": "s3-event"},
    }


def test_a_sequencer_is_carried_in_the_body_and_round_trips():
    unit = make(sequencer="0055aed6dcd90281e5")
    assert unit.sequencer == "0055AED6DCD90281E5"
    assert unit.body().endswith(',"enqueued_at":"2026-01-01T00:00:00Z","sequencer":"0055AED6DCD90281E5"}')
    assert work_unit.parse(unit.body()) == unit


def test_a_body_from_before_the_sequencer_existed_parses_with_no_order():
    old = ('{"v":1,"bucket":"b","key":"bronze/orders/dt=2025-01-02/a.jsonl","etag":"abc","size":12,'
           '"type":"orders","dt":"2025-01-02","origin":"s3-event","enqueued_at":"2026-01-01T00:00:00Z"}')
    unit = work_unit.parse(old)
    assert unit.sequencer == "" and unit.body() == old


@pytest.mark.parametrize("bad", ["xyz", 12, "0" * 65, "00 11", True])
def test_a_sequencer_that_is_not_hex_is_a_rejected_body(bad):
    data = json.loads(make().body())
    data["sequencer"] = bad
    with pytest.raises(work_unit.InvalidWorkUnit, match="sequencer"):
        work_unit.parse(json.dumps(data))


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("0055AED6DCD90281E5", "0055AED6DCD90281E4", 1),
    ("0055AED6DCD90281E", "0055AED6DCD90281E5", -1),  # padded: ...E0 < ...E5
    ("A", "A0", 0),  # equal once padded
    ("FF", "100", 1),  # padded FF0 > 100, although 0xFF < 0x100 as numbers
    ("ab", "AB", 0),  # hex digits in either case
])
def test_sequencers_compare_as_s3_documents_padding_the_shorter_on_the_right(a, b, expected):
    assert work_unit.compare_sequencers(a, b) == expected
    assert work_unit.compare_sequencers(b, a) == -expected


def test_a_missing_sequencer_is_older_than_any_and_no_sequencer_is_newer_than_anything():
    assert work_unit.is_newer("01", None) and work_unit.is_newer("01", "")
    assert not work_unit.is_newer("", "01") and not work_unit.is_newer("01", "01")
    with pytest.raises(ValueError):
        work_unit.compare_sequencers("", "01")


def test_only_quotes_and_spaces_are_stripped_from_an_etag():
    assert work_unit.normalize_etag(' "XabcX" ') == "XabcX"


@pytest.mark.parametrize(("value", "expected"), [(None, ""), ("", ""), ("00ab", "00AB"), ("F" * 64, "F" * 64)])
def test_a_sequencer_is_upper_case_hex_or_empty_when_absent(value, expected):
    assert work_unit.normalize_sequencer(value) == expected


@pytest.mark.parametrize("value", ["F" * 65, "xyz", 12, " 00AB"])
def test_a_sequencer_that_is_not_hex_of_at_most_64_characters_is_refused_showing_its_start(value):
    with pytest.raises(work_unit.InvalidWorkUnit) as info:
        work_unit.normalize_sequencer(value)
    assert str(info.value) == ("field 'sequencer' must be a hex string of at most 64 characters (the S3 event's "
                               f"sequencer), got {str(value)[:80]!r}")


def test_a_long_bad_sequencer_is_shown_by_its_first_80_characters():
    with pytest.raises(work_unit.InvalidWorkUnit) as info:
        work_unit.normalize_sequencer("z" * 200)
    assert str(info.value).endswith(f"got {'z' * 80!r}")


def test_sequencers_compare_as_s3_documents_and_an_absent_one_has_no_order():
    assert work_unit.compare_sequencers("0055AED6DCD90281E5", "0055AED6DCD90281E6") == -1
    assert work_unit.compare_sequencers("0055aed6", "0055AED600") == 0  # right-padded with zeros
    assert work_unit.compare_sequencers("0056", "0055FFFFFF") == 1
    with pytest.raises(ValueError, match="^compare_sequencers needs two sequencers; an absent one has no order$"):
        work_unit.compare_sequencers("0055", "")
    assert work_unit.is_newer("0056", "0055") and not work_unit.is_newer("0055", "0055")
    assert not work_unit.is_newer("0054", "0055") and work_unit.is_newer("0001", None)
    assert not work_unit.is_newer("", "0055") and not work_unit.is_newer(None, None)


def test_enqueued_at_is_utc_whatever_the_machine_s_time_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        paris = dt.timezone(dt.timedelta(hours=1))
        assert work_unit.utc_now_iso(dt.datetime(2026, 1, 1, 1, 30, tzinfo=paris)) == "2026-01-01T00:30:00Z"
        now = dt.datetime.strptime(work_unit.utc_now_iso(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        assert abs((now - dt.datetime.now(dt.UTC)).total_seconds()) < 3600  # not Tokyo's clock
    finally:
        monkeypatch.undo()
        time.tzset()


def test_the_errors_name_the_allowed_origins_and_the_kind_of_json_found():
    with pytest.raises(work_unit.InvalidWorkUnit, match="^origin 'manual' is not one of s3-event, replay-sqs, redrive$"):
        make(origin="manual")
    with pytest.raises(work_unit.InvalidWorkUnit, match="^body is a JSON list, expected an object$"):
        work_unit.parse("[1]")
