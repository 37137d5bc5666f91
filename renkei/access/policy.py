"""The sharing policy: which organisation sees which patient, and what each role may do.

- An organisation sees the patients it registered (``Patient.managingOrganization``) as
  its own, as in its own EHR.
- Another organisation sees a patient's compartment only while it takes part in the
  patient's active CareTeam (period covering now) *and* the patient's sharing Consent
  is active (period covering now) and covers that organisation, that CareTeam, or the
  whole team.
- A practitioner with an active duty grant (urgent call) may read that patient.
- A clinician (``break_glass`` roles in roles.yaml) who states a reason may read any
  patient for that request; the audit record carries the reason and the BTG flag.
- Role limits (roles.yaml) say which interactions each role may use on each type.

Hidden resources read as 404 and never appear in searches; writes that touch a patient
the caller may not write are 403. ``principal=None`` means authentication is not wired
in (embedded demo, engine tests): nothing is restricted.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.access.models import (
    access_consent,
    access_grant,
    access_patient_owner,
    access_team_member,
)
from renkei.access.roles import RoleLimits
from renkei.clock import Clock
from renkei.fhir.compartment import patient_ids
from renkei.fhir.context import RequestContext
from renkei.fhir.outcome import Forbidden
from renkei.fhir.policy import WITHIN_PATIENT
from renkei.store import pending
from renkei.store.models import idx_reference, resource
from renkei.store.repository import StoredResource

_CACHE_KEY = "access.visible"
#: who shares a record (care team, consent) is decided by the patient's own organisation
_OWNER_ONLY = frozenset({"CareTeam", "Consent"})


def _strip(ref: str | None, prefix: str) -> str | None:
    if not ref:
        return None
    return ref[len(prefix) :] if ref.startswith(prefix) else ref


def _compartment_params() -> dict[str, tuple[str, ...]]:
    import json
    from importlib import resources as pkg_resources

    data = pkg_resources.files("renkei.fhir") / "data" / "compartmentdefinition-patient.json"
    definition = json.loads(data.read_text("utf-8"))
    return {
        item["code"]: tuple(item["param"])
        for item in definition.get("resource", [])
        if item.get("param")
    }


class SharingPolicy:
    """:class:`~renkei.fhir.policy.AccessPolicy` for a network of organisations."""

    def __init__(self, clock: Clock, roles: RoleLimits | None = None) -> None:
        self.clock = clock
        self.roles = roles or RoleLimits.load()
        self._params = _compartment_params()
        self._visible = {w: _visible_union(write=w, one=False) for w in (False, True)}
        self._may_one = {w: _visible_union(write=w, one=True) for w in (False, True)}

    # -- who is asking ---------------------------------------------------------------------

    @staticmethod
    def _org(p: Any) -> str | None:
        return _strip(getattr(p, "organization_id", None), "Organization/")

    @classmethod
    def _unrestricted(cls, p: Any) -> bool:
        """No caller (authentication not wired in) or the local operator (``renkei demo``,
        admin commands, workers: ``kind == "operator"`` without an organisation)."""
        return p is None or (getattr(p, "kind", None) == "operator" and cls._org(p) is None)

    def _breaking_glass(self, p: Any) -> bool:
        return bool(getattr(p, "purpose_of_use", None)) and self.roles.may_break_glass(
            getattr(p, "role", None)
        )

    # -- AccessPolicy ----------------------------------------------------------------------

    def authorize(self, ctx: RequestContext, interaction: str, res_type: str | None) -> None:
        p = ctx.principal
        if p is None:
            return
        role = getattr(p, "role", None)
        if getattr(p, "purpose_of_use", None) and not self.roles.may_break_glass(role):
            raise Forbidden(f"role {role!r} may not break the glass (clinicians only)")
        if not self.roles.allows(role, interaction, res_type):
            raise Forbidden(f"role {role!r} may not {interaction} {res_type or 'resources'}")

    def can_read(self, session: Session, ctx: RequestContext, stored: StoredResource) -> bool:
        p = ctx.principal
        if self._unrestricted(p):
            return True
        patients = self._patients_of(session, stored.content)
        if not patients:
            return True  # not patient data (Organization, Practitioner, ...)
        if self._breaking_glass(p):
            return True
        return any(self._may(session, ctx, pid, write=False) for pid in patients)

    @staticmethod
    def _patients_of(session: Session, content: dict[str, Any] | None) -> set[str]:
        return record_patients(session, content)

    def check_write(
        self,
        session: Session,
        ctx: RequestContext,
        res_type: str,
        new: dict[str, Any] | None,
        old: StoredResource | None,
    ) -> None:
        p = ctx.principal
        if self._unrestricted(p):
            return
        org = self._org(p)
        if res_type == "Patient":
            self._check_patient_write(session, ctx, new, old, org)
            return
        patients = self._patients_of(session, new) | self._patients_of(
            session, old.content if old else None
        )
        if res_type in _OWNER_ONLY:
            for pid in sorted(patients):
                if not self._owns(session, org, pid):
                    raise Forbidden(
                        f"only the patient's own organisation manages its {res_type} "
                        "(who shares the record is the registering organisation's decision)"
                    )
            return
        for pid in sorted(patients):
            if not self._may(session, ctx, pid, write=True):
                raise Forbidden(
                    "this organisation does not share the care of the patient this "
                    f"{res_type} belongs to (care team and consent)"
                )

    def _check_patient_write(
        self,
        session: Session,
        ctx: RequestContext,
        new: dict[str, Any] | None,
        old: StoredResource | None,
        org: str | None,
    ) -> None:
        """A patient record is registered and maintained by its own organisation."""
        if old is not None and old.content is not None:
            owner = _strip(
                (old.content.get("managingOrganization") or {}).get("reference"), "Organization/"
            )
            if owner is None or owner != org:
                raise Forbidden("only the registering organisation may change this Patient")
        if new is not None:
            owner = _strip(
                (new.get("managingOrganization") or {}).get("reference"), "Organization/"
            )
            if org is None or owner != org:
                raise Forbidden(
                    "a Patient is registered by the caller's own organisation: "
                    f"set managingOrganization to Organization/{org}"
                )

    def search_filter(self, session: Session, ctx: RequestContext, res_type: str) -> Any:
        p = ctx.principal
        if self._unrestricted(p) or self._breaking_glass(p):
            return None
        params = self._params.get(res_type)
        within = ctx.extra.get(WITHIN_PATIENT)
        if params and within is not None and self._may(session, ctx, within, write=False):
            # a visible patient's whole compartment is visible: one indexed check, not a
            # condition proportional to every patient the organisation can see
            return None
        visible = self.visible_patients(ctx, write=False)
        if res_type == "Patient":
            return resource.c.res_id.in_(visible)
        if not params:
            return None
        # Correlated EXISTS, probed per row through ix_idx_reference_by_resource when the
        # planner finds that cheaper than hashing: an uncorrelated ``pk NOT IN (every
        # patient-linked row of the type)`` is rescanned for each row once its hash no
        # longer fits work_mem (12 s for one search at 300,000 Observations).
        ref = idx_reference.c
        linked = sa.select(sa.literal(1)).where(
            ref.resource_pk == resource.c.pk,
            ref.param.in_(params),
            ref.target_type == "Patient",
            ref.res_type == res_type,
        )
        return sa.or_(
            linked.where(ref.target_id.in_(visible)).exists(),
            ~linked.exists(),
        )

    def audit_filter(self, session: Session, ctx: RequestContext) -> Any:
        """Audit records an auditor may read: their organisation's own accesses, and every
        access to a patient their organisation may see. No organisation: all (system)."""
        from renkei.audit.models import audit_patient, audit_record

        org = self._org(ctx.principal)
        if ctx.principal is None or org is None:
            return None
        visible = self.visible_patients(ctx, write=False)
        return sa.or_(
            audit_record.c.organization_id == org,
            audit_record.c.seq.in_(
                sa.select(audit_patient.c.seq).where(audit_patient.c.patient_id.in_(visible))
            ),
        )

    @staticmethod
    def _owns(session: Session, org: str | None, patient_id: str) -> bool:
        if org is None:
            return False
        owner = access_patient_owner.c
        stmt = sa.select(owner.patient_id).where(
            owner.organization_id == org, owner.patient_id == patient_id
        )
        return session.execute(stmt.limit(1)).first() is not None

    # -- visibility ------------------------------------------------------------------------

    def _params_of(self, ctx: RequestContext) -> dict[str, Any]:
        p = ctx.principal
        return {
            "acc_org": self._org(p),
            "acc_now": self.clock.now(),
            "acc_role": _strip(getattr(p, "practitioner_role_id", None), "PractitionerRole/"),
            "acc_subject": getattr(p, "subject", None),
        }

    def visible_patients(self, ctx: RequestContext, *, write: bool) -> Any:
        """SQL: ids of the patients the caller may read (or write) now."""
        return self._visible[write].params(**self._params_of(ctx))

    def _may(self, session: Session, ctx: RequestContext, patient_id: str, *, write: bool) -> bool:
        """Cached per unit of work (shared by a Bundle's entries), positive answers only (a
        Bundle may create the team later)."""
        cache = pending.unit_cache(session, _CACHE_KEY)
        params = {**self._params_of(ctx), "acc_pid": patient_id}
        # What the organisation may see (owned; care team + consent) holds for all its
        # people: asked once per organisation (a websocket batch fans out to many users of
        # one station). Only the person's own duty grants are asked per person, and only
        # when the organisation may not.
        org_key = (params["acc_org"], patient_id)
        if org_key in cache:
            return True
        if session.execute(self._may_one[True], params).first() is not None:
            cache[org_key] = True
            return True
        if write:
            return False
        key = (params["acc_org"], params["acc_role"], params["acc_subject"], patient_id)
        if key in cache:
            return True
        if session.execute(self._may_one[False], params).first() is None:
            return False
        cache[key] = True
        return True


def note_owner(session: Session, org: str, patient_id: str) -> None:
    """``org`` has just been recorded as ``patient_id``'s owner in this unit of work: the
    answer :meth:`SharingPolicy._may` would read back (owners may read and write), without
    the query. Dropped with the unit's other cached answers on any rollback."""
    pending.unit_cache(session, _CACHE_KEY)[(org, patient_id)] = True


def record_patients(session: Session, content: dict[str, Any] | None) -> set[str]:
    """Ids of the patients whose record ``content`` is part of: Patient compartment
    membership; a Binary takes its ``securityContext``'s (one level).

    >>> binary = {"resourceType": "Binary", "securityContext": {"reference": "Patient/p1"}}
    >>> sorted(record_patients(None, binary))
    ['p1']
    """
    if not content or content.get("resourceType") != "Binary":
        return patient_ids(content)
    ref = (content.get("securityContext") or {}).get("reference") or ""
    res_type, _, res_id = ref.partition("/")
    if not res_type or not res_id:
        return set()
    if res_type == "Patient":
        return {res_id.split("/", 1)[0]}
    target = session.execute(
        sa.select(resource.c.content).where(
            resource.c.res_type == res_type, resource.c.res_id == res_id.split("/", 1)[0]
        )
    ).scalar_one_or_none()
    return patient_ids(target)


def _visible_union(*, write: bool, one: bool) -> Any:
    """The visibility query, built once with bind parameters (``acc_*``).

    Parts: patients the organisation owns; patients whose active care team includes the
    organisation while a consent covering it (or the team, or everyone on it) is active;
    for reads, patients of an active duty grant. ``one`` restricts each part to
    ``acc_pid`` so that a single check uses the indexes.
    """
    org: Any = sa.bindparam("acc_org")
    now: Any = sa.bindparam("acc_now")
    pid: Any = sa.bindparam("acc_pid") if one else None
    owner = access_patient_owner.c
    owned = sa.select(owner.patient_id).where(owner.organization_id == org)
    t, c = access_team_member.c, access_consent.c
    shared = (
        sa.select(t.patient_id)
        .join(access_consent, c.patient_id == t.patient_id)
        .where(
            t.organization_id == org,
            sa.or_(t.start.is_(None), t.start <= now),
            sa.or_(t.end.is_(None), t.end >= now),
            sa.or_(c.start.is_(None), c.start <= now),
            sa.or_(c.end.is_(None), c.end >= now),
            sa.or_(
                c.actor_type == "*",
                sa.and_(c.actor_type == "Organization", c.actor_id == org),
                sa.and_(c.actor_type == "CareTeam", c.actor_id == t.careteam_id),
            ),
        )
    )
    if pid is not None:
        owned = owned.where(owner.patient_id == pid)
        shared = shared.where(t.patient_id == pid)
    parts = [owned, shared]
    if not write:
        g = access_grant.c
        granted = sa.select(g.patient_id).where(
            sa.or_(
                g.practitioner_role_id == sa.bindparam("acc_role"),
                g.subject == sa.bindparam("acc_subject"),
            ),
            g.start <= now,
            g.until > now,
            g.revoked.is_(None),
        )
        if pid is not None:
            granted = granted.where(g.patient_id == pid)
        parts.append(granted)
    union = sa.union_all(*parts)
    return union.limit(1) if one else union


__all__ = ["SharingPolicy", "note_owner", "record_patients"]
