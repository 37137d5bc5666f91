"""Conditional references in a group definition: name clinics and doctors by identifier.

People setting up a group know their 医療機関コード and staff numbers, not server ids, so a
definition may say ``Organization?identifier=SYSTEM|VALUE`` wherever it names a clinic or a
doctor. They are resolved, once, when the group is created or its plan changed; exactly
one match is required (as for FHIR conditional references in a transaction).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from renkei.roster.errors import UnknownReference

#: ``"Organization?identifier=..."`` -> the ids of the matching resources
Search = Callable[[str, list[tuple[str, str]]], list[str]]


def _paths(raw: dict[str, Any]) -> list[tuple[Any, Any, str]]:
    """(container, key, path) of every reference slot in a raw definition."""
    out: list[tuple[Any, Any, str]] = []
    for i, c in enumerate(raw.get("clinics") or []):
        if isinstance(c, dict):
            out.append((c, "id", f"clinics[{i}].id"))
    for i, d in enumerate(raw.get("doctors") or []):
        if isinstance(d, dict):
            out.append((d, "id", f"doctors[{i}].id"))
        elif isinstance(d, str):
            out.append((raw["doctors"], i, f"doctors[{i}]"))
    if "coordinator" in raw:
        out.append((raw, "coordinator", "coordinator"))
    rotation = raw.get("rotation")
    if isinstance(rotation, dict):
        for name, layer in rotation.items():
            if not isinstance(layer, dict):
                continue
            for i, _ in enumerate(layer.get("doctors") or []):
                out.append((layer["doctors"], i, f"rotation.{name}.doctors[{i}]"))
            if layer.get("start_with"):
                out.append((layer, "start_with", f"rotation.{name}.start_with"))
    for i, c in enumerate(raw.get("closures") or []):
        if isinstance(c, dict):
            for j, _ in enumerate(c.get("clinics") or []):
                out.append((c["clinics"], j, f"closures[{i}].clinics[{j}]"))
    return out


def resolve_references(raw: Any, search: Search) -> Any:
    """A copy of ``raw`` with every ``Type?query`` reference replaced by ``Type/id``.

    >>> found = {"Organization": ["o-1"]}
    >>> resolve_references({"coordinator": "Organization?identifier=x|1"},
    ...                    lambda t, q: found[t])
    {'coordinator': 'Organization/o-1'}
    """
    if not isinstance(raw, dict):
        return raw
    out = copy.deepcopy(raw)
    seen: dict[str, str] = {}
    for container, key, path in _paths(out):
        value = container[key]
        if not isinstance(value, str) or "?" not in value:
            continue
        if value not in seen:
            res_type, query = value.split("?", 1)
            if res_type not in ("Organization", "PractitionerRole"):
                raise UnknownReference(f"{value!r}: only Organization/PractitionerRole", path)
            ids = search(res_type, parse_qsl(query))
            if len(ids) != 1:
                raise UnknownReference(
                    f"{value!r} matches {len(ids)} resources; exactly one is needed", path
                )
            seen[value] = f"{res_type}/{ids[0]}"
        container[key] = seen[value]
    return out


__all__ = ["Search", "resolve_references"]
