"""The hash chain on real SQLite and PostgreSQL; tampering is done with raw SQL."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from renkei.audit import chain
from renkei.audit.chain import GENESIS, append, canonical, link_hash, seal, verify
from renkei.audit.errors import ChainBroken, SealKeyError
from renkei.audit.key import SealKey
from renkei.clock import ManualClock
from renkei.store.db import Database


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def key(tmp_path: Path) -> SealKey:
    return SealKey.load(tmp_path / "keys" / "audit-seal.key")


def _record(clock: ManualClock, n: int) -> dict[str, Any]:
    return {
        "recorded": clock.now().isoformat(),
        "subject": f"user-{n}",
        "organization_id": "org-a",
        "practitioner_role_id": None,
        "client_id": None,
        "role": "doctor",
        "interaction": "read",
        "res_type": "Patient",
        "status": 200,
        "break_glass": False,
        "patients": [f"p{n % 3}"],
    }


def _fill(db: Database, key: SealKey, clock: ManualClock, count: int) -> None:
    for n in range(count):
        clock.advance(seconds=1)
        with db.session(write=True) as s:
            append(s, [_record(clock, n)], key, clock.now())


def _verify(db: Database, key: SealKey) -> dict[str, Any]:
    with db.session() as s:
        return verify(s, key).as_dict()


def _sql(db: Database, *statements: str) -> None:
    with db.engine.begin() as conn:
        for stmt in statements:
            conn.exec_driver_sql(stmt)


def test_verify_honest_log_ok(db: Database, key: SealKey, clock: ManualClock) -> None:
    _fill(db, key, clock, 10)
    report = _verify(db, key)
    assert report == {"ok": True, "records": 10, "head_seq": 10, "seals": 0}


def test_verify_empty_log_ok(db: Database, key: SealKey) -> None:
    assert _verify(db, key)["ok"] is True


def test_append_links_each_record_to_the_previous(
    db: Database, key: SealKey, clock: ManualClock
) -> None:
    _fill(db, key, clock, 3)
    with db.session() as s:
        stmt = sa.text("SELECT seq, prev_hash, hash, body FROM audit_record ORDER BY seq")
        rows = list(s.execute(stmt))
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == GENESIS
    assert rows[1].prev_hash == rows[0].hash
    assert rows[2].hash == link_hash(rows[1].hash, rows[2].body)
    assert json.loads(rows[2].body)["seq"] == 3


def test_verify_detects_edited_body(db: Database, key: SealKey, clock: ManualClock) -> None:
    _fill(db, key, clock, 6)
    with db.session() as s:
        body = s.execute(sa.text("SELECT body FROM audit_record WHERE seq = 4")).scalar_one()
    forged = body.replace('"subject":"user-3"', '"subject":"someone-else"')
    assert forged != body
    with db.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE audit_record SET body = :b, subject = 'someone-else' WHERE seq = 4"),
            {"b": forged},
        )
    report = _verify(db, key)
    assert report["ok"] is False
    assert report["first_bad_seq"] == 4
    assert {p["kind"] for p in report["problems"] if p["seq"] == 4} >= {"edited"}


def test_verify_detects_edited_search_column(
    db: Database, key: SealKey, clock: ManualClock
) -> None:
    _fill(db, key, clock, 4)
    _sql(db, "UPDATE audit_record SET organization_id = 'org-z' WHERE seq = 2")
    report = _verify(db, key)
    assert report["ok"] is False and report["first_bad_seq"] == 2


def test_verify_detects_rehashed_edit_by_mac(
    db: Database, key: SealKey, clock: ManualClock
) -> None:
    """A forger who recomputes every later hash still cannot make valid HMACs."""
    _fill(db, key, clock, 5)
    with db.session() as s:
        stmt = sa.text("SELECT seq, prev_hash, body FROM audit_record ORDER BY seq")
        rows = list(s.execute(stmt))
    prev = rows[1].prev_hash
    with db.engine.begin() as conn:
        for row in rows[1:]:
            body = row.body
            if row.seq == 2:
                body = body.replace('"role":"doctor"', '"role":"admin"')
            digest = link_hash(prev, body)
            conn.execute(
                sa.text(
                    "UPDATE audit_record SET body = :b, prev_hash = :p, hash = :h, role = :r "
                    "WHERE seq = :s"
                ),
                {"b": body, "p": prev, "h": digest, "r": json.loads(body)["role"], "s": row.seq},
            )
            prev = digest
        conn.execute(sa.text("UPDATE audit_head SET hash = :h"), {"h": prev})
    report = _verify(db, key)
    assert report["ok"] is False
    assert report["first_bad_seq"] == 2
    assert any(p["kind"] == "mac" for p in report["problems"])


def test_verify_detects_deleted_record(db: Database, key: SealKey, clock: ManualClock) -> None:
    _fill(db, key, clock, 6)
    _sql(db, "DELETE FROM audit_record WHERE seq = 3")
    report = _verify(db, key)
    assert report["ok"] is False
    assert report["first_bad_seq"] == 3
    assert report["problems"][0]["kind"] == "deleted"


def test_verify_detects_inserted_record_in_the_middle(
    db: Database, key: SealKey, clock: ManualClock
) -> None:
    """Shift seq 4.. up by one and slip a well-formed (but unkeyed) record in at 4."""
    _fill(db, key, clock, 6)
    with db.session() as s:
        prev = s.execute(sa.text("SELECT hash FROM audit_record WHERE seq = 3")).scalar_one()
    fields = {**_record(clock, 99), "seq": 4}
    body = canonical(fields)
    digest = link_hash(prev, body)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_record SET seq = -(seq + 1) WHERE seq >= 4")
        conn.exec_driver_sql("UPDATE audit_record SET seq = -seq WHERE seq < 0")
        conn.execute(
            sa.text(
                "INSERT INTO audit_record (seq, recorded, subject, organization_id, role, "
                "interaction, res_type, status, break_glass, body, prev_hash, hash, mac, key_id) "
                "VALUES (4, :rec, 'user-99', 'org-a', 'doctor', 'read', 'Patient', 200, :f, "
                ":body, :prev, :hash, :mac, 'forged')"
            ),
            {
                "rec": clock.now(),
                "f": False,
                "body": body,
                "prev": prev,
                "hash": digest,
                "mac": "0" * 64,
            },
        )
    report = _verify(db, key)
    assert report["ok"] is False
    assert report["first_bad_seq"] == 4
    assert any(p["seq"] == 4 and p["kind"] == "mac" for p in report["problems"])


def test_verify_detects_inserted_record_at_the_end(
    db: Database, key: SealKey, clock: ManualClock
) -> None:
    _fill(db, key, clock, 4)
    with db.session() as s:
        prev = s.execute(sa.text("SELECT hash FROM audit_record WHERE seq = 4")).scalar_one()
    body = canonical({**_record(clock, 50), "seq": 5})
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO audit_record (seq, recorded, subject, organization_id, role, "
                "interaction, res_type, status, break_glass, body, prev_hash, hash, mac, key_id) "
                "VALUES (5, :rec, 'user-50', 'org-a', 'doctor', 'read', 'Patient', 200, :f, "
                ":body, :prev, :hash, :mac, 'x')"
            ),
            {
                "rec": clock.now(),
                "f": False,
                "body": body,
                "prev": prev,
                "hash": link_hash(prev, body),
                "mac": "0" * 64,
            },
        )
    report = _verify(db, key)
    assert report["ok"] is False
    assert report["first_bad_seq"] == 5
    assert {p["kind"] for p in report["problems"]} >= {"mac", "inserted"}


def test_verify_detects_truncated_tail(db: Database, key: SealKey, clock: ManualClock) -> None:
    _fill(db, key, clock, 8)
    _sql(db, "DELETE FROM audit_record WHERE seq > 5")
    report = _verify(db, key)
    assert report["ok"] is False
    assert report["first_bad_seq"] == 6
    assert report["problems"][0]["kind"] == "truncated"


def test_verify_detects_truncated_tail_with_rolled_back_head(
    db: Database, key: SealKey, clock: ManualClock
) -> None:
    """Rewinding the head row to an older (validly MAC'd) value is caught by a seal."""
    _fill(db, key, clock, 3)
    with db.session() as s:
        old = s.execute(sa.text("SELECT seq, hash, mac FROM audit_head")).one()
    _fill(db, key, clock, 3)
    with db.session(write=True) as s:
        seal(s, key, clock.now())
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_record WHERE seq > 3")
        conn.execute(
            sa.text("UPDATE audit_head SET seq = :s, hash = :h, mac = :m"),
            {"s": old.seq, "h": old.hash, "m": old.mac},
        )
    report = _verify(db, key)
    assert report["ok"] is False
    assert report["first_bad_seq"] == 4
    assert any(p["kind"] == "truncated" for p in report["problems"])


def test_verify_detects_missing_head(db: Database, key: SealKey, clock: ManualClock) -> None:
    _fill(db, key, clock, 2)
    _sql(db, "DELETE FROM audit_head")
    assert _verify(db, key)["ok"] is False


def test_append_refuses_to_fork_when_head_is_missing(
    db: Database, key: SealKey, clock: ManualClock
) -> None:
    _fill(db, key, clock, 2)
    _sql(db, "DELETE FROM audit_head")
    with pytest.raises(ChainBroken), db.session(write=True) as s:
        append(s, [_record(clock, 3)], key, clock.now())


def test_verify_with_another_key_fails(db: Database, key: SealKey, clock: ManualClock) -> None:
    _fill(db, key, clock, 2)
    other = SealKey(os.urandom(32))
    report = _verify(db, other)
    assert report["ok"] is False and report["first_bad_seq"] == 1


def test_append_seals_periodically(
    db: Database, key: SealKey, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chain, "SEAL_EVERY", 4)
    _fill(db, key, clock, 9)
    with db.session() as s:
        seals = [r.seq for r in s.execute(sa.text("SELECT seq FROM audit_seal ORDER BY seq"))]
    assert seals == [4, 8]
    assert _verify(db, key)["ok"] is True


def test_append_seals_in_batches_on_the_hinted_head(
    db: Database, key: SealKey, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that crosses a seal boundary writes its seal too (a Bundle's 100 records)."""
    from renkei.audit.chain import HeadHint

    monkeypatch.setattr(chain, "SEAL_EVERY", 4)
    hint = HeadHint()
    for start in (0, 3, 6):
        clock.advance(seconds=1)
        with db.session(write=True) as s:
            batch = [_record(clock, n) for n in range(start, start + 3)]
            seqs = append(s, batch, key, clock.now(), hint=hint)
            assert seqs == [start + 1, start + 2, start + 3]
    with db.session() as s:
        seals = s.execute(sa.text("SELECT seq, sealed_at FROM audit_seal ORDER BY seq")).all()
    assert [r.seq for r in seals] == [4, 8]
    assert _verify(db, key)["ok"] is True


def test_append_is_gapless_under_concurrent_writers(
    db: Database, key: SealKey, clock: ManualClock
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def work(n: int) -> None:
        with db.session(write=True) as s:
            append(s, [_record(clock, n), _record(clock, n + 100)], key, clock.now())

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(work, range(30)))
    report = _verify(db, key)
    assert report["ok"] is True and report["records"] == 60


def test_append_rolled_back_leaves_no_trace(db: Database, key: SealKey, clock: ManualClock) -> None:
    _fill(db, key, clock, 2)
    with pytest.raises(RuntimeError), db.session(write=True) as s:
        append(s, [_record(clock, 7)], key, clock.now())
        raise RuntimeError("crash before commit")
    _fill(db, key, clock, 1)
    report = _verify(db, key)
    assert report["ok"] is True and report["records"] == 3


def test_seal_key_created_private(tmp_path: Path) -> None:
    path = tmp_path / "k" / "audit-seal.key"
    first = SealKey.load(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SealKey.load(path).key_id == first.key_id
    assert "key_id" in repr(first) and path.read_text().strip() not in repr(first)


def test_seal_key_refuses_group_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "audit-seal.key"
    SealKey.load(path)
    path.chmod(0o644)
    with pytest.raises(SealKeyError):
        SealKey.load(path)


def test_seal_key_missing_without_create(tmp_path: Path) -> None:
    with pytest.raises(SealKeyError):
        SealKey.load(tmp_path / "nope.key", create=False)


def test_verify_reports_when_clock_moves(db: Database, key: SealKey, clock: ManualClock) -> None:
    _fill(db, key, clock, 2)
    clock.advance(timedelta(days=400))
    _fill(db, key, clock, 1)
    assert _verify(db, key)["records"] == 3


def test_append_with_hints_from_two_processes_stays_gapless(
    db: Database, key: SealKey, clock: ManualClock
) -> None:
    """Each API process keeps its own head hint; a stale hint falls back to the lock."""
    from concurrent.futures import ThreadPoolExecutor

    from renkei.audit.chain import HeadHint

    hints = [HeadHint(), HeadHint()]

    def work(n: int) -> None:
        with db.session(write=True) as s:
            append(s, [_record(clock, n)], key, clock.now(), hint=hints[n % 2], durable=False)

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(work, range(40)))
    # a rolled-back append leaves the hint ahead of the database
    with pytest.raises(RuntimeError), db.session(write=True) as s:
        append(s, [_record(clock, 99)], key, clock.now(), hint=hints[0])
        raise RuntimeError("crash before commit")
    work(100)
    report = _verify(db, key)
    assert report["ok"] is True and report["records"] == 41
