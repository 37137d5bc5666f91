"""Chained parameters and reverse chaining (https://hl7.org/fhir/R4/search.html#chaining,
#has)."""

from __future__ import annotations

from typing import Any

from tests.integration.search.conftest import Fhir, jp_name, link, match_ids, observation, patient

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


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


def _temperature(subject: str, value: float, code: str = "8310-5") -> dict[str, Any]:
    return observation(
        subject,
        code={"coding": [{"system": LOINC, "code": code}]},
        valueQuantity={"value": value, "unit": "Cel", "system": UCUM, "code": "Cel"},
    )


def test_has_with_composite_and_other_filters(fhir: Fhir) -> None:
    # the bench's shape: patients born in a year with a fever on record; the code and the
    # value must come from the same observation
    fever = fhir.create(patient(birthDate="1940-03-01"))
    mild = fhir.create(patient(birthDate="1940-05-01"))
    split = fhir.create(patient(birthDate="1940-07-01"))
    other_year = fhir.create(patient(birthDate="1941-01-01"))
    fhir.create(_temperature(f"Patient/{fever}", 36.5))
    fhir.create(_temperature(f"Patient/{fever}", 39.0))
    fhir.create(_temperature(f"Patient/{mild}", 37.0))
    fhir.create(_temperature(f"Patient/{split}", 36.0))  # temperature, not a fever ...
    fhir.create(
        _temperature(f"Patient/{split}", 40.0, code="8867-4")
    )  # ... fever value, other code
    fhir.create(_temperature(f"Patient/{other_year}", 39.5))
    query = (
        f"Patient?birthdate=1940&_has:Observation:patient:code-value-quantity={LOINC}|8310-5$gt38.5"
    )
    assert fhir.ids(query) == {fever}
    assert fhir.search(query)["total"] == 1
    everyone = f"Patient?_has:Observation:patient:code-value-quantity={LOINC}|8310-5$gt38.5"
    assert fhir.ids(everyone) == {fever, other_year}


def test_has_with_another_filter_pages_in_creation_order(fhir: Fhir) -> None:
    # the _has test runs on the other filter's candidates in pk order until a page is full
    # (engine._late_filters): pages must still hold every match once, in order, both ways
    born_1940 = [fhir.create(patient(birthDate=f"1940-0{1 + n % 9}-01")) for n in range(9)]
    fhir.create(patient(birthDate="1950-01-01"))
    with_fever = [pid for n, pid in enumerate(born_1940) if n % 3 != 1]
    for n, pid in enumerate(born_1940):
        fhir.create(_temperature(f"Patient/{pid}", 39.0 if n % 3 != 1 else 36.5))
    fhir.create(_temperature(f"Patient/{born_1940[1]}", 36.8))
    query = (
        "Patient?birthdate=1940&_count=2"
        f"&_has:Observation:patient:code-value-quantity={LOINC}|8310-5$gt38.5"
    )
    pages = [fhir.search(query)]
    while (nxt := link(pages[-1], "next")) is not None:
        pages.append(fhir.search(nxt))
    assert [i for b in pages for i in match_ids(b)] == with_fever
    assert all(len(match_ids(b)) == 2 for b in pages[:-1])
    back = fhir.search(link(pages[-1], "previous") or "")
    assert match_ids(back) == match_ids(pages[-2])
    counted = fhir.search(query + "&_total=accurate")
    assert counted["total"] == len(with_fever) and match_ids(counted) == with_fever[:2]


def test_has_with_not_and_missing_inner_filters(fhir: Fhir) -> None:
    p1 = fhir.create(patient())
    p2 = fhir.create(patient())
    p3 = fhir.create(patient())  # no observation at all: never matches _has
    fhir.create(_temperature(f"Patient/{p1}", 36.5))
    fhir.create(observation(f"Patient/{p2}"))  # 8480-6, no value
    assert fhir.ids("Patient?_has:Observation:patient:code:not=8310-5") == {p2}
    assert fhir.ids("Patient?_has:Observation:patient:value-quantity:missing=true") == {p2}
    assert fhir.ids("Patient?_has:Observation:patient:value-quantity:missing=false") == {p1}
    assert p3 not in fhir.ids("Patient?_has:Observation:patient:code:not=nothing")


def test_has_with_a_reference_inner_filter(fhir: Fhir) -> None:
    # the inner filter reads idx_reference too, inside the subquery over idx_reference
    p1 = fhir.create(patient())
    p2 = fhir.create(patient())
    fhir.create(observation(f"Patient/{p1}", performer=[{"reference": "Practitioner/doc"}]))
    fhir.create(observation(f"Patient/{p2}", performer=[{"reference": "Practitioner/other"}]))
    assert fhir.ids("Patient?_has:Observation:subject:performer=Practitioner/doc") == {p1}


def test_has_ignores_deleted_sources(fhir: Fhir) -> None:
    p1 = fhir.create(patient())
    o1 = fhir.create(_temperature(f"Patient/{p1}", 39.0))
    query = "Patient?_has:Observation:patient:value-quantity=gt38.5"
    assert fhir.ids(query) == {p1}
    assert fhir.client.delete(f"/fhir/Observation/{o1}").status_code in (200, 204)
    assert fhir.ids(query) == set()
