"""The demo network's rotation group: 4 clinics, 6 doctors, a year without holes."""

from __future__ import annotations

from datetime import timedelta

from renkei.app import Services
from renkei.config import Settings
from renkei.demo import seed_demo
from renkei.roster import coverage_gaps, group_for_clinic, load_roster
from renkei.roster.demo import DEMO_GROUP_ID


def test_seed_demo_builds_the_group_once(settings: Settings, services: Services) -> None:
    first = seed_demo(settings, patients=4)
    again = seed_demo(settings, patients=4)
    assert first["roster"]["created"] is True
    assert again["roster"] == {**first["roster"], "created": False}
    with services.db.session() as session:
        roster = load_roster(session, DEMO_GROUP_ID)
        cfg = roster.config
        assert len(cfg.clinics) == 4 and len(cfg.doctors) == 6
        assert group_for_clinic(session, cfg.clinics[3].id) == DEMO_GROUP_ID
        start = roster.start
        year = coverage_gaps(roster, start, start + timedelta(days=365))
        assert [g for g in year if g.missing == "primary"] == []
        assert len(roster.overrides) >= 2
