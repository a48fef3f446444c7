"""`start` and `end` of a bar query: a UTC date, an RFC 3339 datetime or epoch milliseconds.

A date means the whole UTC day (`end=2024-01-05` includes every bar that starts that day); a
datetime or an epoch-ms value means that instant, included at both ends. Every bound has one
canonical spelling, which the response echoes and the cursor binds, so `end=1704412800000` and
`end=2024-01-05T00:00:00Z` are the same query.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

import msgspec

from chalicelib.errors import BadRequest

# ASCII digits only: `\d` would also match other scripts' digits, which int() accepts.
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_EPOCH_MS = re.compile(r"\d{1,15}", re.ASCII)
# RFC 3339: a date, `T` (or a space, as RFC 3339 allows), a time, and a zone (`Z` or ±hh:mm).
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_INSTANT = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)

BOUND_FORMATS = "a date (YYYY-MM-DD), an RFC 3339 datetime with a zone, or epoch milliseconds"


class Bound(msgspec.Struct, frozen=True):
    """A parsed bound: the first instant it admits (`start`) or the first it excludes (`end`)."""

    canonical: str
    at: datetime


def parse_start(text: str) -> Bound:
    """The first instant a `start` parameter admits."""
    day, instant = _parse(text, "start")
    if day is not None:
        return Bound(day.isoformat(), datetime.combine(day, time(0), tzinfo=UTC))
    assert instant is not None
    return Bound(_spell(instant), instant)


def parse_end(text: str) -> Bound:
    """The first instant past an `end` parameter: the next day for a date, the next
    microsecond for an instant (both ends are inclusive)."""
    day, instant = _parse(text, "end")
    if day is not None:
        following = datetime.combine(day, time(0), tzinfo=UTC)
        # The last representable day has no next day: its end is the far future.
        at = following + timedelta(days=1) if day < date.max else _MAX_INSTANT
        return Bound(day.isoformat(), at)
    assert instant is not None
    return Bound(_spell(instant), instant + _ONE_MICROSECOND)


def check_order(start: Bound | None, end: Bound | None) -> None:
    """A start after the end is a mistake, not an empty answer."""
    if start is not None and end is not None and start.at >= end.at:
        raise BadRequest(
            "start must be on or before end",
            details={"start": start.canonical, "end": end.canonical},
        )


def _parse(text: str, name: str) -> tuple[date | None, datetime | None]:
    value = text.strip()
    try:
        if _DATE.fullmatch(value):
            return date.fromisoformat(value), None
        if _EPOCH_MS.fullmatch(value):
            instant = _EPOCH + timedelta(milliseconds=int(value))
            if instant > _MAX_INSTANT:
                raise ValueError(value)
            return None, instant
        if _DATETIME.fullmatch(value):
            parsed = datetime.fromisoformat(value.upper().replace(" ", "T"))
            return None, parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        pass
    raise BadRequest(
        f"invalid query parameter: {name} must be {BOUND_FORMATS}; got {text[:40]!r}",
        details={"parameter": name},
    )


def _spell(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")
