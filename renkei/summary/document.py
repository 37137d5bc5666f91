"""Assemble the patient summary as a FHIR document Bundle (Composition first).

https://hl7.org/fhir/R4/documents.html: a ``document`` Bundle whose first entry is the
Composition, followed by every resource it references, each with a fullUrl.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any

from renkei.summary.narrative import XHTML_NS, patient_heading, section_narrative
from renkei.summary.sections import LOINC, SectionSpec

#: LOINC "Patient summary Document"
SUMMARY_TYPE = "60591-5"


@dataclass
class SectionContent:
    spec: SectionSpec
    resources: list[dict[str, Any]] = field(default_factory=list)
    #: the caller's role may not see this section: it is listed as withheld, with no entries
    withheld: bool = False
    #: extra lines (e.g. the rotation group's after-hours contact) shown in the narrative
    notes: list[str] = field(default_factory=list)


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def build_summary(
    base_url: str,
    patient: dict[str, Any],
    sections: list[SectionContent],
    *,
    now: datetime,
    author: str | None = None,
) -> dict[str, Any]:
    """The document Bundle; pure, so it is tested without a server."""
    stamp = now.isoformat(timespec="seconds")
    comp_sections = []
    included: dict[str, dict[str, Any]] = {_ref(patient): patient}
    for content in sections:
        spec = content.spec
        section: dict[str, Any] = {
            "title": spec.title_ja,
            "code": {"coding": [{"system": LOINC, "code": spec.loinc, "display": spec.title_en}]},
        }
        if content.withheld:
            section["text"] = {
                "status": "generated",
                "div": f'<div xmlns="{XHTML_NS}"><p>この職種には表示されません</p></div>',
            }
            section["emptyReason"] = {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                        "code": "withheld",
                    }
                ]
            }
        else:
            section["text"] = section_narrative(spec.title_ja, content.resources)
            if content.notes:
                notes = "".join(f"<p>{escape(n)}</p>" for n in content.notes)
                section["text"]["div"] = section["text"]["div"][:-6] + notes + "</div>"
            if content.resources:
                section["entry"] = [{"reference": _ref(r)} for r in content.resources]
                for r in content.resources:
                    included.setdefault(_ref(r), r)
            else:
                section["emptyReason"] = {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                            "code": "nilknown",
                        }
                    ]
                }
        comp_sections.append(section)
    heading = patient_heading(patient)
    composition: dict[str, Any] = {
        "resourceType": "Composition",
        "id": str(uuid.uuid4()),
        "status": "final",
        "type": {"coding": [{"system": LOINC, "code": SUMMARY_TYPE}]},
        "subject": {"reference": _ref(patient)},
        "date": stamp,
        "author": [{"reference": author}] if author else [{"display": "renkei"}],
        "title": f"患者サマリー　{heading}",
        "text": {
            "status": "generated",
            "div": f'<div xmlns="{XHTML_NS}"><h1>患者サマリー</h1><p>{escape(heading)}</p></div>',
        },
        "section": comp_sections,
    }
    entries = [{"fullUrl": f"urn:uuid:{composition['id']}", "resource": composition}]
    entries += [{"fullUrl": f"{base_url}/{ref}", "resource": res} for ref, res in included.items()]
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document",
        "timestamp": stamp,
        "entry": entries,
    }
