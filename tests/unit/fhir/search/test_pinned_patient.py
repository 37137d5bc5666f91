"""A search pinned to one patient skips the per-row sharing filter (engine._pinned_patient).
That is only sound if every match is in the patient's compartment: check it for every type."""

from __future__ import annotations

import re

from renkei.fhir.search.compartment import compartment_types
from renkei.fhir.search.definitions import params_for
from renkei.fhir.search.engine import _pinned_patient
from renkei.fhir.search.parse import parse_search


def _paths(expression: str | None) -> set[str]:
    bare = re.sub(r"\.where\(resolve\(\) is [A-Za-z]+\)", "", expression or "")
    return {p.strip() for p in bare.split("|") if p.strip()}


def test_the_patient_parameter_is_always_a_compartment_link() -> None:
    checked = 0
    for res_type, links in compartment_types("Patient").items():
        params = params_for(res_type)
        if "patient" not in params or "patient" in links:
            continue
        linked = set().union(*(_paths(params[p].expression) for p in links if p in params))
        assert _paths(params["patient"].expression) <= linked, res_type
        checked += 1
    assert checked > 20


def _pin(res_type: str, query: str) -> str | None:
    params = [tuple(p.split("=", 1)) for p in query.split("&")]
    req = parse_search(res_type, params)  # type: ignore[arg-type]
    return _pinned_patient(req, [res_type])


def test_only_plain_single_patient_references_pin() -> None:
    assert _pin("Observation", "patient=Patient/p1") == "p1"
    assert _pin("Observation", "subject=Patient/p1&code=8310-5") == "p1"
    assert _pin("Observation", "patient=p1") == "p1"
    assert _pin("Observation", "subject=p1") is None  # a bare id may name a Group
    assert _pin("Observation", "patient=Patient/p1,Patient/p2") is None
    assert _pin("Observation", "subject:missing=false") is None
    assert _pin("Observation", "subject=Group/g1") is None
    assert _pin("Observation", "code=8310-5") is None
    assert _pin("Organization", "partof=Organization/o1") is None
    assert _pin("Patient", "link=Patient/p1") is None
