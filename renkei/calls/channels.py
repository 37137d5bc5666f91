"""Outbound notification channels: how a page leaves renkei for an SMS/phone gateway.

Deliveries are rows in ``call_delivery`` written in the same transaction as the step that
caused them (an outbox); the worker sends them at least once. Receivers deduplicate on the
``X-Renkei-Delivery`` header (also the ``id`` in the body), which is stable per
(call, step, kind, recipient).

Webhook contract (docs/urgent-calls.md): ``POST <url>`` with a JSON body, and
``X-Renkei-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``
keyed with the shared secret. Any 2xx is success; anything else is retried with back-off.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import orjson

from renkei.config import Secret


class ChannelError(Exception):
    """A delivery failed; the worker retries it later."""


@dataclass(frozen=True)
class Delivery:
    dedup_key: str
    payload: dict[str, Any]


class Channel(Protocol):
    name: str

    def send(self, delivery: Delivery) -> None:
        """Deliver or raise :class:`ChannelError`."""
        ...


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Renkei-Signature`` header value.

    >>> sign("s3cret", b'{"id":"c1:1:page"}', 1775000000)
    't=1775000000,v1=71c6c1d67fa80606456466f0755ee704e842121d8b9155e7fbdb278e3fecebf2'
    """
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, *, now: int, tolerance: int = 300) -> bool:
    """What a gateway does with the header: recompute, compare in constant time, check age."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - ts) > tolerance:
        return False
    expected = sign(secret, body, ts).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class WebhookChannel:
    """POSTs each delivery, signed, to one gateway URL."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: Secret,
        *,
        client: httpx.Client | None = None,
        timeout: float = 5.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("the webhook URL must be http(s)")
        if not secret:
            raise ValueError("the webhook needs a signing secret")
        self.url = url
        self._secret = secret
        self._client = client or httpx.Client(timeout=timeout)

    def send(self, delivery: Delivery) -> None:
        body = orjson.dumps(delivery.payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "renkei-calls/1",
            "X-Renkei-Delivery": delivery.dedup_key,
            "Idempotency-Key": delivery.dedup_key,
            "X-Renkei-Signature": sign(str(self._secret), body, int(time.time())),
        }
        try:
            resp = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ChannelError(f"webhook unreachable: {exc.__class__.__name__}: {exc}") from exc
        if not 200 <= resp.status_code < 300:
            raise ChannelError(f"webhook answered {resp.status_code}")


@dataclass
class RecordingChannel:
    """Keeps every delivery in memory; ``fail_next`` makes the next sends fail (tests)."""

    name: str = "recording"
    sent: list[Delivery] = field(default_factory=list)
    fail_next: int = 0

    def send(self, delivery: Delivery) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise ChannelError("recording channel told to fail")
        self.sent.append(delivery)


class NullChannel:
    """Accepts and drops everything (a deployment without an SMS/phone gateway)."""

    name = "null"

    def send(self, delivery: Delivery) -> None:
        return None


__all__ = [
    "Channel",
    "ChannelError",
    "Delivery",
    "NullChannel",
    "RecordingChannel",
    "WebhookChannel",
    "sign",
    "verify",
]
