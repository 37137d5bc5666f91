"""Duty access from urgent calls under the production sharing policy (HTTP, both databases).

Clinic org-a registers patient p1; the doctor on duty tonight for org-a's rotation group
works at org-b, which does not share p1's care. The calls package grants that doctor read
access when it pages them (``renkei.access.grant_duty_access``) and revokes it when the
call ends, so they can open the patient and its summary during the call only.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from renkei.calls.ports import EscalationPolicy
from renkei.calls.static_roster import StaticDuty, StaticDutyResolver, StaticGroup
from renkei.clock import ManualClock
from renkei.fhir.capability import RENKEI_CODESYSTEM
from tests.calls_support import jst
from tests.integration.auth.conftest import as_user, patient, put

DUTY = "PractitionerRole/role-org-b-doctor"


def _network(client: TestClient) -> None:
    for org in ("org-a", "org-b"):
        put(client, {"resourceType": "Organization", "id": org, "name": org})
    for role, org in (("role-org-a-doctor", "org-a"), ("role-org-b-doctor", "org-b")):
        put(
            client,
            {
                "resourceType": "PractitionerRole",
                "id": role,
                "organization": {"reference": f"Organization/{org}"},
            },
        )
    put(client, patient("p1", "org-a"))
    put(
        client,
        {
            "resourceType": "CareTeam",
            "id": "ct1",
            "status": "active",
            "subject": {"reference": "Patient/p1"},
            "participant": [
                {
                    "role": [{"coding": [{"system": RENKEI_CODESYSTEM, "code": "primary-doctor"}]}],
                    "member": {"reference": "PractitionerRole/role-org-a-doctor"},
                    "onBehalfOf": {"reference": "Organization/org-a"},
                }
            ],
        },
    )
    services: Any = client.app.state.services
    services.calls.ports.duty = StaticDutyResolver(
        groups=[
            StaticGroup(
                id="g1",
                clinics=frozenset({"Organization/org-a"}),
                duties=[StaticDuty(primary=DUTY)],
                policy=EscalationPolicy(),
            )
        ]
    )


def _status(client: TestClient, who: str, path: str) -> int:
    return client.get(f"/fhir/{path}", headers=as_user(who)).status_code


def test_duty_doctor_reads_the_patient_only_while_the_call_lasts(
    net_client: TestClient, clock: ManualClock
) -> None:
    _network(net_client)
    clock.set(jst(2026, 4, 1, 23, 0))  # a weekday night: org-a's group is on duty
    doctor = "org-b-doctor"
    assert _status(net_client, doctor, "Patient/p1") == 404
    assert _status(net_client, doctor, "Patient/p1/$summary") == 404

    resp = net_client.post(
        "/oncall/calls",
        json={"patient": "Patient/p1", "reason": "SpO2 86%", "priority": "stat"},
        headers=as_user("org-a-nurse"),
    )
    assert resp.status_code == 201, resp.text
    call = resp.json()
    assert call["owner"] == DUTY
    assert _status(net_client, doctor, "Patient/p1") == 200
    assert _status(net_client, doctor, "Patient/p1/$summary") == 200
    assert _status(net_client, "org-b-nurse", "Patient/p1") == 404  # the doctor, not org-b
    note = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "往診メモ"},
        "subject": {"reference": "Patient/p1"},
        "valueString": "x",
    }
    wrote = net_client.post("/fhir/Observation", json=note, headers=as_user(doctor))
    assert wrote.status_code == 403  # duty access is read only

    done = net_client.post(
        f"/oncall/calls/{call['id']}/resolve", json={"outcome": "visit"}, headers=as_user(doctor)
    )
    assert done.status_code == 200, done.text
    assert _status(net_client, doctor, "Patient/p1") == 404
    assert _status(net_client, doctor, "Patient/p1/$summary") == 404


def test_handing_the_call_over_moves_duty_access(
    net_client: TestClient, clock: ManualClock
) -> None:
    _network(net_client)
    put(
        net_client,
        {
            "resourceType": "PractitionerRole",
            "id": "role-org-c-doctor",
            "organization": {"reference": "Organization/org-c"},
        },
    )
    clock.set(jst(2026, 4, 1, 23, 0))
    call = net_client.post(
        "/oncall/calls",
        json={"patient": "Patient/p1", "reason": "転倒", "priority": "stat"},
        headers=as_user("org-a-nurse"),
    ).json()
    moved = net_client.post(
        f"/oncall/calls/{call['id']}/handover",
        json={"to": "PractitionerRole/role-org-c-doctor"},
        headers=as_user("org-b-doctor"),
    )
    assert moved.status_code == 200, moved.text
    assert _status(net_client, "org-c-doctor", "Patient/p1") == 200
    assert _status(net_client, "org-b-doctor", "Patient/p1") == 404
    cancelled = net_client.post(
        f"/oncall/calls/{call['id']}/cancel", json={}, headers=as_user("org-a-nurse")
    )
    assert cancelled.status_code == 200, cancelled.text
    assert _status(net_client, "org-c-doctor", "Patient/p1") == 404
