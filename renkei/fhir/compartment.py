"""Patient compartment membership (https://hl7.org/fhir/R4/compartmentdefinition-patient.html).

A resource belongs to patient P's compartment when one of the compartment's search
parameters for its type references ``Patient/P``. The parameters come from the official
CompartmentDefinition and their FHIRPath from the official SearchParameters (both shipped
in ``renkei/fhir/data``); the paths used there are simple enough to walk without a FHIRPath
engine: dotted element paths, ``.where(resolve() is Patient)`` (equivalent to keeping only
``Patient/...`` references) and ``as`` casts.

>>> sorted(patient_ids({"resourceType": "Observation", "subject": {"reference": "Patient/p1"},
...                      "performer": [{"reference": "Practitioner/d1"}]}))
['p1']
>>> sorted(patient_ids({"resourceType": "Patient", "id": "p2"}))
['p2']
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources as pkg_resources
from typing import Any

#: a relative literal reference to a Patient, optionally version-specific
_PATIENT_REF = re.compile(r"^Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


@cache
def _definitions() -> dict[str, tuple[tuple[str, ...], ...]]:
    """resource type -> element paths (without the type) that may link it to a patient."""
    data = pkg_resources.files("renkei.fhir") / "data"
    compartment = json.loads((data / "compartmentdefinition-patient.json").read_text("utf-8"))
    params = json.loads((data / "search-parameters.json").read_text("utf-8"))
    expressions: dict[tuple[str, str], str] = {}
    for entry in params.get("entry", []):
        res = entry.get("resource", {})
        for base in res.get("base", []):
            if res.get("expression"):
                expressions[(base, res["code"])] = res["expression"]
    out: dict[str, tuple[tuple[str, ...], ...]] = {}
    for item in compartment.get("resource", []):
        res_type = item["code"]
        paths: list[tuple[str, ...]] = []
        for code in item.get("param", []):
            expr = expressions.get((res_type, code))
            if expr is None:
                continue
            for part in expr.split("|"):
                path = _parse_path(part, res_type)
                if path and path not in paths:
                    paths.append(path)
        if paths:
            out[res_type] = tuple(paths)
    return out


def _parse_path(expr: str, res_type: str) -> tuple[str, ...] | None:
    """``"Observation.subject.where(resolve() is Patient)"`` -> ``("subject",)``."""
    text = expr.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    text = re.sub(r"\.where\((?:[^()]|\([^()]*\))*\)", "", text)
    text = re.sub(r"\s+as\s+\w+", "", text)
    text = re.sub(r"\.as\(\w+\)", "", text)
    steps = [s.strip() for s in text.split(".") if s.strip()]
    if not steps or steps[0] != res_type:
        return None
    if not all(re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", s) for s in steps[1:]):
        return None
    return tuple(steps[1:])


def _walk(node: Any, path: tuple[str, ...]) -> list[Any]:
    nodes = [node]
    for step in path:
        nxt: list[Any] = []
        for item in nodes:
            if isinstance(item, dict) and step in item:
                value = item[step]
                nxt.extend(value if isinstance(value, list) else [value])
        nodes = nxt
    return nodes


@cache
def compartment_types() -> frozenset[str]:
    """Resource types that can belong to a patient's compartment (Patient included)."""
    return frozenset(_definitions()) | {"Patient"}


def patient_ids(content: dict[str, Any] | None) -> set[str]:
    """Ids of the patients whose compartment ``content`` belongs to.

    A Patient belongs to its own compartment only: ``Patient.link`` to another patient
    does not make one patient's record part of the other's for access decisions.
    """
    if not isinstance(content, dict):
        return set()
    res_type = content.get("resourceType")
    if res_type == "Patient":
        res_id = content.get("id")
        return {res_id} if isinstance(res_id, str) else set()
    out: set[str] = set()
    for path in _definitions().get(str(res_type), ()):
        for ref in _walk(content, path):
            if isinstance(ref, dict):
                match = _PATIENT_REF.match(str(ref.get("reference", "")))
                if match:
                    out.add(match.group(1))
    return out


__all__ = ["compartment_types", "patient_ids"]
