"""TEST ONLY: the app factory the multi-process urgent-call tests start under uvicorn.

``python -m uvicorn tests.e2e.calls_app:make_app --factory`` builds the normal app from
``RENKEI_*`` variables and, because a real OAuth server is not wired in yet, installs the
test-only bearer-token table from ``RENKEI_TEST_TOKENS_FILE`` (JSON: token -> Principal
fields). Never used outside tests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import FastAPI, Request

from renkei.app import build_services, create_app
from renkei.auth.principal import OPERATOR, Principal
from renkei.config import Settings
from renkei.fhir.policy import AllowAll
from tests.calls_support import install_test_tokens


def make_app() -> FastAPI:
    settings = Settings.from_env()
    # durability under test, not sharing (tests/integration/auth covers that)
    services = build_services(settings, policy=AllowAll())
    path = os.environ.get("RENKEI_TEST_TOKENS_FILE")
    if path:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        install_test_tokens(
            services,
            {
                tok: Principal(**{"scopes": frozenset({"user/*.cruds"}), **fields})
                for tok, fields in raw.items()
            },
        )
    # Test-only: requests without a token act as the local operator (set-up and the
    # nurse apps' Task creation); the token table above picks the doctors.
    by_token = services.authenticate

    async def authenticate(request: Request) -> Principal | None:
        if not request.headers.get("authorization"):
            return OPERATOR
        return await by_token(request) if by_token is not None else None

    services.authenticate = authenticate
    return create_app(settings, services=services)
