"""``/ws`` for people through the ASGI app: auth, topics, resume, token revocation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from renkei.app import Services, build_services, create_app
from renkei.clock import ManualClock
from renkei.config import Settings
from renkei.fhir.policy import AllowAll
from renkei.notify import NotifyConfig
from renkei.notify.hub import HubSettings
from tests import authkit
from tests.notify_support import (
    FHIR_JSON,
    CareTeamTestPolicy,
    TokenMap,
    care_team,
    observation,
    patient_body,
    settle,
)


@pytest.fixture
def tokens() -> TokenMap:
    tokens = TokenMap()
    tokens.add("tok-a", "org-a", "role-a")
    tokens.add("tok-b", "org-b", "role-b")
    return tokens


@pytest.fixture
def ws_client(settings: Settings, clock: ManualClock, tokens: TokenMap) -> Iterator[TestClient]:
    config = NotifyConfig(
        hub=HubSettings(heartbeat_seconds=0.2, auth_recheck_seconds=0.2, queue_size=100),
        run_resthook=False,
        poll_seconds=0.1,
    )
    services: Services = build_services(
        settings,
        policy=AllowAll(),
        clock=clock,
        notify_config=config,
        notify_kwargs={"token_verifier": tokens},
    )
    with TestClient(
        create_app(settings, services=services),
        headers={"Authorization": f"Bearer {authkit.client_token(services, 'system/*.cruds')}"},
    ) as client:
        yield client
    services.db.dispose()


def post(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    resp = client.post(
        f"/fhir/{body['resourceType']}", json=body, headers={"Content-Type": FHIR_JSON}
    )
    assert resp.status_code == 201, resp.text
    result: dict[str, Any] = resp.json()
    return result


def receive_until(ws: WebSocketTestSession, kind: str, limit: int = 50) -> dict[str, Any]:
    for _ in range(limit):
        msg: dict[str, Any] = ws.receive_json()
        if msg["type"] == kind:
            return msg
    raise AssertionError(f"no {kind!r} message")


def sign_in_and_subscribe(ws: WebSocketTestSession, token: str, topic: str) -> None:
    ws.send_json({"type": "auth", "token": token})
    receive_until(ws, "welcome")
    ws.send_json({"type": "subscribe", "id": "s", "topic": topic})
    receive_until(ws, "subscribed")


def events(ws: WebSocketTestSession, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < count:
        msg = ws.receive_json()
        if msg["type"] == "event":
            out.append(msg)
    return out


def test_ws_auth_first_message_and_patient_topic(ws_client: TestClient) -> None:
    pat = post(ws_client, patient_body())
    settle(ws_client)
    with ws_client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": "tok-a"})
        welcome = receive_until(ws, "welcome")
        assert welcome["heartbeat"] == 0.2
        ws.send_json({"type": "subscribe", "id": "p", "topic": "patient", "patient": pat["id"]})
        receive_until(ws, "subscribed")
        obs = post(ws_client, observation(f"Patient/{pat['id']}"))
        post(ws_client, observation("Patient/someone-else"))
        (msg,) = events(ws, 1)
        assert msg["subscriptions"] == ["p"]
        assert msg["event"]["resource"] == f"Observation/{obs['id']}"
        assert msg["event"]["patient"] == f"Patient/{pat['id']}"
        assert msg["event"]["action"] == "create"
        assert msg["seq"] > welcome["position"]


def test_ws_auth_by_subprotocol_header(ws_client: TestClient) -> None:
    with ws_client.websocket_connect("/ws", subprotocols=["renkei.v1", "bearer.tok-b"]) as ws:
        assert ws.accepted_subprotocol == "renkei.v1"
        assert receive_until(ws, "welcome")["type"] == "welcome"


def test_ws_bad_token_is_closed_4001(ws_client: TestClient) -> None:
    with ws_client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": "nope"})
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
    assert info.value.code == 4001


def test_ws_token_in_url_is_not_accepted(ws_client: TestClient) -> None:
    with ws_client.websocket_connect("/ws?access_token=tok-a") as ws:
        ws.send_json({"type": "subscribe", "topic": "my-calls"})
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
    assert info.value.code == 4001


def test_ws_my_patients_follows_care_team(ws_client: TestClient) -> None:
    mine = post(ws_client, patient_body("自分"))
    other = post(ws_client, patient_body("他人"))
    post(ws_client, care_team(f"Patient/{mine['id']}", "org-a"))
    settle(ws_client)
    with ws_client.websocket_connect("/ws") as ws:
        sign_in_and_subscribe(ws, "tok-a", "my-patients")
        post(ws_client, observation(f"Patient/{other['id']}"))
        obs = post(ws_client, observation(f"Patient/{mine['id']}"))
        (msg,) = events(ws, 1)
        assert msg["event"]["resource"] == f"Observation/{obs['id']}"


def test_ws_my_patients_follows_care_team_changes_while_connected(ws_client: TestClient) -> None:
    """A CareTeam written after subscribing adds its patient; made inactive, removes it.
    Members are found through the search index (a role and an organisation both count)."""
    joined = post(ws_client, patient_body("途中参加"))
    settle(ws_client)
    with ws_client.websocket_connect("/ws") as ws:
        sign_in_and_subscribe(ws, "tok-a", "my-patients")
        team = care_team(f"Patient/{joined['id']}", "org-z")
        team["participant"].append({"member": {"reference": "PractitionerRole/role-a"}})
        team = post(ws_client, team)
        (msg,) = events(ws, 1)  # the CareTeam itself is about a patient now on the list
        assert msg["event"]["resource"] == f"CareTeam/{team['id']}"
        obs = post(ws_client, observation(f"Patient/{joined['id']}"))
        (msg,) = events(ws, 1)
        assert msg["event"]["resource"] == f"Observation/{obs['id']}"
        ended = {**team, "status": "inactive"}
        resp = ws_client.put(
            f"/fhir/CareTeam/{team['id']}", json=ended, headers={"Content-Type": FHIR_JSON}
        )
        assert resp.status_code == 200, resp.text
        settle(ws_client)
        unseen = post(ws_client, observation(f"Patient/{joined['id']}"))
        mine = post(ws_client, patient_body("自分"))
        post(ws_client, care_team(f"Patient/{mine['id']}", "org-a"))
        later = post(ws_client, observation(f"Patient/{mine['id']}"))
        received: list[str] = []
        while f"Observation/{later['id']}" not in received:
            received += [m["event"]["resource"] for m in events(ws, 1)]
        assert f"Observation/{unseen['id']}" not in received


def test_ws_my_calls_receives_urgent_call_for_my_role(ws_client: TestClient) -> None:
    pat = post(ws_client, patient_body())
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": "stat",
        "code": {
            "coding": [
                {
                    "system": "https://renkei.example.jp/fhir/CodeSystem/renkei",
                    "code": "urgent-call",
                }
            ]
        },
        "for": {"reference": f"Patient/{pat['id']}"},
        "owner": {"reference": "PractitionerRole/role-a"},
    }
    with ws_client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": "tok-a"})
        receive_until(ws, "welcome")
        ws.send_json({"type": "subscribe", "id": "c", "topic": "my-calls"})
        receive_until(ws, "subscribed")
        post(ws_client, {**task, "owner": {"reference": "PractitionerRole/role-b"}})
        created = post(ws_client, task)
        (msg,) = events(ws, 1)
        assert msg["event"]["resource"] == f"Task/{created['id']}"
        assert msg["event"]["data"]["urgentCall"] is True


def test_ws_resume_replays_missed_events_without_gap_or_duplicate(ws_client: TestClient) -> None:
    pat = post(ws_client, patient_body())
    ref = f"Patient/{pat['id']}"
    settle(ws_client)
    with ws_client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": "tok-a"})
        receive_until(ws, "welcome")
        ws.send_json({"type": "subscribe", "id": "p", "topic": "patient", "patient": ref})
        receive_until(ws, "subscribed")
        post(ws_client, observation(ref, 1))
        (first,) = events(ws, 1)
    last = first["seq"]
    missed = [post(ws_client, observation(ref, v))["id"] for v in range(2, 7)]
    settle(ws_client)
    with ws_client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": "tok-a"})
        receive_until(ws, "welcome")
        ws.send_json({"type": "subscribe", "id": "p", "topic": "patient", "patient": ref})
        receive_until(ws, "subscribed")
        ws.send_json({"type": "resume", "after": last})
        replayed = events(ws, 5)
        resumed = receive_until(ws, "resumed")
        live = post(ws_client, observation(ref, 99))
        (after,) = events(ws, 1)
    got = [m["event"]["resource"].split("/")[1] for m in replayed]
    assert got == missed
    seqs = [m["seq"] for m in replayed]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert resumed["position"] >= seqs[-1]
    assert after["event"]["resource"] == f"Observation/{live['id']}"
    assert after["seq"] > seqs[-1]


def test_ws_heartbeat_carries_position(ws_client: TestClient) -> None:
    with ws_client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": "tok-a"})
        welcome = receive_until(ws, "welcome")
        beat = receive_until(ws, "heartbeat")
        assert beat["position"] >= welcome["position"]


def test_ws_revoked_token_closes_connection(ws_client: TestClient, tokens: TokenMap) -> None:
    with ws_client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": "tok-a"})
        receive_until(ws, "welcome")
        tokens.revoke("tok-a")
        deadline = time.monotonic() + 5
        with pytest.raises(WebSocketDisconnect) as info:
            while time.monotonic() < deadline:
                ws.receive_json()
    assert info.value.code == 4001
    assert "resume after" in (info.value.reason or "")


def test_ws_unknown_message_is_an_error_reply(ws_client: TestClient) -> None:
    with ws_client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": "tok-a"})
        receive_until(ws, "welcome")
        ws.send_text(json.dumps({"type": "dance"}))
        err = receive_until(ws, "error")
        assert "unknown message type" in err["message"]


@pytest.fixture
def policy_client(settings: Settings, clock: ManualClock, tokens: TokenMap) -> Iterator[TestClient]:
    config = NotifyConfig(run_resthook=False, poll_seconds=0.1)
    services: Services = build_services(
        settings,
        clock=clock,
        policy=CareTeamTestPolicy(),
        notify_config=config,
        notify_kwargs={"token_verifier": tokens},
    )
    with TestClient(
        create_app(settings, services=services),
        headers={"Authorization": f"Bearer {authkit.client_token(services, 'system/*.cruds')}"},
    ) as client:
        yield client
    services.db.dispose()


def test_ws_stops_at_once_when_organisation_leaves_care_team(policy_client: TestClient) -> None:
    client = policy_client
    pat = post(client, patient_body())
    other = post(client, patient_body("別人"))
    ref, other_ref = f"Patient/{pat['id']}", f"Patient/{other['id']}"
    team = post(client, care_team(ref, "org-a", "org-b"))
    post(client, care_team(other_ref, "org-a"))
    settle(client)
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": "tok-a"})
        receive_until(ws, "welcome")
        for pid, patient in (("p", ref), ("q", other_ref)):
            ws.send_json({"type": "subscribe", "id": pid, "topic": "patient", "patient": patient})
            receive_until(ws, "subscribed")
        seen = post(client, observation(ref, 1))
        (first,) = events(ws, 1)
        assert first["event"]["resource"] == f"Observation/{seen['id']}"
        team["participant"] = [{"member": {"reference": "Organization/org-b"}}]
        resp = client.put(
            f"/fhir/CareTeam/{team['id']}", json=team, headers={"Content-Type": FHIR_JSON}
        )
        assert resp.status_code == 200
        post(client, observation(ref, 2))  # org-a may no longer see this patient
        marker = post(client, observation(other_ref, 3))
        (nxt,) = events(ws, 1)
    assert nxt["event"]["resource"] == f"Observation/{marker['id']}"


def test_a_busy_spell_shares_one_sequencer_round(settings: Settings, clock: ManualClock) -> None:
    """The first commit after a quiet spell is sequenced at once; the commits that follow
    within ``gather_seconds`` wait for one shared round instead of a round each."""
    config = NotifyConfig(run_resthook=False, poll_seconds=30, gather_seconds=1.0)
    services = build_services(settings, policy=AllowAll(), clock=clock, notify_config=config)
    notify = services.notify
    assert notify is not None
    rounds: list[int] = []
    sequence_once = notify.sequence_once

    def counted(*, probe: bool = True) -> Any:
        out = sequence_once(probe=probe)
        if out:
            rounds.append(len(out))
        return out

    notify.sequence_once = counted  # type: ignore[method-assign]
    token = authkit.client_token(services, "system/*.cruds")
    with TestClient(
        create_app(settings, services=services), headers={"Authorization": f"Bearer {token}"}
    ) as client:
        time.sleep(config.gather_seconds)  # the start-up round is past: a quiet spell
        pat = post(client, patient_body())
        deadline = time.monotonic() + config.gather_seconds / 2
        while not rounds and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rounds == [1], "the first event after a quiet spell waits for nobody"
        for n in range(5):
            post(client, observation(f"Patient/{pat['id']}", 36.0 + n))
        settle(client)
    services.db.dispose()
    assert rounds == [1, 5]
