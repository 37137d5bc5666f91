from __future__ import annotations

import pytest

from renkei.app import Services
from renkei.clock import ManualClock
from tests.calls_support import CallDriver, jst, seed_network


@pytest.fixture
def driver(services: Services, clock: ManualClock) -> CallDriver:
    # Wednesday 1 April 2026, 10:00 in Tokyo: a weekday inside office hours
    clock.set(jst(2026, 4, 1, 10, 0))
    return CallDriver(services, clock, seed_network(services))
