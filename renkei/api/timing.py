"""``Server-Timing: app;dur=<ms>`` on every HTTP response.

The time is measured inside the process, from the request's arrival at the app to the start
of its response, so benchmarks (``make bench``) and operators can tell server time from
network and client time (https://www.w3.org/TR/server-timing/). A pure ASGI middleware: it
adds one header and no per-request task or buffering.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ServerTimingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed_ms = (time.perf_counter() - start) * 1000
                headers: list[Any] = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={elapsed_ms:.3f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_timing)


def app_duration_ms(header: str | None) -> float | None:
    """The ``app`` duration from a Server-Timing header value.

    >>> app_duration_ms("db;dur=1.5, app;dur=2.250")
    2.25
    """
    for metric in (header or "").split(","):
        name, _, params = metric.strip().partition(";")
        if name.strip() != "app":
            continue
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur":
                try:
                    return float(value)
                except ValueError:
                    return None
    return None


__all__ = ["ServerTimingMiddleware", "app_duration_ms"]
