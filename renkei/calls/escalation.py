"""The escalation state machine, as pure functions: (state, input, now) -> (state, effects).

Nothing here touches a database or a clock; ``service.py`` loads a :class:`CallState` under
a row lock, calls one function, and persists the new state and its effects in the same
transaction. That is what makes a crash harmless: either the whole step committed or none
of it did.

States::

    new ─route─▶ notifying ─ack─▶ acknowledged ─accept─▶ accepted ─resolve─▶ resolved
     │            │   ▲  ▲                                   │
     │   timeout/ │   │  └───── reject / handover ───────────┘
     │   reject   ▼   │ (next step; after the last, the next round)
     │          escalate
     │            └── no step left ──▶ failed  (requester told: call 119)
     └─ routine, after hours ─▶ queued ─office hours start─▶ notifying
    every open state ─cancel (requester)─▶ cancelled
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

#: a worker must act on these when ``next_due_at`` passes
TIMED_STATES = frozenset({"new", "queued", "notifying"})
OPEN_STATES = TIMED_STATES | {"acknowledged", "accepted"}
FINAL_STATES = frozenset({"resolved", "cancelled", "failed"})
OUTCOMES = frozenset({"visit", "phone-advice", "ambulance", "hospital-admission"})

FAILED_MESSAGE = (
    "当番医に連絡がつきませんでした。直ちに119番に通報してください。"
    " / No doctor could be reached. Call 119 (ambulance) now."
)


@dataclass(frozen=True)
class Step:
    """One rung of the chain: who is paged and how long they have to acknowledge."""

    role: str  # primary-doctor | clinic | duty-primary | duty-backup | coordinator | handover
    target: str
    timeout_s: float

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "target": self.target, "timeout_s": self.timeout_s}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Step:
        return cls(str(data["role"]), str(data["target"]), float(data["timeout_s"]))


@dataclass(frozen=True)
class CallState:
    state: str
    chain: tuple[Step, ...] = ()
    step_index: int = 0
    round: int = 0
    max_rounds: int = 1
    step_seq: int = 0
    owner: str | None = None
    next_due_at: datetime | None = None


# -- effects: what the service must do besides saving the state ------------------------------


@dataclass(frozen=True)
class Record:
    """Append a timeline event; ``key`` (unique per call) makes it happen at most once."""

    kind: str
    key: str
    target: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """Notify ``target`` that the call is theirs now (bus + outbound channels + access)."""

    target: str
    step_seq: int
    role: str
    round: int
    timeout_s: float


@dataclass(frozen=True)
class TellRequester:
    message: str


@dataclass(frozen=True)
class Close:
    """The call is over: end duty access (after a grace period)."""


Effect = Record | Page | TellRequester | Close
Transition = tuple[CallState, list[Effect]]


class TransitionRefused(Exception):
    """The input does not apply to the call in its present state."""


# -- transitions ----------------------------------------------------------------------------


def start(
    s: CallState, chain: tuple[Step, ...], max_rounds: int, now: datetime, route: str
) -> Transition:
    """Route a new (or queued) call onto its chain snapshot and page the first step.

    >>> from datetime import UTC
    >>> t0 = datetime(2026, 4, 1, tzinfo=UTC)
    >>> s, fx = start(CallState("new"), (Step("duty-primary", "PractitionerRole/a", 300),), 1,
    ...               t0, "on-duty")
    >>> s.state, s.owner, s.next_due_at.isoformat(), [type(e).__name__ for e in fx]
    ('notifying', 'PractitionerRole/a', '2026-04-01T00:05:00+00:00', ['Record', 'Page'])
    """
    if s.state not in ("new", "queued"):
        raise TransitionRefused(f"a {s.state} call is already routed")
    base = replace(s, chain=chain, max_rounds=max_rounds, step_index=0, round=0)
    if not chain:
        return _fail(base, now, "no one to route the call to")
    first = chain[0]
    seq = s.step_seq + 1
    new = replace(
        base,
        state="notifying",
        step_seq=seq,
        owner=first.target,
        next_due_at=now + timedelta(seconds=first.timeout_s),
    )
    return new, [
        Record("routed", f"routed:{seq}", first.target, {"route": route, "role": first.role}),
        _page(new),
    ]


def queue(s: CallState, owner: str | None, until: datetime) -> Transition:
    """Hold a routine after-hours call for the primary doctor's next office hours."""
    if s.state != "new":
        raise TransitionRefused(f"a {s.state} call cannot be queued")
    new = replace(s, state="queued", owner=owner, next_due_at=until)
    return new, [Record("queued", "queued", owner, {"until": until.isoformat()})]


def timeout(s: CallState, now: datetime) -> Transition:
    """The active step was not acknowledged in time: escalate to the next step."""
    if s.state != "notifying":
        raise TransitionRefused(f"a {s.state} call has no step running")
    if s.next_due_at is not None and now < s.next_due_at:
        raise TransitionRefused("the step is not due yet")
    return _advance(s, now, "timeout")


def acknowledge(s: CallState, by: str) -> Transition:
    """The paged person has seen the call; escalation stops (idempotent for the owner)."""
    if s.state == "acknowledged" and s.owner == by:
        return s, []
    if s.state != "notifying":
        raise TransitionRefused(f"a {s.state} call cannot be acknowledged")
    new = replace(s, state="acknowledged", next_due_at=None)
    return new, [Record("acknowledged", f"acknowledged:{s.step_seq}", s.owner, {"by": by})]


def accept(s: CallState, by: str) -> Transition:
    """The owner takes responsibility for acting on the call (idempotent)."""
    if s.state == "accepted":
        return s, []
    if s.state not in ("notifying", "acknowledged"):
        raise TransitionRefused(f"a {s.state} call cannot be accepted")
    new = replace(s, state="accepted", next_due_at=None)
    return new, [Record("accepted", f"accepted:{s.step_seq}", s.owner, {"by": by})]


def reject(s: CallState, by: str, reason: str, now: datetime) -> Transition:
    """The owner cannot take it: escalate at once, without waiting for the timeout."""
    if s.state not in ("notifying", "acknowledged", "accepted"):
        raise TransitionRefused(f"a {s.state} call cannot be rejected")
    record = Record("rejected", f"rejected:{s.step_seq}", s.owner, {"by": by, "reason": reason})
    new, effects = _advance(s, now, "rejected")
    return new, [record, *effects]


def handover(s: CallState, by: str, to: str, now: datetime, note: str | None = None) -> Transition:
    """Pass the call to another doctor, who must acknowledge it like any step.

    The handover is inserted into the chain after the current step, so if the new doctor
    does not answer, escalation carries on where it was.
    """
    if s.state not in ("notifying", "acknowledged", "accepted"):
        raise TransitionRefused(f"a {s.state} call cannot be handed over")
    if to == s.owner:
        raise TransitionRefused("the call is already with that doctor")
    current = s.chain[s.step_index] if s.chain else None
    timeout_s = current.timeout_s if current else 300.0
    idx = s.step_index + 1
    chain = (*s.chain[:idx], Step("handover", to, timeout_s), *s.chain[idx:])
    seq = s.step_seq + 1
    new = replace(
        s,
        state="notifying",
        chain=chain,
        step_index=idx,
        step_seq=seq,
        owner=to,
        next_due_at=now + timedelta(seconds=timeout_s),
    )
    detail: dict[str, Any] = {"by": by, "from": s.owner}
    if note:
        detail["note"] = note
    return new, [Record("handed_over", f"handed_over:{seq}", to, detail), _page(new)]


def resolve(s: CallState, by: str, outcome: str, note: str | None) -> Transition:
    if s.state not in ("notifying", "acknowledged", "accepted"):
        raise TransitionRefused(f"a {s.state} call cannot be resolved")
    if outcome not in OUTCOMES:
        raise TransitionRefused(f"outcome must be one of {sorted(OUTCOMES)}")
    new = replace(s, state="resolved", next_due_at=None)
    detail: dict[str, Any] = {"by": by, "outcome": outcome}
    if note:
        detail["note"] = note
    return new, [Record("resolved", "resolved", s.owner, detail), Close()]


def cancel(s: CallState, by: str, reason: str | None) -> Transition:
    if s.state not in OPEN_STATES:
        raise TransitionRefused(f"a {s.state} call cannot be cancelled")
    new = replace(s, state="cancelled", next_due_at=None)
    detail: dict[str, Any] = {"by": by}
    if reason:
        detail["reason"] = reason
    return new, [Record("cancelled", "cancelled", s.owner, detail), Close()]


# -- helpers --------------------------------------------------------------------------------


def _page(s: CallState) -> Page:
    step = s.chain[s.step_index]
    return Page(step.target, s.step_seq, step.role, s.round, step.timeout_s)


def _advance(s: CallState, now: datetime, cause: str) -> Transition:
    """Move to the next step; after the last step start the next round; then fail."""
    idx, rnd = s.step_index + 1, s.round
    if idx >= len(s.chain):
        idx, rnd = 0, rnd + 1
    if not s.chain or rnd >= s.max_rounds:
        return _fail(s, now, f"{cause}; every step of {s.max_rounds} round(s) was tried")
    step = s.chain[idx]
    seq = s.step_seq + 1
    new = replace(
        s,
        state="notifying",
        step_index=idx,
        round=rnd,
        step_seq=seq,
        owner=step.target,
        next_due_at=now + timedelta(seconds=step.timeout_s),
    )
    detail = {"from": s.owner, "cause": cause, "role": step.role, "round": rnd}
    return new, [Record("escalated", f"escalated:{seq}", step.target, detail), _page(new)]


def _fail(s: CallState, now: datetime, why: str) -> Transition:
    new = replace(s, state="failed", next_due_at=None)
    return new, [
        Record("failed", "failed", s.owner, {"why": why, "message": FAILED_MESSAGE}),
        TellRequester(FAILED_MESSAGE),
        Close(),
    ]


__all__ = [
    "FAILED_MESSAGE",
    "FINAL_STATES",
    "OPEN_STATES",
    "OUTCOMES",
    "TIMED_STATES",
    "CallState",
    "Close",
    "Effect",
    "Page",
    "Record",
    "Step",
    "TellRequester",
    "Transition",
    "TransitionRefused",
    "accept",
    "acknowledge",
    "cancel",
    "handover",
    "queue",
    "reject",
    "resolve",
    "start",
    "timeout",
]
