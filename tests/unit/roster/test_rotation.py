"""Rotation layers: handoff per day, per week, per window; turns only for duty periods."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from renkei.roster.config import Layer
from renkei.roster.rotation import RotationState, assign, slot_start
from renkei.roster.windows import Window

TOKYO = ZoneInfo("Asia/Tokyo")
A, B, C = "PractitionerRole/a", "PractitionerRole/b", "PractitionerRole/c"


def w(d1: int, h1: int, d2: int, h2: int) -> Window:
    return Window(
        datetime(2026, 4, d1, h1, tzinfo=TOKYO), datetime(2026, 4, d2, h2, tzinfo=TOKYO), ()
    )


def test_assign_per_day_splits_a_long_window_at_handoff() -> None:
    pieces = assign(Layer((A, B, C)), [w(4, 13, 6, 9)], TOKYO, RotationState())
    assert [(p.start.astimezone(TOKYO).day, p.assignee) for p in pieces] == [(4, A), (5, B)]
    assert pieces[0].end == datetime(2026, 4, 5, 9, tzinfo=TOKYO)
    assert pieces[0].alternate == B


def test_assign_days_without_duty_skip_nobody() -> None:
    # nights of 1st and 3rd only: the 2nd has no duty and consumes no turn
    pieces = assign(Layer((A, B)), [w(1, 18, 2, 9), w(3, 18, 4, 9)], TOKYO, RotationState())
    assert [p.assignee for p in pieces] == [A, B]


def test_assign_per_week_hands_over_on_handoff_day() -> None:
    layer = Layer((A, B), per="week", handoff=time(9), handoff_day=0)  # Monday 09:00
    nights = [w(d, 18, d + 1, 9) for d in (2, 3, 6, 7)]  # Thu, Fri, Mon, Tue of 2026-04
    assert [p.assignee for p in assign(layer, nights, TOKYO, RotationState())] == [A, A, B, B]
    assert slot_start(layer, datetime(2026, 4, 8, 3, tzinfo=TOKYO), TOKYO) == datetime(
        2026, 4, 6, 9, tzinfo=TOKYO
    )


def test_assign_per_window_and_state_continues_across_calls() -> None:
    layer = Layer((A, B, C), per="window", start_with=1)
    state = RotationState()
    first = assign(layer, [w(4, 13, 6, 9)], TOKYO, state)
    second = assign(layer, [w(6, 9, 6, 12), w(6, 18, 7, 9)], TOKYO, state)
    # the window continued at the seam (6th 09:00) keeps its doctor
    assert [p.assignee for p in first + second] == [B, B, C]


def test_assign_restarts_when_layer_changes() -> None:
    state = RotationState()
    assign(Layer((A, B)), [w(1, 18, 2, 9)], TOKYO, state)
    pieces = assign(Layer((C, A)), [w(2, 18, 3, 9)], TOKYO, state)
    assert pieces[0].assignee == C
