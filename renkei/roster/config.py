"""A rotation group's definition (輪番グループ設定), parsed from YAML/JSON into frozen values.

The same dictionary shape is what ``renkei roster import`` reads, what ``POST /oncall/groups``
takes and what is stored (normalised) with every plan version; see docs/roster.md.

>>> cfg = parse_config({
...     "name": "城南輪番", "coordinator": "PractitionerRole/c1",
...     "clinics": [{"id": "Organization/o1", "name": "さくら"}],
...     "doctors": [{"id": "PractitionerRole/d1", "name": "佐藤"}],
...     "windows": [{"name": "平日夜間", "days": ["mon", "tue"], "start": "18:00", "end": "09:00"}],
...     "rotation": {"primary": {"doctors": ["PractitionerRole/d1"], "per": "day"}},
... })
>>> cfg.windows[0].days, cfg.windows[0].end_days_later
((0, 1), 1)
>>> cfg.timezone
'Asia/Tokyo'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, time
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from renkei.roster.errors import InvalidConfig

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ROTATION_UNITS = ("day", "week", "window")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")
_HHMM_RANGE = re.compile(r"^([0-2]\d:[0-5]\d)\s*-\s*([0-2]\d:[0-5]\d)$")
_REF = re.compile(r"^(Organization|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True)
class WindowRule:
    """A weekly duty window: starts on each of ``days`` at ``start`` and ends
    ``end_days_later`` days later at ``end`` (local wall-clock time of the group)."""

    name: str
    days: tuple[int, ...]
    start: time
    end: time
    end_days_later: int


@dataclass(frozen=True)
class HolidayRule:
    """How a day off (national holiday or closure) becomes duty: from ``start`` on that day
    to ``end`` on the same day, or on the next day when ``end <= start`` (default 09:00-09:00)."""

    national: bool = True
    start: time = time(9, 0)
    end: time = time(9, 0)


@dataclass(frozen=True)
class Closure:
    """A group-specific closure (年末年始, 夏季休診). ``recurring`` closures repeat every year
    by month-day (and may cross the new year); ``clinics`` empty means the whole group."""

    name: str
    first: date
    last: date
    recurring: bool = False
    clinics: tuple[str, ...] = ()

    def dates(self, year: int) -> list[date]:
        """The closed dates that start in ``year`` (recurring) or all of them (one-off)."""
        if not self.recurring:
            if self.first.year != year:
                return []
            start, stop = self.first, self.last
        else:
            start = _replace_year(self.first, year)
            stop = _replace_year(self.last, year)
            if stop < start:
                stop = _replace_year(self.last, year + 1)
        out = []
        day = start
        while day <= stop:
            out.append(day)
            day = date.fromordinal(day.toordinal() + 1)
        return out


@dataclass(frozen=True)
class OfficeHours:
    """A clinic's 診療時間: time ranges per kind of day; in them, calls go to the clinic."""

    weekday: tuple[tuple[time, time], ...] = ()
    saturday: tuple[tuple[time, time], ...] = ()
    sunday: tuple[tuple[time, time], ...] = ()


@dataclass(frozen=True)
class Clinic:
    id: str
    name: str
    office_hours: OfficeHours = field(default_factory=OfficeHours)


@dataclass(frozen=True)
class Doctor:
    id: str
    name: str


@dataclass(frozen=True)
class Layer:
    """One rotation layer (主当番 primary or 副当番 back-up): doctors in order, changing
    per handoff day, per handoff week, or per duty window."""

    doctors: tuple[str, ...]
    per: str = "day"
    handoff: time = time(9, 0)
    handoff_day: int = 0
    start_with: int = 0

    @property
    def signature(self) -> tuple[Any, ...]:
        """Two layers with the same signature continue one rotation across plan versions."""
        return (self.doctors, self.per, self.handoff, self.handoff_day)


@dataclass(frozen=True)
class Escalation:
    """The group's own call-escalation timings (optional; the calls package has defaults):
    how long each step waits for an acknowledgement, how many times the chain is tried."""

    ack_timeout_minutes: int = 5
    max_rounds: int = 2


@dataclass(frozen=True)
class GroupConfig:
    name: str
    coordinator: str
    clinics: tuple[Clinic, ...]
    doctors: tuple[Doctor, ...]
    windows: tuple[WindowRule, ...]
    primary: Layer
    backup: Layer | None = None
    timezone: str = "Asia/Tokyo"
    holidays: HolidayRule = field(default_factory=HolidayRule)
    closures: tuple[Closure, ...] = ()
    escalation: Escalation | None = None

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def doctor_names(self) -> dict[str, str]:
        return {d.id: d.name for d in self.doctors}

    @cached_property
    def clinic_ids(self) -> frozenset[str]:
        return frozenset(c.id for c in self.clinics)

    def clinic(self, clinic_id: str) -> Clinic | None:
        for c in self.clinics:
            if c.id == clinic_id:
                return c
        return None


def _replace_year(day: date, year: int) -> date:
    try:
        return day.replace(year=year)
    except ValueError:  # 29 February in a common year
        return date(year, 2, 28)


def _req(raw: dict[str, Any], key: str, path: str) -> Any:
    if key not in raw or raw[key] in (None, ""):
        raise InvalidConfig("is required", f"{path}{key}")
    return raw[key]


def _time(value: Any, path: str) -> time:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 18:00 as sexagesimal 1080; accept it.
        value = f"{value // 60:02d}:{value % 60:02d}"
    match = _TIME.match(str(value))
    if not match:
        raise InvalidConfig(f"{value!r} is not a time HH:MM (00:00-23:59)", path)
    return time(int(match.group(1)), int(match.group(2)))


def _day(value: Any, path: str) -> int:
    name = str(value).strip().lower()[:3]
    if name not in DAY_NAMES:
        raise InvalidConfig(f"{value!r} is not a day name (mon..sun)", path)
    return DAY_NAMES.index(name)


def _ref(value: Any, kind: str, path: str) -> str:
    text = str(value)
    if "/" not in text:
        text = f"{kind}/{text}"
    if not _REF.match(text) or not text.startswith(kind + "/"):
        raise InvalidConfig(f"{value!r} is not a {kind} reference", path)
    return text


def _ranges(value: Any, path: str) -> tuple[tuple[time, time], ...]:
    if value in (None, "", "closed"):
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidConfig("must be a list of 'HH:MM-HH:MM' ranges", path)
    out = []
    for i, item in enumerate(value):
        match = _HHMM_RANGE.match(str(item))
        if not match:
            raise InvalidConfig(f"{item!r} is not a range 'HH:MM-HH:MM'", f"{path}[{i}]")
        start = _time(match.group(1), f"{path}[{i}]")
        end = _time(match.group(2), f"{path}[{i}]")
        if end <= start:
            raise InvalidConfig("office hours end after they start", f"{path}[{i}]")
        out.append((start, end))
    return tuple(sorted(out))


def _closure_day(value: Any, path: str) -> tuple[date, bool]:
    if isinstance(value, date):
        return value, False
    text = str(value)
    match = _MONTH_DAY.match(text)
    if match:
        try:
            return date(2000, int(match.group(1)), int(match.group(2))), True
        except ValueError as exc:
            raise InvalidConfig(f"{text!r} is not a month-day MM-DD", path) from exc
    try:
        return date.fromisoformat(text), False
    except ValueError as exc:
        raise InvalidConfig(f"{text!r} is neither YYYY-MM-DD nor MM-DD", path) from exc


def _layer(raw: Any, path: str, doctors: set[str]) -> Layer:
    if not isinstance(raw, dict):
        raise InvalidConfig("must be an object with doctors, per, handoff", path)
    ids = raw.get("doctors") or []
    if not isinstance(ids, list) or not ids:
        raise InvalidConfig("needs at least one doctor", f"{path}.doctors")
    refs = tuple(_ref(d, "PractitionerRole", f"{path}.doctors[{i}]") for i, d in enumerate(ids))
    for i, ref in enumerate(refs):
        if ref not in doctors:
            raise InvalidConfig(f"{ref} is not one of the group's doctors", f"{path}.doctors[{i}]")
    per = str(raw.get("per", "day"))
    if per not in ROTATION_UNITS:
        raise InvalidConfig(f"must be one of {', '.join(ROTATION_UNITS)}", f"{path}.per")
    start_with = 0
    if raw.get("start_with"):
        first = _ref(raw["start_with"], "PractitionerRole", f"{path}.start_with")
        if first not in refs:
            raise InvalidConfig("must be one of the layer's doctors", f"{path}.start_with")
        start_with = refs.index(first)
    return Layer(
        doctors=refs,
        per=per,
        handoff=_time(raw.get("handoff", "09:00"), f"{path}.handoff"),
        handoff_day=_day(raw.get("handoff_day", "mon"), f"{path}.handoff_day"),
        start_with=start_with,
    )


def parse_config(raw: Any) -> GroupConfig:
    """Validate a group definition and return it frozen; raises :class:`InvalidConfig`."""
    if not isinstance(raw, dict):
        raise InvalidConfig("a group definition must be an object")
    tz_name = str(raw.get("timezone") or "Asia/Tokyo")
    try:
        ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidConfig(f"unknown time zone {tz_name!r}", "timezone") from exc

    clinics = []
    for i, c in enumerate(_list(raw, "clinics")):
        path = f"clinics[{i}]"
        if not isinstance(c, dict):
            raise InvalidConfig("must be an object with id and name", path)
        oh = c.get("office_hours") or {}
        if not isinstance(oh, dict):
            raise InvalidConfig("must be an object", f"{path}.office_hours")
        clinics.append(
            Clinic(
                id=_ref(_req(c, "id", path + "."), "Organization", f"{path}.id"),
                name=str(c.get("name") or c["id"]),
                office_hours=OfficeHours(
                    weekday=_ranges(oh.get("weekday"), f"{path}.office_hours.weekday"),
                    saturday=_ranges(oh.get("saturday"), f"{path}.office_hours.saturday"),
                    sunday=_ranges(oh.get("sunday"), f"{path}.office_hours.sunday"),
                ),
            )
        )
    if not clinics:
        raise InvalidConfig("a group needs at least one clinic", "clinics")
    _unique([c.id for c in clinics], "clinics")

    doctors = []
    for i, d in enumerate(_list(raw, "doctors")):
        path = f"doctors[{i}]"
        if isinstance(d, str):
            d = {"id": d}
        if not isinstance(d, dict):
            raise InvalidConfig("must be an object with id and name", path)
        ref = _ref(_req(d, "id", path + "."), "PractitionerRole", f"{path}.id")
        doctors.append(Doctor(id=ref, name=str(d.get("name") or ref)))
    if not doctors:
        raise InvalidConfig("a group needs at least one doctor", "doctors")
    _unique([d.id for d in doctors], "doctors")
    doctor_ids = {d.id for d in doctors}

    windows = []
    for i, w in enumerate(_list(raw, "windows")):
        path = f"windows[{i}]"
        if not isinstance(w, dict):
            raise InvalidConfig("must be an object", path)
        days = w.get("days")
        if isinstance(days, str):
            days = [days]
        if not isinstance(days, list) or not days:
            raise InvalidConfig("needs at least one day", f"{path}.days")
        start = _time(_req(w, "start", path + "."), f"{path}.start")
        end = _time(_req(w, "end", path + "."), f"{path}.end")
        later = w.get("end_days_later")
        if later is None:
            later = 1 if end <= start else 0
        if not isinstance(later, int) or not 0 <= later <= 6:
            raise InvalidConfig("must be an integer 0..6", f"{path}.end_days_later")
        if later == 0 and end <= start:
            raise InvalidConfig("a same-day window must end after it starts", f"{path}.end")
        windows.append(
            WindowRule(
                name=str(w.get("name") or f"window {i + 1}"),
                days=tuple(sorted({_day(d, f"{path}.days[{j}]") for j, d in enumerate(days)})),
                start=start,
                end=end,
                end_days_later=later,
            )
        )

    hol = raw.get("holidays") or {}
    if not isinstance(hol, dict):
        raise InvalidConfig("must be an object", "holidays")
    holidays = HolidayRule(
        national=bool(hol.get("national", True)),
        start=_time(hol.get("start", "09:00"), "holidays.start"),
        end=_time(hol.get("end", "09:00"), "holidays.end"),
    )

    closures = []
    for i, c in enumerate(raw.get("closures") or []):
        path = f"closures[{i}]"
        if not isinstance(c, dict):
            raise InvalidConfig("must be an object with name, from, to", path)
        first, rec1 = _closure_day(_req(c, "from", path + "."), f"{path}.from")
        last, rec2 = _closure_day(c.get("to", c["from"]), f"{path}.to")
        if rec1 != rec2:
            raise InvalidConfig("from and to must both be MM-DD or both YYYY-MM-DD", path)
        if not rec1 and last < first:
            raise InvalidConfig("to is before from", f"{path}.to")
        if not rec1 and (last - first).days > 366:
            raise InvalidConfig("a closure lasts at most a year", f"{path}.to")
        scope = tuple(
            _ref(x, "Organization", f"{path}.clinics[{j}]")
            for j, x in enumerate(c.get("clinics") or [])
        )
        for j, ref in enumerate(scope):
            if ref not in {cl.id for cl in clinics}:
                raise InvalidConfig(f"{ref} is not a clinic of the group", f"{path}.clinics[{j}]")
        closures.append(
            Closure(
                name=str(c.get("name") or "休診"),
                first=first,
                last=last,
                recurring=rec1,
                clinics=scope,
            )
        )

    rot = raw.get("rotation")
    if not isinstance(rot, dict):
        raise InvalidConfig("is required (primary, optional backup)", "rotation")
    primary = _layer(rot.get("primary"), "rotation.primary", doctor_ids)
    backup = _layer(rot["backup"], "rotation.backup", doctor_ids) if rot.get("backup") else None
    coordinator = _ref(_req(raw, "coordinator", ""), "PractitionerRole", "coordinator")
    escalation = _escalation(raw.get("escalation"))
    return GroupConfig(
        name=str(_req(raw, "name", "")),
        coordinator=coordinator,
        clinics=tuple(clinics),
        doctors=tuple(doctors),
        windows=tuple(windows),
        primary=primary,
        backup=backup,
        timezone=tz_name,
        holidays=holidays,
        closures=tuple(closures),
        escalation=escalation,
    )


def _escalation(raw: Any) -> Escalation | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidConfig("must be an object", "escalation")
    out = Escalation()
    for key, low, high in (("ack_timeout_minutes", 1, 60), ("max_rounds", 1, 5)):
        value = raw.get(key, getattr(out, key))
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidConfig(f"must be an integer {low}..{high}", f"escalation.{key}")
    return Escalation(
        ack_timeout_minutes=raw.get("ack_timeout_minutes", out.ack_timeout_minutes),
        max_rounds=raw.get("max_rounds", out.max_rounds),
    )


def _list(raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key) or []
    if not isinstance(value, list):
        raise InvalidConfig("must be a list", key)
    return value


def _unique(ids: list[str], path: str) -> None:
    seen: set[str] = set()
    for i, ref in enumerate(ids):
        if ref in seen:
            raise InvalidConfig(f"{ref} is listed twice", f"{path}[{i}]")
        seen.add(ref)


def _hhmm(t: time) -> str:
    return f"{t.hour:02d}:{t.minute:02d}"


def config_to_dict(cfg: GroupConfig) -> dict[str, Any]:
    """The normalised JSON form of a config; ``parse_config`` of it gives ``cfg`` back."""

    def layer(layer: Layer) -> dict[str, Any]:
        return {
            "doctors": list(layer.doctors),
            "per": layer.per,
            "handoff": _hhmm(layer.handoff),
            "handoff_day": DAY_NAMES[layer.handoff_day],
            "start_with": layer.doctors[layer.start_with],
        }

    def ranges(rs: tuple[tuple[time, time], ...]) -> list[str]:
        return [f"{_hhmm(a)}-{_hhmm(b)}" for a, b in rs]

    def closure_day(d: date, recurring: bool) -> str:
        return f"{d.month:02d}-{d.day:02d}" if recurring else d.isoformat()

    rotation: dict[str, Any] = {"primary": layer(cfg.primary)}
    if cfg.backup is not None:
        rotation["backup"] = layer(cfg.backup)
    extra: dict[str, Any] = {}
    if cfg.escalation is not None:
        extra["escalation"] = {
            "ack_timeout_minutes": cfg.escalation.ack_timeout_minutes,
            "max_rounds": cfg.escalation.max_rounds,
        }
    return {
        "name": cfg.name,
        "timezone": cfg.timezone,
        "coordinator": cfg.coordinator,
        "clinics": [
            {
                "id": c.id,
                "name": c.name,
                "office_hours": {
                    "weekday": ranges(c.office_hours.weekday),
                    "saturday": ranges(c.office_hours.saturday),
                    "sunday": ranges(c.office_hours.sunday),
                },
            }
            for c in cfg.clinics
        ],
        "doctors": [{"id": d.id, "name": d.name} for d in cfg.doctors],
        "windows": [
            {
                "name": w.name,
                "days": [DAY_NAMES[d] for d in w.days],
                "start": _hhmm(w.start),
                "end": _hhmm(w.end),
                "end_days_later": w.end_days_later,
            }
            for w in cfg.windows
        ],
        "holidays": {
            "national": cfg.holidays.national,
            "start": _hhmm(cfg.holidays.start),
            "end": _hhmm(cfg.holidays.end),
        },
        "closures": [
            {
                "name": c.name,
                "from": closure_day(c.first, c.recurring),
                "to": closure_day(c.last, c.recurring),
                "clinics": list(c.clinics),
            }
            for c in cfg.closures
        ],
        "rotation": rotation,
        **extra,
    }
