"""Who is calling: the auth package's view of a user or an EHR back-end client."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request.

    ``organization_id``, ``practitioner_id`` and ``practitioner_role_id`` are bare FHIR
    logical ids (``"abc"`` for ``Organization/abc``). A back-end client (``kind ==
    "client"``) has ``organization_id`` and ``client_id`` but no role or practitioner; a
    person (``kind == "user"``) has all of them, ``subject`` being the account id.
    ``scopes`` are SMART scopes as granted (``user/Patient.rs``, ``system/*.cruds``);
    ``token_id`` is the access token's ``jti``. ``patient_id`` is the token's patient launch
    context (SMART ``patient``): its ``patient/`` scopes reach that patient's compartment
    only. Built by ``renkei.auth.oauth.bearer_principal``.
    """

    subject: str  # user id or client id
    kind: str  # "user" | "client" | "operator"
    organization_id: str | None = None
    role: str | None = (
        None  # doctor, nurse, pharmacist, careworker, caremanager, coordinator, admin
    )
    practitioner_id: str | None = None
    practitioner_role_id: str | None = None
    client_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    token_id: str | None = None
    #: a break-the-glass reason stated for this request, if any
    purpose_of_use: str | None = None
    #: the patient a patient launch context binds the token to (bare id), if any
    patient_id: str | None = None


#: The operator acting through local tools (``renkei demo``, ``renkei org create``, workers):
#: passes the scope check; instance-level sharing rules still see ``kind == "operator"``.
OPERATOR = Principal(subject="operator", kind="operator", scopes=frozenset({"system/*.cruds"}))
