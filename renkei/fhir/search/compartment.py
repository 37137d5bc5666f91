"""The Patient compartment, read from the official CompartmentDefinition (package data).

``Patient/123/Observation`` means "Observations whose ``subject`` or ``performer`` is
Patient/123": the definition lists, per resource type, the reference parameters that put
a resource in a patient's compartment (https://hl7.org/fhir/R4/compartmentdefinition-patient.html).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from renkei.fhir.outcome import BadRequest

#: Compartments this server serves; the others (Encounter, Practitioner...) are refused.
SUPPORTED = ("Patient",)


@cache
def _patient_compartment() -> dict[str, tuple[str, ...]]:
    raw = resources.files("renkei.fhir.data").joinpath("compartmentdefinition-patient.json")
    data = json.loads(raw.read_text())
    out: dict[str, tuple[str, ...]] = {}
    for entry in data.get("resource", []):
        params = tuple(p for p in entry.get("param", []) if p != "{def}")
        if params:
            out[entry["code"]] = params
    return out


def compartment_params(compartment_type: str, res_type: str) -> tuple[str, ...]:
    """The reference parameters linking ``res_type`` to a member of the compartment.

    >>> compartment_params("Patient", "Observation")
    ('subject', 'performer')
    """
    return _definition(compartment_type).get(res_type, ())


def compartment_types(compartment_type: str) -> dict[str, tuple[str, ...]]:
    """Every resource type that can be in the compartment, with its linking parameters."""
    return dict(_definition(compartment_type))


def _definition(compartment_type: str) -> dict[str, tuple[str, ...]]:
    if compartment_type not in SUPPORTED:
        raise BadRequest(
            f"compartment search is served for {', '.join(SUPPORTED)} only, not {compartment_type}"
        )
    return _patient_compartment()


__all__ = ["SUPPORTED", "compartment_params", "compartment_types"]
