"""Helpers shared by the notify tests: resources, subscriptions, a test-only token map."""

from __future__ import annotations

from typing import Any

from renkei.auth.principal import Principal
from renkei.notify.subscriptions import EXT_FILTER, EXT_PAYLOAD
from renkei.notify.topics import TOPIC_BASE

FHIR_JSON = "application/fhir+json"


def observation(patient: str, value: float = 36.5, code: str = "8310-5") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": patient},
        "valueQuantity": {"value": value, "unit": "Cel"},
    }


def patient_body(name: str = "山田") -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": name}]}


def subscription_body(
    topic: str,
    *,
    channel: str = "rest-hook",
    endpoint: str | None = "http://127.0.0.1:9/hook",
    filters: list[str] | None = None,
    content: str = "id-only",
    max_count: int | None = None,
) -> dict[str, Any]:
    chan: dict[str, Any] = {
        "type": channel,
        "payload": FHIR_JSON,
        "_payload": {"extension": [{"url": EXT_PAYLOAD, "valueCode": content}]},
    }
    if endpoint and channel == "rest-hook":
        chan["endpoint"] = endpoint
    if max_count:
        chan["extension"] = [
            {
                "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-max-count",
                "valuePositiveInt": max_count,
            }
        ]
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": topic if topic.startswith("http") else f"{TOPIC_BASE}/{topic}",
        "channel": chan,
    }
    if filters:
        body["_criteria"] = {"extension": [{"url": EXT_FILTER, "valueString": f} for f in filters]}
    return body


def care_team(patient: str, *orgs: str) -> dict[str, Any]:
    return {
        "resourceType": "CareTeam",
        "status": "active",
        "subject": {"reference": patient},
        "participant": [{"member": {"reference": f"Organization/{o}"}} for o in orgs],
    }


class TokenMap:
    """Test-only stand-in for the auth package's token verification."""

    def __init__(self) -> None:
        self.tokens: dict[str, Principal] = {}

    def add(self, token: str, org: str, role: str | None = None) -> Principal:
        principal = Principal(
            subject=f"user-{token}",
            kind="user",
            organization_id=org,
            practitioner_role_id=role,
        )
        self.tokens[token] = principal
        return principal

    def revoke(self, token: str) -> None:
        self.tokens.pop(token, None)

    def __call__(self, token: str) -> Principal | None:
        return self.tokens.get(token)


class CareTeamTestPolicy:
    """Test-only sharing rule: an organisation sees a patient's data while it is on the
    patient's active CareTeam. The auth package's real policy (CareTeam + Consent) replaces
    it after the merge; the notifier only ever calls ``can_read``.
    """

    def authorize(self, ctx: Any, interaction: str, res_type: str | None) -> None:
        return None

    def can_read(self, session: Any, ctx: Any, stored: Any) -> bool:
        import sqlalchemy as sa

        from renkei.notify.outbox import patient_of
        from renkei.store.models import resource

        principal = ctx.principal
        if principal is None or stored.content is None:
            return True
        patient = patient_of(stored.res_type, stored.res_id, stored.content)
        if patient is None:
            return True
        org = f"Organization/{principal.organization_id}"
        rows = session.execute(
            sa.select(resource.c.content).where(
                resource.c.res_type == "CareTeam", resource.c.deleted.is_(False)
            )
        )
        for (content,) in rows:
            if content.get("status") != "active":
                continue
            if (content.get("subject") or {}).get("reference") != patient:
                continue
            members = {(p.get("member") or {}).get("reference") for p in content["participant"]}
            if org in members:
                return True
        return False

    def check_write(self, session: Any, ctx: Any, res_type: str, new: Any, old: Any) -> None:
        return None

    def search_filter(self, session: Any, ctx: Any, res_type: str) -> Any:
        return None


def fhir_call(
    services: Any,
    method: str,
    path: str,
    body: Any = None,
    *,
    principal: Any = None,
    params: list[tuple[str, str]] | None = None,
) -> Any:
    """One FHIR interaction through the engine, committed (or rolled back on error)."""
    from renkei.fhir.context import FhirRequest, RequestContext

    req = FhirRequest(
        method=method,
        path=path,
        params=params or [],
        body=body,
        context=RequestContext(principal=principal, base_url="http://testserver/fhir"),
    )
    with services.db.session(write=method != "GET") as session:
        resp = services.engine.handle(session, req)
        if resp.status >= 400:
            session.rollback()
    return resp


def settle(client: Any) -> None:
    """Wait until every committed event is sequenced and has reached this process's hub."""
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status = client.get("/notify/status").json()
        if status["outboxPending"] == 0 and status["hubPosition"] == status["head"]:
            return
        time.sleep(0.02)
    raise AssertionError("the event stream did not settle")
