"""Urgent calls: intake, routing, the escalation state machine and its durable worker.

Public surface: :func:`build_runtime` (chosen in ``create_app``), the service functions,
the worker's :func:`run_once`, and the ports the merge connects (``renkei.calls.ports``).
"""

from __future__ import annotations

from typing import Any

from renkei.calls.channels import Channel, NullChannel, RecordingChannel, WebhookChannel
from renkei.calls.config import CallSettings
from renkei.calls.errors import (
    CallError,
    CallNotFound,
    DuplicateCall,
    InvalidCall,
    InvalidTransition,
    NotPermitted,
)
from renkei.calls.ports import CallPorts, default_ports
from renkei.calls.service import CallRuntime, install
from renkei.calls.worker import Worker, WorkerReport, run_once


def build_runtime(
    settings: CallSettings,
    engine: Any,
    *,
    ports: CallPorts | None = None,
    channels: dict[str, Channel] | None = None,
) -> CallRuntime:
    """Pick the ports and channels, then hook Task writes of ``engine`` into routing."""
    if channels is None:
        channels = {}
        if settings.webhook_url and settings.webhook_secret:
            hook = WebhookChannel(
                settings.webhook_url, settings.webhook_secret, timeout=settings.webhook_timeout
            )
            channels[hook.name] = hook
    runtime = CallRuntime(
        ports=ports or default_ports(settings), settings=settings, channels=channels
    )
    install(runtime, engine)
    return runtime


__all__ = [
    "CallError",
    "CallNotFound",
    "CallPorts",
    "CallRuntime",
    "CallSettings",
    "Channel",
    "DuplicateCall",
    "InvalidCall",
    "InvalidTransition",
    "NotPermitted",
    "NullChannel",
    "RecordingChannel",
    "WebhookChannel",
    "Worker",
    "WorkerReport",
    "build_runtime",
    "run_once",
]
