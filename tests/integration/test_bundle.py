"""batch and transaction Bundles through HTTP, on SQLite and PostgreSQL
(https://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

JSON_PATCH = "application/json-patch+json"
SYS = "urn:oid:1.2.392.100495.20.3.51.11312345678"


def patient(number: str = "00001", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": SYS, "value": number}],
        "name": [{"family": "山田", "given": ["花子"]}],
        "gender": "female",
        **extra,
    }


def observation(subject: str, **extra: Any) -> dict[str, Any]:
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "subject": {"reference": subject},
        "valueQuantity": {"value": 36.8, "unit": "Cel"},
        **extra,
    }
    return {k: v for k, v in body.items() if v is not None}  # status=None: leave it out


def entry(
    method: str, url: str, resource: Any = None, full_url: str | None = None, **request: str
) -> dict[str, Any]:
    out: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        out["resource"] = resource
    if full_url is not None:
        out["fullUrl"] = full_url
    return out


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(client: TestClient, body: Any) -> Any:
    return client.post("/fhir", json=body, headers={"Content-Type": "application/fhir+json"})


def history_size(client: TestClient) -> int:
    return len(client.get("/fhir/_history?_count=500").json()["entry"])


def read(client: TestClient, location: str) -> dict[str, Any]:
    """GET a response.location (``.../Type/id/_history/n``) as the current version."""
    path = location.split("/fhir/", 1)[-1].split("/_history", 1)[0]
    resp = client.get(f"/fhir/{path}")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


# -- transaction: references ---------------------------------------------------------------


def test_transaction_rewrites_urn_uuid_references_including_nested(client: TestClient) -> None:
    pat, org = "urn:uuid:7f0a4f3e-1111-4c1b-9a1e-000000000001", "urn:uuid:org-1"
    care_team = {
        "resourceType": "CareTeam",
        "status": "active",
        "subject": {"reference": pat},
        "participant": [
            {"member": {"reference": org}, "onBehalfOf": {"reference": org}},
        ],
        "extension": [{"url": "http://example.org/lead", "valueReference": {"reference": org}}],
    }
    resp = post(
        client,
        bundle(
            "transaction",
            entry("POST", "CareTeam", care_team),
            entry("POST", "Observation", observation(pat, performer=[{"reference": org}])),
            entry("POST", "Patient", patient(managingOrganization={"reference": org}), pat),
            entry("POST", "Organization", {"resourceType": "Organization", "name": "医院"}, org),
        ),
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()
    locations = [e["response"]["location"] for e in out["entry"]]
    team, obs, created_patient, created_org = (read(client, loc) for loc in locations)
    pat_ref = f"Patient/{created_patient['id']}"
    org_ref = f"Organization/{created_org['id']}"
    assert obs["subject"]["reference"] == pat_ref
    assert obs["performer"][0]["reference"] == org_ref
    assert created_patient["managingOrganization"]["reference"] == org_ref
    assert team["subject"]["reference"] == pat_ref
    assert team["participant"][0]["member"]["reference"] == org_ref
    assert team["participant"][0]["onBehalfOf"]["reference"] == org_ref
    assert team["extension"][0]["valueReference"]["reference"] == org_ref
    assert "urn:uuid" not in json.dumps(out)


def test_transaction_unknown_urn_uuid_reference_is_400(client: TestClient) -> None:
    resp = post(
        client,
        bundle(
            "transaction",
            entry("POST", "Patient", patient()),
            entry("POST", "Observation", observation("urn:uuid:nobody")),
        ),
    )
    assert resp.status_code == 400
    assert "urn:uuid:nobody" in resp.json()["issue"][0]["diagnostics"]
    assert history_size(client) == 0


def test_transaction_resolves_conditional_references(client: TestClient) -> None:
    existing = client.post("/fhir/Patient", json=patient("00042")).json()
    resp = post(
        client,
        bundle(
            "transaction",
            entry("POST", "Observation", observation(f"Patient?identifier={SYS}|00042")),
        ),
    )
    assert resp.status_code == 200, resp.text
    obs = read(client, resp.json()["entry"][0]["response"]["location"])
    assert obs["subject"]["reference"] == f"Patient/{existing['id']}"


@pytest.mark.parametrize("number", ["00404", "00007"])
def test_transaction_conditional_reference_must_match_one(client: TestClient, number: str) -> None:
    client.post("/fhir/Patient", json=patient("00007"))
    client.post("/fhir/Patient", json=patient("00007"))  # "00007" matches twice, "00404" never
    resp = post(
        client,
        bundle(
            "transaction",
            entry("POST", "Patient", patient("00100")),
            entry("POST", "Observation", observation(f"Patient?identifier={SYS}|{number}")),
        ),
    )
    assert resp.status_code == 412
    assert "conditional reference" in resp.json()["issue"][0]["diagnostics"]
    assert history_size(client) == 2


# -- transaction: conditional create and update ----------------------------------------------


def test_transaction_if_none_exist_reuses_the_match(client: TestClient) -> None:
    existing = client.post("/fhir/Patient", json=patient("00001")).json()
    cond = f"identifier={SYS}|00001"
    resp = post(
        client,
        bundle(
            "transaction",
            entry("POST", "Patient", patient("00001"), "urn:uuid:p1", ifNoneExist=cond),
            entry("POST", "Observation", observation("urn:uuid:p1")),
        ),
    )
    assert resp.status_code == 200, resp.text
    first, second = resp.json()["entry"]
    assert first["response"]["status"] == "200 OK"
    assert first["resource"]["id"] == existing["id"]
    assert first["resource"]["meta"]["versionId"] == "1"
    assert second["response"]["status"] == "201 Created"
    assert second["resource"]["subject"]["reference"] == f"Patient/{existing['id']}"
    assert len(client.get("/fhir/Patient").json()["entry"]) == 1


def test_transaction_if_none_exist_twice_in_one_bundle_creates_once(client: TestClient) -> None:
    cond = f"identifier={SYS}|00009"
    resp = post(
        client,
        bundle(
            "transaction",
            entry("POST", "Patient", patient("00009"), "urn:uuid:a", ifNoneExist=cond),
            entry("POST", "Patient", patient("00009"), "urn:uuid:b", ifNoneExist=cond),
            entry("POST", "Observation", observation("urn:uuid:b")),
        ),
    )
    assert resp.status_code == 200, resp.text
    a, b, obs = resp.json()["entry"]
    assert a["response"]["status"] == "201 Created"
    assert b["response"]["status"] == "200 OK"
    assert a["resource"]["id"] == b["resource"]["id"]
    assert obs["resource"]["subject"]["reference"] == f"Patient/{a['resource']['id']}"
    assert len(client.get("/fhir/Patient").json()["entry"]) == 1


def test_transaction_if_none_exist_with_two_matches_is_412(client: TestClient) -> None:
    client.post("/fhir/Patient", json=patient("00003"))
    client.post("/fhir/Patient", json=patient("00003"))
    resp = post(
        client,
        bundle(
            "transaction",
            entry("POST", "Patient", patient("00003"), ifNoneExist=f"identifier={SYS}|00003"),
        ),
    )
    assert resp.status_code == 412
    assert history_size(client) == 2


def test_transaction_conditional_update_with_urn_full_url(client: TestClient) -> None:
    existing = client.post("/fhir/Patient", json=patient("00005")).json()
    cond = f"Patient?identifier={SYS}|"
    resp = post(
        client,
        bundle(
            "transaction",
            entry("PUT", f"{cond}00005", patient("00005", gender="other"), "urn:old"),
            entry("PUT", f"{cond}00006", patient("00006"), "urn:new"),
            entry("POST", "Observation", observation("urn:old")),
            entry("POST", "Observation", observation("urn:new")),
        ),
    )
    assert resp.status_code == 200, resp.text
    updated, created, obs_old, obs_new = resp.json()["entry"]
    assert updated["response"]["status"] == "200 OK"
    assert updated["resource"]["id"] == existing["id"]
    assert updated["resource"]["gender"] == "other"
    assert created["response"]["status"] == "201 Created"
    assert obs_old["resource"]["subject"]["reference"] == f"Patient/{existing['id']}"
    assert obs_new["resource"]["subject"]["reference"] == f"Patient/{created['resource']['id']}"


# -- transaction: atomicity --------------------------------------------------------------------


def test_transaction_rolls_back_everything_when_a_later_entry_is_invalid(
    client: TestClient,
) -> None:
    existing = client.post("/fhir/Patient", json=patient("00001")).json()
    url = f"Patient/{existing['id']}"
    resp = post(
        client,
        bundle(
            "transaction",
            entry("POST", "Patient", patient("00002"), "urn:uuid:p2"),
            entry("PUT", url, {**existing, "gender": "male"}),
            entry("POST", "Observation", observation("urn:uuid:p2")),
            entry("DELETE", "Patient/never-mind"),
            entry("POST", "Observation", observation("urn:uuid:p2", status=None)),
        ),
    )
    assert resp.status_code == 422
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"].startswith("Bundle.entry[4]")
    assert "Observation.status" in outcome["issue"][0]["expression"]
    current = client.get(f"/fhir/{url}").json()
    assert current["gender"] == "female"
    assert current["meta"]["versionId"] == "1"
    assert history_size(client) == 1  # only the patient created before the Bundle


def test_transaction_rolls_back_when_if_match_fails(client: TestClient) -> None:
    existing = client.post("/fhir/Patient", json=patient("00001")).json()
    url = f"Patient/{existing['id']}"
    resp = post(
        client,
        bundle(
            "transaction",
            entry("POST", "Patient", patient("00002")),
            entry("DELETE", url),
            entry("PUT", "Patient/other", patient("00003", id="other"), ifMatch='W/"3"'),
        ),
    )
    assert resp.status_code == 412
    assert client.get(f"/fhir/{url}").status_code == 200
    assert history_size(client) == 1


def test_transaction_changing_one_resource_twice_is_400(client: TestClient) -> None:
    existing = client.post("/fhir/Patient", json=patient()).json()
    url = f"Patient/{existing['id']}"
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    resp = post(
        client,
        bundle(
            "transaction",
            entry("PUT", url, {**existing, "gender": "other"}),
            entry("PATCH", url, _patch_binary(ops)),
        ),
    )
    assert resp.status_code == 400
    assert "both change" in resp.json()["issue"][0]["diagnostics"]
    assert client.get(f"/fhir/{url}").json()["meta"]["versionId"] == "1"


# -- transaction: processing order -------------------------------------------------------------


def test_transaction_processes_delete_post_put_get_in_that_order(client: TestClient) -> None:
    a = client.post("/fhir/Patient", json=patient("0000A")).json()
    b = client.post("/fhir/Patient", json=patient("0000B")).json()
    resp = post(
        client,
        bundle(
            "transaction",
            entry("GET", f"Patient/{a['id']}"),
            entry("GET", f"Patient?_id={b['id']}"),
            entry("PUT", f"Patient/{a['id']}", {**a, "gender": "male"}),
            # B's identifier is free again once the DELETE below has run
            entry("POST", "Patient", patient("0000B"), ifNoneExist=f"identifier={SYS}|0000B"),
            entry("DELETE", f"Patient/{b['id']}"),
        ),
    )
    assert resp.status_code == 200, resp.text
    read_a, search_b, put_a, post_b, delete_b = resp.json()["entry"]
    assert read_a["resource"]["gender"] == "male"  # GET ran after the PUT
    assert read_a["resource"]["meta"]["versionId"] == "2"
    assert search_b["resource"].get("entry", []) == []  # ... and after the DELETE
    assert put_a["response"]["status"] == "200 OK"
    assert post_b["response"]["status"] == "201 Created"  # POST ran after the DELETE
    assert post_b["resource"]["id"] != b["id"]
    assert delete_b["response"]["status"].startswith("200")


# -- transaction: response shape ---------------------------------------------------------------


def test_transaction_response_shape(client: TestClient) -> None:
    resp = post(
        client,
        bundle(
            "transaction",
            entry("POST", "Patient", patient(), "urn:uuid:p"),
            entry("PUT", "Patient/jp-1", patient("00002", id="jp-1")),
        ),
    )
    assert resp.status_code == 200
    out = resp.json()
    assert out["resourceType"] == "Bundle"
    assert out["type"] == "transaction-response"
    assert len(out["entry"]) == 2
    for item in out["entry"]:
        response = item["response"]
        assert response["status"] == "201 Created"
        assert response["etag"] == 'W/"1"'
        assert response["lastModified"] == "2026-04-01T00:00:00.000Z"
        rid = item["resource"]["id"]
        assert response["location"].endswith(f"/fhir/Patient/{rid}/_history/1")
        assert item["fullUrl"] == f"http://testserver/fhir/Patient/{rid}"
    assert out["entry"][1]["resource"]["id"] == "jp-1"


def test_transaction_prefer_minimal_leaves_resources_out(client: TestClient) -> None:
    resp = client.post(
        "/fhir",
        json=bundle("transaction", entry("POST", "Patient", patient())),
        headers={"Prefer": "return=minimal"},
    )
    assert resp.status_code == 200
    item = resp.json()["entry"][0]
    assert "resource" not in item
    assert item["response"]["status"] == "201 Created"
    assert "/fhir/Patient/" in item["response"]["location"]


# -- PATCH in a Bundle -------------------------------------------------------------------------


def _patch_binary(ops: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(json.dumps(ops).encode()).decode(),
    }


def test_transaction_patch_via_binary(client: TestClient) -> None:
    existing = client.post("/fhir/Patient", json=patient()).json()
    url = f"Patient/{existing['id']}"
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    resp = post(client, bundle("transaction", entry("PATCH", url, _patch_binary(ops))))
    assert resp.status_code == 200, resp.text
    assert resp.json()["entry"][0]["resource"]["gender"] == "male"
    history = client.get(f"/fhir/{url}/_history").json()
    assert history["entry"][0]["request"]["method"] == "PATCH"
    assert history["entry"][0]["resource"]["meta"]["versionId"] == "2"


@pytest.mark.parametrize(
    ("binary", "status"),
    [
        (_patch_binary([{"op": "test", "path": "/gender", "value": "male"}]), 422),
        ({"resourceType": "Binary", "contentType": JSON_PATCH, "data": "!"}, 400),
        ({"resourceType": "Binary", "contentType": "text/plain", "data": "eA=="}, 415),
    ],
)  # fmt: skip
def test_transaction_bad_patch_fails_and_changes_nothing(
    client: TestClient, binary: dict[str, Any], status: int
) -> None:
    existing = client.post("/fhir/Patient", json=patient()).json()
    url = f"Patient/{existing['id']}"
    resp = post(
        client,
        bundle("transaction", entry("POST", "Patient", patient("2")), entry("PATCH", url, binary)),
    )
    assert resp.status_code == status, resp.text
    assert client.get(f"/fhir/{url}").json()["meta"]["versionId"] == "1"
    assert history_size(client) == 1


# -- batch -------------------------------------------------------------------------------------


def test_batch_failing_entry_keeps_the_others(client: TestClient) -> None:
    resp = post(
        client,
        bundle(
            "batch",
            entry("POST", "Patient", patient("00001")),
            entry("POST", "Observation", observation("Patient/x", status=None)),
            entry("PUT", "Patient/jp-2", patient("00002", id="jp-2")),
            entry("GET", "Patient/missing"),
            entry("PUT", "Patient/jp-2", patient("00002", id="jp-2"), ifMatch='W/"9"'),
            entry("GET", "Patient/jp-2"),
        ),
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses == [
        "201 Created",
        "422 Unprocessable Entity",
        "201 Created",
        "404 Not Found",
        "412 Precondition Failed",
        "200 OK",
    ]
    failed = out["entry"][1]["response"]["outcome"]
    assert failed["resourceType"] == "OperationOutcome"
    assert "Observation.status" in failed["issue"][0]["expression"]
    assert "resource" not in out["entry"][1]
    assert len(client.get("/fhir/Patient").json()["entry"]) == 2
    assert client.get("/fhir/Patient/jp-2").json()["meta"]["versionId"] == "1"


def test_batch_entries_are_independent_of_each_other(client: TestClient) -> None:
    """A batch does not resolve urn:uuid references between its entries (http.html#brules)."""
    resp = post(
        client,
        bundle(
            "batch",
            entry("POST", "Patient", patient(), "urn:uuid:p"),
            entry("POST", "Observation", observation("urn:uuid:p")),
        ),
    )
    assert resp.status_code == 200
    statuses = [e["response"]["status"] for e in resp.json()["entry"]]
    assert statuses[0] == "201 Created"
    assert history_size(client) >= 1


# -- malformed Bundles -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Patient"},
        {"resourceType": "Bundle", "type": "collection", "entry": []},
        {"resourceType": "Bundle", "entry": []},
        {"resourceType": "Bundle", "type": "transaction", "entry": {"request": {}}},
        bundle("transaction", "not an entry"),  # type: ignore[arg-type]
        bundle("transaction", {"resource": patient()}),
        bundle("transaction", {"request": "POST Patient", "resource": patient()}),
        bundle("transaction", entry("FETCH", "Patient", patient())),
        bundle("transaction", {"request": {"method": 5, "url": "Patient"}}),
        bundle("transaction", {"request": {"method": "POST"}, "resource": patient()}),
        bundle("transaction", entry("POST", "Patient")),
        bundle("transaction", entry("PUT", "Patient/x")),
        bundle("transaction", entry("POST", "Patient/1", patient())),
        bundle("transaction", entry("POST", "Nope", patient())),
        bundle("transaction", entry("GET", "http://elsewhere.example/fhir/Patient/1")),
        bundle("transaction", {**entry("POST", "Patient", patient()), "fullUrl": 5}),
        bundle("transaction", entry("GET", "Patient/1", ifNoneMatch=["x"])),  # type: ignore[arg-type]
        bundle(
            "transaction",
            entry("POST", "Patient", patient(), "urn:uuid:same"),
            entry("POST", "Patient", patient(), "urn:uuid:same"),
        ),
        bundle(
            "batch",
            entry("POST", "Patient", patient()),
            "broken",  # type: ignore[arg-type]
        ),
    ],
)
def test_malformed_bundle_is_400_and_writes_nothing(client: TestClient, body: Any) -> None:
    resp = post(client, body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert history_size(client) == 0


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_bundle_in_bundle_is_refused(client: TestClient, kind: str) -> None:
    inner = bundle("transaction", entry("POST", "Patient", patient()))
    for item in (entry("POST", "/", inner), entry("POST", "Bundle", inner)):
        resp = post(client, bundle(kind, item))
        assert resp.status_code == 400, resp.text
        assert "inside a Bundle" in resp.json()["issue"][0]["diagnostics"]
    assert history_size(client) == 0


def test_absolute_url_on_this_server_is_accepted(client: TestClient) -> None:
    resp = post(
        client,
        bundle(
            "transaction", entry("PUT", "http://testserver/fhir/Patient/abs", patient(id="abs"))
        ),
    )
    assert resp.status_code == 200, resp.text
    assert client.get("/fhir/Patient/abs").status_code == 200


def test_bundle_may_be_stored_as_a_document(client: TestClient) -> None:
    """A Bundle that is not a request (a document, a collection) is an ordinary resource."""
    doc = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient()}]}
    resp = client.post("/fhir/Bundle", json=doc)
    assert resp.status_code == 201, resp.text
