"""Bad input through HTTP: a clear 4xx OperationOutcome naming the element, never a 500,
never a partial write (https://hl7.org/fhir/R4/http.html#2.21.0.8, json.html)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from renkei.api.fhir import MAX_BODY_BYTES

FHIR_JSON = {"Content-Type": "application/fhir+json"}
PATIENT: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": "山田"}]}


def post_raw(client: TestClient, path: str, raw: bytes) -> Any:
    return client.post(path, content=raw, headers=FHIR_JSON)


def expressions(resp: Any) -> set[str]:
    return {e for i in resp.json()["issue"] for e in i.get("expression", [])}


def patient_count(client: TestClient) -> int:
    return len(client.get("/fhir/Patient/_history").json()["entry"])


@pytest.mark.parametrize(
    ("extra", "element"),
    [
        ({"gender": None}, "Patient.gender"),
        ({"name": []}, "Patient.name"),
        ({"name": [{}]}, "Patient.name[0]"),
        ({"name": [None]}, "Patient.name[0]"),
        ({"gender": ""}, "Patient.gender"),
        ({"active": "yes"}, "Patient.active"),
        ({"active": 1}, "Patient.active"),
        ({"birthDate": 19380501}, "Patient.birthDate"),
        ({"birthDate": "1938-13-45"}, "Patient.birthDate"),
        ({"deceasedDateTime": "yesterday"}, "Patient.deceasedDateTime"),
        ({"multipleBirthInteger": "2"}, "Patient.multipleBirthInteger"),
        ({"multipleBirthInteger": 1.5}, "Patient.multipleBirthInteger"),
        ({"name": [{"family": 5}]}, "Patient.name[0].family"),
        ({"name": [{"family": "a\u0000b"}]}, "Patient.name[0].family"),
        ({"name": {"family": "x"}}, "Patient.name"),
        ({"unknownThing": 1}, "Patient.unknownThing"),
        ({"meta": {"versionId": 5}}, "Patient.meta.versionId"),
        ({"text": {"status": "generated", "div": "not xhtml"}}, "Patient.text.div"),
        ({"contained": [{"id": "o1"}]}, "Patient.contained[0]"),
        (
            {"contained": [{"resourceType": "Nope", "id": "o1"}]},
            "Patient.contained[0].resourceType",
        ),
        (
            {
                "contained": [
                    {
                        "resourceType": "Organization",
                        "id": "o1",
                        "contained": [{"resourceType": "Organization", "id": "o2"}],
                    }
                ]
            },
            "Patient.contained[0].contained",
        ),
    ],
)
def test_create_bad_element_is_422_naming_it(
    client: TestClient, extra: dict[str, Any], element: str
) -> None:
    resp = client.post("/fhir/Patient", json={**PATIENT, **extra})
    assert resp.status_code == 422, resp.text
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert element in expressions(resp)
    assert patient_count(client) == 0


def test_create_valid_edge_cases_are_accepted(client: TestClient) -> None:
    """What FHIR allows must still pass: contained resources, primitive extensions, nulls
    that keep a primitive array aligned with its ``_element`` twin."""
    body = {
        **PATIENT,
        "contained": [{"resourceType": "Organization", "id": "o1", "name": "さくら診療所"}],
        "managingOrganization": {"reference": "#o1"},
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
        "birthDate": "1938-05-01",
        "_birthDate": {"extension": [{"url": "http://example.org/x", "valueString": "推定"}]},
        "name": [
            {
                "family": "山田",
                "given": ["花子", None],
                "_given": [
                    None,
                    {"extension": [{"url": "http://example.org/y", "valueCode": "a"}]},
                ],
            }
        ],
    }
    resp = client.post("/fhir/Patient", json=body)
    assert resp.status_code == 201, resp.text
    assert resp.json()["name"][0]["_given"][1]["extension"][0]["valueCode"] == "a"


@pytest.mark.parametrize(
    "raw",
    [
        b"[1, 2]",
        b'"Patient"',
        b"5",
        b"null",
        b'{"resourceType": 5}',
        b"{}",
        b'{"resourceType":"Patient","name":[{"family":"\xff\xfe"}]}',  # not UTF-8
        b"[" * 5000 + b"]" * 5000,  # deeper than the JSON parser goes
        b'{"resourceType":"Patient",',
    ],
)
def test_create_malformed_body_is_400(client: TestClient, raw: bytes) -> None:
    resp = post_raw(client, "/fhir/Patient", raw)
    assert resp.status_code == 400, resp.text
    assert resp.json()["resourceType"] == "OperationOutcome"


def test_create_deeply_nested_extensions_is_refused(client: TestClient) -> None:
    n = 300
    raw = (
        '{"resourceType":"Patient",'
        + '"extension":[{"url":"http://x",' * n
        + '"valueString":"x"'
        + "}]" * n
        + "}"
    )
    resp = post_raw(client, "/fhir/Patient", raw.encode())
    assert resp.status_code == 422
    assert resp.json()["issue"][0]["code"] == "too-costly"


def test_create_body_over_the_limit_is_413(client: TestClient) -> None:
    raw = b'{"resourceType":"Patient","name":[{"family":"' + b"x" * MAX_BODY_BYTES + b'"}]}'
    resp = post_raw(client, "/fhir/Patient", raw)
    assert resp.status_code == 413
    assert resp.json()["issue"][0]["code"] == "too-costly"


def test_resource_type_mismatch_and_unknown_type(client: TestClient) -> None:
    wrong = client.post("/fhir/Observation", json=PATIENT)
    assert wrong.status_code == 400
    assert expressions(wrong) == {"resourceType"}
    unknown = client.post("/fhir/Nope", json={"resourceType": "Nope"})
    assert unknown.status_code == 404
    assert unknown.json()["issue"][0]["code"] == "not-supported"
    r4_only = client.post("/fhir/MedicinalProduct", json={"resourceType": "MedicinalProduct"})
    assert r4_only.status_code == 404
    assert "R4-only" in r4_only.json()["issue"][0]["diagnostics"]


def test_update_id_rules(client: TestClient) -> None:
    assert client.put("/fhir/Patient/a", json={**PATIENT, "id": "b"}).status_code == 400
    assert client.put("/fhir/Patient/a", json=PATIENT).status_code == 400
    too_long = "x" * 65
    resp = client.put(f"/fhir/Patient/{too_long}", json={**PATIENT, "id": too_long})
    assert resp.status_code == 400
    bad_chars = client.put("/fhir/Patient/a_b", json={**PATIENT, "id": "a_b"})
    assert bad_chars.status_code == 400
    newline = client.put("/fhir/Patient/ab%0A", json={**PATIENT, "id": "ab\n"})
    assert newline.status_code == 400
    assert client.get("/fhir/Patient/ab%0A").status_code in (400, 404)
    assert patient_count(client) == 0


@pytest.mark.parametrize(
    "tag", ["abc", 'W/"x"', 'W/"1.5"', 'W/"²"', 'W/"-1"', 'W/"' + "9" * 40 + '"']
)
def test_if_match_not_a_version_is_400(client: TestClient, tag: str) -> None:
    created = client.post("/fhir/Patient", json=PATIENT).json()
    url = f"/fhir/Patient/{created['id']}"
    header = {"If-Match": tag.encode("latin-1")}  # HTTP headers are bytes; '²' is 0xB2
    resp = client.put(url, json={**created, "gender": "male"}, headers=header)
    assert resp.status_code == 400, resp.text
    assert client.delete(url, headers=header).status_code == 400
    assert client.get(url).json()["meta"]["versionId"] == "1"


def test_if_match_large_version_is_412(client: TestClient) -> None:
    created = client.post("/fhir/Patient", json=PATIENT).json()
    url = f"/fhir/Patient/{created['id']}"
    resp = client.put(url, json=created, headers={"If-Match": 'W/"4294967296"'})
    assert resp.status_code == 412


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/Patient/x/_history/99999999999999999999999",
        "/fhir/Patient/x/_history/4294967296",
        "/fhir/Patient/x/_history/²",
        "/fhir/Patient/x/_history/abc",
    ],
)
def test_vread_impossible_version_is_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        "_cursor=1e300_99999999999999999999999_1",
        "_cursor=inf_1_1",
        "_cursor=nan_1_1",
        "_cursor=garbage",
        "_since=garbage",
        "_count=-1",
        "_count=²",
    ],
)
def test_history_bad_parameters_are_400(client: TestClient, query: str) -> None:
    resp = client.get(f"/fhir/_history?{query}")
    assert resp.status_code == 400, resp.text


def test_history_huge_count_is_clamped(client: TestClient) -> None:
    resp = client.get("/fhir/_history?_count=" + "9" * 5000)
    assert resp.status_code == 200


def test_long_values_are_stored_on_both_databases(client: TestClient) -> None:
    """Index columns are bounded; a long identifier is still a valid resource (PostgreSQL
    checks varchar lengths where SQLite does not)."""
    body = {**PATIENT, "identifier": [{"system": "urn:" + "s" * 600, "value": "v" * 600}]}
    resp = client.post("/fhir/Patient", json=body)
    assert resp.status_code == 201, resp.text
    assert client.get(f"/fhir/Patient/{resp.json()['id']}").json()["identifier"][0]["value"] == (
        "v" * 600
    )


def test_content_type_and_accept(client: TestClient) -> None:
    text = client.post(
        "/fhir/Patient", content=json.dumps(PATIENT), headers={"Content-Type": "text/plain"}
    )
    assert text.status_code == 415
    xml = client.get("/fhir/Patient/x", headers={"Accept": "application/fhir+xml"})
    assert xml.status_code == 406


# -- property test: random JSON never yields a 500 ---------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["resourceType", "id", "name", "family", "given", "gender", "birthDate", "active",
             "meta", "versionId", "extension", "url", "valueString", "contained", "text", "div",
             "identifier", "system", "value", "_birthDate", "telecom", "address", "x"]
        ),
        children,
        max_size=5,
    ),
    max_leaves=20,
)  # fmt: skip
_resourceish = st.fixed_dictionaries(
    {"resourceType": st.sampled_from(["Patient", "Observation", "Bundle", "Nope", ""])},
    optional={
        "id": st.text(max_size=70),
        "name": _json,
        "gender": _json,
        "birthDate": _json,
        "active": _json,
        "meta": _json,
        "contained": _json,
        "extension": _json,
        "type": st.sampled_from(["transaction", "batch", "collection"]),
        "entry": _json,
    },
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_json | _resourceish, method=st.sampled_from(["POST /fhir/Patient", "PUT", "POST /"]))
def test_random_json_never_yields_500(client: TestClient, body: Any, method: str) -> None:
    raw = json.dumps(body).encode()
    if method == "PUT":
        resp = client.put("/fhir/Patient/fuzz", content=raw, headers=FHIR_JSON)
    elif method == "POST /":
        resp = post_raw(client, "/fhir", raw)
    else:
        resp = post_raw(client, "/fhir/Patient", raw)
    assert resp.status_code < 500, resp.text
    assert resp.json()["resourceType"] in ("OperationOutcome", "Patient", "Bundle")


def test_r4_types_without_search_parameters_are_served(client: TestClient) -> None:
    """Types with no SearchParameter of their own are still R4 types."""
    body = {"resourceType": "BiologicallyDerivedProduct", "productCategory": "cells"}
    assert client.post("/fhir/BiologicallyDerivedProduct", json=body).status_code == 201
    r4b_only = client.post("/fhir/SubscriptionTopic", json={"resourceType": "SubscriptionTopic"})
    assert r4b_only.status_code == 404


class _OverlongIndexer:
    """An index writer that writes a value longer than its column (as a buggy one might)."""

    def reindex(self, session: Any, pk: int, res_type: str, content: Any) -> None:
        from renkei.store.models import idx_token

        session.execute(
            idx_token.insert().values(resource_pk=pk, res_type=res_type, param="x", code="c" * 500)
        )


def test_database_refusal_is_422_not_500(
    client: TestClient, services: Any, database_url: str
) -> None:
    """PostgreSQL refuses a value too long for its column; that is the client's 422 with
    nothing written, never a 500. (SQLite stores it.)"""
    services.engine.indexer = _OverlongIndexer()
    resp = client.post("/fhir/Patient", json=dict(PATIENT))
    if database_url.startswith("postgresql"):
        assert resp.status_code == 422, resp.text
        assert "cannot be stored" in resp.json()["issue"][0]["diagnostics"]
        assert client.get("/fhir/Patient").json().get("total") == 0
    else:
        assert resp.status_code == 201
