"""Number and quantity parameters (https://hl7.org/fhir/R4/search.html#number, #quantity)."""

from __future__ import annotations

from typing import Any

from tests.integration.search.conftest import Fhir, observation

UCUM = "http://unitsofmeasure.org"


def qty(value: float | int | str, code: str = "mg", unit: str | None = None) -> dict[str, Any]:
    return {"value": value, "system": UCUM, "code": code, "unit": unit or code}


def risk(fhir: Fhir, probability: float) -> str:
    return fhir.create(
        {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": "Patient/1"},
            "prediction": [{"probabilityDecimal": probability}],
        }
    )


def test_number_eq_uses_the_search_precision(fhir: Fhir) -> None:
    # spec: [parameter]=100 matches values in [99.5, 100.5)
    a = risk(fhir, 100)
    b = risk(fhir, 99.6)
    risk(fhir, 100.5)
    risk(fhir, 99.4)
    assert fhir.ids("RiskAssessment?probability=100") == {a, b}
    assert fhir.ids("RiskAssessment?probability=100.0") == {a}


def test_number_prefixes(fhir: Fhir) -> None:
    low = risk(fhir, 0.2)
    mid = risk(fhir, 0.5)
    high = risk(fhir, 0.8)
    assert fhir.ids("RiskAssessment?probability=gt0.5") == {high}
    assert fhir.ids("RiskAssessment?probability=ge0.5") == {mid, high}
    assert fhir.ids("RiskAssessment?probability=lt0.5") == {low}
    assert fhir.ids("RiskAssessment?probability=le0.5") == {low, mid}
    assert fhir.ids("RiskAssessment?probability=ne0.5") == {low, high}
    assert fhir.ids("RiskAssessment?probability=ap0.52") == {mid}
    assert fhir.ids("RiskAssessment?probability=sa0.5") == {high}
    assert fhir.ids("RiskAssessment?probability=eb0.5") == {low}


def test_number_malformed_is_400(fhir: Fhir) -> None:
    assert "not a number" in fhir.error("RiskAssessment?probability=1.2.3")
    assert "prefix" in fhir.error("RiskAssessment?probability=xy5")


def test_quantity_value_system_code(fhir: Fhir) -> None:
    # spec: value-quantity=5.4|http://unitsofmeasure.org|mg
    mg = fhir.create(observation(valueQuantity=qty(5.4)))
    fhir.create(observation(valueQuantity=qty(5.4, "g")))
    fhir.create(observation(valueQuantity={"value": 5.4, "system": "http://other", "code": "mg"}))
    assert fhir.ids(f"Observation?value-quantity=5.4|{UCUM}|mg") == {mg}


def test_quantity_value_and_unit_or_code(fhir: Fhir) -> None:
    # spec: value-quantity=5.4||mg matches code or unit mg, any system
    by_code = fhir.create(observation(valueQuantity=qty(5.4)))
    by_unit = fhir.create(observation(valueQuantity={"value": 5.4, "unit": "mg"}))
    fhir.create(observation(valueQuantity=qty(5.4, "kg")))
    assert fhir.ids("Observation?value-quantity=5.4||mg") == {by_code, by_unit}


def test_quantity_value_only_and_prefixes(fhir: Fhir) -> None:
    # spec: value-quantity=le5.4|http://unitsofmeasure.org|mg
    small = fhir.create(observation(valueQuantity=qty(5)))
    exact = fhir.create(observation(valueQuantity=qty(5.4)))
    big = fhir.create(observation(valueQuantity=qty(120, "mm[Hg]")))
    assert fhir.ids(f"Observation?value-quantity=le5.4|{UCUM}|mg") == {small, exact}
    assert fhir.ids("Observation?value-quantity=gt100") == {big}
    assert fhir.ids("Observation?value-quantity=5.4") == {exact}


def test_quantity_missing(fhir: Fhir) -> None:
    measured = fhir.create(observation(valueQuantity=qty(1)))
    unmeasured = fhir.create(observation(valueString="n/a"))
    assert fhir.ids("Observation?value-quantity:missing=true") == {unmeasured}
    assert fhir.ids("Observation?value-quantity:missing=false") == {measured}


def test_quantity_malformed_is_400(fhir: Fhir) -> None:
    assert fhir.error("Observation?value-quantity=5.4|mg")
