"""Patient compartment search and $everything
(https://hl7.org/fhir/R4/compartmentdefinition-patient.html,
https://hl7.org/fhir/R4/patient-operation-everything.html)."""

from __future__ import annotations

from typing import Any

from renkei.clock import ManualClock
from tests.integration.search.conftest import Fhir, observation, patient


def refs(bundle: dict[str, Any], mode: str | None = None) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if mode is None or e["search"]["mode"] == mode
    }


def network(fhir: Fhir) -> dict[str, str]:
    org = fhir.create({"resourceType": "Organization", "name": "あおぞら在宅クリニック"})
    p1 = fhir.create(patient(managingOrganization={"reference": f"Organization/{org}"}))
    p2 = fhir.create(patient())
    o1 = fhir.create(observation(f"Patient/{p1}"))
    o2 = fhir.create(observation(f"Patient/{p2}"))
    cond = fhir.create(
        {
            "resourceType": "Condition",
            "subject": {"reference": f"Patient/{p1}"},
            "code": {"text": "糖尿病"},
        }
    )
    return {"org": org, "p1": p1, "p2": p2, "o1": o1, "o2": o2, "cond": cond}


def test_compartment_one_type(fhir: Fhir) -> None:
    n = network(fhir)
    assert fhir.ids(f"Patient/{n['p1']}/Observation") == {n["o1"]}
    assert fhir.ids(f"Patient/{n['p2']}/Observation") == {n["o2"]}


def test_compartment_with_filters(fhir: Fhir) -> None:
    n = network(fhir)
    assert fhir.ids(f"Patient/{n['p1']}/Observation?code=8480-6") == {n["o1"]}
    assert fhir.ids(f"Patient/{n['p1']}/Observation?code=0000-0") == set()


def test_compartment_all_types(fhir: Fhir) -> None:
    n = network(fhir)
    bundle = fhir.search(f"Patient/{n['p1']}/*")
    assert refs(bundle) == {
        f"Patient/{n['p1']}",
        f"Observation/{n['o1']}",
        f"Condition/{n['cond']}",
    }


def test_compartment_of_unknown_patient_is_404(fhir: Fhir) -> None:
    resp = fhir.client.get("/fhir/Patient/nobody/Observation")
    assert resp.status_code == 404


def test_compartment_type_outside_compartment_is_400(fhir: Fhir) -> None:
    n = network(fhir)
    assert "compartment" in fhir.error(f"Patient/{n['p1']}/Organization")


def test_everything(fhir: Fhir) -> None:
    n = network(fhir)
    bundle = fhir.search(f"Patient/{n['p1']}/$everything")
    assert refs(bundle, "match") == {
        f"Patient/{n['p1']}",
        f"Observation/{n['o1']}",
        f"Condition/{n['cond']}",
    }
    # resources the compartment references come along
    assert refs(bundle, "include") == {f"Organization/{n['org']}"}


def test_everything_type_since_and_paging(fhir: Fhir, clock: ManualClock) -> None:
    n = network(fhir)
    clock.advance(days=1)
    later = fhir.create(observation(f"Patient/{n['p1']}"))
    typed = fhir.search(f"Patient/{n['p1']}/$everything?_type=Observation")
    assert refs(typed, "match") == {f"Observation/{n['o1']}", f"Observation/{later}"}
    since = fhir.search(f"Patient/{n['p1']}/$everything?_since=2026-04-02T00:00:00Z")
    assert refs(since, "match") == {f"Observation/{later}"}
    first = fhir.search(f"Patient/{n['p1']}/$everything?_count=2")
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = fhir.client.get(nxt).json()
    matched = refs(first, "match") | refs(second, "match")
    assert len(matched) == 4 and f"Observation/{later}" in matched


def test_everything_unknown_patient_is_404(fhir: Fhir) -> None:
    assert fhir.client.get("/fhir/Patient/nobody/$everything").status_code == 404
