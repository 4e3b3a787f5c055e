import datetime as dt
import re

import pytest

from ops.errors import UsageError
from ops.timewindow import Window, as_utc, make_window, parse_duration, parse_time

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


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("30sec", 30), ("90m", 5400), ("90min", 5400), ("6h", 21600), ("6hr", 21600),
    ("2d", 172800), ("2day", 172800), ("2days", 172800), ("1w", 604800), ("1wk", 604800),
    ("1.5h", 5400), (" 6 H ", 21600), ("2DAYS", 172800), ("0m", 0),
])
def test_every_unit_alias_counts_its_own_length(text, seconds):
    assert parse_duration(text) == dt.timedelta(seconds=seconds)
    assert parse_time(text, option="--start", now=NOW) == NOW - dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", None, "6", "h", "6y", "-6h", "6h ago", "1.h", "6hh"])
def test_a_duration_without_a_number_and_a_known_unit_is_refused_naming_the_option(text):
    with pytest.raises(UsageError, match=f"--window {text!r} is not a duration; use a number and a unit"):
        parse_duration(text, option="--window")
    with pytest.raises(UsageError, match="--since"):
        parse_duration(text)


def test_an_empty_window_is_refused():
    with pytest.raises(UsageError, match="--end 2025-01-01T00:00:00Z is not after --start 2025-01-01T00:00:00Z"):
        make_window(start="2025-01-01", end="2025-01-01T00:00:00Z", since=None, now=NOW)
    with pytest.raises(UsageError, match="is not after"):
        make_window(start="now", end=None, since=None, now=NOW)


def test_a_window_one_microsecond_long_is_accepted():
    window = make_window(start="2025-01-01T00:00:00", end="2025-01-01T00:00:00.000001", since=None, now=NOW)
    assert window.start in window and window.end not in window


def test_without_an_end_the_window_ends_now_and_now_is_any_case():
    window = make_window(start="1h", end=None, since=None, now=NOW)
    assert (window.start, window.end) == (NOW - dt.timedelta(hours=1), NOW)
    assert parse_time(" NOW ", option="--end", now=NOW) == NOW


def test_a_naive_now_is_taken_as_utc_and_an_aware_one_converted():
    naive = dt.datetime(2026, 3, 10, 12, 0)
    assert parse_time("now", option="--end", now=naive) == NOW
    tokyo = NOW.astimezone(dt.timezone(dt.timedelta(hours=9)))
    assert parse_time("now", option="--end", now=tokyo).tzinfo == dt.UTC
    assert make_window(start=None, end=None, since="1h", now=naive).end == NOW


def test_without_a_clock_now_is_the_current_utc_time():
    before = dt.datetime.now(dt.UTC)
    got = parse_time("now", option="--end")
    assert before <= got <= dt.datetime.now(dt.UTC) and got.tzinfo == dt.UTC
    window = make_window(start=None, end=None, since="1h")
    assert before <= window.end <= dt.datetime.now(dt.UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("Jan 5 2025 10:30", dt.datetime(2025, 1, 5, 10, 30, tzinfo=dt.UTC)),
    ("5 January 2025 10:30 +0100", dt.datetime(2025, 1, 5, 9, 30, tzinfo=dt.UTC)),
    ("2025/01/05 10:30:00", dt.datetime(2025, 1, 5, 10, 30, tzinfo=dt.UTC)),
    ("  2025-01-05T10:30:00Z  ", dt.datetime(2025, 1, 5, 10, 30, tzinfo=dt.UTC)),
])
def test_a_time_that_is_not_iso_8601_is_still_read_when_unambiguous(text, expected):
    assert parse_time(text, option="--start", now=NOW) == expected


@pytest.mark.parametrize("text", ["", "99999999999999999999", "2025-01-01T25:00", "tomorrow-ish"])
def test_a_time_nothing_can_read_is_a_usage_error_with_an_example(text):
    with pytest.raises(UsageError, match=f"--start {text!r} is not a date; use ISO-8601 like 2026-01-31"):
        parse_time(text, option="--start", now=NOW)


def test_the_days_of_a_window_are_every_utc_day_it_touches():
    window = Window(dt.datetime(2025, 1, 30, 23, tzinfo=dt.UTC), dt.datetime(2025, 2, 2, tzinfo=dt.UTC))
    assert window.days() == [dt.date(2025, 1, 30), dt.date(2025, 1, 31), dt.date(2025, 2, 1)]
    one_instant = Window(dt.datetime(2025, 1, 30, 23, tzinfo=dt.UTC),
                         dt.datetime(2025, 1, 31, 0, 0, 0, 1, tzinfo=dt.UTC))
    assert one_instant.days() == [dt.date(2025, 1, 30), dt.date(2025, 1, 31)]
    assert window.describe() == "[2025-01-30T23:00:00Z, 2025-02-02T00:00:00Z)"


def test_a_naive_moment_is_tested_against_a_window_as_utc():
    window = Window(dt.datetime(2025, 1, 1, tzinfo=dt.UTC), dt.datetime(2025, 1, 2, tzinfo=dt.UTC))
    assert dt.datetime(2025, 1, 1, 0, 0) in window
    assert dt.datetime(2024, 12, 31, 23, 59, 59) not in window
    assert as_utc(dt.datetime(2025, 1, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == window.start


@pytest.fixture
def tokyo(monkeypatch):
    """The machine's local time zone is not UTC (a laptop in Tokyo)."""
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_naive_times_are_utc_whatever_the_machine_s_time_zone(tokyo):
    assert as_utc(dt.datetime(2025, 1, 1, 10)) == dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC)
    assert as_utc(dt.datetime(2025, 1, 1, 10, tzinfo=dt.timezone(dt.timedelta(hours=2)))).tzinfo == dt.UTC
    assert parse_time("2025-01-01T10:00:00", option="--start") == dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC)


def test_now_is_the_current_utc_time_whatever_the_machine_s_time_zone(tokyo):
    for got in (parse_time("now", option="--end"), make_window(start="1h", end=None, since=None).end):
        assert abs((got - dt.datetime.now(dt.UTC)).total_seconds()) < 3600  # not nine hours off


def test_a_relative_end_counts_back_from_the_same_now_as_the_start():
    window = make_window(start="3h", end="1h", since=None, now=NOW)
    assert (window.start, window.end) == (NOW - dt.timedelta(hours=3), NOW - dt.timedelta(hours=1))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"start": "1h", "end": None, "since": "6h"}, "--since cannot be combined with --start/--end; use one or the other"),
    ({"start": None, "end": "now", "since": "6h"}, "--since cannot be combined with --start/--end; use one or the other"),
    ({"start": None, "end": None, "since": None}, "a time window is required: --start T --end T, or --since 6h"),
    ({"start": None, "end": "now", "since": None}, "a time window is required: --start T --end T, or --since 6h"),
])
def test_a_missing_or_doubled_window_says_which_options_to_use(kwargs, message):
    with pytest.raises(UsageError) as info:
        make_window(now=NOW, **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("value, says", [
    ("2025-02-10 00:00 PST", "abbreviation 'PST' is not accepted"),
    ("2025-02-10 00:00 CET", "-08:00"),
    ("2025-02-10T00:00:00+25:00", "offset out of range"),
    ("0001-01-01T00:00:00+01:00", "out of range"),
    ("9999-12-31T23:00:00-05:00", "out of range"),
])
def test_zone_abbreviations_and_out_of_range_times_are_usage_errors_naming_the_value(value, says):
    with pytest.raises(UsageError, match=re.escape(says)) as caught:
        parse_time(value, option="--start")
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize("since", ["3000000d", "99999999999999999999d"])
def test_a_duration_past_the_calendar_is_a_usage_error(since):
    with pytest.raises(UsageError, match="--since"):
        make_window(start=None, end=None, since=since)


@pytest.mark.parametrize("value", ["2025-02-10 00:00 UTC", "2025-02-10 00:00 GMT", "2025-02-10T00:00Z"])
def test_utc_by_name_is_still_utc(value):
    assert parse_time(value, option="--start") == dt.datetime(2025, 2, 10, tzinfo=dt.UTC)


def test_the_cli_rejects_a_zone_abbreviation_with_exit_2_and_no_warning():
    from click.testing import CliRunner

    from ops.cli import cli

    result = CliRunner().invoke(cli, ["ls", "--bucket", "b", "--start", "2025-02-10 00:00 PST", "--end", "2025-02-11"])
    assert result.exit_code == 2
    assert "'2025-02-10 00:00 PST'" in result.stderr and "-08:00" in result.stderr
    assert "UnknownTimezoneWarning" not in result.output


def test_a_zone_abbreviation_is_refused_with_an_offset_to_use_instead():
    with pytest.raises(UsageError) as info:
        parse_time("2025-02-10 00:00 PST", option="--start", now=NOW)
    assert str(info.value) == ("--start '2025-02-10 00:00 PST': the time zone abbreviation 'PST' is not accepted "
                               "(they are ambiguous, and would be read as UTC); give an offset instead, e.g. "
                               "2025-02-10T00:00:00-08:00 for PST")


def test_a_relative_time_reaching_before_year_1_names_the_option_and_the_value():
    with pytest.raises(UsageError) as info:
        parse_time("99999999d", option="--start", now=NOW)
    assert str(info.value) == ("--start '99999999d' reaches before year 1: times must fall between 0001-01-01 "
                               "and 9999-12-31 UTC")
    with pytest.raises(UsageError) as info:
        make_window(start=None, end=None, since="99999999d", now=NOW)
    assert str(info.value).startswith("--since '99999999d' reaches before year 1")


def test_a_window_with_sub_second_bounds_describes_them_to_the_millisecond():
    window = Window(dt.datetime(2025, 1, 1, 0, 0, 0, 250000, tzinfo=dt.UTC), dt.datetime(2025, 1, 2, tzinfo=dt.UTC))
    assert window.describe() == "[2025-01-01T00:00:00.250Z, 2025-01-02T00:00:00Z)"


def test_a_time_past_the_last_representable_one_is_out_of_range():
    with pytest.raises(UsageError) as info:
        parse_time("9999-12-31T24:00:00", option="--end", now=NOW)
    assert str(info.value) == ("--end '9999-12-31T24:00:00' is out of range: times must fall between 0001-01-01 "
                               "and 9999-12-31 UTC")


def test_a_start_in_the_future_without_an_end_says_that_end_defaults_to_now():
    now = NOW.replace(microsecond=123456)
    with pytest.raises(UsageError) as caught:
        make_window(start="2026-04-10", end=None, since=None, now=now)
    message = str(caught.value)
    assert message == ("--start 2026-04-10T00:00:00Z is in the future (now is 2026-03-10T12:00:00.123Z) and --end "
                       "defaults to now; give an --end after --start, or a start in the past")
    assert "123456" not in message  # times to the millisecond at most


def test_describe_time_shows_a_moment_to_the_second_in_utc():
    from ops.timewindow import describe_time

    assert describe_time("2026-12-01T14:29:34.357222+00:00") == "2026-12-01T14:29:34.357Z"
    assert describe_time("2025-04-05T00:00:00+00:00") == "2025-04-05T00:00:00Z"
    assert describe_time(dt.datetime(2025, 4, 5, 2, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == "2025-04-05T00:00:00Z"
    assert describe_time("not a time") == "not a time"
    assert describe_time(None) == describe_time("") == "-"
    assert describe_time("2025-04-05T01:02:03Z") == "2025-04-05T01:02:03Z"
