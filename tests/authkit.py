"""Tokens and accounts for tests, made through the auth package's own functions.

The default test client is registered without a FHIR Organization on purpose: tests that
count resources (system history...) must not see fixtures' resources.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from renkei.app import Services
from renkei.auth import service
from renkei.auth.models import auth_client
from renkei.auth.tokens import issue_access_token

FHIR_BASE = "http://testserver/fhir"
TEST_ORG = "test-org"
#: the default client's token outlives any clock movement a test makes
LONG = timedelta(days=3650)


@dataclass(frozen=True)
class TestUser:
    id: str
    login: str
    password: str
    organization_id: str
    practitioner_role_id: str
    totp_secret: str


def register_client(
    services: Services,
    scope: str = "system/*.cruds",
    *,
    org: str = TEST_ORG,
    redirect_uris: list[str] | None = None,
    public: bool = False,
) -> tuple[str, str | None]:
    """A client row (no FHIR Organization needed); returns (client_id, secret)."""
    auth = services.auth
    assert auth is not None
    client_id = "test-" + secrets.token_hex(6)
    secret = None if public else secrets.token_urlsafe(24)
    with services.db.session(write=True) as session:
        session.execute(
            auth_client.insert().values(
                client_id=client_id,
                name="test client",
                organization_id=org,
                scope=scope,
                secret=auth.keyring.seal(secret, service.client_secret_context(client_id))
                if secret
                else None,
                jwks=None,
                redirect_uris=redirect_uris or [],
                public=public,
                active=True,
                created_at=auth.clock.now(),
            )
        )
    return client_id, secret


def client_token(
    services: Services, scope: str = "system/*.cruds", *, lifetime: timedelta = LONG
) -> str:
    client_id, _ = register_client(services, scope)
    return sign(
        services, client_id, scope, {"kind": "client", "org": TEST_ORG}, lifetime, client_id
    )


def sign(
    services: Services,
    subject: str,
    scope: str,
    claims: dict[str, Any],
    lifetime: timedelta = LONG,
    client_id: str = "test",
) -> str:
    auth = services.auth
    assert auth is not None
    return issue_access_token(
        auth.signing,
        now=auth.clock.now(),
        issuer=auth.issuer_for(FHIR_BASE),
        audience=FHIR_BASE,
        subject=subject,
        client_id=client_id,
        scope=scope,
        lifetime=lifetime,
        claims=claims,
    ).token


def create_user(
    services: Services,
    *,
    role: str = "doctor",
    login: str | None = None,
    password: str = "kanja-2024",
    org_id: str | None = None,
) -> TestUser:
    """An Organization (unless given), a user with Practitioner and PractitionerRole."""
    auth = services.auth
    assert auth is not None
    login = login or "user-" + secrets.token_hex(4)
    with services.db.session(write=True) as session:
        if org_id is None:
            org_id = service.create_organization(
                session, auth, services.engine, name="さくら在宅クリニック", kind="clinic"
            )
        created = service.create_user(
            session,
            auth,
            services.engine,
            org_id=org_id,
            name="山田 太郎",
            login=login,
            role=role,
            password=password,
        )
        seed = service.totp_secret(session, auth, created.id)
    return TestUser(created.id, login, password, org_id, created.practitioner_role_id, seed)


def user_token(
    services: Services, user: TestUser, scope: str = "user/*.cruds", lifetime: timedelta = LONG
) -> str:
    with services.db.session() as session:
        row = service.get_user(session, user.id)
    return sign(services, user.id, scope, service.user_claims(row), lifetime)
