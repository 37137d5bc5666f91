"""Who may see and change which patient's data: sharing policy, role limits, duty grants.

See :mod:`renkei.access.policy` for the rules. The tables (sharing facts derived from
Patient/CareTeam/Consent, and duty grants) are this package's own (Alembic branch
``access``).
"""

from __future__ import annotations

from renkei.access.facts import CONSENT_SCOPE_SYSTEM, SharingFactWriter
from renkei.access.grants import GrantError, grant_duty_access, revoke_duty_access
from renkei.access.policy import SharingPolicy, record_patients
from renkei.access.roles import RoleDataError, RoleLimits

__all__ = [
    "CONSENT_SCOPE_SYSTEM",
    "GrantError",
    "RoleDataError",
    "RoleLimits",
    "SharingFactWriter",
    "SharingPolicy",
    "grant_duty_access",
    "record_patients",
    "revoke_duty_access",
]
