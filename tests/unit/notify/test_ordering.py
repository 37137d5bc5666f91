"""The ordering guarantee of docs/decisions/notify-event-ordering.md, under concurrency.

Writers hold their transactions open for random times (so insert order differs from commit
order), two sequencers race, and a reader keeps resuming "after the last position it saw".
The reader must end up with every event exactly once.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from renkei.clock import SystemClock
from renkei.notify.outbox import Event, publish, read_events, sequence_pending
from renkei.store.db import Database


@pytest.mark.postgres
def test_resume_after_position_never_misses_a_late_commit(postgres_url: str) -> None:
    db = Database(postgres_url)
    clock = SystemClock()
    writers, per_writer = 6, 15
    stop = threading.Event()
    seen: list[tuple[int, str]] = []
    rng = random.Random(5)

    def write(w: int) -> None:
        for i in range(per_writer):
            with db.session(write=True) as session:
                publish(session, Event("resource", "create", "Patient", f"w{w}-{i}"), clock=clock)
                time.sleep(rng.random() * 0.01)  # commit later than a neighbour inserted

    def sequence() -> None:
        while not stop.is_set():
            with db.session(write=True) as session:
                sequence_pending(session, clock, limit=7)
            time.sleep(0.001)

    def read() -> None:
        last = 0
        while not stop.is_set() or last < writers * per_writer:
            with db.session() as session:
                batch = read_events(session, last)
            for ev in batch:
                seen.append((ev.seq, ev.event.res_id or ""))
                last = ev.seq
            if stop.is_set() and not batch:
                with db.session(write=True) as session:
                    sequence_pending(session, clock)
            time.sleep(0.002)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    sequencers = [threading.Thread(target=sequence) for _ in range(2)]
    reader = threading.Thread(target=read)
    for t in [*threads, *sequencers, reader]:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in sequencers:
        t.join()
    reader.join(timeout=30)
    db.dispose()
    try:
        assert [s for s, _ in seen] == list(range(1, writers * per_writer + 1))
        names = [n for _, n in seen]
        assert len(set(names)) == writers * per_writer
    finally:
        _cleanup(postgres_url)


def _cleanup(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE notify_outbox RESTART IDENTITY")
    engine.dispose()
