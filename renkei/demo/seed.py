"""Seed the demo network through the FHIR engine (so it is validated, indexed, audited).

A region (二次医療圏) in miniature: four home-care clinics in one rotation group, two
visiting-nurse stations, two pharmacies, three care facilities and a back-up hospital,
200 patients with plausible histories. Idempotent: organisations and patients are found by
identifier before anything is created, so running it twice changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from renkei.config import Settings
from renkei.demo.clinical import patient_entries
from renkei.demo.generate import INSTITUTION_NO_SYSTEM, patient
from renkei.fhir.context import FhirRequest, RequestContext
from renkei.fhir.outcome import OutcomeError

DEMO_SEED = 20260401
PATIENTS = 200

#: (name, kind, 10-digit institution number)
ORGANIZATIONS = [
    ("さくら在宅クリニック", "clinic", "1310000001"),
    ("ひまわり内科クリニック", "clinic", "1310000002"),
    ("けやき診療所", "clinic", "1310000003"),
    ("みどり在宅医療クリニック", "clinic", "1310000004"),
    ("あおば訪問看護ステーション", "nursing", "1320000001"),
    ("こもれび訪問看護ステーション", "nursing", "1320000002"),
    ("つばさ薬局", "pharmacy", "1330000001"),
    ("すずらん調剤薬局", "pharmacy", "1330000002"),
    ("グループホームなごみ", "facility", "1340000001"),
    ("特別養護老人ホームやすらぎ苑", "facility", "1340000002"),
    ("介護付き有料老人ホームひだまり", "facility", "1340000003"),
    ("中央総合病院", "hospital", "1350000001"),
]
KIND_SYSTEM = "https://renkei.example.jp/fhir/CodeSystem/organization-kind"


@dataclass
class DemoNetwork:
    """Ids of what the seed made or found, for the steps other packages add."""

    organizations: dict[str, str] = field(default_factory=dict)  # institution no -> id
    patients: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[str]:
        return [self.organizations[no] for _, k, no in ORGANIZATIONS if k == kind]


#: Further seed steps (roster group, users...) registered by other packages.
DemoStep = Callable[[Any, Session, DemoNetwork], dict[str, Any]]
DEMO_STEPS: list[DemoStep] = []


def organization(name: str, kind: str, number: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": INSTITUTION_NO_SYSTEM, "value": number}],
        "active": True,
        "type": [{"coding": [{"system": KIND_SYSTEM, "code": kind}]}],
        "name": name,
        "telecom": [{"system": "phone", "value": f"03-5{number[-6:-3]}-{number[-4:]}"}],
        "address": [{"state": "東京都", "country": "JP"}],
    }


def _transaction(services: Any, session: Session, entries: list[dict[str, Any]]) -> list[Any]:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    resp = services.engine.dispatch(
        session, FhirRequest("POST", "", body=bundle, context=RequestContext())
    )
    if resp.status >= 400:
        raise OutcomeError(resp.status, resp.body, "demo seed: ")
    return [e["response"] for e in (resp.body or {}).get("entry", [])]


def _id_of(location: str) -> str:
    # ".../Organization/<id>/_history/1" -> "<id>"
    parts = location.split("/")
    return parts[parts.index("_history") - 1] if "_history" in parts else parts[-1]


def seed_network(
    services: Any, session: Session, *, patients: int = PATIENTS
) -> tuple[DemoNetwork, int]:
    net = DemoNetwork()
    created = 0
    org_entries: list[dict[str, Any]] = [
        {
            "resource": organization(name, kind, number),
            "request": {
                "method": "POST",
                "url": "Organization",
                "ifNoneExist": f"identifier={INSTITUTION_NO_SYSTEM}|{number}",
            },
        }
        for name, kind, number in ORGANIZATIONS
    ]
    for (_, _, number), response in zip(
        ORGANIZATIONS, _transaction(services, session, org_entries), strict=True
    ):
        net.organizations[number] = _id_of(response["location"])
        created += response["status"].startswith("201")
    nursing, pharmacies, facilities = (
        net.of_kind("nursing"),
        net.of_kind("pharmacy"),
        net.of_kind("facility"),
    )
    rng = random.Random(DEMO_SEED)
    now = services.clock.now()
    ctx = RequestContext()
    for n in range(1, patients + 1):
        clinic_no = ORGANIZATIONS[(n - 1) % 4][2]
        body = patient(rng, n, clinic_no)
        ident = body["identifier"][0]
        found = services.engine._match(
            session, ctx, "Patient", f"identifier={ident['system']}|{ident['value']}"
        )
        if found:
            net.patients.append(found[0].res_id)
            continue
        clinic = f"Organization/{net.organizations[clinic_no]}"
        team = [f"Organization/{nursing[n % 2]}", f"Organization/{pharmacies[n % 2]}"]
        if n % 3 == 0:
            team.append(f"Organization/{facilities[n % 3]}")
        body["managingOrganization"] = {"reference": clinic}
        key = f"{n:04d}"
        entries: list[dict[str, Any]] = [
            {
                "fullUrl": f"urn:uuid:patient-{key}",
                "resource": body,
                "request": {"method": "POST", "url": "Patient"},
            },
            *patient_entries(rng, key, body, clinic=clinic, team=team, now=now),
        ]
        responses = _transaction(services, session, entries)
        net.patients.append(_id_of(responses[0]["location"]))
        created += len(responses)
    return net, created


def seed_demo(settings: Settings, *, patients: int = PATIENTS) -> dict[str, Any]:
    from renkei.app import build_services

    services = build_services(settings)
    try:
        with services.db.session(write=True) as session:
            net, created = seed_network(services, session, patients=patients)
            extra: dict[str, Any] = {}
            for step in DEMO_STEPS:
                extra.update(step(services, session, net))
        return {
            "ok": True,
            "created": created,
            "organizations": len(net.organizations),
            "patients": len(net.patients),
            **extra,
        }
    finally:
        services.db.dispose()


def _roster_step(services: Any, session: Session, net: DemoNetwork) -> dict[str, Any]:
    """The rotation group of the four clinics, with six doctors (renkei.roster.demo)."""
    from renkei.roster.demo import demo_step

    return demo_step(services, session, net.of_kind("clinic"))


DEMO_STEPS.append(_roster_step)
