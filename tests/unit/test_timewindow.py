import datetime as dt

import pytest

from ops.errors import UsageError
from ops.timewindow import Window, make_window, parse_time

NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


def test_a_naive_time_is_utc_and_an_offset_is_converted():
    assert parse_time("2025-01-01T10:00:00", option="--start") == dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC)
    assert parse_time("2025-01-01T10:00:00+02:00", option="--start") == dt.datetime(2025, 1, 1, 8, tzinfo=dt.UTC)
    assert parse_time("2025-01-01", option="--start") == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def test_relative_times_count_back_from_now():
    assert parse_time("6h", option="--start", now=NOW) == NOW - dt.timedelta(hours=6)
    assert make_window(start=None, end=None, since="2d", now=NOW) == Window(NOW - dt.timedelta(days=2), NOW)
    assert make_window(start="90m", end="now", since=None, now=NOW).start == NOW - dt.timedelta(minutes=90)


def test_the_window_is_half_open():
    window = make_window(start="2025-01-01", end="2025-01-02", since=None, now=NOW)
    assert dt.datetime(2025, 1, 1, tzinfo=dt.UTC) in window
    assert dt.datetime(2025, 1, 1, 23, 59, 59, 999999, tzinfo=dt.UTC) in window
    assert dt.datetime(2025, 1, 2, tzinfo=dt.UTC) not in window
    assert dt.datetime(2025, 1, 2, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))) in window  # 23:00 UTC
    assert window.days() == [dt.date(2025, 1, 1)]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"start": "2026-13-01", "end": None, "since": None}, "--start '2026-13-01' is not a date; use ISO-8601"),
    ({"start": "2025-01-01", "end": "yesterdayish", "since": None}, "--end 'yesterdayish' is not a date"),
    ({"start": "2025-01-02", "end": "2025-01-01", "since": None}, "is not after --start"),
    ({"start": None, "end": None, "since": "6 parsecs"}, "--since '6 parsecs' is not a duration"),
    ({"start": "1h", "end": None, "since": "6h"}, "cannot be combined"),
    ({"start": None, "end": None, "since": None}, "a time window is required"),
])
def test_a_bad_window_is_a_usage_error_that_names_the_value(kwargs, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        make_window(now=NOW, **kwargs)
