"""gzip for large responses (a CapabilityStatement is 600 KB, a page of Observations 50 KB),
for the clients that ask for it: nurses' tablets on mobile networks, EHRs across a region.

Never for ``/auth``: a response that carries a token, next to anything the caller put in
the request, is what length side channels (BREACH) read. Small bodies are sent as they are.
"""

from __future__ import annotations

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

#: bodies below this go uncompressed (a read by id: 1-3 KB, not worth the CPU)
MINIMUM_SIZE = 4096
#: level 5 gets within a few percent of 9's size for JSON at a fraction of the CPU
LEVEL = 5


class CompressLarge:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=MINIMUM_SIZE, compresslevel=LEVEL)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not str(scope.get("path", "")).startswith("/auth"):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)
