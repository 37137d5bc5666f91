"""The launch ticket between sign-in and the patient picker; names on the picker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from renkei.auth.errors import InvalidRequest, InvalidScope
from renkei.auth.launch import display_name, open_ticket, require_patient, seal_ticket
from renkei.auth.principal import Principal
from renkei.auth.server import AuthServer
from renkei.clock import ManualClock
from renkei.config import Secret, Settings

FIELDS = {"client_id": "app", "redirect_uri": "https://app.example.jp/cb", "scope": "patient/*.rs"}


@pytest.fixture
def auth(tmp_path: Path) -> AuthServer:
    clock = ManualClock(datetime(2026, 4, 1, tzinfo=UTC))
    settings = Settings(database_url=Secret(f"sqlite:///{tmp_path}/unused.db"), data_dir=tmp_path)
    return AuthServer(settings, clock)


def test_seal_ticket_round_trip(auth: AuthServer) -> None:
    ticket = seal_ticket(auth, FIELDS, "u1")
    assert "u1" not in ticket
    assert open_ticket(auth, FIELDS, ticket) == "u1"


def test_open_ticket_refuses_another_request_or_a_forgery(auth: AuthServer) -> None:
    ticket = seal_ticket(auth, FIELDS, "u1")
    with pytest.raises(InvalidRequest):
        open_ticket(auth, {**FIELDS, "scope": "patient/*.cruds"}, ticket)
    with pytest.raises(InvalidRequest):
        open_ticket(auth, FIELDS, ticket[:-3] + "AAA")
    with pytest.raises(InvalidRequest):
        open_ticket(auth, FIELDS, "not-a-ticket")


def test_open_ticket_refuses_an_expired_one(auth: AuthServer) -> None:
    ticket = seal_ticket(auth, FIELDS, "u1")
    assert isinstance(auth.clock, ManualClock)
    auth.clock.advance(timedelta(minutes=10))
    with pytest.raises(InvalidRequest, match="expired"):
        open_ticket(auth, FIELDS, ticket)


def test_require_patient_needs_a_patient_and_a_directory(auth: AuthServer) -> None:
    probe = Principal("u1", "user", scopes=frozenset({"user/Patient.rs"}))
    with pytest.raises(InvalidScope, match="patient context"):
        require_patient(None, auth, probe, None)  # type: ignore[arg-type]
    with pytest.raises(InvalidScope, match="not available"):
        require_patient(None, auth, probe, "pa")  # type: ignore[arg-type]


def test_display_name_family_first() -> None:
    name = {"family": "山田", "given": ["花子", "ハナ"]}
    assert display_name({"name": [name]}) == "山田 花子 ハナ"
    assert display_name({"id": "x", "name": []}) == "Patient/x"
