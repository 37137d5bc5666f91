"""Token parameters (https://hl7.org/fhir/R4/search.html#token) and _tag/_security/_id."""

from __future__ import annotations

from tests.integration.search.conftest import Fhir, observation, patient

LOINC = "http://loinc.org"
MRN = "urn:oid:1.2.392.100495.20.3.51.11312345678"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def coded(system: str | None, code: str, text: str | None = None) -> dict[str, object]:
    coding: dict[str, str] = {"code": code}
    if system is not None:
        coding["system"] = system
    concept: dict[str, object] = {"coding": [coding]}
    if text:
        concept["text"] = text
    return concept


def test_token_code_any_system(fhir: Fhir) -> None:
    a = fhir.create(observation(code=coded(LOINC, "1234-5")))
    b = fhir.create(observation(code=coded("http://acme.org", "1234-5")))
    fhir.create(observation(code=coded(LOINC, "9999-9")))
    assert fhir.ids("Observation?code=1234-5") == {a, b}


def test_token_system_and_code(fhir: Fhir) -> None:
    a = fhir.create(observation(code=coded(LOINC, "1234-5")))
    fhir.create(observation(code=coded("http://acme.org", "1234-5")))
    assert fhir.ids("Observation?code=http://loinc.org|1234-5") == {a}


def test_token_no_system(fhir: Fhir) -> None:
    # spec: |[code] matches a code with no system
    bare = fhir.create(observation(code=coded(None, "1234-5")))
    fhir.create(observation(code=coded(LOINC, "1234-5")))
    assert fhir.ids("Observation?code=|1234-5") == {bare}


def test_token_system_only(fhir: Fhir) -> None:
    a = fhir.create(observation(code=coded(LOINC, "1234-5")))
    b = fhir.create(observation(code=coded(LOINC, "8480-6")))
    fhir.create(observation(code=coded("http://acme.org", "1")))
    assert fhir.ids("Observation?code=http://loinc.org|") == {a, b}


def test_token_identifier(fhir: Fhir) -> None:
    pid = fhir.create(patient(identifier=[{"system": MRN, "value": "00001"}]))
    fhir.create(patient(identifier=[{"system": MRN, "value": "00002"}]))
    assert fhir.ids(f"Patient?identifier={MRN}|00001") == {pid}
    assert fhir.ids("Patient?identifier=00001") == {pid}


def test_token_not_includes_resources_without_the_element(fhir: Fhir) -> None:
    # spec: gender:not=male finds female, other, unknown and patients with no gender
    female = fhir.create(patient(gender="female"))
    none = fhir.create(patient())
    fhir.create(patient(gender="male"))
    assert fhir.ids("Patient?gender:not=male") == {female, none}


def test_token_text_matches_display_and_text(fhir: Fhir) -> None:
    hb = fhir.create(
        observation(
            code={
                "coding": [{"system": LOINC, "code": "2339-0", "display": "Glucose [Mass/volume]"}],
                "text": "血糖値",
            }
        )
    )
    fhir.create(observation(code=coded(LOINC, "8480-6", "収縮期血圧")))
    assert fhir.ids("Observation?code:text=血糖") == {hb}


def test_token_of_type(fhir: Fhir) -> None:
    # spec example: identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053
    mr = fhir.create(
        patient(
            identifier=[
                {
                    "type": {"coding": [{"system": V2_0203, "code": "MR"}]},
                    "system": "http://acme.org/mrn",
                    "value": "446053",
                }
            ]
        )
    )
    fhir.create(
        patient(
            identifier=[
                {
                    "type": {"coding": [{"system": V2_0203, "code": "DL"}]},
                    "value": "446053",
                }
            ]
        )
    )
    assert fhir.ids(f"Patient?identifier:of-type={V2_0203}|MR|446053") == {mr}


def test_token_boolean_and_code(fhir: Fhir) -> None:
    active = fhir.create(patient(active=True, gender="female"))
    fhir.create(patient(active=False, gender="female"))
    assert fhir.ids("Patient?active=true") == {active}
    assert fhir.ids("Patient?active=true&gender=female") == {active}


def test_token_or_values(fhir: Fhir) -> None:
    a = fhir.create(patient(gender="female"))
    b = fhir.create(patient(gender="other"))
    fhir.create(patient(gender="male"))
    assert fhir.ids("Patient?gender=female,other") == {a, b}


def test_token_missing(fhir: Fhir) -> None:
    with_gender = fhir.create(patient(gender="female"))
    without = fhir.create(patient())
    assert fhir.ids("Patient?gender:missing=true") == {without}
    assert fhir.ids("Patient?gender:missing=false") == {with_gender}


def test_token_telecom(fhir: Fhir) -> None:
    pid = fhir.create(patient(telecom=[{"system": "phone", "value": "03-1234-5678"}]))
    assert fhir.ids("Patient?phone=03-1234-5678") == {pid}


def test_id_parameter(fhir: Fhir) -> None:
    a = fhir.create(patient())
    b = fhir.create(patient())
    fhir.create(patient())
    assert fhir.ids(f"Patient?_id={a}") == {a}
    assert fhir.ids(f"Patient?_id={a},{b}") == {a, b}


def test_tag_and_security(fhir: Fhir) -> None:
    tagged = fhir.create(
        patient(
            meta={
                "tag": [{"system": "http://example.org/tags", "code": "home-care"}],
                "security": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": "R",
                    }
                ],
            }
        )
    )
    fhir.create(patient())
    assert fhir.ids("Patient?_tag=http://example.org/tags|home-care") == {tagged}
    assert fhir.ids("Patient?_security=R") == {tagged}
    assert fhir.ids("Patient?_tag:missing=true") != set()
    assert tagged not in fhir.ids("Patient?_tag:missing=true")


def test_token_unknown_modifier_is_400(fhir: Fhir) -> None:
    assert ":in" in fhir.error(
        "Patient?gender:in=http://hl7.org/fhir/ValueSet/administrative-gender"
    )
