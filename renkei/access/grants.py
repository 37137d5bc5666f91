"""Duty access: the doctor routed an urgent call may read that patient while it lasts.

The calls package calls :func:`grant_duty_access` when it routes a call and
:func:`revoke_duty_access` when the call ends; the sharing policy honours a grant between
its ``start`` and ``until`` (read only), and every use is audited as usual.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.access.models import access_grant


class GrantError(ValueError):
    """A grant names nobody, or ends before it starts."""


def grant_duty_access(
    session: Session,
    *,
    patient_id: str,
    now: datetime,
    until: datetime,
    reason: str,
    practitioner_role_id: str | None = None,
    subject: str | None = None,
    source: str | None = None,
) -> int:
    """Open ``patient_id`` for reading to one PractitionerRole (or user subject); the id."""
    if not practitioner_role_id and not subject:
        raise GrantError("a duty grant names a practitioner role or a user")
    if until <= now:
        raise GrantError("a duty grant must end after it starts")
    return int(
        session.execute(
            access_grant.insert()
            .values(
                patient_id=patient_id,
                practitioner_role_id=practitioner_role_id,
                subject=subject,
                start=now,
                until=until,
                reason=reason[:500],
                source=source,
            )
            .returning(access_grant.c.id)
        ).scalar_one()
    )


def revoke_duty_access(
    session: Session,
    *,
    now: datetime,
    grant_id: int | None = None,
    source: str | None = None,
    practitioner_role_id: str | None = None,
) -> int:
    """End grants early (by id, or every grant opened by ``source``, optionally only those
    of one ``practitioner_role_id``, e.g. a doctor who handed an urgent call over); how many
    ended."""
    if grant_id is None and source is None:
        raise GrantError("revoke needs a grant id or a source")
    stmt = access_grant.update().where(access_grant.c.revoked.is_(None))
    stmt = (
        stmt.where(access_grant.c.id == grant_id)
        if grant_id is not None
        else stmt.where(access_grant.c.source == source)
    )
    if practitioner_role_id is not None:
        stmt = stmt.where(access_grant.c.practitioner_role_id == practitioner_role_id)
    result = session.execute(stmt.values(revoked=now))
    return int(result.rowcount)  # type: ignore[attr-defined]


def active_grants_condition(
    now: datetime, practitioner_role_id: str | None, subject: str | None
) -> sa.ColumnElement[bool]:
    g = access_grant.c
    who = []
    if practitioner_role_id:
        who.append(g.practitioner_role_id == practitioner_role_id)
    if subject:
        who.append(g.subject == subject)
    if not who:
        return sa.false()
    return sa.and_(sa.or_(*who), g.start <= now, g.until > now, g.revoked.is_(None))


__all__ = ["GrantError", "active_grants_condition", "grant_duty_access", "revoke_duty_access"]
