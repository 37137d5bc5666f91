"""Chained parameters and reverse chaining (https://hl7.org/fhir/R4/search.html#chaining,
#has)."""

from __future__ import annotations

from tests.integration.search.conftest import Fhir, jp_name, observation, patient

LOINC = "http://loinc.org"


def test_chain_one_hop_japanese_name(fhir: Fhir) -> None:
    # Observation?subject.name=やまだ finds observations of ヤマダ (and of ﾔﾏﾀﾞ)
    yamada = fhir.create(patient(name=jp_name("山田", "花子", "ヤマダ", "ハナコ")))
    half = fhir.create(patient(name=[{"family": "ﾔﾏﾀﾞ"}]))
    sato = fhir.create(patient(name=jp_name("佐藤", "一郎", "サトウ", "イチロウ")))
    o1 = fhir.create(observation(f"Patient/{yamada}"))
    o2 = fhir.create(observation(f"Patient/{half}"))
    fhir.create(observation(f"Patient/{sato}"))
    assert fhir.ids("Observation?subject.name=やまだ") == {o1, o2}
    assert fhir.ids("Observation?subject:Patient.name=山田") == {o1}
    assert fhir.ids("Observation?patient.family=さとう") == fhir.ids(
        f"Observation?subject=Patient/{sato}"
    )


def test_chain_two_hops(fhir: Fhir) -> None:
    # Observation -> Patient -> Organization (managingOrganization)
    clinic = fhir.create({"resourceType": "Organization", "name": "あおぞら在宅クリニック"})
    other = fhir.create({"resourceType": "Organization", "name": "みどり病院"})
    p1 = fhir.create(patient(managingOrganization={"reference": f"Organization/{clinic}"}))
    p2 = fhir.create(patient(managingOrganization={"reference": f"Organization/{other}"}))
    o1 = fhir.create(observation(f"Patient/{p1}"))
    fhir.create(observation(f"Patient/{p2}"))
    assert fhir.ids("Observation?subject:Patient.organization.name=あおぞら") == {o1}
    assert fhir.ids("Observation?patient.organization.name=アオゾラ") == {o1}


def test_chain_with_token_and_identifier(fhir: Fhir) -> None:
    mrn = "urn:oid:1.2.392.100495.20.3.51.11312345678"
    p1 = fhir.create(patient(identifier=[{"system": mrn, "value": "00001"}]))
    o1 = fhir.create(observation(f"Patient/{p1}"))
    fhir.create(observation("Patient/unknown"))
    assert fhir.ids(f"Observation?subject:Patient.identifier={mrn}|00001") == {o1}


def test_chain_and_plain_filters_combine(fhir: Fhir) -> None:
    p1 = fhir.create(patient(name=[{"family": "ヤマダ"}]))
    sys = fhir.create(observation(f"Patient/{p1}"))
    fhir.create(
        observation(f"Patient/{p1}", code={"coding": [{"system": LOINC, "code": "8462-4"}]})
    )
    assert fhir.ids(f"Observation?subject.name=やまだ&code={LOINC}|8480-6") == {sys}


def test_chain_unknown_parameter_on_target_is_400(fhir: Fhir) -> None:
    assert "nosuch" in fhir.error("Observation?subject.nosuch=1")


def test_chain_on_non_reference_is_400(fhir: Fhir) -> None:
    assert "cannot be chained" in fhir.error("Observation?code.name=1")


def test_has_reverse_chain(fhir: Fhir) -> None:
    # spec: Patient?_has:Observation:patient:code=1234-5
    p1 = fhir.create(patient())
    p2 = fhir.create(patient())
    fhir.create(
        observation(f"Patient/{p1}", code={"coding": [{"system": LOINC, "code": "1234-5"}]})
    )
    fhir.create(observation(f"Patient/{p2}"))
    assert fhir.ids("Patient?_has:Observation:patient:code=1234-5") == {p1}
    assert fhir.ids("Patient?_has:Observation:subject:code=8480-6") == {p2}


def test_has_nested(fhir: Fhir) -> None:
    # the spec's example nests through AuditEvent, which this server keeps in its own
    # tamper-evident log (not creatable); Provenance has the same shape (target, agent)
    p1 = fhir.create(patient())
    p2 = fhir.create(patient())
    o1 = fhir.create(observation(f"Patient/{p1}"))
    fhir.create(observation(f"Patient/{p2}"))
    fhir.create(
        {
            "resourceType": "Provenance",
            "target": [{"reference": f"Observation/{o1}"}],
            "recorded": "2026-04-01T00:00:00Z",
            "agent": [{"who": {"reference": "Practitioner/MyUserId"}}],
        }
    )
    found = fhir.ids("Patient?_has:Observation:patient:_has:Provenance:target:agent=MyUserId")
    assert found == {p1}


def test_has_reference_that_cannot_point_here_is_400(fhir: Fhir) -> None:
    assert "never points" in fhir.error("Patient?_has:Observation:device:code=1")
