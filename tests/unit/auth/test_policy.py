"""ScopePolicy: type-level scope checks and the read check for included resources."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from renkei.auth.policy import ScopePolicy
from renkei.auth.principal import OPERATOR, Principal
from renkei.fhir.context import RequestContext
from renkei.fhir.outcome import Forbidden, Unauthorized
from renkei.fhir.policy import AllowAll
from renkei.store.repository import StoredResource

POLICY = ScopePolicy(AllowAll())


def _ctx(*scopes: str, kind: str = "client") -> RequestContext:
    return RequestContext(principal=Principal("s1", kind, scopes=frozenset(scopes)))


def _stored(res_type: str) -> StoredResource:
    return StoredResource(res_type, "1", 1, datetime(2026, 4, 1, tzinfo=UTC), False, {})


@pytest.mark.parametrize(
    ("interaction", "letter"),
    [
        ("read", "r"),
        ("vread", "r"),
        ("history", "r"),
        ("search", "s"),
        ("create", "c"),
        ("update", "u"),
        ("patch", "u"),
        ("delete", "d"),
    ],
)
def test_authorize_maps_each_interaction_to_its_letter(interaction: str, letter: str) -> None:
    POLICY.authorize(_ctx(f"system/Patient.{letter}"), interaction, "Patient")
    other = "cruds".replace(letter, "")
    with pytest.raises(Forbidden):
        POLICY.authorize(_ctx(f"system/Patient.{other}"), interaction, "Patient")


def test_authorize_without_principal_is_401() -> None:
    with pytest.raises(Unauthorized) as caught:
        POLICY.authorize(RequestContext(), "read", "Patient")
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_authorize_contexts_follow_the_caller_kind() -> None:
    with pytest.raises(Forbidden):
        POLICY.authorize(_ctx("user/Patient.r", kind="client"), "read", "Patient")
    with pytest.raises(Forbidden):
        POLICY.authorize(_ctx("system/Patient.r", kind="user"), "read", "Patient")
    POLICY.authorize(_ctx("user/Patient.r", kind="user"), "read", "Patient")
    # patient/ scopes need a launch context this server does not issue: they grant nothing
    with pytest.raises(Forbidden):
        POLICY.authorize(_ctx("patient/Patient.r", kind="user"), "read", "Patient")


def test_authorize_operator_passes() -> None:
    POLICY.authorize(RequestContext(principal=OPERATOR), "delete", "Patient")


def test_can_read_included_resources_need_their_own_scope() -> None:
    ctx = _ctx("system/Patient.s")
    POLICY.authorize(ctx, "search", "Patient")
    assert POLICY.can_read(None, ctx, _stored("Patient"))  # type: ignore[arg-type]
    assert not POLICY.can_read(None, ctx, _stored("Observation"))  # type: ignore[arg-type]
    ctx = _ctx("system/Patient.s", "system/Observation.r")
    POLICY.authorize(ctx, "search", "Patient")
    assert POLICY.can_read(None, ctx, _stored("Observation"))  # type: ignore[arg-type]


def test_can_read_lets_a_writer_see_the_version_it_replaces() -> None:
    ctx = _ctx("system/Patient.u")
    POLICY.authorize(ctx, "update", "Patient")
    assert POLICY.can_read(None, ctx, _stored("Patient"))  # type: ignore[arg-type]
    assert not POLICY.can_read(None, ctx, _stored("Observation"))  # type: ignore[arg-type]


def test_search_filter_hides_types_without_any_permission() -> None:
    ctx = _ctx("system/Observation.c")
    POLICY.authorize(ctx, "create", "Observation")  # e.g. a conditional create's match
    assert POLICY.search_filter(None, ctx, "Observation") is None  # type: ignore[arg-type]
    hidden = POLICY.search_filter(None, ctx, "Patient")  # type: ignore[arg-type]
    assert str(hidden) == "false"


def test_search_filter_in_a_search_hides_other_types_without_read() -> None:
    ctx = _ctx("system/Patient.s", "system/Observation.c")
    POLICY.authorize(ctx, "search", "Patient")
    assert POLICY.search_filter(None, ctx, "Patient") is None  # type: ignore[arg-type]
    # an Observation could be included or chained to, but the token may not read them
    assert str(POLICY.search_filter(None, ctx, "Observation")) == "false"  # type: ignore[arg-type]
