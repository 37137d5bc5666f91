"""The websocket hub: which open connection hears which event, in order, without stalls.

One hub per process. It follows the stream position (announced on the bus, polled as a
safety net), reads new events from the outbox in batches, and hands each connection the
events its subscriptions cover and its principal may see *now*. Every connection has a
bounded queue and its own sender task: a slow client fills only its own queue and is then
disconnected with a position it can resume from, so it cannot hold up anybody else.

Resume: a client sends ``{"type": "resume", "after": N}``; its catch-up reads ``(N, head]``
from the database, then joins the live stream under the hub's batch lock, so the hand-over
has neither a gap nor a duplicate (each connection also remembers the last position it was
given and never takes an older one).

The hub is framework-free: a connection is given ``send(text)`` and ``close(code, reason)``
coroutines by ``renkei/api/ws.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.clock import Clock
from renkei.fhir.policy import AccessPolicy, AllowAll
from renkei.notify import metrics
from renkei.notify.access import AccessChecker, principal_refs
from renkei.notify.errors import ProtocolError
from renkei.notify.outbox import SequencedEvent, head_position, read_events
from renkei.notify.retention import oldest_position
from renkei.notify.subscriptions import (
    SubscriberResolver,
    events_for_seqs,
    load_notified,
    notification_bundle,
)
from renkei.store.db import Database
from renkei.store.models import idx_reference, resource

log = logging.getLogger(__name__)

_WS_LAG = metrics.DELIVERY_LAG.labels(channel="websocket")

#: close codes (4000-4999 are the application's, RFC 6455 section 7.4.2)
CLOSE_UNAUTHENTICATED = 4001
CLOSE_PROTOCOL = 4002
CLOSE_SLOW = 4008
CLOSE_TOO_FAR_BEHIND = 4009

PEOPLE_TOPICS = ("my-calls", "my-patients", "patient")

SendText = Callable[[str], Awaitable[None]]
CloseFn = Callable[[int, str], Awaitable[None]]


@dataclass(frozen=True)
class PeopleFilter:
    """One ``subscribe`` of a person: a topic, and the patient for topic "patient"."""

    id: str
    topic: str
    patient: str | None = None


@dataclass(frozen=True)
class _Item:
    seq: int
    text: str
    #: commit time of the event, for the delivery-lag metric
    occurred_at: datetime | None = None


@dataclass(eq=False)
class Connection:
    """One open websocket, as the hub sees it."""

    id: int
    principal: Any
    send: SendText
    close: CloseFn
    queue: asyncio.Queue[_Item | None]
    token: str | None = None
    filters: dict[str, PeopleFilter] = field(default_factory=dict)
    my_patients: frozenset[str] = frozenset()
    #: FHIR websocket channel: subscription id -> notify_subscription row
    bound: dict[str, Any] = field(default_factory=dict)
    #: every event up to here has been considered for this connection
    position: int = 0
    #: the last event actually written to the socket
    sent_position: int = 0
    live: bool = False
    closed: bool = False
    sender: asyncio.Task[None] | None = None
    #: the hub's position, shared: a live connection has considered everything up to it
    stream: _Stream | None = None

    def current_position(self) -> int:
        if self.live and self.stream is not None:
            return max(self.position, self.stream.position)
        return self.position

    def resumable_position(self) -> int:
        return self.current_position() if self.queue.empty() else self.sent_position


@dataclass
class _Stream:
    position: int = 0


@dataclass
class _Index:
    """Who may want an event, by the event's patient and audience (rebuilt on change)."""

    by_patient: dict[str, set[Connection]] = field(default_factory=dict)
    by_ref: dict[str, set[Connection]] = field(default_factory=dict)

    def candidates(self, ev: SequencedEvent) -> set[Connection]:
        out: set[Connection] = set()
        if ev.event.patient:
            out |= self.by_patient.get(ev.event.patient, set())
        for ref in ev.event.audience:
            out |= self.by_ref.get(ref, set())
        return out


def _build_index(conns: Sequence[Connection]) -> _Index:
    index = _Index()
    for conn in conns:
        for flt in conn.filters.values():
            if flt.topic == "patient" and flt.patient:
                index.by_patient.setdefault(flt.patient, set()).add(conn)
            elif flt.topic == "my-patients":
                for patient in conn.my_patients:
                    index.by_patient.setdefault(patient, set()).add(conn)
            elif flt.topic == "my-calls":
                for ref in principal_refs(conn.principal):
                    index.by_ref.setdefault(ref, set()).add(conn)
    return index


@dataclass(frozen=True)
class HubSettings:
    queue_size: int = 1000
    heartbeat_seconds: float = 30.0
    #: how often a connection's token is re-checked (expiry, revocation)
    auth_recheck_seconds: float = 30.0
    batch: int = 500
    #: a resume further back than this is refused (use FHIR search/history instead)
    max_resume: int = 50_000

    def __post_init__(self) -> None:
        if self.queue_size < 1 or self.heartbeat_seconds <= 0 or self.batch < 1:
            raise ValueError("queue_size, heartbeat_seconds and batch must be positive")


def care_team_members(session: Session, refs: Collection[str]) -> dict[str, frozenset[str]]:
    """Member reference -> patients on whose active CareTeam it takes part, for ``refs``.

    The CareTeams come from the search index's ``participant`` references (indexed by
    target), so the cost follows the members asked about, not the number of CareTeams.
    """
    by_type: dict[str, set[str]] = {}
    for ref in refs:
        res_type, _, res_id = ref.partition("/")
        if res_type and res_id:
            by_type.setdefault(res_type, set()).add(res_id)
    if not by_type:
        return {}
    m = idx_reference
    rows = session.execute(
        sa.select(m.c.target_type, m.c.target_id, resource.c.content)
        .join(resource, resource.c.pk == m.c.resource_pk)
        .where(
            m.c.res_type == "CareTeam",
            m.c.param == "participant",
            sa.or_(
                *(
                    sa.and_(m.c.target_type == t, m.c.target_id.in_(sorted(ids)))
                    for t, ids in sorted(by_type.items())
                )
            ),
            resource.c.deleted.is_(False),
        )
    )
    out: dict[str, set[str]] = {}
    for target_type, target_id, content in rows:
        if content.get("status") not in (None, "active"):
            continue
        subject = (content.get("subject") or {}).get("reference")
        if isinstance(subject, str) and subject.startswith("Patient/"):
            out.setdefault(f"{target_type}/{target_id}", set()).add(subject)
    return {ref: frozenset(patients) for ref, patients in out.items()}


def care_team_patients(members: dict[str, frozenset[str]], principal: Any) -> frozenset[str]:
    """Patients on whose active CareTeam the principal, its role or organisation takes part.

    >>> from renkei.auth.principal import Principal
    >>> m = {"Organization/o1": frozenset({"Patient/1"}), "Organization/o2": frozenset({"P/2"})}
    >>> sorted(care_team_patients(m, Principal("u", "user", organization_id="o1")))
    ['Patient/1']
    """
    out: set[str] = set()
    for ref in principal_refs(principal):
        out |= members.get(ref, frozenset())
    return frozenset(out)


class Hub:
    def __init__(
        self,
        db: Database,
        policy: AccessPolicy,
        clock: Clock,
        resolve: SubscriberResolver,
        settings: HubSettings | None = None,
        *,
        reauthenticate: Callable[[str], Any] | None = None,
        care_teams: Callable[
            [Session, Collection[str]], dict[str, frozenset[str]]
        ] = care_team_members,
    ) -> None:
        self.db = db
        self.policy = policy
        self.clock = clock
        self.resolve = resolve
        self.settings = settings or HubSettings()
        self.reauthenticate = reauthenticate
        self.care_teams = care_teams
        self._stream = _Stream()
        self._target = 0
        self._index: _Index | None = None
        self._reread = True
        self._ids = itertools.count(1)
        self.connections: set[Connection] = set()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._background: set[asyncio.Future[None]] = set()
        #: events handed over by this process's sequencer, by position (saves a read)
        self._recent: dict[int, SequencedEvent] = {}
        self._pressure = False

    @property
    def position(self) -> int:
        """Every event up to here has been handed to the connections that want it."""
        return self._stream.position

    @position.setter
    def position(self, value: int) -> None:
        self._stream.position = value

    def _changed(self) -> None:
        """Connections, filters or care teams changed: rebuild the index on next use."""
        self._index = None

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.position = await asyncio.to_thread(self._head)
        self._target = self.position
        self._running = True
        self._tasks = [
            asyncio.create_task(self._follow(), name="notify-hub-follow"),
            asyncio.create_task(self._tick(), name="notify-hub-tick"),
        ]

    async def stop(self) -> None:
        self._running = False
        for conn in list(self.connections):
            await self.drop(conn, 1001, "server shutting down")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def announce(self, position: int | None) -> None:
        """Thread-safe: the stream reaches ``position`` (None: re-read the head)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closing
            loop.call_soon_threadsafe(self._announce, position)

    def offer_events(self, events: Sequence[SequencedEvent]) -> None:
        """Thread-safe: events this process just sequenced, so the hub needn't re-read them."""
        loop = self._loop
        if loop is None or loop.is_closed() or not events:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._remember, list(events))

    def _remember(self, events: list[SequencedEvent]) -> None:
        for ev in events:
            if ev.seq > self.position:
                self._recent[ev.seq] = ev
        self._announce(events[-1].seq)

    def _announce(self, position: int | None) -> None:
        if position is None:
            self._reread = True
        elif position > self._target:
            self._target = position
        self._wake.set()

    def _head(self) -> int:
        with self.db.session() as session:
            return head_position(session)

    def _floor(self) -> int:
        """The oldest position still kept (retention deletes older ones)."""
        with self.db.session() as session:
            return oldest_position(session) or 0

    # -- connections ----------------------------------------------------------------------

    def connect(
        self, principal: Any, send: SendText, close: CloseFn, token: str | None = None
    ) -> Connection:
        conn = Connection(
            id=next(self._ids),
            principal=principal,
            send=send,
            close=close,
            queue=asyncio.Queue(self.settings.queue_size),
            token=token,
            position=self.position,
            sent_position=self.position,
            live=True,
            stream=self._stream,
        )
        conn.sender = asyncio.create_task(self._sender(conn), name=f"notify-ws-{conn.id}")
        self.connections.add(conn)
        self._changed()
        metrics.WS_CONNECTIONS.set(len(self.connections))
        return conn

    async def disconnect(self, conn: Connection) -> None:
        conn.closed = True
        self.connections.discard(conn)
        self._changed()
        metrics.WS_CONNECTIONS.set(len(self.connections))
        if conn.sender is not None and not conn.sender.done():
            try:
                conn.queue.put_nowait(None)
            except asyncio.QueueFull:
                conn.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError, Exception):
                await asyncio.wait_for(conn.sender, timeout=2)

    async def drop(self, conn: Connection, code: int, reason: str) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.connections.discard(conn)
        self._changed()
        metrics.WS_CONNECTIONS.set(len(self.connections))
        if conn.sender is not None:
            conn.sender.cancel()
        with contextlib.suppress(Exception):  # the peer may be gone already
            await conn.close(code, reason[:120])

    async def _sender(self, conn: Connection) -> None:
        while True:
            item = await conn.queue.get()
            if item is None:
                return
            try:
                await conn.send(item.text)
            except Exception:
                conn.closed = True
                return
            if item.seq:
                conn.sent_position = max(conn.sent_position, item.seq)
            if item.occurred_at is not None:
                lag = (datetime.now(UTC) - item.occurred_at).total_seconds()
                _WS_LAG.observe(max(0.0, lag))

    def _offer(self, conn: Connection, item: _Item) -> bool:
        """Queue without waiting; a full queue disconnects the slow client (resumable)."""
        if conn.closed:
            return False
        try:
            conn.queue.put_nowait(item)
            if conn.queue.qsize() * 2 >= conn.queue.maxsize:
                self._pressure = True
            return True
        except asyncio.QueueFull:
            metrics.WS_SLOW_DISCONNECTS.inc()
            resume = conn.sent_position
            task = asyncio.ensure_future(
                self.drop(conn, CLOSE_SLOW, f"slow consumer; resume after {resume}")
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return False

    def reply(self, conn: Connection, message: dict[str, Any]) -> None:
        """Send a control message in order with the events (through the queue)."""
        self._offer(conn, _Item(0, _dumps(message)))

    async def reauthorize(self, conn: Connection, principal: Any, token: str) -> None:
        """A fresh token on an open connection (so it outlives the first token's expiry)."""
        async with self._lock:
            conn.principal = principal
            conn.token = token

    # -- protocol (people) ----------------------------------------------------------------

    async def handle(self, conn: Connection, message: dict[str, Any]) -> dict[str, Any] | None:
        """Apply one client message; return the direct reply, if any."""
        kind = message.get("type")
        if kind == "subscribe":
            return await self._subscribe(conn, message)
        if kind == "unsubscribe":
            async with self._lock:
                conn.filters.pop(str(message.get("id")), None)
                self._changed()
            return {"type": "unsubscribed", "id": message.get("id")}
        if kind == "resume":
            after = message.get("after")
            if not isinstance(after, int) or after < 0:
                raise ProtocolError("resume needs a non-negative integer 'after'")
            await self.resume(conn, after)
            return None
        if kind == "ping":
            return {"type": "pong", "position": conn.resumable_position()}
        raise ProtocolError(f"unknown message type {kind!r}")

    async def _subscribe(self, conn: Connection, message: dict[str, Any]) -> dict[str, Any]:
        sub_id = str(message.get("id") or f"s{len(conn.filters) + 1}")
        topic = message.get("topic")
        if topic not in PEOPLE_TOPICS:
            raise ProtocolError(f"topic must be one of {', '.join(PEOPLE_TOPICS)}")
        patient = message.get("patient")
        if topic == "patient":
            if not isinstance(patient, str) or not patient:
                raise ProtocolError("topic 'patient' needs 'patient': 'Patient/<id>'")
            if "/" not in patient:
                patient = f"Patient/{patient}"
        flt = PeopleFilter(sub_id, str(topic), patient if topic == "patient" else None)
        if topic == "my-patients":
            conn.my_patients = await asyncio.to_thread(self._my_patients_of, conn.principal)
        async with self._lock:
            conn.filters[sub_id] = flt
            self._changed()
        pos = conn.current_position()
        return {"type": "subscribed", "id": sub_id, "topic": topic, "position": pos}

    def _my_patients_of(self, principal: Any) -> frozenset[str]:
        return care_team_patients(self._care_team_members(principal_refs(principal)), principal)

    def _care_team_members(self, refs: Collection[str]) -> dict[str, frozenset[str]]:
        with self.db.session() as session:
            return self.care_teams(session, refs)

    async def resume(self, conn: Connection, after: int) -> None:
        """Replay ``(after, head]`` for this connection, then rejoin the live stream."""
        if after > self.position:
            after = self.position  # can't be ahead of the stream: treat as "now"
        if self.position - after > self.settings.max_resume or (
            after < self.position and after + 1 < await asyncio.to_thread(self._floor)
        ):  # beyond the resume window, or events after ``after`` were pruned already
            await self.drop(conn, CLOSE_TOO_FAR_BEHIND, "too far behind; reload via FHIR API")
            return
        async with self._lock:
            conn.live = False
            conn.position = after  # the client holds everything up to here, no more
            conn.sent_position = after  # the client says it holds everything up to here
        cursor = after
        while not conn.closed:
            async with self._lock:
                if cursor >= self.position:
                    conn.position = cursor
                    conn.live = True
                    self._offer(conn, _Item(0, _dumps({"type": "resumed", "position": cursor})))
                    return
                until = self.position
            events = await asyncio.to_thread(self._load, cursor, until)
            if not events:
                cursor = until
                continue
            pairs = {ev.seq: [conn] for ev in events}
            deliveries = await asyncio.to_thread(self._decide, events, pairs)
            for ev in events:
                targets = deliveries.get(ev.seq, {})
                if conn.id in targets:
                    text = self._people_message(ev, targets[conn.id])
                    await conn.queue.put(_Item(ev.seq, text))  # backpressure, not drop
            cursor = events[-1].seq

    # -- the stream -----------------------------------------------------------------------

    async def _follow(self) -> None:
        while self._running:
            await self._wake.wait()
            self._wake.clear()
            try:
                if self._reread:
                    self._reread = False
                    head = await asyncio.to_thread(self._head)
                    self._target = max(self._target, head)
                while self.position < self._target:
                    await self._advance()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notify: hub batch failed; retrying")
                await asyncio.sleep(0.5)
                self._wake.set()

    async def _advance(self) -> None:
        async with self._lock:
            start, until = self.position, self._target
            events = self._cached(start, until)
            if events is None and not self.connections:
                events = []  # nobody here to tell: follow the stream without reading it
            elif events is None:
                events = await asyncio.to_thread(self._load, start, until)
            last = events[-1].seq if events else until
            if events and self.connections:
                if any(e.event.res_type == "CareTeam" for e in events):
                    await self._refresh_my_patients(list(self.connections))
                if self._index is None:
                    self._index = _build_index(list(self.connections))
                index = self._index
                pairs: dict[int, list[Connection]] = {}
                for ev in events:
                    cands = [c for c in index.candidates(ev) if c.live and not c.closed]
                    if cands:
                        pairs[ev.seq] = cands
                if not pairs:
                    deliveries: dict[int, dict[int, list[str]]] = {}
                elif isinstance(self.policy, AllowAll):
                    deliveries = self._decide(events, pairs)  # no database access needed
                else:
                    deliveries = await asyncio.to_thread(self._decide, events, pairs)
                bound = [c for c in self.connections if c.bound and c.live and not c.closed]
                fhir = (
                    await asyncio.to_thread(self._fhir_notifications, bound, start, last)
                    if bound
                    else {}
                )
                for ev in events:
                    texts: dict[tuple[str, ...], str] = {}  # same subscriptions, same bytes
                    for conn in pairs.get(ev.seq, ()):
                        subs = deliveries.get(ev.seq, {}).get(conn.id)
                        if subs and ev.seq > conn.position and conn.live:
                            key = tuple(subs)
                            text = texts.get(key)
                            if text is None:
                                text = texts[key] = self._people_message(ev, subs)
                            self._offer(conn, _Item(ev.seq, text, ev.occurred_at))
                    for conn, text in fhir.get(ev.seq, []):
                        self._offer(conn, _Item(ev.seq, text, ev.occurred_at))
                    if self._pressure:
                        # let the senders drain before a fast client's queue overflows
                        self._pressure = False
                        await asyncio.sleep(0)
            self.position = last  # live connections follow through the shared stream
            for seq in [s for s in self._recent if s <= last]:
                del self._recent[seq]
            metrics.HEAD_POSITION.set(last)

    async def _refresh_my_patients(self, conns: Sequence[Connection]) -> None:
        """A CareTeam changed: one query for all their members, then every "my-patients"
        connection is updated."""
        wanting = [c for c in conns if any(f.topic == "my-patients" for f in c.filters.values())]
        if not wanting:
            return
        refs = set().union(*(principal_refs(c.principal) for c in wanting))
        members = await asyncio.to_thread(self._care_team_members, refs)
        for conn in wanting:
            conn.my_patients = care_team_patients(members, conn.principal)
        self._changed()

    def _cached(self, after: int, until: int) -> list[SequencedEvent] | None:
        """``(after, until]`` from the hand-over cache, if it holds every position."""
        until = min(until, after + self.settings.batch)
        out = []
        for seq in range(after + 1, until + 1):
            ev = self._recent.get(seq)
            if ev is None:
                return None
            out.append(ev)
        return out or None

    def _load(self, after: int, until: int) -> list[SequencedEvent]:
        with self.db.session() as session:
            return read_events(session, after, until=until, limit=self.settings.batch)

    def _decide(
        self, events: Sequence[SequencedEvent], pairs: dict[int, list[Connection]]
    ) -> dict[int, dict[int, list[str]]]:
        """seq -> connection id -> the client's subscription ids the event is delivered for.

        ``pairs`` holds, per event, the candidate connections from the index; here the
        filters are applied exactly and, unless the policy allows all, the access policy
        is asked for each (principal, event) as of now.
        """
        out: dict[int, dict[int, list[str]]] = {}
        if isinstance(self.policy, AllowAll):
            for ev in events:
                for conn in pairs.get(ev.seq, ()):
                    subs = [f.id for f in conn.filters.values() if _covers(f, conn, ev)]
                    if subs:
                        out.setdefault(ev.seq, {})[conn.id] = subs
            return out
        with self.db.session() as session:
            checker = AccessChecker(session, self.policy, self.clock)
            for ev in events:
                for conn in pairs.get(ev.seq, ()):
                    subs = [f.id for f in conn.filters.values() if _covers(f, conn, ev)]
                    if subs and checker.can_see(conn.principal, ev.event):
                        out.setdefault(ev.seq, {})[conn.id] = subs
        return out

    def _fhir_notifications(
        self, conns: Sequence[Connection], after: int, until: int
    ) -> dict[int, list[tuple[Connection, str]]]:
        """FHIR websocket channel: event-notification Bundles per bound subscription."""
        if not conns:
            return {}
        by_sub: dict[str, list[Connection]] = {}
        for conn in conns:
            for sub_id in conn.bound:
                by_sub.setdefault(sub_id, []).append(conn)
        out: dict[int, list[tuple[Connection, str]]] = {}
        now = self.clock.now()
        with self.db.session() as session:
            rows = events_for_seqs(session, list(by_sub), after, until)
            checker = AccessChecker(session, self.policy, self.clock)
            for row in rows:
                sub = by_sub[row.subscription_id][0].bound[row.subscription_id]
                items, _withheld = load_notified(session, checker, self.resolve(sub.owner), [row])
                if not items:
                    continue
                text = _dumps(notification_bundle(sub, "event-notification", now, items))
                for conn in by_sub[row.subscription_id]:
                    out.setdefault(int(row.seq), []).append((conn, text))
        return out

    def _people_message(self, ev: SequencedEvent, subs: list[str]) -> str:
        return _dumps(
            {"type": "event", "seq": ev.seq, "subscriptions": subs, "event": ev.to_json()}
        )

    # -- FHIR websocket channel -----------------------------------------------------------

    async def bind(self, conn: Connection, rows: Sequence[Any]) -> None:
        """``bind-with-token``: attach subscriptions and send one handshake for each."""
        now = self.clock.now()
        async with self._lock:
            for row in rows:
                conn.bound[row.id] = row
                self._offer(conn, _Item(0, _dumps(notification_bundle(row, "handshake", now))))

    # -- heartbeats and token checks ------------------------------------------------------

    async def _tick(self) -> None:
        interval = min(self.settings.heartbeat_seconds, self.settings.auth_recheck_seconds)
        since_beat = since_auth = 0.0
        while self._running:
            await asyncio.sleep(interval)
            since_beat += interval
            since_auth += interval
            if since_auth >= self.settings.auth_recheck_seconds:
                since_auth = 0.0
                await self._recheck_tokens()
            if since_beat >= self.settings.heartbeat_seconds:
                since_beat = 0.0
                self._heartbeat()
            metrics.WS_QUEUED.set(sum(c.queue.qsize() for c in self.connections))
            # safety net: a missed bus message costs one tick, never an event
            self._reread = True
            self._wake.set()

    def _heartbeat(self) -> None:
        now = self.clock.now()
        for conn in list(self.connections):
            if not conn.live or conn.closed or conn.queue.full():
                continue
            if conn.bound:
                for row in conn.bound.values():
                    self._offer(conn, _Item(0, _dumps(notification_bundle(row, "heartbeat", now))))
            else:
                msg = {"type": "heartbeat", "position": conn.current_position()}
                self._offer(conn, _Item(0, _dumps(msg)))

    async def _recheck_tokens(self) -> None:
        if self.reauthenticate is None:
            return
        conns = [c for c in self.connections if c.token is not None]
        if not conns:
            return
        check = self.reauthenticate
        verdicts = await asyncio.to_thread(lambda: [(c, check(c.token or "")) for c in conns])
        for conn, principal in verdicts:
            if principal is None or _expired(principal, self.clock.now()):
                await self.drop(
                    conn,
                    CLOSE_UNAUTHENTICATED,
                    f"token expired or revoked; resume after {conn.resumable_position()}",
                )


def _covers(flt: PeopleFilter, conn: Connection, ev: SequencedEvent) -> bool:
    event = ev.event
    if flt.topic == "patient":
        return event.patient == flt.patient
    if flt.topic == "my-patients":
        return event.patient is not None and event.patient in conn.my_patients
    if flt.topic == "my-calls":
        is_call = event.kind == "call" or bool(event.data.get("urgentCall"))
        return is_call and bool(principal_refs(conn.principal) & set(event.audience))
    return False


def _expired(principal: Any, now: datetime) -> bool:
    expires = getattr(principal, "expires_at", None)
    return isinstance(expires, datetime) and expires <= now


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


__all__ = [
    "CLOSE_PROTOCOL",
    "CLOSE_SLOW",
    "CLOSE_TOO_FAR_BEHIND",
    "CLOSE_UNAUTHENTICATED",
    "PEOPLE_TOPICS",
    "Connection",
    "Hub",
    "HubSettings",
    "PeopleFilter",
    "care_team_members",
    "care_team_patients",
]
