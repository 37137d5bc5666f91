"""Retention: settled events older than the period go; the head, recent events and anything
from the first pending rest-hook delivery on stay; resuming from before them is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from renkei.clock import ManualClock
from renkei.config import Settings
from renkei.fhir.policy import AllowAll
from renkei.notify.access import principal_from_snapshot
from renkei.notify.hub import CLOSE_TOO_FAR_BEHIND, Hub
from renkei.notify.models import outbox, subscription, subscription_event
from renkei.notify.outbox import Event, head_position, publish, sequence_pending
from renkei.notify.retention import oldest_position, prune
from renkei.store.db import Database
from tests.unit.notify.test_hub import ALICE

DAY = timedelta(days=1)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def _day_of_events(db: Database, clock: ManualClock, count: int) -> list[int]:
    """``count`` events sequenced now, then a day passes."""
    for i in range(count):
        with db.session(write=True) as session:
            publish(session, Event("resource", "create", "Patient", f"p{i}"), clock=clock)
    with db.session(write=True) as session:
        seqs = [e.seq for e in sequence_pending(session, clock)]
    clock.advance(days=1)
    return seqs


def _kept(db: Database) -> list[int]:
    with db.session() as session:
        return [int(s) for (s,) in session.execute(sa.select(outbox.c.seq).order_by(outbox.c.seq))]


def _subscription_events(db: Database, clock: ManualClock, statuses: dict[int, str]) -> None:
    with db.session(write=True) as session:
        session.execute(
            subscription.insert().values(
                id="s1", topic="t", filters=[], channel="rest-hook", endpoint="https://x",
                headers=[], content="id-only", content_type="application/fhir+json",
                max_count=1, status="active", events_since_start=len(statuses),
                secret="k", base_url="https://renkei.example/fhir", created_at=clock.now(),
            )
        )  # fmt: skip
        session.execute(
            subscription_event.insert(),
            [
                {"subscription_id": "s1", "event_number": n, "seq": seq, "status": status,
                 "attempts": 0}
                for n, (seq, status) in enumerate(sorted(statuses.items()), start=1)
            ],
        )  # fmt: skip


def test_old_settled_events_go_recent_ones_and_the_head_stay(
    db: Database, clock: ManualClock
) -> None:
    old = _day_of_events(db, clock, 5) + _day_of_events(db, clock, 5)  # 2 and 1 days old
    assert old == list(range(1, 11))
    recent = _day_of_events(db, clock, 3)
    clock.advance(hours=-23)  # the last three are one hour old
    _subscription_events(db, clock, {2: "delivered", 7: "stream", 12: "delivered"})
    pruned = prune(db, clock.now(), timedelta(hours=12), chunk=4)  # several transactions
    assert (pruned.events, pruned.subscription_events, pruned.floor) == (10, 2, 11)
    assert _kept(db) == recent == [11, 12, 13]
    with db.session() as session:
        left = session.execute(sa.select(subscription_event.c.seq)).scalars().all()
        assert left == [12]
        assert head_position(session) == 13 and oldest_position(session) == 11
    assert prune(db, clock.now(), timedelta(hours=12)).events == 0  # nothing more to do
    with db.session(write=True) as session:  # positions go on from the head
        publish(session, Event("resource", "create", "Patient", "next"), clock=clock)
    with db.session(write=True) as session:
        assert [e.seq for e in sequence_pending(session, clock)] == [14]


def test_the_newest_event_stays_however_old(db: Database, clock: ManualClock) -> None:
    _day_of_events(db, clock, 3)
    clock.advance(days=30)
    assert prune(db, clock.now(), DAY).events == 2
    assert _kept(db) == [3]


def test_a_pending_rest_hook_delivery_keeps_its_event_and_all_after_it(
    db: Database, clock: ManualClock
) -> None:
    _day_of_events(db, clock, 6)
    clock.advance(days=10)
    _subscription_events(db, clock, {2: "delivered", 4: "pending", 5: "failed"})
    pruned = prune(db, clock.now(), DAY)
    assert (pruned.events, pruned.subscription_events) == (3, 1)
    assert _kept(db) == [4, 5, 6]


def test_keep_must_be_positive(db: Database, clock: ManualClock) -> None:
    with pytest.raises(ValueError):
        prune(db, clock.now(), timedelta(0))


def test_resuming_from_before_the_oldest_kept_event_is_too_far_behind(
    db: Database, clock: ManualClock
) -> None:
    _day_of_events(db, clock, 5)
    clock.advance(days=10)
    prune(db, clock.now(), DAY)  # 1-4 are gone, 5 (the head) stays

    async def resume(after: int) -> tuple[int, str] | None:
        hub = Hub(db, AllowAll(), clock, principal_from_snapshot)
        await hub.start()
        closed: list[tuple[int, str]] = []

        async def send(text: str) -> None:
            return None

        async def close(code: int, reason: str) -> None:
            closed.append((code, reason))

        conn = hub.connect(ALICE, send, close)
        await hub.resume(conn, after)
        await hub.stop()
        return closed[0] if closed and closed[0][0] != 1001 else None

    too_far = (CLOSE_TOO_FAR_BEHIND, "too far behind; reload via FHIR API")
    assert asyncio.run(resume(2)) == too_far
    assert asyncio.run(resume(4)) is None  # holds 1-4: 5 is still here to replay
    assert asyncio.run(resume(5)) is None  # up to date


def test_cli_prunes_by_the_days_given(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``renkei notify prune --keep-days N`` against the real clock: events a year old go."""
    import json
    from datetime import UTC, datetime

    from renkei.cli import main

    db = Database(database_url)
    try:
        _day_of_events(db, ManualClock(datetime.now(UTC) - timedelta(days=365)), 4)
    finally:
        db.dispose()
    monkeypatch.setenv("RENKEI_DATABASE_URL", database_url)
    monkeypatch.setenv("RENKEI_DATA_DIR", str(tmp_path / "data"))
    assert main(["notify", "prune", "--keep-days", "30", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["events"], out["oldest_kept"]) == (3, 4)
    assert main(["notify", "prune", "--keep-days", "0", "--json"]) != 0


def test_the_running_service_prunes_on_its_own(settings: Settings, clock: ManualClock) -> None:
    """The served app's retention thread, every ``retention_every_seconds``."""
    import time

    from fastapi.testclient import TestClient

    from renkei.app import build_services, create_app
    from renkei.notify.service import NotifyConfig

    config = NotifyConfig(run_resthook=False, retention=DAY, retention_every_seconds=0.05)
    services = build_services(settings, clock=clock, notify_config=config)
    with TestClient(create_app(settings, services=services)):
        _day_of_events(services.db, clock, 4)
        clock.advance(days=3)
        deadline = time.monotonic() + 10
        while len(_kept(services.db)) > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert _kept(services.db) == [4]
