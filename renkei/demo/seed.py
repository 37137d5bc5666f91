"""Seed the demo network through the FHIR engine (so it is validated and indexed).

Idempotent: every resource is created with ``ifNoneExist`` on its identifier.
"""

from __future__ import annotations

import random
from typing import Any

from renkei.config import Settings
from renkei.demo.generate import IDE, INSTITUTION_NO_SYSTEM, patient
from renkei.fhir.context import FhirRequest, RequestContext

DEMO_SEED = 20260401

#: (name, kind, 10-digit institution number)
ORGANIZATIONS = [
    ("さくら在宅クリニック", "clinic", "1310000001"),
    ("ひまわり内科クリニック", "clinic", "1310000002"),
    ("けやき診療所", "clinic", "1310000003"),
    ("みどり在宅医療クリニック", "clinic", "1310000004"),
    ("あおば訪問看護ステーション", "nursing", "1320000001"),
    ("つばさ薬局", "pharmacy", "1330000001"),
    ("グループホームなごみ", "facility", "1340000001"),
    ("中央総合病院", "hospital", "1350000001"),
]
KIND_SYSTEM = "https://renkei.example.jp/fhir/CodeSystem/organization-kind"
#: demo staff numbers (職員番号) of the rotation group's doctors
STAFF_SYSTEM = "https://renkei.example.jp/fhir/sid/demo-staff"
ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/practitioner-role"


def doctor_entries() -> list[dict[str, Any]]:
    """Practitioner + PractitionerRole of the 6 doctors of the demo rotation group."""
    from renkei.roster.demo import DEMO_DOCTORS

    entries = []
    for n, (family, given, kana, clinic) in enumerate(DEMO_DOCTORS, 1):
        staff = f"demo-dr-{n}"
        clinic_no = ORGANIZATIONS[clinic][2]
        kana_family, kana_given = kana.split(" ")
        entries.append(
            {
                "fullUrl": f"urn:uuid:pract-{staff}",
                "resource": {
                    "resourceType": "Practitioner",
                    "identifier": [{"system": STAFF_SYSTEM, "value": staff}],
                    "active": True,
                    "name": [
                        {"extension": [{"url": IDE, "valueCode": "IDE"}],
                         "text": f"{family} {given}", "family": family, "given": [given]},
                        {"extension": [{"url": IDE, "valueCode": "SYL"}], "text": kana,
                         "family": kana_family, "given": [kana_given]},
                    ],
                },
                "request": {"method": "POST", "url": "Practitioner",
                            "ifNoneExist": f"identifier={STAFF_SYSTEM}|{staff}"},
            }
        )  # fmt: skip
        entries.append(
            {
                "resource": {
                    "resourceType": "PractitionerRole",
                    "identifier": [{"system": STAFF_SYSTEM, "value": f"{staff}-role"}],
                    "active": True,
                    "practitioner": {"reference": f"urn:uuid:pract-{staff}"},
                    "organization": {"reference": f"urn:uuid:org-{clinic_no}"},
                    "code": [{"coding": [{"system": ROLE_SYSTEM, "code": "doctor"}]}],
                },
                "request": {"method": "POST", "url": "PractitionerRole",
                            "ifNoneExist": f"identifier={STAFF_SYSTEM}|{staff}-role"},
            }
        )  # fmt: skip
    return entries


def organization(name: str, kind: str, number: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": INSTITUTION_NO_SYSTEM, "value": number}],
        "active": True,
        "type": [{"coding": [{"system": KIND_SYSTEM, "code": kind}]}],
        "name": name,
        "address": [{"state": "東京都", "country": "JP"}],
    }


def demo_bundle(patient_count: int = 20) -> dict[str, Any]:
    entries = []
    for name, kind, number in ORGANIZATIONS:
        entries.append(
            {
                "fullUrl": f"urn:uuid:org-{number}",
                "resource": organization(name, kind, number),
                "request": {
                    "method": "POST",
                    "url": "Organization",
                    "ifNoneExist": f"identifier={INSTITUTION_NO_SYSTEM}|{number}",
                },
            }
        )
    entries.extend(doctor_entries())
    rng = random.Random(DEMO_SEED)
    for n in range(1, patient_count + 1):
        clinic = ORGANIZATIONS[(n - 1) % 4]
        body = patient(rng, n, clinic[2])
        body["managingOrganization"] = {"reference": f"urn:uuid:org-{clinic[2]}"}
        ident = body["identifier"][0]
        entries.append(
            {
                "resource": body,
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={ident['system']}|{ident['value']}",
                },
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _seed_roster(services: Any, session: Any) -> dict[str, Any]:
    """The rotation group of the four demo clinics and their six doctors (idempotent)."""
    from renkei.roster.demo import DEMO_DOCTORS, seed_demo_roster
    from renkei.roster.service import fhir_search

    search = fhir_search(services.engine, session)

    def one(res_type: str, system: str, value: str) -> str:
        (res_id,) = search(res_type, [("identifier", f"{system}|{value}")])
        return f"{res_type}/{res_id}"

    clinics = [one("Organization", INSTITUTION_NO_SYSTEM, o[2]) for o in ORGANIZATIONS[:4]]
    doctors = [
        one("PractitionerRole", STAFF_SYSTEM, f"demo-dr-{n}-role")
        for n in range(1, len(DEMO_DOCTORS) + 1)
    ]
    return seed_demo_roster(
        session,
        services.clock,
        clinics=clinics,
        doctors=doctors,
        repository=services.engine.repository(session),
    )


def seed_demo(settings: Settings) -> dict[str, Any]:
    from renkei.app import build_services

    services = build_services(settings)
    try:
        with services.db.session(write=True) as session:
            resp = services.engine.dispatch(
                session,
                FhirRequest("POST", "", body=demo_bundle(), context=RequestContext()),
            )
            roster = _seed_roster(services, session)
        statuses = [e["response"]["status"] for e in (resp.body or {}).get("entry", [])]
        return {
            "ok": True,
            "created": sum(s.startswith("201") for s in statuses),
            "existing": sum(s.startswith("200") for s in statuses),
            "roster": roster,
        }
    finally:
        services.db.dispose()
