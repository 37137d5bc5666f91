"""Every error tree's HTTP answer, registered once by ``create_app``.

Packages raise their own base error (``RosterError``, ``CallError`` ...) and never
``HTTPException``. Starlette finds a handler along the exception's MRO, so one handler per
base class covers every subclass, and a new subclass needs no router change.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from renkei.api.auth import auth_error_response
from renkei.auth.errors import AuthError
from renkei.calls.errors import CallError
from renkei.collab.errors import CollabError
from renkei.criteria.errors import CriteriaError
from renkei.fhir.outcome import FhirError, Issue, as_fhir_error, operation_outcome
from renkei.roster import errors as roster
from renkei.store.errors import StoreError

#: the logger these lines were always written to (log filters know the name)
log = logging.getLogger("renkei.app")

_FHIR_JSON = "application/fhir+json"

#: roster errors carry no status; the first class that matches names it (default 400)
_ROSTER_STATUS: list[tuple[type[roster.RosterError], int, str]] = [
    (roster.GroupNotFound, 404, "not-found"),
    (roster.OverrideNotFound, 404, "not-found"),
    (roster.TokenNotFound, 404, "not-found"),
    (roster.NotAllowed, 403, "forbidden"),
    (roster.PastChange, 409, "conflict"),
    (roster.InvalidConfig, 422, "invalid"),
    (roster.InvalidChange, 422, "invalid"),
    (roster.OutOfRange, 400, "too-costly"),
]

#: the issue code of a CallError follows its status (not ``CallError.code``)
_CALL_CODES = {400: "invalid", 403: "forbidden", 404: "not-found", 409: "conflict"}


def _outcome(issue: Issue, status: int, media_type: str = _FHIR_JSON) -> Response:
    return Response(
        orjson.dumps(operation_outcome(issue)), status_code=status, media_type=media_type
    )


async def _roster_error(_request: Request, exc: Exception) -> Response:
    # served as application/json, as the roster API always has (clients may check it)
    assert isinstance(exc, roster.RosterError)
    status, code = next(
        ((s, c) for cls, s, c in _ROSTER_STATUS if isinstance(exc, cls)), (400, "invalid")
    )
    path = getattr(exc, "path", "")
    issue = Issue("error", code, str(exc), (path,) if path else ())
    return _outcome(issue, status, "application/json")


async def _call_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CallError)
    issue = Issue("error", _CALL_CODES.get(exc.status, "processing"), exc.message)
    return _outcome(issue, exc.status)


async def _criteria_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CriteriaError)
    return _outcome(Issue("error", exc.code, exc.message), exc.status)


async def _collab_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CollabError)
    return Response(
        orjson.dumps({"detail": exc.message}),
        status_code=exc.status,
        media_type="application/json",
    )


async def _store_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreError)
    mapped = as_fhir_error(exc)
    assert mapped is not None
    return Response(
        orjson.dumps(mapped.outcome()), status_code=mapped.status, media_type=_FHIR_JSON
    )


async def _fhir_error(_request: Request, exc: Exception) -> Response:
    # e.g. a bad bearer token met by a dependency outside /fhir
    assert isinstance(exc, FhirError)
    return Response(
        orjson.dumps(exc.outcome()),
        status_code=exc.status,
        headers=dict(exc.headers),
        media_type=_FHIR_JSON,
    )


async def _client_gone(request: Request, _exc: Exception) -> Response:
    # the client hung up before its request was read: nothing was applied, nobody to answer
    log.info("client disconnected during %s %s", request.method, request.url.path)
    return _outcome(Issue("error", "incomplete", "the request body did not arrive"), 400)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    issue = Issue("fatal", "exception", "internal error; the request was not applied")
    return _outcome(issue, 500)


def install_error_handlers(app: FastAPI) -> None:
    """Register one handler per error base class (see the module docstring)."""
    handlers: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response] | Response]]
    handlers = {
        roster.RosterError: _roster_error,
        CallError: _call_error,
        CriteriaError: _criteria_error,
        CollabError: _collab_error,
        AuthError: auth_error_response,
        StoreError: _store_error,
        FhirError: _fhir_error,
        ClientDisconnect: _client_gone,
        Exception: _unexpected,
    }
    for cls, handler in handlers.items():
        app.add_exception_handler(cls, handler)


__all__ = ["install_error_handlers"]
