"""Agreed escalation criteria over HTTP: /criteria/rules, and Observations that open calls.

Weekday night (23:00 Tokyo) in the network of tests/calls_support.py: patient 1 is cared
for by clinic A (rotation group g1, duty doctor on call), patient 2 by clinic B; the
nursing station is on both care teams. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from renkei.app import Services
from renkei.calls.intake import CRITERIA_SYSTEM
from renkei.calls.ports import NotifyBusNotifier
from renkei.clock import ManualClock
from renkei.fhir.capability import RENKEI_CODESYSTEM
from renkei.notify.models import outbox
from tests.calls_support import (
    CallDriver,
    fhir,
    install_test_tokens,
    jst,
    principal_for,
    seed_network,
)

LOINC = "http://loinc.org"
FHIR_JSON = {"Content-Type": "application/fhir+json"}

SPO2_RULE = {"name": "SpO2 90%未満", "all_of": [{"vital": "spo2", "op": "lt", "value": 90}]}
FEVER_RULE = {
    "name": "38.5℃以上かつ意識レベル変化",
    "all_of": [
        {"vital": "temperature", "op": "ge", "value": 38.5},
        {"vital": "consciousness", "op": "ge", "value": 1},
    ],
    "window_minutes": 60,
}


@pytest.fixture
def driver(services: Services, clock: ManualClock) -> CallDriver:
    clock.set(jst(2026, 4, 1, 23, 0))  # a Wednesday night: the duty doctor of g1 is on call
    return CallDriver(services, clock, seed_network(services))


def org_of(services: Services, role: str) -> str:
    ref: str = fhir(services, "GET", role)["organization"]["reference"]
    return ref


@pytest.fixture
def api(client: TestClient, driver: CallDriver) -> Iterator[TestClient]:
    net = driver.net
    install_test_tokens(
        driver.services,
        {
            "nurse": principal_for(net.nurse, org_of(driver.services, net.nurse), role="nurse"),
            "doctor-a": principal_for(net.doctor_a, net.clinic_a),
            "doctor-b": principal_for(net.doctor_b, net.clinic_b),
            "duty": principal_for(net.duty, net.clinic_b),
        },
    )
    yield client


def auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def add_rule(api: TestClient, rule: dict[str, Any], token: str = "doctor-a", **scope: str) -> Any:
    resp = api.post("/criteria/rules", json={**scope, "rule": rule}, headers=auth(token))
    assert resp.status_code == 201, resp.text
    return resp.json()


def vital(
    driver: CallDriver, patient: str, code: str, value: float, *, system: str = LOINC
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": patient},
        "effectiveDateTime": driver.clock.now().isoformat(),
    }
    if system == LOINC:
        body["valueQuantity"] = {"value": value}
    else:
        body["valueInteger"] = int(value)
    return body


def post_vital(api: TestClient, driver: CallDriver, *args: Any, **kwargs: Any) -> dict[str, Any]:
    resp = api.post(
        "/fhir/Observation", json=vital(driver, *args, **kwargs), headers=auth("nurse", **FHIR_JSON)
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def calls(driver: CallDriver) -> list[dict[str, Any]]:
    from renkei.auth.principal import OPERATOR
    from renkei.calls import service

    with driver.services.db.session() as session:
        return service.list_calls(session, OPERATOR, state=None, mine=False)


# -- Observations that meet a rule, and those that do not -----------------------------------


def test_low_spo2_opens_a_call_routed_to_the_duty_doctor(
    api: TestClient, driver: CallDriver
) -> None:
    net = driver.net
    rule = add_rule(api, SPO2_RULE, patient=net.patient_1)
    obs = post_vital(api, driver, net.patient_1, "2708-6", 88)
    [opened] = calls(driver)
    assert opened["owner"] == net.duty and opened["state"] == "notifying"
    assert opened["route"] == "on-duty"
    assert opened["requester"] == net.nurse  # the writer's PractitionerRole
    assert opened["rule"] == {"id": rule["id"], "name": "SpO2 90%未満"}
    assert opened["reason"].startswith("SpO2 90%未満: SpO2 88")
    assert driver.paged(opened["id"]) == [net.duty]

    view = api.get(f"/oncall/calls/{opened['id']}", headers=auth("duty")).json()
    assert view["rule"] == {"id": rule["id"], "name": "SpO2 90%未満"}
    created = view["timeline"][0]
    assert created["kind"] == "created" and created["actor"] == "criteria"
    assert created["detail"]["rule"] == {"id": rule["id"], "name": "SpO2 90%未満"}
    assert created["detail"]["vitals"] == [f"Observation/{obs['id']}/_history/1"]

    task = api.get(f"/fhir/Task/{opened['id']}").json()
    assert task["priority"] == "stat" and task["for"]["reference"] == net.patient_1
    assert task["reasonCode"]["coding"] == [
        {"system": CRITERIA_SYSTEM, "code": rule["id"], "display": "SpO2 90%未満"}
    ]
    assert task["input"][0]["valueReference"]["reference"] == (
        f"Observation/{obs['id']}/_history/1"
    )
    assert task["owner"]["reference"] == net.duty


def test_normal_spo2_opens_no_call(api: TestClient, driver: CallDriver) -> None:
    add_rule(api, SPO2_RULE, patient=driver.net.patient_1)
    post_vital(api, driver, driver.net.patient_1, "2708-6", 96)
    post_vital(api, driver, driver.net.patient_1, "8310-5", 36.8)  # no SpO2 at all
    assert calls(driver) == []


def test_fever_alone_does_not_fire_until_consciousness_changes(
    api: TestClient, driver: CallDriver
) -> None:
    net = driver.net
    rule = add_rule(api, FEVER_RULE, patient=net.patient_1)
    post_vital(api, driver, net.patient_1, "8310-5", 38.8)
    assert calls(driver) == []
    driver.clock.advance(minutes=10)
    post_vital(api, driver, net.patient_1, "jcs", 10, system=RENKEI_CODESYSTEM)
    [opened] = calls(driver)
    assert opened["rule"]["id"] == rule["id"] and opened["owner"] == net.duty
    assert "体温 38.8" in opened["reason"] and "意識レベル変化" in opened["reason"]


def test_consciousness_change_outside_the_window_does_not_fire(
    api: TestClient, driver: CallDriver
) -> None:
    add_rule(api, FEVER_RULE, patient=driver.net.patient_1)
    post_vital(api, driver, driver.net.patient_1, "8310-5", 38.8)
    driver.clock.advance(minutes=90)  # the rule's window is 60 minutes
    post_vital(api, driver, driver.net.patient_1, "jcs", 10, system=RENKEI_CODESYSTEM)
    assert calls(driver) == []


def test_refiring_while_the_call_is_open_adds_to_its_timeline(
    api: TestClient, driver: CallDriver
) -> None:
    net = driver.net
    add_rule(api, SPO2_RULE, patient=net.patient_1)
    post_vital(api, driver, net.patient_1, "2708-6", 88)
    driver.clock.advance(minutes=5)
    second = post_vital(api, driver, net.patient_1, "2708-6", 86)
    [opened] = calls(driver)
    refired = [e for e in driver.call(opened["id"])["timeline"] if e["kind"] == "criteria_refired"]
    assert len(refired) == 1
    assert refired[0]["detail"]["observation"] == f"Observation/{second['id']}/_history/1"
    assert refired[0]["detail"]["values"]["spo2"] == 86
    assert driver.paged(opened["id"]) == [net.duty]  # nobody paged twice

    driver.act(opened["id"], principal_for(net.duty), "resolve", outcome="visit")
    driver.clock.advance(minutes=30)
    post_vital(api, driver, net.patient_1, "2708-6", 85)
    assert len(calls(driver)) == 2  # the first call is over: a new one is opened


def test_facility_rule_applies_only_to_patients_on_its_care_team(
    api: TestClient, driver: CallDriver
) -> None:
    net = driver.net
    rule = add_rule(api, SPO2_RULE, organization=net.clinic_a)
    assert [
        r["id"]
        for r in api.get(
            "/criteria/rules", params={"patient": net.patient_1}, headers=auth("nurse")
        ).json()["rules"]
    ] == [rule["id"]]
    assert (
        api.get("/criteria/rules", params={"patient": net.patient_2}, headers=auth("nurse")).json()[
            "rules"
        ]
        == []
    )

    post_vital(api, driver, net.patient_2, "2708-6", 85)  # clinic B's patient
    assert calls(driver) == []
    post_vital(api, driver, net.patient_1, "2708-6", 85)
    [opened] = calls(driver)
    assert opened["patient"] == net.patient_1 and opened["rule"]["id"] == rule["id"]


def test_notify_primary_rule_tells_the_primary_doctor_and_opens_no_call(
    api: TestClient, driver: CallDriver
) -> None:
    net = driver.net
    rule = add_rule(
        api,
        {
            "name": "収縮期血圧 90未満",
            "action": "notify-primary",
            "all_of": [{"vital": "systolic", "op": "lt", "value": 90}],
        },
        token="doctor-b",
        patient=net.patient_2,
    )
    obs = post_vital(api, driver, net.patient_2, "8480-6", 84)
    assert calls(driver) == []
    [event] = [e for e in driver.notifier.events if e.topic == "criteria.notify-primary"]
    assert event.recipients == (net.doctor_b, net.clinic_b)
    assert event.call_id is None and event.about == f"Observation/{obs['id']}/_history/1"
    assert event.payload["rule"] == {"id": rule["id"], "name": "収縮期血圧 90未満"}
    assert event.payload["values"]["systolic"] == 84


def test_notify_primary_goes_through_the_notification_outbox(
    api: TestClient, driver: CallDriver
) -> None:
    net = driver.net
    driver.runtime.ports.notifier = NotifyBusNotifier(driver.clock)  # the app's own notifier
    add_rule(
        api,
        {
            "name": "SpO2 93%未満",
            "action": "notify-primary",
            "all_of": [{"vital": "spo2", "op": "lt", "value": 93}],
        },
        patient=net.patient_1,
    )
    obs = post_vital(api, driver, net.patient_1, "2708-6", 92)
    with driver.services.db.session() as session:
        rows = session.execute(
            sa.select(outbox).where(outbox.c.kind == "call", outbox.c.action == "notify-primary")
        ).all()
    assert [(r.res_type, r.res_id, r.patient) for r in rows] == [
        ("Observation", obs["id"], net.patient_1)
    ]
    assert rows[0].audience == [net.doctor_a, net.clinic_a]
    assert calls(driver) == []


def test_deactivated_rule_no_longer_fires(api: TestClient, driver: CallDriver) -> None:
    rule = add_rule(api, SPO2_RULE, patient=driver.net.patient_1)
    resp = api.delete(f"/criteria/rules/{rule['id']}", headers=auth("doctor-a"))
    assert resp.status_code == 200 and resp.json()["active"] is False
    post_vital(api, driver, driver.net.patient_1, "2708-6", 85)
    assert calls(driver) == []
    again = api.get(f"/criteria/rules/{rule['id']}", headers=auth("doctor-a")).json()
    assert again["active"] is False and again["deactivated_by"]


def test_failing_call_creation_fails_the_write_and_names_the_rule(
    api: TestClient, driver: CallDriver
) -> None:
    net = driver.net
    add_rule(api, SPO2_RULE, patient=net.patient_1)
    fhir(driver.services, "DELETE", net.patient_1)  # the call's intake refuses a lost patient
    body = vital(driver, net.patient_1, "2708-6", 85)
    resp = api.post("/fhir/Observation", json=body, headers=auth("nurse", **FHIR_JSON))
    assert resp.status_code == 503
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "SpO2 90%未満" in outcome["issue"][0]["diagnostics"]
    assert "nothing was stored" in outcome["issue"][0]["diagnostics"]
    found = api.get("/fhir/Observation", params={"subject": net.patient_1}).json()
    assert found.get("total", len(found.get("entry", []))) == 0


# -- managing rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rule": SPO2_RULE}, "either organization"),
        ({"rule": {"all_of": SPO2_RULE["all_of"]}}, "rule.name is required"),
        ({"rule": {"name": "x", "all_of": [{"vital": "spo2", "op": "below", "value": 90}]}}, "op"),
        ({"rule": {"name": "x", "all_of": [{"vital": "mood", "op": "lt", "value": 1}]}}, "vital"),
        ({"rule": {"name": "x", "news2_at_least": 5, "action": "page-everyone"}}, "action"),
        ({"rule": ["spo2 < 90"]}, "JSON object"),
        ({"rule": {"name": "x"}}, "all_of conditions or news2_at_least"),
    ],
)
def test_bad_rule_is_400_with_a_clear_message(
    api: TestClient, driver: CallDriver, body: dict[str, Any], message: str
) -> None:
    if "organization" not in body and message != "either organization":
        body = {**body, "patient": driver.net.patient_1}
    resp = api.post("/criteria/rules", json=body, headers=auth("doctor-a"))
    assert resp.status_code == 400, resp.text
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert message in resp.json()["issue"][0]["diagnostics"]
    listed = api.get(
        "/criteria/rules", params={"patient": driver.net.patient_1}, headers=auth("doctor-a")
    )
    assert listed.json()["rules"] == []


def test_facility_rules_are_managed_by_the_facility(api: TestClient, driver: CallDriver) -> None:
    net = driver.net
    body = {"organization": net.clinic_a, "rule": SPO2_RULE}
    assert api.post("/criteria/rules", json=body, headers=auth("doctor-b")).status_code == 403
    rule = add_rule(api, SPO2_RULE, organization=net.clinic_a)
    listed = api.get(
        "/criteria/rules", params={"organization": net.clinic_a}, headers=auth("doctor-a")
    )
    assert [r["id"] for r in listed.json()["rules"]] == [rule["id"]]
    assert listed.json()["rules"][0]["rule"]["all_of"] == SPO2_RULE["all_of"]
    other = api.get(
        "/criteria/rules", params={"organization": net.clinic_a}, headers=auth("doctor-b")
    )
    assert other.status_code == 403
    assert api.delete(f"/criteria/rules/{rule['id']}", headers=auth("doctor-b")).status_code == 404
    assert api.post("/criteria/rules", json=body).status_code == 403  # another org's back end
    anonymous = api.get(
        "/criteria/rules", params={"organization": net.clinic_a}, headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401


def test_openapi_documents_the_rules_api(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    assert "/criteria/rules" in schema["paths"]
    assert "/criteria/rules/{rule_id}" in schema["paths"]
    examples = schema["components"]["schemas"]["RuleIn"]["examples"]
    assert examples[0]["rule"]["all_of"][0]["vital"] == "spo2"


# -- with the production sharing policy -----------------------------------------------------


@pytest.fixture
def shared(settings: Any, clock: ManualClock) -> Iterator[tuple[TestClient, CallDriver]]:
    """The default services (sharing policy: care team and consent), as in production."""
    from renkei.app import build_services, create_app
    from renkei.calls import CallSettings

    svc = build_services(settings, clock=clock, call_settings=CallSettings(worker=False))
    clock.set(jst(2026, 4, 1, 23, 0))
    driver = CallDriver(svc, clock, seed_network(svc))
    net = driver.net
    install_test_tokens(
        svc,
        {
            "doctor-a": principal_for(net.doctor_a, net.clinic_a),
            "doctor-b": principal_for(net.doctor_b, net.clinic_b),
        },
    )
    with TestClient(create_app(settings, services=svc), base_url="http://testserver") as c:
        yield c, driver
    svc.db.dispose()


def test_unrelated_organisation_cannot_see_or_add_a_patients_rules(
    shared: tuple[TestClient, CallDriver],
) -> None:
    api, driver = shared
    patient = driver.net.patient_1  # registered by clinic A; clinic B is not on its team
    rule = add_rule(api, SPO2_RULE, token="doctor-a", patient=patient)
    body = {"patient": patient, "rule": SPO2_RULE}
    assert api.post("/criteria/rules", json=body, headers=auth("doctor-b")).status_code == 404
    listed = api.get("/criteria/rules", params={"patient": patient}, headers=auth("doctor-b"))
    assert listed.status_code == 404
    assert api.get(f"/criteria/rules/{rule['id']}", headers=auth("doctor-b")).status_code == 404
    assert api.delete(f"/criteria/rules/{rule['id']}", headers=auth("doctor-b")).status_code == 404
    mine = api.get("/criteria/rules", params={"patient": patient}, headers=auth("doctor-a"))
    assert [r["id"] for r in mine.json()["rules"]] == [rule["id"]]
