"""Rest-hook delivery: signed POSTs, in eventNumber order, retried for at least 24 hours.

Each subscription is one ordered queue. A round claims due subscriptions with ``FOR UPDATE
SKIP LOCKED`` and leases them (``next_attempt_at`` moves ahead), so two processes never
send the same subscription's events at once; the HTTP calls happen outside any database
transaction. On failure the whole subscription backs off exponentially (5 s, 10 s, 20 s
... capped at 1 h) until it has failed for ``give_up_after`` (24 h by default); then it is
marked ``error`` with the reason. HAPI gives up after about a minute (#6002); we don't.

Receivers see each event number at least once and, when they answer 2xx, exactly once;
a retried notification carries the same numbers, so a duplicate is recognisable.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.clock import Clock
from renkei.fhir.policy import AccessPolicy
from renkei.notify import metrics
from renkei.notify.access import AccessChecker
from renkei.notify.models import subscription, subscription_event
from renkei.notify.subscriptions import (
    Notified,
    SubscriberResolver,
    load_notified,
    notification_bundle,
    set_status,
)
from renkei.store.db import Database
from renkei.store.repository import SqlRepository

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Renkei-Signature"


@dataclass(frozen=True)
class RestHookSettings:
    first_backoff: timedelta = timedelta(seconds=5)
    max_backoff: timedelta = timedelta(hours=1)
    give_up_after: timedelta = timedelta(hours=24)
    #: how long a claimed subscription is reserved for the process sending to it
    lease: timedelta = timedelta(seconds=60)
    #: notifications sent to one subscription per round (fairness)
    per_round: int = 50

    def __post_init__(self) -> None:
        if self.first_backoff <= timedelta(0) or self.max_backoff < self.first_backoff:
            raise ValueError("back-off must be positive and max_backoff >= first_backoff")
        if self.give_up_after < timedelta(hours=24):
            raise ValueError("rest-hook retries must last at least 24 hours")

    def backoff(self, attempts: int) -> timedelta:
        """Delay after the ``attempts``-th consecutive failure.

        >>> s = RestHookSettings()
        >>> [int(s.backoff(n).total_seconds()) for n in (1, 2, 3, 12, 40)]
        [5, 10, 20, 3600, 3600]
        """
        seconds = self.first_backoff.total_seconds() * (2 ** min(attempts - 1, 30))
        return min(timedelta(seconds=seconds), self.max_backoff)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: ``t=<unix seconds>,v1=<hex HMAC-SHA256>``.

    The MAC covers ``b"<t>." + body`` so a captured request can't be replayed later with a
    new timestamp. Receivers recompute it with the subscription's secret
    (docs/notifications.md has a receiver example).

    >>> sign("k", 1700000000, b"{}")
    't=1700000000,v1=c6ef4734033cee2367414a0939385eca0397754aa7a59716da7463a9298b5146'
    """
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes) -> bool:
    """Check a signature header as a receiver would (constant-time)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected, header)


@dataclass
class RoundReport:
    """What one :func:`deliver_due` round did (for tests, metrics and logs)."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    withheld: int = 0
    gave_up: list[str] = field(default_factory=list)


def deliver_due(
    db: Database,
    clock: Clock,
    http: httpx.Client,
    policy: AccessPolicy,
    resolve: SubscriberResolver,
    repo_factory: Callable[[Session], SqlRepository],
    settings: RestHookSettings | None = None,
    *,
    limit: int = 20,
) -> RoundReport:
    """Run one delivery round over every rest-hook subscription that is due."""
    settings = settings or RestHookSettings()
    report = RoundReport()
    for sub_id in _claim(db, clock, settings, limit):
        report.claimed += 1
        try:
            _serve(db, clock, http, policy, resolve, repo_factory, settings, sub_id, report)
        except Exception:  # one broken subscription must not stop the others
            log.exception("notify: rest-hook round failed for Subscription/%s", sub_id)
    return report


def _claim(db: Database, clock: Clock, settings: RestHookSettings, limit: int) -> list[str]:
    now = clock.now()
    has_pending = (
        sa.select(subscription_event.c.event_number)
        .where(
            subscription_event.c.subscription_id == subscription.c.id,
            subscription_event.c.status == "pending",
        )
        .exists()
    )
    with db.session(write=True) as session:
        stmt = (
            sa.select(subscription.c.id)
            .where(
                subscription.c.channel == "rest-hook",
                sa.or_(
                    subscription.c.next_attempt_at.is_(None), subscription.c.next_attempt_at <= now
                ),
                sa.or_(
                    subscription.c.status == "requested",
                    sa.and_(subscription.c.status == "active", has_pending),
                ),
            )
            .order_by(subscription.c.next_attempt_at)
            .limit(limit)
        )
        if not db.is_sqlite:
            stmt = stmt.with_for_update(skip_locked=True, of=subscription)
        ids = [r.id for r in session.execute(stmt)]
        if ids:
            session.execute(
                subscription.update()
                .where(subscription.c.id.in_(ids))
                .values(next_attempt_at=now + settings.lease)
            )
    return ids


def _serve(
    db: Database,
    clock: Clock,
    http: httpx.Client,
    policy: AccessPolicy,
    resolve: SubscriberResolver,
    repo_factory: Callable[[Session], SqlRepository],
    settings: RestHookSettings,
    sub_id: str,
    report: RoundReport,
) -> None:
    with db.session() as session:
        row = session.execute(sa.select(subscription).where(subscription.c.id == sub_id)).first()
    if row is None:
        return
    if row.status == "requested":
        _handshake(db, clock, http, repo_factory, row)
        return
    for _ in range(settings.per_round):
        with db.session() as session:
            row = session.execute(
                sa.select(subscription).where(subscription.c.id == sub_id)
            ).first()
            if row is None or row.status != "active":
                return
            pending = list(
                session.execute(
                    sa.select(subscription_event)
                    .where(
                        subscription_event.c.subscription_id == sub_id,
                        subscription_event.c.status == "pending",
                    )
                    .order_by(subscription_event.c.event_number)
                    .limit(row.max_count)
                )
            )
            if not pending:
                _release(db, sub_id)
                return
            checker = AccessChecker(session, policy, clock)
            items, withheld = load_notified(session, checker, resolve(row.owner), pending)
        if withheld:
            report.withheld += len(withheld)
            _mark(db, sub_id, withheld, "withheld", clock.now())
        if not items:
            continue
        now = clock.now()
        bundle = notification_bundle(row, "event-notification", now, items)
        error = _post(http, row, bundle, now, [i.number for i in items])
        if error is None:
            report.sent += 1
            _succeeded(db, clock, sub_id, items)
        else:
            report.failed += 1
            if _failed(db, clock, settings, repo_factory, sub_id, items, error):
                report.gave_up.append(sub_id)
            return
    _release(db, sub_id)


def _post(
    http: httpx.Client, row: Any, bundle: dict[str, Any], now: datetime, numbers: list[int]
) -> str | None:
    """POST one notification; None on 2xx, else a one-line reason."""
    body = orjson.dumps(bundle)
    headers = {
        "Content-Type": row.content_type,
        SIGNATURE_HEADER: sign(row.secret, int(now.timestamp()), body),
        "X-Renkei-Subscription": row.id,
        "X-Renkei-Event-Numbers": ",".join(str(n) for n in numbers),
    }
    for raw in row.headers or []:
        name, _, value = raw.partition(":")
        if name.strip().lower() not in ("content-type", SIGNATURE_HEADER.lower()):
            headers[name.strip()] = value.strip()
    try:
        resp = http.post(row.endpoint, content=body, headers=headers)
    except httpx.HTTPError as exc:
        metrics.RESTHOOK_FAILURES.labels(reason="network").inc()
        return f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= resp.status_code < 300:
        return None
    metrics.RESTHOOK_FAILURES.labels(reason="status").inc()
    return f"endpoint answered HTTP {resp.status_code}"


def _handshake(
    db: Database,
    clock: Clock,
    http: httpx.Client,
    repo_factory: Callable[[Session], SqlRepository],
    row: Any,
) -> None:
    """channels.html#rest-hook: a failed handshake puts the subscription in error."""
    now = clock.now()
    bundle = notification_bundle(row, "handshake", now)
    error = _post(http, row, bundle, now, [])
    with db.session(write=True) as session:
        if error is None:
            set_status(session, repo_factory(session), row.id, "active")
            session.execute(
                subscription.update()
                .where(subscription.c.id == row.id)
                .values(next_attempt_at=None, last_delivered_at=now)
            )
        else:
            set_status(
                session, repo_factory(session), row.id, "error", f"handshake failed: {error}"
            )


def _mark(db: Database, sub_id: str, numbers: list[int], status: str, now: datetime) -> None:
    with db.session(write=True) as session:
        session.execute(
            subscription_event.update()
            .where(
                subscription_event.c.subscription_id == sub_id,
                subscription_event.c.event_number.in_(numbers),
            )
            .values(status=status, delivered_at=now if status == "delivered" else None)
        )


def _succeeded(db: Database, clock: Clock, sub_id: str, items: list[Notified]) -> None:
    now = clock.now()
    with db.session(write=True) as session:
        session.execute(
            subscription_event.update()
            .where(
                subscription_event.c.subscription_id == sub_id,
                subscription_event.c.event_number.in_([i.number for i in items]),
            )
            .values(
                status="delivered",
                delivered_at=now,
                attempts=subscription_event.c.attempts + 1,
            )
        )
        session.execute(
            subscription.update()
            .where(subscription.c.id == sub_id)
            .values(attempts=0, failing_since=None, last_delivered_at=now)
        )
    for item in items:
        metrics.DELIVERY_LAG.labels(channel="rest-hook").observe(
            max(0.0, (now - item.event.occurred_at).total_seconds())
        )
    metrics.DELIVERED.labels(channel="rest-hook").inc(len(items))


def _failed(
    db: Database,
    clock: Clock,
    settings: RestHookSettings,
    repo_factory: Callable[[Session], SqlRepository],
    sub_id: str,
    items: list[Notified],
    error: str,
) -> bool:
    """Record a failure; True if the subscription has now been given up (status error)."""
    now = clock.now()
    with db.session(write=True) as session:
        row = session.execute(sa.select(subscription).where(subscription.c.id == sub_id)).first()
        if row is None:
            return False
        failing_since = row.failing_since or now
        attempts = int(row.attempts) + 1
        session.execute(
            subscription_event.update()
            .where(
                subscription_event.c.subscription_id == sub_id,
                subscription_event.c.event_number.in_([i.number for i in items]),
            )
            .values(attempts=subscription_event.c.attempts + 1, last_error=error)
        )
        if now - failing_since >= settings.give_up_after:
            reason = (
                f"rest-hook deliveries failing since {failing_since.isoformat()} "
                f"({attempts} attempts); last error: {error}"
            )
            set_status(session, repo_factory(session), sub_id, "error", reason)
            session.execute(
                subscription_event.update()
                .where(
                    subscription_event.c.subscription_id == sub_id,
                    subscription_event.c.status == "pending",
                )
                .values(status="failed")
            )
            session.execute(
                subscription.update()
                .where(subscription.c.id == sub_id)
                .values(next_attempt_at=None, attempts=attempts)
            )
            log.warning("notify: Subscription/%s given up: %s", sub_id, reason)
            return True
        session.execute(
            subscription.update()
            .where(subscription.c.id == sub_id)
            .values(
                attempts=attempts,
                failing_since=failing_since,
                next_attempt_at=now + settings.backoff(attempts),
            )
        )
    return False


def _release(db: Database, sub_id: str) -> None:
    """End the lease: the subscription is due again as soon as it has pending events."""
    with db.session(write=True) as session:
        session.execute(
            subscription.update()
            .where(subscription.c.id == sub_id, subscription.c.failing_since.is_(None))
            .values(next_attempt_at=None)
        )


__all__ = ["SIGNATURE_HEADER", "RestHookSettings", "RoundReport", "deliver_due", "sign", "verify"]
