"""Time windows for listing and replay: ISO-8601 (python-dateutil; naive means UTC) or relative
(`6h`, `90m`, `2d`, `1w`, `now`). Windows are half-open: start <= t < end."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from dateutil import parser as dateparser

from ops.errors import UsageError

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|day|days|w|wk)\s*$", re.I)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "day": 86400, "days": 86400,
          "w": 604800, "wk": 604800}
EXAMPLE = "use ISO-8601 like 2026-01-31T00:00:00Z, or a relative time like 6h, 2d"


@dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime

    def __contains__(self, moment: dt.datetime) -> bool:
        moment = as_utc(moment)
        return self.start <= moment < self.end

    def days(self) -> list[dt.date]:
        """The calendar days (UTC) that overlap the window: the `dt=` partitions to read."""
        first = self.start.date()
        last = (self.end - dt.timedelta(microseconds=1)).date()
        return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]

    def describe(self) -> str:
        return f"[{_moment(self.start)}, {_moment(self.end)})"


def _moment(moment: dt.datetime) -> str:
    """2025-02-10T00:00:00Z, to the second (sub-second parts only when there are any worth showing)."""
    text = moment.isoformat(timespec="seconds" if not moment.microsecond else "milliseconds")
    return text.replace("+00:00", "Z")


def describe_time(value) -> str:
    """A moment for text output (a datetime or an ISO-8601 string from a report): UTC, to the
    second, milliseconds only when there are any; what does not parse is shown as it is."""
    if value is None or value == "":
        return "-"
    moment = value
    if not isinstance(value, dt.datetime):
        try:
            moment = dt.datetime.fromisoformat(str(value))  # a final Z reads as UTC since Python 3.11
        except ValueError:
            return str(value)
    return _moment(as_utc(moment))


def as_utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


RANGE = "times must fall between 0001-01-01 and 9999-12-31 UTC"
_UTC_NAMES = frozenset({"UTC", "GMT", "Z", "UT"})


class _ZoneAbbreviation(Exception):  # noqa: N818 - internal signal, never leaves this module
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _zone(name: str | None, offset: int | None):
    """dateutil's tzinfos hook: offsets and UTC are fine; a zone abbreviation (PST, CET, IST…) is
    refused, since dateutil does not know them and would silently take the time as UTC."""
    if name is None:
        return offset
    if name.upper() in _UTC_NAMES:
        return 0
    raise _ZoneAbbreviation(name)


def parse_duration(text: str, *, option: str = "--since") -> dt.timedelta:
    match = _RELATIVE.match(text or "")
    if not match:
        raise UsageError(f"{option} {text!r} is not a duration; use a number and a unit like 90m, 6h, 2d, 1w")
    try:
        return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2).lower()])
    except OverflowError:
        raise UsageError(f"{option} {text!r} is too long: {RANGE}") from None


def _before(now: dt.datetime, duration: dt.timedelta, *, option: str, text: str) -> dt.datetime:
    try:
        return now - duration
    except OverflowError:
        raise UsageError(f"{option} {text!r} reaches before year 1: {RANGE}") from None


def parse_time(text: str, *, option: str, now: dt.datetime | None = None) -> dt.datetime:
    """An absolute time (naive = UTC) or one relative to now ('6h' = six hours ago, 'now').
    Zone abbreviations are refused (give an offset), and so are times outside datetime's range."""
    now = as_utc(now or dt.datetime.now(dt.UTC))
    value = (text or "").strip()
    if value.lower() == "now":
        return now
    if _RELATIVE.match(value):
        return _before(now, parse_duration(value, option=option), option=option, text=text)
    try:
        parsed = dateparser.isoparse(value)
    except ValueError as exc:
        if "offset" in str(exc):
            raise UsageError(f"{option} {text!r} has a UTC offset out of range (-23:59 to +23:59); "
                             f"{EXAMPLE}") from None
        parsed = None
    except OverflowError:
        raise UsageError(f"{option} {text!r} is out of range: {RANGE}") from None
    if parsed is None:
        try:
            parsed = dateparser.parse(value, tzinfos=_zone)
        except _ZoneAbbreviation as exc:
            raise UsageError(f"{option} {text!r}: the time zone abbreviation {exc.name!r} is not accepted (they "
                             "are ambiguous, and would be read as UTC); give an offset instead, e.g. "
                             "2025-02-10T00:00:00-08:00 for PST") from None
        except (ValueError, OverflowError, dateparser.ParserError):
            raise UsageError(f"{option} {text!r} is not a date; {EXAMPLE}") from None
    try:
        return as_utc(parsed)
    except OverflowError:
        raise UsageError(f"{option} {text!r} is out of range once converted to UTC: {RANGE}") from None


def make_window(*, start: str | None, end: str | None, since: str | None,
                now: dt.datetime | None = None) -> Window:
    """The window from --start/--end or --since, with every mistake named."""
    now = as_utc(now or dt.datetime.now(dt.UTC))
    if since and (start or end):
        raise UsageError("--since cannot be combined with --start/--end; use one or the other")
    if since:
        return Window(start=_before(now, parse_duration(since), option="--since", text=since), end=now)
    if not start:
        raise UsageError("a time window is required: --start T --end T, or --since 6h")
    begin = parse_time(start, option="--start", now=now)
    finish = parse_time(end, option="--end", now=now) if end else now
    if not end and begin > now:
        raise UsageError(f"--start {_moment(begin)} is in the future (now is {_moment(now)}) and --end defaults to "
                         "now; give an --end after --start, or a start in the past")
    if finish <= begin:
        raise UsageError(f"--end {_moment(finish)} is not after --start {_moment(begin)}; windows are [start, end)")
    return Window(start=begin, end=finish)
