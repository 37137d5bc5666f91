"""Every seam between urgent calls and the packages built beside it, in one module.

The merge connects the real roster, notification bus, access policy and audit log here and
nowhere else (see :func:`default_ports`). Until then each port has a default that works on
its own: a table-free :class:`~renkei.calls.static_roster.StaticDutyResolver` and a notifier
that writes to the call timeline. Duty access goes to the access package's grants.

References are FHIR literal references throughout: ``Organization/<id>``,
``PractitionerRole/<id>``, ``Patient/<id>``. Adapters strip the type where a package
takes bare ids.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.calls.models import call_event
from renkei.store.models import resource

if TYPE_CHECKING:
    from renkei.calls.config import CallSettings
    from renkei.clock import Clock

log = logging.getLogger(__name__)


# -- roster ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Duty:
    """Who is on duty for a rotation group at one instant (roster's ``duty_at``)."""

    primary: str | None
    backup: str | None = None
    starts: datetime | None = None
    ends: datetime | None = None


@dataclass(frozen=True)
class EscalationPolicy:
    """A group's escalation settings; the chain is snapshotted onto each call when routed."""

    ack_timeout: timedelta = timedelta(minutes=5)
    coordinator: str | None = None
    #: how many times the whole chain is tried before the call fails (1 = once)
    max_rounds: int = 2

    def __post_init__(self) -> None:
        if self.ack_timeout <= timedelta(0):
            raise ValueError("ack_timeout must be positive")
        if self.max_rounds < 1:
            raise ValueError("max_rounds must be at least 1")


class DutyResolver(Protocol):
    """What routing needs from the roster (renkei.roster adapts to this at the merge)."""

    def group_for_clinic(self, session: Session, clinic: str) -> str | None:
        """The rotation group covering ``clinic`` (Organization/<id>), or None."""
        ...

    def duty_at(self, session: Session, group_id: str, t: datetime) -> Duty:
        """Primary and back-up on duty for the group at ``t`` (roster.duty_at)."""
        ...

    def policy(self, session: Session, group_id: str | None, t: datetime) -> EscalationPolicy:
        """The group's escalation settings at ``t``; defaults when ``group_id`` is None."""
        ...

    def in_office_hours(self, session: Session, clinic: str, t: datetime) -> bool:
        """Whether ``clinic`` is open at ``t`` (roster.in_office_hours; holidays closed)."""
        ...

    def next_office_hours_start(self, session: Session, clinic: str, t: datetime) -> datetime:
        """The next instant at or after ``t`` when ``clinic`` opens."""
        ...


class RosterDutyResolver:
    """:class:`DutyResolver` over renkei.roster (rotation groups stored in the database).

    The roster knows groups, duty, office hours, the coordinator and, when the group
    definition has an ``escalation`` section, its timings; otherwise the defaults given
    here (``RENKEI_CALLS_ACK_TIMEOUT_SECONDS`` / ``RENKEI_CALLS_MAX_ROUNDS``) apply.
    """

    def __init__(self, ack_timeout: timedelta, max_rounds: int) -> None:
        self._defaults = EscalationPolicy(ack_timeout=ack_timeout, max_rounds=max_rounds)

    def group_for_clinic(self, session: Session, clinic: str) -> str | None:
        from renkei import roster

        return roster.group_for_clinic(session, clinic)

    def duty_at(self, session: Session, group_id: str, t: datetime) -> Duty:
        from renkei import roster

        duty = roster.duty_at(session, group_id, t)
        seg = duty.segment
        return Duty(duty.primary, duty.backup, seg.start if seg else None, seg.end if seg else None)

    def policy(self, session: Session, group_id: str | None, t: datetime) -> EscalationPolicy:
        if group_id is None:
            return self._defaults
        from renkei.roster import load_roster

        cfg = load_roster(session, group_id).config_at(t)
        timings = cfg.escalation
        return EscalationPolicy(
            ack_timeout=(
                timedelta(minutes=timings.ack_timeout_minutes)
                if timings
                else self._defaults.ack_timeout
            ),
            coordinator=cfg.coordinator,
            max_rounds=timings.max_rounds if timings else self._defaults.max_rounds,
        )

    def in_office_hours(self, session: Session, clinic: str, t: datetime) -> bool:
        from renkei import roster

        return roster.in_office_hours(session, clinic, t)

    def next_office_hours_start(self, session: Session, clinic: str, t: datetime) -> datetime:
        from renkei import roster

        opening = roster.next_office_hours_start(session, clinic, t)
        if opening is None:
            raise ValueError(f"{clinic} opens on no day in the next 60 days")
        return opening


# -- patients -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrimaryCare:
    clinic: str | None
    doctor: str | None


class PatientDirectory(Protocol):
    """Care-team facts routing needs; the default reads stored FHIR resources."""

    def primary_care(self, session: Session, patient: str) -> PrimaryCare: ...

    def telecom(self, session: Session, ref: str) -> list[dict[str, Any]]:
        """ContactPoints of a PractitionerRole/Organization (for SMS/phone gateways)."""
        ...


#: CareTeam.participant.role code naming the patient's primary doctor (主治医).
PRIMARY_DOCTOR_CODE = "primary-doctor"


class FhirPatientDirectory:
    """Reads the patient's active CareTeam from the FHIR store.

    Primary doctor: the participant whose role has code ``primary-doctor`` (any system), or
    else the first PractitionerRole member. Primary clinic: that participant's
    ``onBehalfOf``, else the PractitionerRole's ``organization``, else the CareTeam's
    ``managingOrganization``, else ``Patient.managingOrganization``.
    """

    def primary_care(self, session: Session, patient: str) -> PrimaryCare:
        teams = _care_teams(session, patient)
        doctor = clinic = None
        for team in teams:
            if team.get("status") not in (None, "active"):
                continue
            doctor, clinic = _primary_of(team)
            if doctor is None and clinic is None:
                continue
            if clinic is None and doctor is not None:
                clinic = _organization_of(session, doctor)
            if clinic is None:
                orgs = team.get("managingOrganization") or []
                clinic = _ref(orgs[0]) if orgs else None
            break
        if clinic is None:
            pat = _content(session, patient)
            if pat:
                clinic = _ref(pat.get("managingOrganization"))
        return PrimaryCare(clinic=clinic, doctor=doctor)

    def telecom(self, session: Session, ref: str) -> list[dict[str, Any]]:
        content = _content(session, ref)
        return list((content or {}).get("telecom") or [])


def _ref(value: Any) -> str | None:
    if isinstance(value, dict):
        ref = value.get("reference")
        return ref if isinstance(ref, str) and ref else None
    return None


def _content(session: Session, ref: str) -> dict[str, Any] | None:
    parts = ref.split("/")
    if len(parts) != 2:
        return None
    row = session.execute(
        sa.select(resource.c.content).where(
            resource.c.res_type == parts[0],
            resource.c.res_id == parts[1],
            resource.c.deleted.is_(False),
        )
    ).first()
    return dict(row.content) if row else None


def _organization_of(session: Session, role: str) -> str | None:
    content = _content(session, role) if role.startswith("PractitionerRole/") else None
    return _ref((content or {}).get("organization"))


def _care_teams(session: Session, patient: str) -> list[dict[str, Any]]:
    """CareTeams whose subject is ``patient``, newest first, through the reference index
    (the search indexer fills it in the CareTeam's own transaction)."""
    from renkei.store import pending
    from renkei.store.models import idx_reference

    pending.flush(session)  # a CareTeam written earlier in this unit of work
    res_type, _, res_id = patient.partition("/")
    indexed = (
        sa.select(resource.c.content)
        .join(idx_reference, idx_reference.c.resource_pk == resource.c.pk)
        .where(
            idx_reference.c.res_type == "CareTeam",
            idx_reference.c.param == "subject",
            idx_reference.c.target_type == res_type,
            idx_reference.c.target_id == res_id,
            resource.c.deleted.is_(False),
        )
    )
    rows = [dict(r.content) for r in session.execute(indexed)]
    out = []
    for team in rows:
        if _ref(team.get("subject")) == patient:
            out.append(team)
    out.sort(key=lambda t: (t.get("meta") or {}).get("lastUpdated") or "", reverse=True)
    return out


def _primary_of(team: dict[str, Any]) -> tuple[str | None, str | None]:
    participants = [p for p in team.get("participant") or [] if isinstance(p, dict)]

    def is_primary(p: dict[str, Any]) -> bool:
        for concept in p.get("role") or []:
            for coding in (concept or {}).get("coding") or []:
                if coding.get("code") == PRIMARY_DOCTOR_CODE:
                    return True
        return False

    chosen = next((p for p in participants if is_primary(p)), None)
    if chosen is None:
        chosen = next(
            (
                p
                for p in participants
                if (_ref(p.get("member")) or "").startswith("PractitionerRole/")
            ),
            None,
        )
    if chosen is None:
        return None, None
    member = _ref(chosen.get("member"))
    doctor = member if member and member.startswith("PractitionerRole/") else None
    clinic = _ref(chosen.get("onBehalfOf"))
    if member and member.startswith("Organization/") and clinic is None:
        clinic = member
    return doctor, clinic


# -- notifications --------------------------------------------------------------------------


@dataclass(frozen=True)
class BusEvent:
    """One event for the in-app bus (websocket to the recipients' open connections).

    Most events are about a call. ``criteria.notify-primary`` (an escalation rule told the
    primary doctor, renkei.criteria) is about no call: ``call_id`` is None and ``about``
    names the resource version that fired it (``Observation/1/_history/2``).
    """

    #: urgent-call.page | urgent-call.update | urgent-call.failed | urgent-call.overdue |
    #: criteria.notify-primary
    topic: str
    call_id: str | None
    at: datetime
    recipients: tuple[str, ...]
    payload: dict[str, Any]
    #: unique per (call, step, kind): the bus may deliver twice, receivers dedup on it
    key: str
    #: the call's step number when the event was raised
    step: int = 0
    #: ``Patient/<id>`` the event concerns (calls: taken from the payload's call)
    patient: str | None = None
    #: the resource (version) an event about no call concerns
    about: str | None = None


class Notifier(Protocol):
    """renkei.notify's ``publish(session, event)``: an outbox row in the caller's transaction."""

    def publish(self, session: Session, event: BusEvent) -> None: ...


class TimelineNotifier:
    """Default until the merge: records each bus event in the call timeline (``published``).

    An event about no call has no timeline: it is only logged (nobody hears it without
    the bus, which ``create_app`` always connects).
    """

    def publish(self, session: Session, event: BusEvent) -> None:
        if event.call_id is None:
            log.warning("no bus to tell %s about %s", ",".join(event.recipients), event.topic)
            return
        session.execute(
            call_event.insert(),
            {
                "call_id": event.call_id,
                "at": event.at,
                "kind": "published",
                "actor": "system",
                "target": ",".join(event.recipients),
                "step_seq": event.step,
                "step_key": f"published:{event.key}",
                "detail": {"topic": event.topic, "recipients": list(event.recipients)},
            },
        )


class NotifyBusNotifier:
    """:class:`Notifier` over renkei.notify: an outbox row in the step's transaction.

    The event reaches the recipients' websockets (``kind`` "call", ``action`` the topic's
    last part: page, update, failed, overdue) and stays in the call timeline as well.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def publish(self, session: Session, event: BusEvent) -> None:
        from renkei.notify import Event, publish

        if event.call_id is None:
            res_type, _, rest = (event.about or "").partition("/")
            res_id, _, version = rest.partition("/_history/")
            publish(
                session,
                Event(
                    kind="call",
                    action=event.topic.rsplit(".", 1)[-1],
                    res_type=res_type or None,
                    res_id=res_id or None,
                    version_id=int(version) if version.isdigit() else None,
                    patient=event.patient,
                    audience=event.recipients,
                    data={"key": event.key, **event.payload},
                ),
                clock=self._clock,
            )
            return
        call = event.payload.get("call") or {}
        publish(
            session,
            Event(
                kind="call",
                action=event.topic.rsplit(".", 1)[-1],
                res_type="Task",
                res_id=event.call_id,
                patient=call.get("patient"),
                audience=event.recipients,
                data={"key": event.key, "step": event.step, **event.payload},
            ),
            clock=self._clock,
        )
        TimelineNotifier().publish(session, event)


@dataclass
class RecordingNotifier:
    """Keeps events in memory as well as in the timeline (tests assert on ``events``)."""

    events: list[BusEvent] = field(default_factory=list)

    def publish(self, session: Session, event: BusEvent) -> None:
        TimelineNotifier().publish(session, event)
        self.events.append(event)


# -- access ---------------------------------------------------------------------------------


class DutyAccess(Protocol):
    """Duty access: a doctor paged for a call may read that patient while the call lasts.

    Connected to the access package (:class:`SharingDutyAccess`): the sharing policy
    honours its grants, so the on-duty doctor of another clinic can read the patient and
    its ``$summary`` during the call, and gets 404 again once it ends.
    """

    def grant(
        self,
        session: Session,
        call_id: str,
        practitioner_role: str,
        patient: str,
        granted_at: datetime,
        until: datetime,
    ) -> None:
        """``practitioner_role`` may read ``patient`` until ``until`` (or the call's end)."""
        ...

    def release(self, session: Session, call_id: str, practitioner_role: str, at: datetime) -> None:
        """End one doctor's grants of the call (they handed it over or declined it)."""
        ...

    def end(self, session: Session, call_id: str, at: datetime) -> None:
        """End every grant of the call (resolved, cancelled or failed)."""
        ...


class SharingDutyAccess:
    """:class:`DutyAccess` over ``renkei.access`` duty grants (``access_grant``).

    Each page adds a grant whose ``source`` is the call's Task (``Task/<call id>``), read
    only, capped at ``until`` (``CallSettings.access_max``; the next page renews it).
    """

    def grant(
        self,
        session: Session,
        call_id: str,
        practitioner_role: str,
        patient: str,
        granted_at: datetime,
        until: datetime,
    ) -> None:
        from renkei.access import grant_duty_access

        grant_duty_access(
            session,
            patient_id=_bare(patient),
            practitioner_role_id=_bare(practitioner_role),
            now=granted_at,
            until=until,
            reason=f"urgent call Task/{call_id}",
            source=_source(call_id),
        )

    def release(self, session: Session, call_id: str, practitioner_role: str, at: datetime) -> None:
        from renkei.access import revoke_duty_access

        revoke_duty_access(
            session,
            now=at,
            source=_source(call_id),
            practitioner_role_id=_bare(practitioner_role),
        )

    def end(self, session: Session, call_id: str, at: datetime) -> None:
        from renkei.access import revoke_duty_access

        revoke_duty_access(session, now=at, source=_source(call_id))


def _source(call_id: str) -> str:
    return f"Task/{call_id}"


def _bare(ref: str) -> str:
    """
    >>> _bare("PractitionerRole/r1"), _bare("r1")
    ('r1', 'r1')
    """
    return ref.rsplit("/", 1)[-1]


def as_ref(res_type: str, value: str) -> str:
    """A literal reference from an id or a reference.

    >>> as_ref("PractitionerRole", "abc"), as_ref("PractitionerRole", "PractitionerRole/abc")
    ('PractitionerRole/abc', 'PractitionerRole/abc')
    """
    return value if "/" in value else f"{res_type}/{value}"


# -- wiring ---------------------------------------------------------------------------------


@dataclass
class CallPorts:
    duty: DutyResolver
    directory: PatientDirectory
    notifier: Notifier
    access: DutyAccess


def default_ports(settings: CallSettings) -> CallPorts:
    """The one place the merge swaps in roster, notify and auth-audit implementations.

    - ``duty``: renkei.roster through :class:`RosterDutyResolver` (connected), or a static
      roster from ``RENKEI_CALLS_ROSTER_FILE`` (JSON, see docs/urgent-calls.md) for tests
      and for a network without rotation groups in the database.
    - ``notifier``: the timeline only; ``create_app`` swaps in :class:`NotifyBusNotifier`
      (renkei.notify.publish) when the notify service is built.
    - ``access``: the access package's duty grants, which the sharing policy honours.
    """
    from renkei.calls.static_roster import StaticDutyResolver

    duty: DutyResolver
    if settings.roster_file:
        duty = StaticDutyResolver.from_file(settings.roster_file)
    else:
        duty = RosterDutyResolver(settings.ack_timeout, settings.max_rounds)
    return CallPorts(
        duty=duty,
        directory=FhirPatientDirectory(),
        notifier=TimelineNotifier(),
        access=SharingDutyAccess(),
    )


__all__ = [
    "PRIMARY_DOCTOR_CODE",
    "BusEvent",
    "CallPorts",
    "Duty",
    "DutyAccess",
    "DutyResolver",
    "EscalationPolicy",
    "FhirPatientDirectory",
    "Notifier",
    "NotifyBusNotifier",
    "PatientDirectory",
    "PrimaryCare",
    "RecordingNotifier",
    "RosterDutyResolver",
    "SharingDutyAccess",
    "TimelineNotifier",
    "as_ref",
    "default_ports",
]
