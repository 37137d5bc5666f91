"""SMART ``patient/`` scopes over HTTP: the token's patient context limits every interaction
to that patient's compartment (reads, searches, includes, Bundle entries, writes)."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi.testclient import TestClient

from renkei.app import Services
from renkei.auth import totp
from renkei.clock import ManualClock
from tests import authkit

REDIRECT = "https://app.example.jp/callback"
LOINC = "http://loinc.org"


# -- data --------------------------------------------------------------------------------


def _put(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    resp = client.put(f"/fhir/{body['resourceType']}/{body['id']}", json=body)
    assert resp.status_code in (200, 201), resp.text
    result: dict[str, Any] = resp.json()
    return result


def _observation(
    pid: str, rid: str | None = None, code: str = "8310-5", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}], "text": "体温"},
        "subject": {"reference": f"Patient/{pid}"},
        "valueQuantity": {"value": 37.2, "unit": "Cel"},
        **extra,
    }
    if rid is not None:
        body["id"] = rid
    return body


@pytest.fixture
def two_patients(client: TestClient) -> None:
    """pa and pb, each with two Observations; pa's second one has pb's as a member."""
    for pid, family in (("pa", "青木"), ("pb", "馬場")):
        _put(client, {"resourceType": "Patient", "id": pid, "name": [{"family": family}]})
        _put(client, _observation(pid, f"obs-{pid}-1"))
    _put(client, _observation("pb", "obs-pb-2"))
    _put(
        client,
        _observation("pa", "obs-pa-2", hasMember=[{"reference": "Observation/obs-pb-2"}]),
    )
    _put(client, {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "医師"}]})


def _ids(bundle: dict[str, Any], mode: str | None = None) -> list[str]:
    return sorted(
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["resource"]["resourceType"] != "OperationOutcome"
        and (mode is None or e["search"]["mode"] == mode)
    )


# -- tokens ------------------------------------------------------------------------------


def _backend_token(
    services: Services,
    anon: TestClient,
    scope: str,
    patient: str | None = "pa",
    registered: str = "patient/*.cruds system/Patient.rs",
) -> tuple[Any, str, str]:
    client_id, secret = authkit.register_client(services, registered)
    assert secret is not None
    form = {"grant_type": "client_credentials", "scope": scope}
    if patient is not None:
        form["patient"] = patient
    resp = anon.post("/auth/token", data=form, auth=(client_id, secret))
    return resp, client_id, secret


@pytest.fixture
def patient_client(services: Services, anon_client: TestClient, app: Any) -> Any:
    """``patient_client("patient/*.rs")``: HTTP client with a token bound to patient pa,
    obtained from the token endpoint (client credentials with ``patient=pa``)."""

    def make(scope: str = "patient/*.rs", patient: str = "pa") -> TestClient:
        resp, _, _ = _backend_token(services, anon_client, scope, patient)
        assert resp.status_code == 200, resp.text
        token = resp.json()["access_token"]
        return TestClient(
            app, base_url="http://testserver", headers={"Authorization": f"Bearer {token}"}
        )

    return make


# -- reads and searches -------------------------------------------------------------------


def test_patient_scope_reads_only_its_patients_compartment(
    two_patients: None, patient_client: Any
) -> None:
    http = patient_client("patient/*.rs")
    assert http.get("/fhir/Patient/pa").status_code == 200
    assert http.get("/fhir/Observation/obs-pa-1").status_code == 200
    # another patient's record reads as absent (404), like anything the caller may not see
    for url in ("/fhir/Patient/pb", "/fhir/Observation/obs-pb-1", "/fhir/Observation/obs-pb-2"):
        resp = http.get(url)
        assert resp.status_code == 404, url
        assert resp.json()["resourceType"] == "OperationOutcome"
    assert http.get("/fhir/Observation/obs-pb-1/_history/1").status_code == 404
    assert http.get("/fhir/Observation/obs-pb-1/_history").status_code == 404
    # nor do types outside any patient compartment
    assert http.get("/fhir/Practitioner/dr1").status_code == 404


def test_patient_scope_searches_only_its_patients_compartment(
    two_patients: None, patient_client: Any
) -> None:
    http = patient_client("patient/*.rs")
    found = http.get("/fhir/Observation").json()
    assert _ids(found) == ["Observation/obs-pa-1", "Observation/obs-pa-2"]
    assert found["total"] == 2  # B's are not even counted
    assert _ids(http.get("/fhir/Patient").json()) == ["Patient/pa"]
    by_code = http.get("/fhir/Observation", params={"code": f"{LOINC}|8310-5"}).json()
    assert _ids(by_code) == ["Observation/obs-pa-1", "Observation/obs-pa-2"]
    # asking for the other patient's data by parameter finds nothing
    assert http.get("/fhir/Observation", params={"subject": "Patient/pb"}).json()["total"] == 0
    assert http.get("/fhir/Patient/pb/Observation").status_code == 404
    assert _ids(http.get("/fhir/Patient/pa/Observation").json()) == [
        "Observation/obs-pa-1",
        "Observation/obs-pa-2",
    ]
    assert http.get("/fhir/Practitioner").json()["total"] == 0
    # system-level search and history keep to the compartment as well
    assert _ids(http.get("/fhir", params={"_type": "Patient,Observation"}).json()) == [
        "Observation/obs-pa-1",
        "Observation/obs-pa-2",
        "Patient/pa",
    ]
    history = http.get("/fhir/Observation/_history").json()
    assert {e["resource"]["id"] for e in history["entry"]} == {"obs-pa-1", "obs-pa-2"}


def test_include_and_revinclude_do_not_leak_the_other_patient(
    two_patients: None, client: TestClient, patient_client: Any
) -> None:
    params = {"_id": "obs-pa-2", "_include": "Observation:has-member"}
    # without a patient context the member (pb's) is included
    assert _ids(client.get("/fhir/Observation", params=params).json(), "include") == [
        "Observation/obs-pb-2"
    ]
    http = patient_client("patient/*.rs")
    bundle = http.get("/fhir/Observation", params=params).json()
    assert _ids(bundle) == ["Observation/obs-pa-2"]
    rev = http.get(
        "/fhir/Patient", params={"_revinclude": "Observation:subject", "_id": "pa,pb"}
    ).json()
    assert _ids(rev) == ["Observation/obs-pa-1", "Observation/obs-pa-2", "Patient/pa"]
    subject = http.get(
        "/fhir/Observation", params={"_include": "Observation:subject", "_count": "50"}
    ).json()
    assert "Patient/pb" not in _ids(subject)
    everything = http.get("/fhir/Patient/pa/$everything").json()
    assert _ids(everything) == ["Observation/obs-pa-1", "Observation/obs-pa-2", "Patient/pa"]
    assert http.get("/fhir/Patient/pb/$everything").status_code == 404
    summary = http.get("/fhir/Patient/pa/$summary")
    assert summary.status_code == 200, summary.text
    assert "obs-pb" not in summary.text
    assert http.get("/fhir/Patient/pb/$summary").status_code == 404


def test_patient_scope_still_needs_the_letter(two_patients: None, patient_client: Any) -> None:
    http = patient_client("patient/Observation.r")
    assert http.get("/fhir/Observation/obs-pa-1").status_code == 200
    assert http.get("/fhir/Observation").status_code == 403  # no 's'
    assert http.get("/fhir/Patient/pa").status_code == 403  # no Patient scope


def test_audit_log_is_not_served_under_patient_scopes(
    two_patients: None, patient_client: Any
) -> None:
    http = patient_client("patient/*.rs")
    assert http.get("/fhir/AuditEvent").status_code == 403


# -- writes ------------------------------------------------------------------------------


def test_writes_need_c_and_stay_in_the_compartment(
    two_patients: None, client: TestClient, patient_client: Any
) -> None:
    reader = patient_client("patient/*.rs")
    assert reader.post("/fhir/Observation", json=_observation("pa")).status_code == 403
    writer = patient_client("patient/Observation.crus patient/Patient.ru")
    created = writer.post("/fhir/Observation", json=_observation("pa"))
    assert created.status_code == 201, created.text
    assert created.json()["subject"] == {"reference": "Patient/pa"}
    refused = writer.post("/fhir/Observation", json=_observation("pb"))
    assert refused.status_code == 403
    assert "insufficient_scope" in refused.headers["WWW-Authenticate"]
    # a resource that would land in another patient's compartment too
    both = _observation("pa", performer=[{"reference": "Patient/pb"}])
    assert writer.post("/fhir/Observation", json=both).status_code == 403
    # moving one of pa's Observations to pb, or changing pb's, is refused
    moved = _observation("pb", "obs-pa-1")
    assert writer.put("/fhir/Observation/obs-pa-1", json=moved).status_code == 403
    theirs = _observation("pb", "obs-pb-1")
    assert writer.put("/fhir/Observation/obs-pb-1", json=theirs).status_code == 404
    # a new Patient is nobody's compartment but its own: not pa's
    other = {"resourceType": "Patient", "name": [{"family": "新規"}]}
    assert writer.post("/fhir/Patient", json=other).status_code == 403
    mine = {"resourceType": "Patient", "id": "pa", "name": [{"family": "青木", "given": ["一"]}]}
    assert writer.put("/fhir/Patient/pa", json=mine).status_code == 200
    total = client.get("/fhir/Observation", params={"subject": "Patient/pb"}).json()["total"]
    assert total == 2  # nothing was written into pb's record


def test_delete_outside_the_compartment_is_404(two_patients: None, patient_client: Any) -> None:
    http = patient_client("patient/Observation.rds")
    assert http.delete("/fhir/Observation/obs-pb-1").status_code == 404
    assert http.delete("/fhir/Observation/obs-pa-1").status_code == 200


def _entry(body: dict[str, Any]) -> dict[str, Any]:
    return {"resource": body, "request": {"method": "POST", "url": body["resourceType"]}}


def test_transaction_with_an_entry_on_another_patient_fails_as_a_whole(
    two_patients: None, client: TestClient, patient_client: Any
) -> None:
    http = patient_client("patient/Observation.crs")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [_entry(_observation("pa", code="29463-7")), _entry(_observation("pb"))],
    }
    resp = http.post("/fhir", json=bundle)
    assert resp.status_code == 403, resp.text
    assert resp.json()["resourceType"] == "OperationOutcome"
    written = client.get("/fhir/Observation", params={"code": f"{LOINC}|29463-7"}).json()
    assert written["total"] == 0  # pa's entry was rolled back with it
    read = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Observation/obs-pb-1"}},
    ]}  # fmt: skip
    assert http.post("/fhir", json=read).status_code == 404


def test_batch_entries_are_checked_one_by_one(two_patients: None, patient_client: Any) -> None:
    http = patient_client("patient/Observation.crs")
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            _entry(_observation("pa")),
            _entry(_observation("pb")),
            {"request": {"method": "GET", "url": "Observation/obs-pb-1"}},
            {"request": {"method": "GET", "url": "Observation?subject=Patient/pb"}},
        ],
    }
    resp = http.post("/fhir", json=bundle)
    assert resp.status_code == 200, resp.text
    entries = resp.json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["201", "403", "404", "200"]
    assert entries[3]["resource"].get("total") == 0


# -- issuing tokens with a patient context ------------------------------------------------


def test_token_response_and_introspection_carry_the_patient(
    services: Services, anon_client: TestClient, two_patients: None
) -> None:
    resp, client_id, secret = _backend_token(services, anon_client, "patient/*.rs")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["patient"] == "pa"
    assert body["scope"] == "patient/*.rs"
    info = anon_client.post(
        "/auth/introspect", data={"token": body["access_token"]}, auth=(client_id, secret)
    ).json()
    assert info["active"] is True
    assert info["patient"] == "pa"


def test_patient_scopes_without_a_patient_are_refused(
    services: Services, anon_client: TestClient, two_patients: None
) -> None:
    resp, _, _ = _backend_token(services, anon_client, "patient/*.rs", patient=None)
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_scope"
    unknown, _, _ = _backend_token(services, anon_client, "patient/*.rs", patient="nobody")
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid_request"
    # a patient context does not unlock patient/ scopes the client was not registered with
    narrow, _, _ = _backend_token(
        services, anon_client, "patient/*.rs", registered="system/Patient.rs"
    )
    assert narrow.json()["error"] == "invalid_scope"


def test_system_scopes_in_the_same_token_are_not_narrowed(
    services: Services, anon_client: TestClient, two_patients: None, app: Any
) -> None:
    resp, _, _ = _backend_token(
        services, anon_client, "patient/*.rs system/Practitioner.r",
        registered="patient/*.rs system/Practitioner.rs",
    )  # fmt: skip
    assert resp.status_code == 200, resp.text
    http = TestClient(
        app,
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {resp.json()['access_token']}"},
    )
    assert http.get("/fhir/Practitioner/dr1").status_code == 200
    assert http.get("/fhir/Observation/obs-pb-1").status_code == 404


def test_smart_configuration_advertises_patient_launch(anon_client: TestClient) -> None:
    body = anon_client.get("/fhir/.well-known/smart-configuration").json()
    for capability in ("launch-standalone", "context-standalone-patient", "permission-patient"):
        assert capability in body["capabilities"]
    assert "launch/patient" in body["scopes_supported"]
    assert "patient/*.cruds" in body["scopes_supported"]


# -- standalone launch: the person picks the patient --------------------------------------


def _hidden_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


def _radio_values(html: str) -> list[str]:
    return re.findall(r'<input type="radio" name="patient" value="([^"]+)"', html)


def _launch(
    services: Services, anon: TestClient, clock: ManualClock, scope: str
) -> tuple[str, str, Any]:
    """Sign in for ``scope``; returns (client_id, verifier, the page after sign-in)."""
    user = authkit.create_user(services, role="nurse")
    client_id, _ = authkit.register_client(
        services,
        "launch/patient patient/*.cruds user/*.rs openid fhirUser offline_access",
        redirect_uris=[REDIRECT],
        public=True,
    )
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "st-9",
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
        "aud": "http://testserver/fhir",
    }
    page = anon.get("/auth/authorize", params=params)
    assert page.status_code == 200, page.text
    form = _hidden_fields(page.text)
    form.update(
        login=user.login, password=user.password, totp=totp.code_at(user.totp_secret, clock.now())
    )
    return client_id, verifier, anon.post("/auth/authorize", data=form)


def _exchange(anon: TestClient, client_id: str, code: str, verifier: str) -> Any:
    return anon.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "client_id": client_id,
        },
    )


def test_standalone_launch_lets_the_person_pick_the_patient(
    services: Services, anon_client: TestClient, clock: ManualClock, two_patients: None
) -> None:
    scope = "launch/patient patient/*.rs openid fhirUser offline_access"
    client_id, verifier, picker = _launch(services, anon_client, clock, scope)
    # signed in: no code yet, a patient picker instead
    assert picker.status_code == 200, picker.text
    assert picker.headers["X-Frame-Options"] == "DENY"
    assert sorted(_radio_values(picker.text)) == ["pa", "pb"]
    assert "青木" in picker.text
    fields = _hidden_fields(picker.text)
    assert fields["launch_ticket"]
    narrowed = anon_client.post("/auth/authorize", data={**fields, "patient_name": "青木"})
    assert _radio_values(narrowed.text) == ["pa"]
    bad = anon_client.post("/auth/authorize", data={**fields, "patient": "nobody"})
    assert bad.status_code == 400 and 'role="alert"' in bad.text
    forged = anon_client.post(
        "/auth/authorize", data={**fields, "launch_ticket": fields["launch_ticket"][:-4] + "AAAA",
                                 "patient": "pa"},
    )  # fmt: skip
    assert forged.status_code == 400
    chosen = anon_client.post("/auth/authorize", data={**fields, "patient": "pa"})
    assert chosen.status_code == 303, chosen.text
    query = parse_qs(urlsplit(chosen.headers["location"]).query)
    assert query["state"] == ["st-9"]
    token = _exchange(anon_client, client_id, query["code"][0], verifier)
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["patient"] == "pa"
    assert body["scope"] == scope
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert anon_client.get("/fhir/Patient/pa", headers=headers).status_code == 200
    assert anon_client.get("/fhir/Patient/pb", headers=headers).status_code == 404
    assert _ids(anon_client.get("/fhir/Observation", headers=headers).json()) == [
        "Observation/obs-pa-1",
        "Observation/obs-pa-2",
    ]
    # the refresh token keeps the context, and introspection shows it
    info = anon_client.post(
        "/auth/introspect", data={"token": body["refresh_token"], "client_id": client_id}
    ).json()
    assert info["patient"] == "pa"
    refreshed = anon_client.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": client_id,
        },
    ).json()
    assert refreshed["patient"] == "pa"
    again = {"Authorization": f"Bearer {refreshed['access_token']}"}
    assert anon_client.get("/fhir/Observation/obs-pb-1", headers=again).status_code == 404


def test_launch_ticket_expires_and_belongs_to_its_request(
    services: Services, anon_client: TestClient, clock: ManualClock, two_patients: None
) -> None:
    _, _, picker = _launch(services, anon_client, clock, "patient/*.rs")
    fields = _hidden_fields(picker.text)
    other = anon_client.post(
        "/auth/authorize", data={**fields, "state": "another", "patient": "pa"}
    )
    assert other.status_code == 400  # the ticket was sealed for state st-9
    clock.advance(timedelta(minutes=11))
    late = anon_client.post("/auth/authorize", data={**fields, "patient": "pa"})
    assert late.status_code == 400
    assert "expired" in late.text


def test_launch_without_patient_scopes_still_gives_the_context(
    services: Services, anon_client: TestClient, clock: ManualClock, two_patients: None
) -> None:
    client_id, verifier, picker = _launch(services, anon_client, clock, "launch/patient user/*.rs")
    chosen = anon_client.post(
        "/auth/authorize", data={**_hidden_fields(picker.text), "patient": "pb"}
    )
    code = parse_qs(urlsplit(chosen.headers["location"]).query)["code"][0]
    body = _exchange(anon_client, client_id, code, verifier).json()
    assert body["patient"] == "pb"
    # user/ scopes are not narrowed by the context
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert anon_client.get("/fhir/Patient/pa", headers=headers).status_code == 200


# -- the sharing policy still applies ------------------------------------------------------


@pytest.fixture
def sharing(settings: Any, clock: ManualClock) -> Any:
    """The default services: sharing policy (ownership, care team, consent) inside scopes."""
    from renkei.app import build_services
    from renkei.calls import CallSettings

    svc = build_services(settings, clock=clock, call_settings=CallSettings(worker=False))
    yield svc
    svc.db.dispose()


def _as_operator(svc: Services, body: dict[str, Any]) -> None:
    from renkei.auth.principal import OPERATOR
    from renkei.fhir.context import FhirRequest, RequestContext

    path = f"{body['resourceType']}/{body['id']}"
    with svc.db.session(write=True) as session:
        resp = svc.engine.dispatch(
            session, FhirRequest("PUT", path, body=body, context=RequestContext(principal=OPERATOR))
        )
    assert resp.status in (200, 201), resp.body


def test_a_patient_context_never_widens_what_the_person_may_see(
    sharing: Services, settings: Any, clock: ManualClock
) -> None:
    from renkei.app import create_app
    from renkei.auth import service
    from renkei.auth.errors import InvalidRequest

    user = authkit.create_user(sharing, role="nurse")
    _as_operator(sharing, {"resourceType": "Organization", "id": "elsewhere", "name": "他院"})
    for pid, org in (("pmine", user.organization_id), ("pother", "elsewhere")):
        _as_operator(
            sharing,
            {
                "resourceType": "Patient",
                "id": pid,
                "name": [{"family": pid}],
                "managingOrganization": {"reference": f"Organization/{org}"},
            },
        )
        _as_operator(sharing, _observation(pid, f"obs-{pid}"))
    app = create_app(settings, services=sharing)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as anon:
        # the picker lists the patients the person may see, and only those can be chosen
        _, _, stranger = _launch(sharing, anon, clock, "patient/*.rs")  # another org's nurse
        assert _radio_values(stranger.text) == []
        assert "表示できる患者がいません" in stranger.text
        mine = _picker_for(sharing, anon, user, clock)
        assert _radio_values(mine.text) == ["pmine"]
        fields = _hidden_fields(mine.text)
        refused = anon.post("/auth/authorize", data={**fields, "patient": "pother"})
        assert refused.status_code == 400
        # the operator cannot bind a token to a patient the person may not see either
        assert sharing.auth is not None
        with pytest.raises(InvalidRequest), sharing.db.session(write=True) as session:
            service.issue_operator_token(
                session, sharing.auth, user_id=user.id, scope="patient/*.rs", patient_id="pother"
            )
        # and a token bound to such a patient (its sharing ended since) reads nothing
        with sharing.db.session() as session:
            row = service.get_user(session, user.id)
        claims = {**service.user_claims(row), "patient": "pother"}
        token = authkit.sign(sharing, user.id, "patient/*.rs", claims)
        headers = {"Authorization": f"Bearer {token}"}
        assert anon.get("/fhir/Patient/pother", headers=headers).status_code == 404
        assert anon.get("/fhir/Observation", headers=headers).json()["total"] == 0
        claims["patient"] = "pmine"
        token = authkit.sign(sharing, user.id, "patient/*.rs", claims)
        headers = {"Authorization": f"Bearer {token}"}
        assert _ids(anon.get("/fhir/Observation", headers=headers).json()) == [
            "Observation/obs-pmine"
        ]


def _picker_for(svc: Services, anon: TestClient, user: authkit.TestUser, clock: ManualClock) -> Any:
    """``user`` signs in for a ``patient/*.rs`` app; returns the patient picker."""
    client_id, _ = authkit.register_client(
        svc, "patient/*.rs", redirect_uris=[REDIRECT], public=True
    )
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "patient/*.rs",
        "code_challenge": create_s256_code_challenge(secrets.token_urlsafe(48)),
        "code_challenge_method": "S256",
    }
    form = _hidden_fields(anon.get("/auth/authorize", params=params).text)
    form.update(
        login=user.login, password=user.password, totp=totp.code_at(user.totp_secret, clock.now())
    )
    page = anon.post("/auth/authorize", data=form)
    assert page.status_code == 200, page.text
    return page
