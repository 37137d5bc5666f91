"""A care network to test sharing against, and a test-only way to pick the caller.

``X-Test-User: <name>`` selects one of :data:`USERS` through the ``services.authenticate``
seam (no header: no principal, i.e. the operator with no restriction, used for set-up).
This stands in for bearer tokens until auth-identity's OAuth server is merged; the
fixtures then switch to real tokens and nothing else in the tests changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from renkei.app import build_services, create_app
from renkei.auth.principal import OPERATOR, Principal
from renkei.clock import ManualClock
from renkei.config import Settings

FHIR_JSON = "application/fhir+json"
ORGS = ("org-a", "org-b", "org-c")
ROLES = ("doctor", "nurse", "pharmacist", "careworker", "caremanager", "coordinator", "admin")


def user(org: str, role: str) -> str:
    return f"{org}-{role}"


USERS: dict[str, Principal] = {
    user(org, role): Principal(
        subject=user(org, role),
        kind="user",
        organization_id=org,
        role=role,
        practitioner_id=f"pr-{org}-{role}",
        practitioner_role_id=f"role-{org}-{role}",
        scopes=frozenset({"user/*.cruds"}),
    )
    for org in ORGS
    for role in ROLES
}
USERS["org-c-ehr"] = Principal(
    subject="ehr-client-c",
    kind="client",
    organization_id="org-c",
    client_id="ehr-client-c",
    scopes=frozenset({"system/*.cruds"}),
)


#: the local operator (renkei demo, admin commands, workers) and an operator of one org
USERS["operator"] = OPERATOR
USERS["org-c-operator"] = Principal(
    subject="op-c", kind="operator", organization_id="org-c", scopes=OPERATOR.scopes
)


async def header_authenticator(request: Request) -> Principal | None:
    name = request.headers.get("x-test-user")
    if name is None:
        return OPERATOR  # set-up steps act as the local operator
    return USERS[name]


@pytest.fixture
def net_client(settings: Settings, clock: ManualClock) -> Iterator[TestClient]:
    """The real default services (sharing policy inside the scope policy), test callers."""
    sharing_services = build_services(settings, clock=clock)
    sharing_services.authenticate = header_authenticator
    app = create_app(settings, services=sharing_services)
    with TestClient(app, base_url="http://testserver") as c:
        yield c
    sharing_services.db.dispose()


def as_user(name: str | None, **extra: str) -> dict[str, str]:
    headers = {"Content-Type": FHIR_JSON, **extra}
    if name is not None:
        headers["X-Test-User"] = name
    return headers


def put(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    resp = client.put(
        f"/fhir/{body['resourceType']}/{body['id']}", json=body, headers=as_user(None)
    )
    assert resp.status_code in (200, 201), resp.text
    result: dict[str, Any] = resp.json()
    return result


def patient(pid: str, owner: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11310000001", "value": pid}],
        "name": [{"family": "山田", "given": ["花子"]}],
        "managingOrganization": {"reference": f"Organization/{owner}"},
    }


def careteam(
    ct_id: str, pid: str, *members: str, status: str = "active", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "CareTeam",
        "id": ct_id,
        "status": status,
        "subject": {"reference": f"Patient/{pid}"},
        "participant": [{"member": {"reference": m}} for m in members],
        **extra,
    }


def consent(
    c_id: str, pid: str, *actors: str, status: str = "active", **provision: Any
) -> dict[str, Any]:
    prov: dict[str, Any] = {"type": "permit", **provision}
    if actors:
        prov["actor"] = [
            {
                "role": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "code": "IRCP",
                        }
                    ]
                },
                "reference": {"reference": a},
            }
            for a in actors
        ]
    return {
        "resourceType": "Consent",
        "id": c_id,
        "status": status,
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{pid}"},
        "provision": prov,
    }


def clinical(res_type: str, rid: str, pid: str) -> dict[str, Any]:
    """A minimal valid resource of ``res_type`` in patient ``pid``'s compartment."""
    ref = {"reference": f"Patient/{pid}"}
    code = {"coding": [{"system": "http://loinc.org", "code": "8310-5"}], "text": "体温"}
    if res_type == "Observation":
        return {
            "resourceType": "Observation",
            "id": rid,
            "status": "final",
            "code": code,
            "subject": ref,
            "valueQuantity": {"value": 37.2, "unit": "Cel"},
        }
    if res_type == "Condition":
        return {"resourceType": "Condition", "id": rid, "code": code, "subject": ref}
    if res_type == "MedicationRequest":
        return {
            "resourceType": "MedicationRequest",
            "id": rid,
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": "アムロジピン錠5mg"},
            "subject": ref,
        }
    if res_type == "Communication":
        return {
            "resourceType": "Communication",
            "id": rid,
            "status": "completed",
            "subject": ref,
            "payload": [{"contentString": "訪問時、食欲低下あり"}],
        }
    if res_type == "Patient":
        return patient(rid, "org-a")
    raise AssertionError(res_type)


@dataclass
class Network:
    """org-a owns p1 and p2; org-b is on both care teams; only p1 consents to sharing."""

    client: TestClient


def build_network(client: TestClient) -> Network:
    for org in ORGS:
        put(client, {"resourceType": "Organization", "id": org, "name": org})
    put(
        client,
        {
            "resourceType": "PractitionerRole",
            "id": "role-org-b-nurse",
            "organization": {"reference": "Organization/org-b"},
        },
    )
    put(client, patient("p1", "org-a"))
    put(client, patient("p2", "org-a"))
    # org-b takes part through one of its PractitionerRoles on p1's team, as an
    # Organization on p2's team
    put(client, careteam("ct1", "p1", "Organization/org-a", "PractitionerRole/role-org-b-nurse"))
    put(client, careteam("ct2", "p2", "Organization/org-a", "Organization/org-b"))
    put(client, consent("cs1", "p1"))
    for pid in ("p1", "p2"):
        for res_type in ("Observation", "Condition", "MedicationRequest", "Communication"):
            put(client, clinical(res_type, f"{res_type.lower()}-{pid}", pid))
    return Network(client)
