"""FHIR date, dateTime and instant values as the inclusive instant range they cover.

A value is as precise as it is written: ``1940`` is the whole year 1940, ``2026-04-01T09:00``
the whole minute. A value without an offset is read in the configured zone (Asia/Tokyo by
default; Blaze reads it as UTC, samply/blaze#1498). Both index rows and query values use
:func:`date_range`, so ``birthdate=1940`` and a stored ``1940-05-03`` meet on the same rules.

    >>> low, high = date_range("1940")
    >>> low.isoformat(), high.isoformat()
    ('1940-01-01T00:00:00+09:00', '1940-12-31T23:59:59.999999+09:00')
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

DEFAULT_ZONE = ZoneInfo("Asia/Tokyo")

_DATETIME = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?)?)?)?"
)
_ONE_MICRO = timedelta(microseconds=1)


def _zone_of(text: str | None, default: tzinfo) -> tzinfo:
    if text is None:
        return default
    if text == "Z":
        return UTC
    sign = 1 if text[0] == "+" else -1
    digits = text[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return UTC if not offset else timezone(sign * offset)


def date_range(text: str, zone: tzinfo = DEFAULT_ZONE) -> tuple[datetime, datetime]:
    """``(low, high)``: the first and last microsecond ``text`` covers, both aware.

    Raises ``ValueError`` when ``text`` is not a FHIR date, dateTime or instant.

    >>> [d.isoformat() for d in date_range("2026-02")]
    ['2026-02-01T00:00:00+09:00', '2026-02-28T23:59:59.999999+09:00']
    >>> [d.isoformat() for d in date_range("2026-04-01T09:00:00.5Z")]
    ['2026-04-01T09:00:00.500000+00:00', '2026-04-01T09:00:00.599999+00:00']
    """
    m = _DATETIME.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a FHIR date, dateTime or instant")
    try:
        return _range(m.groupdict(), zone)
    except OverflowError:  # the very end of year 9999
        raise ValueError(f"{text!r} is out of range") from None


def _range(g: dict[str, str | None], zone: tzinfo) -> tuple[datetime, datetime]:
    tz = _zone_of(g["tz"], zone)
    year = int(g["y"] or 0)
    if g["m"] is None:
        low = datetime(year, 1, 1, tzinfo=tz)
        return low, _months_end(low, 12)
    month = int(g["m"] or 1)
    if g["d"] is None:
        low = datetime(year, month, 1, tzinfo=tz)
        return low, _months_end(low, 1)
    day = int(g["d"] or 1)
    if g["H"] is None:
        low = datetime(year, month, day, tzinfo=tz)
        return low, low + timedelta(days=1) - _ONE_MICRO
    hour, minute = int(g["H"] or 0), int(g["M"] or 0)
    if g["S"] is None:
        low = datetime(year, month, day, hour, minute, tzinfo=tz)
        return low, low + timedelta(minutes=1) - _ONE_MICRO
    second = int(g["S"] or 0)
    frac = g["f"]
    if not frac:
        low = datetime(year, month, day, hour, minute, second, tzinfo=tz)
        return low, low + timedelta(seconds=1) - _ONE_MICRO
    digits = frac[:6]
    micro = int(digits.ljust(6, "0"))
    low = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    step = timedelta(microseconds=10 ** (6 - len(digits)))
    return low, low + step - _ONE_MICRO


def _months_end(value: datetime, months: int) -> datetime:
    """The last microsecond before ``value`` + ``months``."""
    total = value.month - 1 + months
    year = value.year + total // 12
    if year > 9999:  # December 9999: its end is the largest datetime there is
        return datetime.max.replace(tzinfo=value.tzinfo)
    return value.replace(year=year, month=total % 12 + 1) - _ONE_MICRO


__all__ = ["DEFAULT_ZONE", "date_range"]
