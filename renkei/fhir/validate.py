"""Parse and validate incoming resources with ``fhir.resources``.

FHIR 4.0.1 is the version served. ``fhir.resources`` maintains R4B (4.3.0) models for the
R4 line; R4B is wire-compatible with R4 for the resources home care uses (Patient,
Observation, Condition, MedicationRequest, CareTeam, Consent, Task, Communication, ...).
Resource types that exist only in R4 (the MedicinalProduct* family, the evidence-synthesis
resources, SubstanceSpecification) or only in R4B (SubscriptionTopic, ...) are refused with
a clear OperationOutcome; see docs/decisions/0002-r4b-models-for-r4.md.
"""

from __future__ import annotations

import importlib.util
import json
import re
from functools import cache
from importlib import resources
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class

from renkei.fhir.outcome import BadRequest, InvalidResource, Issue, NotFound

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

#: Types a client may not store: they only travel in interactions.
_NOT_STORABLE = frozenset({"Bundle", "OperationOutcome", "Parameters"})
#: R4 types that have no search parameter of their own, so are missing from the bases.
_EXTRA_R4_TYPES = frozenset({"Binary", "OperationOutcome", "Parameters"})


@cache
def r4_resource_types() -> frozenset[str]:
    """Every R4 resource type, read off the official SearchParameter bases."""
    data = json.loads(
        resources.files("renkei.fhir.data").joinpath("search-parameters.json").read_text()
    )
    names: set[str] = set(_EXTRA_R4_TYPES)
    for entry in data["entry"]:
        names.update(entry["resource"].get("base", []))
    return frozenset(names - {"Resource", "DomainResource"})


@cache
def supported_types() -> frozenset[str]:
    """R4 types this server stores: those with a maintained model on the R4 line."""
    # Look for each model's module without importing it: importing all ~140 models costs
    # seconds at start-up; each is imported when first used.
    out = {
        name
        for name in r4_resource_types()
        if importlib.util.find_spec(f"fhir.resources.R4B.{name.lower()}") is not None
    }
    return frozenset(out - _NOT_STORABLE) | {"Bundle"}


def check_type(res_type: str) -> None:
    if res_type not in supported_types():
        if res_type in r4_resource_types() and res_type not in _NOT_STORABLE:
            raise NotFound(
                f"resource type {res_type} is R4-only and has no maintained model; not supported",
                code_override="not-supported",
            )
        raise NotFound(f"unknown resource type {res_type!r}", code_override="not-supported")


def check_id(res_id: str, where: str = "id") -> None:
    if not ID_PATTERN.match(res_id):
        raise BadRequest(
            f"{where} {res_id!r} is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})",
            expression=(where,),
        )


def parse_resource(body: Any, *, expected_type: str | None = None) -> dict[str, Any]:
    """Validate one resource and return it unchanged (as received).

    >>> parse_resource({"resourceType": "Patient", "gender": "female"})["gender"]
    'female'
    """
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a FHIR resource (a JSON object)")
    res_type = body.get("resourceType")
    if not isinstance(res_type, str):
        raise BadRequest("the resource has no resourceType", expression=("resourceType",))
    if expected_type is not None and res_type != expected_type:
        raise BadRequest(
            f"resourceType {res_type} does not match the URL's type {expected_type}",
            expression=("resourceType",),
        )
    check_type(res_type)
    if "id" in body and not (isinstance(body["id"], str) and ID_PATTERN.match(body["id"])):
        raise BadRequest(f"{res_type}.id is not a valid FHIR id", expression=(f"{res_type}.id",))
    model = get_fhir_model_class(res_type)
    try:
        model.model_validate(body)
    except pydantic.ValidationError as exc:
        raise InvalidResource(
            f"{res_type} is not valid FHIR R4: {len(exc.errors())} problem(s)",
            issues=[_issue(res_type, err) for err in exc.errors()[:50]],
        ) from exc
    except (ValueError, TypeError, KeyError) as exc:  # model-level validators
        raise InvalidResource(f"{res_type} is not valid FHIR R4: {exc}") from exc
    return body


def _issue(res_type: str, err: Any) -> Issue:
    path = _expression(res_type, err.get("loc", ()))
    kind = err.get("type", "")
    code = "structure" if kind == "extra_forbidden" else "value"
    message = err.get("msg", "invalid")
    if kind == "extra_forbidden":
        message = "unknown element"
    return Issue("error", code, f"{path}: {message}", (path,))


def _expression(res_type: str, loc: tuple[Any, ...]) -> str:
    """``("name", 0, "family")`` -> ``Patient.name[0].family``."""
    out = res_type
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("__root__",):
            continue
        else:
            out += f".{part}"
    return out
