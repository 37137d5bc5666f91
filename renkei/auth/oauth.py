"""OAuth 2 grants (RFC 6749), PKCE (RFC 7636), SMART Backend Services (RFC 7523 assertions),
refresh-token rotation, revocation (RFC 7009) and introspection (RFC 7662).

Framework-free: each function takes the session, the :class:`AuthServer` and plain values
parsed by ``renkei/api/auth.py``. Authlib supplies the PKCE transform; joserfc (Authlib's
JOSE library) signs and verifies JWTs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

import sqlalchemy as sa
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from renkei.auth import events, launch
from renkei.auth.errors import (
    AuthError,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidToken,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from renkei.auth.models import (
    auth_assertion_jti,
    auth_client,
    auth_code,
    auth_refresh_token,
    auth_revoked_jti,
    auth_user,
)
from renkei.auth.principal import Principal
from renkei.auth.scopes import narrow, patient_scopes, resource_scopes, split, wants_patient
from renkei.auth.server import AuthServer
from renkei.auth.service import check_client_secret, get_client, user_claims
from renkei.auth.tokens import issue_access_token, unverified_claims, verify_access_token

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: algorithms a back end may sign its assertion with (SMART Backend Services: RS384, ES384)
ASSERTION_ALGORITHMS = ("RS384", "ES384", "RS256", "ES256")
#: SMART Backend Services: an assertion lives at most five minutes
MAX_ASSERTION_SECONDS = 300
#: tolerated clock difference with a back end, on the assertion's exp
CLOCK_SKEW_SECONDS = 60
#: how long spent codes and refresh tokens are kept after expiry (replay detection, audit)
_KEEP_SPENT = timedelta(days=1)
#: scopes that ask for a refresh token (SMART App Launch)
REFRESH_SCOPES = ("offline_access", "online_access")
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


class CommitThenRaise(Exception):
    """Carries an error whose side effects must be committed before it is reported.

    A replayed refresh token or code revokes a token family, and a failed client
    authentication is reported to the audit log; rolling those back with the error
    would undo the very protection. Nothing else is written before these errors.
    """

    def __init__(self, error: AuthError) -> None:
        super().__init__(error.description)
        self.error = error


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# -- client authentication -----------------------------------------------------------------------


@dataclass(frozen=True)
class ClientCredentials:
    """What a request to the token, revocation or introspection endpoint presents."""

    basic: tuple[str, str] | None = None
    client_id: str | None = None
    client_secret: str | None = None
    assertion_type: str | None = None
    assertion: str | None = None


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """``Authorization: Basic`` -> (client_id, secret), form-decoded (RFC 6749 §2.3.1).

    >>> parse_basic("Basic " + base64.b64encode(b"app%201:s%3Acret").decode())
    ('app 1', 's:cret')
    """
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidClient("malformed Basic credentials") from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClient("malformed Basic credentials")
    return unquote_plus(client_id), unquote_plus(secret)


def authenticate_client(
    session: Session,
    auth: AuthServer,
    creds: ClientCredentials,
    *,
    token_endpoint: str,
    remote_addr: str | None = None,
) -> Any:
    """The client row, once its secret or signed assertion checks out; InvalidClient if not.

    Public clients (``public``) identify with ``client_id`` alone and are held to PKCE.
    """
    methods = sum(x is not None for x in (creds.basic, creds.client_secret, creds.assertion))
    if methods > 1:
        raise InvalidRequest("use exactly one client authentication method")
    try:
        if creds.assertion is not None or creds.assertion_type is not None:
            return _assertion_client(session, auth, creds, token_endpoint)
        if creds.basic is not None:
            client_id, secret = creds.basic
        elif creds.client_secret is not None:
            client_id, secret = creds.client_id or "", creds.client_secret
        elif creds.client_id:
            client = get_client(session, creds.client_id)
            if client is None or not client.active or not client.public:
                raise InvalidClient("client authentication is required")
            return client
        else:
            raise InvalidClient("client authentication is required")
        if creds.client_id and creds.client_id != client_id:
            raise InvalidClient("client_id does not match the authenticated client")
        client = get_client(session, client_id)
        if client is None or not client.active or not check_client_secret(auth, client, secret):
            raise InvalidClient("client authentication failed")
        return client
    except InvalidClient as exc:
        auth.emit(
            session,
            events.AuthEvent(
                events.CLIENT_AUTH_FAILED,
                auth.clock.now(),
                "failure",
                subject=creds.client_id or (creds.basic[0] if creds.basic else None),
                subject_kind="client",
                remote_addr=remote_addr,
                detail={"reason": exc.description},
            ),
        )
        raise CommitThenRaise(exc) from exc


def _assertion_client(
    session: Session, auth: AuthServer, creds: ClientCredentials, token_endpoint: str
) -> Any:
    """private_key_jwt (RFC 7523 §3, SMART Backend Services "Authenticating to the server")."""
    if creds.assertion_type != ASSERTION_TYPE or not creds.assertion:
        raise InvalidClient(f"client_assertion_type must be {ASSERTION_TYPE}")
    unverified = unverified_claims(creds.assertion) or {}
    client_id = unverified.get("iss")
    if not isinstance(client_id, str) or (creds.client_id and creds.client_id != client_id):
        raise InvalidClient("the assertion's iss must be the client_id")
    client = get_client(session, client_id)
    if client is None or not client.active or not client.jwks:
        raise InvalidClient("unknown client, or no keys registered for private_key_jwt")
    try:
        keys = KeySet.import_key_set(dict(client.jwks))  # type: ignore[arg-type]
        decoded = jwt.decode(creds.assertion, keys, algorithms=list(ASSERTION_ALGORITHMS))
    except (JoseError, ValueError) as exc:
        raise InvalidClient("the client assertion's signature does not verify") from exc
    claims = decoded.claims
    now = int(auth.clock.now().timestamp())
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise InvalidClient("the assertion's iss and sub must both be the client_id")
    aud = claims.get("aud")
    if token_endpoint not in (aud if isinstance(aud, list) else [aud]):
        raise InvalidClient("the assertion's aud must be the token endpoint URL")
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= now:
        raise InvalidClient("the assertion has expired")
    if exp > now + MAX_ASSERTION_SECONDS + CLOCK_SKEW_SECONDS:
        raise InvalidClient("the assertion may live at most five minutes")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise InvalidClient("the assertion needs a jti")
    seen = session.execute(
        sa.select(auth_assertion_jti.c.jti).where(
            auth_assertion_jti.c.client_id == client_id, auth_assertion_jti.c.jti == jti
        )
    ).first()
    if seen is not None:
        raise InvalidClient("this assertion was already used (jti replay)")
    try:
        with session.begin_nested():
            session.execute(
                auth_assertion_jti.insert().values(
                    client_id=client_id,
                    jti=jti,
                    expires_at=datetime.fromtimestamp(exp, auth.clock.now().tzinfo),
                )
            )
    except IntegrityError as exc:
        raise InvalidClient("this assertion was already used (jti replay)") from exc
    purge_expired(session, auth.clock.now())
    return client


def purge_expired(session: Session, now: datetime) -> None:
    """Drop rows that can no longer matter: used assertion ids and deny-list entries past
    their expiry (an expired token or assertion fails anyway), codes and refresh tokens a
    day after theirs."""
    session.execute(auth_assertion_jti.delete().where(auth_assertion_jti.c.expires_at < now))
    session.execute(auth_revoked_jti.delete().where(auth_revoked_jti.c.expires_at < now))
    session.execute(auth_code.delete().where(auth_code.c.expires_at < now - _KEEP_SPENT))
    session.execute(
        auth_refresh_token.delete().where(auth_refresh_token.c.expires_at < now - _KEEP_SPENT)
    )


# -- the authorization request --------------------------------------------------------------------


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked ``/auth/authorize`` request (RFC 6749 §4.1.1 + RFC 7636 §4.3)."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str | None
    code_challenge: str

    @property
    def wants_patient(self) -> bool:
        """``launch/patient`` or a ``patient/`` scope: the person picks a patient."""
        return wants_patient(split(self.scope))

    def hidden_fields(self) -> dict[str, str]:
        fields = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "code_challenge": self.code_challenge,
            "code_challenge_method": "S256",
        }
        if self.state is not None:
            fields["state"] = self.state
        return fields


class RedirectError(Exception):
    """An authorization error reported to the client by redirect (RFC 6749 §4.1.2.1)."""

    def __init__(self, redirect_uri: str, error: str, description: str, state: str | None):
        super().__init__(description)
        self.redirect_uri = redirect_uri
        self.error = error
        self.description = description
        self.state = state


def check_authorization_request(
    session: Session, auth: AuthServer, params: dict[str, str], *, fhir_base: str
) -> AuthorizationRequest:
    """Validate; errors before the redirect URI is trusted raise InvalidRequest (shown to the
    person), later ones raise RedirectError (sent back to the app)."""
    client_id = params.get("client_id") or ""
    client = get_client(session, client_id)
    if client is None or not client.active:
        raise InvalidRequest("unknown client_id")
    registered = list(client.redirect_uris or [])
    redirect_uri = params.get("redirect_uri") or (registered[0] if len(registered) == 1 else "")
    if redirect_uri not in registered:
        raise InvalidRequest("redirect_uri is not registered for this client")
    state = params.get("state")

    def fail(error: str, description: str) -> RedirectError:
        return RedirectError(redirect_uri, error, description, state)

    if params.get("response_type") != "code":
        raise fail("unsupported_response_type", "response_type must be code")
    challenge = params.get("code_challenge") or ""
    if params.get("code_challenge_method") != "S256" or not _CHALLENGE.match(challenge):
        raise fail("invalid_request", "PKCE is required: code_challenge with method S256")
    aud = params.get("aud")
    if aud and aud.rstrip("/") != fhir_base:
        raise fail("invalid_request", f"aud must be this server's FHIR base URL {fhir_base}")
    requested = split(params.get("scope"))
    if not requested:
        raise fail("invalid_scope", "name the scopes the app needs")
    try:
        narrow(requested, split(client.scope), ["user", "patient"])
    except InvalidScope as exc:
        raise fail("invalid_scope", exc.description) from exc
    return AuthorizationRequest(client_id, redirect_uri, " ".join(requested), state, challenge)


def issue_code(
    session: Session,
    auth: AuthServer,
    request: AuthorizationRequest,
    user: Any,
    patient_id: str | None = None,
) -> str:
    """A one-time authorization code for ``user`` (stored as its SHA-256 digest), bound to
    the patient they picked when the request wants a patient context."""
    if request.wants_patient != (patient_id is not None):
        raise InvalidRequest(
            "a patient is chosen exactly when launch/patient or a patient/ scope is requested"
        )
    code = secrets.token_urlsafe(32)
    purge_expired(session, auth.clock.now())
    session.execute(
        auth_code.insert().values(
            code_hash=_digest(code),
            client_id=request.client_id,
            user_id=user.id,
            redirect_uri=request.redirect_uri,
            scope=request.scope,
            code_challenge=request.code_challenge,
            expires_at=auth.clock.now() + timedelta(seconds=auth.config.authorization_code_seconds),
            patient_id=patient_id,
        )
    )
    return code


# -- the token endpoint -------------------------------------------------------------------------


def token_response(
    session: Session,
    auth: AuthServer,
    client: Any,
    form: dict[str, str],
    *,
    fhir_base: str,
    remote_addr: str | None = None,
) -> dict[str, Any]:
    """Answer a token request for an authenticated ``client`` (RFC 6749 §5.1)."""
    grant = form.get("grant_type")
    if grant == "client_credentials":
        return _client_credentials(session, auth, client, form, fhir_base, remote_addr)
    if grant == "authorization_code":
        return _authorization_code(session, auth, client, form, fhir_base, remote_addr)
    if grant == "refresh_token":
        return _refresh(session, auth, client, form, fhir_base, remote_addr)
    if not grant:
        raise InvalidRequest("grant_type is required")
    raise UnsupportedGrantType(f"grant_type {grant!r} is not supported")


def _client_credentials(
    session: Session,
    auth: AuthServer,
    client: Any,
    form: dict[str, str],
    fhir_base: str,
    remote_addr: str | None,
) -> dict[str, Any]:
    """SMART Backend Services; a back end that holds ``patient/`` scopes names the patient
    they are for with the (renkei) ``patient`` parameter, which must be a patient its
    organisation may see."""
    if client.public or client.redirect_uris:
        raise UnauthorizedClient("client_credentials is for registered back ends only")
    patient = form.get("patient") or None
    contexts = ["system", "patient"] if patient else ["system"]
    allowed = split(client.scope)
    requested = split(form.get("scope")) or [
        s for s in allowed if any(r.context in contexts for r in resource_scopes([s]))
    ]
    if patient is None and patient_scopes(requested):
        raise InvalidScope(
            "patient/ scopes need a patient context: name the patient with the 'patient' parameter"
        )
    scopes = narrow(requested, allowed, contexts)
    if not scopes:
        raise InvalidScope("this client has no system/ scopes")
    claims: dict[str, Any] = {"kind": "client", "org": client.organization_id}
    if patient is not None:
        claims["patient"] = launch.require_patient(
            session, auth, launch.client_probe(client), patient
        )
    issued = _access_token(auth, fhir_base, client.client_id, client.client_id, scopes, claims)
    _emit_issued(
        session,
        auth,
        client,
        client.client_id,
        "client",
        scopes,
        issued.jti,
        remote_addr,
        patient=patient,
    )
    return _bearer(issued, scopes, patient)


def _authorization_code(
    session: Session,
    auth: AuthServer,
    client: Any,
    form: dict[str, str],
    fhir_base: str,
    remote_addr: str | None,
) -> dict[str, Any]:
    code = form.get("code") or ""
    verifier = form.get("code_verifier") or ""
    now = auth.clock.now()
    row = session.execute(
        sa.select(auth_code).where(auth_code.c.code_hash == _digest(code)).with_for_update()
    ).first()
    if row is None:
        raise InvalidGrant("unknown authorization code")
    if row.used_at is not None:
        # RFC 6749 §4.1.2: a code used twice revokes what it was exchanged for
        _revoke_family(session, auth, row.family_id, now)
        _deny_jti(session, row.access_jti, now + auth.access_lifetime, now)
        raise CommitThenRaise(
            InvalidGrant("authorization code already used; its tokens are revoked")
        )
    if row.expires_at <= now:
        raise InvalidGrant("authorization code expired")
    if row.client_id != client.client_id:
        raise InvalidGrant("authorization code was issued to another client")
    if form.get("redirect_uri", row.redirect_uri) != row.redirect_uri:
        raise InvalidGrant("redirect_uri does not match the authorization request")
    if not _VERIFIER.match(verifier):
        raise InvalidGrant("code_verifier is required (43-128 characters, RFC 7636)")
    if not hmac.compare_digest(create_s256_code_challenge(verifier), row.code_challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge")
    user = active_user(session, row.user_id)
    scopes = split(row.scope)
    patient = row.patient_id
    claims = _with_patient(user_claims(user), patient)
    issued = _access_token(auth, fhir_base, user.id, client.client_id, scopes, claims)
    body = _bearer(issued, scopes, patient)
    family_id = None
    if any(s in scopes for s in REFRESH_SCOPES):
        family_id = uuid.uuid4().hex
        body["refresh_token"] = _new_refresh(
            session, auth, family_id, client.client_id, user.id, scopes, issued.jti, patient
        )
    session.execute(
        auth_code.update()
        .where(auth_code.c.code_hash == row.code_hash)
        .values(used_at=now, family_id=family_id, access_jti=issued.jti)
    )
    _emit_issued(
        session,
        auth,
        client,
        user.id,
        "user",
        scopes,
        issued.jti,
        remote_addr,
        user,
        patient=patient,
    )
    return body


def _refresh(
    session: Session,
    auth: AuthServer,
    client: Any,
    form: dict[str, str],
    fhir_base: str,
    remote_addr: str | None,
) -> dict[str, Any]:
    """Rotate: the presented refresh token is spent and a new one of the same family issued.

    Presenting a spent one again means it was copied: the whole family is revoked, so the
    thief and the victim both have to sign in again (OAuth 2.0 Security BCP §4.14.2).
    """
    presented = form.get("refresh_token") or ""
    now = auth.clock.now()
    row = session.execute(
        sa.select(auth_refresh_token).where(auth_refresh_token.c.token_hash == _digest(presented))
    ).first()
    if row is None or row.client_id != client.client_id:
        raise InvalidGrant("unknown refresh token")
    if row.revoked_at is not None:
        raise InvalidGrant("refresh token revoked")
    if row.rotated_at is not None:
        _revoke_family(session, auth, row.family_id, now)
        auth.emit(
            session,
            events.AuthEvent(
                events.REFRESH_TOKEN_REUSED,
                now,
                "failure",
                subject=row.user_id,
                subject_kind="user",
                organization_id=client.organization_id,
                client_id=client.client_id,
                remote_addr=remote_addr,
                detail={"family": row.family_id},
            ),
        )
        raise CommitThenRaise(InvalidGrant("refresh token reused; the token family is revoked"))
    if row.expires_at <= now:
        raise InvalidGrant("refresh token expired")
    original = split(row.scope)
    scopes = narrow(split(form.get("scope")), original, ["user", "system", "patient"])
    scopes = scopes or original
    user = active_user(session, row.user_id)
    spent = session.execute(
        auth_refresh_token.update()
        .where(
            auth_refresh_token.c.token_hash == row.token_hash,
            auth_refresh_token.c.rotated_at.is_(None),
        )
        .values(rotated_at=now)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidGrant("refresh token was used concurrently")
    patient = row.patient_id
    claims = _with_patient(user_claims(user), patient)
    issued = _access_token(auth, fhir_base, user.id, client.client_id, scopes, claims)
    body = _bearer(issued, scopes, patient)
    body["refresh_token"] = _new_refresh(
        session, auth, row.family_id, client.client_id, user.id, original, issued.jti, patient
    )
    auth.emit(
        session,
        events.AuthEvent(
            events.TOKEN_REFRESHED,
            now,
            subject=user.id,
            subject_kind="user",
            organization_id=user.organization_id,
            client_id=client.client_id,
            remote_addr=remote_addr,
            detail={
                "scope": " ".join(scopes),
                "jti": issued.jti,
                "family": row.family_id,
                **({"patient": patient} if patient else {}),
            },
        ),
    )
    return body


def active_user(session: Session, user_id: str | None) -> Any:
    user = session.execute(sa.select(auth_user).where(auth_user.c.id == user_id)).first()
    if user is None or not user.active:
        raise InvalidGrant("the account is no longer active")
    return user


def _access_token(
    auth: AuthServer,
    fhir_base: str,
    subject: str,
    client_id: str,
    scopes: list[str],
    claims: dict[str, Any],
) -> Any:
    audience = auth.fhir_base(fhir_base)
    return issue_access_token(
        auth.signing,
        now=auth.clock.now(),
        issuer=auth.issuer_for(audience),
        audience=audience,
        subject=subject,
        client_id=client_id,
        scope=" ".join(scopes),
        lifetime=auth.access_lifetime,
        claims=claims,
    )


def _with_patient(claims: dict[str, Any], patient: str | None) -> dict[str, Any]:
    return {**claims, "patient": patient} if patient else claims


def _bearer(issued: Any, scopes: list[str], patient: str | None = None) -> dict[str, Any]:
    """The token response (RFC 6749 §5.1), with SMART's ``patient`` launch context."""
    body: dict[str, Any] = {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": " ".join(scopes),
    }
    if patient:
        body["patient"] = patient
    return body


def _new_refresh(
    session: Session,
    auth: AuthServer,
    family_id: str,
    client_id: str,
    user_id: str | None,
    scopes: list[str],
    access_jti: str,
    patient_id: str | None = None,
) -> str:
    token = secrets.token_urlsafe(32)
    now = auth.clock.now()
    session.execute(
        auth_refresh_token.insert().values(
            token_hash=_digest(token),
            family_id=family_id,
            client_id=client_id,
            user_id=user_id,
            scope=" ".join(scopes),
            issued_at=now,
            expires_at=now + auth.refresh_lifetime,
            access_jti=access_jti,
            patient_id=patient_id,
        )
    )
    return token


def _revoke_family(
    session: Session, auth: AuthServer, family_id: str | None, now: datetime
) -> None:
    """Revoke every refresh token of a family and the access tokens issued with them."""
    if family_id is None:
        return
    rows = session.execute(
        sa.select(auth_refresh_token.c.access_jti).where(
            auth_refresh_token.c.family_id == family_id
        )
    ).all()
    session.execute(
        auth_refresh_token.update()
        .where(
            auth_refresh_token.c.family_id == family_id, auth_refresh_token.c.revoked_at.is_(None)
        )
        .values(revoked_at=now)
    )
    for (jti,) in rows:
        _deny_jti(session, jti, now + auth.access_lifetime, now)


def _deny_jti(session: Session, jti: str | None, expires_at: datetime, now: datetime) -> None:
    if not jti:
        return
    exists = session.execute(
        sa.select(auth_revoked_jti.c.jti).where(auth_revoked_jti.c.jti == jti)
    ).first()
    if exists is None:
        session.execute(
            auth_revoked_jti.insert().values(jti=jti, expires_at=expires_at, revoked_at=now)
        )


def _emit_issued(
    session: Session,
    auth: AuthServer,
    client: Any,
    subject: str,
    kind: str,
    scopes: list[str],
    jti: str,
    remote_addr: str | None,
    user: Any = None,
    *,
    patient: str | None = None,
) -> None:
    detail: dict[str, Any] = {"scope": " ".join(scopes), "jti": jti}
    if patient:
        detail["patient"] = patient
    auth.emit(
        session,
        events.AuthEvent(
            events.TOKEN_ISSUED,
            auth.clock.now(),
            subject=subject,
            subject_kind=kind,
            organization_id=user.organization_id if user is not None else client.organization_id,
            client_id=client.client_id,
            remote_addr=remote_addr,
            detail=detail,
        ),
    )


# -- revocation and introspection ------------------------------------------------------------------


def revoke(
    session: Session, auth: AuthServer, client: Any, token: str, *, remote_addr: str | None = None
) -> None:
    """RFC 7009: revoke a refresh token (its whole family) or an access token (its jti).

    Unknown tokens and tokens of other clients are ignored: the answer is 200 either way.
    """
    now = auth.clock.now()
    row = session.execute(
        sa.select(auth_refresh_token).where(auth_refresh_token.c.token_hash == _digest(token))
    ).first()
    detail: dict[str, Any]
    if row is not None:
        if row.client_id != client.client_id:
            return
        _revoke_family(session, auth, row.family_id, now)
        detail = {"token_type": "refresh_token", "family": row.family_id}
        subject = row.user_id
    else:
        try:
            claims = verify_access_token(auth.signing, token, now=now, audience=None, issuer=None)
        except InvalidToken:
            return
        if claims.get("client_id") != client.client_id:
            return
        _deny_jti(session, claims["jti"], datetime.fromtimestamp(claims["exp"], now.tzinfo), now)
        detail = {"token_type": "access_token", "jti": claims["jti"]}
        subject = claims["sub"]
    auth.emit(
        session,
        events.AuthEvent(
            events.TOKEN_REVOKED,
            now,
            subject=subject,
            organization_id=client.organization_id,
            client_id=client.client_id,
            remote_addr=remote_addr,
            detail=detail,
        ),
    )


def introspect(session: Session, auth: AuthServer, client: Any, token: str) -> dict[str, Any]:
    """RFC 7662: ``{"active": true, ...claims}`` for a live token of this client, else inactive.

    A client may introspect only its own tokens, so one organisation's back end cannot
    learn about another's users.
    """
    now = auth.clock.now()
    inactive = {"active": False}
    row = session.execute(
        sa.select(auth_refresh_token).where(auth_refresh_token.c.token_hash == _digest(token))
    ).first()
    if row is not None:
        if (
            row.client_id != client.client_id
            or row.revoked_at is not None
            or row.rotated_at is not None
            or row.expires_at <= now
        ):
            return inactive
        out = {
            "active": True,
            "token_type": "refresh_token",
            "client_id": row.client_id,
            "sub": row.user_id,
            "scope": row.scope,
            "exp": int(row.expires_at.timestamp()),
            "iat": int(row.issued_at.timestamp()),
        }
        if row.patient_id:
            out["patient"] = row.patient_id
        return out
    try:
        claims = verify_access_token(auth.signing, token, now=now, audience=None, issuer=None)
    except InvalidToken:
        return inactive
    if claims.get("client_id") != client.client_id or is_revoked(session, claims["jti"]):
        return inactive
    return {"active": True, "token_type": "Bearer", **claims}


def is_revoked(session: Session, jti: str) -> bool:
    return (
        session.execute(
            sa.select(auth_revoked_jti.c.jti).where(auth_revoked_jti.c.jti == jti)
        ).first()
        is not None
    )


# -- bearer tokens on resource requests ---------------------------------------------------


def bearer_principal(
    session: Session, auth: AuthServer, token: str, *, fhir_base: str
) -> Principal:
    """Verify a bearer token for ``fhir_base`` and return the caller; InvalidToken if not.

    Checked on every request: signature (our keys, ES256 only), expiry, audience, issuer,
    the revocation list, and that the user or client is still active.
    """
    principal = verify_bearer(auth, token, fhir_base=fhir_base)
    check_caller(session, principal)
    return principal


def verify_bearer(auth: AuthServer, token: str, *, fhir_base: str) -> Principal:
    """The token's own checks (signature, expiry, audience, issuer), without the database.

    The caller is not trusted until :func:`check_caller` has passed too; the FHIR API runs
    that in the request's own transaction instead of a session of its own.
    """
    audience = auth.fhir_base(fhir_base)
    claims = verify_access_token(
        auth.signing,
        token,
        now=auth.clock.now(),
        audience=audience,
        issuer=auth.issuer_for(audience),
    )
    kind = claims.get("kind")
    if kind not in ("user", "client"):
        raise InvalidToken("token names no known kind of caller")
    patient = claims.get("patient")
    if patient is not None and not isinstance(patient, str):
        raise InvalidToken("the token's patient claim is malformed")
    return Principal(
        subject=str(claims["sub"]),
        kind=str(kind),
        organization_id=claims.get("org"),
        role=claims.get("role"),
        practitioner_id=claims.get("practitioner"),
        practitioner_role_id=claims.get("practitioner_role"),
        client_id=str(claims["client_id"]),
        scopes=frozenset(split(str(claims["scope"]))),
        token_id=str(claims["jti"]),
        patient_id=patient or None,
    )


def check_caller(session: Session, principal: Principal) -> None:
    """InvalidToken if the token was revoked or its user or client is no longer active."""
    if principal.kind == "user":
        active_col, key = auth_user.c.active, auth_user.c.id
    else:
        active_col, key = auth_client.c.active, auth_client.c.client_id
    # one round trip: revocation list and account state together
    row = session.execute(
        sa.select(
            sa.exists().where(auth_revoked_jti.c.jti == principal.token_id).label("revoked"),
            sa.select(active_col).where(key == principal.subject).scalar_subquery().label("active"),
        )
    ).one()
    if row.revoked:
        raise InvalidToken("token has been revoked")
    if not row.active:
        raise InvalidToken("the account or client behind this token is not active")


__all__ = [
    "ASSERTION_ALGORITHMS",
    "ASSERTION_TYPE",
    "AuthorizationRequest",
    "ClientCredentials",
    "CommitThenRaise",
    "RedirectError",
    "active_user",
    "authenticate_client",
    "bearer_principal",
    "check_authorization_request",
    "check_caller",
    "introspect",
    "is_revoked",
    "issue_code",
    "parse_basic",
    "purge_expired",
    "revoke",
    "token_response",
    "verify_bearer",
]
