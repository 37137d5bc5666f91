"""The hash chain: append records in sequence order, seal the head, verify everything.

Each record's ``hash`` is ``sha256(prev_hash + "\\n" + body)``, so changing, removing or
inserting a record breaks every later link; each record also carries an HMAC of its seq and
hash by the seal key, so a forger who recomputes the chain still cannot produce valid MACs.
The head row (last seq and hash, with an HMAC) shows where the chain must end, which
catches a cut tail; seals are periodic HMAC'd checkpoints kept as history.

Appends are serialised by the head row: ``SELECT ... FOR UPDATE`` on PostgreSQL, the
database write lock on SQLite. Callers append at the very end of their unit of work, so
the lock is held only for the inserts and the commit; a crash before commit leaves
neither the records nor the head moved, so the chain never has holes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from renkei.audit.errors import ChainBroken
from renkei.audit.key import SealKey
from renkei.audit.models import audit_head, audit_patient, audit_record, audit_seal

GENESIS = "0" * 64
#: a seal row every this many records (the head row is re-MAC'd on every append)
SEAL_EVERY = 256
#: columns repeated from the body for search; verify checks them against the body
_COLUMNS = (
    "subject",
    "organization_id",
    "practitioner_role_id",
    "client_id",
    "role",
    "interaction",
    "res_type",
    "status",
    "break_glass",
)


def canonical(fields: dict[str, Any]) -> str:
    """The exact text a record's hash covers: sorted keys, no spaces, UTF-8 kept.

    >>> canonical({"seq": 1, "b": "ヤマダ", "a": None})
    '{"a":null,"b":"ヤマダ","seq":1}'
    """
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def link_hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def _record_mac(key: SealKey, seq: int, digest: str) -> str:
    return key.mac(f"record:{seq}:{digest}")


def _head_mac(key: SealKey, seq: int, digest: str) -> str:
    return key.mac(f"head:{seq}:{digest}")


def _seal_mac(key: SealKey, seq: int, digest: str) -> str:
    return key.mac(f"seal:{seq}:{digest}")


_SELECT_HEAD = sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
_LOCK_HEAD = _SELECT_HEAD.with_for_update()
_INSERT_RECORDS = audit_record.insert()
_INSERT_PATIENTS = audit_patient.insert()
_MOVE_HEAD = (
    audit_head.update()
    .where(audit_head.c.id == 1)
    .values(
        seq=sa.bindparam("h_seq"),
        hash=sa.bindparam("h_hash"),
        mac=sa.bindparam("h_mac"),
        key_id=sa.bindparam("h_key"),
        updated=sa.bindparam("h_updated"),
    )
)


@dataclass
class _Head:
    seq: int
    hash: str


def _lock_head(session: Session) -> _Head:
    """The head row, locked until commit; created on an empty log."""
    stmt = _LOCK_HEAD if session.get_bind().dialect.name == "postgresql" else _SELECT_HEAD
    row = session.execute(stmt).first()
    if row is not None:
        return _Head(int(row.seq), str(row.hash))
    if session.execute(sa.select(audit_record.c.seq).limit(1)).first() is not None:
        # A first writer may have committed head and records between our two statements
        # (READ COMMITTED takes a new snapshot per statement): look once more.
        row = session.execute(stmt).first()
        if row is not None:
            return _Head(int(row.seq), str(row.hash))
        raise ChainBroken("the audit chain head is missing while records exist")
    try:
        with session.begin_nested():
            session.execute(audit_head.insert().values(id=1, seq=0, hash=GENESIS))
    except IntegrityError:
        pass  # a concurrent first append created it
    row = session.execute(stmt).one()
    return _Head(int(row.seq), str(row.hash))


class HeadHint:
    """The last head this process wrote: lets PostgreSQL append in one round trip.

    Only a hint: the append is conditional on the head still being this one, and falls
    back to locking and reading the head when another writer (or a rollback) moved it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: _Head | None = None

    def get(self) -> _Head | None:
        with self._lock:
            return self._value

    def set(self, head: _Head | None) -> None:
        with self._lock:
            self._value = head


@dataclass
class _Batch:
    records: list[dict[str, Any]]
    patients: list[dict[str, Any]]
    seals: list[dict[str, Any]]
    head: _Head
    seqs: list[int]


def _build(head: _Head, items: list[dict[str, Any]], key: SealKey, now: datetime) -> _Batch:
    batch = _Batch([], [], [], head, [])
    for fields in items:
        seq = head.seq + 1
        fields = {**fields, "seq": seq}
        body = canonical(fields)
        digest = link_hash(head.hash, body)
        row = {c: fields.get(c) for c in _COLUMNS}
        row.update(
            seq=seq,
            recorded=datetime.fromisoformat(fields["recorded"]),
            body=body,
            prev_hash=head.hash,
            hash=digest,
            mac=_record_mac(key, seq, digest),
            key_id=key.key_id,
        )
        row["break_glass"] = bool(row["break_glass"])
        batch.records.append(row)
        batch.patients.extend({"patient_id": p, "seq": seq} for p in fields.get("patients") or ())
        if seq % SEAL_EVERY == 0:
            batch.seals.append(_seal_row(key, seq, digest, now))
        head = _Head(seq, digest)
        batch.seqs.append(seq)
    batch.head = head
    return batch


def append(
    session: Session,
    entries: Iterable[dict[str, Any]],
    key: SealKey,
    now: datetime,
    *,
    hint: HeadHint | None = None,
    durable: bool = True,
) -> list[int]:
    """Append records (dicts of JSON values with ``recorded`` and ``patients``); their seqs.

    Must run inside the caller's write transaction, as its last statement before commit.
    ``durable=False`` (PostgreSQL): this transaction's commit does not wait for the WAL
    flush; a database crash may lose the newest such transactions whole, never a link.
    """
    items = list(entries)
    if not items:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return _pg_append(session, items, key, now, hint, durable)
    batch = _build(_lock_head(session), items, key, now)
    session.execute(_INSERT_RECORDS, batch.records)
    if batch.patients:
        session.execute(_INSERT_PATIENTS, batch.patients)
    if batch.seals:
        session.execute(audit_seal.insert(), batch.seals)
    session.execute(_MOVE_HEAD, _head_params(key, batch.head, now))
    if hint is not None:
        hint.set(batch.head)
    return batch.seqs


def _pg_append(
    session: Session,
    items: list[dict[str, Any]],
    key: SealKey,
    now: datetime,
    hint: HeadHint | None,
    durable: bool,
) -> list[int]:
    """One statement: on the hinted head without a lock, else after locking the head."""
    expected = hint.get() if hint is not None else None
    batch = None
    if expected is not None:
        batch = _build(expected, items, key, now)
        if not _pg_append_if_head(session, expected, batch, key, now, durable):
            batch = None
    if batch is None:
        head = _lock_head(session)
        batch = _build(head, items, key, now)
        if not _pg_append_if_head(session, head, batch, key, now, durable):
            raise ChainBroken("the audit chain head moved while this transaction held its lock")
    if hint is not None:
        hint.set(batch.head)
    return batch.seqs


def _head_params(key: SealKey, head: _Head, now: datetime) -> dict[str, Any]:
    return {
        "h_seq": head.seq,
        "h_hash": head.hash,
        "h_mac": _head_mac(key, head.seq, head.hash),
        "h_key": key.key_id,
        "h_updated": now,
    }


#: the record columns and their PostgreSQL types (from the table), for ``json_to_recordset``
_RECORD_TYPES = {
    str(c.name): c.type.compile(dialect=postgresql.dialect()) for c in audit_record.columns
}
_RECORD_COLS = ", ".join(_RECORD_TYPES)
#: one statement, the same text for any batch (prepared once): rows travel as JSON
_PG_APPEND_IF_HEAD = sa.text(
    f"""
WITH cfg AS (SELECT set_config('synchronous_commit', :sc, true) AS v),
h AS (UPDATE audit_head SET seq = :h_seq, hash = :h_hash, mac = :h_mac,
  key_id = :h_key, updated = :h_updated
  WHERE id = 1 AND seq = :e_seq AND hash = :e_hash RETURNING seq),
r AS (INSERT INTO audit_record ({_RECORD_COLS})
  SELECT {_RECORD_COLS} FROM json_to_recordset(CAST(:rows AS json))
    AS v({", ".join(f"{c} {t}" for c, t in _RECORD_TYPES.items())})
  WHERE EXISTS (SELECT 1 FROM h) RETURNING seq),
p AS (INSERT INTO audit_patient (patient_id, seq)
  SELECT patient_id, seq FROM json_to_recordset(CAST(:patients AS json))
    AS v(patient_id text, seq bigint)
  WHERE EXISTS (SELECT 1 FROM h)),
s AS (INSERT INTO audit_seal (seq, hash, mac, key_id, sealed_at)
  SELECT seq, hash, mac, key_id, sealed_at FROM json_to_recordset(CAST(:seals AS json))
    AS v(seq bigint, hash text, mac text, key_id text, sealed_at timestamptz)
  WHERE EXISTS (SELECT 1 FROM h))
SELECT (SELECT count(*) FROM h), (SELECT count(*) FROM r), (SELECT v FROM cfg)
"""
)


def _json_row(record: dict[str, Any]) -> dict[str, Any]:
    return {c: record[c].isoformat() if c == "recorded" else record[c] for c in _RECORD_TYPES}


def _pg_append_if_head(
    session: Session, expected: _Head, batch: _Batch, key: SealKey, now: datetime, durable: bool
) -> bool:
    """One statement: move the head iff it is still ``expected``, and insert the rows
    (records, their patients, and any seal).

    Data-modifying CTEs run together; the inserts only happen when the conditional
    UPDATE matched (it holds the head row lock until commit, so appends stay serial).
    """
    params: dict[str, Any] = {**_head_params(key, batch.head, now)}
    params.update(
        e_seq=expected.seq,
        e_hash=expected.hash,
        sc="off" if not durable else "on",
        # the rows travel as JSON text (hashes cover ``body``, not this encoding)
        rows=orjson.dumps([_json_row(r) for r in batch.records]).decode(),
        patients=orjson.dumps(batch.patients).decode(),
        seals=orjson.dumps(batch.seals).decode(),
    )
    moved, inserted, _ = session.execute(_PG_APPEND_IF_HEAD, params).one()
    if not moved:
        # someone else moved the head: undo the synchronous_commit change, use the lock
        if not durable:
            session.execute(sa.text("SELECT set_config('synchronous_commit', 'on', true)"))
        return False
    assert inserted == len(batch.records)
    return True


def _seal_row(key: SealKey, seq: int, digest: str, now: datetime) -> dict[str, Any]:
    return {
        "seq": seq,
        "hash": digest,
        "mac": _seal_mac(key, seq, digest),
        "key_id": key.key_id,
        "sealed_at": now,
    }


def seal(session: Session, key: SealKey, now: datetime) -> dict[str, Any]:
    """Write a seal for the current head now (``renkei audit seal``, e.g. from cron)."""
    head = _lock_head(session)
    if head.seq == 0:
        return {"sealed": False, "seq": 0}
    exists = session.execute(
        sa.select(audit_seal.c.seq).where(audit_seal.c.seq == head.seq)
    ).first()
    if exists is None:
        session.execute(audit_seal.insert().values(**_seal_row(key, head.seq, head.hash, now)))
    return {"sealed": True, "seq": head.seq, "hash": head.hash}


# -- verification -----------------------------------------------------------------------------


@dataclass
class Report:
    records: int = 0
    head_seq: int = 0
    seals: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, seq: int, kind: str, detail: str) -> None:
        if len(self.problems) < 100:
            self.problems.append({"seq": seq, "kind": kind, "detail": detail})

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.ok,
            "records": self.records,
            "head_seq": self.head_seq,
            "seals": self.seals,
        }
        if self.problems:
            self.problems.sort(key=lambda p: p["seq"])
            out["first_bad_seq"] = self.problems[0]["seq"]
            out["problems"] = self.problems
        return out


def _rows(session: Session) -> Iterator[Any]:
    stmt = sa.select(audit_record).order_by(audit_record.c.seq)
    yield from session.execute(stmt.execution_options(yield_per=2000))


def verify(session: Session, key: SealKey) -> Report:
    """Check every link, MAC, column, seal and the head; name the first bad seq."""
    report = Report()
    seals = {int(r.seq): r for r in session.execute(sa.select(audit_seal))}
    report.seals = len(seals)
    head = session.execute(sa.select(audit_head).where(audit_head.c.id == 1)).first()
    head_seq = int(head.seq) if head is not None else None
    head_record_hash: str | None = None
    expected, prev = 1, GENESIS
    for row in _rows(session):
        seq = int(row.seq)
        report.records += 1
        if seq != expected:
            if seq > expected:
                missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
                report.add(expected, "deleted", f"record(s) {missing} are missing")
            else:
                report.add(seq, "order", f"seq {seq} is out of order")
        if row.prev_hash != prev:
            report.add(seq, "link", "prev_hash does not match the previous record's hash")
        if link_hash(row.prev_hash, row.body) != row.hash:
            report.add(seq, "edited", "the body does not match the record's hash")
        if not key.check(f"record:{seq}:{row.hash}", row.mac):
            report.add(seq, "mac", "the record's HMAC is not valid (forged or inserted record)")
        _check_columns(report, row)
        seal_row = seals.get(seq)
        if seal_row is not None and seal_row.hash != row.hash:
            report.add(seq, "seal", "the sealed hash at this seq differs from the record's")
        if seq == head_seq:
            head_record_hash = row.hash
        prev, expected = row.hash, seq + 1
    last = expected - 1
    _check_head(key, report, head, last, head_record_hash)
    for seq, seal_row in sorted(seals.items()):
        if not key.check(f"seal:{seq}:{seal_row.hash}", seal_row.mac):
            report.add(seq, "seal", "the seal's HMAC is not valid")
        if seq > last:
            report.add(last + 1, "truncated", f"a seal names seq {seq} but the log ends at {last}")
    return report


def _check_columns(report: Report, row: Any) -> None:
    try:
        body = json.loads(row.body)
    except ValueError:
        report.add(int(row.seq), "edited", "the body is not JSON")
        return
    if body.get("seq") != int(row.seq):
        report.add(int(row.seq), "renumbered", f"the body was written as seq {body.get('seq')}")
    for column in _COLUMNS:
        stored = getattr(row, column)
        expected = body.get(column)
        if column == "break_glass":
            stored, expected = bool(stored), bool(expected)
        if stored != expected:
            report.add(int(row.seq), "edited", f"column {column} differs from the hashed body")
    recorded = row.recorded
    if recorded is None or datetime.fromisoformat(body.get("recorded", "")) != recorded:
        report.add(int(row.seq), "edited", "column recorded differs from the hashed body")


def _check_head(
    key: SealKey, report: Report, head: Any, last: int, head_record_hash: str | None
) -> None:
    if head is None:
        if last > 0:
            report.add(1, "head", "the chain head row is missing")
        return
    seq = int(head.seq)
    report.head_seq = seq
    if seq > 0 and not key.check(f"head:{seq}:{head.hash}", head.mac):
        report.add(min(seq, last + 1), "head", "the chain head's HMAC is not valid")
    if seq > last:
        report.add(
            last + 1, "truncated", f"the head is sealed at seq {seq} but the log ends at {last}"
        )
    elif seq < last:
        report.add(seq + 1, "inserted", f"records after the sealed head (seq {seq}) were added")
    elif seq > 0 and head_record_hash != head.hash:
        report.add(seq, "head", "the last record's hash differs from the sealed head")


__all__ = [
    "GENESIS",
    "SEAL_EVERY",
    "HeadHint",
    "Report",
    "append",
    "canonical",
    "link_hash",
    "seal",
    "verify",
]
