"""Who may hear of an event: the FHIR AccessPolicy, asked at delivery time.

A subscriber is told of an event only if, right now, it could read the resource the event
is about (the version the event names). A revoked Consent or an organisation leaving the
CareTeam therefore stops deliveries at once, including retries queued before the change
(Medplum #8807 is the failure this avoids).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy.orm import Session

from renkei.auth.principal import Principal
from renkei.clock import Clock
from renkei.fhir.context import RequestContext
from renkei.fhir.policy import AccessPolicy
from renkei.notify.outbox import Event
from renkei.store.errors import StoreError
from renkei.store.indexing import NullIndexWriter
from renkei.store.repository import SqlRepository, StoredResource


def snapshot(principal: Any) -> dict[str, Any] | None:
    """A JSON form of a principal, kept with a subscription to act as it later."""
    if principal is None:
        return None
    if isinstance(principal, Principal):
        data = dataclasses.asdict(principal)
        data["scopes"] = sorted(principal.scopes)
        data.pop("purpose_of_use", None)  # break-the-glass never outlives its request
        return data
    return {"subject": str(principal), "kind": "unknown"}


def principal_from_snapshot(data: dict[str, Any] | None) -> Principal | None:
    """Default subscriber resolver: rebuild the principal as it was at subscription time.

    The auth package may replace it (``NotifyService.resolve_subscriber``) with one that
    also refuses deactivated users and clients.
    """
    if not data:
        return None
    fields = {f.name for f in dataclasses.fields(Principal)}
    kwargs = {k: v for k, v in data.items() if k in fields}
    kwargs["scopes"] = frozenset(kwargs.get("scopes") or ())
    kwargs.setdefault("subject", "unknown")
    kwargs.setdefault("kind", "user")
    return Principal(**kwargs)


class AccessChecker:
    """Answers "may this principal see this event?" for one batch, caching loads."""

    def __init__(self, session: Session, policy: AccessPolicy, clock: Clock) -> None:
        self.session = session
        self.policy = policy
        self.repo = SqlRepository(session, clock, NullIndexWriter())
        self._resources: dict[tuple[str, str, int | None], StoredResource | None] = {}

    def resource_of(self, event: Event) -> StoredResource | None:
        """The version an event names (the last live one, for a deletion)."""
        if not (event.res_type and event.res_id):
            if event.patient and "/" in event.patient:
                res_type, res_id = event.patient.split("/", 1)
                return self._load(res_type, res_id, None)
            return None
        return self._load(event.res_type, event.res_id, event.version_id)

    def _load(self, res_type: str, res_id: str, version: int | None) -> StoredResource | None:
        key = (res_type, res_id, version)
        if key in self._resources:
            return self._resources[key]
        found: StoredResource | None = None
        try:
            if version is None:
                found = self.repo.read(res_type, res_id)
            else:
                v = version
                while v >= 1 and found is None:
                    try:
                        found = self.repo.vread(res_type, res_id, v)
                    except StoreError:
                        v -= 1  # a deletion version: judge by the last live one
        except StoreError:
            found = None
        self._resources[key] = found
        return found

    def can_see(self, principal: Any, event: Event) -> bool:
        stored = self.resource_of(event)
        if stored is None:
            # Nothing to judge by (an event about no resource): only if addressed to them.
            return bool(event.audience) and _addressed_to(principal, event)
        ctx = RequestContext(principal=principal, request_id="notify")
        return bool(self.policy.can_read(self.session, ctx, stored))


def principal_refs(principal: Any) -> set[str]:
    """The references that address a principal: its role, practitioner and organisation.

    >>> sorted(principal_refs(Principal("u1", "user", organization_id="o1",
    ...     practitioner_role_id="r1")))
    ['Organization/o1', 'PractitionerRole/r1']
    """
    refs: set[str] = set()
    if principal is None:
        return refs
    for attr, res_type in (
        ("practitioner_role_id", "PractitionerRole"),
        ("practitioner_id", "Practitioner"),
        ("organization_id", "Organization"),
    ):
        value = getattr(principal, attr, None)
        if value:
            refs.add(value if "/" in value else f"{res_type}/{value}")
    return refs


def _addressed_to(principal: Any, event: Event) -> bool:
    return bool(principal_refs(principal) & set(event.audience))


__all__ = [
    "AccessChecker",
    "principal_from_snapshot",
    "principal_refs",
    "snapshot",
]
