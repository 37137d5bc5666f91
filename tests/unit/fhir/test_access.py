"""What the engine reports to access listeners."""

from __future__ import annotations

from renkei.fhir.access import touched_from_body


def test_touched_from_body_resource_and_searchset() -> None:
    obs = {"resourceType": "Observation", "id": "o1"}
    assert [t.reference for t in touched_from_body(obs)] == ["Observation/o1"]
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": obs, "search": {"mode": "match"}},
            {"resource": {"resourceType": "Patient", "id": "p1"}, "search": {"mode": "include"}},
            {"resource": {"resourceType": "OperationOutcome"}},
        ],
    }
    assert [t.reference for t in touched_from_body(bundle)] == ["Observation/o1", "Patient/p1"]


def test_touched_from_body_skips_bundle_responses_and_outcomes() -> None:
    response = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [{"resource": {"resourceType": "Patient", "id": "p1"}}],
    }
    assert touched_from_body(response) == []
    assert touched_from_body({"resourceType": "OperationOutcome", "issue": []}) == []
    assert touched_from_body(None) == []
