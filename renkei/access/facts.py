"""Keeps the sharing-fact tables in step with Patient, CareTeam and Consent writes.

Extends the search index writer, so it runs in the same transaction as every resource
write.

Rules (what the policy relies on):

- **Owner**: ``Patient.managingOrganization`` (the registering organisation).
- **Team member**: a CareTeam with ``status = active`` and a ``subject`` Patient gives one row
  per organisation taking part: a participant whose ``member`` or ``onBehalfOf`` is an
  Organization, or whose ``member`` is a PractitionerRole of an organisation (resolved at
  write time). The row's period is the team's period narrowed by the participant's.
- **Consent**: ``status = active``, scope ``patient-privacy`` and a ``provision`` that permits
  (type ``permit`` or absent) gives one row per ``provision.actor`` that is an Organization
  or a CareTeam, or one ``*`` row (the whole care team) when it names no actor. Nested
  provisions are not interpreted (a narrower deny must be a separate inactive Consent).
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.access.models import access_consent, access_patient_owner, access_team_member
from renkei.access.policy import note_owner
from renkei.fhir.search.dates import DEFAULT_ZONE, date_range
from renkei.fhir.search.indexer import SearchIndexWriter
from renkei.store import pending
from renkei.store.models import resource

CONSENT_SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
_FACT_TYPES = ("Patient", "CareTeam", "Consent")


def _ref_id(ref: Any, res_type: str) -> str | None:
    """``{"reference": "Organization/o1"}`` -> ``"o1"`` (relative literal references only)."""
    if not isinstance(ref, dict):
        return None
    text = ref.get("reference")
    if not isinstance(text, str) or not text.startswith(f"{res_type}/"):
        return None
    rid = text[len(res_type) + 1 :].split("/", 1)[0]
    return rid or None


def _period(period: Any, zone: tzinfo) -> tuple[datetime | None, datetime | None]:
    if not isinstance(period, dict):
        return None, None
    start = end = None
    try:
        if period.get("start"):
            start = date_range(str(period["start"]), zone)[0]
        if period.get("end"):
            end = date_range(str(period["end"]), zone)[1]
    except ValueError:
        return None, None
    return start, end


def _narrow(
    outer: tuple[datetime | None, datetime | None], inner: tuple[datetime | None, datetime | None]
) -> tuple[datetime | None, datetime | None]:
    starts = [d for d in (outer[0], inner[0]) if d is not None]
    ends = [d for d in (outer[1], inner[1]) if d is not None]
    return (max(starts) if starts else None, min(ends) if ends else None)


class SharingFactWriter(SearchIndexWriter):
    """The search index writer that also maintains the access tables.

    A subclass (not a wrapper) so that everything expecting the search index writer
    (``renkei reindex``, checks on ``engine.indexer``) gets the facts too.
    """

    def __init__(self, zone: tzinfo = DEFAULT_ZONE) -> None:
        super().__init__(zone)

    def replace(
        self,
        session: Session,
        pk: int,
        res_type: str,
        content: dict[str, Any] | None,
        *,
        clear: bool = True,
    ) -> None:
        """The search rows, then the sharing facts of ``pk``. Both a write (``reindex``)
        and ``renkei reindex`` (``reindex_all``) come through here."""
        super().replace(session, pk, res_type, content, clear=clear)
        if res_type not in _FACT_TYPES:
            return
        if clear or content is None:  # a resource just created has no facts yet
            for table in (access_patient_owner, access_team_member, access_consent):
                session.execute(table.delete().where(table.c.resource_pk == pk))
        if content is None:
            return
        if res_type == "Patient":
            self._patient(session, pk, content)
        elif res_type == "CareTeam":
            self._careteam(session, pk, content)
        else:
            self._consent(session, pk, content)

    def _patient(self, session: Session, pk: int, content: dict[str, Any]) -> None:
        org = _ref_id(content.get("managingOrganization"), "Organization")
        if org and content.get("id"):
            # sent with the resource row, before any statement that may read it
            pending.defer(
                session,
                access_patient_owner,
                [{"resource_pk": pk, "patient_id": content["id"], "organization_id": org}],
                visible=True,
            )
            # the owner may write its patient: what the policy would read back from this row
            note_owner(session, org, content["id"])

    def _careteam(self, session: Session, pk: int, content: dict[str, Any]) -> None:
        patient = _ref_id(content.get("subject"), "Patient")
        if content.get("status") != "active" or not patient:
            return
        team_period = _period(content.get("period"), self.zone)
        rows: dict[str, tuple[datetime | None, datetime | None]] = {}
        for part in content.get("participant") or []:
            if not isinstance(part, dict):
                continue
            orgs = {
                _ref_id(part.get("member"), "Organization"),
                _ref_id(part.get("onBehalfOf"), "Organization"),
                self._role_org(session, _ref_id(part.get("member"), "PractitionerRole")),
            } - {None}
            span = _narrow(team_period, _period(part.get("period"), self.zone))
            for org in orgs:
                assert org is not None
                rows.setdefault(org, span)
        if rows:
            session.execute(
                access_team_member.insert(),
                [
                    {
                        "resource_pk": pk,
                        "careteam_id": content["id"],
                        "patient_id": patient,
                        "organization_id": org,
                        "start": span[0],
                        "end": span[1],
                    }
                    for org, span in rows.items()
                ],
            )

    @staticmethod
    def _role_org(session: Session, role_id: str | None) -> str | None:
        if role_id is None:
            return None
        content = session.execute(
            sa.select(resource.c.content).where(
                resource.c.res_type == "PractitionerRole",
                resource.c.res_id == role_id,
                resource.c.deleted.is_(False),
            )
        ).scalar_one_or_none()
        return _ref_id((content or {}).get("organization"), "Organization")

    def _consent(self, session: Session, pk: int, content: dict[str, Any]) -> None:
        patient = _ref_id(content.get("patient"), "Patient")
        if content.get("status") != "active" or not patient:
            return
        codes = {
            c.get("code")
            for c in (content.get("scope") or {}).get("coding") or []
            if isinstance(c, dict) and c.get("system") in (CONSENT_SCOPE_SYSTEM, None)
        }
        if "patient-privacy" not in codes:
            return
        provision = content.get("provision") or {}
        if provision.get("type", "permit") != "permit":
            return
        span = _period(provision.get("period"), self.zone)
        actors: set[tuple[str, str]] = set()
        for actor in provision.get("actor") or []:
            ref = actor.get("reference") if isinstance(actor, dict) else None
            for kind in ("Organization", "CareTeam"):
                rid = _ref_id(ref, kind)
                if rid:
                    actors.add((kind, rid))
        if not provision.get("actor"):
            actors.add(("*", "*"))
        if actors:
            session.execute(
                access_consent.insert(),
                [
                    {
                        "resource_pk": pk,
                        "consent_id": content["id"],
                        "patient_id": patient,
                        "actor_type": kind,
                        "actor_id": rid,
                        "start": span[0],
                        "end": span[1],
                    }
                    for kind, rid in sorted(actors)
                ],
            )


__all__ = ["CONSENT_SCOPE_SYSTEM", "SharingFactWriter"]
