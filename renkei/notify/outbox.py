"""The outbox: events committed with the writes they describe, then sequenced once.

Writers call :func:`publish` inside their own transaction; the row commits or rolls back
with the write. After commit a single sequencer (:func:`sequence_pending`, serialised by a
PostgreSQL advisory lock, or by SQLite's single writer) gives each committed row its stream
position ``seq``. Positions are therefore handed out in the order rows *became visible*, so a
reader resuming "after N" can never miss a row that commits later with a smaller id (see
docs/decisions/notify-event-ordering.md).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from renkei.clock import Clock
from renkei.fhir.context import RequestContext
from renkei.notify.models import outbox
from renkei.store import pending
from renkei.store.models import UtcDateTime
from renkei.store.repository import StoredResource

#: Any constant: every process's sequencer queues on it (PostgreSQL only).
_SEQUENCER_LOCK = 724_105

#: The urgent-call code (CONTRACT.md): Tasks with it are addressed to their owner.
URGENT_CALL_SYSTEM = "https://renkei.example.jp/fhir/CodeSystem/renkei"
URGENT_CALL_CODE = "urgent-call"

#: Reference elements that place a resource in a patient's compartment, in order of trust.
_PATIENT_ELEMENTS = ("subject", "patient", "for", "beneficiary")


@dataclass(frozen=True)
class Event:
    """Something people or systems may want to hear about.

    ``kind`` is "resource" (a FHIR write) or "call" (urgent-call transition, published by the
    calls package). ``audience`` holds references (``PractitionerRole/1``,
    ``Organization/2``) of whoever it is addressed to; ``patient`` the patient it concerns.
    """

    kind: str
    action: str
    res_type: str | None = None
    res_id: str | None = None
    version_id: int | None = None
    patient: str | None = None
    audience: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def reference(self) -> str | None:
        return f"{self.res_type}/{self.res_id}" if self.res_type and self.res_id else None


@dataclass(frozen=True)
class SequencedEvent:
    """An :class:`Event` with its stream position and time, as readers see it."""

    seq: int
    event: Event
    occurred_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The websocket message body for this event (ids only; never resource content)."""
        ev = self.event
        body: dict[str, Any] = {
            "seq": self.seq,
            "kind": ev.kind,
            "action": ev.action,
            "time": self.occurred_at.isoformat(timespec="microseconds"),
        }
        if ev.reference:
            body["resource"] = ev.reference
        if ev.version_id is not None:
            body["version"] = str(ev.version_id)
        if ev.patient:
            body["patient"] = ev.patient
        if ev.audience:
            body["audience"] = list(ev.audience)
        if ev.data:
            body["data"] = ev.data
        return body


# -- writing --------------------------------------------------------------------------------

#: engine -> callbacks run after a session on it commits an outbox row (wakes the sequencer)
_WAKERS: weakref.WeakKeyDictionary[Engine, list[Callable[[], None]]] = weakref.WeakKeyDictionary()
_WAKERS_LOCK = threading.Lock()


def register_waker(engine: Engine, wake: Callable[[], None]) -> None:
    """Run ``wake()`` after any session bound to ``engine`` commits a published event."""
    with _WAKERS_LOCK:
        _WAKERS.setdefault(engine, []).append(wake)


def unregister_waker(engine: Engine, wake: Callable[[], None]) -> None:
    with _WAKERS_LOCK:
        callbacks = _WAKERS.get(engine, [])
        if wake in callbacks:
            callbacks.remove(wake)


def publish(session: Session, event: Event, *, clock: Clock | None = None) -> None:
    """Record ``event`` in the caller's transaction; it is delivered only if that commits.

    The urgent-calls package calls this for every call transition, e.g.
    ``publish(session, Event("call", "escalated", "Task", task_id, patient="Patient/7",
    audience=("PractitionerRole/3",), data={"step": 2}))``.
    """
    from renkei.clock import SystemClock

    now = (clock or SystemClock()).now()
    row = {
        "kind": event.kind,
        "action": event.action,
        "res_type": event.res_type,
        "res_id": event.res_id,
        "version_id": event.version_id,
        "patient": event.patient,
        "audience": list(event.audience),
        "data": dict(event.data),
        "occurred_at": now,
    }
    # sent with the unit of work's other deferred rows just before it commits (in order)
    pending.defer(session, outbox, [row])
    _wake_after_commit(session)


def _wake_after_commit(session: Session) -> None:
    """Wake this process's sequencer when the session's *root* transaction commits.

    SQLAlchemy also sends ``after_commit`` when a savepoint is released; reacting to that
    woke the sequencer before the rows were committed and left the real commit unheard, so
    an urgent call's page waited for the next poll (half a second).
    """
    session.info["notify_wake_pending"] = True
    if session.info.get("notify_wake_hooked"):
        return
    session.info["notify_wake_hooked"] = True
    bind = session.get_bind()
    engine = bind.engine if isinstance(bind, sa.Connection) else bind

    def _after_commit(_session: Session) -> None:
        if _session.get_nested_transaction() is not None:
            return  # a savepoint released: nothing is committed yet
        if not _session.info.pop("notify_wake_pending", None):
            return
        with _WAKERS_LOCK:
            callbacks = list(_WAKERS.get(engine, []))
        for wake in callbacks:
            wake()

    def _after_rollback(_session: Session, previous: Any) -> None:
        if not getattr(previous, "nested", False):
            _session.info.pop("notify_wake_pending", None)

    sa.event.listen(session, "after_commit", _after_commit)
    sa.event.listen(session, "after_soft_rollback", _after_rollback)


def event_for_write(stored: StoredResource) -> Event:
    """The event a FHIR write produces.

    >>> from datetime import UTC, datetime
    >>> s = StoredResource("Observation", "o1", 2, datetime(2026, 4, 1, tzinfo=UTC), False,
    ...     {"resourceType": "Observation", "subject": {"reference": "Patient/p1"}}, "PUT")
    >>> e = event_for_write(s)
    >>> (e.action, e.patient, e.reference)
    ('update', 'Patient/p1', 'Observation/o1')
    """
    action = {"POST": "create", "DELETE": "delete"}.get(stored.method, "update")
    content = stored.content or {}
    audience: tuple[str, ...] = ()
    data: dict[str, Any] = {}
    if stored.res_type == "Task" and _is_urgent_call(content):
        data["urgentCall"] = True
        if content.get("status"):
            data["status"] = content["status"]
        audience = tuple(
            ref
            for ref in (
                _ref(content.get("owner")),
                _ref(content.get("requester")),
            )
            if ref
        )
    elif stored.res_type == "Communication":
        audience = tuple(r for r in (_ref(x) for x in content.get("recipient") or []) if r)
    elif stored.res_type == "Observation":
        coding = (content.get("code") or {}).get("coding") or []
        data["codes"] = [
            f"{c.get('system', '')}|{c['code']}"
            for c in coding
            if isinstance(c, dict) and c.get("code")
        ]
    return Event(
        kind="resource",
        action=action,
        res_type=stored.res_type,
        res_id=stored.res_id,
        version_id=stored.version_id,
        patient=patient_of(stored.res_type, stored.res_id, content),
        audience=audience,
        data=data,
    )


def patient_of(res_type: str, res_id: str, content: dict[str, Any]) -> str | None:
    """The ``Patient/<id>`` a resource is about, if it names one.

    >>> patient_of("Patient", "p1", {})
    'Patient/p1'
    >>> patient_of("Task", "t1", {"for": {"reference": "Patient/p9"}})
    'Patient/p9'
    """
    if res_type == "Patient":
        return f"Patient/{res_id}"
    for name in _PATIENT_ELEMENTS:
        ref = _ref(content.get(name))
        if ref and ref.startswith("Patient/"):
            return ref
    return None


def _ref(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        ref: str = value["reference"]
        return ref.split("/_history/")[0]
    return None


def _is_urgent_call(content: dict[str, Any]) -> bool:
    code = content.get("code") or {}
    return any(
        c.get("code") == URGENT_CALL_CODE for c in code.get("coding", []) if isinstance(c, dict)
    )


def make_write_listener(
    clock: Clock,
) -> Callable[[Session, RequestContext, StoredResource], None]:
    """The FHIR engine's ``write_listeners`` entry: one outbox row per successful write."""

    def _listener(session: Session, ctx: RequestContext, stored: StoredResource) -> None:
        publish(session, event_for_write(stored), clock=clock)

    return _listener


# -- sequencing -----------------------------------------------------------------------------


#: PostgreSQL: positions top+1, top+2... to the rows of ``ids``, in the order given
#: PostgreSQL: the batch's positions in one statement, taken under the advisory lock (a
#: statement after the lock sees every row committed before it). The sequencer's three
#: statements (read, head, number) were most of its time per round.
_SEQUENCE_BATCH_PG = (
    sa.text(
        "WITH head AS (SELECT coalesce(max(seq), 0) AS top FROM notify_outbox), "
        "todo AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM notify_outbox "
        "WHERE seq IS NULL ORDER BY id LIMIT :limit) "
        "UPDATE notify_outbox SET seq = head.top + todo.n, sequenced_at = :now "
        "FROM todo, head WHERE notify_outbox.id = todo.id "
        "RETURNING notify_outbox.seq, notify_outbox.kind, notify_outbox.action, "
        "notify_outbox.res_type, notify_outbox.res_id, notify_outbox.version_id, "
        "notify_outbox.patient, notify_outbox.audience, notify_outbox.data, "
        "notify_outbox.occurred_at"
    )
    .bindparams(sa.bindparam("now", type_=UtcDateTime()))
    .columns(
        outbox.c.seq,
        outbox.c.kind,
        outbox.c.action,
        outbox.c.res_type,
        outbox.c.res_id,
        outbox.c.version_id,
        outbox.c.patient,
        outbox.c.audience,
        outbox.c.data,
        outbox.c.occurred_at,
    )
)


def sequence_pending(
    session: Session,
    clock: Clock,
    *,
    limit: int = 1000,
    on_sequenced: Callable[[Session, list[SequencedEvent]], None] | None = None,
) -> list[SequencedEvent]:
    """Give committed, unsequenced outbox rows their positions; return them in order.

    Must run in a write session of its own. On PostgreSQL the transaction first takes an
    advisory lock, so sequencers in several processes take turns; the positions they hand out
    are contiguous and only ever follow positions already committed. ``on_sequenced`` runs in
    the same transaction (subscription matching), so positions and per-subscription event
    numbers commit together.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SEQUENCER_LOCK})
        rows = session.execute(_SEQUENCE_BATCH_PG, {"limit": limit, "now": clock.now()}).all()
        out = sorted(
            (SequencedEvent(int(r.seq), _event_of(r), r.occurred_at) for r in rows),
            key=lambda e: e.seq,
        )
    else:
        out = _sequence_sqlite(session, clock, limit)
    if out and on_sequenced is not None:
        on_sequenced(session, out)
    return out


def _sequence_sqlite(session: Session, clock: Clock, limit: int) -> list[SequencedEvent]:
    """SQLite: one writer at a time already (``BEGIN IMMEDIATE``), so read, then number."""
    rows = session.execute(
        sa.select(outbox).where(outbox.c.seq.is_(None)).order_by(outbox.c.id).limit(limit)
    ).all()
    if not rows:
        return []
    top = session.execute(sa.select(sa.func.coalesce(sa.func.max(outbox.c.seq), 0))).scalar_one()
    now = clock.now()
    out = [
        SequencedEvent(int(top) + offset, _event_of(row), row.occurred_at)
        for offset, row in enumerate(rows, start=1)
    ]
    session.execute(
        outbox.update()
        .where(outbox.c.id == sa.bindparam("row_id"))
        .values(seq=sa.bindparam("new_seq"), sequenced_at=now),
        [{"row_id": row.id, "new_seq": e.seq} for row, e in zip(rows, out, strict=True)],
    )
    return out


def read_events(
    session: Session, after: int, *, until: int | None = None, limit: int = 1000
) -> list[SequencedEvent]:
    """Sequenced events with ``after < seq <= until``, oldest first."""
    stmt = sa.select(outbox).where(outbox.c.seq > after)
    if until is not None:
        stmt = stmt.where(outbox.c.seq <= until)
    rows = session.execute(stmt.order_by(outbox.c.seq).limit(limit)).all()
    return [SequencedEvent(int(r.seq), _event_of(r), r.occurred_at) for r in rows]


def read_by_seqs(session: Session, seqs: Iterable[int]) -> dict[int, SequencedEvent]:
    wanted = sorted(set(seqs))
    out: dict[int, SequencedEvent] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for r in session.execute(sa.select(outbox).where(outbox.c.seq.in_(chunk))):
            out[int(r.seq)] = SequencedEvent(int(r.seq), _event_of(r), r.occurred_at)
    return out


def head_position(session: Session) -> int:
    """The highest position handed out so far (0 for an empty stream)."""
    value = session.execute(sa.select(sa.func.max(outbox.c.seq))).scalar_one()
    return int(value or 0)


def has_pending(session: Session) -> bool:
    """Whether any committed row waits for a position (an indexed, lock-free probe)."""
    stmt = sa.select(outbox.c.id).where(outbox.c.seq.is_(None)).limit(1)
    return session.execute(stmt).first() is not None


def pending_count(session: Session) -> int:
    """Committed rows still waiting for a position (the outbox queue depth)."""
    return int(
        session.execute(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.seq.is_(None))
        ).scalar_one()
    )


def _event_of(row: Any) -> Event:
    return Event(
        kind=row.kind,
        action=row.action,
        res_type=row.res_type,
        res_id=row.res_id,
        version_id=row.version_id,
        patient=row.patient,
        audience=tuple(row.audience or ()),
        data=dict(row.data or {}),
    )


__all__ = [
    "Event",
    "SequencedEvent",
    "event_for_write",
    "has_pending",
    "head_position",
    "make_write_listener",
    "patient_of",
    "pending_count",
    "publish",
    "read_by_seqs",
    "read_events",
    "register_waker",
    "sequence_pending",
    "unregister_waker",
]
