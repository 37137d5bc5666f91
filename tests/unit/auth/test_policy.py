"""ScopePolicy: type-level scope checks and the read check for included resources."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from renkei.auth.policy import ALL, PATIENT, ScopePolicy, reach
from renkei.auth.principal import OPERATOR, Principal
from renkei.fhir.context import RequestContext
from renkei.fhir.outcome import Forbidden, Unauthorized
from renkei.fhir.policy import AllowAll
from renkei.store.repository import StoredResource

POLICY = ScopePolicy(AllowAll())


def _ctx(*scopes: str, kind: str = "client") -> RequestContext:
    return RequestContext(principal=Principal("s1", kind, scopes=frozenset(scopes)))


def _patient_ctx(*scopes: str, kind: str = "client", patient: str = "pa") -> RequestContext:
    principal = Principal("s1", kind, scopes=frozenset(scopes), patient_id=patient)
    return RequestContext(principal=principal)


def _stored(res_type: str, content: dict[str, Any] | None = None) -> StoredResource:
    return StoredResource(res_type, "1", 1, datetime(2026, 4, 1, tzinfo=UTC), False, content or {})


def _obs(pid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "subject": {"reference": f"Patient/{pid}"}, **extra}


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
    # patient/ scopes without a patient launch context grant nothing
    with pytest.raises(Forbidden):
        POLICY.authorize(_ctx("patient/Patient.r", kind="user"), "read", "Patient")
    POLICY.authorize(_patient_ctx("patient/Patient.r", kind="user"), "read", "Patient")
    POLICY.authorize(_patient_ctx("patient/Patient.r", kind="client"), "read", "Patient")


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


# -- patient/ scopes: one patient's compartment -------------------------------------------


def test_reach_prefers_the_callers_own_context_over_the_patient_one() -> None:
    p = Principal(
        "u1", "user", scopes=frozenset({"user/Practitioner.r", "patient/*.rs"}), patient_id="pa"
    )
    assert reach(p, "Practitioner", "r") == ALL
    assert reach(p, "Observation", "s") == PATIENT
    assert reach(p, "Observation", "c") is None
    assert reach(p, None, "s") == PATIENT  # system-level search: the wildcard, per type
    without = Principal("u1", "user", scopes=frozenset({"patient/*.rs"}))
    assert reach(without, "Observation", "r") is None


def test_can_read_keeps_to_the_patients_compartment() -> None:
    ctx = _patient_ctx("patient/*.rs")
    POLICY.authorize(ctx, "read", "Observation")
    see = POLICY.can_read
    assert see(None, ctx, _stored("Observation", _obs("pa")))  # type: ignore[arg-type]
    assert not see(None, ctx, _stored("Observation", _obs("pb")))  # type: ignore[arg-type]
    both = _obs("pb", performer=[{"reference": "Patient/pa"}])
    assert see(None, ctx, _stored("Observation", both))  # type: ignore[arg-type]
    patient = {"resourceType": "Patient", "id": "pa"}
    assert see(None, ctx, _stored("Patient", patient))  # type: ignore[arg-type]
    other = {"resourceType": "Patient", "id": "pb"}
    assert not see(None, ctx, _stored("Patient", other))  # type: ignore[arg-type]
    doctor = {"resourceType": "Practitioner", "id": "d1"}
    assert not see(None, ctx, _stored("Practitioner", doctor))  # type: ignore[arg-type]


def test_search_filter_limits_patient_reach_to_the_compartment() -> None:
    ctx = _patient_ctx("patient/*.rs", "system/Practitioner.rs")
    POLICY.authorize(ctx, "search", "Observation")
    sql = str(POLICY.search_filter(None, ctx, "Observation"))  # type: ignore[arg-type]
    assert "idx_reference" in sql and "target_id" in sql
    patient = str(POLICY.search_filter(None, ctx, "Patient"))  # type: ignore[arg-type]
    assert "res_id" in patient
    assert POLICY.search_filter(None, ctx, "Practitioner") is None  # type: ignore[arg-type]
    assert str(POLICY.search_filter(None, ctx, "Organization")) == "false"  # type: ignore[arg-type]


def test_check_write_keeps_new_and_old_versions_in_the_compartment() -> None:
    ctx = _patient_ctx("patient/Observation.cu")
    POLICY.authorize(ctx, "create", "Observation")
    POLICY.check_write(None, ctx, "Observation", _obs("pa"), None)  # type: ignore[arg-type]
    for new in (_obs("pb"), _obs("pa", performer=[{"reference": "Patient/pb"}]), {}):
        with pytest.raises(Forbidden):
            POLICY.check_write(None, ctx, "Observation", new, None)  # type: ignore[arg-type]
    POLICY.authorize(ctx, "update", "Observation")
    old = _stored("Observation", _obs("pb"))
    with pytest.raises(Forbidden):
        POLICY.check_write(None, ctx, "Observation", _obs("pa"), old)  # type: ignore[arg-type]
    # a system/ grant in the same token is not narrowed by the patient context
    wide = _patient_ctx("patient/Observation.cu", "system/Observation.c")
    POLICY.authorize(wide, "create", "Observation")
    POLICY.check_write(None, wide, "Observation", _obs("pb"), None)  # type: ignore[arg-type]


def test_audit_log_is_out_of_patient_reach() -> None:
    with pytest.raises(Forbidden, match="patient/"):
        POLICY.authorize(_patient_ctx("patient/*.rs"), "search", "AuditEvent")
    POLICY.authorize(_patient_ctx("system/AuditEvent.rs"), "search", "AuditEvent")
