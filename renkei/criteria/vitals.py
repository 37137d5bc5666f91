"""Reading vital signs out of Observations (JP Core vital signs use LOINC codes).

A visiting nurse's app may send a blood-pressure panel with components, or single
Observations; consciousness may come as JCS (Japan Coma Scale, 日本式昏睡尺度) or ACVPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from renkei.fhir.capability import RENKEI_CODESYSTEM
from renkei.fhir.timeparse import parse_instant

LOINC = "http://loinc.org"

#: vital name -> LOINC codes that carry it
CODES: dict[str, frozenset[str]] = {
    "temperature": frozenset({"8310-5", "8331-1", "8332-9"}),
    "spo2": frozenset({"2708-6", "59408-5", "59417-6"}),
    "respiratory_rate": frozenset({"9279-1"}),
    "pulse": frozenset({"8867-4", "8889-8"}),
    "systolic": frozenset({"8480-6"}),
    "diastolic": frozenset({"8462-4"}),
    "avpu": frozenset({"80288-4", "67775-7"}),
}
#: JCS is carried with the project's own code (value: 0, 1, 2, 3, 10, 20, 30, 100, 200, 300)
JCS = (RENKEI_CODESYSTEM, "jcs")
SUPPLEMENTAL_O2 = (RENKEI_CODESYSTEM, "supplemental-oxygen")


@dataclass(frozen=True)
class Reading:
    #: temperature, spo2, respiratory_rate, pulse, systolic, diastolic, consciousness, oxygen
    vital: str
    value: float
    at: datetime | None


def _codes(cc: Any) -> list[tuple[str | None, str | None]]:
    if not isinstance(cc, dict):
        return []
    return [(c.get("system"), c.get("code")) for c in cc.get("coding") or []]


def _vital_for(cc: Any) -> str | None:
    for system, code in _codes(cc):
        if (system, code) == JCS:
            return "jcs"
        if (system, code) == SUPPLEMENTAL_O2:
            return "oxygen"
        if system == LOINC and code:
            for vital, codes in CODES.items():
                if code in codes:
                    return vital
    return None


def _number(holder: dict[str, Any]) -> float | None:
    q = holder.get("valueQuantity")
    if isinstance(q, dict) and isinstance(q.get("value"), int | float):
        return float(q["value"])
    for key in ("valueInteger", "valueDecimal"):
        if isinstance(holder.get(key), int | float):
            return float(holder[key])
    if isinstance(holder.get("valueBoolean"), bool):
        return 1.0 if holder["valueBoolean"] else 0.0
    return None


def _avpu_alert(holder: dict[str, Any]) -> float | None:
    """ACVPU as 0 (alert) or 1 (confusion, voice, pain, unresponsive)."""
    for _system, code in _codes(holder.get("valueCodeableConcept")):
        if code is None:
            continue
        return 0.0 if code.lower() in ("a", "alert", "248234008") else 1.0
    return None


def readings(obs: dict[str, Any]) -> list[Reading]:
    """Every vital sign reading an Observation carries (panel components included).

    >>> [r.vital for r in readings({"resourceType": "Observation", "code": {"coding": [
    ...     {"system": "http://loinc.org", "code": "8310-5"}]}, "valueQuantity": {"value": 38.6}})]
    ['temperature']
    """
    if obs.get("status") in ("entered-in-error", "cancelled"):
        return []
    at_raw = obs.get("effectiveDateTime") or obs.get("issued")
    try:
        at = parse_instant(at_raw) if isinstance(at_raw, str) else None
    except ValueError:
        at = None
    out = []
    holders = [obs, *(c for c in obs.get("component") or [] if isinstance(c, dict))]
    for holder in holders:
        vital = _vital_for(holder.get("code"))
        if vital is None:
            continue
        if vital == "avpu":
            value = _avpu_alert(holder)
            vital = "consciousness"
        elif vital == "jcs":
            raw = _number(holder)
            value = None if raw is None else (0.0 if raw == 0 else 1.0)
            vital = "consciousness"
        else:
            value = _number(holder)
        if value is not None:
            out.append(Reading(vital, value, at))
    return out
