"""Who may see and change a group.

The rule, checked against the newest plan of the group:

- **coordinator** (may edit): the group's coordinator PractitionerRole; a user whose role
  is ``coordinator`` or ``admin`` at one of the member clinics; an operator principal.
- **member** (may read): a member doctor's PractitionerRole, or any user of a member clinic.
- anybody else: nothing. The API answers 404 exactly as for a group that does not exist,
  so the existence of a group is never leaked.

Creating a group needs an operator, or a ``coordinator``/``admin`` user of one of the
clinics the new group lists.
"""

from __future__ import annotations

from renkei.auth.principal import Principal
from renkei.roster.config import GroupConfig

COORDINATOR = "coordinator"
MEMBER = "member"
EDITOR_ROLES = frozenset({"coordinator", "admin"})


def reference(value: str | None, kind: str) -> str | None:
    """``"abc"`` or ``"Organization/abc"`` -> ``"Organization/abc"``; None stays None.

    >>> reference("abc", "Organization")
    'Organization/abc'
    """
    if not value:
        return None
    return value if "/" in value else f"{kind}/{value}"


def access_level(principal: Principal, cfg: GroupConfig) -> str | None:
    """``"coordinator"``, ``"member"`` or None (no access at all)."""
    if principal.kind == "operator":
        return COORDINATOR
    role_ref = reference(principal.practitioner_role_id, "PractitionerRole")
    org_ref = reference(principal.organization_id, "Organization")
    if role_ref is not None and role_ref == cfg.coordinator:
        return COORDINATOR
    if org_ref in cfg.clinic_ids and principal.role in EDITOR_ROLES:
        return COORDINATOR
    if role_ref in cfg.doctor_names or org_ref in cfg.clinic_ids:
        return MEMBER
    return None


def may_create(principal: Principal, cfg: GroupConfig) -> bool:
    if principal.kind == "operator":
        return True
    org_ref = reference(principal.organization_id, "Organization")
    return principal.role in EDITOR_ROLES and org_ref in cfg.clinic_ids


def actor(principal: Principal) -> str:
    """How a principal is named in the change log."""
    who = f"{principal.kind}:{principal.subject}"
    if principal.practitioner_role_id:
        who += f" ({reference(principal.practitioner_role_id, 'PractitionerRole')})"
    return who


__all__ = ["COORDINATOR", "MEMBER", "access_level", "actor", "may_create", "reference"]
