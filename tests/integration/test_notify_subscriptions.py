"""FHIR Subscriptions over HTTP: topics, validation, $status, $events, websocket channel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from renkei.app import build_services, create_app
from renkei.clock import ManualClock
from renkei.config import Settings
from renkei.fhir.policy import AllowAll
from renkei.notify import NotifyConfig
from renkei.notify.hub import HubSettings
from renkei.notify.operations import BACKPORT_CAPABILITY_EXT
from renkei.notify.topics import TOPIC_BASE, TOPICS
from tests import authkit
from tests.notify_support import (
    FHIR_JSON,
    observation,
    patient_body,
    settle,
    subscription_body,
)


@pytest.fixture
def app_client(settings: Settings, clock: ManualClock) -> Iterator[TestClient]:
    config = NotifyConfig(
        hub=HubSettings(heartbeat_seconds=0.3), run_resthook=False, poll_seconds=0.1
    )
    services = build_services(settings, policy=AllowAll(), clock=clock, notify_config=config)
    with TestClient(
        create_app(settings, services=services),
        headers={"Authorization": f"Bearer {authkit.client_token(services, 'system/*.cruds')}"},
    ) as client:
        yield client
    services.db.dispose()


def post(client: TestClient, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    resp = client.post(
        f"/fhir/{body['resourceType']}", json=body, headers={"Content-Type": FHIR_JSON}
    )
    assert resp.status_code == status, resp.text
    result: dict[str, Any] = resp.json()
    return result


def wait_status(client: TestClient, sub_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        bundle = client.get(f"/fhir/Subscription/{sub_id}/$status").json()
        params = bundle["entry"][0]["resource"]["parameter"]
        since = next(p for p in params if p["name"] == "events-since-subscription-start")
        if int(since["valueString"]) >= count or time.monotonic() > deadline:
            result: list[dict[str, Any]] = params
            return result
        time.sleep(0.02)


def test_topic_list_and_capability_statement_name_the_topics(app_client: TestClient) -> None:
    listed = app_client.get("/fhir/Subscription/$topic-list").json()
    urls = {p["valueCanonical"] for p in listed["parameter"]}
    assert urls == set(TOPICS)
    assert f"{TOPIC_BASE}/urgent-call" in urls
    meta = app_client.get("/fhir/metadata").json()
    sub = next(r for r in meta["rest"][0]["resource"] if r["type"] == "Subscription")
    advertised = {
        e["valueCanonical"] for e in sub["extension"] if e["url"] == BACKPORT_CAPABILITY_EXT
    }
    assert advertised == urls
    ops = {o["name"] for o in sub["operation"]}
    assert {"status", "events", "get-ws-binding-token", "topic-list"} <= ops
    ws_ext = meta["rest"][0]["extension"][0]
    assert ws_ext["valueUri"] == "ws://testserver/ws"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (subscription_body("no-such-topic"), "unknown SubscriptionTopic"),
        (subscription_body("observation", filters=["Observation?color=red"]), "filter 'color'"),
        (subscription_body("observation", endpoint=None), "http(s) endpoint"),
        (subscription_body("observation", content="everything"), "payload content"),
        ({**subscription_body("observation"), "channel": {"type": "email"}}, "channel type"),
    ],
)
def test_invalid_subscription_is_refused_with_422(
    app_client: TestClient, body: dict[str, Any], needle: str
) -> None:
    resp = app_client.post("/fhir/Subscription", json=body, headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == 422, resp.text
    assert needle in resp.json()["issue"][0]["diagnostics"]
    assert app_client.get("/fhir/Subscription").json().get("total", 0) == 0


def test_status_and_events_replay(app_client: TestClient) -> None:
    pat = post(app_client, patient_body())
    ref = f"Patient/{pat['id']}"
    sub = post(
        app_client,
        subscription_body(
            "observation", channel="websocket", filters=[f"Observation?patient={ref}"]
        ),
    )
    obs = [post(app_client, observation(ref, v))["id"] for v in range(3)]
    post(app_client, observation("Patient/other"))
    params = wait_status(app_client, sub["id"], 3)
    by_name = {p["name"]: p for p in params}
    assert by_name["events-since-subscription-start"]["valueString"] == "3"
    assert by_name["type"]["valueCode"] == "query-status"
    assert by_name["topic"]["valueCanonical"] == f"{TOPIC_BASE}/observation"

    replay = app_client.get(
        f"/fhir/Subscription/{sub['id']}/$events",
        params={"eventsSinceNumber": "2", "content": "full-resource"},
    ).json()
    assert replay["type"] == "history"
    status = replay["entry"][0]["resource"]["parameter"]
    numbers = [p["part"][0]["valueString"] for p in status if p["name"] == "notification-event"]
    assert numbers == ["2", "3"]
    assert [e["resource"]["id"] for e in replay["entry"][1:]] == obs[1:]
    assert next(p for p in status if p["name"] == "type")["valueCode"] == "query-event"


def test_events_rejects_bad_numbers(app_client: TestClient) -> None:
    sub = post(app_client, subscription_body("observation", channel="websocket"))
    resp = app_client.get(
        f"/fhir/Subscription/{sub['id']}/$events", params={"eventsSinceNumber": "x"}
    )
    assert resp.status_code == 400


def _bundle_type(bundle: dict[str, Any]) -> str:
    params = bundle["entry"][0]["resource"]["parameter"]
    kind: str = next(p["valueCode"] for p in params if p["name"] == "type")
    return kind


def receive_bundle(ws: WebSocketTestSession, kind: str) -> dict[str, Any]:
    for _ in range(50):
        bundle: dict[str, Any] = ws.receive_json()
        if _bundle_type(bundle) == kind:
            return bundle
    raise AssertionError(f"no {kind} bundle")


def test_websocket_channel_bind_handshake_heartbeat_and_events(app_client: TestClient) -> None:
    pat = post(app_client, patient_body())
    ref = f"Patient/{pat['id']}"
    sub = post(
        app_client,
        subscription_body(
            "observation",
            channel="websocket",
            content="full-resource",
            filters=[f"Observation?patient={ref}"],
        ),
    )
    token_resp = app_client.post(f"/fhir/Subscription/{sub['id']}/$get-ws-binding-token")
    assert token_resp.status_code == 200, token_resp.text
    params = {p["name"]: p for p in token_resp.json()["parameter"]}
    assert params["websocket-url"]["valueUrl"] == "ws://testserver/ws"
    token = params["token"]["valueString"]
    with app_client.websocket_connect("/ws") as ws:
        ws.send_text(f"bind-with-token {token}")
        handshake = receive_bundle(ws, "handshake")
        assert handshake["type"] == "history"
        receive_bundle(ws, "heartbeat")
        obs = post(app_client, observation(ref, 38.4))
        note = receive_bundle(ws, "event-notification")
    status = note["entry"][0]["resource"]["parameter"]
    event = next(p for p in status if p["name"] == "notification-event")
    assert event["part"][0]["valueString"] == "1"
    assert note["entry"][1]["resource"]["id"] == obs["id"]


def test_websocket_channel_bad_binding_token_is_refused(app_client: TestClient) -> None:
    with app_client.websocket_connect("/ws") as ws:
        ws.send_text("bind-with-token not-a-token")
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
    assert info.value.code == 4001


def test_binding_token_refused_for_rest_hook_subscription(app_client: TestClient) -> None:
    sub = post(app_client, subscription_body("observation"))
    resp = app_client.post(f"/fhir/Subscription/{sub['id']}/$get-ws-binding-token")
    assert resp.status_code == 400
    assert "websocket channel" in resp.json()["issue"][0]["diagnostics"]


def test_subscription_off_stops_matching(app_client: TestClient) -> None:
    pat = post(app_client, patient_body())
    ref = f"Patient/{pat['id']}"
    sub = post(app_client, subscription_body("observation", channel="websocket"))
    post(app_client, observation(ref))
    wait_status(app_client, sub["id"], 1)
    off = {**sub, "status": "off"}
    resp = app_client.put(
        f"/fhir/Subscription/{sub['id']}", json=off, headers={"Content-Type": FHIR_JSON}
    )
    assert resp.status_code == 200
    post(app_client, observation(ref))
    settle(app_client)
    params = wait_status(app_client, sub["id"], 1)
    by_name = {p["name"]: p for p in params}
    assert by_name["status"]["valueCode"] == "off"
    assert by_name["events-since-subscription-start"]["valueString"] == "1"


def test_deleting_subscription_forgets_it(app_client: TestClient) -> None:
    sub = post(app_client, subscription_body("observation", channel="websocket"))
    assert app_client.delete(f"/fhir/Subscription/{sub['id']}").status_code == 200
    status = app_client.get(f"/fhir/Subscription/{sub['id']}/$status")
    assert status.status_code == 404
    assert app_client.get("/notify/status").json()["subscriptions"] == {}


def test_status_names_the_fan_out_bus(app_client: TestClient, settings: Settings) -> None:
    expected = "inprocess" if settings.is_sqlite else "postgres"  # no RENKEI_REDIS_URL here
    assert app_client.get("/notify/status").json()["bus"] == expected
