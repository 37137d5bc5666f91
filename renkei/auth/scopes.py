"""SMART on FHIR v2 scopes: parsing, coverage and the check each FHIR interaction needs.

Grammar (https://build.fhir.org/ig/HL7/smart-app-launch/scopes-and-launch-context.html):
``<patient|user|system>/<ResourceType|*>.<c?r?u?d?s?>``; the letters stand for create, read
(read/vread/history), update (update/patch), delete and search, and appear in that order.
SMART v1 suffixes are read as aliases: ``.read`` = ``.rs``, ``.write`` = ``.cud``, ``.*`` =
``.cruds``. Scopes with a ``?param=value`` filter (v2 granular scopes) are refused rather
than silently widened to the whole type.

``patient/`` scopes reach one patient's compartment only: a token carrying them is bound to
a patient launch context (``launch/patient``, the token's ``patient``), chosen at sign-in or
named by the back end or operator that asks for the token (see ``renkei.auth.launch``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from renkei.auth.errors import InvalidScope

CONTEXTS = ("patient", "user", "system")
PERMISSIONS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^(patient|user|system)/([A-Za-z]+|\*)\.([a-z*]+)(\?.*)?$")
#: Scopes with no resource meaning that a client may ask for.
OTHER_SCOPES = frozenset({"openid", "fhirUser", "offline_access", "online_access"})
#: SMART standalone launch: "let the person choose a patient; tell the app which one"
LAUNCH_PATIENT = "launch/patient"

#: FHIR interaction (as the engine names it) -> the permission letter it needs.
INTERACTION_PERMISSION = {
    "read": "r",
    "vread": "r",
    "history": "r",
    "search": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "operation": "r",
}


@dataclass(frozen=True)
class ResourceScope:
    """One parsed resource scope.

    >>> scope = ResourceScope.parse("user/Observation.rs")
    >>> scope.context, scope.res_type, sorted(scope.perms)
    ('user', 'Observation', ['r', 's'])
    >>> sorted(ResourceScope.parse("system/*.write").perms)
    ['c', 'd', 'u']
    >>> ResourceScope.parse("openid") is None
    True
    """

    context: str
    res_type: str
    perms: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> ResourceScope | None:
        """The resource scope ``text`` names; None for openid, fhirUser and the like."""
        if text in OTHER_SCOPES or text.startswith("launch"):
            return None
        match = _SCOPE.match(text)
        if match is None:
            raise InvalidScope(f"{text!r} is not a SMART scope (e.g. user/Patient.rs)")
        context, res_type, letters, query = match.groups()
        if query:
            raise InvalidScope(f"{text!r}: scopes with search filters are not supported")
        letters = _V1.get(letters, letters)
        if not letters or not _in_order(letters):
            raise InvalidScope(f"{text!r}: permissions are letters of 'cruds' in that order")
        return cls(context, res_type, frozenset(letters))

    def covers(self, other: ResourceScope) -> bool:
        """Whether this grant includes everything ``other`` asks for.

        >>> ResourceScope.parse("user/*.cruds").covers(ResourceScope.parse("user/Patient.r"))
        True
        >>> ResourceScope.parse("user/Patient.r").covers(ResourceScope.parse("user/Patient.rs"))
        False
        """
        return (
            self.context == other.context
            and self.res_type in ("*", other.res_type)
            and other.perms <= self.perms
        )

    def allows(self, res_type: str | None, perm: str) -> bool:
        if perm not in self.perms:
            return False
        return self.res_type == "*" or res_type == self.res_type


def _in_order(letters: str) -> bool:
    it = iter(PERMISSIONS)
    return len(set(letters)) == len(letters) and all(ch in it for ch in letters)


def split(scope: str | None) -> list[str]:
    """A space-separated scope string as a list without duplicates, order kept.

    >>> split("  user/Patient.rs openid user/Patient.rs ")
    ['user/Patient.rs', 'openid']
    """
    seen: dict[str, None] = {}
    for part in (scope or "").split():
        seen.setdefault(part, None)
    return list(seen)


def narrow(requested: Iterable[str], allowed: Iterable[str], contexts: Iterable[str]) -> list[str]:
    """The requested scopes, if each is covered by an allowed one in a permitted context.

    >>> narrow(["system/Patient.rs"], ["system/*.cruds"], ["system"])
    ['system/Patient.rs']
    >>> narrow(["user/Patient.rs"], ["system/*.cruds"], ["system"])
    Traceback (most recent call last):
    ...
    renkei.auth.errors.InvalidScope: 'user/Patient.rs' is not available to this client

    ``launch/patient`` comes with any allowed ``patient/`` scope:

    >>> narrow(["launch/patient", "patient/*.rs"], ["patient/*.cruds"], ["patient"])
    ['launch/patient', 'patient/*.rs']
    """
    allowed = list(allowed)
    grants = [g for g in (ResourceScope.parse(a) for a in allowed) if g is not None]
    contexts = set(contexts)
    out = []
    for text in requested:
        wanted = ResourceScope.parse(text)
        if wanted is None:
            implied = text == LAUNCH_PATIENT and any(g.context == "patient" for g in grants)
            if text not in allowed and not implied:
                raise InvalidScope(f"{text!r} is not available to this client")
        elif wanted.context not in contexts or not any(g.covers(wanted) for g in grants):
            raise InvalidScope(f"{text!r} is not available to this client")
        out.append(text)
    return out


def patient_scopes(scopes: Iterable[str]) -> list[str]:
    """The ``patient/`` resource scopes among ``scopes`` (they need a patient context).

    >>> patient_scopes(["openid", "patient/*.rs", "user/Patient.r"])
    ['patient/*.rs']
    """
    return [s for s in scopes if s.startswith("patient/")]


def wants_patient(scopes: Iterable[str]) -> bool:
    """Whether a token with these scopes is bound to a patient (SMART: when patient-level
    scopes are granted, the server SHALL provide a ``patient`` launch context).

    >>> wants_patient(["launch/patient", "user/*.rs"]), wants_patient(["user/*.rs"])
    (True, False)
    """
    scopes = list(scopes)
    return LAUNCH_PATIENT in scopes or bool(patient_scopes(scopes))


def resource_scopes(scopes: Iterable[str]) -> list[ResourceScope]:
    """Parsed resource scopes of a granted set; unknown strings are skipped, not fatal."""
    out = []
    for text in scopes:
        try:
            parsed = ResourceScope.parse(text)
        except InvalidScope:
            continue
        if parsed is not None:
            out.append(parsed)
    return out


def permits(
    scopes: Iterable[str], res_type: str | None, perm: str, contexts: Iterable[str]
) -> bool:
    """Whether any granted scope in one of ``contexts`` gives ``perm`` on ``res_type``.

    ``res_type=None`` (system-level search or history) needs a wildcard grant.

    >>> permits({"user/Observation.rs"}, "Observation", "s", ["user"])
    True
    >>> permits({"user/Observation.rs"}, "Patient", "r", ["user"])
    False
    >>> permits({"user/Patient.read"}, "Patient", "s", ["user"])
    True
    """
    ctx = set(contexts)
    return any(s.context in ctx and s.allows(res_type, perm) for s in resource_scopes(scopes))


__all__ = [
    "CONTEXTS",
    "INTERACTION_PERMISSION",
    "LAUNCH_PATIENT",
    "OTHER_SCOPES",
    "ResourceScope",
    "narrow",
    "patient_scopes",
    "permits",
    "resource_scopes",
    "split",
    "wants_patient",
]
