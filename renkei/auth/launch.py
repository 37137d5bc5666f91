"""The patient launch context: which patient a token's ``patient/`` scopes are bound to.

SMART App Launch (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):
"When granting patient-level scopes like patient/*.rs, the server SHALL provide a
'patient' launch context parameter". The patient is chosen in one of three ways:

- **standalone launch** (authorization code flow, ``launch/patient`` or any ``patient/``
  scope): after signing in, the person picks the patient on a second page listing the
  patients they may see; the choice travels in a sealed, short-lived *launch ticket*
  (:func:`seal_ticket`) so the picker page needs no server-side session;
- **back ends** (client credentials): the token request names it, ``patient=<id>``;
- **the operator** (``renkei token issue --patient <id>``).

Either way the patient must exist and be visible to the person or organisation under the
sharing policy (a :class:`PatientDirectory` asks the FHIR engine, so the look-up is itself
audited), and the token carries it as its ``patient`` claim; the token response and
introspection show it. ``patient/`` scopes without a patient are refused (``invalid_scope``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session

from renkei.auth.errors import InvalidRequest, InvalidScope, KeyringError
from renkei.auth.principal import Principal
from renkei.fhir.context import FhirRequest, RequestContext
from renkei.fhir.outcome import FhirError
from renkei.store.errors import StoreError

if TYPE_CHECKING:
    from renkei.auth.server import AuthServer
    from renkei.fhir.engine import FhirEngine

#: how long a person has to pick the patient after signing in
TICKET_LIFETIME = timedelta(minutes=10)
#: most patients the picker lists at once (a name search narrows the list)
PICKER_LIMIT = 50


@dataclass(frozen=True)
class PatientChoice:
    """One line of the patient picker."""

    id: str
    name: str
    birth_date: str | None = None


class PatientDirectory(Protocol):
    """Looks patients up for launch contexts, as ``principal`` (a look-up principal built by
    :func:`user_probe` or :func:`client_probe`)."""

    def visible(self, session: Session, principal: Principal, patient_id: str) -> bool:
        """Whether the patient exists and ``principal`` may read it."""
        ...

    def choices(
        self, session: Session, principal: Principal, name: str | None
    ) -> list[PatientChoice]:
        """Patients ``principal`` may read, optionally whose name matches ``name``."""
        ...


class EnginePatients:
    """:class:`PatientDirectory` over the FHIR engine: the scope and sharing policies and
    the audit log see each look-up like any other read or search."""

    def __init__(self, engine: FhirEngine, base_url: str = "http://127.0.0.1:8000/fhir") -> None:
        self.engine = engine
        self.base_url = base_url

    def _request(
        self, principal: Principal, path: str, params: list[tuple[str, str]]
    ) -> FhirRequest:
        ctx = RequestContext(principal=principal, base_url=self.base_url)
        return FhirRequest("GET", path, params=params, context=ctx)

    def visible(self, session: Session, principal: Principal, patient_id: str) -> bool:
        try:
            resp = self.engine.dispatch(
                session, self._request(principal, f"Patient/{patient_id}", [])
            )
        except (FhirError, StoreError):
            return False
        return resp.status == 200

    def choices(
        self, session: Session, principal: Principal, name: str | None
    ) -> list[PatientChoice]:
        params = [("_count", str(PICKER_LIMIT)), ("_sort", "family,given")]
        if name and name.strip():
            params.append(("name", name.strip()))
        try:
            resp = self.engine.dispatch(session, self._request(principal, "Patient", params))
        except (FhirError, StoreError):
            return []
        out = []
        for entry in (resp.body or {}).get("entry") or []:
            res = entry.get("resource") or {}
            if res.get("resourceType") == "Patient" and res.get("id"):
                out.append(PatientChoice(res["id"], display_name(res), res.get("birthDate")))
        return out


def display_name(patient: dict[str, Any]) -> str:
    """A patient's name for the picker, family name first (Japanese order).

    >>> display_name({"name": [{"family": "山田", "given": ["花子"]}]})
    '山田 花子'
    >>> display_name({"name": [{"text": "ヤマダ ハナコ"}], "id": "p1"})
    'ヤマダ ハナコ'
    >>> display_name({"id": "p1"})
    'Patient/p1'
    """
    for name in patient.get("name") or []:
        if not isinstance(name, dict):
            continue
        if name.get("text"):
            return str(name["text"])
        parts = [name.get("family") or "", *(name.get("given") or [])]
        joined = " ".join(str(p) for p in parts if p)
        if joined:
            return joined
    return f"Patient/{patient.get('id')}"


# -- who looks a patient up ---------------------------------------------------------------


def user_probe(user: Any, client_id: str | None) -> Principal:
    """The person ``user`` (an ``auth_user`` row), allowed to read patients and nothing
    else: the sharing policy decides which."""
    return Principal(
        subject=user.id,
        kind="user",
        organization_id=user.organization_id,
        role=user.role,
        practitioner_id=user.practitioner_id,
        practitioner_role_id=user.practitioner_role_id,
        client_id=client_id,
        scopes=frozenset({"user/Patient.rs"}),
    )


def client_probe(client: Any) -> Principal:
    """The back end ``client`` (an ``auth_client`` row), allowed to read patients."""
    return Principal(
        subject=client.client_id,
        kind="client",
        organization_id=client.organization_id,
        client_id=client.client_id,
        scopes=frozenset({"system/Patient.rs"}),
    )


def require_patient(
    session: Session, auth: AuthServer, probe: Principal, patient_id: str | None
) -> str:
    """``patient_id``, once it names a patient ``probe`` may read; InvalidRequest if not."""
    if not patient_id:
        raise InvalidScope("patient/ scopes need a patient context: name the patient")
    directory = auth.patients
    if directory is None:
        raise InvalidScope("patient launch contexts are not available on this server")
    if not directory.visible(session, probe, patient_id):
        raise InvalidRequest(f"Patient/{patient_id} is not known to this caller")
    return patient_id


# -- the launch ticket between sign-in and the patient picker -------------------------------


def _ticket_context(request_fields: dict[str, str]) -> str:
    """Binds a ticket to one authorization request (client, redirect, scope, PKCE, state)."""
    canonical = json.dumps(request_fields, sort_keys=True, ensure_ascii=False)
    return "auth_launch_ticket:" + hashlib.sha256(canonical.encode()).hexdigest()


def seal_ticket(auth: AuthServer, request_fields: dict[str, str], user_id: str) -> str:
    """A ticket saying "``user_id`` signed in for this request", valid for
    :data:`TICKET_LIFETIME`; sealed with the keyring, so it can be neither read nor forged,
    nor used for another authorization request."""
    expires = int((auth.clock.now() + TICKET_LIFETIME).timestamp())
    payload = json.dumps({"user": user_id, "exp": expires})
    return auth.keyring.seal(payload, _ticket_context(request_fields))


def open_ticket(auth: AuthServer, request_fields: dict[str, str], ticket: str) -> str:
    """The user id a live ticket for this request carries; InvalidRequest otherwise."""
    try:
        payload = json.loads(str(auth.keyring.open(ticket, _ticket_context(request_fields))))
        user_id, expires = str(payload["user"]), int(payload["exp"])
    except (KeyringError, ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest("the sign-in is not valid for this request; start again") from exc
    if expires <= int(auth.clock.now().timestamp()):
        raise InvalidRequest("the sign-in has expired; start again")
    return user_id


__all__ = [
    "PICKER_LIMIT",
    "TICKET_LIFETIME",
    "EnginePatients",
    "PatientChoice",
    "PatientDirectory",
    "client_probe",
    "display_name",
    "open_ticket",
    "require_patient",
    "seal_ticket",
    "user_probe",
]
