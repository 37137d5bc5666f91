"""The worker: durable timers driven from the database, safe to run in every replica.

Nothing is scheduled in memory. A step is due when its ``call.next_due_at`` has passed; a
worker claims one due call at a time with ``SELECT ... FOR UPDATE SKIP LOCKED`` (SQLite:
one writer at a time), runs the step and commits in the same transaction. Killed before the
commit, the step is simply still due and runs once after restart; killed after, it is
done. Two workers never hold the same row, and a second "notified" event for the same step
would violate ``uq_call_event_step``, so nobody is paged twice for one step.

Outbound deliveries (webhook) leave through ``call_delivery``: a worker leases due rows in
one short transaction, sends them outside it, and marks them sent in another. A crash
between the two re-sends after the lease expires: at least once, with a stable dedup key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.exc import IntegrityError, OperationalError

from renkei.calls.channels import ChannelError, Delivery
from renkei.calls.escalation import FINAL_STATES, TIMED_STATES
from renkei.calls.models import call, call_delivery
from renkei.calls.service import (
    STEP_CONFLICTS,
    STEP_ERRORS,
    CallRuntime,
    SessionFactory,
    backoff_step,
    claim_due,
    run_step,
    self_check,
)
from renkei.clock import Clock

log = logging.getLogger(__name__)

DELIVERIES = Counter("renkei_calls_deliveries", "Outbound call deliveries", ["channel", "result"])

#: a leased delivery is retried after this if its sender died
DELIVERY_LEASE = timedelta(seconds=30)
#: a delivery is given up (and logged as an error) after this many attempts
DELIVERY_MAX_ATTEMPTS = 20


@dataclass
class WorkerReport:
    steps: int = 0
    conflicts: int = 0
    errors: int = 0
    delivered: int = 0
    delivery_failures: int = 0
    overdue: int | None = None


def run_once(
    session_factory: SessionFactory,
    clock: Clock,
    runtime: CallRuntime,
    *,
    max_steps: int = 500,
    check: bool = True,
) -> WorkerReport:
    """Run every due step (one transaction each), send due deliveries, then self-check."""
    report = WorkerReport()
    steps = max_steps if _anything_due(session_factory, clock) else 0
    for _ in range(steps):
        outcome = _one_step(session_factory, clock, runtime)
        if outcome is None:
            break
        if outcome == "ok":
            report.steps += 1
        elif outcome == "conflict":
            report.conflicts += 1
        else:
            report.errors += 1
    sent, failed = deliver_due(session_factory, clock, runtime)
    report.delivered, report.delivery_failures = sent, failed
    if check:
        with session_factory(write=True) as session:
            report.overdue = self_check(runtime, session, clock)["count"]
    return report


def _anything_due(session_factory: SessionFactory, clock: Clock) -> bool:
    """A read-only look first, so an idle worker never takes SQLite's write lock."""
    with session_factory() as session:
        row = session.execute(
            sa.select(call.c.id)
            .where(call.c.state.in_(sorted(TIMED_STATES)), call.c.next_due_at <= clock.now())
            .limit(1)
        ).first()
    return row is not None


def _one_step(session_factory: SessionFactory, clock: Clock, rt: CallRuntime) -> str | None:
    claimed: tuple[str, int] | None = None
    now = clock.now()
    try:
        with session_factory(write=True) as session:
            row = claim_due(session, now)
            if row is None:
                return None
            claimed = (row.id, row.step_seq)
            run_step(rt, session, now, row)
        return "ok"
    except IntegrityError:
        # Only possible if two workers ran one step: the database refused the second.
        STEP_CONFLICTS.inc()
        log.error("call step %s was already recorded; not run twice", claimed)
        result = "conflict"
    except Exception:
        STEP_ERRORS.inc()
        log.exception("call step %s failed; retrying with back-off", claimed)
        result = "error"
    if claimed is not None:
        try:
            with session_factory(write=True) as session:
                backoff_step(session, now, *claimed)
        except Exception:
            log.exception("could not postpone call step %s", claimed)
    return result


def deliver_due(
    session_factory: SessionFactory, clock: Clock, rt: CallRuntime, *, batch: int = 50
) -> tuple[int, int]:
    """Send due outbound deliveries; (sent, failed)."""
    if not rt.channels:
        return 0, 0
    now = clock.now()
    with session_factory(write=True) as session:
        rows = session.execute(
            sa.select(call_delivery, call.c.state, call.c.step_seq)
            .join(call, call.c.id == call_delivery.c.call_id)
            .where(
                call_delivery.c.delivered_at.is_(None),
                call_delivery.c.gave_up_at.is_(None),
                call_delivery.c.next_attempt_at <= now,
            )
            .order_by(call_delivery.c.pk)
            .limit(batch)
            .with_for_update(of=call_delivery, skip_locked=True)
        ).all()
        for row in rows:
            session.execute(
                call_delivery.update()
                .where(call_delivery.c.pk == row.pk)
                .values(next_attempt_at=now + DELIVERY_LEASE, attempts=row.attempts + 1)
            )
    sent = failed = 0
    results: list[tuple[int, str | None, int]] = []
    for row in rows:
        channel = rt.channels.get(row.channel)
        if channel is None:
            results.append((row.pk, f"no channel {row.channel!r} configured", row.attempts + 1))
            failed += 1
            continue
        if _stale_page(row):
            results.append((row.pk, None, row.attempts + 1))
            DELIVERIES.labels(row.channel, "stale").inc()
            continue
        try:
            channel.send(Delivery(row.dedup_key, dict(row.payload)))
            results.append((row.pk, None, row.attempts + 1))
            DELIVERIES.labels(row.channel, "sent").inc()
            sent += 1
        except ChannelError as exc:
            results.append((row.pk, str(exc), row.attempts + 1))
            DELIVERIES.labels(row.channel, "failed").inc()
            failed += 1
    if results:
        _settle(session_factory, clock.now(), results)
    return sent, failed


def _stale_page(row: Any) -> bool:
    """A page whose step is over (the call moved on or closed) is not phoned any more."""
    payload = dict(row.payload)
    if payload.get("type") != "urgent-call.page":
        return False
    seq = (payload.get("step") or {}).get("seq")
    return row.state in FINAL_STATES or (seq is not None and seq != row.step_seq)


def _settle(
    session_factory: SessionFactory, now: datetime, results: list[tuple[int, str | None, int]]
) -> None:
    with session_factory(write=True) as session:
        for pk, error, attempts in results:
            if error is None:
                values: dict[str, object] = {"delivered_at": now, "last_error": None}
            elif attempts >= DELIVERY_MAX_ATTEMPTS:
                log.error("giving up delivery %s after %s attempts: %s", pk, attempts, error)
                values = {"gave_up_at": now, "last_error": error}
            else:
                delay = timedelta(seconds=min(2**attempts, 300))
                values = {"next_attempt_at": now + delay, "last_error": error}
            session.execute(call_delivery.update().where(call_delivery.c.pk == pk).values(**values))


class Worker:
    """The background loop of one process (started in the app lifespan)."""

    def __init__(self, session_factory: SessionFactory, clock: Clock, runtime: CallRuntime) -> None:
        self.session_factory = session_factory
        self.clock = clock
        self.runtime = runtime
        self._stop = asyncio.Event()
        self._last_check: datetime | None = None

    def tick(self) -> WorkerReport:
        now = self.clock.now()
        every = self.runtime.settings.self_check_every
        check = self._last_check is None or now - self._last_check >= every
        if check:
            self._last_check = now
        return run_once(self.session_factory, self.clock, self.runtime, check=check)

    async def run(self) -> None:
        from starlette.concurrency import run_in_threadpool

        poll = self.runtime.settings.poll_seconds
        while not self._stop.is_set():
            try:
                await run_in_threadpool(self.tick)
            except OperationalError:
                log.warning("calls worker: database unavailable; retrying", exc_info=True)
            except Exception:
                log.exception("calls worker tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=poll)

    def stop(self) -> None:
        self._stop.set()


__all__ = ["DELIVERIES", "Worker", "WorkerReport", "deliver_due", "run_once"]
