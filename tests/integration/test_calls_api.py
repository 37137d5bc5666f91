"""/oncall/calls over HTTP and urgent-call Tasks through /fhir, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from renkei.app import Services
from renkei.calls import run_once
from renkei.calls.intake import URGENT_CALL_CODE
from renkei.clock import ManualClock
from renkei.fhir.capability import RENKEI_CODESYSTEM
from tests.calls_support import CallDriver, install_test_tokens, jst, principal_for, seed_network


@pytest.fixture
def driver(services: Services, clock: ManualClock) -> CallDriver:
    clock.set(jst(2026, 4, 1, 23, 0))  # a weekday night
    return CallDriver(services, clock, seed_network(services))


@pytest.fixture
def api(client: TestClient, driver: CallDriver) -> Iterator[TestClient]:
    net = driver.net
    install_test_tokens(
        driver.services,
        {
            "nurse": principal_for(net.nurse),
            "duty": principal_for(net.duty),
            "backup": principal_for(net.backup),
            "stranger": principal_for(net.doctor_b),
        },
    )
    yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def raise_call(api: TestClient, driver: CallDriver, **extra: Any) -> Any:
    body = {
        "patient": driver.net.patient_1,
        "reason": "発熱 39.2℃, 意識レベル低下",
        "priority": "stat",
        "callback": "03-1234-5678",
        "vitals": [
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
                "valueQuantity": {"value": 39.2, "unit": "Cel"},
            }
        ],
        **extra,
    }
    return api.post("/oncall/calls", json=body, headers=auth("nurse"))


def test_create_call_needs_a_caller(api: TestClient, driver: CallDriver) -> None:
    anonymous = {"Authorization": ""}  # drop the suite's default token
    resp = api.post(
        "/oncall/calls", json={"patient": driver.net.patient_1, "reason": "x"}, headers=anonymous
    )
    assert resp.status_code == 401


def test_create_call_routes_and_builds_the_task(api: TestClient, driver: CallDriver) -> None:
    resp = raise_call(api, driver)
    assert resp.status_code == 201, resp.text
    view = resp.json()
    assert view["owner"] == driver.net.duty and view["state"] == "notifying"
    assert view["requester"] == driver.net.nurse
    assert (
        view["links"]["patient_summary"]
        == f"http://testserver/fhir/{driver.net.patient_1}/$summary"
    )
    task = api.get(f"/fhir/Task/{view['id']}").json()
    assert task["code"]["coding"][0] == {
        "system": RENKEI_CODESYSTEM,
        "code": URGENT_CALL_CODE,
        "display": "Urgent call",
    }
    assert task["contained"][0]["resourceType"] == "Observation"
    assert task["owner"]["reference"] == driver.net.duty
    assert task["meta"]["versionId"] == "1"  # routed before it was stored: one write


def test_create_call_with_idempotency_key_returns_the_same_call(
    api: TestClient, driver: CallDriver
) -> None:
    first = api.post(
        "/oncall/calls",
        json={"patient": driver.net.patient_1, "reason": "転倒"},
        headers={**auth("nurse"), "Idempotency-Key": "k-1"},
    )
    again = api.post(
        "/oncall/calls",
        json={"patient": driver.net.patient_1, "reason": "転倒"},
        headers={**auth("nurse"), "Idempotency-Key": "k-1"},
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]


def test_create_call_bad_input_is_400_and_writes_nothing(
    api: TestClient, driver: CallDriver
) -> None:
    resp = api.post(
        "/oncall/calls",
        json={"patient": "Patient/nope", "reason": "x"},
        headers=auth("nurse"),
    )
    assert resp.status_code == 400
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert "Patient/nope" in resp.json()["issue"][0]["diagnostics"]
    bad_vitals = raise_call(api, driver, vitals=[{"resourceType": "Observation"}])
    assert bad_vitals.status_code == 400
    assert api.get("/oncall/calls", headers=auth("nurse")).json()["calls"] == []
    assert (
        api.post(
            "/oncall/calls", json={"patient": driver.net.patient_1}, headers=auth("nurse")
        ).status_code
        == 422
    )


def test_actions_over_http_and_timeline_in_one_request(api: TestClient, driver: CallDriver) -> None:
    call_id = raise_call(api, driver).json()["id"]
    assert (
        api.post(f"/oncall/calls/{call_id}/acknowledge", headers=auth("backup")).status_code == 403
    )
    assert api.get(f"/oncall/calls/{call_id}", headers=auth("stranger")).status_code == 404
    resp = api.post(
        f"/oncall/calls/{call_id}/reject", json={"reason": "別件往診中"}, headers=auth("duty")
    )
    assert resp.status_code == 200 and resp.json()["owner"] == driver.net.backup
    assert (
        api.post(
            f"/oncall/calls/{call_id}/acknowledge", json={"step": 2}, headers=auth("backup")
        ).status_code
        == 200
    )
    resp = api.post(
        f"/oncall/calls/{call_id}/resolve",
        json={"outcome": "ambulance", "note": "救急要請"},
        headers=auth("backup"),
    )
    assert resp.json()["state"] == "resolved"
    again = api.post(f"/oncall/calls/{call_id}/acknowledge", headers=auth("backup"))
    assert again.status_code == 409
    view = api.get(f"/oncall/calls/{call_id}", headers=auth("nurse")).json()
    kinds = [e["kind"] for e in view["timeline"] if e["kind"] != "published"]
    assert kinds == [
        "created", "routed", "notified", "rejected", "escalated", "notified",
        "acknowledged", "resolved",
    ]  # fmt: skip
    actors = {e["kind"]: e["actor"] for e in view["timeline"]}
    assert actors["rejected"] == principal_for(driver.net.duty).subject
    assert all(e["at"] for e in view["timeline"])
    bad = api.post(
        f"/oncall/calls/{call_id}/resolve", json={"outcome": "magic"}, headers=auth("backup")
    )
    assert bad.status_code == 409


def test_fhir_task_post_enters_routing(api: TestClient, driver: CallDriver) -> None:
    task = {
        "resourceType": "Task",
        "identifier": [{"system": "urn:example:nurse-app", "value": "n-77"}],
        "status": "requested",
        "intent": "order",
        "priority": "asap",
        "code": {"coding": [{"system": RENKEI_CODESYSTEM, "code": URGENT_CALL_CODE}]},
        "for": {"reference": driver.net.patient_1},
        "requester": {"reference": driver.net.nurse},
        "reasonCode": {"text": "胸痛"},
    }
    headers = {
        "Content-Type": "application/fhir+json",
        "If-None-Exist": "identifier=urn:example:nurse-app|n-77",
    }
    resp = api.post("/fhir/Task", json=task, headers=headers)
    assert resp.status_code == 201, resp.text
    task_id = resp.json()["id"]
    # routed before it was stored: the answer already names the owner, in version 1
    assert resp.json()["owner"]["reference"] == driver.net.duty
    assert resp.json()["meta"]["versionId"] == "1"
    assert resp.headers["Location"].endswith(f"/Task/{task_id}/_history/1")
    again = api.post("/fhir/Task", json=task, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == task_id
    stored = api.get(f"/fhir/Task/{task_id}").json()
    assert stored["owner"]["reference"] == driver.net.duty
    view = api.get(f"/oncall/calls/{task_id}", headers=auth("nurse")).json()
    assert view["reason"] == "胸痛" and view["state"] == "notifying"
    # a duplicate without If-None-Exist is refused, not routed twice
    dup = api.post("/fhir/Task", json=task, headers={"Content-Type": "application/fhir+json"})
    assert dup.status_code == 409
    # cancelling through FHIR cancels the call
    stored["status"] = "cancelled"
    assert api.put(f"/fhir/Task/{task_id}", json=stored).status_code == 200
    assert api.get(f"/oncall/calls/{task_id}", headers=auth("nurse")).json()["state"] == "cancelled"


def test_fhir_task_without_patient_is_rejected(api: TestClient, driver: CallDriver) -> None:
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": RENKEI_CODESYSTEM, "code": URGENT_CALL_CODE}]},
    }
    resp = api.post("/fhir/Task", json=task, headers={"Content-Type": "application/fhir+json"})
    assert resp.status_code == 400
    assert "Task.for" in resp.json()["issue"][0]["diagnostics"]


def test_worker_escalates_calls_created_over_http(api: TestClient, driver: CallDriver) -> None:
    call_id = raise_call(api, driver).json()["id"]
    driver.clock.advance(minutes=5)
    run_once(driver.services.db.session, driver.clock, driver.runtime)
    view = api.get(f"/oncall/calls/{call_id}", headers=auth("nurse")).json()
    assert view["owner"] == driver.net.backup
    mine = api.get("/oncall/calls?mine=true&state=open", headers=auth("backup")).json()["calls"]
    assert [c["id"] for c in mine] == [call_id]


class _BrokenNotifier:
    """A bus that refuses every event, as when it is down at intake."""

    def publish(self, session: Any, event: Any) -> None:
        raise RuntimeError("bus down")


def test_a_call_whose_routing_fails_is_stored_and_routed_by_the_worker(
    api: TestClient, driver: CallDriver
) -> None:
    working = driver.runtime.ports.notifier
    driver.runtime.ports.notifier = _BrokenNotifier()
    resp = raise_call(api, driver)
    assert resp.status_code == 201, resp.text  # the call is never refused for the roster
    call_id = resp.json()["id"]
    assert resp.json()["state"] == "new" and resp.json()["owner"] is None
    task = api.get(f"/fhir/Task/{call_id}").json()
    assert task["meta"]["versionId"] == "1" and "owner" not in task
    driver.runtime.ports.notifier = working
    run_once(driver.services.db.session, driver.clock, driver.runtime)
    task = api.get(f"/fhir/Task/{call_id}").json()
    assert task["meta"]["versionId"] == "2"
    assert task["owner"]["reference"] == driver.net.duty
    assert api.get(f"/oncall/calls/{call_id}", headers=auth("nurse")).json()["state"] == (
        "notifying"
    )


def test_a_task_updated_into_an_urgent_call_is_routed(api: TestClient, driver: CallDriver) -> None:
    task = {
        "resourceType": "Task",
        "status": "draft",
        "intent": "order",
        "for": {"reference": driver.net.patient_1},
        "requester": {"reference": driver.net.nurse},
        "reasonCode": {"text": "呼吸苦"},
    }
    fhir = {"Content-Type": "application/fhir+json"}
    created = api.post("/fhir/Task", json=task, headers=fhir).json()
    assert "owner" not in created
    urgent = {
        **created,
        "status": "requested",
        "code": {"coding": [{"system": RENKEI_CODESYSTEM, "code": URGENT_CALL_CODE}]},
    }
    assert api.put(f"/fhir/Task/{created['id']}", json=urgent, headers=fhir).status_code == 200
    stored = api.get(f"/fhir/Task/{created['id']}").json()
    assert stored["meta"]["versionId"] == "3"  # draft, made urgent, routed
    assert stored["owner"]["reference"] == driver.net.duty


def test_a_deleted_call_task_written_again_opens_no_second_call(
    api: TestClient, driver: CallDriver
) -> None:
    call_id = raise_call(api, driver).json()["id"]
    task = api.get(f"/fhir/Task/{call_id}").json()
    assert api.delete(f"/fhir/Task/{call_id}").status_code in (200, 204)
    view = api.get(f"/oncall/calls/{call_id}", headers=auth("nurse")).json()
    assert view["state"] == "cancelled"
    again = api.put(
        f"/fhir/Task/{call_id}",
        json={k: v for k, v in task.items() if k != "meta"},
        headers={"Content-Type": "application/fhir+json"},
    )
    assert again.status_code == 201, again.text
    assert api.get(f"/oncall/calls/{call_id}", headers=auth("nurse")).json()["state"] == (
        "cancelled"
    )


def test_an_urgent_call_in_a_transaction_bundle_is_routed_with_its_new_patient(
    api: TestClient, driver: CallDriver
) -> None:
    """The Task names a Patient created by the same Bundle (urn:uuid): intake finds it."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:5f1c2f0e-7d0b-4a51-9c43-0d6f1a2b3c4d",
                "resource": {
                    "resourceType": "Patient",
                    "name": [{"family": "新規"}],
                    "managingOrganization": {"reference": driver.net.clinic_a},
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Task",
                    "status": "requested",
                    "intent": "order",
                    "priority": "stat",
                    "code": {"coding": [{"system": RENKEI_CODESYSTEM, "code": URGENT_CALL_CODE}]},
                    "for": {"reference": "urn:uuid:5f1c2f0e-7d0b-4a51-9c43-0d6f1a2b3c4d"},
                    "requester": {"reference": driver.net.nurse},
                    "reasonCode": {"text": "転倒"},
                },
                "request": {"method": "POST", "url": "Task"},
            },
        ],
    }
    resp = api.post("/fhir", json=bundle, headers={"Content-Type": "application/fhir+json"})
    assert resp.status_code == 200, resp.text
    patient_id, task_id = (
        e["response"]["location"].split("/_history/")[0].rsplit("/", 1)[1]
        for e in resp.json()["entry"]
    )
    task = api.get(f"/fhir/Task/{task_id}").json()
    assert task["for"]["reference"] == f"Patient/{patient_id}"
    assert task["meta"]["versionId"] == "1" and "owner" in task  # routed before stored
    view = api.get(f"/oncall/calls/{task_id}", headers=auth("nurse")).json()
    assert view["state"] == "notifying" and view["owner"] == task["owner"]["reference"]
