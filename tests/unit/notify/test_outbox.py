"""The outbox: events commit with their writes and get positions in visible order."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from renkei.clock import ManualClock
from renkei.notify.models import outbox
from renkei.notify.outbox import (
    Event,
    head_position,
    pending_count,
    publish,
    read_events,
    register_waker,
    sequence_pending,
    unregister_waker,
)
from renkei.store.db import Database


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def test_publish_rolled_back_leaves_no_event(db: Database, clock: ManualClock) -> None:
    with pytest.raises(RuntimeError), db.session(write=True) as session:
        publish(session, Event("call", "created", "Task", "t1"), clock=clock)
        raise RuntimeError("the write failed")
    with db.session() as session:
        assert pending_count(session) == 0


def test_sequence_pending_assigns_contiguous_positions(db: Database, clock: ManualClock) -> None:
    for i in range(3):
        with db.session(write=True) as session:
            publish(session, Event("resource", "create", "Patient", f"p{i}"), clock=clock)
    with db.session(write=True) as session:
        done = sequence_pending(session, clock)
    assert [e.seq for e in done] == [1, 2, 3]
    assert [e.event.res_id for e in done] == ["p0", "p1", "p2"]
    with db.session() as session:
        assert head_position(session) == 3
        assert [e.seq for e in read_events(session, 1)] == [2, 3]
        assert pending_count(session) == 0


def test_sequence_pending_orders_by_visibility_not_by_insert_id(
    db: Database, clock: ManualClock
) -> None:
    """A row with a smaller id that commits later still gets a later position."""
    with db.session(write=True) as session:
        publish(session, Event("resource", "create", "Patient", "early"), clock=clock)
    with db.session(write=True) as session:
        sequence_pending(session, clock)
    # Simulate a row inserted before the first one was sequenced but committed after:
    with db.session(write=True) as session:
        session.execute(
            outbox.insert().values(
                id=0,
                kind="resource",
                action="create",
                res_type="Patient",
                res_id="late",
                audience=[],
                data={},
                occurred_at=clock.now(),
            )
        )
    with db.session(write=True) as session:
        late = sequence_pending(session, clock)
    assert [(e.seq, e.event.res_id) for e in late] == [(2, "late")]
    with db.session() as session:
        after_first = read_events(session, 1)
    assert [e.event.res_id for e in after_first] == ["late"]


def test_publish_wakes_registered_waker_after_commit_only(db: Database, clock: ManualClock) -> None:
    calls: list[str] = []

    def wake() -> None:
        calls.append("wake")

    register_waker(db.engine, wake)
    try:
        with db.session(write=True) as session:
            publish(session, Event("call", "created"), clock=clock)
            assert calls == []
        assert calls == ["wake"]
        with pytest.raises(RuntimeError), db.session(write=True) as session:
            publish(session, Event("call", "created"), clock=clock)
            raise RuntimeError
        assert calls == ["wake"]
    finally:
        unregister_waker(db.engine, wake)


def test_publish_keeps_event_fields(db: Database, clock: ManualClock) -> None:
    event = Event(
        "call",
        "escalated",
        "Task",
        "t9",
        3,
        patient="Patient/p1",
        audience=("PractitionerRole/r1",),
        data={"step": 2},
    )
    with db.session(write=True) as session:
        publish(session, event, clock=clock)
    with db.session(write=True) as session:
        (done,) = sequence_pending(session, clock)
    assert done.event == event
    assert done.occurred_at == clock.now()
    with db.session() as session:
        assert session.execute(sa.select(outbox.c.sequenced_at)).scalar_one() == clock.now()
