"""``/ws``: websockets for people, and the FHIR Subscriptions websocket channel.

Authentication never puts a token in the URL. A person's client either offers the
subprotocols ``renkei.v1`` and ``bearer.<access token>`` (the server answers ``renkei.v1``),
or sends ``{"type": "auth", "token": "..."}`` as its first message. A FHIR client sends
``bind-with-token <token>`` (a token from ``$get-ws-binding-token``) instead.
docs/notifications.md describes the messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from renkei.notify.errors import InvalidBindingToken, ProtocolError
from renkei.notify.hub import CLOSE_PROTOCOL, CLOSE_UNAUTHENTICATED, Connection
from renkei.notify.subscriptions import redeem_binding_token
from renkei.notify.tokens import authenticate_token

log = logging.getLogger(__name__)
router = APIRouter()

SUBPROTOCOL = "renkei.v1"
_BEARER_PREFIX = "bearer."
FIRST_MESSAGE_SECONDS = 10.0


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    services = websocket.app.state.services
    notify = services.notify
    offered: list[str] = list(websocket.scope.get("subprotocols") or [])
    token = next((p[len(_BEARER_PREFIX) :] for p in offered if p.startswith(_BEARER_PREFIX)), None)
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)

    async def send(text: str) -> None:
        await websocket.send_text(text)

    async def close(code: int, reason: str) -> None:
        await websocket.close(code=code, reason=reason)

    conn: Connection | None = None
    try:
        if token is None:
            first = await asyncio.wait_for(websocket.receive_text(), FIRST_MESSAGE_SECONDS)
            if first.startswith("bind-with-token"):
                conn = await _bind(services, websocket, first, send, close, None)
                if conn is None:
                    return
                await _fhir_loop(services, websocket, conn)
                return
            token = _auth_token(first)
        principal = await run_in_threadpool(authenticate_token, services, token or "")
        if principal is None:
            await websocket.close(CLOSE_UNAUTHENTICATED, "invalid, expired or revoked token")
            return
        conn = notify.hub.connect(principal, send, close, token=token)
        notify.hub.reply(
            conn,
            {
                "type": "welcome",
                "position": conn.position,
                "heartbeat": notify.config.hub.heartbeat_seconds,
            },
        )
        await _people_loop(services, websocket, conn)
    except (TimeoutError, ProtocolError) as exc:
        reason = "no authentication message" if isinstance(exc, asyncio.TimeoutError) else str(exc)
        await _close_quietly(websocket, CLOSE_PROTOCOL if conn else CLOSE_UNAUTHENTICATED, reason)
    except WebSocketDisconnect:
        pass
    finally:
        if conn is not None:
            await notify.hub.disconnect(conn)


def _auth_token(text: str) -> str:
    message = _json(text)
    if message.get("type") != "auth" or not isinstance(message.get("token"), str):
        raise ProtocolError('the first message must be {"type": "auth", "token": "..."}')
    token: str = message["token"]
    return token


def _json(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("messages are JSON objects") from exc
    if not isinstance(value, dict):
        raise ProtocolError("messages are JSON objects")
    return value


async def _people_loop(services: Any, websocket: WebSocket, conn: Connection) -> None:
    hub = services.notify.hub
    while not conn.closed:
        text = await websocket.receive_text()
        try:
            message = _json(text)
            if message.get("type") == "auth":
                token = _auth_token(text)
                principal = await run_in_threadpool(authenticate_token, services, token)
                if principal is None:
                    await hub.drop(conn, CLOSE_UNAUTHENTICATED, "invalid, expired or revoked token")
                    return
                await hub.reauthorize(conn, principal, token)
                hub.reply(conn, {"type": "authenticated"})
                continue
            reply = await hub.handle(conn, message)
        except ProtocolError as exc:
            hub.reply(conn, {"type": "error", "message": str(exc)})
            continue
        if reply is not None:
            hub.reply(conn, reply)


async def _bind(
    services: Any,
    websocket: WebSocket,
    text: str,
    send: Any,
    close: Any,
    conn: Connection | None,
) -> Connection | None:
    notify = services.notify
    token = text[len("bind-with-token") :].strip()

    def _redeem() -> list[Any]:
        with services.db.session() as session:
            return redeem_binding_token(session, services.clock, token)

    try:
        rows = await run_in_threadpool(_redeem)
    except InvalidBindingToken as exc:
        if conn is None:
            await websocket.close(CLOSE_UNAUTHENTICATED, str(exc))
        else:
            notify.hub.reply(conn, {"type": "error", "message": str(exc)})
        return conn
    if conn is None:
        conn = notify.hub.connect(None, send, close)
    await notify.hub.bind(conn, rows)
    return conn


async def _fhir_loop(services: Any, websocket: WebSocket, conn: Connection) -> None:
    while not conn.closed:
        text = await websocket.receive_text()
        if text.startswith("bind-with-token"):
            await _bind(services, websocket, text, None, None, conn)


async def _close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):  # already closed
        await websocket.close(code, reason[:120])


__all__ = ["SUBPROTOCOL", "router"]
