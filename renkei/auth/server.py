"""``AuthServer``: the collaborators every auth function needs, built once per process.

Keys are loaded (or created on first start) from ``RENKEI_DATA_DIR/keys``; the password
hasher takes its cost from settings; ``listeners`` is the audit seam (see ``events.py``);
``patients`` looks patients up for launch contexts (``launch.py``; set by ``build_services``,
None: no patient contexts are issued).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from renkei.auth.events import AuthEvent, AuthEventListener
from renkei.auth.keys import Keyring, SigningKeys, key_folders
from renkei.auth.passwords import PasswordHasher
from renkei.clock import Clock
from renkei.config import AuthSettings, Settings

if TYPE_CHECKING:
    from renkei.auth.launch import PatientDirectory

#: used when no public base URL is configured and there is no request to take it from (CLI)
DEFAULT_FHIR_BASE = "http://127.0.0.1:8000/fhir"


class AuthServer:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.config: AuthSettings = settings.auth
        self.clock = clock
        data, signing = key_folders(settings.data_dir)
        self.keyring = Keyring(data, clock)
        self.signing = SigningKeys(signing, clock)
        self._hasher: PasswordHasher | None = None
        self._base_url = settings.base_url_explicit
        #: called with every AuthEvent inside the transaction that caused it (audit)
        self.listeners: list[AuthEventListener] = []
        #: finds the patient of a launch context (``renkei.auth.launch.EnginePatients``)
        self.patients: PatientDirectory | None = None

    @property
    def hasher(self) -> PasswordHasher:
        if self._hasher is None:
            self._hasher = PasswordHasher(self.config)
        return self._hasher

    def fhir_base(self, from_request: str | None = None) -> str:
        """The FHIR base URL tokens are issued for (their ``aud``)."""
        if self._base_url:
            return str(self._base_url).rstrip("/") + "/fhir"
        return (from_request or DEFAULT_FHIR_BASE).rstrip("/")

    @staticmethod
    def issuer_for(fhir_base: str) -> str:
        """``https://host/fhir`` -> ``https://host/auth`` (the issuer of tokens for it)."""
        root = fhir_base[: -len("/fhir")] if fhir_base.endswith("/fhir") else fhir_base
        return root + "/auth"

    @property
    def access_lifetime(self) -> timedelta:
        return timedelta(minutes=self.config.access_token_minutes)

    @property
    def refresh_lifetime(self) -> timedelta:
        return timedelta(days=self.config.refresh_token_days)

    def emit(self, session: Session, event: AuthEvent) -> None:
        for listener in self.listeners:
            listener(session, event)


__all__ = ["DEFAULT_FHIR_BASE", "AuthServer"]
