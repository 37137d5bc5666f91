"""The fast FHIRPath subset agrees with fhirpathpy where both apply, and is fast."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from renkei.fhir.search.definitions import params_for, resource_types
from renkei.fhir.search.fhirpath import (
    UnsupportedExpression,
    compile_fallback,
    compile_fast,
    compile_path,
    reference_type,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "data" / "jpcore"


def _values(items: list[Any]) -> list[str]:
    # fhirpathpy returns decimals inside complex values as strings: compare as text
    return sorted(json.dumps(i.value, sort_keys=True, default=str).replace('"', "") for i in items)


def _for_fhirpathpy(expression: str, res_type: str) -> str:
    # fhirpathpy does not treat a Patient as a Resource, and has no resolve()
    expression = expression.replace("Resource.", f"{res_type}.")
    return re.sub(
        r"where\(resolve\(\) is (\w+)\)", r"where(reference.startsWith('\1/'))", expression
    )


def test_compile_fast_handles_every_indexed_definition() -> None:
    for res_type in resource_types():
        for code, d in params_for(res_type).items():
            if d.type in ("composite", "special") or d.expression is None:
                continue
            try:
                compile_fast(d.expression)
            except UnsupportedExpression as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{res_type}.{code}: {d.expression}: {exc}")


def test_compile_fast_agrees_with_fhirpathpy_on_jp_core_examples() -> None:
    compared = 0
    fallbacks: dict[str, Any] = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        res_type = resource["resourceType"]
        for code, d in params_for(res_type).items():
            if d.type in ("composite", "special") or d.expression is None:
                continue
            key = _for_fhirpathpy(d.expression, res_type)
            if key not in fallbacks:
                fallbacks[key] = compile_fallback(key)
            try:
                expected = fallbacks[key](resource)
            except ValueError:
                # fhirpathpy insists on a singleton left of `as`; search needs every value
                continue
            got = compile_fast(d.expression)(resource)
            assert _values(got) == _values(expected), f"{path.name} {code}: {d.expression}"
            compared += 1
    assert compared > 800


def test_compile_fast_reads_choice_elements_only_by_their_types() -> None:
    cov = {"resourceType": "Coverage", "subscriberId": "12-34"}
    assert compile_fast("Coverage.subscriber")(cov) == []
    obs = {"resourceType": "Observation", "valueQuantity": {"value": 1}, "valueString": "x"}
    items = compile_fast("Observation.value")(obs)
    assert sorted(i.type or "" for i in items) == ["Quantity", "string"]
    assert [i.value for i in compile_fast("(Observation.value as string)")(obs)] == ["x"]
    assert [i.value for i in compile_fast("Observation.value.ofType(Quantity)")(obs)] == [
        {"value": 1}
    ]


def test_compile_fast_where_resolve_and_extension() -> None:
    obs = {
        "resourceType": "Observation",
        "performer": [{"reference": "Practitioner/1"}, {"reference": "Patient/2"}],
        "extension": [{"url": "http://x/a", "valueCode": "A"}, {"url": "http://x/b"}],
    }
    got = compile_fast("Observation.performer.where(resolve() is Patient)")(obs)
    assert [i.value for i in got] == [{"reference": "Patient/2"}]
    got = compile_fast("Observation.extension('http://x/a').value.ofType(code)")(obs)
    assert [i.value for i in got] == ["A"]
    got = compile_fast("Observation.extension.where(url='http://x/b').url")(obs)
    assert [i.value for i in got] == ["http://x/b"]


def test_compile_fast_type_prefix_must_match() -> None:
    f = compile_fast("Patient.name | Practitioner.name")
    assert f({"resourceType": "Practitioner", "name": [{"family": "a"}]}) == [
        (({"family": "a"}), None)
    ]
    assert compile_fast("Resource.id")({"resourceType": "Patient", "id": "x"})[0].value == "x"


def test_compile_path_falls_back_for_other_shapes() -> None:
    with pytest.raises(UnsupportedExpression):
        compile_fast("Patient.name.count() > 1")
    f = compile_path("Patient.name.count()")
    assert [i.value for i in f({"resourceType": "Patient", "name": [{}, {"text": "a"}]})] == [2]


def test_reference_type_reads_literal_absolute_and_typed() -> None:
    assert reference_type({"reference": "Patient/1"}) == "Patient"
    assert reference_type({"reference": "http://x/fhir/Group/1/_history/4"}) == "Group"
    assert reference_type({"reference": "#c1"}) is None
    assert reference_type({"type": "Device", "identifier": {"value": "1"}}) == "Device"


def test_choice_and_instant_tables_are_shipped() -> None:
    from renkei.fhir.search.choices import choice_suffixes, instant_elements

    assert {"Quantity", "CodeableConcept", "DateTime"} <= choice_suffixes()["value"]
    assert "Boolean" in choice_suffixes()["deceased"]
    assert "subscriber" not in choice_suffixes()
    assert {"AuditEvent.recorded", "Observation.issued"} <= instant_elements()
    assert "Observation.effective" not in instant_elements()
