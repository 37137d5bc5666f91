"""A routed call reaches the paged doctor's open websocket (renkei.notify, topic my-calls)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession

from renkei.app import Services, build_services, create_app
from renkei.calls import CallSettings
from renkei.calls.ports import NotifyBusNotifier
from renkei.clock import ManualClock
from renkei.config import Settings
from renkei.fhir.policy import AllowAll
from renkei.notify import NotifyConfig
from renkei.notify.hub import HubSettings
from tests import authkit
from tests.calls_support import CallDriver, jst, principal_for, seed_network
from tests.notify_support import TokenMap


@pytest.fixture
def setup(
    settings: Settings, clock: ManualClock
) -> Iterator[tuple[TestClient, CallDriver, TokenMap]]:
    tokens = TokenMap()
    services: Services = build_services(
        settings,
        policy=AllowAll(),
        clock=clock,
        call_settings=CallSettings(worker=False),
        notify_config=NotifyConfig(
            hub=HubSettings(heartbeat_seconds=5, auth_recheck_seconds=5, queue_size=100),
            run_resthook=False,
            poll_seconds=0.05,
        ),
        notify_kwargs={"token_verifier": tokens},
    )
    clock.set(jst(2026, 4, 1, 23, 0))
    driver = CallDriver(services, clock, seed_network(services))
    driver.runtime.ports.notifier = NotifyBusNotifier(clock)
    for token, role in (("duty", driver.net.duty), ("backup", driver.net.backup)):
        tokens.tokens[token] = principal_for(role)
    token = authkit.client_token(services, "system/*.cruds")
    with TestClient(
        create_app(settings, services=services), headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield client, driver, tokens
    services.db.dispose()


def _call_events(ws: WebSocketTestSession, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(50):
        msg = ws.receive_json()
        if msg["type"] == "event" and msg["event"]["kind"] == "call":
            out.append(msg["event"])
            if len(out) == count:
                return out
    raise AssertionError(f"only {len(out)} call events")


def _subscribe(ws: WebSocketTestSession, token: str) -> None:
    ws.send_json({"type": "auth", "token": token})
    while ws.receive_json()["type"] != "welcome":
        pass
    ws.send_json({"type": "subscribe", "id": "c", "topic": "my-calls"})
    while ws.receive_json()["type"] != "subscribed":
        pass


def test_page_reaches_the_on_duty_doctors_websocket_then_the_backups(
    setup: tuple[TestClient, CallDriver, TokenMap],
) -> None:
    client, driver, _tokens = setup
    with client.websocket_connect("/ws") as duty_ws, client.websocket_connect("/ws") as backup_ws:
        _subscribe(duty_ws, "duty")
        _subscribe(backup_ws, "backup")
        call_id = driver.raise_call()["id"]
        (page,) = _call_events(duty_ws, 1)
        assert (page["action"], page["resource"]) == ("page", f"Task/{call_id}")
        assert page["audience"] == [driver.net.duty]
        assert page["data"]["step"]["seq"] == 1
        assert page["data"]["call"]["patient_summary"].endswith("/$summary")
        driver.advance(minutes=5)  # nobody acknowledged: the back-up is paged
        (page2,) = _call_events(backup_ws, 1)
        assert page2["action"] == "page" and page2["data"]["step"]["seq"] == 2
