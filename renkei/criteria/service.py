"""Managing agreed escalation rules, and finding the rules that apply to a patient.

Who may manage which rules:

- a facility's rules (``scope = organization``): people and back ends of that
  organisation (``principal.organization_id``), and the local operator;
- a patient's rules (``scope = patient``): whoever may write that patient's Observations
  under the access policy (SMART scopes, care team and consent). A caller who may not
  even read the patient gets 404, as everywhere else in the API.

Every function takes the caller's session and never commits.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.access.models import access_team_member
from renkei.clock import Clock
from renkei.criteria.errors import InvalidRule, NotPermitted, RuleNotFound
from renkei.criteria.models import criteria_rule
from renkei.criteria.rules import RuleError, parse_rule
from renkei.fhir.context import RequestContext
from renkei.fhir.engine import FhirEngine
from renkei.fhir.outcome import FhirError
from renkei.store import pending
from renkei.store.errors import StoreError

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _bare(value: str | None, res_type: str) -> str | None:
    """``"Organization/o1"`` or ``"o1"`` -> ``"o1"``; anything else is a 400.

    >>> _bare("Organization/o1", "Organization"), _bare("o1", "Organization")
    ('o1', 'o1')
    """
    if value is None:
        return None
    bare = value[len(res_type) + 1 :] if value.startswith(f"{res_type}/") else value
    if not _ID.fullmatch(bare):
        raise InvalidRule(f"{res_type.lower()} must be {res_type}/<id> (got {value!r})")
    return bare


def _scope_of(organization: str | None, patient: str | None) -> tuple[str, str]:
    org, pid = _bare(organization, "Organization"), _bare(patient, "Patient")
    if (org is None) == (pid is None):
        raise InvalidRule("give either organization (a facility's rule) or patient, not both")
    return ("organization", org) if org is not None else ("patient", pid or "")


# -- who may ------------------------------------------------------------------------------


def _is_operator(ctx: RequestContext) -> bool:
    p = ctx.principal
    return getattr(p, "kind", None) == "operator" and not getattr(p, "organization_id", None)


def _member_of(ctx: RequestContext, org_id: str) -> bool:
    own = _bare(getattr(ctx.principal, "organization_id", None), "Organization")
    return _is_operator(ctx) or own == org_id


def _check_patient(
    engine: FhirEngine, session: Session, ctx: RequestContext, pid: str, *, write: bool
) -> None:
    """404 unless the caller may read Patient/pid; 403 unless they may also write its data."""
    try:
        stored = engine.repository(session).read("Patient", pid)
    except StoreError as exc:
        raise RuleNotFound(f"Patient/{pid} is not known") from exc
    if not engine.policy.can_read(session, ctx, stored):
        raise RuleNotFound(f"Patient/{pid} is not known")
    if not write:
        return
    probe = {"resourceType": "Observation", "subject": {"reference": f"Patient/{pid}"}}
    try:
        engine.policy.authorize(ctx, "create", "Observation")
        engine.policy.check_write(session, ctx, "Observation", probe, None)
    except FhirError as exc:
        raise NotPermitted(
            f"managing Patient/{pid}'s escalation rules needs the right to write its "
            f"Observations: {exc.diagnostics}"
        ) from exc


def _check_scope(
    engine: FhirEngine,
    session: Session,
    ctx: RequestContext,
    scope: str,
    scope_id: str,
    *,
    write: bool,
) -> None:
    if scope == "patient":
        _check_patient(engine, session, ctx, scope_id, write=write)
    elif not _member_of(ctx, scope_id):
        raise NotPermitted(
            f"only members of Organization/{scope_id} (or the operator) manage its rules"
        )


# -- the API's operations -----------------------------------------------------------------


def create_rule(
    engine: FhirEngine,
    session: Session,
    ctx: RequestContext,
    clock: Clock,
    *,
    organization: str | None,
    patient: str | None,
    rule: Any,
) -> dict[str, Any]:
    """Validate ``rule`` with :func:`~renkei.criteria.rules.parse_rule` and store it.

    The rule's ``id`` is assigned here (as FHIR create ignores a client's id); its normal
    JSON form is what is stored and returned.
    """
    scope, scope_id = _scope_of(organization, patient)
    if not isinstance(rule, dict):
        raise InvalidRule("rule must be a JSON object (see docs/urgent-calls.md)")
    _check_scope(engine, session, ctx, scope, scope_id, write=True)
    if scope == "organization":
        try:
            engine.repository(session).read("Organization", scope_id)
        except StoreError as exc:
            raise InvalidRule(f"Organization/{scope_id} is not known") from exc
    rule_id = uuid.uuid4().hex
    try:
        parsed = parse_rule({**rule, "id": rule_id})
    except RuleError as exc:
        raise InvalidRule(str(exc)) from exc
    values = {
        "id": rule_id,
        "scope": scope,
        "scope_id": scope_id,
        "rule": parsed.to_json(),
        "active": True,
        "created_by": str(getattr(ctx.principal, "subject", None) or "anonymous"),
        "created_at": clock.now(),
    }
    session.execute(criteria_rule.insert().values(**values))
    pending.unit_cache(session, _RULES_CACHE).clear()
    return _view(values)


def list_rules(
    engine: FhirEngine,
    session: Session,
    ctx: RequestContext,
    clock: Clock,
    *,
    organization: str | None,
    patient: str | None,
) -> list[dict[str, Any]]:
    """A facility's active rules, or every active rule that applies to a patient now
    (its own and those of the facilities on its active care team)."""
    scope, scope_id = _scope_of(organization, patient)
    _check_scope(engine, session, ctx, scope, scope_id, write=False)
    if scope == "patient":
        return [_view(r._mapping) for r in rules_for(session, scope_id, clock)]
    r = criteria_rule.c
    rows = session.execute(
        sa.select(criteria_rule)
        .where(r.scope == "organization", r.scope_id == scope_id, r.active.is_(True))
        .order_by(r.created_at, r.id)
    )
    return [_view(row._mapping) for row in rows]


def get_rule(
    engine: FhirEngine, session: Session, ctx: RequestContext, rule_id: str
) -> dict[str, Any]:
    return _view(_load_visible(engine, session, ctx, rule_id)._mapping)


def deactivate_rule(
    engine: FhirEngine, session: Session, ctx: RequestContext, clock: Clock, rule_id: str
) -> dict[str, Any]:
    """Stop a rule from firing; it stays readable (calls it opened still name it)."""
    row = _load_visible(engine, session, ctx, rule_id, lock=True)
    _check_scope(engine, session, ctx, row.scope, row.scope_id, write=True)
    if not row.active:
        return _view(row._mapping)
    values = {
        "active": False,
        "deactivated_by": str(getattr(ctx.principal, "subject", None) or "anonymous"),
        "deactivated_at": clock.now(),
    }
    session.execute(criteria_rule.update().where(criteria_rule.c.id == rule_id).values(**values))
    pending.unit_cache(session, _RULES_CACHE).clear()
    return _view({**row._mapping, **values})


def _load_visible(
    engine: FhirEngine, session: Session, ctx: RequestContext, rule_id: str, *, lock: bool = False
) -> Any:
    stmt = sa.select(criteria_rule).where(criteria_rule.c.id == rule_id)
    row = session.execute(stmt.with_for_update() if lock else stmt).first()
    if row is None:
        raise RuleNotFound(f"rule {rule_id} is not known")
    try:
        _check_scope(engine, session, ctx, row.scope, row.scope_id, write=False)
    except NotPermitted as exc:
        raise RuleNotFound(f"rule {rule_id} is not known") from exc
    return row


def _view(row: Any) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": row["id"],
        "scope": row["scope"],
        "organization": f"Organization/{row['scope_id']}"
        if row["scope"] == "organization"
        else None,
        "patient": f"Patient/{row['scope_id']}" if row["scope"] == "patient" else None,
        "rule": row["rule"],
        "active": bool(row["active"]),
        "created_by": row["created_by"],
        "created_at": iso(row["created_at"]),
        "deactivated_by": row.get("deactivated_by"),
        "deactivated_at": iso(row.get("deactivated_at")),
    }


# -- the rules that apply -------------------------------------------------------------------


#: the unit cache of :func:`rules_for`: patient id -> rules, and whether any rule is active
_RULES_CACHE = "criteria.rules_for"
_ANY = ("any active",)
_ANY_ACTIVE = (
    sa.select(criteria_rule.c.id)
    .where(criteria_rule.c.active.is_(True))
    .limit(1)
    .execution_options(**pending.reads(criteria_rule))
)


def rules_for(session: Session, patient_id: str, clock: Clock) -> list[Any]:
    """Active rules of the patient and of the facilities on its active CareTeam, in one
    query (``ix_criteria_rule_scope``; ``ix_access_team_org`` for the team check).

    Team membership is read from the sharing facts (``access_team_member``), the same
    rows the access policy uses: a participant Organization, ``onBehalfOf``, or the
    organisation of a participant PractitionerRole, within the team's period.
    """
    cache = pending.unit_cache(session, _RULES_CACHE)
    if patient_id in cache:  # a Bundle posting many readings for one patient asks once
        return list(cache[patient_id])
    if _ANY not in cache:  # no active rule at all: no query per patient in this unit
        cache[_ANY] = session.execute(_ANY_ACTIVE).first() is not None
    if not cache[_ANY]:
        return []
    r, t = criteria_rule.c, access_team_member.c
    now = clock.now()
    on_team = (
        sa.select(t.id)
        .where(
            t.organization_id == r.scope_id,
            t.patient_id == patient_id,
            sa.or_(t.start.is_(None), t.start <= now),
            sa.or_(t.end.is_(None), t.end >= now),
        )
        .exists()
    )
    own = sa.select(criteria_rule).where(
        r.scope == "patient", r.scope_id == patient_id, r.active.is_(True)
    )
    facility = sa.select(criteria_rule).where(
        r.scope == "organization", r.active.is_(True), on_team
    )
    union = sa.union_all(own, facility).subquery()
    # reads only these two tables: resource rows the unit deferred need not be sent first
    stmt = (
        sa.select(union)
        .order_by(union.c.created_at, union.c.id)
        .execution_options(**pending.reads(criteria_rule, access_team_member))
    )
    found = cache[patient_id] = list(session.execute(stmt))
    return list(found)


__all__ = ["create_rule", "deactivate_rule", "get_rule", "list_rules", "rules_for"]
