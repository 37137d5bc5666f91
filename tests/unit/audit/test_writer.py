"""The background writer of reads' audit records: in order, in batches, nothing lost."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from renkei.audit import writer as writer_mod
from renkei.audit.chain import verify
from renkei.audit.errors import AuditError
from renkei.audit.key import SealKey
from renkei.audit.trail import AuditTrail
from renkei.clock import ManualClock
from renkei.store.db import Database


def _record(n: int, clock: ManualClock) -> dict[str, Any]:
    return {
        "recorded": clock.now().isoformat(),
        "request_id": f"r{n}",
        "subject": "nurse-1",
        "kind": "user",
        "organization_id": "org-b",
        "role": "nurse",
        "practitioner_id": None,
        "practitioner_role_id": None,
        "client_id": None,
        "token_id": None,
        "interaction": "read",
        "action": "R",
        "method": "GET",
        "path": f"Observation/o{n}",
        "query": "",
        "res_type": "Observation",
        "status": 200,
        "outcome": "0",
        "detail": None,
        "patients": [f"p{n % 7}"],
        "entities": [{"ref": f"Observation/o{n}", "how": "read"}],
        "source": "10.0.0.1",
        "purpose": None,
        "break_glass": False,
        "bundle_entry": False,
    }


def _paths(db: Database) -> list[str]:
    with db.session() as s:
        bodies = s.execute(sa.text("SELECT body FROM audit_record ORDER BY seq")).scalars()
        return [json.loads(b)["path"] for b in bodies]


def test_records_from_many_threads_are_all_appended_in_submission_order_per_thread(
    database_url: str, tmp_path: Path, clock: ManualClock
) -> None:
    db = Database(database_url)
    key = SealKey.load(tmp_path / "k.key")
    trail = AuditTrail(key, clock)
    trail.attach(db.session)
    assert trail.writer is not None

    def reader(t: int) -> None:
        for n in range(100):
            trail.writer.submit([_record(t * 1000 + n, clock)])  # type: ignore[union-attr]

    threads = [threading.Thread(target=reader, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert trail.writer.drain(timeout=30)
    paths = _paths(db)
    assert len(paths) == 400
    for t in range(4):
        mine = [p for p in paths if int(p.split("/o")[1]) // 1000 == t]
        assert mine == [f"Observation/o{t * 1000 + n}" for n in range(100)]
    with db.session() as s:
        assert verify(s, key).ok
        patients = s.execute(sa.text("SELECT count(*) FROM audit_patient")).scalar_one()
    assert patients == 400
    trail.writer.stop()
    db.dispose()


def test_a_failing_log_refuses_reads_keeps_its_records_and_recovers(
    database_url: str, tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_mod, "RETRY_S", 0.01)
    db = Database(database_url)
    key = SealKey.load(tmp_path / "k.key")
    trail = AuditTrail(key, clock)
    trail.attach(db.session)
    writer = trail.writer
    assert writer is not None
    writer.submit([_record(1, clock)])
    assert writer.drain(timeout=10)
    # the chain head disappears (damage, or a restore gone wrong): appends fail
    with db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_head"))
    writer.submit([_record(2, clock)])
    assert not writer.drain(timeout=10)
    assert writer.failing is not None and "head is missing" in writer.failing
    with pytest.raises(AuditError, match="cannot be written"):
        writer.submit([_record(3, clock)])
    # repaired: the queued record is appended after all, and reads are accepted again
    with db.session() as s:
        seq, digest = s.execute(
            sa.text("SELECT seq, hash FROM audit_record ORDER BY seq DESC LIMIT 1")
        ).one()
    with db.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO audit_head (id, seq, hash) VALUES (1, :seq, :hash)"),
            {"seq": seq, "hash": digest},
        )
    trail.hint.set(None)
    for _ in range(1000):  # the writer retries on its own
        if writer.failing is None:
            break
        threading.Event().wait(0.01)
    assert writer.drain(timeout=10) and writer.failing is None
    writer.submit([_record(4, clock)])
    assert writer.drain(timeout=10)
    assert _paths(db) == ["Observation/o1", "Observation/o2", "Observation/o4"]
    writer.stop()
    db.dispose()


def test_stop_drains_the_queue(database_url: str, tmp_path: Path, clock: ManualClock) -> None:
    db = Database(database_url)
    trail = AuditTrail(SealKey.load(tmp_path / "k.key"), clock)
    trail.attach(db.session)
    assert trail.writer is not None
    trail.writer.submit([_record(n, clock) for n in range(450)])  # more than one batch
    trail.writer.stop()
    assert len(_paths(db)) == 450
    db.dispose()


def test_a_full_queue_refuses_reads_after_waiting(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_mod, "MAX_QUEUED", 3)
    monkeypatch.setattr(writer_mod, "FULL_WAIT_S", 0.05)
    release = threading.Event()

    def stuck(session: Any, records: list[dict[str, Any]]) -> None:
        release.wait(10)  # a database that stopped answering

    class _Sessions:
        def __call__(self, **_: Any) -> Any:
            import contextlib

            return contextlib.nullcontext(None)

    writer = writer_mod.ReadAuditWriter(_Sessions(), stuck)
    writer.submit([_record(1, clock)])  # taken by the writer, stuck
    while not writer._in_flight:
        threading.Event().wait(0.005)
    writer.submit([_record(n, clock) for n in range(2, 5)])
    with pytest.raises(AuditError, match="too far behind"):
        writer.submit([_record(5, clock)])
    release.set()
    assert writer.drain(timeout=10)
    writer.stop()


def test_a_write_carries_the_queued_reads_and_gives_them_back_on_rollback(
    database_url: str, tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_mod, "LINGER_S", 30.0)  # the writer waits for a full batch
    db = Database(database_url)
    trail = AuditTrail(SealKey.load(tmp_path / "k.key"), clock)
    trail.attach(db.session)
    writer = trail.writer
    assert writer is not None
    writer.submit([_record(n, clock) for n in (1, 2, 3)])
    carried = trail.carry()
    assert [r["path"] for r in carried] == [f"Observation/o{n}" for n in (1, 2, 3)]
    trail.carried(carried, committed=False)  # the write rolled back: the writer has them
    assert writer.drain(timeout=10)
    writer.submit([_record(n, clock) for n in (4, 5)])
    carried = trail.carry()
    with db.session(write=True) as s:  # the write appends them ahead of its own record
        trail.append_records(s, [*carried, _record(6, clock)])
    trail.carried(carried, committed=True)
    assert writer.drain(timeout=0.5)  # nothing left for the writer
    assert _paths(db) == [f"Observation/o{n}" for n in range(1, 7)]
    writer.stop()
    db.dispose()
