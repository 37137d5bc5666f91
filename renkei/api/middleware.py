"""Request id, timing, Prometheus metrics and the access log, as one ASGI middleware."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("renkei.access")

REQUEST_SECONDS = Histogram(
    "renkei_http_request_seconds",
    "HTTP request latency by route template and status class",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        if path.startswith("/fhir/{path"):
            # /fhir/Patient/123/_history -> /fhir/Patient: the type, never the id
            parts = str(scope.get("path", "")).split("/")
            return "/fhir/" + (parts[2] if len(parts) > 2 and parts[2] else "")
        return path
    return "unmatched"


class RequestMiddleware:
    """Adds ``X-Request-Id`` and ``Server-Timing``; records latency; logs one line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                elapsed_ms = (time.perf_counter() - started) * 1000
                extra: list[Any] = [
                    (b"x-request-id", request_id.encode("latin-1")),
                    (b"server-timing", f"app;dur={elapsed_ms:.2f}".encode()),
                ]
                existing = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"x-request-id", b"server-timing")
                ]
                message["headers"] = existing + extra
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            REQUEST_SECONDS.labels(scope["method"], route, f"{status // 100}xx").observe(elapsed)
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
