"""Seed the demo network through the FHIR engine (so it is validated and indexed).

Idempotent: every resource is created with ``ifNoneExist`` on its identifier.
"""

from __future__ import annotations

import random
from typing import Any

from renkei.auth.principal import OPERATOR
from renkei.config import Settings
from renkei.demo.generate import INSTITUTION_NO_SYSTEM, patient
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


def seed_demo(settings: Settings) -> dict[str, Any]:
    from renkei.app import build_services

    services = build_services(settings)
    try:
        with services.db.session(write=True) as session:
            resp = services.engine.dispatch(
                session,
                FhirRequest(
                    "POST", "", body=demo_bundle(), context=RequestContext(principal=OPERATOR)
                ),
            )
        statuses = [e["response"]["status"] for e in (resp.body or {}).get("entry", [])]
        return {
            "ok": True,
            "created": sum(s.startswith("201") for s in statuses),
            "existing": sum(s.startswith("200") for s in statuses),
        }
    finally:
        services.db.dispose()
