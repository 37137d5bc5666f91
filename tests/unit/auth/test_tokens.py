"""Access tokens: every way a forged or stale token must fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from renkei.auth.errors import InvalidToken
from renkei.auth.keys import SigningKeys
from renkei.auth.tokens import issue_access_token, verify_access_token
from renkei.clock import ManualClock

AUD = "https://renkei.example.jp/fhir"
ISS = "https://renkei.example.jp/auth"


@pytest.fixture
def keys(tmp_path: Path, clock: ManualClock) -> SigningKeys:
    return SigningKeys(tmp_path / "signing", clock)


def _issue(keys: SigningKeys, clock: ManualClock, minutes: int = 60) -> str:
    return issue_access_token(
        keys,
        now=clock.now(),
        issuer=ISS,
        audience=AUD,
        subject="u1",
        client_id="app",
        scope="user/Patient.rs",
        lifetime=timedelta(minutes=minutes),
        claims={"kind": "user", "org": "o1"},
    ).token


def _verify(keys: SigningKeys, clock: ManualClock, token: str, aud: str = AUD) -> dict:
    return verify_access_token(keys, token, now=clock.now(), audience=aud, issuer=ISS)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict, dict, str]:
    head, body, sig = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(head))),
        json.loads(base64.urlsafe_b64decode(pad(body))),
        sig,
    )


def test_verify_access_token_accepts_a_fresh_token(keys: SigningKeys, clock: ManualClock) -> None:
    claims = _verify(keys, clock, _issue(keys, clock))
    assert claims["sub"] == "u1"
    assert claims["aud"] == AUD
    assert claims["scope"] == "user/Patient.rs"
    assert claims["jti"]


def test_verify_access_token_expired(keys: SigningKeys, clock: ManualClock) -> None:
    token = _issue(keys, clock, minutes=5)
    clock.advance(minutes=5)
    with pytest.raises(InvalidToken, match="expired"):
        _verify(keys, clock, token)


def test_verify_access_token_wrong_audience(keys: SigningKeys, clock: ManualClock) -> None:
    with pytest.raises(InvalidToken, match="audience"):
        _verify(keys, clock, _issue(keys, clock), aud="https://other.example.jp/fhir")


def test_verify_access_token_tampered_payload(keys: SigningKeys, clock: ManualClock) -> None:
    head, body, sig = _issue(keys, clock).split(".")
    _, claims, _ = _parts(f"{head}.{body}.{sig}")
    claims["scope"] = "user/*.cruds"
    forged = f"{head}.{_b64(json.dumps(claims).encode())}.{sig}"
    with pytest.raises(InvalidToken, match="signature"):
        _verify(keys, clock, forged)


def test_verify_access_token_tampered_signature(keys: SigningKeys, clock: ManualClock) -> None:
    head, body, sig = _issue(keys, clock).split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[10] ^= 0x01
    with pytest.raises(InvalidToken, match="signature"):
        _verify(keys, clock, f"{head}.{body}.{_b64(bytes(raw))}")


def test_verify_access_token_alg_none(keys: SigningKeys, clock: ManualClock) -> None:
    header, claims, _ = _parts(_issue(keys, clock))
    header["alg"] = "none"
    unsigned = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."
    with pytest.raises(InvalidToken, match="algorithm 'none'"):
        _verify(keys, clock, unsigned)


def test_verify_access_token_hs256_with_public_key_confusion(
    keys: SigningKeys, clock: ManualClock
) -> None:
    """HS256 'signed' with our public key (an attacker knows it from /auth/jwks)."""
    header, claims, _ = _parts(_issue(keys, clock))
    header["alg"] = "HS256"
    public_pem = keys.active().as_pem(private=False)
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidToken, match="HS256"):
        _verify(keys, clock, f"{signing_input}.{_b64(mac)}")


def test_verify_access_token_foreign_key_with_our_kid(
    keys: SigningKeys, clock: ManualClock
) -> None:
    header, claims, _ = _parts(_issue(keys, clock))
    attacker = ECKey.generate_key("P-256")
    forged = jwt.encode(header, claims, attacker, algorithms=["ES256"])
    with pytest.raises(InvalidToken, match="signature"):
        _verify(keys, clock, forged)


def test_verify_access_token_unknown_kid(keys: SigningKeys, clock: ManualClock) -> None:
    header, claims, _ = _parts(_issue(keys, clock))
    header["kid"] = "not-ours"
    attacker = ECKey.generate_key("P-256")
    with pytest.raises(InvalidToken, match="unknown key"):
        _verify(keys, clock, jwt.encode(header, claims, attacker, algorithms=["ES256"]))


def test_verify_access_token_refuses_non_access_token_typ(
    keys: SigningKeys, clock: ManualClock
) -> None:
    header, claims, _ = _parts(_issue(keys, clock))
    header["typ"] = "JWT"
    token = jwt.encode(header, claims, keys.active(), algorithms=["ES256"])
    with pytest.raises(InvalidToken, match="at\\+jwt"):
        _verify(keys, clock, token)


def test_verify_access_token_old_key_still_verifies_after_rotation(
    keys: SigningKeys, clock: ManualClock
) -> None:
    old = _issue(keys, clock)
    keys.add_key()
    new = _issue(keys, clock)
    assert _parts(old)[0]["kid"] != _parts(new)[0]["kid"]
    assert _verify(keys, clock, old)["sub"] == "u1"
    assert _verify(keys, clock, new)["sub"] == "u1"


@pytest.mark.parametrize("garbage", ["", "abc", "a.b", "a.b.c.d", "!!.??.**"])
def test_verify_access_token_garbage(keys: SigningKeys, clock: ManualClock, garbage: str) -> None:
    with pytest.raises(InvalidToken):
        _verify(keys, clock, garbage)
