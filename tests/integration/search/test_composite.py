"""Composite parameters (https://hl7.org/fhir/R4/search.html#composite).

Components match on the same resource, not necessarily the same repetition (the HAPI
semantics; documented in docs/search.md). For Observation.code + value that is exact,
because an Observation has one code and one value.
"""

from __future__ import annotations

from typing import Any

from tests.integration.search.conftest import Fhir

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def bp(fhir: Fhir, code: str, value: float) -> str:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "valueQuantity": {"value": value, "system": UCUM, "code": "mm[Hg]"},
    }
    return fhir.create(body)


def test_composite_code_value_quantity(fhir: Fhir) -> None:
    # spec: Observation?code-value-quantity=http://loinc.org|8480-6$gt100 (systolic > 100)
    high = bp(fhir, "8480-6", 140)
    bp(fhir, "8480-6", 95)
    bp(fhir, "8462-4", 120)  # diastolic: other code
    assert fhir.ids(f"Observation?code-value-quantity={LOINC}|8480-6$gt100") == {high}


def test_composite_or_values(fhir: Fhir) -> None:
    systolic = bp(fhir, "8480-6", 140)
    diastolic = bp(fhir, "8462-4", 95)
    bp(fhir, "8462-4", 60)
    query = f"Observation?code-value-quantity={LOINC}|8480-6$gt100,{LOINC}|8462-4$gt90"
    assert fhir.ids(query) == {systolic, diastolic}


def test_composite_code_value_concept(fhir: Fhir) -> None:
    smoker = fhir.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "72166-2"}]},
            "valueCodeableConcept": {
                "coding": [{"system": "http://snomed.info/sct", "code": "77176002"}]
            },
        }
    )
    assert fhir.ids("Observation?code-value-concept=72166-2$77176002") == {smoker}
    assert fhir.ids("Observation?code-value-concept=72166-2$8517006") == set()


def test_composite_wrong_arity_is_400(fhir: Fhir) -> None:
    assert "$" in fhir.error(f"Observation?code-value-quantity={LOINC}|8480-6")
