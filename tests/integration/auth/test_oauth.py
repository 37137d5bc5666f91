"""OAuth 2 / SMART over HTTP: PKCE sign-in, client credentials, refresh, revoke, introspect."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey

from renkei.app import Services
from renkei.auth import service, totp
from renkei.clock import ManualClock
from tests import authkit

REDIRECT = "https://app.example.jp/callback"
TOKEN_URL = "http://testserver/auth/token"
PATIENT = {"resourceType": "Patient", "name": [{"family": "山田", "given": ["花子"]}]}


# -- helpers ------------------------------------------


def _app_client(services: Services, scope: str = "user/*.cruds offline_access") -> str:
    client_id, _ = authkit.register_client(services, scope, redirect_uris=[REDIRECT], public=True)
    return client_id


def _authorize_params(client_id: str, verifier: str, scope: str, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "st-1",
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
        "aud": "http://testserver/fhir",
    }
    params.update(extra)
    return params


def _hidden_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


def _sign_in(
    anon: TestClient,
    user: authkit.TestUser,
    clock: ManualClock,
    client_id: str,
    verifier: str,
    scope: str = "user/Patient.rs offline_access",
    password: str | None = None,
) -> Any:
    page = anon.get("/auth/authorize", params=_authorize_params(client_id, verifier, scope))
    assert page.status_code == 200, page.text
    form = _hidden_fields(page.text)
    form.update(
        login=user.login,
        password=password or user.password,
        totp=totp.code_at(user.totp_secret, clock.now()),
    )
    return anon.post("/auth/authorize", data=form)


def _code_from(resp: Any) -> str:
    assert resp.status_code == 303, resp.text
    query = parse_qs(urlsplit(resp.headers["location"]).query)
    assert query["state"] == ["st-1"]
    return query["code"][0]


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


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _people_tokens(
    services: Services, anon: TestClient, clock: ManualClock, scope: str
) -> tuple[str, dict[str, Any]]:
    user = authkit.create_user(services)
    client_id = _app_client(services)
    verifier = secrets.token_urlsafe(48)
    code = _code_from(_sign_in(anon, user, clock, client_id, verifier, scope))
    resp = _exchange(anon, client_id, code, verifier)
    assert resp.status_code == 200, resp.text
    return client_id, resp.json()


# -- people: authorization code + PKCE -----------------------------------------------------------


def test_pkce_flow_end_to_end(
    services: Services, anon_client: TestClient, clock: ManualClock
) -> None:
    user = authkit.create_user(services, role="nurse")
    client_id = _app_client(services)
    verifier = secrets.token_urlsafe(48)
    page = anon_client.get(
        "/auth/authorize",
        params=_authorize_params(client_id, verifier, "user/Patient.rs offline_access"),
    )
    assert page.status_code == 200
    assert 'name="password"' in page.text and 'name="totp"' in page.text
    assert page.headers["X-Frame-Options"] == "DENY"
    resp = _sign_in(anon_client, user, clock, client_id, verifier)
    redirect = urlsplit(resp.headers["location"])
    assert f"{redirect.scheme}://{redirect.netloc}{redirect.path}" == REDIRECT
    assert parse_qs(redirect.query)["iss"] == ["http://testserver/auth"]
    token = _exchange(anon_client, client_id, _code_from(resp), verifier)
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "user/Patient.rs offline_access"
    assert body["refresh_token"]
    assert token.headers["Cache-Control"] == "no-store"
    # the token reads patients, but may not write them
    headers = _bearer(body["access_token"])
    assert anon_client.get("/fhir/Patient", headers=headers).status_code == 200
    write = anon_client.post("/fhir/Patient", json=PATIENT, headers=headers)
    assert write.status_code == 403
    assert write.json()["resourceType"] == "OperationOutcome"
    assert "insufficient_scope" in write.headers["WWW-Authenticate"]


def test_authorize_requires_pkce_s256(services: Services, anon_client: TestClient) -> None:
    client_id = _app_client(services)
    params = _authorize_params(
        client_id, "x" * 43, "user/Patient.rs", code_challenge_method="plain"
    )
    resp = anon_client.get("/auth/authorize", params=params)
    assert resp.status_code == 303
    query = parse_qs(urlsplit(resp.headers["location"]).query)
    assert query["error"] == ["invalid_request"]
    assert query["state"] == ["st-1"]


def test_authorize_refuses_unregistered_redirect_without_redirecting(
    services: Services, anon_client: TestClient
) -> None:
    client_id = _app_client(services)
    params = _authorize_params(client_id, "x" * 43, "user/Patient.rs")
    params["redirect_uri"] = "https://evil.example.com/cb"
    resp = anon_client.get("/auth/authorize", params=params)
    assert resp.status_code == 400
    assert "location" not in resp.headers


def test_authorize_refuses_scope_beyond_the_client(
    services: Services, anon_client: TestClient
) -> None:
    client_id = _app_client(services, scope="user/Patient.rs")
    resp = anon_client.get(
        "/auth/authorize", params=_authorize_params(client_id, "x" * 43, "user/Patient.cruds")
    )
    assert parse_qs(urlsplit(resp.headers["location"]).query)["error"] == ["invalid_scope"]


def test_token_refuses_wrong_code_verifier(
    services: Services, anon_client: TestClient, clock: ManualClock
) -> None:
    user = authkit.create_user(services)
    client_id = _app_client(services)
    verifier = secrets.token_urlsafe(48)
    code = _code_from(_sign_in(anon_client, user, clock, client_id, verifier))
    resp = _exchange(anon_client, client_id, code, secrets.token_urlsafe(48))
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"


def test_code_replay_revokes_the_tokens_it_gave(
    services: Services, anon_client: TestClient, clock: ManualClock
) -> None:
    user = authkit.create_user(services)
    client_id = _app_client(services)
    verifier = secrets.token_urlsafe(48)
    code = _code_from(_sign_in(anon_client, user, clock, client_id, verifier))
    first = _exchange(anon_client, client_id, code, verifier).json()
    again = _exchange(anon_client, client_id, code, verifier)
    assert again.json()["error"] == "invalid_grant"
    assert (
        anon_client.get("/fhir/Patient", headers=_bearer(first["access_token"])).status_code == 401
    )


def test_code_expires(services: Services, anon_client: TestClient, clock: ManualClock) -> None:
    user = authkit.create_user(services)
    client_id = _app_client(services)
    verifier = secrets.token_urlsafe(48)
    code = _code_from(_sign_in(anon_client, user, clock, client_id, verifier))
    clock.advance(seconds=61)
    assert _exchange(anon_client, client_id, code, verifier).json()["error"] == "invalid_grant"


def test_login_page_locks_after_repeated_failures(
    services: Services, anon_client: TestClient, clock: ManualClock
) -> None:
    assert services.auth is not None
    user = authkit.create_user(services)
    client_id = _app_client(services)
    verifier = secrets.token_urlsafe(48)
    statuses = [
        _sign_in(anon_client, user, clock, client_id, verifier, password="wrong-pass-1").status_code
        for _ in range(services.auth.config.lockout_threshold)
    ]
    assert statuses[:-1] == [401] * (len(statuses) - 1)
    assert statuses[-1] == 429
    clock.advance(seconds=30)
    right = _sign_in(anon_client, user, clock, client_id, verifier)
    assert right.status_code == 429
    assert "locked" in right.text


def test_login_page_refuses_reused_totp_code(
    services: Services, anon_client: TestClient, clock: ManualClock
) -> None:
    user = authkit.create_user(services)
    client_id = _app_client(services)
    verifier = secrets.token_urlsafe(48)
    assert _sign_in(anon_client, user, clock, client_id, verifier).status_code == 303
    clock.advance(seconds=3)
    replay = _sign_in(anon_client, user, clock, client_id, verifier)
    assert replay.status_code == 401


# -- refresh tokens ------------------------------------------


def _refresh(anon: TestClient, client_id: str, refresh_token: str) -> Any:
    return anon.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
        },
    )


def test_refresh_rotates(services: Services, anon_client: TestClient, clock: ManualClock) -> None:
    client_id, first = _people_tokens(
        services, anon_client, clock, "user/Patient.rs offline_access"
    )
    resp = _refresh(anon_client, client_id, first["refresh_token"])
    assert resp.status_code == 200, resp.text
    second = resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (
        anon_client.get("/fhir/Patient", headers=_bearer(second["access_token"])).status_code == 200
    )


def test_refresh_reuse_revokes_the_family(
    services: Services, anon_client: TestClient, clock: ManualClock
) -> None:
    client_id, first = _people_tokens(
        services, anon_client, clock, "user/Patient.rs offline_access"
    )
    second = _refresh(anon_client, client_id, first["refresh_token"]).json()
    stolen = _refresh(anon_client, client_id, first["refresh_token"])
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"
    # the legitimate holder's newer tokens die with the family
    assert (
        _refresh(anon_client, client_id, second["refresh_token"]).json()["error"] == "invalid_grant"
    )
    assert (
        anon_client.get("/fhir/Patient", headers=_bearer(second["access_token"])).status_code == 401
    )


def test_refresh_token_only_with_offline_access(
    services: Services, anon_client: TestClient, clock: ManualClock
) -> None:
    _, body = _people_tokens(services, anon_client, clock, "user/Patient.rs")
    assert "refresh_token" not in body


# -- back ends: client credentials --------------------------------------------------------------


def test_client_credentials_with_secret(services: Services, anon_client: TestClient) -> None:
    client_id, secret = authkit.register_client(
        services, "system/Patient.rs system/Observation.cruds"
    )
    assert secret is not None
    resp = anon_client.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/Patient.rs"},
        auth=(client_id, secret),
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["scope"] == "system/Patient.rs"
    assert "refresh_token" not in body
    headers = _bearer(body["access_token"])
    assert anon_client.get("/fhir/Patient", headers=headers).status_code == 200
    assert anon_client.get("/fhir/Observation", headers=headers).status_code == 403


def test_client_credentials_wrong_secret(services: Services, anon_client: TestClient) -> None:
    client_id, _ = authkit.register_client(services)
    resp = anon_client.post(
        "/auth/token", data={"grant_type": "client_credentials"}, auth=(client_id, "nope")
    )
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"
    assert resp.headers["WWW-Authenticate"].startswith("Basic")


def test_client_credentials_refuses_wider_or_user_scopes(
    services: Services, anon_client: TestClient
) -> None:
    client_id, secret = authkit.register_client(services, "system/Patient.rs")
    assert secret is not None
    for scope in ("system/Patient.cruds", "user/Patient.rs", "system/Observation.r"):
        resp = anon_client.post(
            "/auth/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(client_id, secret),
        )
        assert resp.status_code == 400, scope
        assert resp.json()["error"] == "invalid_scope"


def _jwks_client(services: Services, key: RSAKey) -> str:
    assert services.auth is not None
    public = key.as_dict(private=False)
    with services.db.session(write=True) as session:
        org = service.create_organization(
            session, services.auth, services.engine, name="電子カルテ社", kind="clinic"
        )
        created = service.create_client(
            session,
            services.auth,
            services.engine,
            org_id=org,
            name="EHR back end",
            scope="system/*.rs",
            jwks={"keys": [public]},
        )
    assert created.client_secret is None
    return created.client_id


def _assertion(
    key: RSAKey, client_id: str, clock: ManualClock, *, aud: str = TOKEN_URL, jti: str = ""
) -> str:
    now = int(clock.now().timestamp())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": now + 300,
        "jti": jti or uuid.uuid4().hex,
    }
    return jwt.encode({"alg": "RS384", "kid": key.kid}, claims, key, algorithms=["RS384"])


def _assertion_grant(anon: TestClient, assertion: str) -> Any:
    return anon.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "system/Patient.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )


@pytest.fixture
def ehr_key() -> RSAKey:
    return RSAKey.generate_key(2048, auto_kid=True)


def test_client_credentials_with_private_key_jwt(
    services: Services, anon_client: TestClient, clock: ManualClock, ehr_key: RSAKey
) -> None:
    client_id = _jwks_client(services, ehr_key)
    resp = _assertion_grant(anon_client, _assertion(ehr_key, client_id, clock))
    assert resp.status_code == 200, resp.text
    token = resp.json()["access_token"]
    assert anon_client.get("/fhir/Patient", headers=_bearer(token)).status_code == 200


def test_private_key_jwt_refuses_replayed_jti(
    services: Services, anon_client: TestClient, clock: ManualClock, ehr_key: RSAKey
) -> None:
    client_id = _jwks_client(services, ehr_key)
    assertion = _assertion(ehr_key, client_id, clock)
    assert _assertion_grant(anon_client, assertion).status_code == 200
    replay = _assertion_grant(anon_client, assertion)
    assert replay.status_code == 401
    assert "replay" in replay.json()["error_description"]


def test_private_key_jwt_refuses_wrong_audience_and_foreign_key(
    services: Services, anon_client: TestClient, clock: ManualClock, ehr_key: RSAKey
) -> None:
    client_id = _jwks_client(services, ehr_key)
    wrong_aud = _assertion(ehr_key, client_id, clock, aud="http://testserver/fhir")
    assert _assertion_grant(anon_client, wrong_aud).status_code == 401
    stranger = RSAKey.generate_key(2048, parameters={"kid": ehr_key.kid})
    forged = _assertion(stranger, client_id, clock)
    assert _assertion_grant(anon_client, forged).status_code == 401


def test_private_key_jwt_refuses_expired_assertion(
    services: Services, anon_client: TestClient, clock: ManualClock, ehr_key: RSAKey
) -> None:
    client_id = _jwks_client(services, ehr_key)
    assertion = _assertion(ehr_key, client_id, clock)
    clock.advance(seconds=301)
    assert _assertion_grant(anon_client, assertion).status_code == 401


# -- introspection and revocation ------------------------------------------


def _cc_token(anon: TestClient, client_id: str, secret: str) -> str:
    resp = anon.post(
        "/auth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def test_introspect_and_revoke_access_token(services: Services, anon_client: TestClient) -> None:
    client_id, secret = authkit.register_client(services, "system/*.rs")
    assert secret is not None
    token = _cc_token(anon_client, client_id, secret)
    info = anon_client.post("/auth/introspect", data={"token": token}, auth=(client_id, secret))
    assert info.status_code == 200
    assert info.json()["active"] is True
    assert info.json()["scope"] == "system/*.rs"
    assert info.json()["client_id"] == client_id
    revoked = anon_client.post("/auth/revoke", data={"token": token}, auth=(client_id, secret))
    assert revoked.status_code == 200
    assert anon_client.post(
        "/auth/introspect", data={"token": token}, auth=(client_id, secret)
    ).json() == {"active": False}
    denied = anon_client.get("/fhir/Patient", headers=_bearer(token))
    assert denied.status_code == 401
    assert "revoked" in denied.json()["issue"][0]["diagnostics"]


def test_revoked_token_writes_nothing(services: Services, anon_client: TestClient) -> None:
    """The FHIR API checks revocation inside the request's own transaction: a write with
    a revoked token is refused before anything is written, and says why."""
    client_id, secret = authkit.register_client(services, "system/*.cruds")
    assert secret is not None
    token = _cc_token(anon_client, client_id, secret)
    patient = {"resourceType": "Patient", "name": [{"family": "失効"}]}
    made = anon_client.post("/fhir/Patient", json=patient, headers=_bearer(token))
    assert made.status_code == 201, made.text
    revoked = anon_client.post("/auth/revoke", data={"token": token}, auth=(client_id, secret))
    assert revoked.status_code == 200
    denied = anon_client.post("/fhir/Patient", json=patient, headers=_bearer(token))
    assert denied.status_code == 401
    assert 'error="invalid_token"' in denied.headers["www-authenticate"]
    assert "revoked" in denied.json()["issue"][0]["diagnostics"]
    fresh = _cc_token(anon_client, client_id, secret)
    listed = anon_client.get("/fhir/Patient?family=失効&_total=accurate", headers=_bearer(fresh))
    assert listed.json()["total"] == 1


def test_introspect_another_clients_token_is_inactive(
    services: Services, anon_client: TestClient
) -> None:
    a_id, a_secret = authkit.register_client(services)
    b_id, b_secret = authkit.register_client(services)
    assert a_secret is not None and b_secret is not None
    token = _cc_token(anon_client, a_id, a_secret)
    info = anon_client.post("/auth/introspect", data={"token": token}, auth=(b_id, b_secret))
    assert info.json() == {"active": False}
    # nor can B revoke A's token
    anon_client.post("/auth/revoke", data={"token": token}, auth=(b_id, b_secret))
    assert anon_client.get("/fhir/Patient", headers=_bearer(token)).status_code == 200


def test_revoke_refresh_token_revokes_family(
    services: Services, anon_client: TestClient, clock: ManualClock
) -> None:
    client_id, body = _people_tokens(services, anon_client, clock, "user/Patient.rs offline_access")
    resp = anon_client.post(
        "/auth/revoke", data={"token": body["refresh_token"], "client_id": client_id}
    )
    assert resp.status_code == 200
    assert (
        _refresh(anon_client, client_id, body["refresh_token"]).json()["error"] == "invalid_grant"
    )
    assert (
        anon_client.get("/fhir/Patient", headers=_bearer(body["access_token"])).status_code == 401
    )


def test_introspect_requires_client_authentication(anon_client: TestClient) -> None:
    resp = anon_client.post("/auth/introspect", data={"token": "x"})
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"


# -- discovery and keys ------------------------------------------


def test_smart_configuration_is_public(anon_client: TestClient) -> None:
    resp = anon_client.get("/fhir/.well-known/smart-configuration")
    assert resp.status_code == 200
    body = resp.json()
    assert body["token_endpoint"] == TOKEN_URL
    assert body["authorization_endpoint"] == "http://testserver/auth/authorize"
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert "private_key_jwt" in body["token_endpoint_auth_methods_supported"]
    assert "permission-v2" in body["capabilities"]


def test_jwks_and_rotation_keep_old_tokens_valid(
    services: Services, anon_client: TestClient, make_token: Callable[..., str]
) -> None:
    assert services.auth is not None
    old = make_token("system/*.rs")
    before = anon_client.get("/auth/jwks").json()["keys"]
    new_kid = services.auth.signing.add_key()
    after = anon_client.get("/auth/jwks").json()["keys"]
    assert {k["kid"] for k in after} == {k["kid"] for k in before} | {new_kid}
    assert all(k["alg"] == "ES256" and "d" not in k for k in after)
    new = make_token("system/*.rs")
    assert anon_client.get("/fhir/Patient", headers=_bearer(old)).status_code == 200
    assert anon_client.get("/fhir/Patient", headers=_bearer(new)).status_code == 200


# -- the FHIR endpoint and bearer tokens ------------------------------------------


def test_fhir_without_token_is_401_outcome(anon_client: TestClient) -> None:
    resp = anon_client.get("/fhir/Patient")
    assert resp.status_code == 401
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert anon_client.get("/fhir/metadata").status_code == 200


def test_fhir_with_bad_token_is_401_invalid_token(anon_client: TestClient) -> None:
    resp = anon_client.get("/fhir/Patient", headers=_bearer("not.a.token"))
    assert resp.status_code == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    basic = anon_client.get("/fhir/Patient", headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401


def test_fhir_expired_token_is_401(
    services: Services, anon_client: TestClient, clock: ManualClock
) -> None:
    client_id, _ = authkit.register_client(services)
    token = authkit.sign(
        services, client_id, "system/*.rs", {"kind": "client"}, timedelta(minutes=5), client_id
    )
    assert anon_client.get("/fhir/Patient", headers=_bearer(token)).status_code == 200
    clock.advance(minutes=5)
    resp = anon_client.get("/fhir/Patient", headers=_bearer(token))
    assert resp.status_code == 401
    assert "expired" in resp.json()["issue"][0]["diagnostics"]


def test_fhir_token_for_another_server_is_401(services: Services) -> None:
    from renkei.app import create_app

    client_id, _ = authkit.register_client(services)
    token = authkit.sign(
        services, client_id, "system/*.rs", {"kind": "client"}, client_id=client_id
    )
    other = TestClient(create_app(services.settings, services=services), base_url="http://other")
    resp = other.get("/fhir/Patient", headers=_bearer(token))
    assert resp.status_code == 401
    assert "audience" in resp.json()["issue"][0]["diagnostics"]


def test_fhir_token_of_deactivated_user_is_401(services: Services, anon_client: TestClient) -> None:
    from renkei.auth.models import auth_user

    user = authkit.create_user(services)
    token = authkit.user_token(services, user, "user/*.rs")
    assert anon_client.get("/fhir/Patient", headers=_bearer(token)).status_code == 200
    with services.db.session(write=True) as session:
        session.execute(auth_user.update().where(auth_user.c.id == user.id).values(active=False))
    assert anon_client.get("/fhir/Patient", headers=_bearer(token)).status_code == 401


def test_capability_statement_names_the_oauth_endpoints(anon_client: TestClient) -> None:
    security = anon_client.get("/fhir/metadata").json()["rest"][0]["security"]
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["token"] == TOKEN_URL
    assert uris["authorize"] == "http://testserver/auth/authorize"


def test_purge_expired_keeps_live_rows(
    services: Services, anon_client: TestClient, clock: ManualClock, ehr_key: RSAKey
) -> None:
    import sqlalchemy as sa

    from renkei.auth.models import auth_assertion_jti

    client_id = _jwks_client(services, ehr_key)
    assert _assertion_grant(anon_client, _assertion(ehr_key, client_id, clock)).status_code == 200
    clock.advance(seconds=400)
    assert _assertion_grant(anon_client, _assertion(ehr_key, client_id, clock)).status_code == 200
    with services.db.session() as session:
        rows = session.execute(sa.select(sa.func.count()).select_from(auth_assertion_jti)).scalar()
    assert rows == 1  # the first assertion's id expired and went; the live one stays


def test_fhir_without_token_is_401_before_any_parsing(anon_client: TestClient) -> None:
    assert anon_client.get("/fhir/NotAType").status_code == 401
    assert anon_client.post("/fhir/", content=b"{not json").status_code == 401
    assert anon_client.get("/fhir/Patient?nonsense=1").status_code == 401


def test_disable_user_cuts_off_access_and_refresh(
    services: Services, anon_client: TestClient, clock: ManualClock
) -> None:
    assert services.auth is not None
    client_id, body = _people_tokens(services, anon_client, clock, "user/Patient.rs offline_access")
    introspected = anon_client.post(
        "/auth/introspect", data={"token": body["access_token"], "client_id": client_id}
    ).json()
    with services.db.session(write=True) as session:
        assert service.disable_user(session, services.auth, introspected["sub"]) == 1
    assert (
        anon_client.get("/fhir/Patient", headers=_bearer(body["access_token"])).status_code == 401
    )
    assert (
        _refresh(anon_client, client_id, body["refresh_token"]).json()["error"] == "invalid_grant"
    )
