"""Who may read and edit a group (the rule in docs/roster.md)."""

from __future__ import annotations

from renkei.auth.principal import Principal
from renkei.roster.access import access_level, may_create
from renkei.roster.config import parse_config
from tests.rosterdata import CLINICS, COORDINATOR, DOCTORS, group_dict

CFG = parse_config(group_dict())


def user(**kw: str) -> Principal:
    return Principal(subject="u", kind="user", **kw)  # type: ignore[arg-type]


def test_access_level_coordinators() -> None:
    assert access_level(user(practitioner_role_id=COORDINATOR), CFG) == "coordinator"
    assert access_level(user(practitioner_role_id="coord"), CFG) == "coordinator"  # bare id
    assert access_level(user(organization_id=CLINICS[1], role="admin"), CFG) == "coordinator"
    assert access_level(user(organization_id=CLINICS[1], role="coordinator"), CFG) == "coordinator"
    assert access_level(Principal(subject="op", kind="operator"), CFG) == "coordinator"


def test_access_level_members_and_strangers() -> None:
    assert access_level(user(practitioner_role_id=DOCTORS[2]), CFG) == "member"
    assert access_level(user(organization_id=CLINICS[3], role="nurse"), CFG) == "member"
    assert access_level(user(organization_id="Organization/x", role="admin"), CFG) is None
    assert access_level(Principal(subject="ehr", kind="client", client_id="c"), CFG) is None


def test_may_create_needs_admin_of_a_listed_clinic() -> None:
    assert may_create(user(organization_id=CLINICS[0], role="admin"), CFG)
    assert not may_create(user(organization_id=CLINICS[0], role="doctor"), CFG)
    assert not may_create(user(organization_id="Organization/x", role="admin"), CFG)
