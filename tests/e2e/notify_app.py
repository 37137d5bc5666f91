"""App factory for the multi-process notify tests (``uvicorn --factory``). Test-only.

The websocket token verifier is a token map from ``RENKEI_TEST_WS_TOKENS`` (JSON:
token -> principal fields) standing in for the auth package's JWT verification, and
``RENKEI_TEST_RESTHOOK_BACKOFF`` shortens the first rest-hook back-off so retries happen
within a test's seconds.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

from fastapi import FastAPI

from renkei.app import build_services, create_app
from renkei.auth.principal import Principal
from renkei.config import Settings
from renkei.notify import NotifyConfig, RestHookSettings
from renkei.notify.hub import HubSettings


def make_app() -> FastAPI:
    settings = Settings.from_env()
    raw = json.loads(os.environ.get("RENKEI_TEST_WS_TOKENS", "{}"))
    tokens = {t: Principal(subject=f"user-{t}", kind="user", **fields) for t, fields in raw.items()}
    backoff = float(os.environ.get("RENKEI_TEST_RESTHOOK_BACKOFF", "5"))
    config = NotifyConfig(
        hub=HubSettings(heartbeat_seconds=1.0),
        resthook=RestHookSettings(
            first_backoff=timedelta(seconds=backoff), max_backoff=timedelta(seconds=backoff * 4)
        ),
        resthook_poll_seconds=0.1,
        redis_url=str(settings.redis_url) if settings.redis_url else None,
    )
    services = build_services(
        settings, notify_config=config, notify_kwargs={"token_verifier": tokens.get}
    )
    return create_app(settings, services=services)
