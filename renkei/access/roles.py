"""Role limits, read from ``roles.yaml``: which interactions a role may use on a type.

>>> limits = RoleLimits.load()
>>> limits.allows("careworker", "create", "Observation")
True
>>> limits.allows("careworker", "create", "MedicationRequest")
False
>>> limits.allows("nurse", "search", "MedicationRequest")
True
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources as pkg_resources
from typing import Any

import yaml

#: FHIR interaction -> the right in roles.yaml that covers it
RIGHT_OF = {
    "read": "read",
    "vread": "read",
    "search": "read",
    "history": "read",
    "create": "write",
    "update": "write",
    "patch": "write",
    "delete": "delete",
    "operation": "operation",
}
_RIGHTS = frozenset(RIGHT_OF.values())


class RoleDataError(ValueError):
    """roles.yaml is malformed; raised at start-up."""


@dataclass(frozen=True)
class RoleLimits:
    rights: dict[str, dict[str, frozenset[str]]]
    break_glass: frozenset[str]

    def allows(self, role: str | None, interaction: str, res_type: str | None) -> bool:
        """``role=None`` (a back-end client) is not limited here; unknown roles get nothing."""
        right = RIGHT_OF.get(interaction)
        if role is None or right is None:
            return True  # batch, transaction, capabilities: entries are checked one by one
        table = self.rights.get(role)
        if table is None:
            return False
        allowed = table.get(res_type or "default", table.get("default", frozenset()))
        return right in allowed

    def may_break_glass(self, role: str | None) -> bool:
        return role in self.break_glass

    @classmethod
    def parse(cls, data: Any) -> RoleLimits:
        if not isinstance(data, dict) or not isinstance(data.get("roles"), dict):
            raise RoleDataError("roles.yaml needs a 'roles' mapping")
        rights: dict[str, dict[str, frozenset[str]]] = {}
        for role, table in data["roles"].items():
            if not isinstance(table, dict):
                raise RoleDataError(f"role {role!r} needs a mapping of type -> rights")
            rights[role] = {}
            for res_type, allowed in table.items():
                bad = set(allowed or ()) - _RIGHTS
                if bad:
                    raise RoleDataError(f"role {role!r}, {res_type}: unknown rights {sorted(bad)}")
                rights[role][res_type] = frozenset(allowed or ())
        btg = frozenset(data.get("break_glass") or ())
        unknown = btg - set(rights)
        if unknown:
            raise RoleDataError(f"break_glass names unknown roles {sorted(unknown)}")
        return cls(rights, btg)

    @classmethod
    def load(cls, text: str | None = None) -> RoleLimits:
        if text is None:
            text = (pkg_resources.files("renkei.access") / "roles.yaml").read_text("utf-8")
        return cls.parse(yaml.safe_load(text))


__all__ = ["RIGHT_OF", "RoleDataError", "RoleLimits"]
