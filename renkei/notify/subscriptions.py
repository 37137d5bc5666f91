"""FHIR Subscriptions, topic-based, per the R5 Subscriptions Backport IG for R4.

A Subscription is stored as an ordinary FHIR resource through the engine; the write
listener here checks it and keeps the notifier's own row (``notify_subscription``) in step:
state the client may not set (status after handshake, error, event count, signing secret).
The sequencer calls :func:`match_events` in its transaction, so every matched event gets
its per-subscription ``eventNumber`` (1, 2, 3 ...) exactly once, in stream order.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.clock import Clock
from renkei.fhir.context import RequestContext
from renkei.fhir.policy import AccessPolicy
from renkei.notify.access import AccessChecker, snapshot
from renkei.notify.errors import InvalidBindingToken, InvalidSubscription, SubscriptionNotFound
from renkei.notify.models import binding_token, subscription, subscription_event
from renkei.notify.outbox import SequencedEvent, head_position, read_by_seqs
from renkei.notify.topics import TOPICS, get_topic, matches, parse_filters
from renkei.store.errors import StoreError
from renkei.store.repository import SqlRepository, StoredResource, instant

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
EXT_FILTER = f"{BACKPORT}/backport-filter-criteria"
EXT_PAYLOAD = f"{BACKPORT}/backport-payload-content"
EXT_HEARTBEAT = f"{BACKPORT}/backport-heartbeat-period"
EXT_MAX_COUNT = f"{BACKPORT}/backport-max-count"
STATUS_PROFILE = f"{BACKPORT}/backport-subscription-status-r4"

CHANNELS = ("rest-hook", "websocket")
CONTENTS = ("empty", "id-only", "full-resource")

#: resolves a stored owner snapshot to the principal to act as (None: anonymous)
SubscriberResolver = Callable[[dict[str, Any] | None], Any]


@dataclass(frozen=True)
class SubscriptionSpec:
    """What a Subscription resource asks for, checked."""

    topic: str
    filters: list[dict[str, str]]
    channel: str
    endpoint: str | None
    headers: list[str]
    content: str
    content_type: str
    heartbeat_seconds: int | None
    max_count: int
    requested_status: str


def _ext(element: dict[str, Any] | None, url: str) -> list[dict[str, Any]]:
    if not isinstance(element, dict):
        return []
    return [
        e for e in element.get("extension") or [] if isinstance(e, dict) and e.get("url") == url
    ]


def parse_subscription(content: dict[str, Any]) -> SubscriptionSpec:
    """Read a backport Subscription; raise :class:`InvalidSubscription` if it can't be served.

    >>> topic = "https://renkei.example.jp/fhir/SubscriptionTopic/observation"
    >>> flt = {"url": EXT_FILTER, "valueString": "Observation?patient=Patient/1"}
    >>> spec = parse_subscription({"resourceType": "Subscription", "status": "requested",
    ...   "reason": "r", "criteria": topic, "_criteria": {"extension": [flt]},
    ...   "channel": {"type": "rest-hook", "endpoint": "https://ehr.example.jp/hook",
    ...     "payload": "application/fhir+json",
    ...     "_payload": {"extension": [{"url": EXT_PAYLOAD, "valueCode": "id-only"}]}}})
    >>> spec.channel, spec.content, spec.filters
    ('rest-hook', 'id-only', [{'param': 'patient', 'value': 'Patient/1'}])
    """
    criteria = content.get("criteria") or ""
    topic = get_topic(criteria.strip())
    raw_filters = [e.get("valueString", "") for e in _ext(content.get("_criteria"), EXT_FILTER)]
    filters = parse_filters(topic, raw_filters)
    channel = content.get("channel") or {}
    ctype = _channel_type(channel)
    if ctype not in CHANNELS:
        raise InvalidSubscription(
            f"channel type {ctype!r} is not offered; use rest-hook or websocket",
            "Subscription.channel.type",
        )
    endpoint = channel.get("endpoint")
    if ctype == "rest-hook" and (
        not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://"))
    ):
        raise InvalidSubscription(
            "a rest-hook channel needs an http(s) endpoint", "Subscription.channel.endpoint"
        )
    payload_exts = _ext(channel.get("_payload"), EXT_PAYLOAD)
    content_level = payload_exts[0].get("valueCode", "id-only") if payload_exts else "id-only"
    if content_level not in CONTENTS:
        raise InvalidSubscription(
            f"payload content {content_level!r} is not one of {', '.join(CONTENTS)}",
            "Subscription.channel.payload",
        )
    content_type = channel.get("payload") or "application/fhir+json"
    if content_type.split(";")[0].strip() not in ("application/fhir+json", "application/json"):
        raise InvalidSubscription(
            "only application/fhir+json payloads are sent", "Subscription.channel.payload"
        )
    heartbeat = None
    for ext in _ext(channel, EXT_HEARTBEAT):
        heartbeat = int(ext.get("valueUnsignedInt") or 0) or None
    max_count = 1
    for ext in _ext(channel, EXT_MAX_COUNT):
        max_count = max(1, min(int(ext.get("valuePositiveInt") or 1), 100))
    headers = [h for h in channel.get("header") or [] if isinstance(h, str) and ":" in h]
    return SubscriptionSpec(
        topic=topic.url,
        filters=filters,
        channel=ctype,
        endpoint=endpoint if isinstance(endpoint, str) else None,
        headers=headers,
        content=content_level,
        content_type=content_type,
        heartbeat_seconds=heartbeat,
        max_count=max_count,
        requested_status=str(content.get("status") or "requested"),
    )


def _channel_type(channel: dict[str, Any]) -> str:
    ctype = channel.get("type")
    if isinstance(ctype, str):
        return ctype
    return ""


# -- registration ---------------------------------------------------------------------------


def register_write(
    session: Session, clock: Clock, ctx: RequestContext, stored: StoredResource
) -> None:
    """Keep ``notify_subscription`` in step with a Subscription write (create/update/delete)."""
    row = session.execute(sa.select(subscription).where(subscription.c.id == stored.res_id)).first()
    if stored.content is None:  # deleted
        if row is not None:
            session.execute(subscription.delete().where(subscription.c.id == stored.res_id))
        return
    spec = parse_subscription(stored.content)
    values: dict[str, Any] = {
        "topic": spec.topic,
        "filters": spec.filters,
        "channel": spec.channel,
        "endpoint": spec.endpoint,
        "headers": spec.headers,
        "content": spec.content,
        "content_type": spec.content_type,
        "heartbeat_seconds": spec.heartbeat_seconds,
        "max_count": spec.max_count,
    }
    if row is None:
        session.execute(
            subscription.insert().values(
                id=stored.res_id,
                status="off" if spec.requested_status == "off" else "requested",
                secret=_new_secret(),
                base_url=ctx.base_url,
                owner=snapshot(ctx.principal),
                events_since_start=0,
                start_seq=head_position(session),
                created_at=clock.now(),
                attempts=0,
                **values,
            )
        )
        return
    if spec.requested_status == "off":
        values["status"] = "off"
    elif row.status in ("error", "off") or row.channel != spec.channel:
        # the client asks again: start over with a handshake, keep the event count
        values.update(status="requested", error=None, attempts=0, failing_since=None)
        values["next_attempt_at"] = None
    session.execute(subscription.update().where(subscription.c.id == stored.res_id).values(values))


def _new_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def get_row(session: Session, sub_id: str, *, lock: bool = False) -> Any:
    stmt = sa.select(subscription).where(subscription.c.id == sub_id)
    if lock:
        stmt = stmt.with_for_update()
    row = session.execute(stmt).first()
    if row is None:
        raise SubscriptionNotFound(sub_id)
    return row


def set_status(
    session: Session,
    repo: SqlRepository,
    sub_id: str,
    status: str,
    error: str | None = None,
) -> None:
    """Change a subscription's status here and on the stored resource (a new version)."""
    session.execute(
        subscription.update().where(subscription.c.id == sub_id).values(status=status, error=error)
    )
    try:
        current = repo.read("Subscription", sub_id)
    except StoreError:
        return
    body = dict(current.content or {})
    if body.get("status") == status and body.get("error") == error:
        return
    body["status"] = status
    if error:
        body["error"] = error
    else:
        body.pop("error", None)
    repo.update(body, method="PUT")


# -- matching -------------------------------------------------------------------------------


def match_events(
    session: Session,
    checker: AccessChecker,
    resolve: SubscriberResolver,
    events: Sequence[SequencedEvent],
) -> int:
    """Give each event that a live subscription covers, and may see, its next eventNumber."""
    # two comparisons, not IN: an IN list is re-rendered on every execution, and this
    # runs on every sequencer round
    live = sa.or_(subscription.c.status == "requested", subscription.c.status == "active")
    subs = session.execute(sa.select(subscription).where(live)).all()
    if not subs or not events:
        return 0
    counters: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    principals = {s.id: resolve(s.owner) for s in subs}
    for ev in events:
        for sub in subs:
            topic = TOPICS.get(sub.topic)
            if topic is None or not matches(topic, list(sub.filters or []), ev.event):
                continue
            if not checker.can_see(principals[sub.id], ev.event):
                continue
            number = counters.get(sub.id, int(sub.events_since_start)) + 1
            counters[sub.id] = number
            rows.append(
                {
                    "subscription_id": sub.id,
                    "event_number": number,
                    "seq": ev.seq,
                    "status": "pending" if sub.channel == "rest-hook" else "stream",
                    "attempts": 0,
                }
            )
    if rows:
        session.execute(subscription_event.insert(), rows)
        for sub_id, number in counters.items():
            session.execute(
                subscription.update()
                .where(subscription.c.id == sub_id)
                .values(events_since_start=number)
            )
    return len(rows)


# -- notification bundles -------------------------------------------------------------------


@dataclass(frozen=True)
class Notified:
    """One event as it goes into a notification: its number, the event, the resource."""

    number: int
    event: SequencedEvent
    resource: StoredResource | None


def status_parameters(
    row: Any, kind: str, items: Sequence[Notified] = (), *, events_since: int | None = None
) -> dict[str, Any]:
    """The R4 SubscriptionStatus (a Parameters resource, backport-subscription-status-r4)."""
    base = row.base_url
    params: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{row.id}"}},
        {"name": "topic", "valueCanonical": row.topic},
        {"name": "status", "valueCode": row.status},
        {"name": "type", "valueCode": kind},
        {
            "name": "events-since-subscription-start",
            "valueString": str(row.events_since_start if events_since is None else events_since),
        },
    ]
    for item in items:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(item.number)},
            {"name": "timestamp", "valueInstant": instant(item.event.occurred_at)},
        ]
        ref = item.event.event.reference
        if ref and row.content != "empty":
            version = item.event.event.version_id
            focus = f"{base}/{ref}" + (f"/_history/{version}" if version else "")
            parts.append({"name": "focus", "valueReference": {"reference": focus}})
        params.append({"name": "notification-event", "part": parts})
    if row.error:
        params.append(
            {
                "name": "error",
                "valueCodeableConcept": {"text": row.error},
            }
        )
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": params,
    }


def notification_bundle(
    row: Any, kind: str, now: datetime, items: Sequence[Notified] = ()
) -> dict[str, Any]:
    """A notification Bundle (type history): the status, then the focus resources."""
    since = max([int(row.events_since_start), *(i.number for i in items)])
    status = status_parameters(row, kind, items, events_since=since)
    base = row.base_url
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{status['id']}",
            "resource": status,
            "request": {"method": "GET", "url": f"{base}/Subscription/{row.id}/$status"},
            "response": {"status": "200"},
        }
    ]
    if row.content != "empty":
        for item in items:
            ev = item.event.event
            if not ev.reference:
                continue
            entry: dict[str, Any] = {"fullUrl": f"{base}/{ev.reference}"}
            full = row.content == "full-resource" and item.resource is not None
            if full and ev.action != "delete" and item.resource is not None:
                entry["resource"] = item.resource.content
            method = {"create": "POST", "delete": "DELETE"}.get(ev.action, "PUT")
            entry["request"] = {
                "method": method,
                "url": ev.res_type if method == "POST" else ev.reference,
            }
            entry["response"] = {"status": {"POST": "201", "DELETE": "204"}.get(method, "200")}
            entries.append(entry)
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": instant(now)},
        "type": "history",
        "timestamp": instant(now),
        "entry": entries,
    }


def load_notified(
    session: Session,
    checker: AccessChecker,
    principal: Any,
    rows: Sequence[Any],
) -> tuple[list[Notified], list[int]]:
    """Events for subscription-event ``rows``: (visible now, numbers withheld by policy)."""
    by_seq = read_by_seqs(session, [r.seq for r in rows])
    visible: list[Notified] = []
    withheld: list[int] = []
    for r in rows:
        ev = by_seq.get(int(r.seq))
        if ev is None or not checker.can_see(principal, ev.event):
            withheld.append(int(r.event_number))
            continue
        visible.append(Notified(int(r.event_number), ev, checker.resource_of(ev.event)))
    return visible, withheld


def events_since(
    session: Session, sub_id: str, since: int, until: int | None, *, limit: int = 500
) -> list[Any]:
    stmt = sa.select(subscription_event).where(
        subscription_event.c.subscription_id == sub_id,
        subscription_event.c.event_number >= since,
    )
    if until is not None:
        stmt = stmt.where(subscription_event.c.event_number <= until)
    return list(session.execute(stmt.order_by(subscription_event.c.event_number).limit(limit)))


def events_for_seqs(session: Session, sub_ids: Sequence[str], after: int, until: int) -> list[Any]:
    """Subscription events of ``sub_ids`` whose stream position is in ``(after, until]``."""
    if not sub_ids:
        return []
    stmt = (
        sa.select(subscription_event)
        .where(
            subscription_event.c.subscription_id.in_(list(sub_ids)),
            subscription_event.c.seq > after,
            subscription_event.c.seq <= until,
        )
        .order_by(subscription_event.c.seq, subscription_event.c.event_number)
    )
    return list(session.execute(stmt))


# -- websocket binding tokens (channels.html#websockets) ------------------------------------


def issue_binding_token(
    session: Session, clock: Clock, sub_ids: Sequence[str], owner: Any, ttl: timedelta
) -> tuple[str, datetime]:
    """A short-lived token a websocket client sends as ``bind-with-token <token>``."""
    for sub_id in sub_ids:
        row = get_row(session, sub_id)
        if row.channel != "websocket":
            raise InvalidSubscription(
                f"Subscription/{sub_id} does not use the websocket channel",
                "Subscription.channel.type",
            )
    token = secrets.token_urlsafe(32)
    expires = clock.now() + ttl
    session.execute(
        binding_token.insert().values(
            token_hash=_hash(token),
            subscription_ids=list(sub_ids),
            owner=snapshot(owner),
            expires_at=expires,
        )
    )
    return token, expires


def redeem_binding_token(session: Session, clock: Clock, token: str) -> list[Any]:
    """The subscriptions a valid token binds; raises :class:`InvalidBindingToken`."""
    row = session.execute(
        sa.select(binding_token).where(binding_token.c.token_hash == _hash(token))
    ).first()
    if row is None or row.expires_at <= clock.now():
        raise InvalidBindingToken("the binding token is unknown or expired")
    subs = []
    for sub_id in row.subscription_ids:
        try:
            subs.append(get_row(session, sub_id))
        except SubscriptionNotFound:
            continue
    if not subs:
        raise InvalidBindingToken("the token's subscriptions no longer exist")
    return subs


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_checker(session: Session, policy: AccessPolicy, clock: Clock) -> AccessChecker:
    return AccessChecker(session, policy, clock)


__all__ = [
    "BACKPORT",
    "CHANNELS",
    "CONTENTS",
    "EXT_FILTER",
    "EXT_HEARTBEAT",
    "EXT_MAX_COUNT",
    "EXT_PAYLOAD",
    "STATUS_PROFILE",
    "Notified",
    "SubscriberResolver",
    "SubscriptionSpec",
    "events_for_seqs",
    "events_since",
    "get_row",
    "issue_binding_token",
    "load_notified",
    "match_events",
    "notification_bundle",
    "parse_subscription",
    "redeem_binding_token",
    "register_write",
    "set_status",
    "status_parameters",
]
