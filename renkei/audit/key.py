"""The seal key: an HMAC key kept in a file outside the database.

Whoever can rewrite the database can recompute a plain hash chain; they cannot compute an
HMAC without this key. It lives under ``RENKEI_DATA_DIR`` (or ``RENKEI_AUDIT_KEY_FILE``,
ideally another volume or a secrets mount), mode 0600, created on first use.
(MHLW guideline 第6.0版 システム運用編 13「アクセスログの管理」: logs are protected
against tampering.)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from renkei.audit.errors import SealKeyError

KEY_FILE_NAME = "audit-seal.key"


class SealKey:
    """A 256-bit HMAC-SHA256 key; its ``repr`` never shows the key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise SealKeyError("the audit seal key must be at least 32 bytes")
        self._key = key
        #: short public fingerprint, stored beside each MAC so a rotated key is recognised
        self.key_id = hashlib.sha256(b"renkei-audit-key-id:" + key).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"SealKey(key_id={self.key_id!r})"

    def mac(self, message: str) -> str:
        return hmac.new(self._key, message.encode("utf-8"), hashlib.sha256).hexdigest()

    def check(self, message: str, mac: str | None) -> bool:
        return mac is not None and hmac.compare_digest(self.mac(message), mac)

    @classmethod
    def load(cls, path: Path, *, create: bool = True) -> SealKey:
        """Read the key file; create it (0600, 32 random bytes as hex) if absent and allowed."""
        if not path.exists():
            if not create:
                raise SealKeyError(f"audit seal key {path} does not exist")
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it first; read theirs
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_hex(32) + "\n")
        try:
            mode = path.stat().st_mode
            raw = path.read_text("ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SealKeyError(f"cannot read the audit seal key {path}: {exc}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SealKeyError(f"audit seal key {path} is accessible to group/others; chmod 600 it")
        try:
            return cls(bytes.fromhex(raw))
        except ValueError as exc:
            raise SealKeyError(f"audit seal key {path} is not hex") from exc


def key_path(data_dir: Path, override: Path | str | None = None) -> Path:
    return Path(override) if override else data_dir / KEY_FILE_NAME


__all__ = ["KEY_FILE_NAME", "SealKey", "key_path"]
