"""Duty roster of rotation groups (輪番当番制): who is on duty at any moment.

Pure core: :func:`on_duty`, :func:`schedule`, :func:`doctor_schedule`,
:func:`coverage_gaps`, :func:`fairness` over an immutable :class:`Roster` snapshot.
Database-backed use cases live in :mod:`renkei.roster.service`; the ones other packages
call (urgent-call routing) are re-exported here: :func:`duty_at`,
:func:`in_office_hours`, :func:`next_office_hours_start`, :func:`group_for_clinic`.
"""

from renkei.roster.config import GroupConfig, parse_config
from renkei.roster.errors import (
    GroupNotFound,
    InvalidChange,
    InvalidConfig,
    NotAllowed,
    OutOfRange,
    OverrideNotFound,
    PastChange,
    RosterError,
    TokenNotFound,
    UnknownReference,
)
from renkei.roster.service import (
    duty_at,
    group_for_clinic,
    groups_for_clinic,
    in_office_hours,
    load_roster,
    next_office_hours_start,
)
from renkei.roster.snapshot import (
    Duty,
    Override,
    Plan,
    Roster,
    Segment,
    coverage_gaps,
    doctor_schedule,
    fairness,
    on_duty,
    schedule,
)
from renkei.roster.windows import Window

__all__ = [
    "Duty",
    "GroupConfig",
    "GroupNotFound",
    "InvalidChange",
    "InvalidConfig",
    "NotAllowed",
    "OutOfRange",
    "Override",
    "OverrideNotFound",
    "PastChange",
    "Plan",
    "Roster",
    "RosterError",
    "Segment",
    "TokenNotFound",
    "UnknownReference",
    "Window",
    "coverage_gaps",
    "doctor_schedule",
    "duty_at",
    "fairness",
    "group_for_clinic",
    "groups_for_clinic",
    "in_office_hours",
    "load_roster",
    "next_office_hours_start",
    "on_duty",
    "parse_config",
    "schedule",
]
