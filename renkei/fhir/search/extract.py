"""Index rows for one resource: every search parameter's values, shaped per parameter type.

:func:`extract_rows` evaluates each parameter's expression on the resource and turns what it
finds into rows for the ``idx_*`` tables (renkei/store/models.py). The query side relies on
exactly these shapes:

- string: one row per part (HumanName family/given/prefix/suffix/text; Address line/city/
  district/state/postalCode/country/text); ``value_norm`` is the folded form (text.py).
- token: ``(system, code, text)``: a Coding; one per coding of a CodeableConcept, ``text`` =
  normalised ``CodeableConcept.text`` or ``display``; Identifier ``(system, value)`` and also
  ``<code>:of-type`` rows ``(type system, "<type code>|<value>")``; ContactPoint ``(NULL,
  value)``; booleans ``true``/``false``; other primitives as the code.
- reference: ``(target_type, target_id, url)``, ``url`` only when the reference was absolute
  or cannot be resolved (``urn:uuid:``, canonicals); ``Reference.identifier`` becomes a token
  row ``<code>:identifier``.
- date: ``[low, high]`` in UTC, inclusive, covering the written precision (dates.py).
- number and quantity: ``value`` and ``[low, high]`` by written precision (``100`` ->
  ``[99.5, 100.5]``); quantity adds system, code and unit; Money has code = currency.
- uri: the value.

A malformed value the validator let through is logged and skipped; extraction never raises.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from typing import Any

from renkei.fhir.search.choices import instant_elements
from renkei.fhir.search.dates import DEFAULT_ZONE, date_range
from renkei.fhir.search.definitions import params_for, split_union
from renkei.fhir.search.fhirpath import Evaluator, Item, choice_keys, compile_path
from renkei.fhir.search.text import normalize as _normalize_text

log = logging.getLogger(__name__)

_normalize_cached = lru_cache(maxsize=16384)(_normalize_text)


def _normalize(text: str) -> str:
    """Short texts recur (name, phonetic, family, given; a clinic's patients share a city)
    and are cached; long ones are not, so the cache stays small."""
    return _normalize_cached(text) if len(text) <= 64 else _normalize_text(text)


Row = dict[str, Any]
Rows = dict[str, list[Row]]

#: Parameter types with an index table; composite and special are answered from these.
INDEXED_TYPES = ("string", "token", "reference", "date", "number", "quantity", "uri")
#: Answered from fhir_resource columns (res_id, last_updated), so never indexed.
NOT_INDEXED = frozenset({"_id", "_lastUpdated"})

_STR = 400
_URL = 1000
_ID = 64
_PARAM = 100
#: PostgreSQL refuses a B-tree entry over ~2700 bytes; two 400-character columns of 4-byte
#: characters in one index would pass that, so text is also capped in UTF-8 bytes.
_STR_BYTES = 1000
_URL_BYTES = 2000

_NAME_PARTS = ("family", "given", "prefix", "suffix", "line", "city", "district", "state")
_NAME_PARTS_2 = ("postalCode", "country", "text")
_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
_MIN_UTC = datetime.min.replace(tzinfo=UTC)
_MAX_UTC = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class _Plan:
    code: str
    type: str
    expression: str
    evaluate: Evaluator
    #: a date parameter on instant elements only: indexed as the exact point, low = high
    instant: bool = False
    #: the expression's union parts, each evaluated once per resource even when several
    #: parameters name it (Observation.code for code and combo-code), with its roots: the
    #: top-level keys it starts from (none present, nothing to find; None: always evaluated)
    parts: tuple[tuple[str, Evaluator, frozenset[str] | None], ...] = ()


#: FHIRPath that gives a value (false, true, a count) when the element is absent
_ANSWERS_WHEN_ABSENT = ("exists(", "empty(", "not(", "count(", "iif(", " and ", " or ", "=")
#: a where(...) filter (one level of nested calls: resolve()) only narrows what it is given
_WHERE = re.compile(r"where\((?:[^()]|\([^()]*\))*\)")
_ROOT = re.compile(r"\(*\s*([A-Za-z]+)\.([A-Za-z]+)")


def _root_keys(res_type: str, expression: str) -> frozenset[str] | None:
    """The top-level keys ``expression`` can read: a resource holds ~10 of the ~30
    elements its parameters name, and evaluating the others found nothing at ~2 µs each.

    >>> sorted(_root_keys("Observation", "(Observation.value as Quantity)"))[:3]
    ['_value', '_valueAddress', '_valueAge']
    >>> _root_keys("Observation", "%resource.code") is None
    True
    >>> _root_keys("Patient", "Patient.deceased.exists() and Patient.deceased != false") is None
    True
    """
    keys: set[str] = set()
    for part in split_union(expression):
        if any(op in _WHERE.sub("where()", part) for op in _ANSWERS_WHEN_ABSENT):
            return None  # Patient.deceased.exists() and ...: false for an absent element
        match = _ROOT.match(part.strip())
        if match is None or match.group(1) not in (res_type, "Resource", "DomainResource"):
            return None
        names = [match.group(2), *(key for key, _ in choice_keys(match.group(2)))]
        keys.update(names)
        keys.update("_" + name for name in names)  # a primitive's id and extensions
    return frozenset(keys)


def _parts(
    res_type: str, expression: str
) -> tuple[tuple[str, Evaluator, frozenset[str] | None], ...]:
    """The union parts of ``expression``, compiled; the whole expression as its one part
    when a part does not compile alone."""
    out = []
    for part in split_union(expression):
        part = part.strip()
        try:
            out.append((part, compile_path(part), _root_keys(res_type, part)))
        except Exception:
            return ((expression, compile_path(expression), _root_keys(res_type, expression)),)
    return tuple(out)


def _is_instant(expression: str) -> bool:
    instants = instant_elements()
    return all(part in instants for part in split_union(expression))


@cache
def plan_for(res_type: str) -> tuple[_Plan, ...]:
    """The parameters indexed for ``res_type``, their expressions compiled once."""
    out = []
    for code, d in sorted(params_for(res_type).items()):
        if d.type not in INDEXED_TYPES or d.expression is None or code in NOT_INDEXED:
            continue
        try:
            evaluator = compile_path(d.expression)
        except Exception:  # an expression neither evaluator reads: not indexable
            log.warning("search parameter %s.%s: cannot compile %r", res_type, code, d.expression)
            continue
        instant = d.type == "date" and _is_instant(d.expression)
        parts = _parts(res_type, d.expression)
        out.append(_Plan(code, d.type, d.expression, evaluator, instant, parts))
    return tuple(out)


def extract_rows(
    res_type: str, content: dict[str, Any], *, zone: tzinfo = DEFAULT_ZONE, pk: int = 0
) -> Rows:
    """Rows per index kind (``"string"``, ``"token"``...) for one resource.

    Each row carries ``resource_pk`` (= ``pk``), ``res_type`` and ``param``.

    >>> rows = extract_rows("Patient", {"resourceType": "Patient", "gender": "female",
    ...                                 "name": [{"family": "ヤマダ", "given": ["ハナコ"]}]})
    >>> [(r["param"], r["value_norm"]) for r in rows["string"] if r["param"] == "name"]
    [('name', 'やまだ'), ('name', 'はなこ')]
    >>> [(r["system"], r["code"]) for r in rows["token"] if r["param"] == "gender"]
    [(None, 'female')]
    """
    out: Rows = {kind: [] for kind in INDEXED_TYPES}
    if not isinstance(content, dict):
        return out
    seen: set[tuple[Any, ...]] = set()
    cache: dict[str, list[Item]] = {}
    for plan in plan_for(res_type):
        items: list[Item] = []
        for expression, evaluate, roots in plan.parts:
            if roots is None or not roots.isdisjoint(content):
                items += _evaluated(cache, res_type, plan.code, expression, evaluate, content)
        if not items:
            continue
        emit = _EMITTERS[plan.type]
        for item in items:
            try:
                for kind, row in emit(plan.code, item, zone):
                    if plan.instant and row.get("low") is not None:
                        row["high"] = row["low"]
                    key = (kind, *row.values())
                    if key in seen:
                        continue
                    seen.add(key)
                    row["resource_pk"] = pk
                    row["res_type"] = res_type
                    out[kind].append(row)
            except Exception:
                log.warning(
                    "indexing %s: value of %s skipped: %r",
                    res_type,
                    plan.code,
                    item.value,
                    exc_info=True,
                )
    return out


def _evaluated(
    cache: dict[str, list[Item]],
    res_type: str,
    code: str,
    expression: str,
    evaluate: Evaluator,
    content: dict[str, Any],
) -> list[Item]:
    items = cache.get(expression)
    if items is None:
        try:
            items = evaluate(content)
        except Exception:
            log.warning(
                "indexing %s: %s (%s) failed; skipped", res_type, code, expression, exc_info=True
            )
            items = []
        cache[expression] = items
    return items


# --- helpers ----------------------------------------------------------------------------


def _fit(text: str, chars: int = _STR, max_bytes: int = _STR_BYTES) -> str:
    """``text`` cut to ``chars`` characters and ``max_bytes`` UTF-8 bytes.

    >>> len(_fit("あ" * 500)), len(_fit("a" * 500))
    (333, 400)
    """
    text = text[:chars]
    if len(text) * 4 <= max_bytes:
        return text
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", "ignore")


def _s(value: Any, size: int = _STR) -> str | None:
    """A string column value, truncated to fit; None for anything that is not text."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        value = str(value)
    return _fit(value, size) if isinstance(value, str) else None


def _norm(value: Any) -> str | None:
    return _fit(_normalize(value[: _STR * 2])) if isinstance(value, str) and value else None


def _each(value: Any) -> Iterable[Any]:
    if isinstance(value, list):
        return value
    return () if value is None else (value,)


Emitted = Iterable[tuple[str, Row]]


# --- string -------------------------------------------------------------------------------


def _string_row(code: str, text: Any) -> tuple[str, Row] | None:
    if not isinstance(text, str) or not text.strip():
        return None
    return "string", {
        "param": code,
        "value_norm": _fit(_normalize(text[: _STR * 2])),
        "value_exact": _fit(text),
    }


def _emit_string(code: str, item: Item, zone: tzinfo) -> Emitted:
    value = item.value
    if isinstance(value, str):
        row = _string_row(code, value)
        return [row] if row else []
    if not isinstance(value, dict):
        return []
    out = []
    for key in (*_NAME_PARTS, *_NAME_PARTS_2):
        for part in _each(value.get(key)):
            row = _string_row(code, part)
            if row:
                out.append(row)
    if not out:  # another complex type: whatever plain text it has
        for key in ("display", "value", "name", "title"):
            row = _string_row(code, value.get(key))
            if row:
                out.append(row)
    return out


# --- token ----------------------------------------------------------------------------------


def _token(code: str, system: Any, value: Any, text: str | None = None) -> tuple[str, Row]:
    return "token", {"param": code, "system": _s(system), "code": _s(value), "text": text}


def _coding_rows(code: str, coding: Any, text: str | None) -> Emitted:
    if not isinstance(coding, dict):
        return []
    system, value = _s(coding.get("system")), _s(coding.get("code"))
    row_text = text if text is not None else _norm(coding.get("display"))
    if system is None and value is None and row_text is None:
        return []
    return [_token(code, system, value, row_text)]


def _identifier_rows(code: str, ident: dict[str, Any]) -> Emitted:
    system, value = ident.get("system"), ident.get("value")
    itype = ident.get("type")
    text = _norm(itype.get("text")) if isinstance(itype, dict) else None
    out = []
    if _s(system) is not None or _s(value) is not None:
        out.append(_token(code, system, value, text))
    if isinstance(itype, dict) and _s(value) is not None:
        for coding in _each(itype.get("coding")):
            if isinstance(coding, dict) and _s(coding.get("code")) is not None:
                out.append(
                    _token(
                        f"{code}:of-type"[:_PARAM],
                        coding.get("system"),
                        f"{coding['code']}|{value}",
                        text,
                    )
                )
    return out


def _is_identifier(item: Item) -> bool:
    value = item.value
    if item.type is not None:
        return item.type == "Identifier"
    if "value" not in value or "code" in value:
        return False
    if "type" in value or "assigner" in value:
        return True
    system = value.get("system")
    return not (isinstance(system, str) and system in _CONTACT_SYSTEMS)


def _emit_token(code: str, item: Item, zone: tzinfo) -> Emitted:
    value = item.value
    if isinstance(value, bool):
        return [_token(code, None, "true" if value else "false")]
    if isinstance(value, str | int | float):
        return [_token(code, None, value)] if _s(value) else []
    if not isinstance(value, dict):
        return []
    kind = item.type
    if kind == "CodeableConcept" or (kind is None and ("coding" in value or _only_text(value))):
        text = _norm(value.get("text"))
        codings = [c for c in _each(value.get("coding")) if isinstance(c, dict)]
        if not codings:
            return [_token(code, None, None, text)] if text else []
        return [row for c in codings for row in _coding_rows(code, c, text)]
    if kind == "ContactPoint" or (
        kind is None and "value" in value and not _is_identifier(item) and "code" not in value
    ):
        return [_token(code, None, value["value"])] if _s(value.get("value")) else []
    if kind == "Identifier" or (kind is None and _is_identifier(item)):
        return _identifier_rows(code, value)
    if kind == "Reference" or "reference" in value:
        ref = value.get("reference")
        return [_token(code, None, ref)] if _s(ref) else []
    # Coding, or a Quantity-like value with system and code
    return _coding_rows(code, value, None)


def _only_text(value: dict[str, Any]) -> bool:
    return "text" in value and not ({"system", "code", "value"} & value.keys())


# --- reference ------------------------------------------------------------------------------


def _split_reference(text: str) -> tuple[str | None, str | None, str | None]:
    """``(target_type, target_id, url)`` for a literal reference.

    >>> _split_reference("Patient/123/_history/2")
    ('Patient', '123', None)
    >>> _split_reference("https://x.example/fhir/Patient/123")
    ('Patient', '123', 'https://x.example/fhir/Patient/123')
    >>> _split_reference("urn:uuid:0b8f")
    (None, None, 'urn:uuid:0b8f')
    """
    absolute = "://" in text
    parts = text.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and (absolute or len(parts) == 2):
        rtype, rid = parts[-2], parts[-1]
        if rtype[:1].isupper() and rtype.isalnum() and rid:
            url = _fit(text, _URL, _URL_BYTES) if absolute else None
            return _fit(rtype, _ID), _fit(rid, _ID), url
    return None, None, _fit(text, _URL, _URL_BYTES)


def _emit_reference(code: str, item: Item, zone: tzinfo) -> Emitted:
    value = item.value
    if isinstance(value, str):  # canonical or uri: kept as written
        if not value:
            return []
        canonical = _fit(value, _URL, _URL_BYTES)
        return [
            ("reference", {"param": code, "target_type": None, "target_id": None, "url": canonical})
        ]
    if not isinstance(value, dict) or "resourceType" in value:
        return []
    out: list[tuple[str, Row]] = []
    ref = value.get("reference")
    if isinstance(ref, str) and ref and not ref.startswith("#"):
        rtype, rid, url = _split_reference(ref)
        out.append(
            ("reference", {"param": code, "target_type": rtype, "target_id": rid, "url": url})
        )
    ident = value.get("identifier")
    if isinstance(ident, dict) and (_s(ident.get("system")) or _s(ident.get("value"))):
        out.append(_token(f"{code}:identifier"[:_PARAM], ident.get("system"), ident.get("value")))
    return out


# --- date -------------------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01 in a zone east of UTC, or 9999-12-31 west of it
        return _MIN_UTC if value.year == 1 else _MAX_UTC


def _bounds(text: Any, zone: tzinfo) -> tuple[datetime, datetime] | None:
    if not isinstance(text, str):
        return None
    low, high = date_range(text, zone)
    return _utc(low), _utc(high)


def _date_row(code: str, low: datetime | None, high: datetime | None) -> tuple[str, Row]:
    return "date", {"param": code, "low": low, "high": high}


def _emit_date(code: str, item: Item, zone: tzinfo) -> Emitted:
    value = item.value
    if isinstance(value, str):
        bounds = _bounds(value, zone)
        if bounds is None:
            return []
        low, high = bounds
        if item.type == "instant":
            high = low
        return [_date_row(code, low, high)]
    if not isinstance(value, dict):
        return []
    if "start" in value or "end" in value:  # Period
        start = _bounds(value.get("start"), zone)
        end = _bounds(value.get("end"), zone)
        if start is None and end is None:
            return []
        return [_date_row(code, start[0] if start else None, end[1] if end else None)]
    if "event" in value or "repeat" in value:  # Timing
        return _timing_rows(code, value, zone)
    return []


def _timing_rows(code: str, timing: dict[str, Any], zone: tzinfo) -> Emitted:
    lows: list[datetime | None] = []
    highs: list[datetime | None] = []
    for event in _each(timing.get("event")):
        bounds = _bounds(event, zone)
        if bounds:
            lows.append(bounds[0])
            highs.append(bounds[1])
    repeat = timing.get("repeat")
    period = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
    if isinstance(period, dict):
        start = _bounds(period.get("start"), zone)
        end = _bounds(period.get("end"), zone)
        lows.append(start[0] if start else None)
        highs.append(end[1] if end else None)
    if not lows:
        return []
    low = None if None in lows else min(x for x in lows if x is not None)
    high = None if None in highs else max(x for x in highs if x is not None)
    return [_date_row(code, low, high)]


# --- number and quantity -----------------------------------------------------------------------


def _decimal_bounds(value: Any) -> tuple[Decimal, Decimal, Decimal] | None:
    """``(value, low, high)``: half a unit of the last written digit either side.

    >>> _decimal_bounds(100)
    (Decimal('100'), Decimal('99.5'), Decimal('100.5'))
    >>> _decimal_bounds(1.5)
    (Decimal('1.5'), Decimal('1.45'), Decimal('1.55'))
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)
    return number, number - half, number + half


def _emit_number(code: str, item: Item, zone: tzinfo) -> Emitted:
    value = item.value
    if isinstance(value, dict):
        value = value.get("value")
    bounds = _decimal_bounds(value)
    if bounds is None:
        return []
    number, low, high = bounds
    return [("number", {"param": code, "value": number, "low": low, "high": high})]


def _quantity_row(code: str, q: dict[str, Any]) -> tuple[str, Row] | None:
    bounds = _decimal_bounds(q.get("value"))
    if bounds is None:
        return None
    number, low, high = bounds
    system, unit_code = q.get("system"), q.get("code")
    if "currency" in q and unit_code is None:  # Money
        system, unit_code = "urn:iso:std:iso:4217", q.get("currency")
    return "quantity", {
        "param": code,
        "value": number,
        "low": low,
        "high": high,
        "system": _s(system),
        "code": _s(unit_code),
        "unit": _s(q.get("unit")),
    }


def _emit_quantity(code: str, item: Item, zone: tzinfo) -> Emitted:
    value = item.value
    if not isinstance(value, dict):
        return []
    if "value" in value:
        row = _quantity_row(code, value)
        return [row] if row else []
    if "low" in value or "high" in value:  # Range: value NULL, the range as low/high
        low_q, high_q = value.get("low"), value.get("high")
        low = _decimal_bounds(low_q.get("value")) if isinstance(low_q, dict) else None
        high = _decimal_bounds(high_q.get("value")) if isinstance(high_q, dict) else None
        if low is None and high is None:
            return []
        unit_q = low_q if low is not None else high_q
        assert isinstance(unit_q, dict)
        return [
            (
                "quantity",
                {
                    "param": code,
                    "value": None,
                    "low": low[0] if low else None,
                    "high": high[0] if high else None,
                    "system": _s(unit_q.get("system")),
                    "code": _s(unit_q.get("code")),
                    "unit": _s(unit_q.get("unit")),
                },
            )
        ]
    return []


# --- uri ----------------------------------------------------------------------------------------


def _emit_uri(code: str, item: Item, zone: tzinfo) -> Emitted:
    value = item.value
    if isinstance(value, str) and value:
        return [("uri", {"param": code, "value": _fit(value, _URL, _URL_BYTES)})]
    return []


_EMITTERS: dict[str, Callable[[str, Item, tzinfo], Emitted]] = {
    "string": _emit_string,
    "token": _emit_token,
    "reference": _emit_reference,
    "date": _emit_date,
    "number": _emit_number,
    "quantity": _emit_quantity,
    "uri": _emit_uri,
}

__all__ = ["INDEXED_TYPES", "NOT_INDEXED", "Rows", "extract_rows", "plan_for"]
