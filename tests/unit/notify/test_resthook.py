"""Rest-hook deliveries: handshake, signatures, ordered retries with back-off, give-up,
and access re-checked at delivery time. The clock is moved; nothing sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from renkei.app import Services, build_services
from renkei.auth.principal import Principal
from renkei.clock import ManualClock
from renkei.config import Settings
from renkei.notify import NotifyConfig
from renkei.notify.models import subscription, subscription_event
from renkei.notify.resthook import SIGNATURE_HEADER, RestHookSettings, verify
from tests.notify_support import (
    CareTeamTestPolicy,
    care_team,
    fhir_call,
    observation,
    patient_body,
    subscription_body,
)

ORG_A = Principal("user-a", "user", organization_id="org-a")


class Receiver:
    """An endpoint that fails while ``down`` and records what it accepted."""

    def __init__(self) -> None:
        self.down = False
        self.accepted: list[dict[str, Any]] = []
        self.raw: list[tuple[bytes, str]] = []
        self.attempts = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if self.down:
            return httpx.Response(503)
        body = request.read()
        self.raw.append((body, request.headers[SIGNATURE_HEADER]))
        self.accepted.append(orjson.loads(body))
        return httpx.Response(200)

    def numbers(self) -> list[int]:
        out = []
        for bundle in self.accepted:
            status = bundle["entry"][0]["resource"]
            for p in status["parameter"]:
                if p["name"] == "notification-event":
                    out.append(int(p["part"][0]["valueString"]))
        return out

    def kinds(self) -> list[str]:
        return [
            next(
                p["valueCode"]
                for p in b["entry"][0]["resource"]["parameter"]
                if p["name"] == "type"
            )
            for b in self.accepted
        ]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def svc(settings: Settings, clock: ManualClock, receiver: Receiver) -> Iterator[Services]:
    config = NotifyConfig(run_sequencer=False, run_resthook=False, resthook=RestHookSettings())
    services = build_services(
        settings,
        clock=clock,
        policy=CareTeamTestPolicy(),
        notify_config=config,
        notify_kwargs={"http": httpx.Client(transport=httpx.MockTransport(receiver))},
    )
    yield services
    services.db.dispose()


def create(svc: Services, body: dict[str, Any], principal: Any = ORG_A) -> dict[str, Any]:
    resp = fhir_call(svc, "POST", body["resourceType"], body, principal=principal)
    assert resp.status == 201, resp.body
    result: dict[str, Any] = resp.body
    return result


def sub_row(svc: Services, sub_id: str) -> Any:
    with svc.db.session() as session:
        return session.execute(sa.select(subscription).where(subscription.c.id == sub_id)).one()


def setup_patient(svc: Services) -> str:
    pat = create(svc, patient_body())
    ref = f"Patient/{pat['id']}"
    create(svc, care_team(ref, "org-a"))
    return ref


def test_handshake_activates_subscription(svc: Services, receiver: Receiver) -> None:
    sub = create(svc, subscription_body("observation"))
    assert sub_row(svc, sub["id"]).status == "requested"
    report = svc.notify.deliver_once()  # type: ignore[union-attr]
    assert report.claimed == 1
    assert receiver.kinds() == ["handshake"]
    assert sub_row(svc, sub["id"]).status == "active"
    current = fhir_call(svc, "GET", f"Subscription/{sub['id']}").body
    assert current["status"] == "active"


def test_failed_handshake_puts_subscription_in_error(svc: Services, receiver: Receiver) -> None:
    receiver.down = True
    sub = create(svc, subscription_body("observation"))
    svc.notify.deliver_once()  # type: ignore[union-attr]
    row = sub_row(svc, sub["id"])
    assert row.status == "error"
    assert "HTTP 503" in row.error
    assert fhir_call(svc, "GET", f"Subscription/{sub['id']}").body["status"] == "error"


def test_resthook_recovering_receiver_gets_every_event_once_in_order(
    svc: Services, receiver: Receiver, clock: ManualClock
) -> None:
    notify = svc.notify
    assert notify is not None
    ref = setup_patient(svc)
    sub = create(svc, subscription_body("observation", filters=[f"Observation?patient={ref}"]))
    notify.sequence_once()
    notify.deliver_once()  # handshake
    receiver.down = True
    for v in range(5):
        create(svc, observation(ref, v))
    notify.sequence_once()
    assert notify.deliver_once().failed == 1
    first_fail = receiver.attempts
    # not due yet: the round sends nothing
    clock.advance(seconds=4)
    assert notify.deliver_once().claimed == 0
    assert receiver.attempts == first_fail
    # back-off doubles: 5 s, 10 s, 20 s ...
    for delay in (5, 10, 20, 40):
        clock.advance(seconds=delay)
        assert notify.deliver_once().failed == 1
    row = sub_row(svc, sub["id"])
    assert row.attempts == 5
    assert row.next_attempt_at == clock.now() + timedelta(seconds=80)
    for v in range(5, 8):
        create(svc, observation(ref, v))
    notify.sequence_once()
    receiver.down = False
    clock.advance(seconds=80)
    report = notify.deliver_once()
    assert report.sent == 8
    assert receiver.numbers() == list(range(1, 9))
    secret = sub_row(svc, sub["id"]).secret
    assert all(verify(secret, sig, body) for body, sig in receiver.raw)
    assert not verify("wrong-secret", receiver.raw[-1][1], receiver.raw[-1][0])
    with svc.db.session() as session:
        statuses = session.execute(
            sa.select(subscription_event.c.status, subscription_event.c.attempts).order_by(
                subscription_event.c.event_number
            )
        ).all()
    assert {s for s, _ in statuses} == {"delivered"}
    assert statuses[0].attempts == 6  # five failures, then the success
    assert sub_row(svc, sub["id"]).status == "active"


def test_resthook_gives_up_after_24_hours_with_reason(
    svc: Services, receiver: Receiver, clock: ManualClock
) -> None:
    notify = svc.notify
    assert notify is not None
    ref = setup_patient(svc)
    sub = create(svc, subscription_body("observation"))
    notify.deliver_once()
    receiver.down = True
    create(svc, observation(ref))
    notify.sequence_once()
    notify.deliver_once()
    for _ in range(23):  # still retrying 23 hours later
        clock.advance(hours=1)
        notify.deliver_once()
        assert sub_row(svc, sub["id"]).status == "active"
    clock.advance(hours=1)
    report = notify.deliver_once()
    assert report.gave_up == [sub["id"]]
    row = sub_row(svc, sub["id"])
    assert row.status == "error"
    assert "failing since" in row.error and "HTTP 503" in row.error
    resource = fhir_call(svc, "GET", f"Subscription/{sub['id']}").body
    assert resource["status"] == "error" and "HTTP 503" in resource["error"]


def test_resthook_stops_when_organisation_leaves_care_team(
    svc: Services, receiver: Receiver, clock: ManualClock
) -> None:
    notify = svc.notify
    assert notify is not None
    pat = create(svc, patient_body())
    ref = f"Patient/{pat['id']}"
    team = create(svc, care_team(ref, "org-a", "org-b"))
    create(svc, subscription_body("observation", filters=[f"Observation?patient={ref}"]))
    notify.sequence_once()
    notify.deliver_once()
    create(svc, observation(ref, 1))
    notify.sequence_once()
    notify.deliver_once()
    assert receiver.numbers() == [1]
    # an event queued while the endpoint is down ...
    receiver.down = True
    create(svc, observation(ref, 2))
    notify.sequence_once()
    notify.deliver_once()
    # ... then org-a leaves the CareTeam: the queued event is withheld, new ones never match
    team["participant"] = [{"member": {"reference": "Organization/org-b"}}]
    assert fhir_call(svc, "PUT", f"CareTeam/{team['id']}", team).status == 200
    create(svc, observation(ref, 3))
    notify.sequence_once()
    receiver.down = False
    clock.advance(hours=1)
    report = notify.deliver_once()
    assert report.withheld == 1 and report.sent == 0
    assert receiver.numbers() == [1]
    with svc.db.session() as session:
        rows = session.execute(
            sa.select(subscription_event.c.event_number, subscription_event.c.status)
        ).all()
    assert sorted(rows) == [(1, "delivered"), (2, "withheld")]


def test_resthook_full_resource_and_empty_payloads(svc: Services, receiver: Receiver) -> None:
    notify = svc.notify
    assert notify is not None
    ref = setup_patient(svc)
    create(svc, subscription_body("observation", content="full-resource"))
    create(svc, subscription_body("observation", content="empty"))
    notify.sequence_once()
    notify.deliver_once()
    obs = create(svc, observation(ref, 37.2))
    notify.sequence_once()
    notify.deliver_once()
    events = [b for b in receiver.accepted if len(receiver.accepted) and b["entry"]]
    full = [b for b in events if len(b["entry"]) == 2]
    empty = [
        b
        for b in events
        if len(b["entry"]) == 1
        and any(
            p["valueCode"] == "event-notification"
            for p in b["entry"][0]["resource"]["parameter"]
            if p["name"] == "type"
        )
    ]
    assert full[0]["entry"][1]["resource"]["id"] == obs["id"]
    assert full[0]["entry"][1]["resource"]["valueQuantity"]["value"] == 37.2
    status = empty[0]["entry"][0]["resource"]["parameter"]
    event = next(p for p in status if p["name"] == "notification-event")
    assert [part["name"] for part in event["part"]] == ["event-number", "timestamp"]


def test_resthook_max_count_batches_events(svc: Services, receiver: Receiver) -> None:
    notify = svc.notify
    assert notify is not None
    ref = setup_patient(svc)
    create(svc, subscription_body("observation", max_count=10))
    notify.sequence_once()
    notify.deliver_once()
    for v in range(4):
        create(svc, observation(ref, v))
    notify.sequence_once()
    notify.deliver_once()
    assert receiver.kinds() == ["handshake", "event-notification"]
    assert receiver.numbers() == [1, 2, 3, 4]
    assert len(receiver.accepted[1]["entry"]) == 5
