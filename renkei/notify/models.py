"""The notify package's tables: the outbox, FHIR subscription state, and its event log.

``notify_outbox`` rows are inserted in the writer's transaction with ``seq`` NULL; the single
sequencer (see ``outbox.sequence_pending`` and docs/decisions/notify-event-ordering.md) gives
each committed row its stream position ``seq`` later, in commit-visible order.
"""

from __future__ import annotations

import sqlalchemy as sa

from renkei.store.models import BigPk, Json, UtcDateTime, metadata

outbox = sa.Table(
    "notify_outbox",
    metadata,
    sa.Column("id", BigPk, primary_key=True, autoincrement=True),
    #: stream position, assigned after commit by the sequencer; NULL until then
    sa.Column("seq", sa.BigInteger, nullable=True, unique=True),
    #: "resource" (a FHIR write) or "call" (urgent-call state change)
    sa.Column("kind", sa.String(16), nullable=False),
    #: create | update | delete for resources; the transition name for calls
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("res_type", sa.String(64), nullable=True),
    sa.Column("res_id", sa.String(64), nullable=True),
    sa.Column("version_id", sa.Integer, nullable=True),
    #: "Patient/<id>" the event is about, if any (drives patient topics and access checks)
    sa.Column("patient", sa.String(140), nullable=True),
    #: references of the people/organisations addressed ("my calls")
    sa.Column("audience", Json, nullable=False),
    #: small extra facts (call state, codes); never a whole resource
    sa.Column("data", Json, nullable=False),
    sa.Column("occurred_at", UtcDateTime(), nullable=False),
    sa.Column("sequenced_at", UtcDateTime(), nullable=True),
)
sa.Index(
    "ix_notify_outbox_unsequenced",
    outbox.c.id,
    postgresql_where=outbox.c.seq.is_(None),
    sqlite_where=outbox.c.seq.is_(None),
)

subscription = sa.Table(
    "notify_subscription",
    metadata,
    #: the FHIR Subscription's id
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("topic", sa.String(400), nullable=False),
    #: [{"param": "patient", "value": "Patient/1"}...]
    sa.Column("filters", Json, nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),  # rest-hook | websocket
    sa.Column("endpoint", sa.String(1000), nullable=True),
    sa.Column("headers", Json, nullable=False),
    sa.Column("content", sa.String(16), nullable=False),  # empty | id-only | full-resource
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("heartbeat_seconds", sa.Integer, nullable=True),
    sa.Column("max_count", sa.Integer, nullable=False, default=1),
    #: requested | active | error | off (authoritative; mirrored onto the resource)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    #: HMAC key for rest-hook signatures (base64url)
    sa.Column("secret", sa.String(100), nullable=False),
    #: FHIR base URL the subscriber used (fullUrl in notifications)
    sa.Column("base_url", sa.String(400), nullable=False),
    #: snapshot of the creating principal; access is re-checked at delivery time
    sa.Column("owner", Json, nullable=True),
    sa.Column("events_since_start", sa.BigInteger, nullable=False, default=0),
    #: outbox position at creation: events before it are not for this subscription
    sa.Column("start_seq", sa.BigInteger, nullable=False, default=0),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    #: rest-hook back-off: next attempt not before, first failure of the current streak
    sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
    sa.Column("failing_since", UtcDateTime(), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_delivered_at", UtcDateTime(), nullable=True),
    #: rest-hook heartbeatPeriod: next heartbeat if nothing else is sent before
    sa.Column("heartbeat_due_at", UtcDateTime(), nullable=True),
)

subscription_event = sa.Table(
    "notify_subscription_event",
    metadata,
    sa.Column(
        "subscription_id",
        sa.String(64),
        sa.ForeignKey("notify_subscription.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    #: eventNumber: 1, 2, 3 ... per subscription, no gaps at assignment
    sa.Column("event_number", sa.BigInteger, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    #: pending | delivered | withheld | failed | stream (websocket: no per-event state)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("delivered_at", UtcDateTime(), nullable=True),
    sa.Index("ix_notify_sub_event_seq", "seq"),
    sa.Index("ix_notify_sub_event_status", "subscription_id", "status", "event_number"),
    #: the rest-hook's work list and the pending gauge: small, however long the history
    sa.Index(
        "ix_notify_sub_event_pending",
        "subscription_id",
        "event_number",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
)

binding_token = sa.Table(
    "notify_binding_token",
    metadata,
    #: sha256 of the token; the token itself is only ever in the client's hands
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("subscription_ids", Json, nullable=False),
    sa.Column("owner", Json, nullable=True),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
)

__all__ = ["binding_token", "outbox", "subscription", "subscription_event"]
