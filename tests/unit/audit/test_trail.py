"""Security events from the auth package go into the same chain."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from renkei.audit.chain import verify
from renkei.audit.key import SealKey
from renkei.audit.trail import AuditTrail
from renkei.clock import ManualClock
from renkei.store.db import Database


@dataclass(frozen=True)
class _AuthEvent:
    action: str
    at: datetime
    outcome: str = "success"
    subject: str | None = None
    subject_kind: str | None = None
    organization_id: str | None = None
    client_id: str | None = None
    remote_addr: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def test_security_listener_appends_chained_record(
    database_url: str, tmp_path: Path, clock: ManualClock
) -> None:
    db = Database(database_url)
    key = SealKey.load(tmp_path / "k.key")
    trail = AuditTrail(key, clock)
    when = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)
    with db.session(write=True) as s:
        trail.security_listener(
            s,
            _AuthEvent(
                "login.failed",
                when,
                outcome="failure",
                subject="u1",
                subject_kind="user",
                organization_id="Organization/org-a",
                remote_addr="10.0.0.8",
                detail={"login": "yamada"},
            ),
        )
        trail.security_listener(s, _AuthEvent("token.issued.operator", when, subject="u1"))
    with db.session() as s:
        rows = list(s.execute(sa.text("SELECT seq, status, body FROM audit_record ORDER BY seq")))
        assert verify(s, key).ok
    db.dispose()
    first = json.loads(rows[0].body)
    assert (first["interaction"], first["outcome"], rows[0].status) == ("login.failed", "4", 401)
    assert first["organization_id"] == "org-a" and first["source"] == "10.0.0.8"
    assert json.loads(first["detail"]) == {"login": "yamada"}
    assert json.loads(rows[1].body)["interaction"] == "token.issued.operator"
