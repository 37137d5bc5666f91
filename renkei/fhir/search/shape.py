"""``_summary`` and ``_elements``: trimmed copies of stored resources, marked SUBSETTED.

Which elements are "summary" or mandatory comes from the R4B models' field metadata (the
same definitions the validator uses), not a hand-kept list. A trimmed resource carries
the ``SUBSETTED`` tag so no client mistakes it for the whole record
(https://hl7.org/fhir/R4/search.html#summary, #elements).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = frozenset({"resourceType", "id", "meta"})


@cache
def _element_sets(res_type: str) -> tuple[frozenset[str], frozenset[str]]:
    """(summary elements, mandatory elements) of a resource type, as JSON names."""
    try:
        model = get_fhir_model_class(res_type)
    except (KeyError, ValueError, AttributeError):
        return frozenset(), frozenset()
    summary: set[str] = set()
    mandatory: set[str] = set()
    for field in model.model_fields.values():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        name = field.alias or ""
        if not name or name.startswith("_"):
            continue
        if extra.get("summary_element_property"):
            summary.add(name)
        if extra.get("element_required") or field.is_required():
            mandatory.add(name)
    return frozenset(summary), frozenset(mandatory)


def shape(
    content: dict[str, Any], summary: str | None, elements: tuple[str, ...] | None
) -> dict[str, Any]:
    """A copy of ``content`` for ``_summary`` (true/text/data) or ``_elements``; unchanged
    when neither applies.

    >>> p = {"resourceType": "Patient", "id": "1", "text": {"div": "..."}, "gender": "male",
    ...      "photo": [{"data": "..."}]}
    >>> sorted(shape(p, "true", None))
    ['gender', 'id', 'meta', 'resourceType']
    """
    if summary in (None, "false", "count") and elements is None:
        return content
    res_type = str(content.get("resourceType", ""))
    summary_set, mandatory = _element_sets(res_type)
    if summary == "true":
        keep = summary_set | _ALWAYS
    elif summary == "text":
        keep = _ALWAYS | {"text"} | mandatory
    elif summary == "data":
        keep = frozenset(k for k in content if k != "text")
    else:
        assert elements is not None
        keep = _ALWAYS | mandatory | frozenset(elements)
    out = {k: v for k, v in content.items() if _kept(k, keep)}
    if len(out) == len(content) and summary != "true":
        return content
    return _tag_subsetted(out)


def _kept(key: str, keep: frozenset[str]) -> bool:
    # a primitive's extension sibling (_birthDate) goes with its value
    return key in keep or (key.startswith("_") and key[1:] in keep)


def _tag_subsetted(content: dict[str, Any]) -> dict[str, Any]:
    meta = dict(content.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    return {**content, "meta": meta}


__all__ = ["SUBSETTED", "shape"]
