"""Tables of the auth package: accounts, OAuth clients, codes, refresh tokens, denylists.

Organisations, practitioners and their roles are FHIR resources (``fhir_resource``); these
tables only link a login or a client to them. Secrets are never stored in the clear: TOTP
seeds and client secrets are sealed with the keyring (``renkei.auth.keys``), passwords are
argon2 hashes, codes and refresh tokens are SHA-256 digests of 256-bit random values.
"""

from __future__ import annotations

import sqlalchemy as sa

from renkei.store.models import Json, UtcDateTime, metadata

auth_user = sa.Table(
    "auth_user",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("login", sa.String(100), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("organization_id", sa.String(64), nullable=False),
    sa.Column("practitioner_id", sa.String(64), nullable=False),
    sa.Column("practitioner_role_id", sa.String(64), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    #: sealed TOTP seed (keyring), context "auth_user.totp_secret:<id>"
    sa.Column("totp_secret", sa.Text, nullable=False),
    #: the last accepted TOTP time step; a code from this step or older is a replay
    sa.Column("totp_last_step", sa.BigInteger, nullable=True),
    sa.Column("failed_count", sa.Integer, nullable=False, default=0),
    sa.Column("locked_until", UtcDateTime(), nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("last_login_at", UtcDateTime(), nullable=True),
)

auth_client = sa.Table(
    "auth_client",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("organization_id", sa.String(64), nullable=False),
    #: the most this client may ask for (space-separated SMART scopes)
    sa.Column("scope", sa.Text, nullable=False),
    #: sealed client secret, context "auth_client.secret:<client_id>"; None: no secret
    sa.Column("secret", sa.Text, nullable=True),
    #: the client's public JWK Set for private_key_jwt
    sa.Column("jwks", Json, nullable=True),
    sa.Column("redirect_uris", Json, nullable=False),
    sa.Column("public", sa.Boolean, nullable=False, default=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

auth_code = sa.Table(
    "auth_code",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("redirect_uri", sa.Text, nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("code_challenge", sa.String(128), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False, index=True),
    sa.Column("used_at", UtcDateTime(), nullable=True),
    #: refresh-token family the code was exchanged for; revoked if the code is replayed
    sa.Column("family_id", sa.String(32), nullable=True),
    sa.Column("access_jti", sa.String(64), nullable=True),
    #: the patient chosen at sign-in (SMART launch/patient); the tokens are bound to it
    sa.Column("patient_id", sa.String(64), nullable=True),
)

auth_refresh_token = sa.Table(
    "auth_refresh_token",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("family_id", sa.String(32), nullable=False, index=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(32), nullable=True, index=True),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("issued_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False, index=True),
    #: set when exchanged for a new one; presenting it again revokes the family
    sa.Column("rotated_at", UtcDateTime(), nullable=True),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
    #: jti of the access token issued with this refresh token (revoked with the family)
    sa.Column("access_jti", sa.String(64), nullable=True),
    #: the patient launch context every access token of the family carries
    sa.Column("patient_id", sa.String(64), nullable=True),
)

#: Access tokens revoked before they expire (RFC 7009); rows may go once expired.
auth_revoked_jti = sa.Table(
    "auth_revoked_jti",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("expires_at", UtcDateTime(), nullable=False, index=True),
    sa.Column("revoked_at", UtcDateTime(), nullable=False),
)

#: private_key_jwt assertions already used (RFC 7523 §3: jti replay).
auth_assertion_jti = sa.Table(
    "auth_assertion_jti",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("jti", sa.String(255), primary_key=True),
    sa.Column("expires_at", UtcDateTime(), nullable=False, index=True),
)

__all__ = [
    "auth_assertion_jti",
    "auth_client",
    "auth_code",
    "auth_refresh_token",
    "auth_revoked_jti",
    "auth_user",
]
