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
