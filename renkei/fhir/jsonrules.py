"""FHIR JSON rules that the ``fhir.resources`` models do not enforce.

The pydantic models validate in lax mode: ``"active": "yes"`` becomes ``True`` and
``"valueDecimal": "36.5"`` a number, while the JSON stored and served keeps the string. They
also accept ``null`` values, empty arrays and objects, contained resources without a
``resourceType`` and any string as a narrative. https://hl7.org/fhir/R4/json.html forbids all
of these, and PostgreSQL cannot store a NUL character in JSONB, so this module checks them
in one walk over the JSON, guided by the models' field types, before the models run.

>>> [i.diagnostics for i in check_json({"resourceType": "Patient", "active": "yes"})]
['Patient.active: expected a boolean (JSON true or false), got a string']
"""

from __future__ import annotations

import decimal
import types
import typing
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from renkei.fhir.outcome import Issue

#: Objects nested deeper than this are refused (real resources stay well below 30).
MAX_DEPTH = 64
#: Checks stop after this many problems; the first ones are what a client needs.
MAX_ISSUES = 50

_BOOL, _INT, _DECIMAL, _STRING, _COMPLEX, _RESOURCE, _ANY = range(7)
_KIND_NAMES = {
    _BOOL: "a boolean (JSON true or false)",
    _INT: "an integer (a JSON number)",
    _DECIMAL: "a decimal (a JSON number)",
    _STRING: "a JSON string",
}
_JSON_NAMES = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
_JSON_NAMES |= {dict: "an object", list: "an array"}


class _Field(typing.NamedTuple):
    kind: int
    is_list: bool
    model: Any  # the pydantic model class for _COMPLEX, else None


def check_json(body: dict[str, Any]) -> list[Issue]:
    """Problems of ``body`` (a dict with a known, supported ``resourceType``), if any."""
    res_type = body["resourceType"]
    walker = _Walker()
    walker.resource(body, get_fhir_model_class(res_type), res_type, 1, contained=False)
    return walker.issues


class _Walker:
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def problem(self, path: str, message: str, code: str = "value") -> None:
        if len(self.issues) < MAX_ISSUES:
            self.issues.append(Issue("error", code, f"{path}: {message}", (path,)))

    def resource(self, node: Any, model: Any, path: str, depth: int, *, contained: bool) -> None:
        if contained and isinstance(node, dict) and isinstance(node.get("contained"), list):
            self.problem(f"{path}.contained", "a contained resource may not contain others")
        self.element(node, model, path, depth)

    def element(self, node: dict[str, Any], model: Any, path: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            self.problem(path, f"nested more than {MAX_DEPTH} levels deep", "too-costly")
            return
        if not node:
            self.problem(path, "an empty object is not allowed in FHIR JSON")
            return
        fields = _fields(model)
        for key, value in node.items():
            if len(self.issues) >= MAX_ISSUES:
                return
            if key == "resourceType":
                continue
            where = f"{path}.{key}"
            spec = fields.get(key)
            if value is None:
                self.problem(where, "null is not allowed in FHIR JSON; leave the element out")
                continue
            if spec is None:
                continue  # unknown elements are reported by the model
            if key == "div" and isinstance(value, str) and not _looks_like_div(value):
                self.problem(where, "the narrative must be XHTML in a <div> element")
            if isinstance(value, list):
                if not value:
                    self.problem(where, "an empty array is not allowed in FHIR JSON")
                    continue
                if not spec.is_list:
                    continue  # the model reports a list where one value belongs
                primitive = spec.kind in _KIND_NAMES or key.startswith("_")
                for i, item in enumerate(value):
                    if item is None:
                        # null only keeps primitive arrays and their _element twin aligned
                        if not primitive:
                            self.problem(f"{where}[{i}]", "null is not allowed here")
                        continue
                    self.value(item, spec, f"{where}[{i}]", depth)
            else:
                self.value(value, spec, where, depth)

    def value(self, value: Any, spec: _Field, path: str, depth: int) -> None:
        kind = spec.kind
        if kind == _COMPLEX:
            if isinstance(value, dict):
                self.element(value, spec.model, path, depth + 1)
            return  # other JSON types are reported by the model
        if kind == _RESOURCE:
            self._contained(value, path, depth)
            return
        if kind == _ANY:
            return
        if not _json_type_ok(kind, value):
            found = _JSON_NAMES.get(type(value), "something else")
            if kind == _INT and isinstance(value, float):
                found = "a number with a fraction or out of range"
            self.problem(path, f"expected {_KIND_NAMES[kind]}, got {found}")
            return
        if kind == _STRING and "\x00" in value:
            self.problem(path, "a string may not contain the NUL character")

    def _contained(self, value: Any, path: str, depth: int) -> None:
        if not isinstance(value, dict):
            return  # reported by the model
        res_type = value.get("resourceType")
        if not isinstance(res_type, str) or not res_type:
            self.problem(path, "a resource needs a resourceType", "structure")
            return
        try:
            model = get_fhir_model_class(res_type)
        except (KeyError, ValueError, AttributeError, ImportError):
            self.problem(f"{path}.resourceType", f"unknown resource type {res_type!r}", "structure")
            return
        self.resource(value, model, path, depth + 1, contained=path.endswith("]"))


def _json_type_ok(kind: int, value: Any) -> bool:
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _DECIMAL:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _looks_like_div(text: str) -> bool:
    stripped = text.lstrip()
    return stripped.startswith("<div") and stripped.rstrip().endswith("</div>")


@cache
def _fields(model: Any) -> dict[str, _Field]:
    """JSON name -> expected kind, for one model class."""
    out: dict[str, _Field] = {}
    for name, info in model.model_fields.items():
        alias = info.alias or name
        if alias == "fhir_comments":
            continue
        out[alias] = _classify(info.annotation)
    return out


def _classify(annotation: Any) -> _Field:
    is_list = False
    ann = _strip_optional(annotation)
    if typing.get_origin(ann) in (list, typing.List):  # noqa: UP006
        is_list = True
        ann = _strip_optional(typing.get_args(ann)[0])
    if typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    if isinstance(ann, type):
        if ann is bool:
            return _Field(_BOOL, is_list, None)
        if ann is int:
            return _Field(_INT, is_list, None)
        if ann is decimal.Decimal:
            return _Field(_DECIMAL, is_list, None)
        klass = getattr(ann, "get_model_klass", None)
        if klass is not None:
            model = klass()
            if model.__name__ == "Resource":
                return _Field(_RESOURCE, is_list, None)
            return _Field(_COMPLEX, is_list, model)
        return _Field(_STRING, is_list, None)
    return _Field(_ANY, is_list, None)


def _strip_optional(ann: Any) -> Any:
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return ann


__all__ = ["MAX_DEPTH", "check_json"]
