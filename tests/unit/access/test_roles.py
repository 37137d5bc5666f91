"""Role limits are data (roles.yaml), checked at start-up."""

from __future__ import annotations

import pytest

from renkei.access.roles import RoleDataError, RoleLimits


def test_allows_shipped_roles() -> None:
    limits = RoleLimits.load()
    assert limits.allows("careworker", "read", "MedicationRequest")
    assert limits.allows("careworker", "create", "Observation")
    assert limits.allows("careworker", "create", "Communication")
    assert not limits.allows("careworker", "create", "MedicationRequest")
    assert not limits.allows("nurse", "update", "MedicationRequest")
    assert limits.allows("doctor", "delete", "MedicationRequest")
    assert not limits.allows("pharmacist", "delete", "Observation")


def test_allows_unknown_role_nothing_and_client_everything() -> None:
    limits = RoleLimits.load()
    assert not limits.allows("janitor", "read", "Patient")
    assert limits.allows(None, "delete", "Patient")  # a back-end client: scopes decide
    assert limits.allows("careworker", "transaction", None)  # entries are checked one by one


def test_may_break_glass_clinicians_only() -> None:
    limits = RoleLimits.load()
    assert limits.may_break_glass("doctor") and limits.may_break_glass("nurse")
    assert not limits.may_break_glass("careworker") and not limits.may_break_glass(None)


def test_load_rejects_bad_data() -> None:
    with pytest.raises(RoleDataError):
        RoleLimits.load("roles: {doctor: {default: [read, fly]}}")
    with pytest.raises(RoleDataError):
        RoleLimits.load("nothing: here")
    with pytest.raises(RoleDataError):
        RoleLimits.load("roles: {doctor: {default: [read]}}\nbreak_glass: [pilot]")
