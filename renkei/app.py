"""The FastAPI app factory: ``create_app(settings)`` wires storage, engine and routers.

Fakes and real implementations are chosen here and nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from renkei import __version__
from renkei.access import SharingFactWriter, SharingPolicy
from renkei.audit import AuditTrail, install_audit
from renkei.auth.principal import Principal
from renkei.clock import Clock, SystemClock
from renkei.config import Settings
from renkei.fhir.binary import BinaryPolicy
from renkei.fhir.engine import EngineSettings, FhirEngine
from renkei.fhir.outcome import Issue, operation_outcome
from renkei.fhir.policy import AccessPolicy
from renkei.fhir.searching import BasicSearch
from renkei.store.blobs import BlobStore
from renkei.store.db import Database

Authenticator = Callable[[Request], Awaitable[Principal | None]]

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything a request handler may need, built once per app."""

    settings: Settings
    db: Database
    clock: Clock
    engine: FhirEngine
    #: resolves the caller of a request (bearer token...); None until auth is wired in
    authenticate: Authenticator | None = None
    #: the audit log the FHIR router flushes each request's access records to
    audit: AuditTrail | None = None


def build_services(
    settings: Settings, *, clock: Clock | None = None, policy: AccessPolicy | None = None
) -> Services:
    clock = clock or SystemClock()
    db = Database(str(settings.database_url), echo=settings.sql_echo)
    sharing = SharingPolicy(clock)
    policy = policy or sharing
    zone = ZoneInfo(settings.default_timezone)
    binaries = BinaryPolicy(BlobStore(settings.data_dir / "attachments"))
    engine = FhirEngine(
        binaries=binaries,
        clock=clock,
        indexer=SharingFactWriter(zone),
        search=BasicSearch(policy),
        policy=policy,
        settings=EngineSettings(
            default_count=settings.default_page_size, max_count=settings.max_page_size
        ),
    )
    audit = install_audit(engine, settings, clock, record_filter=sharing.audit_filter)
    return Services(settings=settings, db=db, clock=clock, engine=engine, audit=audit)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    services: Services | None = None,
) -> FastAPI:
    settings = settings or Settings.from_env()
    services = services or build_services(settings, clock=clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Load the FHIR type registry now, not on the first client's request.
        from starlette.concurrency import run_in_threadpool

        from renkei.fhir.validate import supported_types

        await run_in_threadpool(supported_types)
        yield
        services.db.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="renkei",
        version=__version__,
        description=(
            "FHIR R4 backend for Japanese home-care networks (連携). The FHIR API lives "
            "under /fhir (see /fhir/metadata); this document describes the JSON APIs."
        ),
    )
    app.state.settings = settings
    app.state.services = services

    from renkei.api import fhir, health, oncall
    from renkei.api.middleware import RequestMiddleware

    app.add_middleware(RequestMiddleware)
    app.include_router(health.router)
    app.include_router(fhir.router)
    app.include_router(oncall.router)
    oncall.register_error_handlers(app)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = operation_outcome(
            Issue("fatal", "exception", "internal error; the request was not applied")
        )
        return Response(orjson.dumps(body), status_code=500, media_type="application/fhir+json")

    return app
