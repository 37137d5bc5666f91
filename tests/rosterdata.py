"""Group definitions for roster tests (unit and integration)."""

from __future__ import annotations

import copy
from typing import Any

DOCTORS = [f"PractitionerRole/dr-{c}" for c in "abcdef"]
CLINICS = [f"Organization/clinic-{n}" for n in range(1, 5)]
COORDINATOR = "PractitionerRole/coord"

_BASE: dict[str, Any] = {
    "name": "城南在宅輪番グループ",
    "timezone": "Asia/Tokyo",
    "coordinator": COORDINATOR,
    "clinics": [
        {
            "id": ref,
            "name": f"クリニック{n}",
            "office_hours": {
                "weekday": ["09:00-12:30", "14:00-18:00"],
                "saturday": ["09:00-13:00"],
            },
        }
        for n, ref in enumerate(CLINICS, 1)
    ],
    "doctors": [{"id": ref, "name": f"医師{ref[-1].upper()}"} for ref in DOCTORS],
    "windows": [
        {"name": "平日夜間", "days": ["mon", "tue", "wed", "thu", "fri"], "start": "18:00",
         "end": "09:00"},
        {"name": "週末", "days": ["sat"], "start": "13:00", "end": "09:00", "end_days_later": 2},
    ],
    "holidays": {"national": True, "start": "09:00", "end": "09:00"},
    "closures": [{"name": "年末年始", "from": "12-29", "to": "01-03"}],
    "rotation": {
        "primary": {"doctors": DOCTORS, "per": "day", "handoff": "09:00"},
        "backup": {"doctors": DOCTORS[3:] + DOCTORS[:3], "per": "week", "handoff": "09:00",
                   "handoff_day": "mon"},
    },
}  # fmt: skip


def group_dict(**changes: Any) -> dict[str, Any]:
    """A fresh copy of the realistic 4-clinic, 6-doctor group, with top-level ``changes``."""
    out = copy.deepcopy(_BASE)
    out.update(changes)
    return out


def seed_fhir(services: Any) -> None:
    """Create the clinics, doctors and coordinator the test group names, through the engine."""
    with services.db.session(write=True) as session:
        repo = services.engine.repository(session)
        for ref in CLINICS:
            repo.create({"resourceType": "Organization", "name": ref}, res_id=ref.split("/")[1])
        for ref in [*DOCTORS, COORDINATOR]:
            repo.create(
                {"resourceType": "PractitionerRole", "active": True,
                 "organization": {"reference": CLINICS[0]}},
                res_id=ref.split("/")[1],
            )  # fmt: skip
