"""The roster snapshot and the questions asked of it: who is on duty at T, and when.

A :class:`Roster` is an immutable view of one group as of one version: its plans (group
config + rotation, each effective from an instant) and its overrides. From them it lays
out one timeline of :class:`Segment` s (duty window, primary, back-up); every query reads
that same timeline, so "who is on duty at T" and the range listing can never disagree.

Precedence, as in Grafana OnCall's schedules: overrides > rotation. When the back-up
rotation lands on the very doctor who is primary, the next doctor of the back-up order
stands in for that stretch (a doctor cannot back themself up). Between overrides the
newer one wins (higher ``seq``). Overrides only act inside duty windows: outside them
nobody is on duty for the group, whatever an override says.

The timeline is laid out lazily, half a year at a time, and memoised inside the snapshot;
a snapshot is built once per (group, version) and shared by readers.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise

from renkei.roster.config import GroupConfig
from renkei.roster.errors import OutOfRange
from renkei.roster.rotation import Piece, RotationState, assign
from renkei.roster.windows import Window, duty_windows, local_instant

LAYERS = ("primary", "backup")
_CHUNK = timedelta(days=183)
_LOOKAHEAD = timedelta(days=14)
#: queries past this are refused rather than laying out centuries of roster
MAX_INSTANT = datetime(2200, 1, 1, tzinfo=UTC)
MAX_RANGE = timedelta(days=3 * 366)


@dataclass(frozen=True)
class Plan:
    """One version of a group's config, in force from ``effective_from`` until the next plan."""

    effective_from: datetime
    config: GroupConfig
    version: int = 1


@dataclass(frozen=True)
class Override:
    """Duty in ``[start, end)`` given to ``assignee`` (None: nobody, a deliberate gap).

    ``revoked_at`` ends it early without erasing the time it was in force.
    """

    id: str
    layer: str
    assignee: str | None
    start: datetime
    end: datetime
    seq: int
    revoked_at: datetime | None = None
    reason: str = ""
    swap_id: str | None = None

    @property
    def effective_end(self) -> datetime:
        return min(self.end, self.revoked_at) if self.revoked_at else self.end


@dataclass(frozen=True)
class Segment:
    """A stretch of duty with one primary and one back-up."""

    start: datetime
    end: datetime
    window: Window
    primary: str | None
    backup: str | None
    primary_override: str | None = None
    backup_override: str | None = None


@dataclass(frozen=True)
class Duty:
    """The answer to "who is on duty at ``at``": all None outside duty windows."""

    at: datetime
    primary: str | None = None
    backup: str | None = None
    window: Window | None = None
    #: the stretch during which this exact answer holds
    segment: Segment | None = None
    coordinator: str | None = None


@dataclass(frozen=True)
class Shift:
    """A doctor's own duty: contiguous time in one role."""

    start: datetime
    end: datetime
    role: str
    doctor: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Gap:
    start: datetime
    end: datetime
    missing: str  # "primary" | "backup" | "backup-is-primary"
    labels: tuple[str, ...]


class Roster:
    """An immutable snapshot of one group's roster (plans + overrides, as of ``version``)."""

    def __init__(
        self,
        plans: Sequence[Plan],
        overrides: Iterable[Override] = (),
        *,
        group_id: str = "",
        version: int = 0,
    ) -> None:
        if not plans:
            raise ValueError("a roster needs at least one plan")
        for p in plans:
            if p.effective_from.tzinfo is None:
                raise ValueError("plan effective_from must be timezone-aware")
        self.group_id = group_id
        self.version = version
        self.plans: tuple[Plan, ...] = tuple(sorted(plans, key=lambda p: p.effective_from))
        self._plan_starts = [p.effective_from.astimezone(UTC) for p in self.plans]
        active = [o for o in overrides if o.effective_end > o.start]
        self.overrides: tuple[Override, ...] = tuple(sorted(active, key=lambda o: o.start))
        self._override_starts = [o.start for o in self.overrides]
        self._segments: list[Segment] = []
        self._seg_starts: list[datetime] = []
        self._built_until = self._plan_starts[0]
        self._states = {layer: RotationState() for layer in LAYERS}
        self._lock = threading.Lock()

    # -- public views ---------------------------------------------------------------------

    @property
    def start(self) -> datetime:
        """When the first plan came into force: no duty before it."""
        return self._plan_starts[0]

    @property
    def config(self) -> GroupConfig:
        """The newest plan's config (members, coordinator, windows ...)."""
        return self.plans[-1].config

    def config_at(self, t: datetime) -> GroupConfig:
        i = bisect_right(self._plan_starts, t.astimezone(UTC)) - 1
        return self.plans[max(i, 0)].config

    def segments(self, start: datetime, end: datetime) -> list[Segment]:
        """Segments overlapping ``[start, end)``, clipped to it."""
        start, end = _utc(start), _utc(end)
        if end <= start:
            return []
        if end - start > MAX_RANGE:
            raise OutOfRange(f"a range may span at most {MAX_RANGE.days} days")
        self._ensure(end)
        i = max(bisect_right(self._seg_starts, start) - 1, 0)
        out = []
        for seg in self._segments[i:]:
            if seg.start >= end:
                break
            if seg.end <= start:
                continue
            if seg.start < start or seg.end > end:
                seg = _clip(seg, max(seg.start, start), min(seg.end, end))
            out.append(seg)
        return out

    def segment_at(self, t: datetime) -> Segment | None:
        t = _utc(t)
        self._ensure(t + timedelta(seconds=1))
        i = bisect_right(self._seg_starts, t) - 1
        if i >= 0 and self._segments[i].end > t:
            return self._segments[i]
        return None

    # -- laying out the timeline ------------------------------------------------------------

    def _ensure(self, until: datetime) -> None:
        if until > MAX_INSTANT:
            raise OutOfRange("the roster is not computed past the year 2199")
        if until <= self._built_until:
            return
        with self._lock:
            while self._built_until < until:
                self._extend()

    def _extend(self) -> None:
        a = self._built_until
        i = bisect_right(self._plan_starts, a) - 1
        plan = self.plans[i]
        era_end = self._plan_starts[i + 1] if i + 1 < len(self.plans) else MAX_INSTANT
        b = min(a + _CHUNK, era_end)
        cfg = plan.config
        windows = [w for w in duty_windows(cfg, a, min(b + _LOOKAHEAD, era_end)) if w.start < b]
        until = max(b, windows[-1].end) if windows else b
        primary = assign(cfg.primary, windows, cfg.tz, self._states["primary"])
        if cfg.backup is not None:
            backup = assign(cfg.backup, windows, cfg.tz, self._states["backup"])
        else:
            self._states["backup"] = RotationState()
            backup = []
        base = _combine(windows, primary, backup)
        for seg in self._apply_overrides(base, a, until):
            self._append(seg)
        self._built_until = until

    def _apply_overrides(self, base: list[Segment], a: datetime, b: datetime) -> list[Segment]:
        hi = bisect_left(self._override_starts, b)
        cands = [o for o in self.overrides[:hi] if o.effective_end > a]
        if not cands:
            return base
        cuts = sorted({t for o in cands for t in (o.start, o.effective_end) if a < t < b})
        out: list[Segment] = []
        ptr = 0
        active: list[Override] = []
        for seg in base:
            points = [seg.start]
            j = bisect_right(cuts, seg.start)
            while j < len(cuts) and cuts[j] < seg.end:
                points.append(cuts[j])
                j += 1
            points.append(seg.end)
            for s, e in pairwise(points):
                while ptr < len(cands) and cands[ptr].start <= s:
                    active.append(cands[ptr])
                    ptr += 1
                active = [o for o in active if o.effective_end > s]
                piece = _clip(seg, s, e)
                for layer in LAYERS:
                    winners = [o for o in active if o.layer == layer]
                    if winners:
                        win = max(winners, key=lambda o: o.seq)
                        piece = _with(piece, layer, win.assignee, win.id)
                out.append(piece)
        return out

    def _append(self, seg: Segment) -> None:
        if self._segments:
            last = self._segments[-1]
            if (
                last.end == seg.start
                and last.window == seg.window
                and (last.primary, last.backup, last.primary_override, last.backup_override)
                == (seg.primary, seg.backup, seg.primary_override, seg.backup_override)
            ):
                self._segments[-1] = _clip(last, last.start, seg.end)
                return
        self._segments.append(seg)
        self._seg_starts.append(seg.start)


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError("roster queries need timezone-aware instants")
    return t.astimezone(UTC)


def _clip(seg: Segment, start: datetime, end: datetime) -> Segment:
    return Segment(
        start,
        end,
        seg.window,
        seg.primary,
        seg.backup,
        seg.primary_override,
        seg.backup_override,
    )


def _with(seg: Segment, layer: str, assignee: str | None, override_id: str) -> Segment:
    if layer == "primary":
        return Segment(
            seg.start, seg.end, seg.window, assignee, seg.backup, override_id, seg.backup_override
        )
    return Segment(
        seg.start, seg.end, seg.window, seg.primary, assignee, seg.primary_override, override_id
    )


def _combine(windows: list[Window], primary: list[Piece], backup: list[Piece]) -> list[Segment]:
    """Overlay two partitions of the same windows into segments with both layers."""
    out = []
    i = j = 0
    for w in windows:
        t = w.start
        while t < w.end:
            p = primary[i]
            b = backup[j] if backup else None
            e = min(p.end, b.end if b else w.end, w.end)
            second = b.assignee if b else None
            if b is not None and second == p.assignee and b.alternate is not None:
                second = b.alternate  # nobody backs themself up: the next in order stands in
            out.append(Segment(t, e, w, p.assignee, second))
            t = e
            if p.end == e:
                i += 1
            if b is not None and b.end == e:
                j += 1
    return out


# -- queries -------------------------------------------------------------------------------


def on_duty(roster: Roster, t: datetime) -> Duty:
    """Who is primary and back-up at instant ``t`` (timezone-aware), and in which window.

    Outside duty windows (office hours) the answer has no primary: calls go to the
    patient's own clinic then.
    """
    t = _utc(t)
    if t < roster.start:
        return Duty(at=t)
    seg = roster.segment_at(t)
    coordinator = roster.config_at(t).coordinator
    if seg is None:
        return Duty(at=t, coordinator=coordinator)
    return Duty(
        at=t,
        primary=seg.primary,
        backup=seg.backup,
        window=seg.window,
        segment=seg,
        coordinator=coordinator,
    )


def schedule(roster: Roster, start: datetime, end: datetime) -> list[Segment]:
    """The group's duty in ``[start, end)``: segments in time order, clipped to the range."""
    return roster.segments(start, end)


def doctor_schedule(roster: Roster, doctor: str, start: datetime, end: datetime) -> list[Shift]:
    """One doctor's shifts in ``[start, end)`` (primary and back-up), contiguous time merged."""
    out: list[Shift] = []
    for seg in roster.segments(start, end):
        for role in LAYERS:
            if (seg.primary if role == "primary" else seg.backup) != doctor:
                continue
            prev = next((s for s in reversed(out) if s.role == role), None)
            if prev is not None and prev.end == seg.start:
                labels = prev.labels + tuple(x for x in seg.window.labels if x not in prev.labels)
                out[out.index(prev)] = Shift(prev.start, seg.end, role, doctor, labels)
            else:
                out.append(Shift(seg.start, seg.end, role, doctor, seg.window.labels))
    out.sort(key=lambda s: (s.start, s.role))
    return out


def coverage_gaps(roster: Roster, start: datetime, end: datetime) -> list[Gap]:
    """Duty time with no primary, no back-up, or a back-up who is the primary themself."""
    out: list[Gap] = []
    for seg in roster.segments(start, end):
        missing = None
        if seg.primary is None:
            missing = "primary"
        elif seg.backup is None:
            missing = "backup"
        elif seg.backup == seg.primary:
            missing = "backup-is-primary"
        if missing is None:
            continue
        if out and out[-1].end == seg.start and out[-1].missing == missing:
            out[-1] = Gap(out[-1].start, seg.end, missing, out[-1].labels)
        else:
            out.append(Gap(seg.start, seg.end, missing, seg.window.labels))
    return out


@dataclass
class FairnessRow:
    nights: int = 0
    days: int = 0
    hours: float = 0.0
    backup_nights: int = 0
    backup_days: int = 0
    backup_hours: float = 0.0


@dataclass
class Fairness:
    """Duty counts per doctor per month (local time of the group).

    A *night* is a local midnight the doctor spends on duty (counted for the evening's
    month); a *day* is a local noon on duty, which only weekend, holiday and closure
    windows contain. Hours are counted in the month each piece of duty starts.
    """

    months: list[str]
    doctors: dict[str, dict[str, FairnessRow]] = field(default_factory=dict)


def fairness(roster: Roster, start: date, end: date) -> Fairness:
    """Nights, holiday days and hours per doctor per month, for local dates ``[start, end)``."""
    cfg = roster.config
    tz = cfg.tz
    t0 = local_instant(start, time(0), tz)
    t1 = local_instant(end, time(0), tz)
    months: list[str] = []
    d = start.replace(day=1)
    while d < end:
        months.append(f"{d.year:04d}-{d.month:02d}")
        d = (d + timedelta(days=32)).replace(day=1)
    result = Fairness(months=months)
    for doc in cfg.doctors:
        result.doctors[doc.id] = {m: FairnessRow() for m in months}

    def row(doctor: str, day: date) -> FairnessRow:
        per = result.doctors.setdefault(doctor, {m: FairnessRow() for m in months})
        return per.setdefault(f"{day.year:04d}-{day.month:02d}", FairnessRow())

    for seg in roster.segments(t0, t1):
        day = seg.start.astimezone(tz).date()
        hours = (seg.end - seg.start).total_seconds() / 3600
        if seg.primary:
            row(seg.primary, day).hours += hours
        if seg.backup:
            row(seg.backup, day).backup_hours += hours
    day = start
    while day < end:
        midnight = local_instant(day + timedelta(days=1), time(0), tz)
        noon = local_instant(day, time(12), tz)
        # the night of the last date counts too, though its midnight is past the range
        for instant, kind in ((midnight, "nights"), (noon, "days")):
            found = roster.segment_at(instant)
            if found is None:
                continue
            if found.primary:
                r = row(found.primary, day)
                setattr(r, kind, getattr(r, kind) + 1)
            if found.backup:
                r = row(found.backup, day)
                setattr(r, "backup_" + kind, getattr(r, "backup_" + kind) + 1)
        day += timedelta(days=1)
    for per in result.doctors.values():
        for r in per.values():
            r.hours = round(r.hours, 2)
            r.backup_hours = round(r.backup_hours, 2)
    return result


__all__ = [
    "Duty",
    "Fairness",
    "FairnessRow",
    "Gap",
    "Override",
    "Plan",
    "Roster",
    "Segment",
    "Shift",
    "coverage_gaps",
    "doctor_schedule",
    "fairness",
    "on_duty",
    "schedule",
]
