"""The FHIR resource repository: the storage half of the RESTful interactions.

The repository never commits; the caller owns the unit of work (one HTTP request, or one
whole transaction Bundle). Conditional interactions are built in ``renkei.fhir`` on top of
these methods and the search engine.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from renkei.clock import Clock
from renkei.store import pending
from renkei.store.errors import (
    AlreadyExists,
    BadCursor,
    ConcurrentUpdate,
    ResourceGone,
    ResourceNotFound,
    Unstorable,
    VersionMismatch,
)
from renkei.store.indexing import IndexWriter
from renkei.store.models import resource, resource_version


@dataclass(frozen=True)
class StoredResource:
    """One version of a resource as stored. ``content`` is None for a deletion."""

    res_type: str
    res_id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    content: dict[str, Any] | None
    method: str = "PUT"
    pk: int = 0

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'

    @property
    def reference(self) -> str:
        return f"{self.res_type}/{self.res_id}"


@dataclass(frozen=True)
class HistoryPage:
    entries: list[StoredResource]
    #: opaque position of the next (older) page, or None at the end
    next_cursor: str | None


class Repository(Protocol):
    """FHIR interactions over stored resources (https://hl7.org/fhir/R4/http.html)."""

    def read(self, res_type: str, res_id: str) -> StoredResource:
        """http.html#read: the current version; NotFound, or Gone if deleted."""
        ...

    def vread(self, res_type: str, res_id: str, version_id: int) -> StoredResource:
        """http.html#vread: one version; a deleted version raises Gone."""
        ...

    def create(self, content: dict[str, Any], *, res_id: str | None = None) -> StoredResource:
        """http.html#create: assigns id (unless given), versionId 1 and lastUpdated."""
        ...

    def update(
        self, content: dict[str, Any], *, if_match: int | None = None, method: str = "PUT"
    ) -> tuple[StoredResource, bool]:
        """http.html#update: a new version; creates when absent (update-as-create)."""
        ...

    def delete(
        self, res_type: str, res_id: str, *, if_match: int | None = None
    ) -> StoredResource | None:
        """http.html#delete: a deletion version; None when nothing was there."""
        ...

    def history(
        self,
        res_type: str | None = None,
        res_id: str | None = None,
        *,
        since: datetime | None = None,
        count: int = 50,
        cursor: str | None = None,
    ) -> HistoryPage:
        """http.html#history at instance, type or system level, newest first."""
        ...


#: Built once: a statement object per call costs more than the round trip on SQLite.
_INSERT_RESOURCE = resource.insert().returning(resource.c.pk)
_INSERT_VERSION = resource_version.insert()


@cache
def _pg_create_statement() -> sa.TextClause:
    """PostgreSQL: insert the resource and its version 1 together (a data-modifying CTE)."""
    return sa.text(
        """
        WITH r AS (
            INSERT INTO fhir_resource
                (res_type, res_id, version_id, last_updated, deleted, content)
            VALUES (:res_type, :res_id, 1, :last_updated, false, :content)
            RETURNING pk, res_type, res_id, last_updated, content
        )
        INSERT INTO fhir_resource_version
            (resource_pk, version_id, res_type, res_id, last_updated, deleted, method, content)
        SELECT pk, 1, res_type, res_id, last_updated, false, 'POST', content FROM r
        RETURNING resource_pk
        """
    ).bindparams(
        sa.bindparam("content", type_=resource.c.content.type),
        sa.bindparam("last_updated", type_=resource.c.last_updated.type),
    )


#: PostgreSQL: ``:n`` primary keys of new resources in one round trip. Reads no table, so
#: resource rows deferred earlier in the unit may stay unsent.
_NEXT_PKS = sa.text(
    "SELECT nextval(pg_get_serial_sequence('fhir_resource', 'pk')) FROM generate_series(1, :n)"
).execution_options(**pending.reads())
#: unit cache holding primary keys reserved for the unit's creates
_RESERVED = "store.reserved_pks"


def _version_row(
    pk: int,
    res_type: str,
    res_id: str,
    version: int,
    now: datetime,
    deleted: bool,
    method: str,
    body: dict[str, Any] | None,
) -> dict[str, Any]:
    """A ``fhir_resource_version`` row, inserted at once or deferred."""
    return {
        "resource_pk": pk,
        "version_id": version,
        "res_type": res_type,
        "res_id": res_id,
        "last_updated": now,
        "deleted": deleted,
        "method": method,
        "content": body,
    }


def new_id() -> str:
    return str(uuid.uuid4())


class SqlRepository:
    """:class:`Repository` over SQLAlchemy, for SQLite and PostgreSQL alike."""

    def __init__(self, session: Session, clock: Clock, indexer: IndexWriter) -> None:
        self.session = session
        self.clock = clock
        self.indexer = indexer
        self._postgres = session.get_bind().dialect.name == "postgresql"

    # -- reads ---------------------------------------------------------------------------

    def _current_row(self, res_type: str, res_id: str, *, lock: bool = False) -> Any:
        stmt = _CURRENT_FOR_UPDATE if lock else _CURRENT
        return self.session.execute(stmt, {"r_type": res_type, "r_id": res_id}).first()

    def read(self, res_type: str, res_id: str, *, for_update: bool = False) -> StoredResource:
        """The current version; ``for_update`` locks the row until the unit of work ends
        (PostgreSQL; SQLite write transactions hold the database lock already), so a
        read-modify-write such as a patch cannot interleave with another writer."""
        row = self._current_row(res_type, res_id, lock=for_update)
        if row is None:
            raise ResourceNotFound(f"{res_type}/{res_id} is not known")
        stored = _from_current(row)
        if stored.deleted:
            raise ResourceGone(
                f"{res_type}/{res_id} was deleted",
                etag=stored.etag,
            )
        return stored

    def read_many(self, refs: Sequence[tuple[str, str]]) -> list[StoredResource]:
        """Current, undeleted versions of many resources in one query (order not kept)."""
        if not refs:
            return []
        conds = [sa.and_(resource.c.res_type == t, resource.c.res_id == i) for t, i in set(refs)]
        out: list[StoredResource] = []
        for chunk in range(0, len(conds), 500):
            stmt = sa.select(resource).where(
                sa.or_(*conds[chunk : chunk + 500]), resource.c.deleted.is_(False)
            )
            out.extend(_from_current(r) for r in self.session.execute(stmt))
        return out

    def read_by_pks(self, pks: Sequence[int]) -> dict[int, StoredResource]:
        if not pks:
            return {}
        stmt = sa.select(resource).where(resource.c.pk.in_(list(pks)))
        return {r.pk: _from_current(r) for r in self.session.execute(stmt)}

    def vread(self, res_type: str, res_id: str, version_id: int) -> StoredResource:
        stmt = sa.select(resource_version).where(
            resource_version.c.resource_pk == _pk_of(res_type, res_id),
            resource_version.c.version_id == version_id,
        )
        row = self.session.execute(stmt).first()
        if row is None:
            raise ResourceNotFound(f"{res_type}/{res_id}/_history/{version_id} is not known")
        stored = _from_version(row)
        if stored.deleted:
            raise ResourceGone(f"{res_type}/{res_id}/_history/{version_id} is a deletion")
        return stored

    # -- writes --------------------------------------------------------------------------

    def create(self, content: dict[str, Any], *, res_id: str | None = None) -> StoredResource:
        with _storable():
            return self._create(content, res_id)

    def reserve(self, count: int) -> None:
        """Take primary keys for the next ``count`` creates of this unit of work in one round
        trip (a transaction Bundle's): their rows are then deferred, not inserted one by one.
        On SQLite, where a round trip costs nothing, it does nothing."""
        if not self._postgres or count <= 0:
            return
        reserved: list[int] = pending.unit_cache(self.session, _RESERVED).setdefault("pks", [])
        missing = count - len(reserved)
        if missing > 0:
            rows = self.session.execute(_NEXT_PKS, {"n": missing})
            reserved.extend(int(pk) for (pk,) in rows)

    def _reserved_pk(self) -> int | None:
        """A key :meth:`reserve` took for this unit, or None (then insert at once)."""
        reserved: list[int] | None = pending.unit_cache(self.session, _RESERVED).get("pks")
        return reserved.pop(0) if reserved else None

    def _create(self, content: dict[str, Any], res_id: str | None) -> StoredResource:
        res_type = content["resourceType"]
        res_id = res_id or new_id()
        now = self.clock.now()
        body = _with_meta(content, res_id, 1, now)
        pk = self._reserved_pk() if self._postgres else None
        if pk is not None:
            # A key reserved for this unit (a transaction Bundle's creates): both rows are
            # sent with the unit's index rows (renkei.store.pending, COPY), before any later
            # statement that may read them. A duplicate id is refused then (AlreadyExists).
            row = {"pk": pk, "res_type": res_type, "res_id": res_id, "last_updated": now}
            pending.defer(
                self.session,
                resource,
                [{**row, "version_id": 1, "deleted": False, "content": body}],
                visible=True,
            )
            version = _version_row(pk, res_type, res_id, 1, now, False, "POST", body)
            pending.defer(self.session, resource_version, [version], visible=True)
        else:
            # No savepoint: a duplicate id fails the unit of work anyway, and batch entries
            # have a savepoint of their own. Saves two round trips per create.
            params = {"res_type": res_type, "res_id": res_id, "last_updated": now, "content": body}
            try:
                if self._postgres:
                    # resource and first version in one statement: one round trip, not two
                    pk = self.session.execute(_pg_create_statement(), params).scalar_one()
                else:
                    pk = self.session.execute(
                        _INSERT_RESOURCE, {**params, "version_id": 1, "deleted": False}
                    ).scalar_one()
                    self._add_version(pk, res_type, res_id, 1, now, False, "POST", body)
            except IntegrityError as exc:
                raise AlreadyExists(f"{res_type}/{res_id} already exists") from exc
        index_new = getattr(self.indexer, "index_new", None)
        if index_new is not None:
            index_new(self.session, pk, res_type, body)  # no old rows to delete
        else:
            self.indexer.reindex(self.session, pk, res_type, body)
        return StoredResource(res_type, res_id, 1, now, False, body, "POST", pk)

    def update(
        self, content: dict[str, Any], *, if_match: int | None = None, method: str = "PUT"
    ) -> tuple[StoredResource, bool]:
        with _storable():
            return self._update(content, if_match, method)

    def _update(
        self, content: dict[str, Any], if_match: int | None, method: str
    ) -> tuple[StoredResource, bool]:
        res_type, res_id = content["resourceType"], content["id"]
        row = self._current_row(res_type, res_id, lock=True)
        if row is None:
            if if_match is not None:
                raise VersionMismatch(
                    f"If-Match names version {if_match} but {res_type}/{res_id} does not exist"
                )
            return self._create(content, res_id), True
        current = int(row.version_id)
        if if_match is not None and if_match != current:
            raise VersionMismatch(
                f"If-Match names version {if_match} but {res_type}/{res_id} is at {current}",
                etag=f'W/"{current}"',
            )
        version = current + 1
        now = self._monotonic_now(row.last_updated)
        body = _with_meta(content, res_id, version, now)
        self._write_current(row.pk, current, version, now, False, body)
        self._add_version(row.pk, res_type, res_id, version, now, False, method, body)
        self.indexer.reindex(self.session, row.pk, res_type, body)
        return StoredResource(res_type, res_id, version, now, False, body, method, row.pk), bool(
            row.deleted
        )

    def delete(
        self, res_type: str, res_id: str, *, if_match: int | None = None
    ) -> StoredResource | None:
        with _storable():
            return self._delete(res_type, res_id, if_match)

    def _delete(self, res_type: str, res_id: str, if_match: int | None) -> StoredResource | None:
        row = self._current_row(res_type, res_id, lock=True)
        if row is None or row.deleted:
            if if_match is not None and (row is None or if_match != row.version_id):
                raise VersionMismatch(f"{res_type}/{res_id} is not at version {if_match}")
            return None
        current = int(row.version_id)
        if if_match is not None and if_match != current:
            raise VersionMismatch(
                f"If-Match names version {if_match} but {res_type}/{res_id} is at {current}",
                etag=f'W/"{current}"',
            )
        version = current + 1
        now = self._monotonic_now(row.last_updated)
        # The current row keeps the last content so that history and audits can show it;
        # it is never served while deleted.
        self._write_current(row.pk, current, version, now, True, row.content)
        self._add_version(row.pk, res_type, res_id, version, now, True, "DELETE", None)
        self.indexer.reindex(self.session, row.pk, res_type, None)
        return StoredResource(res_type, res_id, version, now, True, None, "DELETE", row.pk)

    def _monotonic_now(self, previous: datetime) -> datetime:
        """lastUpdated never goes backwards for one resource, even if the clock does."""
        now = self.clock.now()
        if previous.tzinfo is None:
            previous = previous.replace(tzinfo=UTC)
        return max(now, previous)

    def _write_current(
        self,
        pk: int,
        expected_version: int,
        version: int,
        now: datetime,
        deleted: bool,
        body: dict[str, Any],
    ) -> None:
        result = self.session.execute(
            resource.update()
            .where(resource.c.pk == pk, resource.c.version_id == expected_version)
            .values(version_id=version, last_updated=now, deleted=deleted, content=body)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise ConcurrentUpdate("the resource changed concurrently; retry the request")

    def _add_version(
        self,
        pk: int,
        res_type: str,
        res_id: str,
        version: int,
        now: datetime,
        deleted: bool,
        method: str,
        body: dict[str, Any] | None,
    ) -> None:
        self.session.execute(
            _INSERT_VERSION,
            _version_row(pk, res_type, res_id, version, now, deleted, method, body),
        )

    # -- history -------------------------------------------------------------------------

    def history(
        self,
        res_type: str | None = None,
        res_id: str | None = None,
        *,
        since: datetime | None = None,
        count: int = 50,
        cursor: str | None = None,
    ) -> HistoryPage:
        if res_id is not None and res_type is None:
            raise ValueError("an instance's history needs its type")
        v = resource_version
        stmt = sa.select(v)
        if res_type is not None and res_id is not None:
            stmt = stmt.where(v.c.resource_pk == _pk_of(res_type, res_id))
        elif res_type is not None:
            stmt = stmt.where(v.c.res_type == res_type)
        if since is not None:
            stmt = stmt.where(v.c.last_updated >= since)
        if cursor is not None:
            when, pk, vid = _parse_cursor(cursor)
            stmt = stmt.where(
                v.c.last_updated <= when,  # bounds the index scan: the OR alone does not
                sa.or_(
                    v.c.last_updated < when,
                    sa.and_(
                        v.c.last_updated == when,
                        sa.tuple_(v.c.resource_pk, v.c.version_id) < sa.tuple_(pk, vid),
                    ),
                ),
            )
        stmt = stmt.order_by(
            v.c.last_updated.desc(), v.c.resource_pk.desc(), v.c.version_id.desc()
        ).limit(count + 1)
        rows = list(self.session.execute(stmt))
        entries = [_from_version(r) for r in rows[:count]]
        next_cursor = None
        if len(rows) > count:
            last = rows[count - 1]
            next_cursor = _make_cursor(last.last_updated, last.resource_pk, last.version_id)
        return HistoryPage(entries, next_cursor)


def _pk_of(res_type: str, res_id: str) -> Any:
    """The resource's key, for version queries: versions are found through the primary
    key (resource_pk, version_id), never by scanning a type's versions for an id."""
    return (
        sa.select(resource.c.pk)
        .where(resource.c.res_type == res_type, resource.c.res_id == res_id)
        .scalar_subquery()
    )


@contextmanager
def _storable() -> Iterator[None]:
    """Driver errors about a value (PostgreSQL: too long, out of range) -> Unstorable."""
    try:
        yield
    except DataError as exc:
        detail = str(exc.orig).splitlines()[0] if exc.orig is not None else "bad value"
        raise Unstorable(f"a value of the resource cannot be stored: {detail}") from exc


def _with_meta(content: dict[str, Any], res_id: str, version: int, now: datetime) -> dict[str, Any]:
    body = dict(content)
    body["id"] = res_id
    meta = dict(body.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = _instant(now)
    body["meta"] = meta
    # Keep resourceType, id and meta first, as FHIR JSON examples are written.
    head = {k: body[k] for k in ("resourceType", "id", "meta")}
    return head | {k: val for k, val in body.items() if k not in head}


def _instant(when: datetime) -> str:
    """FHIR instant in UTC with milliseconds, e.g. ``2026-04-01T09:00:00.000Z``."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


#: built once: SQLAlchemy memoizes a statement's cache key (reads by id are the hot path)
_CURRENT = sa.select(resource).where(
    resource.c.res_type == sa.bindparam("r_type"), resource.c.res_id == sa.bindparam("r_id")
)
_CURRENT_FOR_UPDATE = _CURRENT.with_for_update()


def _from_current(row: Any) -> StoredResource:
    return StoredResource(
        row.res_type,
        row.res_id,
        int(row.version_id),
        _aware(row.last_updated),
        bool(row.deleted),
        None if row.deleted else row.content,
        "PUT",
        int(row.pk),
    )


def _from_version(row: Any) -> StoredResource:
    return StoredResource(
        row.res_type,
        row.res_id,
        int(row.version_id),
        _aware(row.last_updated),
        bool(row.deleted),
        row.content,
        row.method,
        int(row.resource_pk),
    )


def _make_cursor(when: datetime, pk: int, vid: int) -> str:
    return f"{_aware(when).timestamp():.6f}_{pk}_{vid}"


def _parse_cursor(cursor: str) -> tuple[datetime, int, int]:
    try:
        ts, pk, vid = cursor.split("_")
        when, key, version = datetime.fromtimestamp(float(ts), UTC), int(pk), int(vid)
    except (ValueError, OverflowError, OSError) as exc:
        raise BadCursor(f"malformed history page cursor {cursor!r}") from exc
    if not (0 <= key < 2**63 and 0 <= version < 2**31):
        raise BadCursor(f"malformed history page cursor {cursor!r}")
    return when, key, version


__all__ = ["HistoryPage", "Repository", "SqlRepository", "StoredResource", "instant", "new_id"]
instant = _instant
