"""Outbound channels: the signed webhook contract, through httpx.MockTransport."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from renkei.calls.channels import ChannelError, Delivery, WebhookChannel, sign, verify
from renkei.config import Secret


def test_webhook_send_posts_signed_json_with_dedup_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    channel = WebhookChannel(
        "https://gw.example.jp/hook",
        Secret("s3cret"),
        client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    channel.send(
        Delivery("c1:1:page:webhook", {"id": "c1:1:page:webhook", "type": "urgent-call.page"})
    )
    request = seen[0]
    assert request.headers["x-renkei-delivery"] == "c1:1:page:webhook"
    assert orjson.loads(request.content)["type"] == "urgent-call.page"
    assert verify(
        "s3cret", request.content, request.headers["x-renkei-signature"], now=int(time.time())
    )
    assert not verify(
        "other", request.content, request.headers["x-renkei-signature"], now=int(time.time())
    )


def test_webhook_send_non_2xx_or_network_error_raises_channel_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down")

    for handler in (refuse, broken):
        channel = WebhookChannel(
            "http://gw", Secret("k"), client=httpx.Client(transport=httpx.MockTransport(handler))
        )
        with pytest.raises(ChannelError):
            channel.send(Delivery("k", {}))


def test_verify_rejects_old_or_malformed_signatures() -> None:
    body = b"{}"
    header = sign("k", body, 1_000)
    assert verify("k", body, header, now=1_100)
    assert not verify("k", body, header, now=1_000 + 301)
    assert not verify("k", body, "garbage", now=1_000)


def test_webhook_channel_checks_its_settings() -> None:
    with pytest.raises(ValueError):
        WebhookChannel("ftp://x", Secret("k"))
    with pytest.raises(ValueError):
        WebhookChannel("https://x", Secret(""))
