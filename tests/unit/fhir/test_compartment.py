"""Patient compartment membership from the official definitions."""

from __future__ import annotations

from renkei.fhir.compartment import compartment_types, patient_ids


def test_patient_ids_observation_subject_and_performer() -> None:
    obs = {
        "resourceType": "Observation",
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "Patient/p2"}, {"reference": "Practitioner/d1"}],
    }
    assert patient_ids(obs) == {"p1", "p2"}


def test_patient_ids_uses_where_resolve_paths() -> None:
    task = {"resourceType": "Task", "for": {"reference": "Patient/p9"}}
    team = {
        "resourceType": "CareTeam",
        "subject": {"reference": "Patient/p3"},
        "participant": [{"member": {"reference": "Organization/o1"}}],
    }
    assert patient_ids(task) == {"p9"}
    assert patient_ids(team) == {"p3"}
    assert patient_ids({"resourceType": "Condition", "subject": {"reference": "Group/g"}}) == set()


def test_patient_ids_versioned_reference_counts_absolute_does_not() -> None:
    versioned = {"resourceType": "Encounter", "subject": {"reference": "Patient/p1/_history/2"}}
    absolute = {
        "resourceType": "Encounter",
        "subject": {"reference": "https://other.example/fhir/Patient/p1"},
    }
    assert patient_ids(versioned) == {"p1"}
    assert patient_ids(absolute) == set()


def test_patient_ids_patient_is_its_own_only() -> None:
    linked = {"resourceType": "Patient", "id": "a", "link": [{"other": {"reference": "Patient/b"}}]}
    assert patient_ids(linked) == {"a"}
    assert patient_ids(None) == set()
    assert patient_ids({"resourceType": "Organization", "id": "o"}) == set()


def test_compartment_types_includes_clinical_types_only() -> None:
    types = compartment_types()
    assert {"Patient", "Observation", "MedicationRequest", "Consent", "CareTeam"} <= types
    assert "Organization" not in types and "Practitioner" not in types
