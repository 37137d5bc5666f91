"""Bringing an organisation onto a patient's care team, and the patient's consent to share.

These are convenience steps over plain FHIR writes (CareTeam, Consent) made through the
engine as the caller, so the same access rules, versioning, audit and notifications apply
as to any other write. The Consent shape is the one the sharing policy reads:
scope ``patient-privacy``, ``provision.type = permit``, ``provision.period``, and
``provision.actor`` naming an Organization or the whole CareTeam.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from renkei.collab.errors import CollabError
from renkei.fhir.context import FhirRequest, FhirResponse, RequestContext
from renkei.fhir.engine import FhirEngine
from renkei.fhir.outcome import OutcomeError

CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_CATEGORY = ("http://loinc.org", "59284-0")
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


def _call(engine: FhirEngine, session: Session, req: FhirRequest) -> FhirResponse:
    resp = engine.dispatch(session, req)
    if resp.status >= 400:
        raise OutcomeError(resp.status, resp.body, f"{req.method} {req.path}: ")
    return resp


def active_care_team(
    engine: FhirEngine, session: Session, ctx: RequestContext, patient_id: str
) -> dict[str, Any] | None:
    bundle = engine.search.search(
        session, ctx, "CareTeam", [("patient", patient_id), ("status", "active")]
    )
    teams = [e["resource"] for e in bundle.get("entry", []) if e.get("resource")]
    return teams[0] if teams else None


def invite_organization(
    engine: FhirEngine,
    session: Session,
    ctx: RequestContext,
    patient_id: str,
    organization_id: str,
    *,
    role: str | None = None,
) -> dict[str, Any]:
    """Add the organisation to the patient's active CareTeam (made if there is none)."""
    engine.repository(session).read("Organization", organization_id)
    participant: dict[str, Any] = {"member": {"reference": f"Organization/{organization_id}"}}
    if role:
        participant["role"] = [{"text": role}]
    team = active_care_team(engine, session, ctx, patient_id)
    if team is None:
        body = {
            "resourceType": "CareTeam",
            "status": "active",
            "name": "在宅ケアチーム",
            "subject": {"reference": f"Patient/{patient_id}"},
            "participant": [participant],
        }
        resp = _call(engine, session, FhirRequest("POST", "CareTeam", body=body, context=ctx))
        assert resp.body is not None
        return resp.body
    members = {(p.get("member") or {}).get("reference") for p in team.get("participant") or []}
    if f"Organization/{organization_id}" in members:
        return team
    body = {**team, "participant": [*(team.get("participant") or []), participant]}
    version = (team.get("meta") or {}).get("versionId")
    resp = _call(
        engine,
        session,
        FhirRequest(
            "PUT",
            f"CareTeam/{team['id']}",
            headers={"if-match": f'W/"{version}"'} if version else {},
            body=body,
            context=ctx,
        ),
    )
    assert resp.body is not None
    return resp.body


def record_consent(
    engine: FhirEngine,
    session: Session,
    ctx: RequestContext,
    patient_id: str,
    *,
    actors: list[str],
    start: date,
    end: date | None = None,
    obtained_by: str | None = None,
    document: str | None = None,
) -> dict[str, Any]:
    """Record the patient's consent to share with ``actors`` (Organization/… or CareTeam/…)."""
    if not actors:
        raise CollabError("name at least one organisation or the care team to share with")
    for actor in actors:
        if not (actor.startswith("Organization/") or actor.startswith("CareTeam/")):
            raise CollabError(f"{actor!r}: consent is given to an Organization or a CareTeam")
    if end is not None and end < start:
        raise CollabError("the consent period ends before it starts")
    period: dict[str, str] = {"start": start.isoformat()}
    if end is not None:
        period["end"] = end.isoformat()
    body: dict[str, Any] = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": CONSENT_CATEGORY[0], "code": CONSENT_CATEGORY[1]}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": engine.clock.now().isoformat(timespec="seconds"),
        "performer": [{"reference": f"Patient/{patient_id}"}],
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "period": period,
            "actor": [
                {
                    "role": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
                    "reference": {"reference": actor},
                }
                for actor in actors
            ],
        },
    }
    if obtained_by:
        body["organization"] = [{"reference": obtained_by}]
    if document:
        body["sourceReference"] = {"reference": document}
    resp = _call(engine, session, FhirRequest("POST", "Consent", body=body, context=ctx))
    assert resp.body is not None
    return resp.body


def revoke_consent(
    engine: FhirEngine, session: Session, ctx: RequestContext, consent_id: str
) -> dict[str, Any]:
    """Withdraw a consent: it becomes ``inactive`` (a new version; the old one stays)."""
    current = engine.repository(session).read("Consent", consent_id).content or {}
    if current.get("status") == "inactive":
        return current
    body = {**current, "status": "inactive"}
    version = (current.get("meta") or {}).get("versionId")
    resp = _call(
        engine,
        session,
        FhirRequest(
            "PUT",
            f"Consent/{consent_id}",
            headers={"if-match": f'W/"{version}"'},
            body=body,
            context=ctx,
        ),
    )
    assert resp.body is not None
    return resp.body
