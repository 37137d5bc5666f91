"""Storage errors; ``renkei.fhir.outcome.as_fhir_error`` maps them to HTTP statuses."""

from __future__ import annotations


class StoreError(Exception):
    """Base of storage errors. ``etag`` is the current version's, when one is known."""

    def __init__(self, message: str, *, etag: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.etag = etag


class ResourceNotFound(StoreError):
    """No resource (or version) with that type and id."""


class ResourceGone(StoreError):
    """The resource exists but its current version is a deletion."""


class VersionMismatch(StoreError):
    """``If-Match`` named a version that is not the current one."""


class AlreadyExists(StoreError):
    """A create raced another create of the same id."""


class ConcurrentUpdate(StoreError):
    """Another transaction wrote the resource between our read and our write."""


class BadCursor(StoreError):
    """A paging cursor that this server did not make."""


class Unstorable(StoreError):
    """The database refused a value (too long for its column, out of range...).

    SQLite stores almost anything; PostgreSQL checks lengths and ranges. Translating the
    driver's error here keeps a bad value a client error on both, never a 500.
    """
