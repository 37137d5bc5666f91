"""Sharing rules beyond the matrix: periods, statuses, consent actors, duty access,
break-the-glass and back-end clients (HTTP, both databases)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from fastapi.testclient import TestClient

from renkei.access import grant_duty_access, revoke_duty_access
from renkei.app import Services
from renkei.clock import ManualClock
from tests.integration.auth.conftest import (
    as_user,
    build_network,
    careteam,
    clinical,
    consent,
    patient,
    put,
)


def _read(client: TestClient, who: str, ref: str, **headers: str) -> int:
    return client.get(f"/fhir/{ref}", headers=as_user(who, **headers)).status_code


def test_consent_and_team_periods_and_status(net_client: TestClient, clock: ManualClock) -> None:
    build_network(net_client)
    # a consent that runs out, and a team membership that has not started yet
    put(net_client, patient("p3", "org-a"))
    put(net_client, clinical("Observation", "obs-p3", "p3"))
    put(
        net_client,
        careteam("ct3", "p3", "Organization/org-a", "Organization/org-b", "Organization/org-c"),
    )
    put(net_client, consent("cs3", "p3", period={"start": "2026-03-01", "end": "2026-04-10"}))
    assert _read(net_client, "org-b-nurse", "Observation/obs-p3") == 200
    assert _read(net_client, "org-c-pharmacist", "Patient/p3") == 200
    clock.advance(days=10)  # 2026-04-11 JST: the consent has ended
    assert _read(net_client, "org-b-nurse", "Observation/obs-p3") == 404
    assert _read(net_client, "org-a-nurse", "Observation/obs-p3") == 200  # the owner keeps it
    # a consent naming one organisation covers that organisation only
    put(net_client, consent("cs3", "p3", "Organization/org-c"))
    assert _read(net_client, "org-c-pharmacist", "Patient/p3") == 200
    assert _read(net_client, "org-b-nurse", "Patient/p3") == 404
    # a consent naming the CareTeam covers its members
    put(net_client, consent("cs3", "p3", "CareTeam/ct3"))
    assert _read(net_client, "org-b-nurse", "Patient/p3") == 200
    # the team is no longer active: nobody but the owner sees the patient
    put(
        net_client,
        careteam("ct3", "p3", "Organization/org-a", "Organization/org-b", status="inactive"),
    )
    assert _read(net_client, "org-b-nurse", "Patient/p3") == 404
    # a consent that is not active, or that denies, shares nothing
    put(net_client, careteam("ct3", "p3", "Organization/org-b"))
    put(net_client, consent("cs3", "p3", status="inactive"))
    assert _read(net_client, "org-b-nurse", "Patient/p3") == 404
    put(net_client, consent("cs3", "p3", type="deny"))
    assert _read(net_client, "org-b-nurse", "Patient/p3") == 404


def test_participant_period_limits_membership(net_client: TestClient, clock: ManualClock) -> None:
    build_network(net_client)
    team = careteam("ct1", "p1", "Organization/org-a")
    team["participant"].append(
        {"member": {"reference": "Organization/org-c"}, "period": {"start": "2026-04-05"}}
    )
    put(net_client, team)
    assert _read(net_client, "org-c-doctor", "Patient/p1") == 404
    clock.advance(days=5)
    assert _read(net_client, "org-c-doctor", "Patient/p1") == 200


def test_duty_grant_opens_read_for_its_duration(
    net_client: TestClient, services: Services, clock: ManualClock
) -> None:
    build_network(net_client)
    doctor = "org-c-doctor"
    assert _read(net_client, doctor, "Patient/p2") == 404
    with services.db.session(write=True) as s:
        grant_duty_access(
            s,
            patient_id="p2",
            practitioner_role_id="role-org-c-doctor",
            now=clock.now(),
            until=clock.now() + timedelta(hours=2),
            reason="urgent call",
            source="Task/call-1",
        )
    assert _read(net_client, doctor, "Patient/p2") == 200
    assert _read(net_client, doctor, "Observation/observation-p2") == 200
    assert _read(net_client, "org-c-nurse", "Patient/p2") == 404  # the grant is personal
    found = net_client.get("/fhir/Observation?_id=observation-p2", headers=as_user(doctor))
    assert found.json()["total"] == 1
    # read only: the duty doctor may not write into another organisation's record
    body = clinical("Observation", "x", "p2")
    del body["id"]
    assert (
        net_client.post("/fhir/Observation", json=body, headers=as_user(doctor)).status_code == 403
    )
    clock.advance(hours=2)
    assert _read(net_client, doctor, "Patient/p2") == 404
    clock.set(clock.now() - timedelta(hours=1))
    with services.db.session(write=True) as s:
        assert revoke_duty_access(s, now=clock.now(), source="Task/call-1") == 1
    assert _read(net_client, doctor, "Patient/p2") == 404


def test_break_the_glass_is_allowed_flagged_and_listed(net_client: TestClient) -> None:
    build_network(net_client)
    text = "意識レベル低下で救急搬送、既往歴確認のため"
    reason = {"X-Break-Glass-Reason": quote(text)}  # header values are ASCII
    assert _read(net_client, "org-c-doctor", "Patient/p2") == 404
    assert _read(net_client, "org-c-doctor", "Patient/p2", **reason) == 200
    assert _read(net_client, "org-c-nurse", "Observation/observation-p2", **reason) == 200
    found = net_client.get(
        "/fhir/Observation?_id=observation-p2", headers=as_user("org-c-doctor", **reason)
    )
    assert found.json()["total"] == 1
    # not a clinician: refused outright
    assert _read(net_client, "org-c-careworker", "Patient/p2", **reason) == 403
    # only for that request
    assert _read(net_client, "org-c-doctor", "Patient/p2") == 404
    # flagged and listed for review
    review = net_client.get("/fhir/AuditEvent?purpose=BTG", headers=as_user(None)).json()
    events = [e["resource"] for e in review.get("entry", [])]
    assert len(events) == 4  # newest first; the refused attempt is listed too
    assert all(e["purposeOfEvent"][0]["coding"][0]["code"] == "BTG" for e in events)
    assert [(e["agent"][0]["altId"], e["outcome"]) for e in events] == [
        ("org-c-careworker", "4"),
        ("org-c-doctor", "0"),
        ("org-c-nurse", "0"),
        ("org-c-doctor", "0"),
    ]
    assert events[-1]["purposeOfEvent"][0]["text"] == text
    patients = {ent["what"]["reference"] for e in events for ent in e["entity"] if "what" in ent}
    assert "Patient/p2" in patients


def test_backend_client_follows_its_organisation(net_client: TestClient) -> None:
    build_network(net_client)
    assert _read(net_client, "org-c-ehr", "Patient/p1") == 404
    assert _read(net_client, "org-c-ehr", "Organization/org-a") == 200
    put(net_client, careteam("ct1", "p1", "Organization/org-a", "Organization/org-c"))
    assert _read(net_client, "org-c-ehr", "Patient/p1") == 200


def test_patient_is_registered_by_own_organisation(net_client: TestClient) -> None:
    build_network(net_client)
    mine = {k: v for k, v in patient("x", "org-b").items() if k != "id"}
    theirs = {k: v for k, v in patient("x", "org-a").items() if k != "id"}
    nobody = {k: v for k, v in theirs.items() if k != "managingOrganization"}
    who = as_user("org-b-coordinator")
    created = net_client.post("/fhir/Patient", json=mine, headers=who)
    assert created.status_code == 201
    assert net_client.post("/fhir/Patient", json=theirs, headers=who).status_code == 403
    assert net_client.post("/fhir/Patient", json=nobody, headers=who).status_code == 403
    # and cannot be handed over to another organisation by an update
    moved = {**created.json(), "managingOrganization": {"reference": "Organization/org-a"}}
    assert (
        net_client.put(f"/fhir/Patient/{moved['id']}", json=moved, headers=who).status_code == 403
    )


def test_local_operator_is_unrestricted_an_org_operator_is_not(net_client: TestClient) -> None:
    build_network(net_client)
    assert _read(net_client, "operator", "Patient/p2") == 200
    body = {k: v for k, v in patient("x", "org-a").items() if k != "id"}
    created = net_client.post("/fhir/Patient", json=body, headers=as_user("operator"))
    assert created.status_code == 201
    assert net_client.get("/fhir/AuditEvent", headers=as_user("operator")).status_code == 200
    assert _read(net_client, "org-c-operator", "Patient/p2") == 404


def test_only_the_owner_decides_who_shares(net_client: TestClient) -> None:
    """A participant cannot widen the team or the consent to bring others in."""
    build_network(net_client)
    team = careteam("ct9", "p1", "Organization/org-b", "Organization/org-c")
    del team["id"]
    cons = consent("cs9", "p1", "Organization/org-c")
    del cons["id"]
    for who in ("org-b-coordinator", "org-b-doctor"):
        assert net_client.post("/fhir/CareTeam", json=team, headers=as_user(who)).status_code == 403
        assert net_client.post("/fhir/Consent", json=cons, headers=as_user(who)).status_code == 403
    assert _read(net_client, "org-c-doctor", "Patient/p1") == 404
    who = as_user("org-a-coordinator")
    assert net_client.post("/fhir/CareTeam", json=team, headers=who).status_code == 201
    assert _read(net_client, "org-c-doctor", "Patient/p1") == 200  # whole-team consent cs1


def test_binary_follows_its_security_context(net_client: TestClient) -> None:
    build_network(net_client)
    for bid, ctx in (("b1", "Observation/observation-p1"), ("b2", "Observation/observation-p2")):
        put(
            net_client,
            {
                "resourceType": "Binary",
                "id": bid,
                "contentType": "text/plain",
                "securityContext": {"reference": ctx},
                "data": "6Kiq5ZWP6KiY6Yyy",
            },
        )
    assert _read(net_client, "org-b-nurse", "Binary/b1") == 200
    assert _read(net_client, "org-b-nurse", "Binary/b2") == 404
    assert _read(net_client, "org-a-nurse", "Binary/b2") == 200
