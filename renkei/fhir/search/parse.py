"""Search query strings to a :class:`SearchRequest`: pure, no database.

``parse_search("Patient", [("name", "やまだ"), ("birthdate", "ge1940")])`` checks every
parameter against the search-parameter definitions and returns frozen filters with typed
values, so the SQL layer never sees an unchecked string. Rules follow
https://hl7.org/fhir/R4/search.html: repeated parameters are AND, commas are OR, empty
values are ignored, unknown parameters are errors unless the client asked for
``Prefer: handling=lenient`` (then they are ignored and listed in ``ignored``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from renkei.fhir.outcome import BadRequest
from renkei.fhir.search.definitions import SearchParamDef, get_param, param_by_url
from renkei.fhir.search.values import (
    parse_date,
    parse_number,
    parse_of_type,
    parse_quantity,
    parse_reference,
    parse_token,
    split_raw,
    unescape,
)
from renkei.fhir.validate import supported_types

#: how many reference hops a chained parameter may take (subject.organization.name = 2)
MAX_CHAIN = 3
#: how deep ``_has`` may nest
MAX_HAS = 2

SUMMARY_MODES = ("true", "false", "text", "data", "count")
TOTAL_MODES = ("none", "estimate", "accurate")

#: Parameters that only shape the result, and those that are transport-level.
_RESULT = frozenset(
    {
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_elements",
        "_total",
        "_cursor",
        "_contained",
        "_containedType",
    }
)
_IGNORED_ALWAYS = frozenset({"_format", "_pretty"})

#: Supported modifiers per type (a subset of what definitions allow: no terminology server).
_MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"missing", "exact", "contains"}),
    "token": frozenset({"missing", "not", "text", "of-type"}),
    "reference": frozenset({"missing", "identifier"}),
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "uri": frozenset({"missing", "above", "below"}),
    "composite": frozenset({"missing"}),
}
#: ``_id`` and ``_lastUpdated`` are columns of fhir_resource, not index rows.
COLUMN_PARAMS = frozenset({"_id", "_lastUpdated"})
#: Common parameters that make no sense to search here (no full-text index, no lists).
_UNSUPPORTED = frozenset({"_text", "_content", "_list", "_query", "_filter"})


@dataclass(frozen=True)
class ParamFilter:
    """``code[:modifier]=v1,v2``: matches when any value matches (OR).

    ``values`` hold typed values (see values.py): str for string/uri and token ``:text``,
    TokenValue, ReferenceValue, DateValue, NumberValue, QuantityValue, or a tuple of
    single-valued ParamFilters (one per component) for composites.
    """

    res_type: str
    code: str
    type: str
    modifier: str | None
    values: tuple[Any, ...]
    #: True/False for ``:missing``; None otherwise
    missing: bool | None = None


@dataclass(frozen=True)
class ChainFilter:
    """``ref[:Type].rest=v``: the reference leads to a resource matching ``rest``.

    ``branches`` has one ``(target type, filter on that type)`` per candidate target.
    """

    res_type: str
    code: str
    branches: tuple[tuple[str, Filter], ...]


@dataclass(frozen=True)
class HasFilter:
    """``_has:Source:ref:rest=v`` (reverse chaining): some ``Source`` whose ``ref`` points
    here matches ``rest``."""

    res_type: str
    source_type: str
    ref_code: str
    inner: Filter


Filter = ParamFilter | ChainFilter | HasFilter


@dataclass(frozen=True)
class SortKey:
    code: str
    #: the parameter type, or "_id"/"_lastUpdated" for the resource columns
    type: str
    descending: bool = False


@dataclass(frozen=True)
class Include:
    """``_include=Source:param[:Target]`` / ``_revinclude``; ``param="*"`` means every
    reference parameter of Source."""

    source_type: str
    code: str
    target_type: str | None = None
    iterate: bool = False


@dataclass(frozen=True)
class SearchRequest:
    res_type: str | None
    #: the types searched: ``(res_type,)``, or ``_type``'s list at system level (empty = all)
    types: tuple[str, ...]
    filters: tuple[Filter, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int | None = None
    cursor: str | None = None
    includes: tuple[Include, ...] = ()
    revincludes: tuple[Include, ...] = ()
    summary: str | None = None
    elements: tuple[str, ...] | None = None
    total: str | None = None
    #: parameters left out under lenient handling, as given
    ignored: tuple[str, ...] = ()
    #: the parameters that were applied, for the self link (search.html#selflink)
    used: tuple[tuple[str, str], ...] = field(default_factory=tuple)


@dataclass
class _Ctx:
    zone: ZoneInfo
    lenient: bool
    ignored: list[str]


def parse_search(
    res_type: str | None,
    params: Sequence[tuple[str, str]],
    *,
    lenient: bool = False,
    zone: ZoneInfo | None = None,
    extra_result_params: frozenset[str] = frozenset(),
) -> SearchRequest:
    """Parse a search's parameters for ``res_type`` (None: a system-level search).

    >>> req = parse_search("Patient", [("birthdate", "ge1940,1950"), ("_count", "5")])
    >>> [v.prefix for v in req.filters[0].values], req.count
    (['ge', 'eq'], 5)
    """
    ctx = _Ctx(zone or ZoneInfo("Asia/Tokyo"), lenient, [])
    types = _types(res_type, params, ctx)
    filters: list[Filter] = []
    used: list[tuple[str, str]] = []
    result: dict[str, list[str]] = {}
    for name, raw in params:
        if "\x00" in name or "\x00" in raw:
            raise BadRequest("search parameters may not contain NUL characters")
        if name in _IGNORED_ALWAYS or name in extra_result_params:
            continue
        if name == "_type":
            used.append((name, raw))
            continue
        if name in _RESULT or name.split(":")[0] in ("_include", "_revinclude"):
            result.setdefault(name, []).append(raw)
            continue
        if raw == "":
            continue  # search.html: a parameter without a value is ignored
        try:
            parsed = _filter_for_types(types, res_type, name, raw, ctx, depth=0)
        except BadRequest:
            if not lenient:
                raise
            ctx.ignored.append(name)
            continue
        filters.append(parsed)
        used.append((name, raw))
    req = SearchRequest(
        res_type=res_type,
        types=types,
        filters=tuple(filters),
        ignored=tuple(ctx.ignored),
    )
    return _with_result_params(req, result, types, ctx, used)


def _types(res_type: str | None, params: Sequence[tuple[str, str]], ctx: _Ctx) -> tuple[str, ...]:
    if res_type is not None:
        return (res_type,)
    known = supported_types()
    out: list[str] = []
    for name, raw in params:
        if name != "_type":
            continue
        for t in raw.split(","):
            t = t.strip()
            if not t:
                continue
            if t not in known:
                raise BadRequest(f"_type: {t!r} is not a resource type this server knows")
            if t not in out:
                out.append(t)
    return tuple(out)


def _filter_for_types(
    types: tuple[str, ...], res_type: str | None, name: str, raw: str, ctx: _Ctx, depth: int
) -> Filter:
    if res_type is not None:
        return _parse_filter(res_type, name, raw, ctx, depth)
    # System level: the parameter must mean the same on every type searched; common
    # parameters (_id, _lastUpdated, _tag...) are defined on Resource.
    base = name.split(":")[0].split(".")[0]
    if not types or base in COLUMN_PARAMS:
        return _parse_filter("Resource", name, raw, ctx, depth)
    parsed = [_parse_filter(t, name, raw, ctx, depth) for t in types]
    first = parsed[0]
    if isinstance(first, ParamFilter) and all(
        isinstance(p, ParamFilter) and p.type == first.type for p in parsed
    ):
        return first
    if len(parsed) == 1:
        return first
    raise BadRequest(f"{name!r} cannot be searched across the types {', '.join(types)} at once")


def _definition(res_type: str, code: str) -> SearchParamDef:
    if code in _UNSUPPORTED:
        raise BadRequest(f"search parameter {code!r} is not supported by this server")
    pdef = get_param(res_type, code)
    if pdef is None or pdef.type == "special":
        raise BadRequest(f"unknown search parameter {code!r} for {res_type}")
    return pdef


def _parse_filter(res_type: str, name: str, raw: str, ctx: _Ctx, depth: int) -> Filter:
    if name.startswith("_has:"):
        return _parse_has(res_type, name, raw, ctx, depth)
    head, dot, tail = name.partition(".")
    code, colon, modifier = head.partition(":")
    if not colon:
        modifier = ""
    pdef = _definition(res_type, code)
    if dot:
        return _parse_chain(res_type, pdef, modifier or None, tail, raw, ctx, depth)
    return _parse_param(res_type, pdef, modifier or None, raw, ctx)


def _parse_chain(
    res_type: str,
    pdef: SearchParamDef,
    type_modifier: str | None,
    rest: str,
    raw: str,
    ctx: _Ctx,
    depth: int,
) -> ChainFilter:
    if pdef.type != "reference":
        raise BadRequest(f"{pdef.code!r} is a {pdef.type} parameter and cannot be chained")
    if depth + 1 > MAX_CHAIN:
        raise BadRequest(f"chains may be at most {MAX_CHAIN} references long")
    if type_modifier is not None:
        if type_modifier not in supported_types() or (
            pdef.target and type_modifier not in pdef.target
        ):
            raise BadRequest(f"{pdef.code}:{type_modifier}: not a possible target type")
        candidates: tuple[str, ...] = (type_modifier,)
    else:
        candidates = tuple(t for t in pdef.target if t in supported_types())
    inner_code = rest.partition(".")[0].partition(":")[0]
    branches: list[tuple[str, Filter]] = []
    for target in candidates:
        if not inner_code.startswith("_has") and get_param(target, inner_code) is None:
            continue
        branches.append((target, _parse_filter(target, rest, raw, ctx, depth + 1)))
    if not branches:
        raise BadRequest(
            f"{pdef.code}.{rest}: no target type of {pdef.code!r} has a parameter {inner_code!r}"
        )
    return ChainFilter(res_type, pdef.code, tuple(branches))


def _parse_has(res_type: str, name: str, raw: str, ctx: _Ctx, depth: int) -> HasFilter:
    parts = name.split(":", 3)
    if len(parts) != 4 or not all(parts):
        raise BadRequest(f"{name!r}: _has is written _has:Type:reference:parameter")
    _, source, ref_code, rest = parts
    if depth + 1 > MAX_HAS + MAX_CHAIN:
        raise BadRequest("_has is nested too deeply")
    if source not in supported_types():
        raise BadRequest(f"{name!r}: {source!r} is not a resource type")
    ref = _definition(source, ref_code)
    if ref.type != "reference":
        raise BadRequest(f"{name!r}: {source}.{ref_code} is not a reference parameter")
    if ref.target and res_type not in ref.target and res_type != "Resource":
        raise BadRequest(f"{name!r}: {source}.{ref_code} never points to a {res_type}")
    inner = _parse_filter(source, rest, raw, ctx, depth + 1)
    return HasFilter(res_type, source, ref_code, inner)


def _parse_param(
    res_type: str, pdef: SearchParamDef, modifier: str | None, raw: str, ctx: _Ctx
) -> ParamFilter:
    ptype = pdef.type
    code = pdef.code
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise BadRequest(f"{code}:missing takes true or false, got {raw!r}")
        return ParamFilter(res_type, code, ptype, "missing", (), missing=raw == "true")
    if modifier is not None:
        allowed = _MODIFIERS.get(ptype, frozenset())
        is_type_modifier = ptype == "reference" and modifier in supported_types()
        if code in COLUMN_PARAMS or not (modifier in allowed or is_type_modifier):
            raise BadRequest(f"modifier :{modifier} is not supported on {ptype} parameter {code!r}")
        if is_type_modifier and pdef.target and modifier not in pdef.target:
            raise BadRequest(f"{code}:{modifier}: {modifier} is not a target of {code!r}")
    values = tuple(_value(res_type, pdef, modifier, p, ctx) for p in split_raw(raw, ","))
    return ParamFilter(res_type, code, ptype, modifier, values)


def _value(res_type: str, pdef: SearchParamDef, modifier: str | None, raw: str, ctx: _Ctx) -> Any:
    """One OR-alternative, still escaped, as the typed value its parameter needs."""
    name = pdef.code
    ptype = pdef.type
    if raw == "":
        raise BadRequest(f"{name}: empty value in a comma-separated list")
    if name == "_id":
        return unescape(raw)
    if ptype == "string" or (ptype == "token" and modifier == "text"):
        return unescape(raw)
    if ptype == "token":
        if modifier == "of-type":
            return parse_of_type(raw, name)
        return parse_token(raw)
    if ptype == "reference":
        if modifier == "identifier":
            return parse_token(raw)
        return parse_reference(raw, name, modifier)
    if ptype == "date":
        return parse_date(raw, name, ctx.zone)
    if ptype == "number":
        return parse_number(raw, name)
    if ptype == "quantity":
        return parse_quantity(raw, name)
    if ptype == "uri":
        return unescape(raw)
    if ptype == "composite":
        return _composite_value(res_type, pdef, raw, ctx)
    raise BadRequest(f"{name}: {ptype} parameters are not supported")


def _composite_value(
    res_type: str, pdef: SearchParamDef, raw: str, ctx: _Ctx
) -> tuple[ParamFilter, ...]:
    parts = split_raw(raw, "$")
    if len(parts) != len(pdef.components):
        raise BadRequest(
            f"{pdef.code}: expected {len(pdef.components)} $-separated values, got {raw!r}"
        )
    out: list[ParamFilter] = []
    for (url, _expr), part in zip(pdef.components, parts, strict=True):
        comp = param_by_url(url, res_type)
        if comp is None or comp.type in ("composite", "special"):
            raise BadRequest(f"{pdef.code}: component {url} is not supported")
        out.append(
            ParamFilter(
                res_type, comp.code, comp.type, None, (_value(res_type, comp, None, part, ctx),)
            )
        )
    return tuple(out)


# -- result parameters ---------------------------------------------------------------------


def _with_result_params(
    req: SearchRequest,
    result: dict[str, list[str]],
    types: tuple[str, ...],
    ctx: _Ctx,
    used: list[tuple[str, str]],
) -> SearchRequest:
    changes: dict[str, Any] = {}

    def fail(message: str, name: str) -> None:
        if not ctx.lenient:
            raise BadRequest(message)
        ctx.ignored.append(name)

    def single(name: str) -> str | None:
        values = result.get(name)
        if not values:
            return None
        if len(values) > 1:
            fail(f"{name} may be given once", name)
            return None
        return values[0]

    count = single("_count")
    if count is not None:
        if count.isascii() and count.isdigit():
            changes["count"] = int(count[:9])
            used.append(("_count", count))
        else:
            fail(f"_count must be a non-negative integer, got {count!r}", "_count")
    cursor = single("_cursor")
    if cursor is not None:
        changes["cursor"] = cursor
    summary = single("_summary")
    if summary is not None:
        if summary in SUMMARY_MODES:
            changes["summary"] = None if summary == "false" else summary
            used.append(("_summary", summary))
        else:
            fail(f"_summary must be one of {', '.join(SUMMARY_MODES)}, got {summary!r}", "_summary")
    total = single("_total")
    if total is not None:
        if total in TOTAL_MODES:
            changes["total"] = total
            used.append(("_total", total))
        else:
            fail(f"_total must be one of {', '.join(TOTAL_MODES)}, got {total!r}", "_total")
    elements = single("_elements")
    if elements is not None:
        names = tuple(e.strip() for e in elements.split(",") if e.strip())
        changes["elements"] = names
        used.append(("_elements", elements))
    if "_contained" in result or "_containedType" in result:
        fail("_contained is not supported", "_contained")
    sort = single("_sort")
    if sort is not None:
        try:
            changes["sort"] = _parse_sort(types, sort)
            used.append(("_sort", sort))
        except BadRequest as exc:
            fail(exc.diagnostics, "_sort")
    includes: list[Include] = []
    revincludes: list[Include] = []
    for name, values in result.items():
        kind, _, mod = name.partition(":")
        if kind not in ("_include", "_revinclude"):
            continue
        if mod not in ("", "iterate", "recurse"):
            fail(f"{name}: unknown modifier :{mod}", name)
            continue
        for raw in values:
            try:
                inc = _parse_include(raw, iterate=bool(mod), rev=kind == "_revinclude", types=types)
            except BadRequest as exc:
                fail(exc.diagnostics, name)
                continue
            (revincludes if kind == "_revinclude" else includes).append(inc)
            used.append((name, raw))
    changes["includes"] = tuple(includes)
    changes["revincludes"] = tuple(revincludes)
    changes["used"] = tuple(used)
    changes["ignored"] = tuple(ctx.ignored)
    from dataclasses import replace

    return replace(req, **changes)


def _parse_sort(types: tuple[str, ...], raw: str) -> tuple[SortKey, ...]:
    """``_sort=-date,name``: keys in order; ``-`` means descending (search.html#sort)."""
    keys: list[SortKey] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        desc = part.startswith("-")
        code = part.lstrip("-")
        if code in COLUMN_PARAMS:
            keys.append(SortKey(code, code, desc))
            continue
        sort_types = types or ("Resource",)
        kinds = set()
        for t in sort_types:
            pdef = get_param(t, code)
            if pdef is None:
                raise BadRequest(f"_sort: unknown search parameter {code!r} for {t}")
            kinds.add(pdef.type)
        kind = kinds.pop()
        if kinds or kind in ("composite", "special"):
            raise BadRequest(f"_sort: {code!r} cannot be sorted on")
        keys.append(SortKey(code, kind, desc))
    if not keys:
        raise BadRequest("_sort needs at least one parameter")
    return tuple(keys)


def _parse_include(raw: str, *, iterate: bool, rev: bool, types: tuple[str, ...]) -> Include:
    """``Source:param[:Target]`` or ``*`` (every reference of the matched resources)."""
    if raw == "*":
        return Include("*", "*", None, iterate)
    parts = raw.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise BadRequest(f"{raw!r} is not Type:parameter or Type:parameter:TargetType")
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    known = supported_types()
    if source not in known:
        raise BadRequest(f"{raw!r}: {source!r} is not a resource type")
    if target is not None and target not in known:
        raise BadRequest(f"{raw!r}: {target!r} is not a resource type")
    if code != "*":
        pdef = get_param(source, code)
        if pdef is None or pdef.type != "reference":
            raise BadRequest(f"{raw!r}: {source} has no reference parameter {code!r}")
        if target is not None and pdef.target and target not in pdef.target:
            raise BadRequest(f"{raw!r}: {code!r} never points to a {target}")
    if not rev and not iterate and types and source not in types:
        raise BadRequest(f"_include={raw}: the search is not for {source} (use :iterate)")
    return Include(source, code, target, iterate)


__all__ = [
    "COLUMN_PARAMS",
    "ChainFilter",
    "Filter",
    "HasFilter",
    "Include",
    "ParamFilter",
    "SearchRequest",
    "SortKey",
    "parse_search",
]
