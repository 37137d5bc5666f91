"""Uri parameters (https://hl7.org/fhir/R4/search.html#uri), _profile and _source."""

from __future__ import annotations

from tests.integration.search.conftest import Fhir, patient


def value_set(fhir: Fhir, url: str) -> str:
    return fhir.create({"resourceType": "ValueSet", "status": "active", "url": url})


def test_uri_exact(fhir: Fhir) -> None:
    vs = value_set(fhir, "http://acme.org/fhir/ValueSet/123")
    value_set(fhir, "http://acme.org/fhir/ValueSet/1234")
    assert fhir.ids("ValueSet?url=http://acme.org/fhir/ValueSet/123") == {vs}


def test_uri_below(fhir: Fhir) -> None:
    # spec: url:below=http://acme.org/fhir/ matches everything under that path
    a = value_set(fhir, "http://acme.org/fhir/ValueSet/123")
    b = value_set(fhir, "http://acme.org/fhir/ValueSet/124")
    value_set(fhir, "http://other.org/fhir/ValueSet/123")
    assert fhir.ids("ValueSet?url:below=http://acme.org/fhir/") == {a, b}


def test_uri_above(fhir: Fhir) -> None:
    # spec: url:above=http://acme.org/fhir/ValueSet/123/_history/5 matches its ancestors
    root = value_set(fhir, "http://acme.org/fhir")
    exact = value_set(fhir, "http://acme.org/fhir/ValueSet/123")
    value_set(fhir, "http://acme.org/fhir/ValueSet/124")
    assert fhir.ids("ValueSet?url:above=http://acme.org/fhir/ValueSet/123/_history/5") == {
        root,
        exact,
    }


def test_profile_and_source(fhir: Fhir) -> None:
    jp = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient"
    tagged = fhir.create(patient(meta={"profile": [jp], "source": "urn:renkei:clinic-a"}))
    fhir.create(patient())
    assert fhir.ids(f"Patient?_profile={jp}") == {tagged}
    assert fhir.ids("Patient?_source=urn:renkei:clinic-a") == {tagged}


def test_uri_missing(fhir: Fhir) -> None:
    with_url = value_set(fhir, "http://acme.org/fhir/ValueSet/1")
    without = fhir.create({"resourceType": "ValueSet", "status": "draft"})
    assert fhir.ids("ValueSet?url:missing=true") == {without}
    assert fhir.ids("ValueSet?url:missing=false") == {with_url}
