"""The escalation state machine as pure functions: no database, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from renkei.calls import escalation as esc

T0 = datetime(2026, 4, 1, 14, 0, tzinfo=UTC)
CHAIN = (
    esc.Step("duty-primary", "PractitionerRole/p", 300),
    esc.Step("duty-backup", "PractitionerRole/b", 300),
    esc.Step("coordinator", "PractitionerRole/c", 300),
)


def started(rounds: int = 1) -> esc.CallState:
    state, _ = esc.start(esc.CallState("new"), CHAIN, rounds, T0, "on-duty")
    return state


def kinds(effects: list[esc.Effect]) -> list[str]:
    return [e.kind if isinstance(e, esc.Record) else type(e).__name__ for e in effects]


def test_start_pages_first_step_with_its_timeout() -> None:
    state, effects = esc.start(esc.CallState("new"), CHAIN, 1, T0, "on-duty")
    assert (state.state, state.owner, state.step_seq) == ("notifying", "PractitionerRole/p", 1)
    assert state.next_due_at == T0 + timedelta(minutes=5)
    assert kinds(effects) == ["routed", "Page"]


def test_start_with_empty_chain_fails_and_tells_requester() -> None:
    state, effects = esc.start(esc.CallState("new"), (), 1, T0, "nobody")
    assert state.state == "failed"
    assert kinds(effects) == ["failed", "TellRequester", "Close"]


def test_timeout_walks_the_chain_then_fails() -> None:
    state = started()
    owners = []
    for n in range(1, 3):
        state, effects = esc.timeout(state, T0 + timedelta(minutes=5 * n))
        owners.append(state.owner)
        assert kinds(effects) == ["escalated", "Page"]
    assert owners == ["PractitionerRole/b", "PractitionerRole/c"]
    state, effects = esc.timeout(state, T0 + timedelta(minutes=15))
    assert state.state == "failed" and state.next_due_at is None
    assert kinds(effects) == ["failed", "TellRequester", "Close"]


def test_timeout_second_round_starts_over_at_primary() -> None:
    state = started(rounds=2)
    for n in range(1, 4):
        state, _ = esc.timeout(state, T0 + timedelta(minutes=5 * n))
    assert (state.owner, state.round, state.step_seq) == ("PractitionerRole/p", 1, 4)


def test_timeout_before_due_is_refused() -> None:
    with pytest.raises(esc.TransitionRefused):
        esc.timeout(started(), T0 + timedelta(minutes=4))


def test_acknowledge_is_idempotent_and_stops_timer() -> None:
    state, effects = esc.acknowledge(started(), "PractitionerRole/p")
    assert state.state == "acknowledged" and state.next_due_at is None
    assert kinds(effects) == ["acknowledged"]
    again, more = esc.acknowledge(state, "PractitionerRole/p")
    assert again == state and more == []
    with pytest.raises(esc.TransitionRefused):
        esc.timeout(state, T0 + timedelta(hours=1))


def test_reject_escalates_at_once_with_reason() -> None:
    state, effects = esc.reject(started(), "PractitionerRole/p", "busy", T0)
    assert state.owner == "PractitionerRole/b"
    assert state.next_due_at == T0 + timedelta(minutes=5)
    assert kinds(effects) == ["rejected", "escalated", "Page"]
    assert effects[0].detail["reason"] == "busy"  # type: ignore[union-attr]


def test_handover_inserts_a_step_and_keeps_the_chain() -> None:
    state, _ = esc.acknowledge(started(), "PractitionerRole/p")
    state, effects = esc.handover(state, "PractitionerRole/p", "PractitionerRole/x", T0)
    assert [s.target for s in state.chain] == [
        "PractitionerRole/p", "PractitionerRole/x", "PractitionerRole/b", "PractitionerRole/c"
    ]  # fmt: skip
    assert state.owner == "PractitionerRole/x" and state.state == "notifying"
    assert kinds(effects) == ["handed_over", "Page"]
    with pytest.raises(esc.TransitionRefused):
        esc.handover(state, "PractitionerRole/x", "PractitionerRole/x", T0)


def test_resolve_needs_a_known_outcome_and_closes() -> None:
    with pytest.raises(esc.TransitionRefused):
        esc.resolve(started(), "PractitionerRole/p", "magic", None)
    state, effects = esc.resolve(started(), "PractitionerRole/p", "hospital-admission", "入院")
    assert state.state == "resolved"
    assert kinds(effects) == ["resolved", "Close"]


def test_final_states_refuse_everything() -> None:
    state, _ = esc.cancel(started(), "nurse", None)
    for attempt in (
        lambda: esc.acknowledge(state, "x"),
        lambda: esc.accept(state, "x"),
        lambda: esc.reject(state, "x", "r", T0),
        lambda: esc.resolve(state, "x", "visit", None),
        lambda: esc.cancel(state, "x", None),
        lambda: esc.timeout(state, T0 + timedelta(days=1)),
    ):
        with pytest.raises(esc.TransitionRefused):
            attempt()


def test_every_step_key_is_unique_along_a_full_escalation() -> None:
    state = started(rounds=2)
    keys = ["routed:1"]
    for n in range(1, 7):
        state, effects = esc.timeout(state, T0 + timedelta(minutes=5 * n))
        keys += [e.key for e in effects if isinstance(e, esc.Record)]
    assert len(keys) == len(set(keys))
    assert state.state == "failed"
