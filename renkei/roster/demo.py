"""The demo network's rotation group: 4 clinics, 6 doctors, a year of roster.

城南在宅輪番グループ covers weekday nights 18:00-09:00, Saturday 13:00 to Monday 09:00,
national holidays and 年末年始 (12/29-1/3), with a daily primary rotation, a weekly
back-up rotation, and a few overrides and a swap such as a real group accumulates.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy.orm import Session

from renkei.auth.principal import Principal
from renkei.clock import Clock
from renkei.demo.generate import IDE
from renkei.fhir.context import FhirRequest, RequestContext
from renkei.roster import service
from renkei.roster.config import parse_config
from renkei.roster.errors import GroupNotFound
from renkei.roster.snapshot import on_duty
from renkei.roster.windows import local_instant

DEMO_GROUP_ID = "demo-jonan"
#: demo staff numbers (職員番号) of the rotation group's doctors
STAFF_SYSTEM = "https://renkei.example.jp/fhir/sid/demo-staff"
ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/practitioner-role"
DEMO_ACTOR = Principal(subject="demo-seed", kind="operator")
#: (family, given, kana, clinic index); the first doctor is also the coordinator
DEMO_DOCTORS = [
    ("佐藤", "一郎", "サトウ イチロウ", 0),
    ("高橋", "美咲", "タカハシ ミサキ", 0),
    ("鈴木", "健", "スズキ ケン", 1),
    ("田中", "裕子", "タナカ ユウコ", 2),
    ("伊藤", "誠", "イトウ マコト", 2),
    ("渡辺", "聡", "ワタナベ サトシ", 3),
]
_CLINIC_NAMES = [
    "さくら在宅クリニック",
    "ひまわり内科クリニック",
    "けやき診療所",
    "みどり在宅医療クリニック",
]


def demo_group_config(clinics: list[str], doctors: list[str], start: datetime) -> dict[str, Any]:
    """The demo group's definition, given the demo's Organization and PractitionerRole refs."""
    if len(clinics) != 4 or len(doctors) != 6:
        raise ValueError("the demo group has 4 clinics and 6 doctors")
    weekday = ["09:00-12:30", "14:00-18:00"]
    return {
        "name": "城南在宅輪番グループ",
        "timezone": "Asia/Tokyo",
        "effective_from": start.isoformat(),
        "coordinator": doctors[0],
        "clinics": [
            {
                "id": ref,
                "name": name,
                "office_hours": {
                    "weekday": weekday if i != 2 else ["09:00-12:00", "15:00-18:30"],
                    "saturday": ["09:00-13:00"] if i != 3 else [],
                },
            }
            for i, (ref, name) in enumerate(zip(clinics, _CLINIC_NAMES, strict=True))
        ],
        "doctors": [
            {"id": ref, "name": f"{family} {given}"}
            for ref, (family, given, _, _) in zip(doctors, DEMO_DOCTORS, strict=True)
        ],
        "windows": [
            {
                "name": "平日夜間",
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "start": "18:00",
                "end": "09:00",
            },
            {
                "name": "週末",
                "days": ["sat"],
                "start": "13:00",
                "end": "09:00",
                "end_days_later": 2,
            },
        ],
        "holidays": {"national": True, "start": "09:00", "end": "09:00"},
        "closures": [
            {"name": "年末年始", "from": "12-29", "to": "01-03"},
            {
                "name": "夏季休診",
                "from": f"{start.year}-08-13",
                "to": f"{start.year}-08-16",
                "clinics": [clinics[2]],
            },
        ],
        "rotation": {
            "primary": {"doctors": doctors, "per": "day", "handoff": "09:00"},
            "backup": {
                "doctors": [doctors[i] for i in (3, 5, 1, 4, 0, 2)],
                "per": "week",
                "handoff": "09:00",
                "handoff_day": "mon",
            },
        },
    }


def seed_demo_roster(
    session: Session,
    clock: Clock,
    *,
    clinics: list[str],
    doctors: list[str],
    repository: service.Reader | None = None,
) -> dict[str, Any]:
    """Create the demo group once (idempotent), with overrides and a swap in the coming weeks."""
    try:
        existing = service.load_roster(session, DEMO_GROUP_ID)
        return {"group": DEMO_GROUP_ID, "created": False, "version": existing.version}
    except GroupNotFound:
        pass
    now = clock.now()
    tz = parse_config(demo_group_config(clinics, doctors, now)).tz
    today = now.astimezone(tz).date()
    start = local_instant(today.replace(day=1), time(0), tz)
    view = service.create_group(
        session,
        clock,
        DEMO_ACTOR,
        demo_group_config(clinics, doctors, start),
        repository=repository,
        group_id=DEMO_GROUP_ID,
    )

    def night(days_ahead: int) -> tuple[datetime, datetime]:
        day = today + timedelta(days=days_ahead)
        while day.weekday() >= 5:  # a weekday night
            day += timedelta(days=1)
        return local_instant(day, time(18), tz), local_instant(day + timedelta(1), time(9), tz)

    conference = night(10)
    service.add_override(
        session, clock, DEMO_ACTOR, view.id, layer="primary", assignee=doctors[5],
        start=conference[0], end=conference[1], reason="学会出張のため渡辺医師が代行",
    )  # fmt: skip
    backup_start = local_instant(today + timedelta(days=20), time(9), tz)
    service.add_override(
        session, clock, DEMO_ACTOR, view.id, layer="backup", assignee=doctors[1],
        start=backup_start, end=backup_start + timedelta(days=3), reason="副当番 休暇交代",
    )  # fmt: skip
    roster = service.load_roster(session, view.id)
    first, second = night(3), night(5)
    if on_duty(roster, first[0]).primary != on_duty(roster, second[0]).primary:
        service.swap(
            session, clock, DEMO_ACTOR, view.id, layer="primary",
            first=first, second=second, reason="当番交代（双方合意）",
        )  # fmt: skip
    return {
        "group": view.id,
        "created": True,
        "version": service.load_roster(session, view.id).version,
    }


def doctor_entries(clinics: list[str]) -> list[dict[str, Any]]:
    """Transaction entries: Practitioner + PractitionerRole of the six demo doctors."""
    entries = []
    for n, (family, given, kana, clinic) in enumerate(DEMO_DOCTORS, 1):
        staff = f"demo-dr-{n}"
        kana_family, kana_given = kana.split(" ")
        entries.append(
            {
                "fullUrl": f"urn:uuid:pract-{staff}",
                "resource": {
                    "resourceType": "Practitioner",
                    "identifier": [{"system": STAFF_SYSTEM, "value": staff}],
                    "active": True,
                    "name": [
                        {"extension": [{"url": IDE, "valueCode": "IDE"}],
                         "text": f"{family} {given}", "family": family, "given": [given]},
                        {"extension": [{"url": IDE, "valueCode": "SYL"}], "text": kana,
                         "family": kana_family, "given": [kana_given]},
                    ],
                },
                "request": {"method": "POST", "url": "Practitioner",
                            "ifNoneExist": f"identifier={STAFF_SYSTEM}|{staff}"},
            }
        )  # fmt: skip
        entries.append(
            {
                "resource": {
                    "resourceType": "PractitionerRole",
                    "identifier": [{"system": STAFF_SYSTEM, "value": f"{staff}-role"}],
                    "active": True,
                    "practitioner": {"reference": f"urn:uuid:pract-{staff}"},
                    "organization": {"reference": clinics[clinic]},
                    "code": [{"coding": [{"system": ROLE_SYSTEM, "code": "doctor"}]}],
                },
                "request": {"method": "POST", "url": "PractitionerRole",
                            "ifNoneExist": f"identifier={STAFF_SYSTEM}|{staff}-role"},
            }
        )  # fmt: skip
    return entries


def demo_step(services: Any, session: Session, clinic_ids: list[str]) -> dict[str, Any]:
    """Seed step: the six doctors (through the FHIR engine) and the group (idempotent).

    ``clinic_ids`` are the four demo clinics' Organization ids (bare or ``Organization/..``).
    """
    clinics = [c if "/" in c else f"Organization/{c}" for c in clinic_ids]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": doctor_entries(clinics)}
    services.engine.dispatch(
        session, FhirRequest("POST", "", body=bundle, context=RequestContext())
    )
    search = service.fhir_search(services.engine, session)
    doctors = []
    for n in range(1, len(DEMO_DOCTORS) + 1):
        (role_id,) = search(
            "PractitionerRole", [("identifier", f"{STAFF_SYSTEM}|demo-dr-{n}-role")]
        )
        doctors.append(f"PractitionerRole/{role_id}")
    roster = seed_demo_roster(
        session,
        services.clock,
        clinics=clinics,
        doctors=doctors,
        repository=services.engine.repository(session),
    )
    return {"roster": roster}


__all__ = [
    "DEMO_DOCTORS",
    "DEMO_GROUP_ID",
    "demo_group_config",
    "demo_step",
    "doctor_entries",
    "seed_demo_roster",
]
