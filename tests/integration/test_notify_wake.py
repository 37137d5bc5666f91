"""The sequencer is woken by the root commit of a transaction that published events, not by
a savepoint being released inside it (that left an urgent call's page waiting for a poll)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from renkei.notify import Event, publish
from renkei.notify.outbox import register_waker, unregister_waker
from renkei.store.db import Database
from renkei.store.migrate import upgrade


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    upgrade(database_url)
    database = Database(database_url)
    yield database
    database.dispose()


def _event(n: int) -> Event:
    return Event("call", "page", "Task", f"t{n}", patient="Patient/p1")


def test_wakes_once_at_the_root_commit_not_at_a_savepoint(db: Database) -> None:
    woken: list[str] = []

    def wake() -> None:
        woken.append("wake")

    register_waker(db.engine, wake)
    try:
        with db.session(write=True) as session:
            publish(session, _event(1))
            with session.begin_nested():
                publish(session, _event(2))
            assert woken == [], "a released savepoint commits nothing"
            with session.begin_nested():
                session.execute(sa.text("SELECT 1"))
            assert woken == []
        assert woken == ["wake"]
        with pytest.raises(RuntimeError), db.session(write=True) as session:
            publish(session, _event(3))
            raise RuntimeError("rolled back")
        assert woken == ["wake"], "nothing committed, nobody woken"
        with db.session(write=True) as session:
            session.execute(sa.text("SELECT 1"))
        assert woken == ["wake"], "a commit without events wakes nobody"
    finally:
        unregister_waker(db.engine, wake)
