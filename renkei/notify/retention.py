"""How long the event stream is kept: old, settled events are deleted so the outbox does not
grow for ever (a region writes about a million events a day).

An event goes once it was sequenced more than ``keep`` ago, unless a rest-hook delivery of
it, or of anything before it, is still pending: the stream stays one contiguous stretch of
positions up to the head. The newest event always stays, because the next position is
counted from it. A websocket client that resumes from before the oldest kept position is
told it is too far behind (the same as beyond ``max_resume``) and reloads by the FHIR API;
``Subscription/$events`` answers for the numbers still kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.notify.models import outbox, subscription_event
from renkei.store.db import Database

#: positions deleted per transaction: short locks, and progress survives an interruption
CHUNK = 10_000


@dataclass(frozen=True)
class Pruned:
    events: int
    subscription_events: int
    #: the oldest position kept (None: the stream is empty)
    floor: int | None


def oldest_position(session: Session) -> int | None:
    """The lowest position still in the outbox (an index lookup)."""
    value = session.execute(sa.select(sa.func.min(outbox.c.seq))).scalar_one()
    return None if value is None else int(value)


def prune(db: Database, now: datetime, keep: timedelta, *, chunk: int = CHUNK) -> Pruned:
    """Delete what is older than ``keep`` and settled, ``chunk`` positions per transaction."""
    if keep <= timedelta(0):
        raise ValueError("keep must be positive")
    # Found once: later pending deliveries can only be of events after today's head.
    with db.session() as session:
        bound = _last_prunable(session, now - keep)
    events = sub_events = 0
    while True:
        with db.session(write=True) as session:
            low = oldest_position(session)
            if bound is None or low is None or bound < low:
                return Pruned(events, sub_events, low)
            upto = min(bound, low + chunk - 1)
            sub_events += _delete(session, subscription_event, upto)
            events += _delete(session, outbox, upto)


def _delete(session: Session, table: sa.Table, upto: int) -> int:
    result = session.execute(table.delete().where(table.c.seq <= upto))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _last_prunable(session: Session, cutoff: datetime) -> int | None:
    """The highest position that may go: sequenced before ``cutoff``, before the head, and
    before the first rest-hook delivery still pending."""
    head = session.execute(sa.select(sa.func.max(outbox.c.seq))).scalar_one()
    if head is None:
        return None
    bound = _sequenced_before(session, cutoff, int(head) - 1)
    pending = session.execute(
        sa.select(sa.func.min(subscription_event.c.seq)).where(
            subscription_event.c.status == "pending"
        )
    ).scalar_one()
    if bound is not None and pending is not None:
        bound = min(bound, int(pending) - 1)
    return bound


def _sequenced_before(session: Session, cutoff: datetime, upto: int) -> int | None:
    """The highest position ``<= upto`` sequenced before ``cutoff``, by binary search over
    the position index (positions are handed out in time order; no index on the time)."""

    def at_or_after(seq: int) -> tuple[int, datetime] | None:
        row = session.execute(
            sa.select(outbox.c.seq, outbox.c.sequenced_at)
            .where(outbox.c.seq >= seq)
            .order_by(outbox.c.seq)
            .limit(1)
        ).first()
        return None if row is None else (int(row.seq), row.sequenced_at)

    first = at_or_after(0)
    if first is None or first[0] > upto or first[1] >= cutoff:
        return None
    lo, hi = first[0], upto  # lo is old enough; the answer is in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        found = at_or_after(mid)
        if found is not None and found[0] <= hi and found[1] < cutoff:
            lo = found[0]
        else:
            hi = mid - 1
    return lo


__all__ = ["CHUNK", "Pruned", "oldest_position", "prune"]
