"""RESTful interactions through HTTP (https://hl7.org/fhir/R4/http.html), on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from renkei.app import Services
from renkei.clock import ManualClock

FHIR_JSON = "application/fhir+json"


def patient(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11312345678", "value": "00001"}],
        "name": [{"family": "山田", "given": ["花子"]}],
        "gender": "female",
        "birthDate": "1938-05-01",
    }
    body.update(extra)
    return body


def create(client: TestClient, body: dict[str, Any], **headers: str) -> Any:
    return client.post(
        f"/fhir/{body['resourceType']}", json=body, headers={"Content-Type": FHIR_JSON, **headers}
    )


def test_create_assigns_id_version_and_location(client: TestClient) -> None:
    resp = create(client, patient(id="ignored-by-server"))
    assert resp.status_code == 201
    body = resp.json()
    assert body["id"] != "ignored-by-server"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"] == "2026-04-01T00:00:00.000Z"
    assert resp.headers["ETag"] == 'W/"1"'
    assert resp.headers["Location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert resp.headers["Content-Type"].startswith(FHIR_JSON)
    assert "Last-Modified" in resp.headers


def test_read_returns_stored_content(client: TestClient) -> None:
    created = create(client, patient()).json()
    resp = client.get(f"/fhir/Patient/{created['id']}")
    assert resp.status_code == 200
    assert resp.json() == created
    assert resp.headers["ETag"] == 'W/"1"'


def test_read_unknown_is_404_operation_outcome(client: TestClient) -> None:
    resp = client.get("/fhir/Patient/does-not-exist")
    assert resp.status_code == 404
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "not-found"


def test_unknown_resource_type_is_404(client: TestClient) -> None:
    resp = client.get("/fhir/Patiento/1")
    assert resp.status_code == 404
    assert resp.json()["issue"][0]["code"] == "not-supported"


def test_invalid_id_in_url_is_400(client: TestClient) -> None:
    resp = client.get("/fhir/Patient/" + "x" * 65)
    assert resp.status_code == 400


def test_update_creates_new_version_and_vread_keeps_old(
    client: TestClient, clock: ManualClock
) -> None:
    created = create(client, patient()).json()
    clock.advance(minutes=5)
    changed = {**created, "gender": "other"}
    resp = client.put(f"/fhir/Patient/{created['id']}", json=changed)
    assert resp.status_code == 200
    assert resp.json()["meta"]["versionId"] == "2"
    assert resp.json()["meta"]["lastUpdated"] == "2026-04-01T00:05:00.000Z"
    old = client.get(f"/fhir/Patient/{created['id']}/_history/1").json()
    assert old["gender"] == "female"
    assert client.get(f"/fhir/Patient/{created['id']}").json()["gender"] == "other"
    assert client.get(f"/fhir/Patient/{created['id']}/_history/9").status_code == 404


def test_update_as_create_with_client_id(client: TestClient) -> None:
    resp = client.put("/fhir/Patient/jp-1", json=patient(id="jp-1"))
    assert resp.status_code == 201
    assert resp.json()["id"] == "jp-1"
    assert client.put("/fhir/Patient/jp-1", json=patient(id="jp-1")).status_code == 200


def test_update_id_mismatch_and_missing_id_are_400(client: TestClient) -> None:
    assert client.put("/fhir/Patient/a", json=patient(id="b")).status_code == 400
    assert client.put("/fhir/Patient/a", json=patient()).status_code == 400


def test_resource_type_mismatch_is_400(client: TestClient) -> None:
    resp = client.post("/fhir/Observation", json=patient())
    assert resp.status_code == 400
    assert resp.json()["issue"][0]["expression"] == ["resourceType"]


def test_if_match_mismatch_is_412_and_nothing_changes(client: TestClient) -> None:
    created = create(client, patient()).json()
    url = f"/fhir/Patient/{created['id']}"
    resp = client.put(url, json={**created, "gender": "male"}, headers={"If-Match": 'W/"7"'})
    assert resp.status_code == 412
    assert client.get(url).json()["gender"] == "female"
    ok = client.put(url, json={**created, "gender": "male"}, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200


def test_delete_then_read_is_410_and_history_shows_it(client: TestClient) -> None:
    created = create(client, patient()).json()
    url = f"/fhir/Patient/{created['id']}"
    assert client.delete(url).status_code == 200
    assert client.get(url).status_code == 410
    history = client.get(f"{url}/_history").json()
    assert history["type"] == "history"
    methods = [e["request"]["method"] for e in history["entry"]]
    assert methods == ["DELETE", "POST"]
    assert "resource" not in history["entry"][0]
    # deleting again is not an error
    assert client.delete(url).status_code == 200
    # an update brings it back as a new version
    again = client.put(url, json=created)
    assert again.status_code == 201
    assert again.json()["meta"]["versionId"] == "3"


def test_json_patch(client: TestClient) -> None:
    created = create(client, patient()).json()
    url = f"/fhir/Patient/{created['id']}"
    ops = [
        {"op": "replace", "path": "/gender", "value": "male"},
        {"op": "add", "path": "/active", "value": True},
    ]
    resp = client.patch(url, json=ops, headers={"Content-Type": "application/json-patch+json"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["gender"] == "male"
    assert resp.json()["active"] is True
    assert resp.json()["meta"]["versionId"] == "2"
    history = client.get(f"{url}/_history").json()
    assert history["entry"][0]["request"]["method"] == "PATCH"


def test_json_patch_errors(client: TestClient) -> None:
    created = create(client, patient()).json()
    url = f"/fhir/Patient/{created['id']}"
    ctype = {"Content-Type": "application/json-patch+json"}
    bad_value = [{"op": "replace", "path": "/birthDate", "value": "not-a-date"}]
    assert client.patch(url, json=bad_value, headers=ctype).status_code == 422
    failing_test = [{"op": "test", "path": "/gender", "value": "male"}]
    assert client.patch(url, json=failing_test, headers=ctype).status_code == 422
    change_id = [{"op": "replace", "path": "/id", "value": "other"}]
    assert client.patch(url, json=change_id, headers=ctype).status_code == 422
    wrong_type = client.patch(url, json=[], headers={"Content-Type": FHIR_JSON})
    assert wrong_type.status_code == 415
    assert client.get(url).json()["meta"]["versionId"] == "1"


def test_conditional_create(client: TestClient) -> None:
    cond = "identifier=urn:oid:1.2.392.100495.20.3.51.11312345678|00001"
    first = create(client, patient(), **{"If-None-Exist": cond})
    assert first.status_code == 201
    second = create(client, patient(), **{"If-None-Exist": cond})
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]


def test_conditional_create_with_multiple_matches_is_412(client: TestClient) -> None:
    create(client, patient())
    create(client, patient())
    resp = create(client, patient(), **{"If-None-Exist": "identifier=00001"})
    assert resp.status_code == 412


def test_conditional_update_and_delete(client: TestClient) -> None:
    query = "identifier=urn:oid:1.2.392.100495.20.3.51.11312345678|00001"
    made = client.put(f"/fhir/Patient?{query}", json=patient())
    assert made.status_code == 201
    updated = client.put(f"/fhir/Patient?{query}", json=patient(gender="male"))
    assert updated.status_code == 200
    assert updated.json()["id"] == made.json()["id"]
    assert client.delete(f"/fhir/Patient?{query}").status_code == 200
    assert client.get(f"/fhir/Patient/{made.json()['id']}").status_code == 410


def test_prefer_return(client: TestClient) -> None:
    minimal = create(client, patient(), Prefer="return=minimal")
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert "Location" in minimal.headers
    outcome = create(client, patient(), Prefer="return=OperationOutcome")
    assert outcome.json()["resourceType"] == "OperationOutcome"


def test_validation_errors_name_the_element(client: TestClient) -> None:
    bad = patient(birthDate="1938-13-45", unknownThing=1)
    resp = create(client, bad)
    assert resp.status_code == 422
    expressions = {e for i in resp.json()["issue"] for e in i.get("expression", [])}
    assert "Patient.birthDate" in expressions
    assert "Patient.unknownThing" in expressions


def test_malformed_json_is_400(client: TestClient) -> None:
    resp = client.post("/fhir/Patient", content=b"{not json", headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == 400
    assert resp.json()["resourceType"] == "OperationOutcome"


def test_xml_is_refused(client: TestClient) -> None:
    assert (
        client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"}).status_code == 406
    )
    assert client.get("/fhir/metadata?_format=xml").status_code == 406
    resp = client.post(
        "/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"}
    )
    assert resp.status_code == 415


def test_conditional_read(client: TestClient) -> None:
    created = create(client, patient()).json()
    url = f"/fhir/Patient/{created['id']}"
    assert client.get(url, headers={"If-None-Match": 'W/"1"'}).status_code == 304
    assert client.get(url, headers={"If-None-Match": 'W/"0"'}).status_code == 200


def test_history_levels_since_and_paging(client: TestClient, clock: ManualClock) -> None:
    ids = []
    for _ in range(5):
        ids.append(create(client, patient()).json()["id"])
        clock.advance(timedelta(minutes=1))
    create(client, {"resourceType": "Organization", "name": "さくら在宅クリニック"})
    type_history = client.get("/fhir/Patient/_history").json()
    assert len(type_history["entry"]) == 5
    system = client.get("/fhir/_history").json()
    assert len(system["entry"]) == 6
    since = client.get("/fhir/Patient/_history", params={"_since": "2026-04-01T00:03:00Z"}).json()
    assert len(since["entry"]) == 2
    # JST default: 09:03 in Tokyo is 00:03 UTC
    since_jst = client.get(
        "/fhir/Patient/_history", params={"_since": "2026-04-01T09:03:00"}
    ).json()
    assert len(since_jst["entry"]) == 2
    seen: list[str] = []
    url: str | None = "/fhir/Patient/_history?_count=2"
    while url:
        page = client.get(url).json()
        seen += [e["resource"]["id"] for e in page["entry"]]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        url = nxt[0].replace("http://testserver", "") if nxt else None
    assert seen == list(reversed(ids))


def test_capability_statement(client: TestClient) -> None:
    resp = client.get("/fhir/metadata")
    assert resp.status_code == 200
    cs = resp.json()
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["format"] == ["application/fhir+json", "json"]
    types = {r["type"] for r in cs["rest"][0]["resource"]}
    assert {"Patient", "Observation", "Task", "CareTeam", "Consent"} <= types
    assert "MedicinalProduct" not in types
    interactions = {i["code"] for i in cs["rest"][0]["interaction"]}
    assert {"transaction", "batch", "history-system"} <= interactions


def test_capability_statement_is_built_once_and_served_as_a_copy(
    services: Services, client: TestClient
) -> None:
    """Each base URL gets its own statement; an operation registered later shows at once;
    what one request's handler does to its copy never reaches the next request."""
    from renkei.fhir.context import FhirRequest, RequestContext
    from renkei.fhir.engine import OperationDef

    def read(base: str) -> dict[str, Any]:
        with services.db.session() as session:
            resp = services.engine.handle(
                session, FhirRequest("GET", "metadata", context=RequestContext(base_url=base))
            )
        assert resp.status == 200 and resp.body is not None
        return resp.body

    first = read("http://a.example/fhir")
    first["rest"][0]["resource"].clear()
    again = read("http://a.example/fhir")
    assert again["rest"][0]["resource"], "a handler's change to its copy leaked into the cache"
    assert again["implementation"]["url"] == "http://a.example/fhir"
    assert read("http://b.example/fhir")["implementation"]["url"] == "http://b.example/fhir"
    assert client.get("/fhir/metadata").json()["implementation"]["url"] == (
        "http://testserver/fhir"
    )
    services.engine.register_operation(
        OperationDef("late-op", lambda *_: None, frozenset({"system"}))  # type: ignore[arg-type]
    )
    names = {o["name"] for o in read("http://a.example/fhir")["rest"][0].get("operation", [])}
    assert "late-op" in names


def test_health_endpoints(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200


# -- error cases and less common interactions --------------------------------------------------


def test_head_returns_headers_without_body(client: TestClient) -> None:
    created = create(client, patient()).json()
    resp = client.head(f"/fhir/Patient/{created['id']}")
    assert resp.status_code == 200
    assert resp.content == b""
    assert resp.headers["ETag"] == 'W/"1"'


def test_conditional_read_if_modified_since(client: TestClient, clock: ManualClock) -> None:
    created = create(client, patient()).json()
    url = f"/fhir/Patient/{created['id']}"
    later = "Wed, 01 Apr 2026 00:10:00 GMT"
    earlier = "Tue, 31 Mar 2026 23:00:00 GMT"
    assert client.get(url, headers={"If-Modified-Since": later}).status_code == 304
    assert client.get(url, headers={"If-Modified-Since": earlier}).status_code == 200
    assert client.get(url, headers={"If-Modified-Since": "garbage"}).status_code == 200


def test_method_not_allowed_is_405(client: TestClient) -> None:
    created = create(client, patient()).json()
    assert client.post(f"/fhir/Patient/{created['id']}", json=patient()).status_code == 405
    assert client.delete("/fhir/metadata").status_code == 405
    assert client.put("/fhir", json=patient()).status_code == 405
    resp = client.post(f"/fhir/Patient/{created['id']}/_history/1", json=patient())
    assert resp.status_code == 405
    assert resp.json()["resourceType"] == "OperationOutcome"


def test_unknown_operation_and_path_are_outcomes(client: TestClient) -> None:
    resp = client.get("/fhir/Patient/$nothing-here")
    assert resp.status_code == 400
    assert resp.json()["issue"][0]["code"] == "not-supported"
    deep = client.get("/fhir/Patient/1/_history/1/extra")
    assert deep.status_code == 404
    assert deep.json()["resourceType"] == "OperationOutcome"


def test_vread_of_a_deletion_is_410_and_history_of_unknown_is_404(client: TestClient) -> None:
    created = create(client, patient()).json()
    url = f"/fhir/Patient/{created['id']}"
    client.delete(url)
    assert client.get(f"{url}/_history/2").status_code == 410
    assert client.get(f"{url}/_history/1").status_code == 200
    assert client.get(f"{url}/_history").status_code == 200  # a deleted resource has history
    assert client.get("/fhir/Patient/unknown/_history").status_code == 404


def test_delete_with_if_match(client: TestClient) -> None:
    created = create(client, patient()).json()
    url = f"/fhir/Patient/{created['id']}"
    stale = client.delete(url, headers={"If-Match": 'W/"2"'})
    assert stale.status_code == 412
    assert stale.headers["ETag"] == 'W/"1"'
    assert client.get(url).status_code == 200
    assert client.delete(url, headers={"If-Match": 'W/"1"'}).status_code == 200
    assert client.get(url).status_code == 410


def test_conditional_update_and_delete_errors(client: TestClient) -> None:
    query = "identifier=urn:oid:1.2.392.100495.20.3.51.11312345678|00001"
    first = create(client, patient()).json()
    mismatch = client.put(f"/fhir/Patient?{query}", json=patient(id="someone-else"))
    assert mismatch.status_code == 400
    create(client, patient())
    assert client.put(f"/fhir/Patient?{query}", json=patient()).status_code == 412
    assert client.delete(f"/fhir/Patient?{query}").status_code == 412
    assert client.put("/fhir/Patient", json=patient()).status_code == 400  # no condition
    assert client.delete("/fhir/Patient").status_code == 400
    assert client.get(f"/fhir/Patient/{first['id']}").json()["meta"]["versionId"] == "1"
    nothing = client.delete("/fhir/Patient?identifier=none|none")
    assert nothing.status_code == 200  # conditional delete with no match is not an error


def test_conditional_patch(client: TestClient) -> None:
    created = create(client, patient()).json()
    query = "identifier=urn:oid:1.2.392.100495.20.3.51.11312345678|00001"
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    ctype = {"Content-Type": "application/json-patch+json"}
    resp = client.patch(f"/fhir/Patient?{query}", json=ops, headers=ctype)
    assert resp.status_code == 200
    assert resp.json()["id"] == created["id"]
    assert resp.json()["gender"] == "male"
    assert client.patch("/fhir/Patient?identifier=none", json=ops, headers=ctype).status_code == 412
    assert client.patch("/fhir/Patient", json=ops, headers=ctype).status_code == 400


def test_patch_with_if_match_and_of_unknown(client: TestClient) -> None:
    created = create(client, patient()).json()
    url = f"/fhir/Patient/{created['id']}"
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    ctype = {"Content-Type": "application/json-patch+json"}
    assert client.patch(url, json=ops, headers={**ctype, "If-Match": 'W/"5"'}).status_code == 412
    assert client.patch(url, json=ops, headers={**ctype, "If-Match": 'W/"1"'}).status_code == 200
    assert client.patch("/fhir/Patient/nope", json=ops, headers=ctype).status_code == 404
    fhirpath = {"resourceType": "Parameters", "parameter": []}
    assert client.patch(url, json=fhirpath, headers=ctype).status_code == 415


def test_update_prefer_operation_outcome_and_minimal(client: TestClient) -> None:
    created = create(client, patient()).json()
    url = f"/fhir/Patient/{created['id']}"
    outcome = client.put(url, json=created, headers={"Prefer": "return=OperationOutcome"})
    assert outcome.status_code == 200
    assert outcome.json()["issue"][0]["severity"] == "information"
    minimal = client.put(url, json=created, headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 200
    assert minimal.content == b""
    assert minimal.headers["ETag"] == 'W/"3"'


def test_update_of_deleted_resource_with_stale_if_match_is_412(client: TestClient) -> None:
    created = create(client, patient()).json()
    url = f"/fhir/Patient/{created['id']}"
    client.delete(url)
    assert client.put(url, json=created, headers={"If-Match": 'W/"1"'}).status_code == 412
    assert client.put(url, json=created, headers={"If-Match": 'W/"2"'}).status_code == 201
