"""JWT access tokens (RFC 9068 profile): issue and verify, with an algorithm allowlist.

Only ES256 tokens signed by one of our own keys are accepted: ``alg=none``, HS256 signed
with a public key ("algorithm confusion") and any other algorithm fail before a signature is
even tried, because the header is checked against the allowlist and the key is looked up by
``kid`` in our own key folder, never taken from the token.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jws import extract_compact

from renkei.auth.errors import InvalidToken
from renkei.auth.keys import SIGNING_ALG, SigningKeys

TOKEN_TYPE = "at+jwt"
ALLOWED_ALGORITHMS = (SIGNING_ALG,)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime
    expires_in: int


def issue_access_token(
    keys: SigningKeys,
    *,
    now: datetime,
    issuer: str,
    audience: str,
    subject: str,
    client_id: str,
    scope: str,
    lifetime: timedelta,
    claims: dict[str, Any] | None = None,
) -> IssuedToken:
    """Sign a token for ``audience`` (the FHIR base URL) with the active signing key."""
    key = keys.active()
    jti = uuid.uuid4().hex
    iat = int(now.timestamp())
    exp = iat + int(lifetime.total_seconds())
    payload = {
        **(claims or {}),
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": iat,
        "exp": exp,
        "jti": jti,
        "client_id": client_id,
        "scope": scope,
    }
    header = {"alg": SIGNING_ALG, "kid": key.kid, "typ": TOKEN_TYPE}
    token = jwt.encode(header, payload, key, algorithms=list(ALLOWED_ALGORITHMS))
    return IssuedToken(token, jti, now + lifetime, exp - iat)


def verify_access_token(
    keys: SigningKeys,
    token: str,
    *,
    now: datetime,
    audience: str | None,
    issuer: str | None,
) -> dict[str, Any]:
    """The claims of a valid token; raises InvalidToken saying what is wrong.

    ``audience=None`` skips the audience check (introspection, revocation: the token is
    judged on its signature and lifetime only).
    """
    header = _header(token)
    if header.get("alg") not in ALLOWED_ALGORITHMS:
        raise InvalidToken(f"token algorithm {header.get('alg')!r} is not accepted")
    if header.get("typ") != TOKEN_TYPE:
        raise InvalidToken("not an access token (typ must be at+jwt)")
    key = keys.get(str(header.get("kid") or ""))
    if key is None:
        raise InvalidToken("token signed by an unknown key")
    try:
        decoded = jwt.decode(token, key, algorithms=list(ALLOWED_ALGORITHMS))
    except JoseError as exc:
        raise InvalidToken(f"token signature is not valid ({exc.error})") from exc
    claims = dict(decoded.claims)
    _check_claims(claims, now=now, audience=audience, issuer=issuer)
    return claims


def _header(token: str) -> dict[str, Any]:
    if not isinstance(token, str) or token.count(".") != 2:
        raise InvalidToken("token is not a signed JWT")
    try:
        return dict(extract_compact(token.encode()).headers())
    except (JoseError, ValueError) as exc:
        raise InvalidToken("token header is malformed") from exc


def _check_claims(
    claims: dict[str, Any], *, now: datetime, audience: str | None, issuer: str | None
) -> None:
    for name in ("iss", "sub", "aud", "exp", "iat", "jti", "scope", "client_id"):
        if name not in claims:
            raise InvalidToken(f"token lacks the {name!r} claim")
    exp = claims["exp"]
    if not isinstance(exp, int) or exp <= int(now.timestamp()):
        raise InvalidToken("token has expired")
    if audience is not None:
        aud = claims["aud"]
        auds = aud if isinstance(aud, list) else [aud]
        if audience not in auds:
            raise InvalidToken("token is for another audience")
    if issuer is not None and claims["iss"] != issuer:
        raise InvalidToken("token is from another issuer")


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The payload of a compact JWS, unchecked: only to find which client sent an assertion."""
    try:
        data = orjson.loads(extract_compact(token.encode()).payload)
    except (JoseError, ValueError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


__all__ = [
    "ALLOWED_ALGORITHMS",
    "TOKEN_TYPE",
    "IssuedToken",
    "issue_access_token",
    "unverified_claims",
    "verify_access_token",
]
