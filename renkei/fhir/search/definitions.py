"""Search-parameter definitions, read from the official R4 bundle and JP Core's own.

Nothing here is hand-typed: the R4 ``SearchParameter`` collection (``data/search-parameters.json``,
from the FHIR 4.0.1 definitions) and JP Core 1.2.0's SearchParameters (``data/jpcore/``) are
loaded once per process into a registry keyed by resource type and code.

A definition shared by several resource types carries one union expression
(``Patient.name | Practitioner.name``); the registry splits it so that each
:class:`SearchParamDef` holds the part for its own type only::

    >>> get_param("Practitioner", "name").expression
    'Practitioner.name'
    >>> get_param("Patient", "jp-kana-sort").type
    'string'
    >>> get_param("Observation", "_tag").expression
    'Resource.meta.tag'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

_DATA = "renkei.fhir.data"
_JPCORE = "renkei.fhir.data.jpcore"

#: Types that derive from Resource but not DomainResource (no ``text``, so no ``_text``).
_NOT_DOMAIN = frozenset({"Bundle", "Binary", "Parameters"})

#: Modifiers the R4 search page allows per type, used when a definition names none
#: (https://hl7.org/fhir/R4/search.html#modifiers).
_DEFAULT_MODIFIERS: dict[str, tuple[str, ...]] = {
    "string": ("missing", "exact", "contains"),
    "token": ("missing", "text", "not", "above", "below", "in", "not-in", "of-type"),
    "reference": ("missing", "type", "identifier", "above", "below"),
    "date": ("missing",),
    "number": ("missing",),
    "quantity": ("missing",),
    "uri": ("missing", "above", "below"),
    "composite": ("missing",),
    "special": (),
}
_ORDERED = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_DEFAULT_COMPARATORS: dict[str, tuple[str, ...]] = {
    "number": _ORDERED,
    "date": _ORDERED,
    "quantity": _ORDERED,
}

_LEADING_TYPE = re.compile(r"^\(?\s*([A-Z][A-Za-z]+)\b")


@dataclass(frozen=True)
class SearchParamDef:
    """One search parameter as it applies to one resource type."""

    code: str
    #: number|date|string|token|reference|composite|quantity|uri|special
    type: str
    #: the resource type this definition is bound to ("Resource"/"DomainResource" for common ones)
    res_type: str
    #: FHIRPath for this resource type only; None for parameters without one (_text, _query)
    expression: str | None
    url: str
    target: tuple[str, ...] = ()
    modifiers: tuple[str, ...] = ()
    comparators: tuple[str, ...] = ()
    #: composite only: (component definition url, expression relative to ``expression``)
    components: tuple[tuple[str, str], ...] = ()
    description: str = ""


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression on its top-level ``|`` operators.

    >>> split_union("Patient.name | Practitioner.name.where(use = 'a|b')")
    ['Patient.name', "Practitioner.name.where(use = 'a|b')"]
    """
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(expression):
        ch = expression[i]
        if ch == "'":
            end = expression.find("'", i + 1)
            while end != -1 and expression[end - 1] == "\\":
                end = expression.find("'", end + 1)
            i = len(expression) if end == -1 else end + 1
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
        i += 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


def _leading_type(part: str) -> str | None:
    """The resource type a union part starts with (``(Patient.x as Y)`` -> Patient)."""
    m = _LEADING_TYPE.match(part)
    return m.group(1) if m else None


def _expression_for(parts: list[str], base: str) -> str | None:
    """Keep the parts that apply to ``base``; untyped parts (``name | alias``) get its prefix."""
    mine: list[str] = []
    for part in parts:
        leading = _leading_type(part)
        if leading == base:
            mine.append(part)
        elif leading is None:
            # relative path written without its type (InsurancePlan-name): bind it here
            mine.append(f"{base}.{part}")
    return " | ".join(mine) or None


def _defs_from(sp: dict[str, Any]) -> list[SearchParamDef]:
    code = sp.get("code")
    ptype = sp.get("type")
    url = sp.get("url")
    bases = list(sp.get("base") or [])
    if not (code and ptype and url and bases):
        return []
    expr = sp.get("expression")
    parts = split_union(expr) if expr else []
    modifiers = tuple(sp.get("modifier") or ()) or _DEFAULT_MODIFIERS.get(ptype, ())
    comparators = tuple(sp.get("comparator") or ()) or _DEFAULT_COMPARATORS.get(ptype, ())
    components = tuple(
        (c["definition"], c["expression"])
        for c in sp.get("component") or ()
        if c.get("definition") and c.get("expression")
    )
    return [
        SearchParamDef(
            code=code,
            type=ptype,
            res_type=base,
            expression=_expression_for(parts, base) if parts else None,
            url=url,
            target=tuple(sp.get("target") or ()),
            modifiers=modifiers,
            comparators=comparators,
            components=components,
            description=_description_for(sp.get("description") or "", base),
        )
        for base in bases
    ]


def _description_for(text: str, base: str) -> str:
    """The line of a "Multiple Resources" description that is about ``base``."""
    if not text.startswith("Multiple Resources"):
        return text
    m = re.search(rf"^\* \[{base}\]\([^)]*\): *(.*?)\s*$", text, re.MULTILINE)
    return m.group(1) if m else text


def _load_search_parameters() -> list[dict[str, Any]]:
    bundle = json.loads(resources.files(_DATA).joinpath("search-parameters.json").read_text())
    out = [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
    for item in sorted(resources.files(_JPCORE).iterdir(), key=lambda p: p.name):
        if item.name.endswith(".json"):
            sp = json.loads(item.read_text(encoding="utf-8"))
            if sp.get("resourceType") == "SearchParameter":
                out.append(sp)
    return out


@dataclass(frozen=True)
class _Registry:
    by_type: dict[str, dict[str, SearchParamDef]]
    by_url: dict[str, list[SearchParamDef]]


@cache
def _registry() -> _Registry:
    raw = _load_search_parameters()
    by_type: dict[str, dict[str, SearchParamDef]] = {}
    by_url: dict[str, list[SearchParamDef]] = {}
    for sp in raw:
        for d in _defs_from(sp):
            by_type.setdefault(d.res_type, {})[d.code] = d
            by_url.setdefault(d.url, []).append(d)
    return _Registry(by_type=by_type, by_url=by_url)


@cache
def params_for(res_type: str) -> dict[str, SearchParamDef]:
    """Every parameter searchable on ``res_type``, the common Resource-level ones included.

    The returned dict is shared; do not mutate it.

    >>> sorted(c for c in params_for("Patient") if c.startswith("_"))[:4]
    ['_content', '_id', '_lastUpdated', '_profile']
    """
    reg = _registry()
    out: dict[str, SearchParamDef] = dict(reg.by_type.get("Resource", {}))
    if res_type not in _NOT_DOMAIN:
        out.update(reg.by_type.get("DomainResource", {}))
    out.update(reg.by_type.get(res_type, {}))
    return out


def get_param(res_type: str, code: str) -> SearchParamDef | None:
    """The definition of ``code`` on ``res_type``, or None when there is none."""
    return params_for(res_type).get(code)


def param_by_url(url: str, res_type: str | None = None) -> SearchParamDef | None:
    """The definition with canonical ``url`` (composite components name them this way).

    A definition shared by several types (``clinical-code``) has one entry per type:
    pass ``res_type`` to pick it; without it, the first base listed is returned.
    """
    defs = _registry().by_url.get(url)
    if not defs:
        return None
    if res_type is not None:
        for d in defs:
            if d.res_type == res_type:
                return d
    return defs[0]


def resource_types() -> frozenset[str]:
    """Every resource type that has at least one definition of its own."""
    return frozenset(_registry().by_type) - {"Resource", "DomainResource"}


__all__ = [
    "SearchParamDef",
    "get_param",
    "param_by_url",
    "params_for",
    "resource_types",
    "split_union",
]
