"""The worker: failing steps back off and retry, stale pages are not phoned, two workers."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.calls import run_once
from renkei.calls.models import call, call_delivery, call_event
from renkei.calls.ports import BusEvent, TimelineNotifier
from tests.calls_support import CallDriver, jst


@dataclass
class FlakyNotifier:
    """Fails the next ``failures`` page publications (a broken bus), then works."""

    failures: int = 0
    seen: list[str] = field(default_factory=list)

    def publish(self, session: Session, event: BusEvent) -> None:
        if event.topic == "urgent-call.page" and self.failures > 0:
            self.failures -= 1
            raise RuntimeError("bus down")
        self.seen.append(event.key)
        TimelineNotifier().publish(session, event)


def test_run_once_failing_step_rolls_back_backs_off_and_retries(driver: CallDriver) -> None:
    driver.clock.set(jst(2026, 4, 1, 23, 0))
    call_id = driver.raise_call()["id"]
    flaky = FlakyNotifier(failures=1)
    driver.runtime.ports.notifier = flaky
    report = driver.advance(minutes=5)
    assert report.errors == 1 and report.steps == 0
    view = driver.call(call_id)
    assert view["owner"] == driver.net.duty  # nothing of the failed step was kept
    assert driver.paged(call_id) == [driver.net.duty]
    with driver.services.db.session() as s:
        attempts = s.execute(sa.select(call.c.attempts).where(call.c.id == call_id)).scalar_one()
    assert attempts == 1
    report = driver.advance(seconds=2)
    assert report.steps == 1
    assert driver.paged(call_id) == [driver.net.duty, driver.net.backup]


def test_deliver_due_skips_pages_of_steps_that_are_over(driver: CallDriver) -> None:
    driver.clock.set(jst(2026, 4, 1, 23, 0))
    driver.channel.fail_next = 100  # the gateway is down during the first step
    call_id = driver.raise_call()["id"]
    driver.advance(minutes=5)  # escalated to the back-up meanwhile
    driver.channel.fail_next = 0
    driver.advance(minutes=1)
    keys = [d.dedup_key for d in driver.channel.sent]
    assert keys == [f"{call_id}:2:page:recording"]  # the stale page for step 1 was dropped
    with driver.services.db.session() as s:
        undelivered = s.execute(
            sa.select(call_delivery.c.pk).where(call_delivery.c.delivered_at.is_(None))
        ).all()
    assert undelivered == []


def test_two_workers_in_threads_never_run_a_step_twice(driver: CallDriver) -> None:
    """SKIP LOCKED row locks on PostgreSQL; the single write lock (BEGIN IMMEDIATE) on SQLite."""
    driver.clock.set(jst(2026, 4, 1, 23, 0))
    ids = [driver.raise_call(callback=None)["id"] for _ in range(30)]
    driver.clock.advance(minutes=5)
    reports = []

    def work() -> None:
        reports.append(run_once(driver.services.db.session, driver.clock, driver.runtime))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.steps for r in reports) == 30
    assert sum(r.conflicts for r in reports) == 0
    with driver.services.db.session() as s:
        escalated = s.execute(
            sa.select(sa.func.count())
            .select_from(call_event)
            .where(call_event.c.kind == "escalated")
        ).scalar_one()
    assert escalated == 30
    assert all(driver.call(i)["owner"] == driver.net.backup for i in ids)
