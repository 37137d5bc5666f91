"""FastAPI dependencies: the only place routers get services, sessions and the caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from renkei.auth.principal import Principal
from renkei.clock import Clock
from renkei.fhir.context import RequestContext

if TYPE_CHECKING:
    from renkei.app import Services


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
    import uuid

    from renkei.api.fhir import base_url

    return RequestContext(
        principal=principal,
        request_id=getattr(request.state, "request_id", None) or uuid.uuid4().hex,
        remote_addr=request.client.host if request.client else None,
        base_url=base_url(request),
    )
