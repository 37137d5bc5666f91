"""Tables of the urgent-call domain: the escalation state, its timeline, its deliveries.

The FHIR ``Task`` is the call's public face; these rows are the machinery behind it. The
``call`` row holds the state machine (see ``escalation.py``) and the due time of its next
step, so a worker in any process can pick it up after a crash. ``call_event`` is the
append-only timeline; a unique ``(call_id, step_key)`` makes "page this person for this
step" something the database refuses to record twice. Duty access (the doctor paged may
read the patient) is kept by the access package (``access_grant``), not here.
"""

from __future__ import annotations

import sqlalchemy as sa

from renkei.store.models import BigPk, Json, UtcDateTime, metadata

#: states in which a call still needs something to happen (see escalation.OPEN_STATES)
call = sa.Table(
    "call",
    metadata,
    #: the Task's id: one call per urgent-call Task
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("patient", sa.String(200), nullable=False),
    sa.Column("requester", sa.String(200), nullable=True),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("callback", sa.String(100), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    #: new | queued | notifying | acknowledged | accepted | resolved | cancelled | failed
    sa.Column("state", sa.String(16), nullable=False),
    #: the escalation chain, snapshotted when the call is routed (list of step dicts)
    sa.Column("chain", Json, nullable=False),
    sa.Column("step_index", sa.Integer, nullable=False, default=0),
    sa.Column("round", sa.Integer, nullable=False, default=0),
    sa.Column("max_rounds", sa.Integer, nullable=False, default=1),
    #: increases by one each time somebody new is paged; names the active step
    sa.Column("step_seq", sa.Integer, nullable=False, default=0),
    #: ``<call id>:<step_seq>``: the one step a worker may run now (stale work drops out)
    sa.Column("step_token", sa.String(100), nullable=True),
    sa.Column("owner", sa.String(200), nullable=True),
    sa.Column("clinic", sa.String(200), nullable=True),
    sa.Column("group_id", sa.String(200), nullable=True),
    sa.Column("coordinator", sa.String(200), nullable=True),
    sa.Column("route", sa.String(32), nullable=True),
    sa.Column("warning", sa.Text, nullable=True),
    sa.Column("next_due_at", UtcDateTime(), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("outcome", sa.String(40), nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    #: ``system|value`` of the Task's identifier: creation is idempotent on it
    sa.Column("idempotency_key", sa.String(500), nullable=True, unique=True),
    sa.Column("created_by", sa.String(200), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("closed_at", UtcDateTime(), nullable=True),
    #: the agreed escalation rule (renkei.criteria) that opened the call, if one did
    sa.Column("rule_id", sa.String(64), nullable=True),
    sa.Column("rule_name", sa.String(200), nullable=True),
    sa.Index("ix_call_due", "state", "next_due_at"),
    sa.Index("ix_call_owner_state", "owner", "state"),
    sa.Index("ix_call_rule_patient", "rule_id", "patient"),
    sa.Index("ix_call_created", "created_at"),
)

call_event = sa.Table(
    "call_event",
    metadata,
    sa.Column("pk", BigPk, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.String(64), sa.ForeignKey("call.id"), nullable=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    #: created, routed, queued, notified, acknowledged, accepted, rejected, escalated,
    #: handed_over, resolved, cancelled, failed, requester_told, overdue, published,
    #: criteria_refired (the rule that opened the call fired again while it was open)
    sa.Column("kind", sa.String(32), nullable=False),
    #: who did it: a principal subject, or ``system`` for the worker
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("target", sa.String(200), nullable=True),
    sa.Column("step_seq", sa.Integer, nullable=True),
    #: at most one event per (call, step_key): the database refuses a second page per step
    sa.Column("step_key", sa.String(100), nullable=True),
    sa.Column("detail", Json, nullable=True),
    sa.UniqueConstraint("call_id", "step_key", name="uq_call_event_step"),
    sa.Index("ix_call_event_call", "call_id", "pk"),
)

call_delivery = sa.Table(
    "call_delivery",
    metadata,
    sa.Column("pk", BigPk, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.String(64), sa.ForeignKey("call.id"), nullable=False),
    #: ``<call>:<step_seq>:<kind>:<channel>:<recipient>`` -- also sent to the receiver
    sa.Column("dedup_key", sa.String(300), nullable=False, unique=True),
    sa.Column("channel", sa.String(40), nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("delivered_at", UtcDateTime(), nullable=True),
    sa.Column("gave_up_at", UtcDateTime(), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    #: only rows still to send: delivered and given-up rows would fill the range for ever
    sa.Index(
        "ix_call_delivery_due",
        "next_attempt_at",
        postgresql_where=sa.text("delivered_at IS NULL AND gave_up_at IS NULL"),
        sqlite_where=sa.text("delivered_at IS NULL AND gave_up_at IS NULL"),
    ),
)

__all__ = ["call", "call_delivery", "call_event"]
