"""Scopes enforced on FHIR interactions over HTTP, including inside Bundles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from renkei.app import Services
from tests import authkit

IDENT = "urn:oid:1.2.392.100495.20.3.51.11312345678"


def _patient(value: str = "00001") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": IDENT, "value": value}],
        "name": [{"family": "山田", "given": ["花子"]}],
    }


def _observation() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "体温"},
        "valueQuantity": {"value": 37.8, "unit": "Cel"},
    }


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


def _count(client: TestClient, value: str) -> int:
    found = client.get("/fhir/Patient", params={"identifier": f"{IDENT}|{value}"}).json()
    return len(found.get("entry", []))


def test_v1_scope_is_an_alias(client: TestClient, auth_client: Callable[..., TestClient]) -> None:
    created = client.post("/fhir/Patient", json=_patient()).json()
    reader = auth_client("system/Patient.read")
    assert reader.get(f"/fhir/Patient/{created['id']}").status_code == 200
    assert reader.get("/fhir/Patient").status_code == 200
    assert reader.post("/fhir/Patient", json=_patient("2")).status_code == 403


def test_each_letter_allows_only_its_interactions(
    client: TestClient, auth_client: Callable[..., TestClient]
) -> None:
    created = client.post("/fhir/Patient", json=_patient()).json()
    url = f"/fhir/Patient/{created['id']}"
    updater = auth_client("system/Patient.u")
    assert updater.put(url, json={**created, "gender": "female"}).status_code == 200
    assert updater.get(url).status_code == 403
    deleter = auth_client("system/Patient.d")
    assert deleter.get(f"{url}/_history").status_code == 403
    assert deleter.delete(url).status_code == 200
    searcher = auth_client("system/Patient.s")
    assert searcher.get("/fhir/Patient").status_code == 200
    assert searcher.get(url).status_code == 403


def test_user_scopes_for_a_person(
    services: Services, auth_client: Callable[..., TestClient]
) -> None:
    nurse = authkit.create_user(services, role="nurse")
    http = auth_client("user/Observation.cruds", user=nurse)
    assert http.post("/fhir/Observation", json=_observation()).status_code == 201
    assert http.post("/fhir/Patient", json=_patient()).status_code == 403
    # a person's token with system/ scopes grants nothing
    assert auth_client("system/*.cruds", user=nurse).get("/fhir/Patient").status_code == 403


def test_batch_entries_are_authorized_one_by_one(
    client: TestClient, auth_client: Callable[..., TestClient]
) -> None:
    http = auth_client("system/Patient.c")
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [_entry(_patient("b1")), _entry(_observation())],
    }
    resp = http.post("/fhir", json=bundle)
    assert resp.status_code == 200, resp.text
    statuses = [e["response"]["status"] for e in resp.json()["entry"]]
    assert statuses[0].startswith("201")
    assert statuses[1].startswith("403")
    assert _count(client, "b1") == 1


def test_transaction_with_an_unauthorized_entry_writes_nothing(
    client: TestClient, auth_client: Callable[..., TestClient]
) -> None:
    http = auth_client("system/Patient.c")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [_entry(_patient("t1")), _entry(_observation())],
    }
    resp = http.post("/fhir", json=bundle)
    assert resp.status_code == 403
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert _count(client, "t1") == 0


def test_transaction_inside_scope_succeeds(auth_client: Callable[..., TestClient]) -> None:
    http = auth_client("system/Patient.c system/Observation.c")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [_entry(_patient("t2")), _entry(_observation())],
    }
    resp = http.post("/fhir", json=bundle)
    assert resp.status_code == 200, resp.text
    assert [e["response"]["status"][:3] for e in resp.json()["entry"]] == ["201", "201"]
