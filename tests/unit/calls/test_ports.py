"""The ports' database-backed implementations: the roster adapter, the CareTeam reader."""

from __future__ import annotations

from datetime import timedelta

import pytest

from renkei import roster
from renkei.app import Services
from renkei.auth.principal import Principal
from renkei.calls.ports import (
    PRIMARY_DOCTOR_CODE,
    FhirPatientDirectory,
    RosterDutyResolver,
    SharingDutyAccess,
)
from renkei.clock import ManualClock
from renkei.fhir.capability import RENKEI_CODESYSTEM
from renkei.roster import service as roster_service
from tests.calls_support import CallDriver, fhir, jst, seed_network
from tests.rosterdata import CLINICS, COORDINATOR, DOCTORS, group_dict, seed_fhir

OPERATOR = Principal(subject="op", kind="operator")


@pytest.fixture
def roster_driver(services: Services, clock: ManualClock) -> tuple[CallDriver, str, str]:
    """A stored rotation group (renkei.roster) and a patient of its clinic 1, doctor A."""
    clock.set(jst(2026, 4, 1, 8, 0))
    seed_fhir(services)
    with services.db.session(write=True) as session:
        group = roster_service.create_group(session, clock, OPERATOR, group_dict()).id
    driver = CallDriver(services, clock, seed_network(services))
    driver.runtime.ports.duty = RosterDutyResolver(timedelta(minutes=5), 1)
    patient = fhir(services, "POST", "Patient", {"resourceType": "Patient"})
    fhir(
        services,
        "POST",
        "CareTeam",
        {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": {"reference": f"Patient/{patient['id']}"},
            "participant": [
                {
                    "role": [
                        {"coding": [{"system": RENKEI_CODESYSTEM, "code": PRIMARY_DOCTOR_CODE}]}
                    ],
                    "member": {"reference": DOCTORS[0]},
                    "onBehalfOf": {"reference": CLINICS[0]},
                }
            ],
        },
    )
    return driver, group, f"Patient/{patient['id']}"


def test_roster_resolver_office_hours_goes_to_primary_doctor(
    roster_driver: tuple[CallDriver, str, str],
) -> None:
    driver, _group, patient = roster_driver
    driver.clock.set(jst(2026, 4, 1, 10, 0))
    view = driver.raise_call(patient=patient)
    assert view["route"] == "office-hours"
    assert [s["target"] for s in view["chain"]] == [DOCTORS[0], COORDINATOR]


def test_roster_resolver_night_and_holiday_go_to_roster_duty(
    roster_driver: tuple[CallDriver, str, str],
) -> None:
    driver, group, patient = roster_driver
    for when in (jst(2026, 4, 1, 23, 0), jst(2026, 4, 29, 11, 0)):
        driver.clock.set(when)
        view = driver.raise_call(patient=patient)
        with driver.services.db.session() as session:
            duty = roster.duty_at(session, group, when)
        assert view["route"] == "on-duty"
        assert duty.primary is not None
        assert [s["target"] for s in view["chain"]] == [duty.primary, duty.backup, COORDINATOR]


def test_roster_resolver_routine_at_night_waits_for_next_opening(
    roster_driver: tuple[CallDriver, str, str],
) -> None:
    driver, _group, patient = roster_driver
    resolver = RosterDutyResolver(timedelta(minutes=5), 1)
    with driver.services.db.session() as session:
        friday_night = jst(2026, 4, 3, 20, 0)
        assert resolver.next_office_hours_start(session, CLINICS[0], friday_night) == jst(
            2026, 4, 4, 9, 0
        )  # Saturday morning hours
        lunch = jst(2026, 4, 1, 13, 0)
        assert resolver.next_office_hours_start(session, CLINICS[0], lunch) == jst(
            2026, 4, 1, 14, 0
        )
        golden_week = jst(2026, 5, 2, 14, 0)  # Saturday afternoon, then 5/3-5/6 holidays
        assert resolver.next_office_hours_start(session, CLINICS[0], golden_week) == jst(
            2026, 5, 7, 9, 0
        )
    driver.clock.set(jst(2026, 4, 1, 22, 0))
    view = driver.raise_call(patient=patient, priority="routine")
    assert view["state"] == "queued" and view["owner"] == DOCTORS[0]


def test_patient_directory_reads_primary_doctor_from_care_team(driver: CallDriver) -> None:
    with driver.services.db.session() as session:
        care = FhirPatientDirectory().primary_care(session, driver.net.patient_1)
        unknown = FhirPatientDirectory().primary_care(session, "Patient/none")
    assert (care.doctor, care.clinic) == (driver.net.doctor_a, driver.net.clinic_a)
    assert (unknown.doctor, unknown.clinic) == (None, None)


def test_sharing_duty_access_grant_release_and_end(driver: CallDriver) -> None:
    access = SharingDutyAccess()
    t0 = driver.clock.now()
    net = driver.net
    with driver.services.db.session(write=True) as s:
        access.grant(s, "c1", net.duty, net.patient_1, t0, t0 + timedelta(hours=1))
        access.grant(s, "c1", net.backup, net.patient_1, t0, t0 + timedelta(hours=1))
    assert driver.may_read(net.duty, net.clinic_b, net.patient_1)
    assert not driver.may_read(net.doctor_b, net.clinic_b, net.patient_1)  # not granted
    with driver.services.db.session(write=True) as s:
        access.release(s, "c1", net.duty, t0)
    assert not driver.may_read(net.duty, net.clinic_b, net.patient_1)
    assert driver.may_read(net.backup, net.clinic_b, net.patient_1)
    with driver.services.db.session(write=True) as s:
        access.end(s, "c1", t0)
    assert not driver.may_read(net.backup, net.clinic_b, net.patient_1)


def test_sharing_duty_access_expires_at_until(driver: CallDriver) -> None:
    t0 = driver.clock.now()
    net = driver.net
    with driver.services.db.session(write=True) as s:
        SharingDutyAccess().grant(s, "c1", net.duty, net.patient_1, t0, t0 + timedelta(hours=1))
    driver.clock.advance(minutes=61)
    assert not driver.may_read(net.duty, net.clinic_b, net.patient_1)


def test_roster_resolver_uses_the_groups_escalation_timings(
    services: Services, clock: ManualClock
) -> None:
    clock.set(jst(2026, 4, 1, 8, 0))
    seed_fhir(services)
    with services.db.session(write=True) as session:
        plain = roster_service.create_group(session, clock, OPERATOR, group_dict()).id
        timed = roster_service.create_group(
            session,
            clock,
            OPERATOR,
            group_dict(name="timed", escalation={"ack_timeout_minutes": 3, "max_rounds": 1}),
        ).id
    resolver = RosterDutyResolver(timedelta(minutes=7), 4)
    with services.db.session() as session:
        default = resolver.policy(session, plain, clock.now())
        own = resolver.policy(session, timed, clock.now())
    assert (default.ack_timeout, default.max_rounds) == (timedelta(minutes=7), 4)
    assert (own.ack_timeout, own.max_rounds, own.coordinator) == (
        timedelta(minutes=3),
        1,
        COORDINATOR,
    )
