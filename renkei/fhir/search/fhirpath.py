"""A small, fast FHIRPath evaluator for search-parameter expressions, with a fallback.

Indexing evaluates ~30 expressions per write; ``fhirpathpy`` takes ~100-200 µs for each,
which would cap creates at a few hundred a second on one core. Search-parameter
expressions use a tiny part of the language: member paths, choice types, ``where()``,
``as``/``ofType``, ``extension(url)``, ``resolve() is T``, unions, ``=``/``!=``, ``and``.
:func:`compile_path` compiles those into plain closures over the resource dict; any other
shape is handed to ``fhirpathpy`` (compiled once with the R4 model).

An evaluation returns a list of :class:`Item` ``(value, type)`` pairs. ``type`` is the FHIR
type when the path told us (a choice suffix such as ``valueQuantity`` -> ``Quantity``, or a
``resolve()`` target), else None; the extractor then reads the value's shape.

    >>> f = compile_path("Observation.value.as(Quantity) | Observation.code")
    >>> obs = {"resourceType": "Observation", "code": {"text": "BP"},
    ...        "valueQuantity": {"value": 120}}
    >>> [(i.value, i.type) for i in f(obs)]
    [({'value': 120}, 'Quantity'), ({'text': 'BP'}, None)]
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple

from renkei.fhir.search.choices import choice_suffixes

log = logging.getLogger(__name__)


class Item(NamedTuple):
    value: Any
    #: FHIR type name when known (primitive names start lower-case: dateTime, string...)
    type: str | None


Focus = list[Item]
Evaluator = Callable[[dict[str, Any]], list[Item]]
_Node = Callable[[Focus, Focus], Focus]  # (focus, $this-root) -> result


class UnsupportedExpression(Exception):
    """The fast evaluator does not handle this shape; the fallback will."""


_PRIMITIVE_TYPES = frozenset(
    [
        "base64Binary",
        "boolean",
        "canonical",
        "code",
        "date",
        "dateTime",
        "decimal",
        "id",
        "instant",
        "integer",
        "markdown",
        "oid",
        "positiveInt",
        "string",
        "time",
        "unsignedInt",
        "uri",
        "url",
        "uuid",
        "xhtml",
    ]
)
_STRINGY = _PRIMITIVE_TYPES - {"boolean", "decimal", "integer", "positiveInt", "unsignedInt"}
_INTEGERS = frozenset({"integer", "positiveInt", "unsignedInt"})


def _type_name(suffix: str) -> str:
    """``DateTime`` -> ``dateTime``; ``Quantity`` stays."""
    lowered = suffix[0].lower() + suffix[1:]
    return lowered if lowered in _PRIMITIVE_TYPES else suffix


@lru_cache(maxsize=1024)
def choice_keys(name: str) -> tuple[tuple[str, str], ...]:
    """``(json key, type)`` pairs a choice element ``name[x]`` may appear under."""
    return tuple((name + s, _type_name(s)) for s in sorted(choice_suffixes().get(name, ())))


# --- tokens ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)|(?P<id>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>!=|[.()\[\]|=,]))"
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise UnsupportedExpression(f"unexpected input at {text[pos:]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


# --- evaluation helpers ---------------------------------------------------------------


def _children(focus: Focus, name: str) -> Focus:
    out: Focus = []
    for value, _t in focus:
        if not isinstance(value, dict):
            continue
        child = value.get(name)
        if child is not None:
            if isinstance(child, list):
                out.extend(Item(c, None) for c in child if c is not None)
            else:
                out.append(Item(child, None))
            continue
        # a choice element: valueQuantity, onsetDateTime, deceasedBoolean...
        for key, type_name in choice_keys(name):
            child = value.get(key)
            if child is not None:
                out.append(Item(child, type_name))
    return out


def _is_type(item: Item, type_name: str) -> bool:
    if item.type is not None:
        return item.type.lower() == type_name.lower()
    value = item.value
    if type_name in _STRINGY:
        return isinstance(value, str)
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name in _INTEGERS:
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "decimal":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, dict)


def reference_type(ref: Any) -> str | None:
    """The resource type a Reference points to, when its text or ``type`` says so.

    >>> reference_type({"reference": "https://x.example/fhir/Patient/1/_history/2"})
    'Patient'
    >>> reference_type({"reference": "urn:uuid:1234"}) is None
    True
    """
    if not isinstance(ref, dict):
        return None
    text = ref.get("reference")
    if isinstance(text, str) and not text.startswith(("#", "urn:")):
        parts = text.split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalpha():
            return parts[-2]
    declared = ref.get("type")
    if isinstance(declared, str) and declared[:1].isupper() and "/" not in declared:
        return declared
    return None


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _truthy(result: Focus) -> bool:
    return len(result) == 1 and result[0].value is True


# --- parser ---------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the subset; each rule returns a closure ``(focus, this)``."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise UnsupportedExpression(f"expected {value!r}, got {tok!r}")
        self.pos += 1
        return tok

    def accept(self, value: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[1] == value and tok[0] in ("op", "id"):
            self.pos += 1
            return True
        return False

    def parse(self) -> _Node:
        node = self.expr()
        if self.peek() is not None:
            raise UnsupportedExpression(f"trailing input {self.peek()!r}")
        return node

    # expr := equality (('and'|'or') equality)*
    def expr(self) -> _Node:
        node = self.equality()
        while True:
            if self.accept("and"):
                node = _and(node, self.equality())
            elif self.accept("or"):
                node = _or(node, self.equality())
            else:
                return node

    # equality := union (('=' | '!=') union)?
    def equality(self) -> _Node:
        node = self.union()
        if self.accept("="):
            return _eq(node, self.union(), negate=False)
        if self.accept("!="):
            return _eq(node, self.union(), negate=True)
        return node

    # union := typed ('|' typed)*
    def union(self) -> _Node:
        nodes = [self.typed()]
        while self.accept("|"):
            nodes.append(self.typed())
        return nodes[0] if len(nodes) == 1 else _union(nodes)

    # typed := postfix (('as'|'is') TypeName)?
    def typed(self) -> _Node:
        node = self.postfix(first=True)
        if self.accept("as"):
            return _as(node, self.type_name())
        if self.accept("is"):
            return _is(node, self.type_name())
        return node

    def type_name(self) -> str:
        kind, value = self.take()
        if kind != "id":
            raise UnsupportedExpression(f"type name expected, got {value!r}")
        return value

    # postfix := term ('.' invocation | '[' n ']')*
    def postfix(self, *, first: bool) -> _Node:
        node = self.term(first=first)
        while True:
            if self.accept("."):
                node = _then(node, self.invocation(first=False))
            elif self.accept("["):
                kind, value = self.take()
                if kind != "num" or "." in value:
                    raise UnsupportedExpression("only integer indexes")
                self.take("]")
                node = _then(node, _index(int(value)))
            else:
                return node

    def term(self, *, first: bool) -> _Node:
        tok = self.peek()
        if tok is None:
            raise UnsupportedExpression("unexpected end")
        kind, value = tok
        if kind == "str":
            self.pos += 1
            return _literal(_unquote(value), "string")
        if kind == "num":
            self.pos += 1
            return _literal(float(value) if "." in value else int(value), None)
        if value in ("true", "false") and kind == "id":
            self.pos += 1
            return _literal(value == "true", "boolean")
        if value == "(":
            self.pos += 1
            inner = self.expr()
            self.take(")")
            return inner
        if kind == "id":
            return self.invocation(first=first)
        raise UnsupportedExpression(f"unexpected {value!r}")

    def invocation(self, *, first: bool) -> _Node:
        kind, name = self.take()
        if kind != "id":
            raise UnsupportedExpression(f"name expected, got {name!r}")
        nxt = self.peek()
        if nxt is None or nxt[1] != "(":
            if first and name[:1].isupper():
                return _type_filter(name)
            return _member(name)
        self.take("(")
        return self.function(name)

    def function(self, name: str) -> _Node:
        if name == "where":
            cond = self.expr()
            self.take(")")
            return _where(cond)
        if name in ("as", "ofType"):
            type_name = self.type_name()
            self.take(")")
            return _filter_type(type_name)
        if name == "extension":
            kind, value = self.take()
            if kind != "str":
                raise UnsupportedExpression("extension() takes a string literal")
            self.take(")")
            return _extension(_unquote(value))
        if name in ("exists", "empty", "first", "resolve", "not"):
            self.take(")")
            return _SIMPLE_FUNCTIONS[name]
        raise UnsupportedExpression(f"function {name}() not handled")


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]), body)


# --- node builders ----------------------------------------------------------------------


def _literal(value: Any, type_name: str | None) -> _Node:
    result = [Item(value, type_name)]
    return lambda focus, this: result


def _type_filter(name: str) -> _Node:
    """A leading ``Patient``/``Resource`` selects the root when it is of that type."""
    generic = name in ("Resource", "DomainResource")

    def run(focus: Focus, this: Focus) -> Focus:
        return [i for i in focus if generic or i.type == name]

    return run


def _member(name: str) -> _Node:
    return lambda focus, this: _children(focus, name)


def _then(first: _Node, second: _Node) -> _Node:
    return lambda focus, this: second(first(focus, this), this)


def _index(n: int) -> _Node:
    return lambda focus, this: focus[n : n + 1]


def _union(nodes: list[_Node]) -> _Node:
    def run(focus: Focus, this: Focus) -> Focus:
        out: Focus = []
        for node in nodes:
            for item in node(focus, this):
                if not any(item.value is o.value or item.value == o.value for o in out):
                    out.append(item)
        return out

    return run


def _as(node: _Node, type_name: str) -> _Node:
    def run(focus: Focus, this: Focus) -> Focus:
        return [i for i in node(focus, this) if _is_type(i, type_name)]

    return run


def _filter_type(type_name: str) -> _Node:
    return lambda focus, this: [i for i in focus if _is_type(i, type_name)]


def _is(node: _Node, type_name: str) -> _Node:
    def run(focus: Focus, this: Focus) -> Focus:
        items = node(focus, this)
        if len(items) != 1:
            return []
        return [Item(_is_type(items[0], type_name), "boolean")]

    return run


def _where(cond: _Node) -> _Node:
    def run(focus: Focus, this: Focus) -> Focus:
        return [i for i in focus if _truthy(cond([i], [i]))]

    return run


def _extension(url: str) -> _Node:
    def run(focus: Focus, this: Focus) -> Focus:
        out: Focus = []
        for value, _t in focus:
            if isinstance(value, dict):
                for ext in value.get("extension") or ():
                    if isinstance(ext, dict) and ext.get("url") == url:
                        out.append(Item(ext, "Extension"))
        return out

    return run


def _resolve(focus: Focus, this: Focus) -> Focus:
    """Stands in for the target: the Reference itself, typed by what it points to."""
    out: Focus = []
    for item in focus:
        target = reference_type(item.value)
        if target is not None:
            out.append(Item(item.value, target))
    return out


def _not(focus: Focus, this: Focus) -> Focus:
    if len(focus) == 1 and isinstance(focus[0].value, bool):
        return [Item(not focus[0].value, "boolean")]
    return []


_SIMPLE_FUNCTIONS: dict[str, _Node] = {
    "exists": lambda focus, this: [Item(bool(focus), "boolean")],
    "empty": lambda focus, this: [Item(not focus, "boolean")],
    "first": lambda focus, this: focus[:1],
    "resolve": _resolve,
    "not": _not,
}


def _eq(left: _Node, right: _Node, *, negate: bool) -> _Node:
    def run(focus: Focus, this: Focus) -> Focus:
        a, b = left(focus, this), right(focus, this)
        if not a or not b:
            return []
        same = len(a) == len(b) and all(_equal(x.value, y.value) for x, y in zip(a, b, strict=True))
        return [Item(same != negate, "boolean")]

    return run


def _bool_of(result: Focus) -> bool | None:
    if len(result) == 1 and isinstance(result[0].value, bool):
        return bool(result[0].value)
    return None if not result else True


def _and(left: _Node, right: _Node) -> _Node:
    def run(focus: Focus, this: Focus) -> Focus:
        a = _bool_of(left(focus, this))
        if a is False:
            return [Item(False, "boolean")]
        b = _bool_of(right(focus, this))
        if b is False:
            return [Item(False, "boolean")]
        if a is None or b is None:
            return []
        return [Item(True, "boolean")]

    return run


def _or(left: _Node, right: _Node) -> _Node:
    def run(focus: Focus, this: Focus) -> Focus:
        a = _bool_of(left(focus, this))
        if a is True:
            return [Item(True, "boolean")]
        b = _bool_of(right(focus, this))
        if b is True:
            return [Item(True, "boolean")]
        if a is None or b is None:
            return []
        return [Item(False, "boolean")]

    return run


# --- public entry points ----------------------------------------------------------------


def compile_fast(expression: str) -> Evaluator:
    """Compile with the fast evaluator only; raises :class:`UnsupportedExpression`."""
    node = _Parser(expression).parse()

    def evaluate(resource: dict[str, Any]) -> list[Item]:
        root = [Item(resource, resource.get("resourceType"))]
        return node(root, root)

    return evaluate


def compile_fallback(expression: str) -> Evaluator:
    """Compile with ``fhirpathpy`` and the R4 model (slow, but the whole language)."""
    from fhirpathpy import compile as fp_compile
    from fhirpathpy.models import models

    compiled = fp_compile(expression, models["r4"])

    def evaluate(resource: dict[str, Any]) -> list[Item]:
        return [Item(v, None) for v in compiled(resource, {}) if v is not None]

    return evaluate


@lru_cache(maxsize=4096)
def compile_path(expression: str) -> Evaluator:
    """The fast evaluator when it handles ``expression``, else the ``fhirpathpy`` one."""
    try:
        return compile_fast(expression)
    except UnsupportedExpression as exc:
        log.debug("FHIRPath %r falls back to fhirpathpy: %s", expression, exc)
        return compile_fallback(expression)


__all__ = [
    "Item",
    "UnsupportedExpression",
    "choice_keys",
    "compile_fallback",
    "compile_fast",
    "compile_path",
    "reference_type",
]
