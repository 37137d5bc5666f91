"""Keys on disk: AES-GCM data keys for secrets at rest, and ES256 keys that sign tokens.

Both live under ``RENKEI_DATA_DIR/keys`` (folder 0700, files 0600), never in the database, so
a database dump or backup alone reveals no secret (MHLW guideline 6.0, システム運用編
「暗号化」). Each key is one JSON file named after its key id; the newest is the active one.

Rotation without downtime: ``renkei keys rotate`` writes a new key file, and running servers
notice the folder changed (its mtime) on their next use and reload. Old keys stay readable,
so a value sealed under an old data key still opens, and a token signed by an old signing key
still verifies until it expires; ``rewrap`` then moves stored secrets to the new data key.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import ECKey, KeySet

from renkei.auth.errors import KeyringError
from renkei.clock import Clock
from renkei.config import Secret

#: Prefix of every sealed value: ``v1.<kid>.<base64url(nonce || ciphertext+tag)>``.
_VERSION = "v1"
SIGNING_ALG = "ES256"


@dataclass(frozen=True)
class _StoredKey:
    kid: str
    created: str
    material: bytes = field(repr=False)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _write_private(path: Path, payload: dict[str, Any]) -> None:
    """Create ``path`` with mode 0600 atomically: write a temp file, then rename it."""
    tmp = path.with_suffix(f".tmp-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _private_dir(path: Path) -> Path:
    """Create ``path`` 0700; a read-only mount (a Kubernetes Secret) is used as it is."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    # read-only: the files' own 0600/0400 modes are still checked on load
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    return path


class _KeyFolder:
    """A folder of ``<kid>.json`` key files, reloaded when the folder changes."""

    def __init__(self, folder: Path) -> None:
        self.folder = _private_dir(folder)
        self._lock = threading.Lock()
        self._mtime: int | None = None
        self._keys: dict[str, _StoredKey] = {}

    def keys(self) -> dict[str, _StoredKey]:
        mtime = self.folder.stat().st_mtime_ns
        if mtime != self._mtime:
            with self._lock:
                self._keys = self._load()
                self._mtime = mtime
        return self._keys

    def _load(self) -> dict[str, _StoredKey]:
        keys: dict[str, _StoredKey] = {}
        for path in sorted(self.folder.glob("*.json")):
            if path.stat().st_mode & 0o077:
                raise KeyringError(f"{path} is readable by others; chmod 600 it")
            try:
                raw = json.loads(path.read_text())
                key = _StoredKey(raw["kid"], raw["created"], _unb64(raw["material"]))
            except (ValueError, KeyError) as exc:
                raise KeyringError(f"{path} is not a key file") from exc
            keys[key.kid] = key
        return keys

    def find(self, kid: str) -> _StoredKey | None:
        """The key ``kid``; rereads the folder once if it is unknown (written elsewhere)."""
        key = self.keys().get(kid)
        if key is None:
            self._mtime = None
            key = self.keys().get(kid)
        return key

    def newest(self) -> _StoredKey | None:
        keys = self.keys()
        if not keys:
            return None
        return max(keys.values(), key=lambda k: (datetime.fromisoformat(k.created), k.kid))

    def add(self, kid: str, created: datetime, material: bytes) -> _StoredKey:
        """Store a key that becomes the newest, even if the clock has not moved."""
        newest = self.newest()
        if newest is not None:
            floor = datetime.fromisoformat(newest.created) + timedelta(microseconds=1)
            created = max(created, floor)
        key = _StoredKey(kid, created.isoformat(), material)
        payload = {"kid": kid, "created": key.created, "material": _b64(material)}
        _write_private(self.folder / f"{kid}.json", payload)
        self._mtime = None
        return key


class Keyring:
    """AES-256-GCM data keys with key ids; seals and opens secrets stored in the database.

    ``context`` is bound as associated data, so a sealed value copied into another row or
    column does not open there.

    >>> import tempfile, pathlib
    >>> from renkei.clock import ManualClock
    >>> ring = Keyring(pathlib.Path(tempfile.mkdtemp()) / "data", ManualClock())
    >>> sealed = ring.seal("JBSWY3DPEHPK3PXP", "auth_user.totp:u1")
    >>> sealed.startswith("v1." + ring.active_kid + ".")
    True
    >>> ring.open(sealed, "auth_user.totp:u1")
    Secret('**********')
    >>> str(ring.open(sealed, "auth_user.totp:u1"))
    'JBSWY3DPEHPK3PXP'
    """

    def __init__(self, folder: Path, clock: Clock) -> None:
        self._folder = _KeyFolder(folder)
        self._clock = clock
        if self._folder.newest() is None:
            self.add_key()

    def add_key(self) -> str:
        """Create a new data key and make it the active one; returns its kid."""
        now = self._clock.now()
        kid = f"d{now:%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
        self._folder.add(kid, now, AESGCM.generate_key(bit_length=256))
        return kid

    @property
    def active_kid(self) -> str:
        newest = self._folder.newest()
        assert newest is not None
        return newest.kid

    def kids(self) -> list[str]:
        return sorted(self._folder.keys())

    def seal(self, plaintext: str, context: str) -> str:
        key = self._folder.newest()
        assert key is not None
        nonce = os.urandom(12)
        ct = AESGCM(key.material).encrypt(nonce, plaintext.encode(), context.encode())
        return f"{_VERSION}.{key.kid}.{_b64(nonce + ct)}"

    def open(self, sealed: str, context: str) -> Secret:
        _version, kid, blob = _split(sealed)
        key = self._folder.find(kid)
        if key is None:
            raise KeyringError(f"data key {kid!r} is not in the keyring")
        raw = _unb64(blob)
        try:
            plain = AESGCM(key.material).decrypt(raw[:12], raw[12:], context.encode())
        except InvalidTag as exc:
            raise KeyringError("a sealed value does not open (tampered or wrong row)") from exc
        return Secret(plain.decode())

    def kid_of(self, sealed: str) -> str:
        return _split(sealed)[1]

    def rewrap(self, sealed: str, context: str) -> str:
        """The same secret sealed under the active key (unchanged if it already is)."""
        if self.kid_of(sealed) == self.active_kid:
            return sealed
        return self.seal(str(self.open(sealed, context)), context)


def _split(sealed: str) -> tuple[str, str, str]:
    parts = sealed.split(".")
    if len(parts) != 3 or parts[0] != _VERSION:
        raise KeyringError("not a sealed value")
    return parts[0], parts[1], parts[2]


class SigningKeys:
    """ES256 (P-256) keys that sign access tokens; every key is published at /auth/jwks."""

    def __init__(self, folder: Path, clock: Clock) -> None:
        self._folder = _KeyFolder(folder)
        self._clock = clock
        self._cache: dict[str, ECKey] = {}
        if self._folder.newest() is None:
            self.add_key()

    def add_key(self) -> str:
        now = self._clock.now()
        key = ECKey.generate_key("P-256", auto_kid=True)
        pem = key.as_pem(private=True)
        self._folder.add(key.kid or secrets.token_hex(8), now, pem)
        return str(key.kid)

    def _key(self, stored: _StoredKey) -> ECKey:
        key = self._cache.get(stored.kid)
        if key is None:
            key = ECKey.import_key(stored.material, {"kid": stored.kid, "alg": SIGNING_ALG})
            self._cache[stored.kid] = key
        return key

    def active(self) -> ECKey:
        newest = self._folder.newest()
        assert newest is not None
        return self._key(newest)

    def get(self, kid: str) -> ECKey | None:
        stored = self._folder.find(kid)
        return None if stored is None else self._key(stored)

    def kids(self) -> list[str]:
        return sorted(self._folder.keys())

    def key_set(self) -> KeySet:
        return KeySet([self._key(k) for k in self._folder.keys().values()])

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set (RFC 7517 §5), each key with its kid, alg and use."""
        keys = []
        for stored in sorted(self._folder.keys().values(), key=lambda k: k.created):
            public = self._key(stored).as_dict(private=False)
            public.update({"kid": stored.kid, "alg": SIGNING_ALG, "use": "sig"})
            keys.append(public)
        return {"keys": keys}


def key_folders(data_dir: Path) -> tuple[Path, Path]:
    """(data keys, signing keys) under ``data_dir/keys``."""
    root = _private_dir(Path(data_dir) / "keys")
    return root / "data", root / "signing"


__all__ = ["SIGNING_ALG", "Keyring", "SigningKeys", "key_folders"]
