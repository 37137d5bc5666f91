"""Urgent calls across real processes on PostgreSQL: kill -9 and two replicas (issue 7 §4).

Every step is checked from the call timeline (``call_event``) and, independently, from the
number of versions of each call's Task: a step that ran twice would show in both.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest

from renkei.app import build_services
from renkei.calls import CallSettings
from renkei.config import Secret, Settings
from renkei.store.migrate import upgrade
from tests.calls_support import Network, principal_for, seed_network
from tests.dbs import fresh_postgres_database
from tests.e2e.calls_processes import (
    Server,
    WebhookReceiver,
    post_task,
    scalar_rows,
    timelines,
    write_roster,
)

pytestmark = pytest.mark.slow

FAILED_SEQUENCE = [
    "created", "routed", "notified", "escalated", "notified", "escalated", "notified",
    "failed", "requester_told",
]  # fmt: skip
RESOLVED_SEQUENCE = ["created", "routed", "notified", "acknowledged", "resolved"]


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[tuple[str, Network]]:
    with fresh_postgres_database("renkei_calls_e2e") as url:
        upgrade(url)
        settings = Settings(database_url=Secret(url), data_dir=tmp_path / "data")
        services = build_services(settings, call_settings=CallSettings(worker=False))
        try:
            net = seed_network(services)
        finally:
            services.db.dispose()
        yield url, net


def _wait_final(url: str, ids: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        rows = scalar_rows(url, "SELECT id, state FROM call")
        states = {r.id: r.state for r in rows}
        if all(states.get(i) in ("failed", "resolved") for i in ids):
            return states
        time.sleep(0.2)
    raise AssertionError(f"calls not finished in {timeout}s: {Counter(states.values())}")


def _task_versions(url: str) -> dict[str, int]:
    rows = scalar_rows(
        url,
        "SELECT res_id, count(*) AS n FROM fhir_resource_version "
        "WHERE res_type = 'Task' GROUP BY res_id",
    )
    return {r.res_id: r.n for r in rows}


def _check_failed_call(events: list[object], net: Network) -> None:
    kinds = [e.kind for e in events]  # type: ignore[attr-defined]
    assert kinds == FAILED_SEQUENCE
    paged = [e.target for e in events if e.kind == "notified"]  # type: ignore[attr-defined]
    assert paged == [net.duty, net.backup, net.coordinator]
    seqs = [e.step_seq for e in events if e.kind == "notified"]  # type: ignore[attr-defined]
    assert seqs == [1, 2, 3]


def test_kill_9_between_steps_every_call_ends_right_and_no_step_repeats(
    pg: tuple[str, Network], tmp_path: Path
) -> None:
    url, net = pg
    rng = random.Random(7)
    duty = principal_for(net.duty)
    tokens = tmp_path / "tokens.json"
    fields = {k: v for k, v in asdict(duty).items() if k != "scopes"}
    tokens.write_text(json.dumps({"duty": fields}))
    receiver = WebhookReceiver()
    server = Server(
        url, write_roster(tmp_path / "roster.json", net), tmp_path / "server.log", tokens,
        receiver.url,
    )  # fmt: skip
    server.start()
    acked: list[str] = []
    ids: list[str] = []
    try:
        with httpx.Client(timeout=10) as client:
            for n in range(24):
                call_id = post_task(client, server.url, net, n)
                ids.append(call_id)
                if n % 6 == 0:  # a quarter of them: acknowledged at once, then resolved
                    hdr = {"Authorization": "Bearer duty"}
                    # routing runs in the server's worker: on a loaded machine the page may
                    # not have reached the duty doctor yet, so ask again for a while
                    until = time.monotonic() + 30
                    while True:
                        ack = client.post(
                            f"{server.url}/oncall/calls/{call_id}/acknowledge", headers=hdr
                        )
                        if ack.status_code == 200 or time.monotonic() > until:
                            break
                        time.sleep(0.2)
                    assert ack.status_code == 200, ack.text
                    acked.append(call_id)
            for _ in range(3):
                time.sleep(rng.uniform(0.2, 1.0))
                server.kill9()
                time.sleep(rng.uniform(0.0, 1.5))  # steps fall due while nobody runs
                server.start()
            for call_id in acked:
                resp = client.post(
                    f"{server.url}/oncall/calls/{call_id}/resolve",
                    json={"outcome": "phone-advice"},
                    headers={"Authorization": "Bearer duty"},
                )
                assert resp.status_code == 200, resp.text
        states = _wait_final(url, ids, timeout=120)
        # webhook retries back off; on a loaded machine draining takes longer (bounded)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pending = scalar_rows(url, "SELECT pk FROM call_delivery WHERE delivered_at IS NULL")
            if not pending:
                break
            time.sleep(0.2)
    finally:
        server.stop()
        receiver.close()
    assert pending == []
    events = timelines(url)
    versions = _task_versions(url)
    for call_id in ids:
        if call_id in acked:
            assert states[call_id] == "resolved"
            assert [e.kind for e in events[call_id]] == RESOLVED_SEQUENCE
            assert versions[call_id] == 3  # created (routed first), acknowledged, resolved
        else:
            assert states[call_id] == "failed"
            _check_failed_call(events[call_id], net)
            assert versions[call_id] == 4  # created (routed first), 2 escalations, failed
    # the requester of every failed call was told through the webhook (at least once)
    failed_keys = {k for k in receiver.keys if k.endswith(":failed:webhook")}
    assert failed_keys == {f"{i}:failed:webhook" for i in ids if i not in acked}


def test_two_replicas_200_concurrent_calls_no_step_runs_twice(
    pg: tuple[str, Network], tmp_path: Path
) -> None:
    url, net = pg
    roster = write_roster(tmp_path / "roster.json", net)
    servers = [Server(url, roster, tmp_path / f"server{i}.log") for i in range(2)]
    for server in servers:
        server.start()
    try:
        with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
            with ThreadPoolExecutor(max_workers=32) as pool:
                ids = list(
                    pool.map(lambda n: post_task(client, servers[n % 2].url, net, n), range(200))
                )
            assert len(set(ids)) == 200
            states = _wait_final(url, ids, timeout=240)
            metrics = [client.get(f"{s.url}/metrics").text for s in servers]
    finally:
        for server in servers:
            server.stop()
    assert set(states[i] for i in ids) == {"failed"}
    events = timelines(url)
    versions = _task_versions(url)
    for call_id in ids:
        _check_failed_call(events[call_id], net)
        assert versions[call_id] == 4  # created (routed first), 2 escalations, failed
    # both replicas ran escalation steps, and neither ever had a step refused as a repeat
    workers = {e.actor for evs in events.values() for e in evs if e.kind == "escalated"}
    assert len(workers) == 2, workers
    for text in metrics:
        match = re.search(r"^renkei_calls_step_conflicts_total (\S+)$", text, re.M)
        assert match is not None and float(match.group(1)) == 0.0
