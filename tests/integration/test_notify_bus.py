"""PostgreSQL LISTEN/NOTIFY bus: an announcement reaches the other processes' hubs; the
announcing process skips its own echo (its hub already has the events, handed over)."""

from __future__ import annotations

import threading
import time

import pytest

from renkei.notify.bus import PostgresBus

pytestmark = pytest.mark.postgres


def _collect(bus: PostgresBus) -> tuple[list[int | None], threading.Event]:
    heard: list[int | None] = []
    got = threading.Event()

    def listener(position: int | None) -> None:
        if position is not None:
            heard.append(position)
            got.set()

    bus.start(listener)
    assert bus.listening.wait(10), "LISTEN connection did not come up"
    return heard, got


def test_announcement_reaches_other_processes_but_not_its_own(postgres_url: str) -> None:
    sender, other = PostgresBus(postgres_url), PostgresBus(postgres_url)
    try:
        own, _ = _collect(sender)
        theirs, got = _collect(other)
        sender.announce(41)
        sender.announce(42)
        assert got.wait(10), "the other process heard nothing"
        deadline = time.monotonic() + 5
        while theirs[-1:] != [42] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert theirs == [41, 42]
        other.announce(7)  # the sender still hears everyone else
        deadline = time.monotonic() + 5
        while not own and time.monotonic() < deadline:
            time.sleep(0.01)
        assert own == [7]
    finally:
        sender.stop()
        other.stop()
