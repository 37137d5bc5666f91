"""FastAPI dependencies: the only place routers get services, sessions and the caller."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from renkei.auth.principal import Principal
from renkei.clock import Clock
from renkei.fhir.context import RequestContext
from renkei.fhir.engine import FhirEngine

if TYPE_CHECKING:
    from renkei.app import Services

_P = ParamSpec("_P")
_T = TypeVar("_T")
#: a sync service function over the FHIR engine: ``fn(engine, session, ctx, ...)``
_EngineFn = Callable[Concatenate[FhirEngine, Session, RequestContext, _P], _T]


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_clock(services: Services = Depends(get_services)) -> Clock:
    return services.clock


def read_session(services: Services = Depends(get_services)) -> Iterator[Session]:
    with services.db.session() as session:
        yield session


def write_session(services: Services = Depends(get_services)) -> Iterator[Session]:
    with services.db.session(write=True) as session:
        yield session


async def optional_principal(request: Request) -> Principal | None:
    services: Services = request.app.state.services
    if services.authenticate is None:
        return None
    return await services.authenticate(request)


async def require_principal(
    principal: Principal | None = Depends(optional_principal),
) -> Principal:
    if principal is None:
        raise HTTPException(
            status_code=401,
            detail="authentication required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def request_context(request: Request, principal: Principal | None) -> RequestContext:
    """The FHIR engine's view of this HTTP request (for packages that ask the engine's
    access policy about the caller)."""
    from renkei.api.fhir import base_url  # fhir imports this module

    return RequestContext(
        principal=principal,
        request_id=getattr(request.state, "request_id", None) or uuid.uuid4().hex,
        remote_addr=request.client.host if request.client else None,
        base_url=base_url(request),
        caller_check=getattr(request.state, "caller_check", None),
    )


async def run_read(
    request: Request,
    principal: Principal | None,
    fn: _EngineFn[_P, _T],
    *args: _P.args,
    **kwargs: _P.kwargs,
) -> _T:
    """``fn(engine, session, ctx, *args, **kwargs)`` in a read session, off the event loop."""
    return await _run(request, principal, False, fn, *args, **kwargs)


async def run_write(
    request: Request,
    principal: Principal | None,
    fn: _EngineFn[_P, _T],
    *args: _P.args,
    **kwargs: _P.kwargs,
) -> _T:
    """As :func:`run_read` in a write session, committed before the response is sent."""
    return await _run(request, principal, True, fn, *args, **kwargs)


async def _run(
    request: Request,
    principal: Principal | None,
    write: bool,
    fn: _EngineFn[_P, _T],
    *args: _P.args,
    **kwargs: _P.kwargs,
) -> _T:
    services = get_services(request)
    ctx = request_context(request, principal)

    def unit() -> _T:
        with services.db.session(write=write) as session:
            return fn(services.engine, session, ctx, *args, **kwargs)

    return await run_in_threadpool(unit)
