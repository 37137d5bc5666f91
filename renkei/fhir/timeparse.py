"""FHIR date/dateTime/instant strings to aware datetimes.

A value without an offset is read in Japan Standard Time by default (unlike Blaze, which
reads it as UTC; see samply/blaze#1498), because every participant here is in Japan.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from renkei.fhir.outcome import BadRequest

DEFAULT_ZONE = ZoneInfo("Asia/Tokyo")

_DATETIME = re.compile(
    r"^(?P<y>\d{4})(-(?P<m>\d{2})(-(?P<d>\d{2})"
    r"(T(?P<H>\d{2}):(?P<M>\d{2})(:(?P<S>\d{2})(?P<f>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def parse_instant(value: str, name: str = "value", zone: ZoneInfo = DEFAULT_ZONE) -> datetime:
    """The earliest instant a FHIR date/dateTime denotes.

    >>> parse_instant("2026-04-01").isoformat()
    '2026-04-01T00:00:00+09:00'
    >>> parse_instant("2026-04-01T09:00:00Z").isoformat()
    '2026-04-01T09:00:00+00:00'
    """
    match = _DATETIME.match(value.strip())
    if not match:
        raise BadRequest(f"{name}: {value!r} is not a FHIR date or dateTime")
    g = match.groupdict()
    try:
        tz = zone
        if g["tz"] == "Z":
            tz = ZoneInfo("UTC")
        elif g["tz"]:
            return datetime.fromisoformat(value.strip())
        return datetime(
            int(g["y"]),
            int(g["m"] or 1),
            int(g["d"] or 1),
            int(g["H"] or 0),
            int(g["M"] or 0),
            int(g["S"] or 0),
            int(float(g["f"] or 0) * 1_000_000),
            tzinfo=tz,
        )
    except ValueError as exc:
        raise BadRequest(f"{name}: {value!r} is not a valid date: {exc}") from exc
