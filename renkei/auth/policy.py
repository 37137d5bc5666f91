"""``ScopePolicy``: SMART scopes checked on every FHIR interaction, before any sharing rule.

Wraps an inner :class:`~renkei.fhir.policy.AccessPolicy` (the care-team/consent sharing
policy; ``AllowAll`` until it is plugged in). This layer answers "may this token do this
kind of thing to this type of resource at all"; the inner one answers "to this patient's
data". Batch and transaction entries re-enter the engine one by one, so each entry meets
``authorize`` on its own; resources pulled in by ``_include``/``_revinclude`` and history
entries meet ``can_read``, which requires read scope on their type.

Contexts: a back end (``kind == "client"``) is granted ``system/`` scopes, a person
``user/`` scopes. Either may also hold ``patient/`` scopes when its token is bound to a
patient launch context (``Principal.patient_id``; without one they grant nothing). The
local operator (``kind == "operator"``) passes.

A ``system/`` or ``user/`` grant reaches every resource of its type. A ``patient/`` grant
reaches only the resources in that patient's compartment
(https://hl7.org/fhir/R4/compartmentdefinition-patient.html), the Patient itself included;
SMART App Launch: "patient/*.rs: permission to read and search any resource for the
current patient". Where a patient grant is the only one that applies:

- a resource outside the compartment reads as absent (404, like any hidden resource), and
  searches never match, count or ``_include`` it (the SQL condition of ``search_filter``);
- a write must leave the resource in that patient's compartment and in no other's (403);
- types that are never in a patient compartment (Organization, Practitioner...) are not
  reached; a Binary is, through its ``securityContext``, by read only;
- the audit log (AuditEvent, served outside the resource tables) is not served at all.

The sharing policy still applies after this layer: a patient grant never widens what the
person or organisation may see.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.access import record_patients
from renkei.auth.principal import Principal
from renkei.auth.scopes import INTERACTION_PERMISSION, PERMISSIONS, ResourceScope, resource_scopes
from renkei.fhir.context import RequestContext
from renkei.fhir.outcome import Forbidden, Unauthorized
from renkei.fhir.policy import AccessPolicy
from renkei.fhir.search.compartment import compartment_params
from renkei.store.models import idx_reference, resource
from renkei.store.repository import StoredResource

#: Sent with every 401 (RFC 6750 §3).
WWW_AUTHENTICATE = 'Bearer realm="renkei"'
_INSUFFICIENT = {"WWW-Authenticate": f'{WWW_AUTHENTICATE}, error="insufficient_scope"'}
#: the unrestricted context of each kind of caller
_CONTEXTS = {"client": ("system",), "user": ("user",)}
#: where ``authorize`` leaves the interaction, for ``can_read`` of the same request
_KEY = "scope.interaction"
_WRITES = ("create", "update", "patch", "delete")
#: types served outside the resource tables, where no compartment condition can apply
_OUTSIDE_COMPARTMENT_FILTERS = frozenset({"AuditEvent"})

#: how far a token reaches on one type: every resource, one patient's compartment, nothing
ALL = "all"
PATIENT = "patient"


def _principal(ctx: RequestContext) -> Principal:
    principal = ctx.principal
    if not isinstance(principal, Principal):
        raise Unauthorized(
            "a bearer access token is required", headers={"WWW-Authenticate": WWW_AUTHENTICATE}
        )
    return principal


def _contexts(principal: Principal) -> tuple[str, ...]:
    return _CONTEXTS.get(principal.kind, ())


@lru_cache(maxsize=1024)
def _grants(scopes: frozenset[str]) -> tuple[ResourceScope, ...]:
    return tuple(resource_scopes(sorted(scopes)))


def reach(principal: Principal, res_type: str | None, letters: str) -> str | None:
    """How far one of ``letters`` on ``res_type`` goes for this caller.

    :data:`ALL` when a grant in the caller's own context (``system/``, ``user/``) gives it,
    else :data:`PATIENT` when a ``patient/`` grant does and the token has a patient, else
    None. ``res_type=None`` (system-level interactions) needs a wildcard grant.

    >>> p = Principal("u1", "user", scopes=frozenset({"user/Patient.r", "patient/*.rs"}),
    ...               patient_id="p1")
    >>> reach(p, "Patient", "r"), reach(p, "Observation", "r"), reach(p, "Observation", "c")
    ('all', 'patient', None)
    """
    wide = _contexts(principal)
    grants = _grants(principal.scopes)
    if any(g.context in wide and any(g.allows(res_type, p) for p in letters) for g in grants):
        return ALL
    if principal.patient_id and any(
        g.context == "patient" and any(g.allows(res_type, p) for p in letters) for g in grants
    ):
        return PATIENT
    return None


def compartment_condition(res_type: str, patient_id: str) -> Any:
    """SQL: rows of ``res_type`` in ``Patient/patient_id``'s compartment, through the
    reference index (the same links ``Patient/[id]/[type]`` searches use)."""
    if res_type == "Patient":
        return resource.c.res_id == patient_id
    params = compartment_params("Patient", res_type)
    if not params:
        return sa.false()
    ref = idx_reference.c
    linked = sa.select(ref.resource_pk).where(
        ref.res_type == res_type,
        ref.param.in_(params),
        ref.target_type == "Patient",
        ref.target_id == patient_id,
    )
    return resource.c.pk.in_(linked)


class ScopePolicy:
    """AccessPolicy that enforces SMART v2 scopes, then defers to ``inner``."""

    def __init__(self, inner: AccessPolicy) -> None:
        self.inner = inner

    def authorize(self, ctx: RequestContext, interaction: str, res_type: str | None) -> None:
        principal = _principal(ctx)
        ctx.extra[_KEY] = (interaction, res_type)
        if principal.kind != "operator":
            self._check_scope(principal, interaction, res_type)
        self.inner.authorize(ctx, interaction, res_type)

    def _check_scope(self, principal: Principal, interaction: str, res_type: str | None) -> None:
        if interaction in ("capabilities", "batch", "transaction"):
            return  # a Bundle's entries are each authorized as they run
        perm = INTERACTION_PERMISSION.get(interaction)
        if perm is None:
            raise Forbidden(f"interaction {interaction!r} is not permitted by any scope")
        # res_type None (system-level search, history, operation) needs a wildcard grant
        found = reach(principal, res_type, perm)
        if found is None:
            contexts = _contexts(principal) + (("patient",) if principal.patient_id else ())
            target = res_type or "all types"
            raise Forbidden(
                f"the token's scopes do not allow {interaction} on {target} "
                f"(needs {'/'.join(contexts) or 'a'} scope with '{perm}')",
                headers=_INSUFFICIENT,
            )
        if found == PATIENT and res_type in _OUTSIDE_COMPARTMENT_FILTERS:
            raise Forbidden(
                f"{res_type} is not served under patient/ scopes (the token's patient context "
                "cannot be applied to it)",
                headers=_INSUFFICIENT,
            )

    # -- reads -----------------------------------------------------------------------------

    def can_read(self, session: Session, ctx: RequestContext, stored: StoredResource) -> bool:
        principal = _principal(ctx)
        if principal.kind != "operator" and not self._may_see(principal, ctx, session, stored):
            return False
        return self.inner.can_read(session, ctx, stored)

    def _may_see(
        self, principal: Principal, ctx: RequestContext, session: Session, stored: StoredResource
    ) -> bool:
        found = reach(principal, stored.res_type, self._read_letters(ctx, stored.res_type))
        if found == PATIENT:
            return _in_compartment(session, principal, stored.content)
        return found == ALL

    @staticmethod
    def _read_letters(ctx: RequestContext, res_type: str) -> str:
        """The permissions that let this request see a resource of ``res_type``.

        A write sees the version it replaces with its own permission (checked by
        ``authorize``); a search's matches need 's', resources of other types it pulls in
        (includes) 'r' or 's'; anything else 'r'.
        """
        interaction, authorized_type = ctx.extra.get(_KEY, ("read", None))
        if interaction in _WRITES and res_type == authorized_type:
            return INTERACTION_PERMISSION[interaction]
        if interaction == "search":
            return "s" if res_type == authorized_type else "rs"
        return "r"

    # -- writes ----------------------------------------------------------------------------

    def check_write(
        self,
        session: Session,
        ctx: RequestContext,
        res_type: str,
        new: dict[str, Any] | None,
        old: StoredResource | None,
    ) -> None:
        principal = _principal(ctx)
        if principal.kind != "operator":
            self._check_patient_write(session, ctx, principal, res_type, new, old)
        self.inner.check_write(session, ctx, res_type, new, old)

    @staticmethod
    def _check_patient_write(
        session: Session,
        ctx: RequestContext,
        principal: Principal,
        res_type: str,
        new: dict[str, Any] | None,
        old: StoredResource | None,
    ) -> None:
        """Under a patient grant, both the new and the replaced version must belong to the
        token's patient, and to no other patient (a write lands in every compartment the
        resource is in)."""
        interaction, _ = ctx.extra.get(_KEY, (None, None))
        perm = INTERACTION_PERMISSION.get(interaction) if interaction in _WRITES else None
        if perm is None:
            perm = "d" if new is None else "u" if old is not None else "c"
        if reach(principal, res_type, perm) != PATIENT:
            return
        pid = principal.patient_id
        for version, which in ((new, "the new"), (old.content if old else None, "the stored")):
            if version is not None and record_patients(session, version) != {pid}:
                raise Forbidden(
                    f"this token's patient/ scopes write only Patient/{pid}'s record: "
                    f"{which} {res_type} must be in that patient's compartment and no other's",
                    headers=_INSUFFICIENT,
                )

    # -- search ----------------------------------------------------------------------------

    def search_filter(self, session: Session, ctx: RequestContext, res_type: str | None) -> Any:
        """A SQL condition matching ``can_read``'s rules, so the search engine never
        loads (or counts) rows the scope check would drop: in a search, types other than
        the searched one (includes, chain and ``_has`` targets) need 'r' or 's'; elsewhere
        (conditional matches) any permission on the type. A type reached through a
        ``patient/`` grant only is limited to the patient's compartment. Then the inner
        policy's condition."""
        principal = _principal(ctx)
        inner = self.inner.search_filter(session, ctx, res_type)  # type: ignore[arg-type]
        if principal.kind == "operator":
            return inner
        contexts = _contexts(principal)
        own: Any = None
        if res_type is None:
            # not used by the search engine (it always names the types); patient grants
            # give nothing here
            if not any(
                g.context in contexts and g.allows(None, p)
                for g in _grants(principal.scopes)
                for p in "rs"
            ):
                own = resource.c.res_type.in_(self._readable_types(principal, contexts))
        else:
            found = reach(principal, res_type, self._filter_letters(ctx, res_type))
            if found is None:
                own = sa.false()
            elif found == PATIENT:
                assert principal.patient_id is not None
                own = compartment_condition(res_type, principal.patient_id)
        if own is None:
            return inner
        return own if inner is None else sa.and_(own, inner)

    @staticmethod
    def _filter_letters(ctx: RequestContext, res_type: str) -> str:
        interaction, authorized_type = ctx.extra.get(_KEY, ("search", None))
        if res_type == authorized_type and interaction in _WRITES:
            return INTERACTION_PERMISSION[interaction]
        if res_type == authorized_type and interaction == "search":
            return "s"
        return "rs" if interaction in ("search", "read", "operation") else PERMISSIONS

    @staticmethod
    def _readable_types(principal: Principal, contexts: tuple[str, ...]) -> list[str]:
        return sorted(
            {
                s.res_type
                for s in _grants(principal.scopes)
                if s.context in contexts and s.res_type != "*" and s.perms & {"r", "s"}
            }
        )


def _in_compartment(session: Session, principal: Principal, content: dict[str, Any] | None) -> bool:
    return principal.patient_id in record_patients(session, content)


__all__ = ["ALL", "PATIENT", "WWW_AUTHENTICATE", "ScopePolicy", "compartment_condition", "reach"]
