"""A parsed search to SQL conditions on ``fhir_resource``, for SQLite and PostgreSQL alike.

Every filter becomes ``fhir_resource.pk IN (SELECT resource_pk FROM idx_<type> WHERE ...)``
(a semi-join both planners drive from the ``(res_type, param, value)`` indexes); ``:not``
and ``:missing=true`` become ``NOT IN``. A chain walks ``idx_reference`` to the target's
``res_id``; ``_has`` walks it backwards. Every subquery over ``fhir_resource`` carries the
access policy's condition for that type, so a hidden resource can neither be returned nor
make another resource match.

Subqueries are built uncorrelated (``correlate(None)``): they may read ``fhir_resource``
themselves, and SQL resolves an unqualified ``fhir_resource`` to the innermost FROM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from renkei.fhir.outcome import BadRequest
from renkei.fhir.search.compartment import compartment_params, compartment_types
from renkei.fhir.search.parse import ChainFilter, Filter, HasFilter, ParamFilter, SortKey
from renkei.fhir.search.text import normalize
from renkei.fhir.search.values import (
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    TokenValue,
)
from renkei.store.models import (
    idx_date,
    idx_number,
    idx_quantity,
    idx_reference,
    idx_string,
    idx_token,
    idx_uri,
    resource,
)

Cond = ColumnElement[bool]
#: (res_type) -> SQL condition on fhir_resource the caller may see, or None for all
PolicyFilter = Callable[[str], Any]


@dataclass
class SqlBuilder:
    """Builds conditions for one request: the policy, the base URL and "now" are fixed."""

    policy_filter: PolicyFilter
    base_url: str
    now: datetime
    #: SQLite compares text bytewise (code point order), so a prefix is also a range
    sqlite: bool = False

    # -- whole request -------------------------------------------------------------------

    def where(self, res_type: str, filters: Sequence[Filter]) -> list[Cond]:
        """Conditions (AND) on ``fhir_resource`` for the filters of one request.

        SQLite materialises every ``pk IN (subquery)`` in full before using it, so
        ``Observation?patient=X&code=Y&date=geZ`` built the 16 000-row sets of code and
        date to keep 4 rows. There, the most selective-looking filter drives (an IN) and
        the others become correlated EXISTS probes on each candidate through the
        ``resource_pk`` indexes. PostgreSQL plans both forms as semi-joins itself.
        """
        if not self.sqlite or len(filters) < 2:
            return [self.filter(res_type, f) for f in filters]
        driver = min(range(len(filters)), key=lambda i: _drive_rank(filters[i]))
        return [
            self.filter(res_type, f) if i == driver else self._probe(f)
            for i, f in enumerate(filters)
        ]

    def drives_by_pk(self, filters: Sequence[Filter]) -> bool:
        """Whether :meth:`where`'s driving filter is a ``pk IN (index rows)`` (not ``_id``,
        ``_has``, ``:missing`` or ``:not``, which need the type's indexes)."""
        if not filters:
            return False
        f = min(filters, key=_drive_rank)
        if isinstance(f, ChainFilter):
            return True
        if isinstance(f, HasFilter) or f.code in ("_id", "_lastUpdated"):
            return False
        return f.missing is None and f.modifier != "not" and f.type != "composite"

    def _probe(self, f: Filter) -> Cond:
        """The filter as ``EXISTS (... WHERE resource_pk = fhir_resource.pk ...)``."""
        if not isinstance(f, ParamFilter) or f.code in ("_id", "_lastUpdated"):
            return self.filter(f.res_type, f)
        if f.missing is not None or f.modifier == "not":
            return self.filter(f.res_type, f)
        if f.type == "composite":
            return sa.or_(*(sa.and_(*(self._probe(p) for p in value)) for value in f.values))
        table, param = _table_for(f)
        stmt = sa.select(sa.literal(1)).where(
            table.c.resource_pk == resource.c.pk,
            table.c.param == param,
            sa.or_(*(self._value(f, table, v) for v in f.values)),
        )
        if f.res_type != "Resource":
            # No index may serve the type test, so SQLite probes by (resource_pk, param,
            # ...) instead of reading every row of the value through (res_type, param,
            # code): with no statistics both looked equally good, and $summary's
            # category=vital-signs probe read every vital sign in the database for each of
            # a patient's observations (24 ms -> 3.3 s).
            stmt = stmt.where(_unindexed(table.c.res_type) == f.res_type)
        return sa.exists(stmt.correlate(resource))

    def visible(self, types: Sequence[str] | None, *, driven: bool = False) -> list[Cond]:
        """Type, not-deleted and policy conditions; ``types=None``/empty means any type.

        ``driven``: a filter finds the rows by ``pk`` (:meth:`drives_by_pk`). On SQLite the
        type test is then written so that no index serves it: with no statistics SQLite
        takes an indexed equality for ~10 rows, and it read every Observation through
        ``(res_type, last_updated)`` to keep one patient's instead of looking up the
        patient's rows by ``pk`` (tests/integration/search/test_sqlite_plans.py).
        """
        conds: list[Cond] = [resource.c.deleted.is_(False)]
        if types:
            free: list[str] = []
            guarded: list[Cond] = []
            for t in types:
                extra = self.policy_filter(t)
                if extra is None:
                    free.append(t)
                else:
                    guarded.append(sa.and_(resource.c.res_type == t, extra))
            if len(types) == 1 and not guarded:
                column = resource.c.res_type
                conds.append((_unindexed(column) if driven and self.sqlite else column) == types[0])
            else:
                parts = guarded + ([resource.c.res_type.in_(free)] if free else [])
                conds.append(sa.or_(*parts))
        return conds

    def compartment(self, comp_type: str, comp_id: str, types: Sequence[str]) -> Cond:
        """Members of ``comp_type/comp_id``'s compartment among ``types`` (empty: all).

        One IN over one UNION, not an OR of INs: both planners make it a semi-join driven
        by the ``(target_id, target_type)`` index instead of scanning ``fhir_resource``.
        Which (type, parameter) pairs link a resource is checked as ``'Type.param'``
        strings on the few rows found, so the statement stays small for 60+ types.
        """
        wanted = tuple(types) if types else tuple(compartment_types(comp_type))
        ref = idx_reference.c
        members: list[sa.Select[Any]] = []
        pairs = _compartment_links(comp_type, wanted)
        if pairs:
            members.append(
                sa.select(ref.resource_pk).where(
                    ref.target_type == comp_type,
                    ref.target_id == comp_id,
                    (ref.res_type + "." + ref.param).in_(pairs),
                )
            )
        if comp_type in wanted:
            # the compartment's owner is in its own compartment (compartmentdefinition.html)
            owner = resource.alias("owner")
            members.append(
                sa.select(owner.c.pk).where(
                    owner.c.res_type == comp_type, owner.c.res_id == comp_id
                )
            )
        if not members:
            return sa.false()
        if len(members) == 1:
            return resource.c.pk.in_(members[0].correlate(None))
        return resource.c.pk.in_(sa.union_all(*members))

    # -- one filter ----------------------------------------------------------------------

    def filter(self, res_type: str, f: Filter) -> Cond:
        if isinstance(f, ChainFilter):
            return self._chain(f)
        if isinstance(f, HasFilter):
            return self._has(f)
        return self._param(f)

    def _chain(self, f: ChainFilter) -> Cond:
        parts: list[Cond] = []
        for target, inner in f.branches:
            targets = self._subselect(resource.c.res_id, target, [self.filter(target, inner)])
            ref = idx_reference.c
            sub = _rows(idx_reference, f.res_type, f.code).where(
                ref.target_type == target, ref.target_id.in_(targets)
            )
            parts.append(resource.c.pk.in_(sub))
        return sa.or_(*parts)

    def _has(self, f: HasFilter) -> Cond:
        ref = idx_reference.c
        inner = f.inner
        if isinstance(inner, ParamFilter) and inner.code not in ("_id", "_lastUpdated"):
            # The source's index rows are matched on the reference row's resource_pk and
            # the source is checked for visibility apart: the planner can then test the
            # selective filter first and read fhir_resource only for sources that match
            # (Patient?birthdate=X&_has:Observation:patient:code-value-quantity=...:
            # every observation of each patient born in X was read before).
            match = [
                self._param(inner, pk=ref.resource_pk),
                ref.resource_pk.in_(self._subselect(resource.c.pk, f.source_type, [])),
            ]
        else:
            sources = self._subselect(
                resource.c.pk, f.source_type, [self.filter(f.source_type, inner)]
            )
            match = [ref.resource_pk.in_(sources)]
        sub = (
            sa.select(ref.target_id)
            .where(
                ref.res_type == f.source_type,
                ref.param == f.ref_code,
                *match,
                *([ref.target_type == f.res_type] if f.res_type != "Resource" else []),
            )
            .correlate(None)
        )
        return resource.c.res_id.in_(sub)

    def _subselect(self, column: Any, res_type: str, conds: list[Cond]) -> sa.Select[Any]:
        """``SELECT column FROM fhir_resource`` of visible ``res_type`` rows matching conds."""
        return sa.select(column).where(*self.visible([res_type]), *conds).correlate(None)

    def _param(self, f: ParamFilter, pk: Any = None) -> Cond:
        """The filter on ``fhir_resource``, or on ``pk``, a column holding a resource's pk."""
        pk = resource.c.pk if pk is None else pk
        if f.code == "_id":
            return _id_condition(f)
        if f.code == "_lastUpdated":
            col = resource.c.last_updated
            if f.missing is not None:
                return sa.true() if not f.missing else sa.false()
            return sa.or_(*(_date_match(col, col, v, self.now) for v in f.values))
        if f.type == "composite":
            return self._composite(f, pk)
        table, param = _table_for(f)
        if f.missing is not None:
            if f.missing:
                return ~_row_of(table, f.res_type, param, pk).exists()
            return pk.in_(_rows(table, f.res_type, param))
        match = sa.or_(*(self._value(f, table, v) for v in f.values))
        if f.modifier == "not":
            return ~_row_of(table, f.res_type, param, pk).where(match).exists()
        return pk.in_(_rows(table, f.res_type, param).where(match))

    def _composite(self, f: ParamFilter, pk: Any) -> Cond:
        if f.missing is not None:
            raise BadRequest(f"{f.code}:missing is not supported on composite parameters")
        alternatives = [sa.and_(*(self._param(part, pk) for part in value)) for value in f.values]
        return sa.or_(*alternatives)

    def _value(self, f: ParamFilter, table: sa.Table, v: Any) -> Cond:
        c = table.c
        if f.type == "string":
            return _string_match(c, f.modifier, v, self.sqlite)
        if f.type == "token" or (f.type == "reference" and f.modifier == "identifier"):
            if f.modifier == "text":
                return c.text.contains(normalize(v), autoescape=True)
            return _token_match(c, v)
        if f.type == "reference":
            return self._reference_match(c, v)
        if f.type == "date":
            return _date_match(c.low, c.high, v, self.now)
        if f.type == "number":
            return _number_match(c.value, v)
        if f.type == "quantity":
            return _quantity_match(c, v)
        if f.type == "uri":
            return _uri_match(c.value, f.modifier, v, self.sqlite)
        raise BadRequest(f"{f.code}: {f.type} parameters are not supported")

    def _reference_match(self, c: Any, v: ReferenceValue) -> Cond:
        if v.url is not None:
            by_url = c.url == v.url
            local = self.base_url.rstrip("/") + "/"
            if v.res_type and v.res_id and v.url.startswith(local):
                return sa.or_(by_url, sa.and_(c.target_type == v.res_type, c.target_id == v.res_id))
            return by_url
        cond = c.target_id == v.res_id
        if v.res_type:
            cond = sa.and_(cond, c.target_type == v.res_type)
        # a relative value means this server's resource, not one elsewhere with the same id
        local = self.base_url.rstrip("/") + "/"
        return sa.and_(cond, sa.or_(c.url.is_(None), c.url.startswith(local, autoescape=True)))

    # -- sorting -------------------------------------------------------------------------

    def sort_expression(self, res_types: Sequence[str], key: SortKey) -> Any:
        """A per-row scalar to order by (spec: sort by the lowest/highest indexed value)."""
        if key.type == "_id":
            return resource.c.res_id
        if key.type == "_lastUpdated":
            return resource.c.last_updated
        agg = sa.func.max if key.descending else sa.func.min
        table = _TABLES[key.type]
        column = {
            "string": "value_norm",
            "token": "code",
            "reference": "target_id",
            "number": "value",
            "quantity": "value",
            "uri": "value",
            "date": "high" if key.descending else "low",
        }[key.type]
        stmt = sa.select(agg(table.c[column])).where(
            table.c.resource_pk == resource.c.pk, table.c.param == key.code
        )
        return stmt.correlate(resource).scalar_subquery()


def _unindexed(column: Any) -> Any:
    """``column || ''``: the same text, but no index can serve a test on it (steers
    SQLite's planner, which keeps no statistics, away from a misleading index)."""
    return column.op("||")(sa.literal_column("''"))


_TABLES: dict[str, sa.Table] = {
    "string": idx_string,
    "token": idx_token,
    "reference": idx_reference,
    "date": idx_date,
    "number": idx_number,
    "quantity": idx_quantity,
    "uri": idx_uri,
}


_DRIVE_RANK = {"reference": 1, "token": 2, "string": 4, "composite": 6}


def _drive_rank(f: Filter) -> int:
    """Lower drives: ids and references are usually the most selective filters."""
    if isinstance(f, ChainFilter | HasFilter):
        return 3
    if f.code == "_id":
        return 0
    if f.missing is not None or f.modifier == "not":
        return 9
    return _DRIVE_RANK.get(f.type, 5)


@lru_cache(maxsize=64)
def _compartment_links(comp_type: str, types: tuple[str, ...]) -> list[str]:
    """``["Observation.subject", "Observation.performer", ...]`` for the wanted types."""
    return [f"{t}.{p}" for t in types for p in compartment_params(comp_type, t)]


def _table_for(f: ParamFilter) -> tuple[sa.Table, str]:
    """The index table and the ``param`` its rows carry for this filter."""
    if f.type == "reference" and f.modifier == "identifier":
        return idx_token, f"{f.code}:identifier"
    if f.type == "token" and f.modifier == "of-type":
        return idx_token, f"{f.code}:of-type"
    try:
        return _TABLES[f.type], f.code
    except KeyError as exc:
        raise BadRequest(f"{f.code}: {f.type} parameters are not supported") from exc


def _rows(table: sa.Table, res_type: str, param: str) -> sa.Select[Any]:
    """``SELECT resource_pk FROM <table>`` for one parameter (any type at system level)."""
    stmt = sa.select(table.c.resource_pk).where(table.c.param == param)
    if res_type != "Resource":
        stmt = stmt.where(table.c.res_type == res_type)
    return stmt.correlate(None)


def _row_of(table: sa.Table, res_type: str, param: str, pk: Any) -> sa.Select[Any]:
    """The row's own index rows for one parameter, for a correlated NOT EXISTS: probed
    through the ``by_resource`` index. (``pk NOT IN (all rows)`` is rescanned for every
    row once its hash no longer fits work_mem.)"""
    stmt = sa.select(sa.literal(1)).where(table.c.resource_pk == pk, table.c.param == param)
    if res_type != "Resource":
        stmt = stmt.where(table.c.res_type == res_type)
    return stmt


def _in_or_eq(column: Any, values: list[str]) -> Cond:
    return column == values[0] if len(values) == 1 else column.in_(values)


def _id_condition(f: ParamFilter) -> Cond:
    if f.missing is not None:
        return sa.false() if f.missing else sa.true()
    return _in_or_eq(resource.c.res_id, [str(v) for v in f.values])


def _string_match(c: Any, modifier: str | None, value: str, sqlite: bool) -> Cond:
    """Default starts-with, ``:contains`` and ``:exact`` (search.html#string)."""
    if modifier == "exact":
        return c.value_exact == value
    folded = normalize(value)
    if modifier == "contains":
        return c.value_norm.contains(folded, autoescape=True)
    return _prefix(c.value_norm, folded, sqlite)


def _prefix(col: Any, prefix: str, sqlite: bool) -> Cond:
    """``col LIKE 'prefix%'``, indexable on both databases.

    PostgreSQL's planner turns a LIKE prefix into an index range itself (the column's
    index uses varchar_pattern_ops). SQLite's LIKE is never indexed (it folds ASCII case),
    so there the same range is spelled out: bytewise order is code point order.
    """
    like = col.startswith(prefix, autoescape=True)
    if not sqlite or not prefix:
        return like
    return sa.and_(col >= prefix, col < prefix + "\U0010ffff", like)


def _token_match(c: Any, v: TokenValue) -> Cond:
    """``code``, ``system|code``, ``|code`` (no system) and ``system|`` (search.html#token)."""
    conds: list[Cond] = []
    if v.code is not None:
        conds.append(c.code == v.code)
    if v.system == "":
        conds.append(sa.or_(c.system.is_(None), c.system == ""))
    elif v.system is not None:
        conds.append(c.system == v.system)
    return sa.and_(*conds)


def _uri_match(col: Any, modifier: str | None, value: str, sqlite: bool) -> Cond:
    """Exact, ``:below`` (value is a prefix of the target) or ``:above`` (the reverse)."""
    if modifier == "below":
        return _prefix(col, value, sqlite)
    if modifier == "above":
        return col.in_(_uri_prefixes(value))
    return col == value


def _uri_prefixes(uri: str) -> list[str]:
    """Every path prefix of a URI, for ``:above``.

    >>> _uri_prefixes("http://acme.org/fhir/ValueSet/123")[-3:]
    ['http://acme.org/fhir', 'http://acme.org/fhir/ValueSet', 'http://acme.org/fhir/ValueSet/123']
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return [uri]
    segments = rest.split("/")
    return [f"{scheme}://{'/'.join(segments[: i + 1])}" for i in range(len(segments))]


def _date_match(low: Any, high: Any, v: DateValue, now: datetime) -> Cond:
    """Prefix semantics on ranges (search.html#prefix); NULL ``low``/``high`` are open ends.

    The search value is the range ``[v.low, v.high]`` its precision gives; the target is
    the indexed ``[low, high]``. ``eq``: the search range contains the target's;
    ``gt``/``lt``: the target reaches above/below the search range; ``ge``/``le`` add
    ``eq``; ``sa``/``eb``: the target starts after/ends before it; ``ap``: they overlap once
    the search range is widened by 10% of its distance from now (at least a day).
    """
    contained = sa.and_(low >= v.low, high <= v.high)
    above = sa.or_(high > v.high, high.is_(None))
    below = sa.or_(low < v.low, low.is_(None))
    p = v.prefix
    if p == "eq":
        return contained
    if p == "ne":
        return sa.or_(low.is_(None), high.is_(None), low < v.low, high > v.high)
    if p == "gt":
        return above
    if p == "lt":
        return below
    if p == "ge":
        return sa.or_(above, contained)
    if p == "le":
        return sa.or_(below, contained)
    if p == "sa":
        return low > v.high
    if p == "eb":
        return high < v.low
    # ap
    gap = max(abs(now - v.low), abs(now - v.high)) * 0.1
    gap = max(gap, timedelta(days=1))
    lo, hi = v.low - gap, v.high + gap
    return sa.and_(sa.or_(low <= hi, low.is_(None)), sa.or_(high >= lo, high.is_(None)))


def _number_match(col: Any, v: NumberValue) -> Cond:
    """Number prefixes (search.html#number): ``eq`` within the value's precision."""
    p = v.prefix
    if p == "eq":
        return sa.and_(col >= v.low, col < v.high)
    if p == "ne":
        return sa.or_(col < v.low, col >= v.high)
    if p in ("gt", "sa"):
        return col > v.value
    if p in ("lt", "eb"):
        return col < v.value
    if p == "ge":
        return col >= v.value
    if p == "le":
        return col <= v.value
    # ap: within 10% of the value
    margin = abs(v.value) * Decimal("0.1")
    return sa.and_(col >= v.value - margin, col <= v.value + margin)


def _quantity_match(c: Any, v: QuantityValue) -> Cond:
    """``number|system|code`` matches system and code; ``number||unit`` code or unit."""
    conds = [_number_match(c.value, v.number)]
    if v.system is not None:
        conds.append(c.system == v.system)
        if v.code is not None:
            conds.append(c.code == v.code)
    elif v.code is not None:
        conds.append(sa.or_(c.code == v.code, c.unit == v.code))
    return sa.and_(*conds)


def keyset(
    keys: Sequence[tuple[Any, bool]], values: Sequence[Any], pk: int, *, after: bool
) -> Cond:
    """Rows strictly after (or before) the row with sort ``values`` and ``pk``.

    Order: each key ascending or descending with NULLs last, then ``pk`` ascending.
    Lexicographic: ``k1 > v1 OR (k1 = v1 AND (k2 > v2 OR ...)) OR (all equal AND pk > p)``.
    """
    cond: Cond = resource.c.pk > pk if after else resource.c.pk < pk
    for (expr, desc), value in reversed(list(zip(keys, values, strict=True))):
        cond = sa.or_(_beyond(expr, desc, value, after), sa.and_(_same(expr, value), cond))
    return cond


def _same(expr: Any, value: Any) -> Cond:
    return expr.is_(None) if value is None else expr == value


def _beyond(expr: Any, desc: bool, value: Any, after: bool) -> Cond:
    if not _nullable(expr) and value is not None:
        return expr < value if desc == after else expr > value
    if after:
        if value is None:
            return sa.false()  # NULLs come last: nothing follows a NULL but other NULLs
        return sa.or_(expr < value if desc else expr > value, expr.is_(None))
    if value is None:
        return expr.is_not(None)
    return expr > value if desc else expr < value


def order_by(keys: Sequence[tuple[Any, bool]], *, forward: bool, pk: Any = None) -> list[Any]:
    """ORDER BY for :func:`keyset`'s order (``forward=False``: exactly reversed).

    ``pk``: the tie-breaking column when the rows come from a subquery, not fhir_resource.
    """
    pk = resource.c.pk if pk is None else pk
    out: list[Any] = []
    for expr, desc in keys:
        ordered = expr.desc() if desc == forward else expr.asc()
        if _nullable(expr):
            ordered = ordered.nulls_last() if forward else ordered.nulls_first()
        # a NOT NULL column (_lastUpdated, _id) is left without NULLS LAST/FIRST, so that
        # an index scanned backwards can give a descending order (it gives NULLS FIRST)
        out.append(ordered)
    out.append(pk.asc() if forward else pk.desc())
    return out


def _nullable(expr: Any) -> bool:
    """False only for a table column declared NOT NULL."""
    return bool(getattr(expr, "nullable", True))


__all__ = ["PolicyFilter", "SqlBuilder", "keyset", "order_by"]
