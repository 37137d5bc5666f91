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
