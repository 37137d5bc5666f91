"""Japanese XHTML narrative for each summary section (Composition.section.text).

Everything taken from a resource is escaped; the output is a single ``<div>`` in the XHTML
namespace as FHIR narrative requires (https://hl7.org/fhir/R4/narrative.html).
"""

from __future__ import annotations

from html import escape
from typing import Any

from renkei.summary import display as d

XHTML_NS = "http://www.w3.org/1999/xhtml"


def _line(resource: dict[str, Any]) -> str:
    kind = resource.get("resourceType")
    if kind == "Condition":
        onset = d.when_text(resource.get("onsetDateTime"))
        return d.codeable_text(resource.get("code")) + (f"（発症 {onset}）" if onset else "")
    if kind == "AllergyIntolerance":
        what = d.codeable_text(resource.get("code"))
        crit = {"high": "重篤", "low": "軽度"}.get(str(resource.get("criticality")), "")
        reactions = [
            d.codeable_text(m)
            for r in resource.get("reaction") or []
            for m in r.get("manifestation") or []
        ]
        extra = "、".join(x for x in [crit, *reactions] if x)
        return what + (f"（{extra}）" if extra else "")
    if kind in ("MedicationRequest", "MedicationStatement"):
        med = d.codeable_text(resource.get("medicationCodeableConcept")) or str(
            (resource.get("medicationReference") or {}).get("display", "")
        )
        dosage = resource.get("dosageInstruction") or resource.get("dosage") or []
        how = "；".join(str(x.get("text")) for x in dosage if x.get("text"))
        return med + (f" — {how}" if how else "")
    if kind == "Observation":
        when = d.when_text(resource.get("effectiveDateTime") or resource.get("issued"))
        value = d.observation_value(resource)
        return f"{d.codeable_text(resource.get('code'))}: {value}" + (f"（{when}）" if when else "")
    if kind == "Consent":
        provisions = (resource.get("provision") or {}).get("code") or []
        wishes = "、".join(d.codeable_text(c) for c in provisions if d.codeable_text(c))
        when = d.when_text(resource.get("dateTime"))
        text = wishes or d.codeable_text((resource.get("category") or [{}])[0])
        return text + (f"（{when} 確認）" if when else "")
    if kind == "RelatedPerson":
        rel = "、".join(d.codeable_text(r) for r in resource.get("relationship") or [])
        phone = d.telecom_text(resource.get("telecom"))
        return f"{d.person_name(resource.get('name'))}（{rel}）{phone}".strip()
    if kind == "CareTeam":
        return str(resource.get("name") or "ケアチーム")
    if kind == "Organization":
        phone = d.telecom_text(resource.get("telecom"))
        return f"{resource.get('name', '')} {phone}".strip()
    if kind in ("Practitioner", "PractitionerRole"):
        return d.person_name(resource.get("name")) or d.codeable_text(
            (resource.get("code") or [{}])[0]
        )
    if kind == "Communication":
        when = d.when_text(resource.get("sent"))
        texts = [str(p.get("contentString")) for p in resource.get("payload") or []]
        return f"{when} {' '.join(t for t in texts if t and t != 'None')}".strip()
    return f"{kind}/{resource.get('id', '')}"


def section_narrative(title: str, resources: list[dict[str, Any]]) -> dict[str, str]:
    """The ``Narrative`` of one section.

    >>> section_narrative("傷病名", [])["div"]
    '<div xmlns="http://www.w3.org/1999/xhtml"><p>記載なし</p></div>'
    """
    if not resources:
        body = "<p>記載なし</p>"
    else:
        items = "".join(f"<li>{escape(_line(r))}</li>" for r in resources)
        body = f"<ul>{items}</ul>"
    return {"status": "generated", "div": f'<div xmlns="{XHTML_NS}">{body}</div>'}


def patient_heading(patient: dict[str, Any]) -> str:
    gender = {"female": "女", "male": "男"}.get(str(patient.get("gender")), "")
    born = str(patient.get("birthDate", ""))
    parts = [d.person_name(patient.get("name")), f"{born}生" if born else "", gender]
    return "　".join(p for p in parts if p)
