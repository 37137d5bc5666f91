"""``/notify/...``: JSON views of the notifier for operators and console (FHIR lives in /fhir).

Subscriptions themselves are FHIR resources (``/fhir/Subscription``) with the backport
operations ``$topic-list``, ``$status``, ``$events``, ``$get-ws-binding-token``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from renkei.api.deps import get_services
from renkei.notify.models import subscription, subscription_event
from renkei.notify.outbox import head_position, pending_count
from renkei.notify.topics import TOPICS

router = APIRouter(prefix="/notify", tags=["notifications"])


@router.get("/topics", summary="SubscriptionTopics offered, with their filters")
def topics() -> dict[str, Any]:
    return {"topics": [t.to_json() for t in TOPICS.values()]}


@router.get("/status", summary="Stream position, queue depths and subscription states")
async def status(services: Any = Depends(get_services)) -> dict[str, Any]:
    def _read() -> dict[str, Any]:
        with services.db.session() as session:
            states = dict(
                session.execute(
                    sa.select(subscription.c.status, sa.func.count()).group_by(
                        subscription.c.status
                    )
                ).all()
            )
            pending = session.execute(
                sa.select(sa.func.count())
                .select_from(subscription_event)
                .where(subscription_event.c.status == "pending")
            ).scalar_one()
            return {
                "head": head_position(session),
                "outboxPending": pending_count(session),
                "restHookPending": int(pending),
                "subscriptions": {k: int(v) for k, v in states.items()},
            }

    body = await run_in_threadpool(_read)
    hub = services.notify.hub
    body["websocketConnections"] = len(hub.connections)
    body["hubPosition"] = hub.position
    body["bus"] = services.notify.bus_kind
    return body


__all__ = ["router"]
