"""Roster use cases on a real database (SQLite and PostgreSQL): create, version, change."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from renkei.app import Services
from renkei.auth.principal import Principal
from renkei.clock import ManualClock
from renkei.roster import service
from renkei.roster.errors import (
    GroupNotFound,
    InvalidChange,
    InvalidConfig,
    NotAllowed,
    PastChange,
    TokenNotFound,
    UnknownReference,
)
from renkei.roster.models import roster_change, roster_override, roster_plan
from renkei.roster.snapshot import on_duty
from tests.rosterdata import CLINICS, COORDINATOR, DOCTORS, group_dict, seed_fhir

TOKYO = ZoneInfo("Asia/Tokyo")
OPERATOR = Principal(subject="op", kind="operator")
COORD = Principal(subject="u-coord", kind="user", role="doctor",
                  practitioner_role_id=COORDINATOR, organization_id=CLINICS[0])  # fmt: skip
DOCTOR_A = Principal(subject="u-a", kind="user", role="doctor",
                     practitioner_role_id=DOCTORS[0], organization_id=CLINICS[0])  # fmt: skip
NURSE = Principal(subject="u-n", kind="user", role="nurse", organization_id=CLINICS[2])
STRANGER = Principal(subject="u-x", kind="user", role="admin", organization_id="Organization/zz")


def t(month: int, day: int, hour: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, tzinfo=TOKYO)


@pytest.fixture
def group(services: Services, clock: ManualClock) -> str:
    seed_fhir(services)
    clock.set(t(4, 1, 9))
    with services.db.session(write=True) as session:
        view = service.create_group(
            session,
            clock,
            OPERATOR,
            group_dict(),
            repository=services.engine.repository(session),
        )
    return view.id


def test_create_group_validates_fhir_references(services: Services, clock: ManualClock) -> None:
    seed_fhir(services)
    raw = group_dict()
    raw["doctors"].append({"id": "PractitionerRole/ghost", "name": "幽霊"})
    with pytest.raises(UnknownReference) as err, services.db.session(write=True) as session:
        service.create_group(
            session, clock, OPERATOR, raw, repository=services.engine.repository(session)
        )
    assert err.value.path == "doctors[6].id"
    with services.db.session() as session:
        assert service.list_groups(session, OPERATOR) == []  # nothing half-written


def test_create_group_needs_operator_or_member_clinic_admin(
    services: Services, clock: ManualClock
) -> None:
    with pytest.raises(NotAllowed), services.db.session(write=True) as session:
        service.create_group(session, clock, STRANGER, group_dict())
    admin = Principal(subject="adm", kind="user", role="admin", organization_id=CLINICS[1])
    with services.db.session(write=True) as session:
        view = service.create_group(session, clock, admin, group_dict())
    assert view.level == "coordinator"


def test_create_group_rejects_bad_config_with_path(services: Services, clock: ManualClock) -> None:
    raw = group_dict()
    raw["windows"][0]["start"] = "25:00"
    with pytest.raises(InvalidConfig) as err, services.db.session(write=True) as session:
        service.create_group(session, clock, OPERATOR, raw)
    assert err.value.path == "windows[0].start"


def test_open_group_access_levels(services: Services, group: str) -> None:
    with services.db.session() as session:
        assert service.open_group(session, COORD, group).level == "coordinator"
        assert service.open_group(session, DOCTOR_A, group).level == "member"
        assert service.open_group(session, NURSE, group).level == "member"
        with pytest.raises(GroupNotFound):
            service.open_group(session, STRANGER, group)
        with pytest.raises(NotAllowed):
            service.open_group(session, DOCTOR_A, group, edit=True)
        assert [g.id for g in service.list_groups(session, NURSE)] == [group]
        assert service.list_groups(session, STRANGER) == []


def test_duty_at_and_office_hours_and_group_for_clinic(services: Services, group: str) -> None:
    with services.db.session() as session:
        duty = service.duty_at(session, group, t(4, 1, 20))
        assert duty.primary == DOCTORS[0] and duty.backup == DOCTORS[3]
        assert service.group_for_clinic(session, CLINICS[2]) == group
        assert service.group_for_clinic(session, "clinic-3") == group
        assert service.group_for_clinic(session, "Organization/other") is None
        assert service.in_office_hours(session, CLINICS[0], t(4, 2, 10)) is True
        assert service.in_office_hours(session, CLINICS[0], t(4, 2, 13)) is False  # lunch
        assert service.in_office_hours(session, CLINICS[0], t(4, 4, 12)) is True  # Saturday
        assert service.in_office_hours(session, CLINICS[0], t(4, 29, 10)) is False  # 昭和の日
        assert service.in_office_hours(session, "Organization/other", t(4, 2, 10)) is False


def test_override_is_versioned_and_past_is_not_rewritten(
    services: Services, clock: ManualClock, group: str
) -> None:
    clock.set(t(4, 2, 19))  # during 4/2 night shift (dr-b)
    with services.db.session(write=True) as session:
        out = service.add_override(
            session, clock, COORD, group, layer="primary", assignee=DOCTORS[5],
            start=t(4, 2, 18), end=t(4, 3, 9), reason="急病のため交代",
        )  # fmt: skip
    assert out["version"] == 2
    assert datetime.fromisoformat(out["start"]) == t(4, 2, 19)  # clipped to now
    with services.db.session() as session:
        now_v = service.load_roster(session, group)
        old_v = service.load_roster(session, group, 1)
        assert on_duty(now_v, t(4, 2, 18) + timedelta(minutes=30)).primary == DOCTORS[1]
        assert on_duty(now_v, t(4, 2, 22)).primary == DOCTORS[5]
        assert on_duty(old_v, t(4, 2, 22)).primary == DOCTORS[1]
        log = service.list_changes(session, COORD, group)
        assert [c["kind"] for c in log] == ["group.create", "override.add"]
        assert log[1]["actor"].startswith("user:u-coord")
        assert log[1]["detail"]["reason"] == "急病のため交代"
    with pytest.raises(PastChange), services.db.session(write=True) as session:
        service.add_override(
            session, clock, COORD, group, layer="primary", assignee=DOCTORS[5],
            start=t(4, 1, 18), end=t(4, 2, 9),
        )  # fmt: skip


def test_override_checks_member_and_rights(
    services: Services, clock: ManualClock, group: str
) -> None:
    with pytest.raises(InvalidChange), services.db.session(write=True) as session:
        service.add_override(
            session, clock, COORD, group, layer="primary", assignee="PractitionerRole/zz",
            start=t(5, 1, 18), end=t(5, 2, 9),
        )  # fmt: skip
    with pytest.raises(NotAllowed), services.db.session(write=True) as session:
        service.add_override(
            session, clock, DOCTOR_A, group, layer="primary", assignee=DOCTORS[1],
            start=t(5, 1, 18), end=t(5, 2, 9),
        )  # fmt: skip
    with services.db.session() as session:
        assert (
            session.execute(sa.select(sa.func.count()).select_from(roster_override)).scalar() == 0
        )


def test_revoke_override_keeps_its_past(services: Services, clock: ManualClock, group: str) -> None:
    with services.db.session(write=True) as session:
        oid = service.add_override(
            session, clock, COORD, group, layer="primary", assignee=DOCTORS[5],
            start=t(4, 2, 18), end=t(4, 3, 9),
        )["id"]  # fmt: skip
    clock.set(t(4, 2, 21))
    with services.db.session(write=True) as session:
        out = service.revoke_override(session, clock, COORD, group, oid)
    assert out["version"] == 3
    with services.db.session() as session:
        r = service.load_roster(session, group)
        assert on_duty(r, t(4, 2, 20)).primary == DOCTORS[5]  # the past stays
        assert on_duty(r, t(4, 2, 22)).primary == DOCTORS[1]
        rows = service.list_overrides(session, DOCTOR_A, group)
        assert rows[0]["revoked_by"].startswith("user:u-coord")
        assert (
            session.execute(sa.select(sa.func.count()).select_from(roster_override)).scalar() == 1
        )


def test_swap_exchanges_two_nights(services: Services, clock: ManualClock, group: str) -> None:
    first, second = (t(4, 6, 18), t(4, 7, 9)), (t(4, 8, 18), t(4, 9, 9))
    with services.db.session() as session:
        r = service.load_roster(session, group)
        a, b = on_duty(r, first[0]).primary, on_duty(r, second[0]).primary
    with services.db.session(write=True) as session:
        out = service.swap(
            session, clock, COORD, group, layer="primary", first=first, second=second
        )
    assert out["between"] == [a, b]
    with services.db.session() as session:
        r = service.load_roster(session, group)
        assert on_duty(r, t(4, 6, 20)).primary == b
        assert on_duty(r, t(4, 8, 20)).primary == a
    # revoking one half revokes the swap
    clock.set(t(4, 5, 12))
    with services.db.session(write=True) as session:
        service.revoke_override(session, clock, COORD, group, out["overrides"][0]["id"])
    with services.db.session() as session:
        r = service.load_roster(session, group)
        assert on_duty(r, t(4, 6, 20)).primary == a
        assert on_duty(r, t(4, 8, 20)).primary == b


def test_swap_refuses_office_hours_and_same_doctor(
    services: Services, clock: ManualClock, group: str
) -> None:
    with pytest.raises(InvalidChange), services.db.session(write=True) as session:
        service.swap(
            session, clock, COORD, group, layer="primary",
            first=(t(4, 6, 12), t(4, 6, 20)), second=(t(4, 8, 18), t(4, 9, 9)),
        )  # fmt: skip
    with pytest.raises(InvalidChange), services.db.session(write=True) as session:
        service.swap(
            session,
            clock,
            COORD,
            group,
            layer="primary",
            first=(t(4, 6, 18), t(4, 7, 9)),
            second=(t(4, 12, 18), t(4, 13, 9)),
        )  # fmt: skip  6 doctors per day: 4/6 and 4/12 are both dr-f


def test_update_plan_applies_from_now_and_never_before(
    services: Services, clock: ManualClock, group: str
) -> None:
    clock.set(t(6, 1, 12))
    raw = group_dict(closures=[])
    with pytest.raises(PastChange), services.db.session(write=True) as session:
        service.update_plan(session, clock, COORD, group, raw, effective_from=t(5, 1))
    with services.db.session(write=True) as session:
        view = service.update_plan(session, clock, COORD, group, raw)
    assert view.version == 2
    with services.db.session() as session:
        r = service.load_roster(session, group)
        assert on_duty(r, t(12, 30, 12)).primary is None
        assert on_duty(service.load_roster(session, group, 1), t(12, 30, 12)).primary is not None
        assert session.execute(sa.select(sa.func.count()).select_from(roster_plan)).scalar() == 2
        kinds = [r.kind for r in session.execute(sa.select(roster_change.c.kind))]
        assert kinds == ["group.create", "plan.change"]


def test_ical_tokens_are_hashed_and_revocable(
    services: Services, clock: ManualClock, group: str
) -> None:
    with services.db.session(write=True) as session:
        own = service.create_ical_token(session, clock, DOCTOR_A, group, doctor=DOCTORS[0])
        with pytest.raises(NotAllowed):
            service.create_ical_token(session, clock, DOCTOR_A, group, doctor=DOCTORS[1])
    with services.db.session() as session:
        stored = session.execute(sa.text("SELECT token_hash FROM roster_ical_token")).scalar()
        assert stored != own["token"] and len(stored) == 64
        roster, doctor = service.resolve_ical_token(session, own["token"])
        assert doctor == DOCTORS[0] and roster.group_id == group
    with services.db.session(write=True) as session:
        service.revoke_ical_token(session, clock, DOCTOR_A, group, own["id"])
    with pytest.raises(TokenNotFound), services.db.session() as session:
        service.resolve_ical_token(session, own["token"])


def test_create_group_resolves_identifier_references(
    services: Services, clock: ManualClock
) -> None:
    seed_fhir(services)
    with services.db.session(write=True) as session:
        repo = services.engine.repository(session)
        repo.create(
            {"resourceType": "Organization", "name": "番号付き",
             "identifier": [{"system": "urn:test:inst", "value": "1310000009"}]},
            res_id="numbered",
        )  # fmt: skip
    raw = group_dict()
    raw["clinics"][0]["id"] = "Organization?identifier=urn:test:inst|1310000009"
    with services.db.session(write=True) as session:
        view = service.create_group(
            session, clock, OPERATOR, raw,
            repository=services.engine.repository(session),
            search=service.fhir_search(services.engine, session),
        )  # fmt: skip
    assert view.config.clinics[0].id == "Organization/numbered"
    raw["clinics"][0]["id"] = "Organization?identifier=urn:test:inst|0000"
    with pytest.raises(UnknownReference) as err, services.db.session(write=True) as session:
        service.create_group(
            session, clock, OPERATOR, raw, search=service.fhir_search(services.engine, session)
        )
    assert err.value.path == "clinics[0].id"


def test_in_office_hours_clinic_closure(services: Services, clock: ManualClock) -> None:
    seed_fhir(services)
    raw = group_dict(
        closures=[
            {"name": "夏季休診", "from": "2026-08-13", "to": "2026-08-14", "clinics": [CLINICS[0]]}
        ]
    )
    with services.db.session(write=True) as session:
        gid = service.create_group(session, clock, OPERATOR, raw).id
    with services.db.session() as session:
        assert service.in_office_hours(session, CLINICS[0], t(8, 13, 10)) is False
        assert service.in_office_hours(session, CLINICS[1], t(8, 13, 10)) is True
        # the group covers the closed clinic's day
        assert service.duty_at(session, gid, t(8, 13, 10)).primary in DOCTORS


def test_next_office_hours_start_skips_lunch_weekend_and_holidays(
    services: Services, group: str
) -> None:
    with services.db.session() as session:
        nxt = service.next_office_hours_start
        assert nxt(session, CLINICS[0], t(4, 2, 10)) == t(4, 2, 10)  # open now
        assert nxt(session, CLINICS[0], t(4, 2, 13)) == t(4, 2, 14)  # after lunch
        assert nxt(session, CLINICS[0], t(4, 4, 15)) == t(4, 6, 9)  # Sat pm -> Monday
        # 昭和の日 (Wed 4/29) is closed: opens Thursday
        assert nxt(session, CLINICS[0], t(4, 28, 19)) == t(4, 30, 9)
        # 年末年始: closed 12/29 - 1/3, first opening Monday 1/4 09:00
        assert nxt(session, CLINICS[0], t(12, 28, 19)) == t(1, 4, 9, year=2027)
        assert nxt(session, "Organization/other", t(4, 2, 10)) is None


def test_changes_never_rewrite_the_past(services: Services, clock: ManualClock, group: str) -> None:
    """Random overrides, revocations and plan changes as time moves on: whatever any version
    said about an instant before its successor was made, the successor says too."""
    import random

    rng = random.Random(6)
    made_at: list[datetime] = [clock.now()]  # made_at[v - 1]: when version v was made
    for _ in range(12):
        clock.advance(hours=rng.randrange(1, 72))
        with services.db.session(write=True) as session:
            kind = rng.random()
            if kind < 0.6:
                start = clock.now() + timedelta(hours=rng.randrange(-24, 48))
                service.add_override(
                    session, clock, COORD, group, layer=rng.choice(["primary", "backup"]),
                    assignee=rng.choice(DOCTORS), start=start,
                    end=start + timedelta(hours=rng.randrange(25, 60)),
                )  # fmt: skip
            elif kind < 0.8:
                live = [
                    o for o in service.list_overrides(session, COORD, group, include_revoked=False)
                    if datetime.fromisoformat(o["end"]) > clock.now()
                ]  # fmt: skip
                if not live:
                    continue
                service.revoke_override(session, clock, COORD, group, rng.choice(live)["id"])
            else:
                raw = group_dict(closures=[] if rng.random() < 0.5 else None)
                if raw["closures"] is None:
                    raw["closures"] = [
                        {"name": "臨時休診", "from": "2026-05-20", "to": "2026-05-21"}
                    ]
                service.update_plan(session, clock, COORD, group, raw)
        made_at.append(clock.now())
    with services.db.session() as session:
        versions = [service.load_roster(session, group, v) for v in range(1, len(made_at) + 1)]
    start = made_at[0]
    for v in range(1, len(versions)):
        horizon = made_at[v]  # version v + 1 was made at this instant
        probe = start
        while probe < horizon:
            before = on_duty(versions[v - 1], probe)
            after = on_duty(versions[v], probe)
            assert (before.primary, before.backup) == (after.primary, after.backup), (v, probe)
            probe += timedelta(minutes=47)


def test_concurrent_changes_get_distinct_versions(
    services: Services, clock: ManualClock, group: str
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def change(n: int) -> int:
        with services.db.session(write=True) as session:
            out = service.add_override(
                session, clock, COORD, group, layer="primary", assignee=DOCTORS[n % 6],
                start=t(5, 1 + n, 18), end=t(5, 2 + n, 9),
            )  # fmt: skip
            return int(out["version"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        versions = sorted(pool.map(change, range(8)))
    assert versions == list(range(2, 10))
    with services.db.session() as session:
        log = service.list_changes(session, COORD, group)
        assert sorted(c["version"] for c in log) == list(range(1, 10))
        r = service.load_roster(session, group)
        for n in range(8):
            assert on_duty(r, t(5, 1 + n, 20)).primary == DOCTORS[n % 6]
