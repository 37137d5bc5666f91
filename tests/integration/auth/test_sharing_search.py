"""Sharing through the full search engine: _include, _revinclude, $everything, compartment
search (HTTP, both databases).

These features come with the search engine (branch search-query); until it is merged the
basic search answers 400 and these tests skip, saying so.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.auth.conftest import as_user, build_network, put


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if "resource" in e and e["resource"]["resourceType"] != "OperationOutcome"
    }


def _get(client: TestClient, url: str, who: str) -> dict[str, Any]:
    resp = client.get(url, headers=as_user(who))
    if resp.status_code in (400, 501) and "not supported" in resp.text:
        pytest.skip(f"pending (search-query): {url} -> {resp.status_code}")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _network_with_cross_links(client: TestClient) -> None:
    build_network(client)
    # an Observation of p1 (shared with org-b) that points at p2's Observation (not shared)
    put(
        client,
        {
            "resourceType": "Observation",
            "id": "obs-link",
            "status": "final",
            "code": {"text": "体温"},
            "subject": {"reference": "Patient/p1"},
            "hasMember": [{"reference": "Observation/observation-p2"}],
        },
    )


def test_include_does_not_pull_in_hidden_resources(net_client: TestClient) -> None:
    _network_with_cross_links(net_client)
    found = _get(
        net_client,
        "/fhir/Observation?_id=obs-link&_include=Observation:has-member&_include=Observation:subject",
        "org-b-nurse",
    )
    assert _ids(found) == {"Observation/obs-link", "Patient/p1"}
    owner = _get(
        net_client, "/fhir/Observation?_id=obs-link&_include=Observation:has-member", "org-a-nurse"
    )
    assert "Observation/observation-p2" in _ids(owner)


def test_revinclude_returns_only_visible_resources(net_client: TestClient) -> None:
    _network_with_cross_links(net_client)
    found = _get(
        net_client,
        "/fhir/Patient?_id=p1,p2&_revinclude=Observation:subject&_total=accurate",
        "org-b-nurse",
    )
    assert found["total"] == 1
    assert _ids(found) == {"Patient/p1", "Observation/observation-p1", "Observation/obs-link"}
    nobody = _get(
        net_client, "/fhir/Patient?_id=p1,p2&_revinclude=Observation:subject", "org-c-doctor"
    )
    assert _ids(nobody) == set()


def test_everything_and_compartment_search_follow_sharing(net_client: TestClient) -> None:
    _network_with_cross_links(net_client)
    everything = _get(net_client, "/fhir/Patient/p1/$everything", "org-b-nurse")
    ids = _ids(everything)
    assert "Patient/p1" in ids and "Observation/observation-p1" in ids
    assert not any(i.endswith("-p2") for i in ids)
    hidden = net_client.get("/fhir/Patient/p2/$everything", headers=as_user("org-b-nurse"))
    assert hidden.status_code == 404
    compartment = _get(net_client, "/fhir/Patient/p1/Observation", "org-b-nurse")
    assert _ids(compartment) == {"Observation/observation-p1", "Observation/obs-link"}
    assert (
        net_client.get("/fhir/Patient/p2/Observation", headers=as_user("org-b-nurse")).status_code
        == 404
    )
    # what $everything returned is in the audit record, patient included
    events = net_client.get(
        "/fhir/AuditEvent?agent=org-b-nurse&subtype=operation", headers=as_user(None)
    ).json()
    refs = {
        ent["what"]["reference"]
        for e in events.get("entry", [])
        for ent in e["resource"].get("entity", [])
        if "what" in ent
    }
    assert {"Patient/p1", "Observation/observation-p1"} <= refs


def test_a_search_pinned_to_one_patient_follows_sharing(net_client: TestClient) -> None:
    """``Observation?patient=X`` checks X once instead of filtering every row: it must still
    show a shared patient's resources and nothing of a patient not shared."""
    _network_with_cross_links(net_client)
    for query in ("patient=Patient/p1", "subject=Patient/p1", "patient=p1"):
        found = _get(net_client, f"/fhir/Observation?{query}&_total=accurate", "org-b-nurse")
        assert _ids(found) == {"Observation/observation-p1", "Observation/obs-link"}, query
        assert found["total"] == 2
    for who in ("org-b-nurse", "org-c-doctor"):
        hidden = _get(net_client, "/fhir/Observation?patient=Patient/p2&_total=accurate", who)
        assert _ids(hidden) == set() and hidden["total"] == 0
    # the owner still sees its own patient's resources through the same path
    owner = _get(net_client, "/fhir/Observation?subject=Patient/p2", "org-a-nurse")
    assert "Observation/observation-p2" in _ids(owner)
