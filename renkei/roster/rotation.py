"""Rotation (輪番): which doctor of a layer holds each piece of duty time.

A layer hands over at its handoff time: every day (``per: day``), every week on the
handoff weekday (``per: week``), or at the start of every duty window (``per: window``).
Each handoff period that contains duty consumes one turn, so days without duty do not
skip anybody.

>>> from renkei.roster.config import Layer
>>> from renkei.roster.windows import Window
>>> tz = ZoneInfo("Asia/Tokyo")
>>> def night(d):
...     return Window(datetime(2026, 4, d, 18, tzinfo=tz),
...                   datetime(2026, 4, d + 1, 9, tzinfo=tz), ())
>>> layer = Layer(("PractitionerRole/a", "PractitionerRole/b"))
>>> pieces = assign(layer, [night(1), night(2), night(3)], tz, RotationState())
>>> [p.assignee for p in pieces]
['PractitionerRole/a', 'PractitionerRole/b', 'PractitionerRole/a']
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from renkei.roster.config import Layer
from renkei.roster.windows import Window, local_instant


@dataclass(frozen=True)
class Piece:
    start: datetime
    end: datetime
    assignee: str
    #: the next doctor in the order: stands in when a back-up would back up themself
    alternate: str | None = None


@dataclass
class RotationState:
    """Where a layer's rotation stands; carried across chunks and unchanged plan versions."""

    signature: tuple[Any, ...] | None = None
    turn: int = -1
    slot: datetime | None = None
    #: end of the last window seen: a window starting there continues it (chunk seams)
    last_end: datetime | None = None


def slot_start(layer: Layer, t: datetime, tz: ZoneInfo) -> datetime:
    """The handoff instant that opened the handoff period containing ``t``."""
    local_day = t.astimezone(tz).date()
    candidate = local_instant(local_day, layer.handoff, tz)
    if candidate > t:
        local_day -= timedelta(days=1)
        candidate = local_instant(local_day, layer.handoff, tz)
    if layer.per == "week":
        back = (local_day.weekday() - layer.handoff_day) % 7
        if back:
            candidate = local_instant(local_day - timedelta(days=back), layer.handoff, tz)
    return candidate


def _next_slot(layer: Layer, slot: datetime, tz: ZoneInfo) -> datetime:
    step = 7 if layer.per == "week" else 1
    # re-anchor on the wall clock so DST days stay at the handoff time
    return local_instant(slot.astimezone(tz).date() + timedelta(days=step), layer.handoff, tz)


def _pair(layer: Layer, turn: int) -> tuple[str, str | None]:
    n = len(layer.doctors)
    return layer.doctors[turn % n], layer.doctors[(turn + 1) % n] if n > 1 else None


def assign(layer: Layer, windows: list[Window], tz: ZoneInfo, state: RotationState) -> list[Piece]:
    """Split ``windows`` at the layer's handoffs and give each piece its doctor.

    ``state`` is updated in place, so the next call continues the rotation.
    """
    if state.signature != layer.signature:
        state.signature = layer.signature
        state.turn = layer.start_with - 1
        state.slot = None
        state.last_end = None
    out: list[Piece] = []
    for window in windows:
        if layer.per == "window":
            if state.last_end != window.start:
                state.turn += 1
            state.last_end = window.end
            out.append(Piece(window.start, window.end, *_pair(layer, state.turn)))
            continue
        state.last_end = window.end
        cursor = window.start
        slot = slot_start(layer, cursor, tz)
        while cursor < window.end:
            nxt = _next_slot(layer, slot, tz)
            if state.slot != slot:
                state.turn += 1
                state.slot = slot
            end = min(nxt, window.end)
            out.append(Piece(cursor, end, *_pair(layer, state.turn)))
            cursor, slot = end, nxt
    return out


__all__ = ["Piece", "RotationState", "assign", "slot_start"]
