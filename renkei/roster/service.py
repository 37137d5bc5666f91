"""Roster use cases over the database: create groups, change them, and ask who is on duty.

Every function takes a session and (when time matters) a clock. Changes bump the group's
version under a row lock, are written as new rows (plans, overrides) and go through one
audit seam, :func:`_audit_change`. Reads load a :class:`Roster` snapshot cached by
(group, version), so a busy "who is on duty" endpoint does two small queries at most.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.auth.principal import Principal
from renkei.clock import Clock
from renkei.roster import access
from renkei.roster.config import GroupConfig, config_to_dict, parse_config
from renkei.roster.errors import (
    GroupNotFound,
    InvalidChange,
    InvalidConfig,
    NotAllowed,
    OverrideNotFound,
    PastChange,
    TokenNotFound,
    UnknownReference,
)
from renkei.roster.models import (
    roster_change,
    roster_group,
    roster_ical_token,
    roster_membership,
    roster_override,
    roster_plan,
)
from renkei.roster.office import clinic_open, next_opening
from renkei.roster.references import Search, resolve_references
from renkei.roster.snapshot import LAYERS, Duty, Override, Plan, Roster, on_duty

MAX_OVERRIDE = timedelta(days=366)


class Reader(Protocol):
    """What group creation needs of the FHIR repository: ``read`` raising when missing."""

    def read(self, res_type: str, res_id: str) -> Any: ...


def fhir_search(engine: Any, session: Session) -> Search:
    """A :data:`Search` over the FHIR engine, for conditional references in definitions."""
    from renkei.fhir.context import FhirRequest, RequestContext

    def search(res_type: str, params: list[tuple[str, str]]) -> list[str]:
        resp = engine.dispatch(
            session, FhirRequest("GET", res_type, params=params, context=RequestContext())
        )
        return [
            e["resource"]["id"]
            for e in (resp.body or {}).get("entry", [])
            if e.get("search", {}).get("mode", "match") == "match"
        ]

    return search


@dataclass(frozen=True)
class GroupView:
    """A group as one caller sees it."""

    id: str
    version: int
    roster: Roster
    level: str  # access.COORDINATOR | access.MEMBER

    @property
    def config(self) -> GroupConfig:
        return self.roster.config


# -- snapshot cache ------------------------------------------------------------------------

_CACHE: OrderedDict[tuple[str, str, int], Roster] = OrderedDict()
_CACHE_SIZE = 64
_CACHE_LOCK = threading.Lock()


def _cached(key: tuple[str, str, int]) -> Roster | None:
    with _CACHE_LOCK:
        roster = _CACHE.get(key)
        if roster is not None:
            _CACHE.move_to_end(key)
        return roster


def _remember(key: tuple[str, str, int], roster: Roster) -> None:
    with _CACHE_LOCK:
        _CACHE[key] = roster
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)


def _version(session: Session, group_id: str) -> int:
    version = session.execute(
        sa.select(roster_group.c.version).where(roster_group.c.id == group_id)
    ).scalar_one_or_none()
    if version is None:
        raise GroupNotFound(f"no rotation group {group_id}")
    return int(version)


def load_roster(session: Session, group_id: str, version: int | None = None) -> Roster:
    """The group's roster as of ``version`` (default: the newest), from the cache if there."""
    newest = _version(session, group_id)
    version = newest if version is None else version
    if not 1 <= version <= newest:
        raise GroupNotFound(f"group {group_id} has no version {version}")
    # keyed by database too: tests and tools may hold two databases with the same group id
    key = (str(session.get_bind().engine.url), group_id, version)
    roster = _cached(key)
    if roster is not None:
        return roster
    plans = [
        Plan(row.effective_from, parse_config(row.config), row.version)
        for row in session.execute(
            sa.select(roster_plan)
            .where(roster_plan.c.group_id == group_id, roster_plan.c.version <= version)
            .order_by(roster_plan.c.version)
        )
    ]
    overrides = [
        Override(
            id=row.id,
            layer=row.layer,
            assignee=row.assignee,
            start=row.start_at,
            end=row.end_at,
            seq=row.version,
            revoked_at=row.revoked_at
            if row.revoked_version is not None and row.revoked_version <= version
            else None,
            reason=row.reason,
            swap_id=row.swap_id,
        )
        for row in session.execute(
            sa.select(roster_override).where(
                roster_override.c.group_id == group_id, roster_override.c.version <= version
            )
        )
    ]
    roster = Roster(_effective_plans(plans), overrides, group_id=group_id, version=version)
    _remember(key, roster)
    return roster


def _effective_plans(plans: list[Plan]) -> list[Plan]:
    """A later version with an earlier (or equal) start replaces the plans it overlaps."""
    out: list[Plan] = []
    for plan in sorted(plans, key=lambda p: p.version):
        out = [p for p in out if p.effective_from < plan.effective_from]
        out.append(plan)
    return out


# -- the audit seam ------------------------------------------------------------------------


def _audit_change(
    session: Session,
    *,
    group_id: str,
    version: int,
    kind: str,
    actor: str,
    at: datetime,
    detail: dict[str, Any],
) -> None:
    """Record one change: who, when, what. The single seam the audit log connects to."""
    session.execute(
        roster_change.insert().values(
            group_id=group_id, version=version, kind=kind, actor=actor, at=at, detail=detail
        )
    )


def _bump(session: Session, group_id: str) -> int:
    """Take the group's row lock and return the new version number."""
    version = session.execute(
        roster_group.update()
        .where(roster_group.c.id == group_id)
        .values(version=roster_group.c.version + 1)
        .returning(roster_group.c.version)
    ).scalar_one_or_none()
    if version is None:
        raise GroupNotFound(f"no rotation group {group_id}")
    return int(version)


# -- groups ---------------------------------------------------------------------------------


def _check_references(cfg: GroupConfig, repository: Reader | None) -> None:
    if repository is None:
        return
    from renkei.store.errors import StoreError

    refs = [(f"clinics[{i}].id", c.id) for i, c in enumerate(cfg.clinics)]
    refs += [(f"doctors[{i}].id", d.id) for i, d in enumerate(cfg.doctors)]
    refs.append(("coordinator", cfg.coordinator))
    for path, ref in refs:
        res_type, res_id = ref.split("/", 1)
        try:
            repository.read(res_type, res_id)
        except StoreError as exc:
            raise UnknownReference(f"{ref} does not exist", path) from exc


def _write_membership(session: Session, group_id: str, cfg: GroupConfig) -> None:
    session.execute(roster_membership.delete().where(roster_membership.c.group_id == group_id))
    rows = [{"group_id": group_id, "ref": c.id, "kind": "clinic"} for c in cfg.clinics]
    rows += [{"group_id": group_id, "ref": d.id, "kind": "doctor"} for d in cfg.doctors]
    rows.append({"group_id": group_id, "ref": cfg.coordinator, "kind": "coordinator"})
    session.execute(roster_membership.insert(), rows)


def _parse_instant(value: Any, path: str) -> datetime:
    if isinstance(value, datetime):
        t = value
    else:
        try:
            t = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise InvalidConfig(f"{value!r} is not an ISO 8601 instant", path) from exc
    if t.tzinfo is None:
        raise InvalidConfig("needs a UTC offset (e.g. 2026-04-01T00:00:00+09:00)", path)
    return t


def create_group(
    session: Session,
    clock: Clock,
    principal: Principal,
    raw: Any,
    *,
    repository: Reader | None = None,
    search: Search | None = None,
    group_id: str | None = None,
) -> GroupView:
    """Create a rotation group from its definition (dict from YAML/JSON).

    ``effective_from`` in the definition (default: now) may lie in the past: a new group
    has no history to rewrite, and importing an existing roster is the point.
    ``search`` resolves ``Type?identifier=...`` references (see renkei.roster.references).
    """
    if search is not None:
        raw = resolve_references(raw, search)
    cfg = parse_config(raw)
    if not access.may_create(principal, cfg):
        raise NotAllowed("only an operator or a coordinator/admin of a member clinic may do this")
    _check_references(cfg, repository)
    now = clock.now()
    start = (
        _parse_instant(raw["effective_from"], "effective_from")
        if isinstance(raw, dict) and raw.get("effective_from")
        else now
    )
    group_id = group_id or uuid.uuid4().hex
    if session.execute(sa.select(roster_group.c.id).where(roster_group.c.id == group_id)).first():
        raise InvalidConfig(f"group {group_id} already exists", "id")
    who = access.actor(principal)
    session.execute(
        roster_group.insert().values(
            id=group_id, name=cfg.name, version=1, created_at=now, created_by=who
        )
    )
    stored = config_to_dict(cfg)
    session.execute(
        roster_plan.insert().values(
            group_id=group_id,
            version=1,
            effective_from=start,
            config=stored,
            created_at=now,
            created_by=who,
        )
    )
    _write_membership(session, group_id, cfg)
    _audit_change(
        session,
        group_id=group_id,
        version=1,
        kind="group.create",
        actor=who,
        at=now,
        detail={"effective_from": start.isoformat(), "config": stored},
    )
    session.flush()
    return GroupView(group_id, 1, load_roster(session, group_id, 1), access.COORDINATOR)


def open_group(
    session: Session, principal: Principal, group_id: str, *, edit: bool = False
) -> GroupView:
    """The group as ``principal`` may see it; GroupNotFound when it may not see it at all."""
    roster = load_roster(session, group_id)
    level = access.access_level(principal, roster.config)
    if level is None:
        raise GroupNotFound(f"no rotation group {group_id}")
    if edit and level != access.COORDINATOR:
        raise NotAllowed("only the group's coordinators may change it")
    return GroupView(group_id, roster.version, roster, level)


def list_groups(session: Session, principal: Principal) -> list[GroupView]:
    """The groups ``principal`` may read."""
    ids = [row.id for row in session.execute(sa.select(roster_group.c.id))]
    out = []
    for gid in sorted(ids):
        roster = load_roster(session, gid)
        level = access.access_level(principal, roster.config)
        if level is not None:
            out.append(GroupView(gid, roster.version, roster, level))
    return out


def update_plan(
    session: Session,
    clock: Clock,
    principal: Principal,
    group_id: str,
    raw: Any,
    *,
    effective_from: datetime | None = None,
    repository: Reader | None = None,
    search: Search | None = None,
) -> GroupView:
    """Change the group's config from ``effective_from`` (default now; never in the past)."""
    open_group(session, principal, group_id, edit=True)
    if search is not None:
        raw = resolve_references(raw, search)
    cfg = parse_config(raw)
    _check_references(cfg, repository)
    now = clock.now()
    start = effective_from or now
    if start < now:
        raise PastChange("a plan change cannot start in the past")
    version = _bump(session, group_id)
    who = access.actor(principal)
    stored = config_to_dict(cfg)
    session.execute(
        roster_plan.insert().values(
            group_id=group_id,
            version=version,
            effective_from=start,
            config=stored,
            created_at=now,
            created_by=who,
        )
    )
    session.execute(
        roster_group.update().where(roster_group.c.id == group_id).values(name=cfg.name)
    )
    _write_membership(session, group_id, cfg)
    _audit_change(
        session,
        group_id=group_id,
        version=version,
        kind="plan.change",
        actor=who,
        at=now,
        detail={"effective_from": start.isoformat(), "config": stored},
    )
    session.flush()
    return open_group(session, principal, group_id)


# -- overrides and swaps ----------------------------------------------------------------------


def _check_interval(start: datetime, end: datetime, now: datetime) -> datetime:
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidChange("start and end need a UTC offset")
    if end <= start:
        raise InvalidChange("end must be after start")
    if end - start > MAX_OVERRIDE:
        raise InvalidChange("an override lasts at most a year")
    if end <= now:
        raise PastChange("this interval is over; the past is not rewritten")
    # The part already past stays as it was.
    return max(start, now)


def _insert_override(
    session: Session,
    *,
    group_id: str,
    version: int,
    layer: str,
    assignee: str | None,
    start: datetime,
    end: datetime,
    reason: str,
    swap_id: str | None,
    now: datetime,
    who: str,
) -> dict[str, Any]:
    oid = uuid.uuid4().hex
    session.execute(
        roster_override.insert().values(
            id=oid,
            group_id=group_id,
            version=version,
            layer=layer,
            assignee=assignee,
            start_at=start,
            end_at=end,
            reason=reason,
            swap_id=swap_id,
            created_at=now,
            created_by=who,
        )
    )
    return {
        "id": oid,
        "layer": layer,
        "assignee": assignee,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "reason": reason,
        "swap_id": swap_id,
    }


def add_override(
    session: Session,
    clock: Clock,
    principal: Principal,
    group_id: str,
    *,
    layer: str,
    assignee: str | None,
    start: datetime,
    end: datetime,
    reason: str = "",
) -> dict[str, Any]:
    """Give ``[start, end)`` of ``layer`` to ``assignee`` (None: nobody, leaving a gap)."""
    view = open_group(session, principal, group_id, edit=True)
    if layer not in LAYERS:
        raise InvalidChange(f"layer must be one of {', '.join(LAYERS)}")
    if assignee is not None:
        assignee = access.reference(assignee, "PractitionerRole")
        if assignee not in view.config.doctor_names:
            raise InvalidChange(f"{assignee} is not a doctor of this group")
    now = clock.now()
    start = _check_interval(start, end, now)
    version = _bump(session, group_id)
    who = access.actor(principal)
    row = _insert_override(
        session,
        group_id=group_id,
        version=version,
        layer=layer,
        assignee=assignee,
        start=start,
        end=end,
        reason=reason,
        swap_id=None,
        now=now,
        who=who,
    )
    _audit_change(
        session, group_id=group_id, version=version, kind="override.add", actor=who, at=now,
        detail=row,
    )  # fmt: skip
    return {**row, "version": version}


def swap(
    session: Session,
    clock: Clock,
    principal: Principal,
    group_id: str,
    *,
    layer: str,
    first: tuple[datetime, datetime],
    second: tuple[datetime, datetime],
    reason: str = "",
) -> dict[str, Any]:
    """A two-sided swap (当番交代): A takes B's interval and B takes A's, in one change.

    Each interval must be held, as things stand, by one doctor throughout, and the two
    doctors must differ.
    """
    open_group(session, principal, group_id, edit=True)
    if layer not in LAYERS:
        raise InvalidChange(f"layer must be one of {', '.join(LAYERS)}")
    now = clock.now()
    starts = [_check_interval(s, e, now) for s, e in (first, second)]
    if first[0] < second[1] and second[0] < first[1]:
        raise InvalidChange("the two intervals of a swap must not overlap")
    # Lock first, then check against the roster as it stands under the lock.
    version = _bump(session, group_id)
    roster = load_roster(session, group_id, version - 1)
    holders = []
    for (_, end), start in zip((first, second), starts, strict=True):
        segs = roster.segments(start, end)
        held = {seg.primary if layer == "primary" else seg.backup for seg in segs}
        covered = sum((seg.end - seg.start).total_seconds() for seg in segs)
        if len(held) != 1 or None in held or covered != (end - start).total_seconds():
            raise InvalidChange(
                "each interval of a swap must be duty time held by one doctor throughout"
            )
        holders.append(held.pop())
    if holders[0] == holders[1]:
        raise InvalidChange("both intervals are held by the same doctor; nothing to swap")
    who = access.actor(principal)
    swap_id = uuid.uuid4().hex
    rows = [
        _insert_override(
            session,
            group_id=group_id,
            version=version,
            layer=layer,
            assignee=assignee,
            start=start,
            end=end,
            reason=reason,
            swap_id=swap_id,
            now=now,
            who=who,
        )
        for (_, end), start, assignee in zip(
            (first, second), starts, (holders[1], holders[0]), strict=True
        )
    ]
    detail = {"swap_id": swap_id, "overrides": rows, "between": holders}
    _audit_change(
        session, group_id=group_id, version=version, kind="swap", actor=who, at=now,
        detail=detail,
    )  # fmt: skip
    return {**detail, "version": version}


def revoke_override(
    session: Session, clock: Clock, principal: Principal, group_id: str, override_id: str
) -> dict[str, Any]:
    """End an override now (or drop it, if it has not begun); its past stays on record.

    Revoking one half of a swap revokes both halves.
    """
    open_group(session, principal, group_id, edit=True)
    row = session.execute(
        sa.select(roster_override).where(
            roster_override.c.id == override_id, roster_override.c.group_id == group_id
        )
    ).first()
    if row is None:
        raise OverrideNotFound(f"no override {override_id} in this group")
    if row.revoked_version is not None:
        raise InvalidChange("this override is already revoked")
    now = clock.now()
    if row.end_at <= now:
        raise PastChange("this override is over; the past is not rewritten")
    ids = [override_id]
    if row.swap_id:
        ids = [
            r.id
            for r in session.execute(
                sa.select(roster_override.c.id).where(
                    roster_override.c.swap_id == row.swap_id,
                    roster_override.c.revoked_version.is_(None),
                )
            )
        ]
    version = _bump(session, group_id)
    who = access.actor(principal)
    session.execute(
        roster_override.update()
        .where(roster_override.c.id.in_(ids))
        .values(revoked_version=version, revoked_at=now, revoked_by=who)
    )
    detail = {"revoked": sorted(ids), "at": now.isoformat()}
    _audit_change(
        session, group_id=group_id, version=version, kind="override.revoke", actor=who, at=now,
        detail=detail,
    )  # fmt: skip
    return {**detail, "version": version}


def list_overrides(
    session: Session, principal: Principal, group_id: str, *, include_revoked: bool = True
) -> list[dict[str, Any]]:
    open_group(session, principal, group_id)
    query = sa.select(roster_override).where(roster_override.c.group_id == group_id)
    if not include_revoked:
        query = query.where(roster_override.c.revoked_version.is_(None))
    return [
        {
            "id": r.id,
            "version": r.version,
            "layer": r.layer,
            "assignee": r.assignee,
            "start": r.start_at.isoformat(),
            "end": r.end_at.isoformat(),
            "reason": r.reason,
            "swap_id": r.swap_id,
            "created_at": r.created_at.isoformat(),
            "created_by": r.created_by,
            "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
            "revoked_by": r.revoked_by,
        }
        for r in session.execute(query.order_by(roster_override.c.version, roster_override.c.id))
    ]


def list_changes(session: Session, principal: Principal, group_id: str) -> list[dict[str, Any]]:
    """The group's change log, oldest first (members may read it: it is their roster)."""
    open_group(session, principal, group_id)
    return [
        {
            "version": r.version,
            "kind": r.kind,
            "actor": r.actor,
            "at": r.at.isoformat(),
            "detail": r.detail,
        }
        for r in session.execute(
            sa.select(roster_change)
            .where(roster_change.c.group_id == group_id)
            .order_by(roster_change.c.pk)
        )
    ]


# -- iCal tokens --------------------------------------------------------------------------------


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_ical_token(
    session: Session,
    clock: Clock,
    principal: Principal,
    group_id: str,
    *,
    doctor: str | None = None,
) -> dict[str, Any]:
    """A new calendar-feed token (shown once; stored hashed). ``doctor`` None: group feed.

    Coordinators may create any feed; members the group feed and their own doctor feed.
    """
    view = open_group(session, principal, group_id)
    if doctor is not None:
        doctor = access.reference(doctor, "PractitionerRole")
        if doctor not in view.config.doctor_names:
            raise InvalidChange(f"{doctor} is not a doctor of this group")
        own = access.reference(principal.practitioner_role_id, "PractitionerRole")
        if view.level != access.COORDINATOR and doctor != own:
            raise NotAllowed("members may create a feed of their own duty only")
    token = secrets.token_urlsafe(32)
    token_id = uuid.uuid4().hex[:16]
    now = clock.now()
    who = access.actor(principal)
    session.execute(
        roster_ical_token.insert().values(
            id=token_id,
            group_id=group_id,
            token_hash=_hash(token),
            doctor=doctor,
            created_at=now,
            created_by=who,
        )
    )
    _audit_change(
        session, group_id=group_id, version=view.version, kind="ical.create", actor=who, at=now,
        detail={"token_id": token_id, "doctor": doctor},
    )  # fmt: skip
    return {"id": token_id, "token": token, "doctor": doctor}


def list_ical_tokens(session: Session, principal: Principal, group_id: str) -> list[dict[str, Any]]:
    """Tokens (never their secrets): all for coordinators, one's own for members."""
    view = open_group(session, principal, group_id)
    query = sa.select(roster_ical_token).where(roster_ical_token.c.group_id == group_id)
    if view.level != access.COORDINATOR:
        query = query.where(roster_ical_token.c.created_by == access.actor(principal))
    return [
        {
            "id": r.id,
            "doctor": r.doctor,
            "created_at": r.created_at.isoformat(),
            "created_by": r.created_by,
            "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
        }
        for r in session.execute(query.order_by(roster_ical_token.c.created_at))
    ]


def revoke_ical_token(
    session: Session, clock: Clock, principal: Principal, group_id: str, token_id: str
) -> dict[str, Any]:
    view = open_group(session, principal, group_id)
    row = session.execute(
        sa.select(roster_ical_token).where(
            roster_ical_token.c.id == token_id, roster_ical_token.c.group_id == group_id
        )
    ).first()
    who = access.actor(principal)
    if row is None or (view.level != access.COORDINATOR and row.created_by != who):
        raise TokenNotFound("no such calendar token")
    if row.revoked_at is None:
        now = clock.now()
        session.execute(
            roster_ical_token.update()
            .where(roster_ical_token.c.id == token_id)
            .values(revoked_at=now, revoked_by=who)
        )
        _audit_change(
            session, group_id=group_id, version=view.version, kind="ical.revoke", actor=who,
            at=now, detail={"token_id": token_id},
        )  # fmt: skip
    return {"id": token_id, "revoked": True}


def resolve_ical_token(session: Session, token: str) -> tuple[Roster, str | None]:
    """The roster and doctor (None: group feed) of a live token; TokenNotFound otherwise."""
    if not token or len(token) > 200:
        raise TokenNotFound("no such calendar token")
    row = session.execute(
        sa.select(roster_ical_token).where(roster_ical_token.c.token_hash == _hash(token))
    ).first()
    if row is None or row.revoked_at is not None:
        raise TokenNotFound("no such calendar token")
    return load_roster(session, row.group_id), row.doctor


# -- for other packages (urgent calls) ------------------------------------------------------


def duty_at(session: Session, group_id: str, t: datetime) -> Duty:
    """Who is primary and back-up for ``group_id`` at ``t`` (no access check: system use)."""
    return on_duty(load_roster(session, group_id), t)


def groups_for_clinic(session: Session, org_id: str) -> list[str]:
    """Ids of the groups whose newest plan lists clinic ``org_id`` (usually one)."""
    ref = access.reference(org_id, "Organization")
    return [
        row.group_id
        for row in session.execute(
            sa.select(roster_membership.c.group_id)
            .where(roster_membership.c.ref == ref, roster_membership.c.kind == "clinic")
            .order_by(roster_membership.c.group_id)
        )
    ]


def group_for_clinic(session: Session, org_id: str) -> str | None:
    """The group covering clinic ``org_id`` after hours, or None if it belongs to none."""
    groups = groups_for_clinic(session, org_id)
    return groups[0] if groups else None


def in_office_hours(session: Session, org_id: str, t: datetime) -> bool:
    """Whether clinic ``org_id`` answers its own calls at ``t`` (its group's office hours).

    A clinic in no group has no known office hours: False, so calls are never sent to an
    empty office on a guess.
    """
    ref = access.reference(org_id, "Organization") or ""
    for gid in groups_for_clinic(session, ref):
        cfg = load_roster(session, gid).config_at(t)
        if cfg.clinic(ref) is not None:
            return clinic_open(cfg, ref, t)
    return False


def next_office_hours_start(session: Session, org_id: str, t: datetime) -> datetime | None:
    """When clinic ``org_id`` next answers its own calls (``t`` if it does now).

    None for a clinic in no group, or closed for the next 60 days.
    """
    ref = access.reference(org_id, "Organization") or ""
    for gid in groups_for_clinic(session, ref):
        cfg = load_roster(session, gid).config_at(t)
        if cfg.clinic(ref) is not None:
            return next_opening(cfg, ref, t)
    return None


__all__ = [
    "GroupView",
    "add_override",
    "create_group",
    "create_ical_token",
    "duty_at",
    "fhir_search",
    "group_for_clinic",
    "groups_for_clinic",
    "in_office_hours",
    "list_changes",
    "list_groups",
    "list_ical_tokens",
    "list_overrides",
    "load_roster",
    "next_office_hours_start",
    "open_group",
    "resolve_ical_token",
    "revoke_ical_token",
    "revoke_override",
    "swap",
    "update_plan",
]
