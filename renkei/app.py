"""The FastAPI app factory: ``create_app(settings)`` wires storage, engine and routers.

Fakes and real implementations are chosen here and nowhere else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request

from renkei import __version__
from renkei.access import SharingFactWriter, SharingPolicy
from renkei.audit import AuditTrail, install_audit
from renkei.auth.launch import EnginePatients
from renkei.auth.policy import ScopePolicy
from renkei.auth.principal import Principal
from renkei.auth.server import AuthServer
from renkei.calls import CallRuntime, CallSettings, Worker, build_runtime
from renkei.calls.ports import NotifyBusNotifier, default_ports
from renkei.clock import Clock, SystemClock
from renkei.config import Settings
from renkei.fhir.binary import BinaryPolicy
from renkei.fhir.engine import EngineSettings, FhirEngine
from renkei.fhir.policy import AccessPolicy
from renkei.fhir.search.engine import SearchSettings, SqlSearchEngine
from renkei.notify import NotifyConfig, NotifyService
from renkei.store.blobs import BlobStore
from renkei.store.db import Database

Authenticator = Callable[[Request], Awaitable[Principal | None]]


@dataclass
class Services:
    """Everything a request handler may need, built once per app."""

    settings: Settings
    db: Database
    clock: Clock
    engine: FhirEngine
    #: resolves the caller of a request (bearer token...); None until auth is wired in
    authenticate: Authenticator | None = None
    #: keys, password hasher, token rules and the audit listeners of the auth package
    auth: AuthServer | None = None
    #: urgent calls: ports, channels and settings (renkei.calls)
    calls: CallRuntime | None = None
    #: outbox, websockets, FHIR Subscriptions (set by build_services)
    notify: NotifyService | None = None
    #: the audit log the FHIR router flushes each request's access records to
    audit: AuditTrail | None = None


def build_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    policy: AccessPolicy | None = None,
    call_settings: CallSettings | None = None,
    notify_config: NotifyConfig | None = None,
    notify_kwargs: dict[str, Any] | None = None,
) -> Services:
    """Build every collaborator. ``policy`` is the inner (sharing) policy; SMART scopes are
    always enforced around it by :class:`ScopePolicy`."""
    clock = clock or SystemClock()
    db = Database(str(settings.database_url), echo=settings.sql_echo)
    sharing = SharingPolicy(clock)
    policy = ScopePolicy(policy or sharing)
    zone = ZoneInfo(settings.default_timezone)
    search = SqlSearchEngine(
        policy,
        SearchSettings(
            default_count=settings.default_page_size,
            max_count=settings.max_page_size,
            timezone=settings.default_timezone,
        ),
        clock=clock,
    )
    binaries = BinaryPolicy(BlobStore(settings.data_dir / "attachments"))
    engine = FhirEngine(
        binaries=binaries,
        clock=clock,
        indexer=SharingFactWriter(zone),
        search=search,
        policy=policy,
        settings=EngineSettings(
            default_count=settings.default_page_size, max_count=settings.max_page_size
        ),
    )
    engine.register_operation(search.everything_operation())
    from renkei.summary.operation import register as register_summary

    register_summary(engine)
    audit = install_audit(engine, settings, clock, record_filter=sharing.audit_filter)
    audit.attach(db.session)
    auth = AuthServer(settings, clock)
    auth.listeners.append(audit.security_listener)
    auth.patients = EnginePatients(engine)
    services = Services(
        settings=settings, db=db, clock=clock, engine=engine, auth=auth, audit=audit
    )
    from renkei.api.auth import bearer_authenticator, websocket_token_verifier

    services.authenticate = bearer_authenticator(services)
    config = notify_config or NotifyConfig(
        redis_url=str(settings.redis_url) if settings.redis_url else None
    )
    kwargs = {"token_verifier": websocket_token_verifier(services), **(notify_kwargs or {})}
    services.notify = NotifyService(db, clock, engine, config, **kwargs)
    services.notify.install(engine)
    call_settings = call_settings or CallSettings.from_env()
    call_ports = default_ports(call_settings)
    call_ports.notifier = NotifyBusNotifier(clock)
    services.calls = build_runtime(call_settings, engine, ports=call_ports)
    from renkei.criteria import install as install_criteria

    install_criteria(engine, services.calls)
    return services


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
        import asyncio
        import gc

        # Load the FHIR type registry now, not on the first client's request.
        from starlette.concurrency import run_in_threadpool

        from renkei.fhir.validate import supported_types

        await run_in_threadpool(supported_types)
        if services.notify is not None:
            await services.notify.start()
        worker_task = None
        if services.calls is not None and services.calls.settings.worker:
            worker = Worker(services.db.session, services.clock, services.calls)
            worker_task = asyncio.create_task(worker.run())
        # What is alive now (models, metadata, search definitions) lives as long as the
        # app: out of the collector's sight, a full collection no longer walks it all.
        # (No gc.collect() first: in a process that starts many apps, the tests, each
        # collection walked everything earlier tests left.)
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            if worker_task is not None:
                worker.stop()
                await worker_task
            if services.notify is not None:
                await services.notify.stop()
            if services.audit is not None and services.audit.writer is not None:
                await run_in_threadpool(services.audit.writer.stop)
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

    from renkei.api import auth, calls, fhir, health, oncall, subscriptions, ws
    from renkei.api.compression import CompressLarge
    from renkei.api.middleware import RequestMiddleware

    app.add_middleware(CompressLarge)  # inside: Server-Timing includes the compression
    app.add_middleware(RequestMiddleware)
    app.include_router(health.router)
    app.include_router(auth.router)  # before /fhir/{path}: it serves /fhir/.well-known/...
    app.include_router(fhir.router)
    app.include_router(oncall.router)
    app.include_router(ws.router)
    from renkei.api import collab, summary

    app.include_router(summary.router)
    app.include_router(collab.router)
    app.include_router(subscriptions.router)
    app.include_router(calls.router)
    from renkei.api import criteria

    app.include_router(criteria.router)
    from renkei.api.errors import install_error_handlers

    install_error_handlers(app)
    return app
