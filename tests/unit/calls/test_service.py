"""Urgent-call scenarios with an injected clock, on SQLite and PostgreSQL (issue 7)."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa

from renkei.calls.errors import CallNotFound, InvalidTransition, NotPermitted
from renkei.calls.escalation import FAILED_MESSAGE
from renkei.calls.models import call_delivery
from tests.calls_support import CallDriver, jst, principal_for


def test_create_call_weekday_office_hours_goes_to_primary_doctor(driver: CallDriver) -> None:
    view = driver.raise_call()
    net = driver.net
    assert view["state"] == "notifying"
    assert view["owner"] == net.doctor_a
    assert view["route"] == "office-hours"
    assert [s["target"] for s in view["chain"]] == [net.doctor_a, net.coordinator]
    task = driver.task(view["id"])
    assert task["owner"]["reference"] == net.doctor_a
    assert task["status"] == "requested"
    assert task["businessStatus"]["coding"][0]["code"] == "notifying"
    assert driver.kinds(view["id"]) == ["created", "routed", "notified"]


def test_create_call_weekday_night_goes_to_on_duty_doctor(driver: CallDriver) -> None:
    driver.clock.set(jst(2026, 4, 1, 23, 30))
    view = driver.raise_call()
    net = driver.net
    assert view["route"] == "on-duty"
    assert view["owner"] == net.duty
    assert [s["target"] for s in view["chain"]] == [net.duty, net.backup, net.coordinator]
    page = driver.notifier.events[0]
    assert page.topic == "urgent-call.page" and page.recipients == (net.duty,)
    assert page.payload["call"]["patient_summary"].endswith(f"/fhir/{net.patient_1}/$summary")


def test_create_call_national_holiday_daytime_goes_to_on_duty(driver: CallDriver) -> None:
    driver.clock.set(jst(2026, 4, 29, 11, 0))  # 昭和の日, a Wednesday
    view = driver.raise_call()
    assert view["route"] == "on-duty"
    assert view["owner"] == driver.net.duty


def test_no_ack_in_five_minutes_escalates_to_backup(driver: CallDriver) -> None:
    driver.clock.set(jst(2026, 4, 1, 23, 0))
    call_id = driver.raise_call()["id"]
    driver.advance(minutes=4, seconds=59)
    assert driver.call(call_id)["owner"] == driver.net.duty
    driver.advance(seconds=1)
    view = driver.call(call_id)
    assert view["owner"] == driver.net.backup
    assert driver.task(call_id)["owner"]["reference"] == driver.net.backup
    assert driver.paged(call_id) == [driver.net.duty, driver.net.backup]
    escalated = [e for e in view["timeline"] if e["kind"] == "escalated"]
    assert escalated[0]["detail"]["cause"] == "timeout"


def test_nobody_answers_fails_and_requester_is_told(driver: CallDriver) -> None:
    driver.clock.set(jst(2026, 4, 1, 23, 0))
    call_id = driver.raise_call()["id"]
    for _ in range(3):
        driver.advance(minutes=5)
    view = driver.call(call_id)
    net = driver.net
    assert view["state"] == "failed"
    assert driver.paged(call_id) == [net.duty, net.backup, net.coordinator]
    assert driver.kinds(call_id)[-2:] == ["failed", "requester_told"]
    task = driver.task(call_id)
    assert task["status"] == "failed"
    assert "119" in task["statusReason"]["text"]
    told = [e for e in driver.notifier.events if e.topic == "urgent-call.failed"]
    assert told and net.nurse in told[0].recipients
    failed_sms = [d for d in driver.channel.sent if d.payload["type"] == "urgent-call.failed"]
    assert len(failed_sms) == 1
    assert failed_sms[0].payload["message"] == FAILED_MESSAGE
    assert {"system": "phone", "value": "090-9999-0000"} in failed_sms[0].payload["recipient"][
        "telecom"
    ]
    # and nothing happens any more
    driver.advance(hours=1)
    assert driver.kinds(call_id)[-1] == "requester_told"


def test_repeats_are_bounded_by_max_rounds(driver: CallDriver) -> None:
    driver.use_roster(rounds=2)
    driver.clock.set(jst(2026, 4, 1, 23, 0))
    call_id = driver.raise_call()["id"]
    for _ in range(6):
        driver.advance(minutes=5)
    net = driver.net
    assert driver.paged(call_id) == [net.duty, net.backup, net.coordinator] * 2
    assert driver.call(call_id)["state"] == "failed"


def test_reject_escalates_immediately(driver: CallDriver) -> None:
    driver.clock.set(jst(2026, 4, 1, 23, 0))
    call_id = driver.raise_call()["id"]
    net = driver.net
    view = driver.act(call_id, principal_for(net.duty), "reject", reason="往診中で動けない")
    assert view["owner"] == net.backup
    assert view["state"] == "notifying"
    assert driver.paged(call_id) == [net.duty, net.backup]
    kinds = driver.kinds(call_id)
    assert kinds[-3:] == ["rejected", "escalated", "notified"]


def test_routine_call_at_night_is_queued_for_nine(driver: CallDriver) -> None:
    driver.clock.set(jst(2026, 4, 1, 22, 0))
    view = driver.raise_call(priority="routine")
    net = driver.net
    assert view["state"] == "queued"
    assert view["owner"] == net.doctor_a
    assert datetime.fromisoformat(view["step"]["due_at"]) == jst(2026, 4, 2, 9, 0)
    assert [e.topic for e in driver.notifier.events] == ["urgent-call.update"]  # nobody paged
    driver.clock.set(jst(2026, 4, 2, 8, 59))
    driver.run()
    assert driver.call(view["id"])["state"] == "queued"
    driver.clock.set(jst(2026, 4, 2, 9, 0))
    driver.run()
    after = driver.call(view["id"])
    assert after["state"] == "notifying" and after["route"] == "office-hours"
    assert driver.paged(view["id"]) == [net.doctor_a]


def test_acknowledge_stops_escalation(driver: CallDriver) -> None:
    driver.clock.set(jst(2026, 4, 1, 23, 0))
    call_id = driver.raise_call()["id"]
    doc = principal_for(driver.net.duty)
    view = driver.act(call_id, doc, "acknowledge", step=1)
    assert view["state"] == "acknowledged"
    assert driver.task(call_id)["status"] == "received"
    driver.advance(minutes=30)
    assert driver.paged(call_id) == [driver.net.duty]
    driver.act(call_id, doc, "accept")
    view = driver.act(call_id, doc, "resolve", outcome="visit", note="往診し酸素投与")
    assert view["state"] == "resolved"
    task = driver.task(call_id)
    assert task["status"] == "completed"
    assert task["output"][0]["valueCodeableConcept"]["coding"][0]["code"] == "visit"
    assert driver.kinds(call_id) == [
        "created", "routed", "notified", "acknowledged", "accepted", "resolved"
    ]  # fmt: skip


def test_acknowledge_by_someone_else_is_refused(driver: CallDriver) -> None:
    call_id = driver.raise_call()["id"]
    with pytest.raises(NotPermitted):  # the coordinator is in the chain, but not paged yet
        driver.act(call_id, principal_for(driver.net.coordinator), "acknowledge")
    with pytest.raises(CallNotFound):  # not involved at all: the call is not even shown
        driver.act(call_id, principal_for(driver.net.doctor_b), "acknowledge")


def test_acknowledge_of_a_step_that_is_over_is_a_conflict(driver: CallDriver) -> None:
    driver.clock.set(jst(2026, 4, 1, 23, 0))
    call_id = driver.raise_call()["id"]
    driver.advance(minutes=5)
    with pytest.raises(NotPermitted):
        driver.act(call_id, principal_for(driver.net.duty), "acknowledge", step=1)
    with pytest.raises(InvalidTransition):
        driver.act(call_id, principal_for(driver.net.backup), "acknowledge", step=1)


def test_handover_pages_the_new_doctor_and_continues_the_chain(driver: CallDriver) -> None:
    driver.clock.set(jst(2026, 4, 1, 23, 0))
    call_id = driver.raise_call()["id"]
    net = driver.net
    driver.act(call_id, principal_for(net.duty), "acknowledge")
    view = driver.act(call_id, principal_for(net.duty), "handover", to=net.other, note="近い")
    assert view["owner"] == net.other and view["state"] == "notifying"
    driver.advance(minutes=5)  # the new doctor does not answer: back to the chain
    assert driver.call(call_id)["owner"] == net.backup
    assert driver.paged(call_id) == [net.duty, net.other, net.backup]


def test_cancel_by_requester_closes_the_call(driver: CallDriver) -> None:
    nurse = principal_for(driver.net.nurse)
    call_id = driver.raise_call(by=nurse)["id"]
    with pytest.raises(NotPermitted):
        driver.act(call_id, principal_for(driver.net.doctor_a), "cancel")
    view = driver.act(call_id, nurse, "cancel", reason="救急搬送済み")
    assert view["state"] == "cancelled"
    assert driver.task(call_id)["status"] == "cancelled"
    with pytest.raises(InvalidTransition):
        driver.act(call_id, principal_for(driver.net.doctor_a), "acknowledge")


def test_uncovered_patient_goes_to_primary_doctor_with_warning(driver: CallDriver) -> None:
    driver.clock.set(jst(2026, 4, 1, 23, 0))
    view = driver.raise_call(patient=driver.net.patient_2)
    assert view["route"] == "uncovered"
    assert view["owner"] == driver.net.doctor_b
    assert "not covered" in view["warning"]


def test_create_call_is_idempotent_with_a_key(driver: CallDriver) -> None:
    first = driver.raise_call(key="abc-1")
    again = driver.raise_call(key="abc-1")
    other = driver.raise_call(key="abc-2")
    assert again["id"] == first["id"]
    assert other["id"] != first["id"]
    assert driver.paged(first["id"]) == [driver.net.doctor_a]


def test_duty_access_is_granted_to_paged_doctor_and_ended_at_close(driver: CallDriver) -> None:
    driver.clock.set(jst(2026, 4, 1, 23, 0))
    net = driver.net  # the duty doctor works at clinic B, which does not share patient 1
    assert not driver.may_read(net.duty, net.clinic_b, net.patient_1)
    call_id = driver.raise_call()["id"]
    assert driver.may_read(net.duty, net.clinic_b, net.patient_1)
    assert not driver.may_read(net.doctor_b, net.clinic_b, net.patient_1)
    driver.act(call_id, principal_for(net.duty), "resolve", outcome="phone-advice")
    assert not driver.may_read(net.duty, net.clinic_b, net.patient_1)


def test_handover_ends_the_previous_holders_duty_access(driver: CallDriver) -> None:
    driver.clock.set(jst(2026, 4, 1, 23, 0))
    net = driver.net
    call_id = driver.raise_call()["id"]
    driver.act(call_id, principal_for(net.duty), "handover", to=net.doctor_b)
    assert driver.may_read(net.doctor_b, net.clinic_b, net.patient_1)
    assert not driver.may_read(net.duty, net.clinic_b, net.patient_1)
    driver.act(call_id, principal_for(net.doctor_b), "reject", reason="往診中")
    assert not driver.may_read(net.doctor_b, net.clinic_b, net.patient_1)
    assert driver.call(call_id)["owner"] == net.backup  # the chain went on: back-up paged


def test_outbound_page_is_delivered_once_per_step_and_retried(driver: CallDriver) -> None:
    driver.clock.set(jst(2026, 4, 1, 23, 0))
    driver.channel.fail_next = 1
    call_id = driver.raise_call()["id"]
    report = driver.run()
    assert report.delivery_failures == 1 and driver.channel.sent == []
    driver.advance(seconds=3)
    assert [d.dedup_key for d in driver.channel.sent] == [f"{call_id}:1:page:recording"]
    assert driver.channel.sent[0].payload["recipient"]["telecom"][0]["value"] == "090-0000-0003"
    driver.advance(seconds=30)
    assert len(driver.channel.sent) == 1
    with driver.services.db.session() as s:
        rows = s.execute(sa.select(call_delivery.c.attempts, call_delivery.c.delivered_at)).all()
    assert [(r.attempts, r.delivered_at is not None) for r in rows] == [(2, True)]


def test_self_check_reports_overdue_calls_once_per_step(driver: CallDriver) -> None:
    from renkei.calls import service

    driver.clock.set(jst(2026, 4, 1, 23, 0))
    call_id = driver.raise_call()["id"]
    driver.clock.advance(minutes=10)  # the worker did not run: the step is overdue
    with driver.services.db.session(write=True) as s:
        report = service.self_check(driver.runtime, s, driver.clock)
    assert report["count"] == 1 and report["overdue"][0]["id"] == call_id
    with driver.services.db.session(write=True) as s:
        service.self_check(driver.runtime, s, driver.clock)
    overdue = [e for e in driver.notifier.events if e.topic == "urgent-call.overdue"]
    assert len(overdue) == 1 and overdue[0].recipients == (driver.net.coordinator,)
    assert service.OVERDUE._value.get() == 1
    driver.run()  # the worker catches up: no longer overdue
    with driver.services.db.session(write=True) as s:
        assert service.self_check(driver.runtime, s, driver.clock)["count"] == 0


def test_the_call_list_finds_the_callers_calls_behind_newer_ones_of_others(
    driver: CallDriver,
) -> None:
    """The list's limit applies to what the caller may see, not to all calls."""
    from renkei.calls import service

    driver.clock.set(jst(2026, 4, 1, 23, 0))
    nurse, other = principal_for(driver.net.nurse), principal_for(driver.net.other)
    mine = driver.raise_call(by=nurse)["id"]
    theirs = []
    for minute in range(1, 4):
        driver.clock.set(jst(2026, 4, 1, 23, minute))
        theirs.append(driver.raise_call(by=other)["id"])

    def listed(who: object, limit: int = 2, **kw: object) -> list[str]:
        with driver.services.db.session() as session:
            calls = service.list_calls(session, who, state=None, mine=False, limit=limit, **kw)  # type: ignore[arg-type]
        return [c["id"] for c in calls]

    assert listed(nurse) == [mine]
    assert listed(other) == [theirs[2], theirs[1]]  # newest first
    # the backup is in every chain (not yet paged): may see all four
    assert listed(principal_for(driver.net.backup), limit=10) == [*reversed(theirs), mine]
    # a coordinator of the clinic the calls were routed for sees them; of another, none
    coordinator = principal_for(driver.net.doctor_a, driver.net.clinic_a, role="coordinator")
    assert len(listed(coordinator, limit=10)) == 4
    elsewhere = principal_for(driver.net.doctor_b, driver.net.clinic_b, role="coordinator")
    assert listed(elsewhere, limit=10) == []
