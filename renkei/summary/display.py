"""Human-readable Japanese text from FHIR data types, for narratives and the print view."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

JST = ZoneInfo("Asia/Tokyo")
_REPRESENTATION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"


def codeable_text(cc: Any) -> str:
    """``CodeableConcept`` → its text, else the first display, else the first code.

    >>> codeable_text({"coding": [{"code": "8310-5", "display": "体温"}]})
    '体温'
    """
    if not isinstance(cc, dict):
        return ""
    if cc.get("text"):
        return str(cc["text"])
    for coding in cc.get("coding") or []:
        if coding.get("display"):
            return str(coding["display"])
    for coding in cc.get("coding") or []:
        if coding.get("code"):
            return str(coding["code"])
    return ""


def _representation(name: dict[str, Any]) -> str | None:
    for ext in name.get("extension") or []:
        if ext.get("url") == _REPRESENTATION:
            return str(ext.get("valueCode"))
    return None


def _name_text(name: dict[str, Any]) -> str:
    if name.get("text"):
        return str(name["text"])
    parts = [name.get("family", ""), *(name.get("given") or [])]
    return " ".join(p for p in parts if p)


def person_name(names: Any) -> str:
    """JP Core names: kanji (IDE) first, kana (SYL) in brackets.

    >>> person_name([{"family": "山田", "given": ["花子"]}])
    '山田 花子'
    """
    if not isinstance(names, list) or not names:
        return ""
    kanji = next((n for n in names if _representation(n) == "IDE"), None)
    kana = next((n for n in names if _representation(n) == "SYL"), None)
    main = kanji or next((n for n in names if _representation(n) is None), names[0])
    text = _name_text(main)
    if kana is not None and kana is not main:
        text += f"（{_name_text(kana)}）"
    return text


def quantity_text(q: Any) -> str:
    """A Quantity as value and unit.

    >>> quantity_text({"value": 37.8, "unit": "℃"})
    '37.8 ℃'
    """
    if not isinstance(q, dict) or q.get("value") is None:
        return ""
    unit = q.get("unit") or q.get("code") or ""
    return f"{q['value']} {unit}".strip()


def when_text(value: Any) -> str:
    """A FHIR date/dateTime shown in Japan time, to the minute.

    >>> when_text("2026-04-01T00:30:00Z")
    '2026-04-01 09:30'
    >>> when_text("1938-05-01")
    '1938-05-01'
    """
    if not isinstance(value, str) or not value:
        return ""
    if "T" not in value:
        return value
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=JST)
    return parsed.astimezone(JST).strftime("%Y-%m-%d %H:%M")


def observation_value(obs: dict[str, Any]) -> str:
    if "valueQuantity" in obs:
        return quantity_text(obs["valueQuantity"])
    if "valueCodeableConcept" in obs:
        return codeable_text(obs["valueCodeableConcept"])
    for key in ("valueString", "valueInteger", "valueBoolean"):
        if key in obs:
            return str(obs[key])
    parts = []
    for comp in obs.get("component") or []:
        value = quantity_text(comp.get("valueQuantity")) or codeable_text(
            comp.get("valueCodeableConcept")
        )
        if value:
            parts.append(f"{codeable_text(comp.get('code'))} {value}")
    return " / ".join(parts)


def telecom_text(telecoms: Any) -> str:
    if not isinstance(telecoms, list):
        return ""
    return "、".join(str(t.get("value")) for t in telecoms if t.get("value"))
