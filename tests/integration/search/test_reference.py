"""Reference parameters (https://hl7.org/fhir/R4/search.html#reference)."""

from __future__ import annotations

from tests.integration.search.conftest import Fhir, observation, patient


def test_reference_type_and_id(fhir: Fhir) -> None:
    p1 = fhir.create(patient())
    p2 = fhir.create(patient())
    o1 = fhir.create(observation(f"Patient/{p1}"))
    fhir.create(observation(f"Patient/{p2}"))
    assert fhir.ids(f"Observation?subject=Patient/{p1}") == {o1}
    assert fhir.ids(f"Observation?patient=Patient/{p1}") == {o1}


def test_reference_bare_id_and_type_modifier(fhir: Fhir) -> None:
    # the same id on two types: a bare id matches both, :Type only one
    fhir.put(patient(id="same-id"))
    fhir.put({"resourceType": "Location", "id": "same-id", "name": "訪問看護ステーション"})
    o_patient = fhir.create(observation("Patient/same-id"))
    o_location = fhir.create(observation("Location/same-id"))
    assert fhir.ids("Observation?subject=same-id") == {o_patient, o_location}
    assert fhir.ids("Observation?subject:Patient=same-id") == {o_patient}
    assert fhir.ids("Observation?subject:Location=same-id") == {o_location}


def test_reference_absolute_url_to_this_server(fhir: Fhir) -> None:
    p1 = fhir.create(patient())
    rel = fhir.create(observation(f"Patient/{p1}"))
    absolute = fhir.create(observation(f"http://testserver/fhir/Patient/{p1}"))
    found = fhir.ids(f"Observation?subject=http://testserver/fhir/Patient/{p1}")
    assert found == {rel, absolute}


def test_reference_absolute_url_elsewhere(fhir: Fhir) -> None:
    elsewhere = fhir.create(observation("https://other.example/fhir/Patient/99"))
    local = fhir.create(observation("Patient/99"))
    assert fhir.ids("Observation?subject=https://other.example/fhir/Patient/99") == {elsewhere}
    # a relative value means this server's Patient/99, not a namesake elsewhere
    assert fhir.ids("Observation?subject=Patient/99") == {local}


def test_reference_identifier_modifier(fhir: Fhir) -> None:
    oid = "urn:oid:1.2.392.100495.20.3.51.11312345678"
    obs = fhir.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"identifier": {"system": oid, "value": "00042"}},
        }
    )
    fhir.create(observation("Patient/1"))
    assert fhir.ids(f"Observation?subject:identifier={oid}|00042") == {obs}


def test_reference_versioned_value_matches_resource(fhir: Fhir) -> None:
    p1 = fhir.create(patient())
    obs = fhir.create(observation(f"Patient/{p1}/_history/1"))
    assert fhir.ids(f"Observation?subject=Patient/{p1}") == {obs}


def test_reference_canonical_url(fhir: Fhir) -> None:
    q = "http://example.org/Questionnaire/phq-9"
    resp = fhir.create(
        {"resourceType": "QuestionnaireResponse", "status": "completed", "questionnaire": q}
    )
    assert fhir.ids(f"QuestionnaireResponse?questionnaire={q}") == {resp}


def test_reference_missing(fhir: Fhir) -> None:
    p1 = fhir.create(patient())
    with_subject = fhir.create(observation(f"Patient/{p1}"))
    without = fhir.create(observation())
    assert fhir.ids("Observation?subject:missing=true") == {without}
    assert fhir.ids("Observation?subject:missing=false") == {with_subject}


def test_reference_malformed_is_400(fhir: Fhir) -> None:
    assert "reference" in fhir.error("Observation?subject=Patient/")
