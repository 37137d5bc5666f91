"""Typed search values: one parser per parameter type (https://hl7.org/fhir/R4/search.html).

Each function turns one OR-alternative of a query string into a frozen value the SQL layer
compares against index rows. Malformed input raises :class:`BadRequest` naming the
parameter, so a client sees ``400`` with a clear message and never a silent empty result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from renkei.fhir.outcome import BadRequest

#: https://hl7.org/fhir/R4/search.html#prefix
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")

_DATE = re.compile(
    r"^(?P<y>[0-9]{4})(-(?P<m>[0-9]{2})(-(?P<d>[0-9]{2})"
    r"(T(?P<H>[0-9]{2}):(?P<M>[0-9]{2})(:(?P<S>[0-9]{2})(?P<f>\.[0-9]{1,9})?)?"
    r"(?P<tz>Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?$"
)
_NUMBER = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$")
#: numbers beyond these are refused: a database NUMERIC need not hold them
_MAX_DIGITS = 40
_TYPE_ID = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(/_history/.*)?$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True)
class TokenValue:
    """``[system]|[code]``; ``system=None`` matches any system, ``""`` means "no system"."""

    system: str | None
    code: str | None


@dataclass(frozen=True)
class ReferenceValue:
    """A local ``Type/id`` or bare ``id``, or an absolute/canonical ``url`` as written."""

    res_type: str | None = None
    res_id: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class DateValue:
    """A prefixed date: the instants ``[low, high]`` its precision denotes (inclusive)."""

    prefix: str
    low: datetime
    high: datetime


@dataclass(frozen=True)
class NumberValue:
    """A prefixed number and the half-open range ``[low, high)`` its precision implies."""

    prefix: str
    value: Decimal
    low: Decimal
    high: Decimal


@dataclass(frozen=True)
class QuantityValue:
    """``[prefix]number|system|code``; ``system=None`` with a code matches code or unit."""

    number: NumberValue
    system: str | None
    code: str | None


def split_unescaped(text: str, sep: str) -> list[str]:
    r"""Split on ``sep`` unless escaped with a backslash, then unescape (search.html#escaping).

    >>> split_unescaped(r"a,b\,c", ",")
    ['a', 'b,c']
    >>> split_unescaped(r"http://loinc.org|8480-6$gt100", "$")
    ['http://loinc.org|8480-6', 'gt100']
    """
    parts = _split_raw(text, sep)
    return [_unescape(p) for p in parts]


def split_raw(text: str, sep: str) -> list[str]:
    r"""Split on unescaped ``sep`` and keep the escapes for a later split.

    >>> split_raw(r"a\|b|c", "|")
    ['a\\|b', 'c']
    """
    return _split_raw(text, sep)


def _split_raw(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    return _unescape(text)


def _unescape(text: str) -> str:
    return re.sub(r"\\([\\,$|])", r"\1", text)


def split_prefix(raw: str, name: str) -> tuple[str, str]:
    """Separate a comparison prefix; ``eq`` when there is none.

    >>> split_prefix("ge1940", "birthdate")
    ('ge', '1940')
    """
    if len(raw) >= 2 and raw[:2].isalpha():
        prefix = raw[:2]
        if prefix not in PREFIXES:
            raise BadRequest(f"{name}: unknown prefix {prefix!r} in {raw!r}; use one of {PREFIXES}")
        return prefix, raw[2:]
    return "eq", raw


# -- token ---------------------------------------------------------------------------------


def parse_token(raw: str) -> TokenValue:
    """``code``, ``system|code``, ``|code`` or ``system|``.

    >>> parse_token("http://loinc.org|8480-6")
    TokenValue(system='http://loinc.org', code='8480-6')
    >>> parse_token("|abc")
    TokenValue(system='', code='abc')
    """
    parts = _split_raw(raw, "|")
    if len(parts) == 1:
        return TokenValue(None, _unescape(parts[0]))
    system = _unescape(parts[0])
    code = _unescape("|".join(parts[1:]))
    return TokenValue(system, code or None)


def parse_of_type(raw: str, name: str) -> TokenValue:
    """``identifier:of-type=[type system]|[type code]|[value]`` (search.html#token).

    The index keeps the type's system and ``"<type code>|<value>"`` as the code.
    """
    parts = [_unescape(p) for p in _split_raw(raw, "|")]
    if len(parts) != 3 or not all(parts):
        raise BadRequest(f"{name}:of-type needs system|type-code|value, got {raw!r}")
    return TokenValue(parts[0], f"{parts[1]}|{parts[2]}")


# -- reference -----------------------------------------------------------------------------


def parse_reference(raw: str, name: str, type_modifier: str | None = None) -> ReferenceValue:
    """``Type/id``, ``id`` (with an optional ``:Type`` modifier) or an absolute URL.

    >>> parse_reference("Patient/123", "subject")
    ReferenceValue(res_type='Patient', res_id='123', url=None)
    >>> parse_reference("123", "subject", "Patient")
    ReferenceValue(res_type='Patient', res_id='123', url=None)
    """
    value = _unescape(raw)
    if "://" in value or value.startswith("urn:"):
        tail = _TYPE_ID.match("/".join(value.split("/")[-2:])) if "/" in value else None
        if "/_history/" in value:
            before = value.split("/_history/")[0]
            tail = _TYPE_ID.match("/".join(before.split("/")[-2:]))
        if tail:
            return ReferenceValue(tail["type"], tail["id"], value)
        return ReferenceValue(url=value)
    match = _TYPE_ID.match(value)
    if match:
        if type_modifier and match["type"] != type_modifier:
            raise BadRequest(f"{name}:{type_modifier} cannot match a {match['type']} reference")
        return ReferenceValue(match["type"], match["id"])
    if _ID.match(value):
        return ReferenceValue(type_modifier, value)
    raise BadRequest(f"{name}: {raw!r} is not a reference (Type/id, id or an absolute URL)")


# -- date ----------------------------------------------------------------------------------


def parse_date(raw: str, name: str, zone: ZoneInfo) -> DateValue:
    """A prefixed date with its precision range; no offset means ``zone`` (JST by default).

    >>> v = parse_date("1940", "birthdate", ZoneInfo("Asia/Tokyo"))
    >>> v.prefix, v.low.isoformat(), v.high.isoformat()
    ('eq', '1939-12-31T15:00:00+00:00', '1940-12-31T14:59:59.999999+00:00')
    """
    prefix, text = split_prefix(raw, name)
    low, high = date_range(text, name, zone)
    return DateValue(prefix, low, high)


def date_range(text: str, name: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The first and last instant (UTC, inclusive) of a FHIR date/dateTime value."""
    match = _DATE.match(text.strip())
    if not match:
        raise BadRequest(f"{name}: {text!r} is not a FHIR date or dateTime")
    g = match.groupdict()
    try:
        tz: tzinfo = zone
        if g["tz"] == "Z":
            tz = UTC
        elif g["tz"]:
            sign = 1 if g["tz"][0] == "+" else -1
            hours, minutes = int(g["tz"][1:3]), int(g["tz"][4:6])
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        start = datetime(
            int(g["y"]),
            int(g["m"] or 1),
            int(g["d"] or 1),
            int(g["H"] or 0),
            int(g["M"] or 0),
            int(g["S"] or 0),
            int(Decimal(g["f"] or "0") * 1_000_000),
            tzinfo=tz,
        )
        end = _next_start(start, g)
        return start.astimezone(UTC), (end - timedelta(microseconds=1)).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        # month 13, 24:61, offset +25:00, or a range past year 9999
        raise BadRequest(f"{name}: {text!r} is not a valid date: {exc}") from exc


def _next_start(start: datetime, g: dict[str, str | None]) -> datetime:
    if g["m"] is None:
        return start.replace(year=start.year + 1)
    if g["d"] is None:
        if start.month == 12:
            return start.replace(year=start.year + 1, month=1)
        return start.replace(month=start.month + 1)
    if g["H"] is None:
        # Calendar day in the zone (wall clock), then back to an aware instant.
        return start + timedelta(days=1)
    if g["S"] is None:
        return start + timedelta(minutes=1)
    if g["f"] is None:
        return start + timedelta(seconds=1)
    digits = min(len(g["f"]) - 1, 6)
    return start + timedelta(microseconds=10 ** (6 - digits))


# -- number and quantity -------------------------------------------------------------------


def parse_number(raw: str, name: str) -> NumberValue:
    """A prefixed number and its implied precision range (search.html#number).

    >>> v = parse_number("100", "probability")
    >>> v.low, v.high
    (Decimal('99.5'), Decimal('100.5'))
    >>> parse_number("1e2", "x").low == 50
    True
    """
    prefix, text = split_prefix(raw, name)
    text = text.strip()
    if not _NUMBER.match(text):
        raise BadRequest(f"{name}: {raw!r} is not a number")
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise BadRequest(f"{name}: {raw!r} is not a number") from exc
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if len(value.as_tuple().digits) > _MAX_DIGITS or abs(value.adjusted()) > _MAX_DIGITS:
        raise BadRequest(f"{name}: {raw!r} is too large or too precise to search on")
    half = Decimal(5).scaleb(exponent - 1)
    return NumberValue(prefix, value, value - half, value + half)


def parse_quantity(raw: str, name: str) -> QuantityValue:
    """``[prefix]number|system|code`` or ``number||code`` (search.html#quantity).

    >>> q = parse_quantity("5.4|http://unitsofmeasure.org|mg", "value-quantity")
    >>> str(q.number.value), q.system, q.code
    ('5.4', 'http://unitsofmeasure.org', 'mg')
    """
    parts = [_unescape(p) for p in _split_raw(raw, "|")]
    if len(parts) not in (1, 3):
        raise BadRequest(f"{name}: {raw!r} is not number, number|system|code or number||code")
    number = parse_number(parts[0], name)
    if len(parts) == 1:
        return QuantityValue(number, None, None)
    return QuantityValue(number, parts[1] or None, parts[2] or None)


__all__ = [
    "PREFIXES",
    "DateValue",
    "NumberValue",
    "QuantityValue",
    "ReferenceValue",
    "TokenValue",
    "date_range",
    "parse_date",
    "parse_number",
    "parse_of_type",
    "parse_quantity",
    "parse_reference",
    "parse_token",
    "split_prefix",
    "split_raw",
    "split_unescaped",
    "unescape",
]
