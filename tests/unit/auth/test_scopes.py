"""SMART v2 scope grammar, coverage and v1 aliases."""

from __future__ import annotations

import pytest

from renkei.auth.errors import InvalidScope
from renkei.auth.scopes import ResourceScope, narrow, permits, wants_patient


@pytest.mark.parametrize(
    ("text", "perms"),
    [
        ("system/Patient.rs", "rs"),
        ("user/Observation.cruds", "cruds"),
        ("patient/*.rs", "rs"),
        ("user/Patient.read", "rs"),
        ("user/Patient.write", "cud"),
        ("system/*.*", "cruds"),
    ],
)
def test_parse_reads_v2_and_v1_forms(text: str, perms: str) -> None:
    scope = ResourceScope.parse(text)
    assert scope is not None
    assert scope.perms == frozenset(perms)


@pytest.mark.parametrize(
    "text", ["user/Patient.sr", "user/Patient.rr", "user/Patient.x", "nobody/Patient.r", "Patient"]
)
def test_parse_refuses_malformed(text: str) -> None:
    with pytest.raises(InvalidScope):
        ResourceScope.parse(text)


def test_parse_refuses_granular_filters_instead_of_widening() -> None:
    with pytest.raises(InvalidScope, match="search filters"):
        ResourceScope.parse("user/Observation.rs?category=vital-signs")


def test_narrow_allows_subsets_and_refuses_wider_or_other_context() -> None:
    assert narrow(["system/Patient.r"], ["system/*.rs"], ["system"]) == ["system/Patient.r"]
    with pytest.raises(InvalidScope):
        narrow(["system/Patient.cruds"], ["system/*.rs"], ["system"])
    with pytest.raises(InvalidScope):
        narrow(["user/Patient.r"], ["user/*.cruds"], ["system"])
    with pytest.raises(InvalidScope):
        narrow(["offline_access"], ["user/*.cruds"], ["user"])


def test_permits_checks_type_permission_and_context() -> None:
    granted = {"user/Observation.rs", "user/Patient.cruds"}
    assert permits(granted, "Observation", "r", ["user"])
    assert not permits(granted, "Observation", "c", ["user"])
    assert not permits(granted, "Condition", "r", ["user"])
    assert not permits(granted, "Observation", "r", ["system"])
    # system-level interactions need a wildcard
    assert not permits(granted, None, "s", ["user"])
    assert permits({"system/*.s"}, None, "s", ["system"])


def test_launch_patient_comes_with_patient_scopes() -> None:
    wanted = ["launch/patient", "patient/Observation.rs"]
    assert narrow(wanted, ["patient/*.rs"], ["user", "patient"]) == wanted
    with pytest.raises(InvalidScope):
        narrow(["launch/patient"], ["user/*.rs"], ["user", "patient"])
    assert narrow(["launch/patient"], ["launch/patient", "user/*.rs"], ["user"]) == [
        "launch/patient"
    ]


def test_wants_patient() -> None:
    assert wants_patient(["patient/Observation.r"])
    assert wants_patient(["launch/patient", "user/*.rs"])
    assert not wants_patient(["user/*.rs", "openid", "launch"])
