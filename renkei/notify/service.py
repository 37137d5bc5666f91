"""The notifier of one process: sequencer, rest-hook worker, fan-out bus and websocket hub.

Built once in ``create_app``'s ``build_services``; started and stopped by the app lifespan.
Everything that may run in several processes at once is safe to: the sequencer serialises
on a PostgreSQL advisory lock, rest-hook claims use ``FOR UPDATE SKIP LOCKED`` and a lease.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.orm import Session

from renkei.clock import Clock
from renkei.fhir.context import RequestContext
from renkei.fhir.engine import FhirEngine
from renkei.fhir.outcome import BadRequest, InvalidResource
from renkei.notify import metrics, retention
from renkei.notify.access import AccessChecker, principal_from_snapshot
from renkei.notify.bus import Bus, InProcessBus, PostgresBus, RedisBus
from renkei.notify.errors import InvalidSubscription, NotifyError, UnknownTopic
from renkei.notify.hub import Hub, HubSettings
from renkei.notify.models import subscription_event
from renkei.notify.outbox import (
    SequencedEvent,
    has_pending,
    head_position,
    make_write_listener,
    pending_count,
    register_waker,
    sequence_pending,
    unregister_waker,
)
from renkei.notify.resthook import RestHookSettings, RoundReport, deliver_due
from renkei.notify.subscriptions import SubscriberResolver, match_events, register_write
from renkei.store.db import Database
from renkei.store.repository import StoredResource

log = logging.getLogger(__name__)
#: outbox rows a sequencer round takes at most; a shorter round means it has caught up
SEQUENCE_BATCH = 1000

#: verifies an access token for the websocket; None means "not valid (any more)"
TokenVerifier = Callable[[str], Any]


@dataclass(frozen=True)
class NotifyConfig:
    """Tunables; the defaults are production values."""

    hub: HubSettings = field(default_factory=HubSettings)
    resthook: RestHookSettings = field(default_factory=RestHookSettings)
    #: run the sequencer / rest-hook worker threads (tests may drive them by hand)
    run_sequencer: bool = True
    run_resthook: bool = True
    #: safety-net polling when no bus message or commit hook arrives
    poll_seconds: float = 0.5
    #: the sequencer starts a round at most this often; the first commit after a quiet
    #: spell is sequenced at once, the commits of a busy spell wait up to this long and
    #: share a round (a round costs about as much for 1 event as for 20)
    gather_seconds: float = 0.01
    resthook_poll_seconds: float = 1.0
    #: sequenced events older than this are deleted once settled (renkei.notify.retention);
    #: None keeps them for ever
    retention: timedelta | None = timedelta(days=7)
    retention_every_seconds: float = 3600.0
    binding_token_ttl: timedelta = timedelta(minutes=5)
    #: "auto": PostgreSQL LISTEN/NOTIFY on PG, Redis if a URL is set, else in-process
    bus: str = "auto"
    redis_url: str | None = None

    def __post_init__(self) -> None:
        if self.bus not in ("auto", "inprocess", "postgres", "redis"):
            raise ValueError("bus is one of auto, inprocess, postgres, redis")
        if self.bus == "redis" and not self.redis_url:
            raise ValueError("the redis bus needs redis_url")


class NotifyService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        engine: FhirEngine,
        config: NotifyConfig | None = None,
        *,
        http: httpx.Client | None = None,
        token_verifier: TokenVerifier | None = None,
        resolve_subscriber: SubscriberResolver = principal_from_snapshot,
    ) -> None:
        self.db = db
        self.clock = clock
        self.engine = engine
        self.config = config or NotifyConfig()
        self.http = http or httpx.Client(timeout=10.0, follow_redirects=False)
        self.token_verifier = token_verifier
        self.resolve_subscriber = resolve_subscriber
        self.bus = self._make_bus()
        self.hub = Hub(
            db,
            engine.policy,
            clock,
            self._resolve,
            self.config.hub,
            reauthenticate=self._reauthenticate,
        )
        self._wake_sequencer = threading.Event()
        self._wake_resthook = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False

    # -- wiring ---------------------------------------------------------------------------

    def install(self, engine: FhirEngine) -> None:
        """Add the outbox and Subscription listeners and the FHIR operations to the engine."""
        from renkei.notify.operations import register_operations

        engine.write_listeners.append(make_write_listener(self.clock))
        engine.write_listeners.append(self._subscription_listener)
        register_operations(engine, self)

    def _subscription_listener(
        self, session: Session, ctx: RequestContext, stored: StoredResource
    ) -> None:
        if stored.res_type != "Subscription":
            return
        try:
            register_write(session, self.clock, ctx, stored)
        except UnknownTopic as exc:
            raise InvalidResource(str(exc), expression=("Subscription.criteria",)) from exc
        except InvalidSubscription as exc:
            expr = (exc.expression,) if exc.expression else ()
            raise InvalidResource(str(exc), expression=expr) from exc
        except NotifyError as exc:
            raise BadRequest(str(exc)) from exc
        self._wake_resthook.set()

    def _resolve(self, owner: dict[str, Any] | None) -> Any:
        return self.resolve_subscriber(owner)

    def _reauthenticate(self, token: str) -> Any:
        return self.token_verifier(token) if self.token_verifier else None

    def _make_bus(self) -> Bus:
        kind = self.config.bus
        if kind == "auto":
            if self.config.redis_url:
                kind = "redis"
            elif not self.db.is_sqlite:
                kind = "postgres"
            else:
                kind = "inprocess"
        #: how this process hears of other processes' events: redis, postgres or inprocess
        self.bus_kind = kind
        if kind == "redis":
            assert self.config.redis_url
            return RedisBus(self.config.redis_url)
        if kind == "postgres":
            return PostgresBus(self.db.url)
        return InProcessBus()

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._stop.clear()
        await self.hub.start()
        self.bus.start(self.hub.announce)
        register_waker(self.db.engine, self._wake_sequencer.set)
        if self.config.run_sequencer:
            self._spawn(self._sequencer_loop, "notify-sequencer")
        if self.config.run_resthook:
            self._spawn(self._resthook_loop, "notify-resthook")
        if self.config.run_sequencer and self.config.retention is not None:
            self._spawn(self._retention_loop, "notify-retention")
        self._wake_sequencer.set()

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        unregister_waker(self.db.engine, self._wake_sequencer.set)
        self._stop.set()
        self._wake_sequencer.set()
        self._wake_resthook.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        self.bus.stop()
        await self.hub.stop()

    def close(self) -> None:
        self.http.close()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- the sequencer --------------------------------------------------------------------

    def sequence_once(self, *, probe: bool = True) -> list[SequencedEvent]:
        """Sequence what is committed, match subscriptions, announce; return the events."""
        out: list[SequencedEvent] = []
        counter = {"matched": 0}

        def _match(session: Session, events: list[SequencedEvent]) -> None:
            checker = AccessChecker(session, self.engine.policy, self.clock)
            counter["matched"] += match_events(session, checker, self._resolve, events)

        while True:
            if probe:
                with self.db.session() as session:
                    if not has_pending(session):  # cheap read first: idle polls take no lock
                        break
            probe = True
            with self.db.session(write=True) as session:
                batch = sequence_pending(
                    session, self.clock, limit=SEQUENCE_BATCH, on_sequenced=_match
                )
            if not batch:
                break
            out.extend(batch)
            self.hub.offer_events(batch)  # local fast path; the bus echo is harmless
            self.bus.announce(batch[-1].seq)
            if len(batch) < SEQUENCE_BATCH:
                break  # all caught up; a later commit wakes the loop again
        if counter["matched"]:
            self._wake_resthook.set()
        return out

    def _sequencer_loop(self) -> None:
        import time

        next_gauges = 0.0
        last_round = 0.0
        while not self._stop.is_set():
            woken = self._wake_sequencer.wait(self.config.poll_seconds)
            pause = last_round + self.config.gather_seconds - time.monotonic()
            if woken and pause > 0:
                self._stop.wait(pause)  # a busy spell: let more commits join this round
            self._wake_sequencer.clear()
            if self._stop.is_set():
                return
            last_round = time.monotonic()
            try:
                self.sequence_once(probe=not woken)  # a commit hook woke us: work is waiting
                if time.monotonic() >= next_gauges:
                    next_gauges = time.monotonic() + 5.0
                    self._update_gauges()
            except Exception:
                log.exception("notify: sequencer round failed; will retry")
                self._stop.wait(1.0)

    def prune(self) -> retention.Pruned:
        """Delete the settled events older than the retention period (now)."""
        assert self.config.retention is not None
        pruned = retention.prune(self.db, self.clock.now(), self.config.retention)
        if pruned.events:
            log.info(
                "notify: pruned %d events and %d subscription events; oldest kept %s",
                pruned.events,
                pruned.subscription_events,
                pruned.floor,
            )
        return pruned

    def _retention_loop(self) -> None:
        # its own thread: a first prune of a long backlog must not hold up sequencing
        while not self._stop.wait(self.config.retention_every_seconds):
            try:
                self.prune()
            except Exception:
                log.exception("notify: pruning old events failed; will retry")

    def _update_gauges(self) -> None:
        import sqlalchemy as sa

        with self.db.session() as session:
            metrics.OUTBOX_PENDING.set(pending_count(session))
            metrics.RESTHOOK_PENDING.set(
                session.execute(
                    sa.select(sa.func.count())
                    .select_from(subscription_event)
                    .where(subscription_event.c.status == "pending")
                ).scalar_one()
            )

    # -- rest-hook ------------------------------------------------------------------------

    def deliver_once(self) -> RoundReport:
        return deliver_due(
            self.db,
            self.clock,
            self.http,
            self.engine.policy,
            self._resolve,
            self.engine.repository,
            self.config.resthook,
        )

    def _resthook_loop(self) -> None:
        while not self._stop.is_set():
            self._wake_resthook.wait(self.config.resthook_poll_seconds)
            self._wake_resthook.clear()
            if self._stop.is_set():
                return
            try:
                report = self.deliver_once()
                if report.sent and report.claimed:
                    self._wake_resthook.set()  # more may be waiting
            except Exception:
                log.exception("notify: rest-hook round failed; will retry")
                self._stop.wait(1.0)

    # -- helpers for operations and tests -------------------------------------------------

    def head(self) -> int:
        with self.db.session() as session:
            return head_position(session)


__all__ = ["NotifyConfig", "NotifyService", "TokenVerifier"]
