"""Identity, OAuth 2 / SMART on FHIR, scopes and secrets at rest (MHLW safety guideline).

Public surface: the caller (:class:`Principal`), the collaborators (:class:`AuthServer`),
the scope-enforcing access policy (:class:`ScopePolicy`), the audit seam
(:class:`AuthEvent`, ``AuthServer.listeners``) and the error base (:class:`AuthError`).
Admin functions live in ``renkei.auth.service``, OAuth grants in ``renkei.auth.oauth``.
"""

from renkei.auth.errors import AuthError
from renkei.auth.events import AuthEvent, AuthEventListener
from renkei.auth.policy import ScopePolicy
from renkei.auth.principal import OPERATOR, Principal
from renkei.auth.server import AuthServer

__all__ = [
    "OPERATOR",
    "AuthError",
    "AuthEvent",
    "AuthEventListener",
    "AuthServer",
    "Principal",
    "ScopePolicy",
]
