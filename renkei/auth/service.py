"""Organisations, people, accounts and clients: the admin side of the auth package.

Organization, Practitioner and PractitionerRole are FHIR resources written through the FHIR
engine (validated, versioned, indexed, visible to other systems); the ``auth_user`` and
``auth_client`` rows link a login or a client to them. Each function takes a session (the
caller's unit of work) and the :class:`AuthServer`; none commits.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.orm import Session

from renkei.auth import events, launch, totp
from renkei.auth.errors import (
    AccountLocked,
    Conflict,
    InvalidRequest,
    InvalidScope,
    LoginFailed,
    NotFound,
)
from renkei.auth.models import auth_client, auth_user
from renkei.auth.passwords import check_password_rules
from renkei.auth.principal import OPERATOR
from renkei.auth.scopes import ResourceScope, narrow, split, wants_patient
from renkei.auth.server import AuthServer
from renkei.auth.tokens import IssuedToken, issue_access_token
from renkei.fhir.context import FhirRequest, RequestContext
from renkei.fhir.engine import FhirEngine

KIND_SYSTEM = "https://renkei.example.jp/fhir/CodeSystem/organization-kind"
ROLE_SYSTEM = "https://renkei.example.jp/fhir/CodeSystem/practitioner-role"
LOGIN_SYSTEM = "https://renkei.example.jp/fhir/sid/login"
#: HL7 practitioner-role codes for the roles that have one (interoperability with EHRs)
_HL7_ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/practitioner-role"
_HL7_ROLES = {"doctor": "doctor", "nurse": "nurse", "pharmacist": "pharmacist"}

ORGANIZATION_KINDS = {
    "clinic": "在宅療養支援診療所 (home-care clinic)",
    "nursing": "訪問看護ステーション (visiting-nurse station)",
    "pharmacy": "薬局 (pharmacy)",
    "facility": "介護施設 (care facility)",
    "hospital": "後方支援病院 (back-up hospital)",
}
ROLES = ("doctor", "nurse", "pharmacist", "careworker", "caremanager", "coordinator", "admin")
#: the client id ``renkei token issue`` tokens carry
OPERATOR_CLIENT_ID = "renkei-cli"


def _operator_request(method: str, path: str, body: dict[str, Any] | None = None) -> FhirRequest:
    return FhirRequest(method, path, body=body, context=RequestContext(principal=OPERATOR))


def _fhir_create(session: Session, engine: FhirEngine, body: dict[str, Any]) -> str:
    resp = engine.dispatch(session, _operator_request("POST", body["resourceType"], body))
    assert resp.body is not None
    return str(resp.body["id"])


# -- organisations ----------------------------------------------------------------------------


def create_organization(
    session: Session, auth: AuthServer, engine: FhirEngine, *, name: str, kind: str
) -> str:
    """Create an Organization of ``kind``; returns its id."""
    if kind not in ORGANIZATION_KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(ORGANIZATION_KINDS)}; got {kind!r}")
    if not name.strip():
        raise InvalidRequest("an organisation needs a name")
    body = {
        "resourceType": "Organization",
        "active": True,
        "type": [
            {"coding": [{"system": KIND_SYSTEM, "code": kind, "display": ORGANIZATION_KINDS[kind]}]}
        ],
        "name": name.strip(),
    }
    org_id = _fhir_create(session, engine, body)
    auth.emit(
        session,
        events.AuthEvent(
            events.ORGANIZATION_CREATED,
            auth.clock.now(),
            subject_kind="operator",
            organization_id=org_id,
            detail={"kind": kind},
        ),
    )
    return org_id


def _require_organization(session: Session, engine: FhirEngine, org_id: str) -> dict[str, Any]:
    from renkei.store.errors import StoreError

    try:
        stored = engine.repository(session).read("Organization", org_id)
    except StoreError as exc:
        raise NotFound(f"Organization/{org_id} does not exist") from exc
    assert stored.content is not None
    return stored.content


# -- users --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedUser:
    id: str
    practitioner_id: str
    practitioner_role_id: str
    totp_uri: str

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "practitioner": f"Practitioner/{self.practitioner_id}",
            "practitioner_role": f"PractitionerRole/{self.practitioner_role_id}",
            "totp_uri": self.totp_uri,
        }


def _human_name(name: str) -> dict[str, Any]:
    """``"山田 太郎"`` -> family 山田, given 太郎 (Japanese order: family name first)."""
    parts = name.replace("\u3000", " ").split()
    out: dict[str, Any] = {"use": "official", "text": name}
    if len(parts) >= 2:
        out["family"] = parts[0]
        out["given"] = parts[1:]
    return out


def create_user(
    session: Session,
    auth: AuthServer,
    engine: FhirEngine,
    *,
    org_id: str,
    name: str,
    login: str,
    role: str,
    password: str,
) -> CreatedUser:
    """An account with a Practitioner, a PractitionerRole at ``org_id`` and a TOTP seed.

    The TOTP URI is returned once, for enrolment; only the sealed seed is stored.
    """
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    login = login.strip()
    if not login or len(login) > 100 or any(ch.isspace() for ch in login):
        raise InvalidRequest("a login is 1-100 characters without spaces")
    if not name.strip():
        raise InvalidRequest("a user needs a name")
    check_password_rules(password, login=login)
    _require_organization(session, engine, org_id)
    taken = session.execute(sa.select(auth_user.c.id).where(auth_user.c.login == login)).first()
    if taken is not None:
        raise Conflict(f"login {login!r} is taken")
    practitioner = {
        "resourceType": "Practitioner",
        "identifier": [{"system": LOGIN_SYSTEM, "value": login}],
        "active": True,
        "name": [_human_name(name.strip())],
    }
    practitioner_id = _fhir_create(session, engine, practitioner)
    codings = [{"system": ROLE_SYSTEM, "code": role}]
    if role in _HL7_ROLES:
        codings.append({"system": _HL7_ROLE_SYSTEM, "code": _HL7_ROLES[role]})
    role_body = {
        "resourceType": "PractitionerRole",
        "active": True,
        "practitioner": {"reference": f"Practitioner/{practitioner_id}"},
        "organization": {"reference": f"Organization/{org_id}"},
        "code": [{"coding": codings}],
    }
    role_id = _fhir_create(session, engine, role_body)
    user_id = uuid.uuid4().hex
    seed = totp.new_secret()
    session.execute(
        auth_user.insert().values(
            id=user_id,
            login=login,
            name=name.strip(),
            organization_id=org_id,
            practitioner_id=practitioner_id,
            practitioner_role_id=role_id,
            role=role,
            password_hash=auth.hasher.hash(password),
            totp_secret=auth.keyring.seal(seed, _totp_context(user_id)),
            totp_last_step=None,
            failed_count=0,
            locked_until=None,
            active=True,
            created_at=auth.clock.now(),
        )
    )
    auth.emit(
        session,
        events.AuthEvent(
            events.USER_CREATED,
            auth.clock.now(),
            subject=user_id,
            subject_kind="user",
            organization_id=org_id,
            detail={"login": login, "role": role},
        ),
    )
    return CreatedUser(user_id, practitioner_id, role_id, totp.provisioning_uri(seed, login))


def _totp_context(user_id: str) -> str:
    return f"auth_user.totp_secret:{user_id}"


def get_user(session: Session, user_id: str) -> Any:
    row = session.execute(sa.select(auth_user).where(auth_user.c.id == user_id)).first()
    if row is None:
        raise NotFound(f"user {user_id!r} does not exist")
    return row


def totp_secret(session: Session, auth: AuthServer, user_id: str) -> str:
    """The user's TOTP seed in the clear (enrolment checks and tests; never logged)."""
    row = get_user(session, user_id)
    return str(auth.keyring.open(row.totp_secret, _totp_context(user_id)))


def disable_user(session: Session, auth: AuthServer, user_id: str) -> int:
    """Disable an account: its access tokens stop working at once (each request checks the
    account is active) and its refresh tokens are revoked. Returns how many were revoked."""
    from renkei.auth.models import auth_refresh_token

    get_user(session, user_id)
    now = auth.clock.now()
    session.execute(auth_user.update().where(auth_user.c.id == user_id).values(active=False))
    revoked = session.execute(
        auth_refresh_token.update()
        .where(auth_refresh_token.c.user_id == user_id, auth_refresh_token.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    count = int(revoked.rowcount or 0)  # type: ignore[attr-defined]
    auth.emit(
        session,
        events.AuthEvent(
            events.USER_DISABLED,
            now,
            subject=user_id,
            subject_kind="user",
            detail={"refresh_tokens_revoked": count},
        ),
    )
    return count


# -- sign-in ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignIn:
    """The outcome of one sign-in attempt; the caller commits, then acts on ``error``."""

    user: Any | None
    error: LoginFailed | None


def sign_in(
    session: Session,
    auth: AuthServer,
    *,
    login: str,
    password: str,
    code: str,
    remote_addr: str | None = None,
) -> SignIn:
    """Check password and TOTP; count failures, lock after ``lockout_threshold`` in a row.

    A locked account is refused even with the right password, until the lock expires. The
    message never tells which factor was wrong. The row is locked while checked, so two
    concurrent attempts cannot reuse one TOTP code.
    """
    now = auth.clock.now()
    stmt = sa.select(auth_user).where(auth_user.c.login == login.strip())
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    user = session.execute(stmt).first()
    if user is None or not user.active:
        auth.hasher.verify(None, password)  # same time as a real check
        auth.emit(
            session,
            events.AuthEvent(
                events.LOGIN_FAILED,
                now,
                "failure",
                remote_addr=remote_addr,
                detail={"login": login[:100], "reason": "unknown or inactive login"},
            ),
        )
        return SignIn(None, LoginFailed("wrong login, password or code"))
    if user.locked_until is not None and user.locked_until > now:
        auth.emit(
            session,
            _user_event(events.ACCOUNT_LOCKED, now, user, "failure", remote_addr, "still locked"),
        )
        return SignIn(None, AccountLocked(_locked_message(user.locked_until, now)))
    password_ok = auth.hasher.verify(user.password_hash, password)
    secret = str(auth.keyring.open(user.totp_secret, _totp_context(user.id)))
    step = totp.matching_step(secret, code, now, user.totp_last_step) if password_ok else None
    if not password_ok or step is None:
        failures = user.failed_count + 1
        values: dict[str, Any] = {"failed_count": failures}
        locked = failures >= auth.config.lockout_threshold
        if locked:
            values["locked_until"] = now + timedelta(minutes=auth.config.lockout_minutes)
            values["failed_count"] = 0
        session.execute(auth_user.update().where(auth_user.c.id == user.id).values(**values))
        reason = "wrong password" if not password_ok else "wrong or reused TOTP code"
        auth.emit(
            session, _user_event(events.LOGIN_FAILED, now, user, "failure", remote_addr, reason)
        )
        if locked:
            auth.emit(
                session,
                _user_event(events.ACCOUNT_LOCKED, now, user, "failure", remote_addr, "locked"),
            )
            return SignIn(None, AccountLocked(_locked_message(values["locked_until"], now)))
        return SignIn(None, LoginFailed("wrong login, password or code"))
    values = {"failed_count": 0, "locked_until": None, "totp_last_step": step, "last_login_at": now}
    if auth.hasher.needs_rehash(user.password_hash):
        values["password_hash"] = auth.hasher.hash(password)
    session.execute(auth_user.update().where(auth_user.c.id == user.id).values(**values))
    auth.emit(session, _user_event(events.LOGIN_SUCCEEDED, now, user, "success", remote_addr, None))
    return SignIn(user, None)


def _locked_message(until: Any, now: Any) -> str:
    minutes = max(1, int((until - now).total_seconds() + 59) // 60)
    return f"too many failed sign-ins; the account is locked for {minutes} more minute(s)"


def _user_event(
    action: str, now: Any, user: Any, outcome: str, remote_addr: str | None, reason: str | None
) -> events.AuthEvent:
    return events.AuthEvent(
        action,
        now,
        outcome,
        subject=user.id,
        subject_kind="user",
        organization_id=user.organization_id,
        remote_addr=remote_addr,
        detail={"login": user.login, **({"reason": reason} if reason else {})},
    )


# -- clients ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedClient:
    client_id: str
    client_secret: str | None

    def to_json(self) -> dict[str, str]:
        out = {"client_id": self.client_id}
        if self.client_secret is not None:
            out["client_secret"] = self.client_secret
        return out


def _check_redirect_uri(uri: str) -> str:
    parts = urlsplit(uri)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if (
        parts.fragment
        or not parts.netloc
        or not (parts.scheme == "https" or (parts.scheme == "http" and local))
    ):
        raise InvalidRequest(
            f"redirect URI {uri!r} must be https (or http on localhost), without a fragment"
        )
    return uri


def _check_jwks(jwks: Any) -> dict[str, Any]:
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise InvalidRequest("the JWK Set must be an object with a non-empty 'keys' list")
    for key in jwks["keys"]:
        if not isinstance(key, dict) or "d" in key or "k" in key:
            raise InvalidRequest("register public keys only (no 'd' or symmetric 'k')")
    try:
        KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidRequest(f"the JWK Set does not parse: {exc}") from exc
    return jwks


def create_client(
    session: Session,
    auth: AuthServer,
    engine: FhirEngine,
    *,
    org_id: str,
    name: str,
    scope: str,
    jwks: dict[str, Any] | None = None,
    redirect_uris: list[str] | None = None,
    public: bool = False,
) -> CreatedClient:
    """Register a client of ``org_id``.

    A back end (no redirect URIs) uses client credentials: with ``jwks`` it authenticates
    with ``private_key_jwt``, otherwise with a generated secret returned once. An app that
    signs people in has redirect URIs; ``public`` apps (no secret) rely on PKCE alone.
    """
    scopes = split(scope)
    if not scopes:
        raise InvalidScope("a client needs at least one scope")
    for text in scopes:
        ResourceScope.parse(text)
    if not name.strip():
        raise InvalidRequest("a client needs a name")
    redirect_uris = [_check_redirect_uri(u) for u in (redirect_uris or [])]
    if public and not redirect_uris:
        raise InvalidRequest("a public client signs people in, so it needs a redirect URI")
    if public and jwks is not None:
        raise InvalidRequest("a public client has no keys")
    _require_organization(session, engine, org_id)
    client_id = secrets.token_urlsafe(16)
    secret: str | None = None
    if jwks is None and not public:
        secret = secrets.token_urlsafe(32)
    session.execute(
        auth_client.insert().values(
            client_id=client_id,
            name=name.strip(),
            organization_id=org_id,
            scope=" ".join(scopes),
            secret=auth.keyring.seal(secret, client_secret_context(client_id)) if secret else None,
            jwks=_check_jwks(jwks) if jwks is not None else None,
            redirect_uris=redirect_uris,
            public=public,
            active=True,
            created_at=auth.clock.now(),
        )
    )
    auth.emit(
        session,
        events.AuthEvent(
            events.CLIENT_CREATED,
            auth.clock.now(),
            subject=client_id,
            subject_kind="client",
            organization_id=org_id,
            client_id=client_id,
            detail={
                "name": name.strip(),
                "scope": " ".join(scopes),
                "auth": "private_key_jwt" if jwks else "none" if public else "client_secret",
            },
        ),
    )
    return CreatedClient(client_id, secret)


def client_secret_context(client_id: str) -> str:
    return f"auth_client.secret:{client_id}"


def check_client_secret(auth: AuthServer, client: Any, presented: str) -> bool:
    if client.secret is None:
        return False
    stored = str(auth.keyring.open(client.secret, client_secret_context(client.client_id)))
    return hmac.compare_digest(stored.encode(), presented.encode())


def get_client(session: Session, client_id: str) -> Any | None:
    return session.execute(
        sa.select(auth_client).where(auth_client.c.client_id == client_id)
    ).first()


# -- tokens for people ---------------------------------------------------------------------------


def user_claims(user: Any) -> dict[str, Any]:
    return {
        "kind": "user",
        "org": user.organization_id,
        "role": user.role,
        "practitioner": user.practitioner_id,
        "practitioner_role": user.practitioner_role_id,
        "fhirUser": f"Practitioner/{user.practitioner_id}",
    }


def issue_operator_token(
    session: Session,
    auth: AuthServer,
    *,
    user_id: str,
    scope: str,
    minutes: int = 60,
    fhir_base: str | None = None,
    patient_id: str | None = None,
) -> IssuedToken:
    """``renkei token issue``: a token for a user, minted by the operator (audited).

    ``patient_id`` binds the token to a patient the user may see (``--patient``), as a
    standalone launch would; ``patient/`` scopes need it.
    """
    if not 1 <= minutes <= 24 * 60:
        raise InvalidRequest("--minutes must be between 1 and 1440")
    user = get_user(session, user_id)
    if not user.active:
        raise InvalidRequest(f"user {user_id!r} is not active")
    requested = split(scope)
    if not requested:
        raise InvalidScope("name at least one scope")
    if patient_id is None and wants_patient(requested):
        raise InvalidScope("patient/ scopes and launch/patient need a patient: add --patient")
    contexts = ["user", "patient"] if patient_id is not None else ["user"]
    narrow(requested, ["user/*.cruds", "patient/*.cruds"], contexts)
    claims = user_claims(user)
    if patient_id is not None:
        probe = launch.user_probe(user, OPERATOR_CLIENT_ID)
        claims["patient"] = launch.require_patient(session, auth, probe, patient_id)
    audience = auth.fhir_base(fhir_base)
    issued = issue_access_token(
        auth.signing,
        now=auth.clock.now(),
        issuer=auth.issuer_for(audience),
        audience=audience,
        subject=user.id,
        client_id=OPERATOR_CLIENT_ID,
        scope=" ".join(requested),
        lifetime=timedelta(minutes=minutes),
        claims=claims,
    )
    auth.emit(
        session,
        events.AuthEvent(
            events.TOKEN_ISSUED_BY_OPERATOR,
            auth.clock.now(),
            subject=user.id,
            subject_kind="user",
            organization_id=user.organization_id,
            client_id=OPERATOR_CLIENT_ID,
            detail={
                "scope": " ".join(requested),
                "jti": issued.jti,
                "minutes": minutes,
                **({"patient": patient_id} if patient_id else {}),
            },
        ),
    )
    return issued


# -- keys ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SealedColumn:
    """A column holding keyring-sealed values; ``context(pk)`` is the associated data."""

    table: sa.Table
    key: str
    column: str
    context: Callable[[str], str]


#: Every sealed column ``renkei keys rotate`` re-wraps. Packages that seal data add theirs.
SEALED_COLUMNS: list[SealedColumn] = [
    SealedColumn(auth_user, "id", "totp_secret", _totp_context),
    SealedColumn(auth_client, "client_id", "secret", client_secret_context),
]


@dataclass(frozen=True)
class Rotation:
    data_kid: str | None
    signing_kid: str | None
    rewrapped: int

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "data_kid": self.data_kid,
            "signing_kid": self.signing_kid,
            "rewrapped": self.rewrapped,
        }


def rotate_keys(
    session: Session,
    auth: AuthServer,
    *,
    data: bool = True,
    signing: bool = True,
    rewrap: bool = True,
) -> Rotation:
    """Add new keys, then re-seal every stored secret under the new data key.

    The new key file is written before any row changes, and old keys stay in the folder,
    so running servers read old and new values alike throughout (no downtime). Old signing
    keys stay published so tokens they signed verify until they expire. ``rewrap=False``
    only adds keys: where key files reach servers with a delay (a Kubernetes Secret), add
    first, wait until every replica has the new files, then run :func:`rewrap_all`.
    """
    data_kid = auth.keyring.add_key() if data else None
    signing_kid = auth.signing.add_key() if signing else None
    count = rewrap_all(session, auth) if data and rewrap else 0
    auth.emit(
        session,
        events.AuthEvent(
            events.KEYS_ROTATED,
            auth.clock.now(),
            subject_kind="operator",
            detail={"data_kid": data_kid, "signing_kid": signing_kid, "rewrapped": count},
        ),
    )
    return Rotation(data_kid, signing_kid, count)


def rewrap_all(session: Session, auth: AuthServer) -> int:
    """Re-seal every value not yet under the active data key; returns how many changed."""
    count = 0
    active = auth.keyring.active_kid
    for spec in SEALED_COLUMNS:
        key_col, col = spec.table.c[spec.key], spec.table.c[spec.column]
        for pk, sealed in session.execute(sa.select(key_col, col).where(col.is_not(None))).all():
            if auth.keyring.kid_of(sealed) == active:
                continue
            fresh = auth.keyring.rewrap(sealed, spec.context(pk))
            session.execute(spec.table.update().where(key_col == pk).values({spec.column: fresh}))
            count += 1
    return count


__all__ = [
    "KIND_SYSTEM",
    "LOGIN_SYSTEM",
    "OPERATOR_CLIENT_ID",
    "ORGANIZATION_KINDS",
    "ROLES",
    "ROLE_SYSTEM",
    "SEALED_COLUMNS",
    "CreatedClient",
    "CreatedUser",
    "Rotation",
    "SealedColumn",
    "SignIn",
    "check_client_secret",
    "client_secret_context",
    "create_client",
    "create_organization",
    "create_user",
    "disable_user",
    "get_client",
    "get_user",
    "issue_operator_token",
    "rewrap_all",
    "rotate_keys",
    "sign_in",
    "totp_secret",
    "user_claims",
]
