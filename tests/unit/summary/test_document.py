"""The summary document is a valid FHIR document with Japanese XHTML narrative."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from fhir.resources.R4B.bundle import Bundle

from renkei.summary import SECTIONS, SectionContent, build_summary

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "name": [
        {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation",
                    "valueCode": "IDE",
                }
            ],
            "family": "山田",
            "given": ["花子"],
        },
        {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation",
                    "valueCode": "SYL",
                }
            ],
            "family": "ヤマダ",
            "given": ["ハナコ"],
        },
    ],
    "gender": "female",
    "birthDate": "1938-05-01",
}
CONDITION = {
    "resourceType": "Condition",
    "id": "c1",
    "subject": {"reference": "Patient/p1"},
    "code": {"text": "心不全 <慢性>"},
    "onsetDateTime": "2024-01-10",
}
TEMPERATURE = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "subject": {"reference": "Patient/p1"},
    "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5", "display": "体温"}]},
    "effectiveDateTime": "2026-04-01T00:30:00Z",
    "valueQuantity": {"value": 38.6, "unit": "℃"},
}
NOW = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)


def _section(key: str) -> SectionContent:
    return SectionContent(next(s for s in SECTIONS if s.key == key))


def _build() -> dict:
    problems, vitals, results = _section("problems"), _section("vitals"), _section("results")
    problems.resources.append(CONDITION)
    vitals.resources.append(TEMPERATURE)
    results.withheld = True
    contacts = _section("care-team")
    contacts.notes.append("夜間・休日の連絡先: 当番医 03-0000-0000")
    return build_summary("http://x/fhir", PATIENT, [problems, vitals, results, contacts], now=NOW)


def test_build_summary_is_a_valid_document_bundle() -> None:
    bundle = _build()
    Bundle.model_validate(bundle)
    assert bundle["type"] == "document"
    composition = bundle["entry"][0]["resource"]
    assert composition["resourceType"] == "Composition"
    assert composition["subject"] == {"reference": "Patient/p1"}
    refs = {e["fullUrl"] for e in bundle["entry"][1:]}
    assert refs == {
        "http://x/fhir/Patient/p1",
        "http://x/fhir/Condition/c1",
        "http://x/fhir/Observation/o1",
    }


def test_build_summary_narrative_is_japanese_valid_xhtml() -> None:
    composition = _build()["entry"][0]["resource"]
    assert "山田 花子（ヤマダ ハナコ）" in composition["title"]
    for section in composition["section"]:
        root = ET.fromstring(section["text"]["div"])  # raises if not well-formed
        assert root.tag == "{http://www.w3.org/1999/xhtml}div"
    problems, vitals, results, team = composition["section"]
    assert "心不全 &lt;慢性&gt;（発症 2024-01-10）" in problems["text"]["div"]
    assert "体温: 38.6 ℃（2026-04-01 09:30）" in vitals["text"]["div"]
    assert results["emptyReason"]["coding"][0]["code"] == "withheld"
    assert "entry" not in results
    assert "当番医 03-0000-0000" in team["text"]["div"]
    assert team["emptyReason"]["coding"][0]["code"] == "nilknown"
