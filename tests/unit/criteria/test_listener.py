"""The Observation write listener: its cost when nothing applies, idempotency, failures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from renkei.app import Services
from renkei.auth.principal import OPERATOR
from renkei.calls import service as calls
from renkei.clock import ManualClock
from renkei.criteria.listener import on_observation
from renkei.criteria.models import criteria_rule
from renkei.criteria.service import create_rule
from renkei.fhir.context import FhirRequest, RequestContext
from renkei.store.repository import StoredResource
from tests.calls_support import CallDriver, fhir, jst, principal_for, seed_network

SPO2_RULE = {"name": "SpO2 < 90", "all_of": [{"vital": "spo2", "op": "lt", "value": 90}]}


@pytest.fixture
def driver(services: Services, clock: ManualClock) -> CallDriver:
    clock.set(jst(2026, 4, 1, 23, 0))
    return CallDriver(services, clock, seed_network(services))


def spo2(driver: CallDriver, patient: str, value: float, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2708-6"}]},
        "subject": {"reference": patient},
        "effectiveDateTime": driver.clock.now().isoformat(),
        "valueQuantity": {"value": value},
        **extra,
    }


def add_rule(driver: CallDriver, patient: str, rule: dict[str, Any] = SPO2_RULE) -> str:
    with driver.services.db.session(write=True) as session:
        view = create_rule(
            driver.services.engine,
            session,
            RequestContext(principal=OPERATOR),
            driver.clock,
            organization=None,
            patient=patient,
            rule=rule,
        )
    return str(view["id"])


def errors() -> float:
    return REGISTRY.get_sample_value("renkei_criteria_errors_total") or 0.0


def open_calls(driver: CallDriver) -> list[dict[str, Any]]:
    with driver.services.db.session() as session:
        return calls.list_calls(session, OPERATOR, state=None, mine=False)


@contextmanager
def statements(driver: CallDriver) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engine = driver.services.db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def stored_version(body: dict[str, Any]) -> StoredResource:
    from datetime import datetime

    return StoredResource(
        "Observation",
        body["id"],
        int(body["meta"]["versionId"]),
        datetime.fromisoformat(body["meta"]["lastUpdated"]),
        False,
        body,
    )


def test_on_observation_without_vitals_reads_nothing(driver: CallDriver) -> None:
    note = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "食欲"},
        "subject": {"reference": driver.net.patient_1},
        "valueString": "良好",
    }
    with statements(driver) as seen, driver.services.db.session() as session:
        fired = on_observation(
            driver.runtime,
            session,
            RequestContext(),
            stored_version(
                {
                    **note,
                    "id": "x",
                    "meta": {"versionId": "1", "lastUpdated": driver.clock.now().isoformat()},
                }
            ),
        )
    assert fired == [] and [s for s in seen if "SELECT" in s.upper()] == []


def test_on_observation_for_a_patient_without_rules_is_one_query(driver: CallDriver) -> None:
    body = fhir(driver.services, "POST", "Observation", spo2(driver, driver.net.patient_1, 80))
    with driver.services.db.session() as session, statements(driver) as seen:
        fired = on_observation(driver.runtime, session, RequestContext(), stored_version(body))
    assert fired == []
    assert len([s for s in seen if s.lstrip().upper().startswith(("SELECT", "WITH"))]) == 1
    assert open_calls(driver) == []


def test_same_observation_version_never_opens_two_calls(driver: CallDriver) -> None:
    add_rule(driver, driver.net.patient_1)
    body = fhir(driver.services, "POST", "Observation", spo2(driver, driver.net.patient_1, 85))
    [first] = open_calls(driver)
    driver.act(first["id"], principal_for(driver.net.duty), "resolve", outcome="phone-advice")
    with driver.services.db.session(write=True) as session:  # the same version, again
        fired = on_observation(driver.runtime, session, RequestContext(), stored_version(body))
    assert [f.rule.name for f in fired] == ["SpO2 < 90"]
    assert [c["id"] for c in open_calls(driver)] == [first["id"]]


def test_update_that_changes_no_reading_does_not_fire_again(driver: CallDriver) -> None:
    add_rule(driver, driver.net.patient_1)
    body = fhir(driver.services, "POST", "Observation", spo2(driver, driver.net.patient_1, 85))
    [opened] = open_calls(driver)
    fhir(driver.services, "PUT", f"Observation/{body['id']}", {**body, "note": [{"text": "再検"}]})
    kinds = driver.kinds(opened["id"])
    assert "criteria_refired" not in kinds
    corrected = {**body, "valueQuantity": {"value": 84}}
    fhir(driver.services, "PUT", f"Observation/{body['id']}", corrected)
    assert driver.kinds(opened["id"]).count("criteria_refired") == 1
    assert len(open_calls(driver)) == 1


def test_broken_stored_rule_is_counted_and_the_observation_kept(driver: CallDriver) -> None:
    rule_id = add_rule(driver, driver.net.patient_1)
    with driver.services.db.session(write=True) as session:
        session.execute(
            criteria_rule.update()
            .where(criteria_rule.c.id == rule_id)
            .values(rule={"id": rule_id, "name": "壊れた規則", "all_of": [{"vital": "mood"}]})
        )
    before = errors()
    body = fhir(driver.services, "POST", "Observation", spo2(driver, driver.net.patient_1, 80))
    assert errors() == before + 1
    assert fhir(driver.services, "GET", f"Observation/{body['id']}")["id"] == body["id"]
    assert open_calls(driver) == []


def test_observations_in_one_transaction_bundle_are_judged_together(driver: CallDriver) -> None:
    patient = driver.net.patient_1
    add_rule(
        driver,
        patient,
        {
            "name": "発熱と意識変化",
            "all_of": [
                {"vital": "temperature", "op": "ge", "value": 38.5},
                {"vital": "consciousness", "op": "ge", "value": 1},
            ],
        },
    )
    fever = {
        **spo2(driver, patient, 0),
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "valueQuantity": {"value": 39.0},
    }
    avpu = {
        **spo2(driver, patient, 0),
        "code": {"coding": [{"system": "http://loinc.org", "code": "67775-7"}]},
        "valueCodeableConcept": {"coding": [{"code": "V"}]},
    }
    avpu.pop("valueQuantity")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": fever, "request": {"method": "POST", "url": "Observation"}},
            {"resource": avpu, "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    with driver.services.db.session(write=True) as session:
        resp = driver.services.engine.handle(
            session, FhirRequest("POST", "", body=bundle, context=RequestContext(OPERATOR))
        )
    assert resp.status == 200, resp.body
    [opened] = open_calls(driver)
    assert opened["rule"]["name"] == "発熱と意識変化"
