"""The hub: a slow client is cut off with a resumable position and does not stall others."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from renkei.auth.principal import Principal
from renkei.clock import ManualClock
from renkei.fhir.policy import AllowAll
from renkei.notify.access import principal_from_snapshot
from renkei.notify.hub import CLOSE_SLOW, Hub, HubSettings
from renkei.notify.outbox import Event, publish, sequence_pending
from renkei.store.db import Database
from renkei.store.migrate import upgrade

ALICE = Principal("alice", "user", organization_id="org-a", practitioner_role_id="role-a")


def _write(db: Database, clock: ManualClock, count: int, patient: str = "Patient/p1") -> int:
    for i in range(count):
        with db.session(write=True) as session:
            publish(
                session,
                Event("resource", "create", "Observation", f"o{i}", 1, patient=patient),
                clock=clock,
            )
    with db.session(write=True) as session:
        return sequence_pending(session, clock)[-1].seq


def test_hub_slow_client_is_dropped_resumably_and_fast_client_gets_everything(
    tmp_path: Path, clock: ManualClock
) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    upgrade(url)
    db = Database(url)

    async def scenario() -> None:
        hub = Hub(db, AllowAll(), clock, principal_from_snapshot, HubSettings(queue_size=3))
        await hub.start()
        fast: list[dict[str, object]] = []
        closed: dict[str, tuple[int, str]] = {}
        blocked = asyncio.Event()

        async def fast_send(text: str) -> None:
            fast.append(json.loads(text))

        async def slow_send(text: str) -> None:
            await blocked.wait()  # never returns: the client stopped reading

        async def close_slow(code: int, reason: str) -> None:
            closed["slow"] = (code, reason)

        async def close_fast(code: int, reason: str) -> None:
            closed["fast"] = (code, reason)

        f = hub.connect(ALICE, fast_send, close_fast)
        s = hub.connect(ALICE, slow_send, close_slow)
        for conn in (f, s):
            await hub.handle(
                conn, {"type": "subscribe", "id": "p", "topic": "patient", "patient": "Patient/p1"}
            )
        head = await asyncio.to_thread(_write, db, clock, 10)
        hub.announce(head)
        for _ in range(200):
            if len(fast) == 10 and "slow" in closed:
                break
            await asyncio.sleep(0.01)
        await hub.stop()
        assert [m["seq"] for m in fast] == list(range(1, 11))
        code, reason = closed["slow"]
        assert code == CLOSE_SLOW
        assert reason == "slow consumer; resume after 0"
        assert "fast" not in closed or closed["fast"][0] == 1001

    try:
        asyncio.run(scenario())
    finally:
        db.dispose()


def test_hub_my_calls_matches_audience_only(tmp_path: Path, clock: ManualClock) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    upgrade(url)
    db = Database(url)

    async def scenario() -> list[dict[str, object]]:
        hub = Hub(db, AllowAll(), clock, principal_from_snapshot)
        await hub.start()
        got: list[dict[str, object]] = []

        async def send(text: str) -> None:
            got.append(json.loads(text))

        async def close(code: int, reason: str) -> None:
            return None

        conn = hub.connect(ALICE, send, close)
        await hub.handle(conn, {"type": "subscribe", "id": "c", "topic": "my-calls"})

        def write() -> int:
            with db.session(write=True) as session:
                publish(
                    session,
                    Event("call", "created", "Task", "t1", audience=("PractitionerRole/role-b",)),
                    clock=clock,
                )
                publish(
                    session,
                    Event("call", "escalated", "Task", "t2", audience=("PractitionerRole/role-a",)),
                    clock=clock,
                )
                publish(
                    session,
                    Event(
                        "resource", "update", "Task", "t3", audience=("PractitionerRole/role-a",)
                    ),
                    clock=clock,
                )
            with db.session(write=True) as session:
                return sequence_pending(session, clock)[-1].seq

        hub.announce(await asyncio.to_thread(write))
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        await hub.stop()
        return got

    try:
        got = asyncio.run(scenario())
    finally:
        db.dispose()
    assert [m["event"]["resource"] for m in got if m["type"] == "event"] == ["Task/t2"]  # type: ignore[index]
