"""Two real server processes on one PostgreSQL behave as one (issue 5's "must show").

- A websocket on process B receives an event written through process A.
- Kill B, write 50 events through A, reconnect to A resuming from the last event number:
  exactly the 50 missing events arrive, in order, then nothing more.
- The same fan-out through Redis when RENKEI_REDIS_URL is set.
- A rest-hook receiver that fails for a while then recovers gets every event number once
  (both processes deliver; claims use SKIP LOCKED and a lease), and signatures verify.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from renkei.notify.resthook import SIGNATURE_HEADER, verify
from renkei.store.migrate import upgrade
from tests.dbs import fresh_postgres_database
from tests.notify_support import FHIR_JSON, observation, patient_body, subscription_body

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {"tok-a": {"organization_id": "org-a", "practitioner_role_id": "role-a"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, url: str, extra_env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        env = {
            **os.environ,
            "RENKEI_DATABASE_URL": url,
            "RENKEI_TEST_WS_TOKENS": json.dumps(TOKENS),
            "RENKEI_TEST_RESTHOOK_BACKOFF": "0.2",
            **(extra_env or {}),
        }
        env.pop("RENKEI_REDIS_URL", None) if "RENKEI_REDIS_URL" not in (extra_env or {}) else None
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "tests.e2e.notify_app:make_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not become ready")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        resp = httpx.post(
            f"{self.base}/fhir/{body['resourceType']}",
            json=body,
            headers={"Content-Type": FHIR_JSON},
            timeout=30,
        )
        assert resp.status_code == 201, resp.text
        result: dict[str, Any] = resp.json()
        return result

    def settle(self) -> None:
        """Wait until this process's hub has caught up with every committed event."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            st = httpx.get(f"{self.base}/notify/status", timeout=5).json()
            if st["outboxPending"] == 0 and st["hubPosition"] == st["head"]:
                return
            time.sleep(0.05)
        raise AssertionError("stream did not settle")

    def ws(self) -> ClientConnection:
        return connect(
            f"ws://127.0.0.1:{self.port}/ws",
            subprotocols=["renkei.v1", "bearer.tok-a"],  # type: ignore[list-item]
            open_timeout=10,
        )


@contextmanager
def servers(count: int, extra_env: dict[str, str] | None = None) -> Iterator[list[Server]]:
    with fresh_postgres_database("renkei_notify") as url:
        upgrade(url)
        started = [Server(url, extra_env) for _ in range(count)]
        try:
            for s in started:
                s.wait_ready()
            yield started
        finally:
            for s in started:
                s.stop()


@pytest.fixture(scope="module")
def pair() -> Iterator[list[Server]]:
    """Two processes on one fresh PostgreSQL database, shared by this module's PG tests."""
    with servers(2) as started:
        yield started


def receive(ws: ClientConnection, kind: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        msg: dict[str, Any] = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if msg["type"] == kind:
            return msg


def subscribe(ws: ClientConnection, patient: str) -> dict[str, Any]:
    receive(ws, "welcome")
    ws.send(json.dumps({"type": "subscribe", "id": "p", "topic": "patient", "patient": patient}))
    return receive(ws, "subscribed")


def test_fan_out_through_redis() -> None:
    redis_url = os.environ.get("RENKEI_TEST_REDIS_URL")
    if not redis_url:
        if os.environ.get("RENKEI_REQUIRE_REDIS") == "1":
            pytest.fail("RENKEI_REQUIRE_REDIS=1 but RENKEI_TEST_REDIS_URL is not set")
        pytest.skip("Redis fan-out needs RENKEI_TEST_REDIS_URL")
    with servers(2, {"RENKEI_REDIS_URL": redis_url}) as (a, b):
        pat = a.post(patient_body())
        ref = f"Patient/{pat['id']}"
        b.settle()
        with b.ws() as ws_b:
            subscribe(ws_b, ref)
            obs = a.post(observation(ref))
            msg = receive(ws_b, "event")
        assert msg["event"]["resource"] == f"Observation/{obs['id']}"


class _Receiver(BaseHTTPRequestHandler):
    fail_first = 6
    lock = threading.Lock()
    seen: ClassVar[list[tuple[bytes, str, list[int]]]] = []
    calls = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        with cls.lock:
            cls.calls += 1
            failing = cls.calls <= cls.fail_first
            if not failing:
                numbers = [
                    int(n)
                    for n in (self.headers.get("X-Renkei-Event-Numbers") or "").split(",")
                    if n
                ]
                cls.seen.append((body, self.headers[SIGNATURE_HEADER], numbers))
        self.send_response(500 if failing else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


def test_rest_hook_receiver_recovers_and_gets_each_event_once(pair: list[Server]) -> None:
    _Receiver.seen = []
    _Receiver.calls = 0
    _Receiver.fail_first = 0  # the handshake must succeed (channels.html#rest-hook)
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    a, b = pair
    try:
        pat = a.post(patient_body())
        ref = f"Patient/{pat['id']}"
        endpoint = f"http://127.0.0.1:{http.server_address[1]}/hook"
        sub = a.post(
            subscription_body(
                "observation", endpoint=endpoint, filters=[f"Observation?patient={ref}"]
            )
        )
        deadline = time.monotonic() + 10
        while not _Receiver.seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _Receiver.seen, "no handshake"
        with _Receiver.lock:
            _Receiver.fail_first = _Receiver.calls + 5  # now fail the next 5 POSTs
        for i in range(20):
            (a if i % 2 else b).post(observation(ref, i))
        deadline = time.monotonic() + 30
        numbers: list[int] = []
        while time.monotonic() < deadline:
            with _Receiver.lock:
                numbers = [n for _, _, ns in _Receiver.seen for n in ns]
            if len(set(numbers)) >= 20:
                break
            time.sleep(0.1)
        secret_resp = httpx.post(
            f"{a.base}/fhir/Subscription/{sub['id']}/$get-signing-secret", timeout=10
        )
        secret = next(
            p["valueString"] for p in secret_resp.json()["parameter"] if p["name"] == "secret"
        )
    finally:
        http.shutdown()
    assert sorted(numbers) == list(range(1, 21)), numbers  # each number accepted exactly once
    assert numbers == sorted(numbers)  # and in order
    assert _Receiver.calls > 21  # there were failures and retries
    assert all(verify(secret, sig, body) for body, sig, _ in _Receiver.seen)


def test_event_written_on_a_reaches_b_and_resume_after_kill_has_no_gap(
    pair: list[Server],
) -> None:
    """Runs last in this module: it kills process B."""
    a, b = pair
    pat = a.post(patient_body())
    ref = f"Patient/{pat['id']}"
    b.settle()
    ws_b = b.ws()
    subscribe(ws_b, ref)
    t0 = time.monotonic()
    first = a.post(observation(ref, 36.0))
    msg = receive(ws_b, "event")
    latency = time.monotonic() - t0
    assert msg["event"]["resource"] == f"Observation/{first['id']}"
    assert latency < 5
    last = msg["seq"]

    b.kill()
    written = [a.post(observation(ref, 30 + i))["id"] for i in range(50)]
    a.settle()

    with a.ws() as ws_a:
        subscribe(ws_a, ref)
        ws_a.send(json.dumps({"type": "resume", "after": last}))
        got: list[dict[str, Any]] = []
        while True:
            m = json.loads(ws_a.recv(timeout=10))
            if m["type"] == "event":
                got.append(m)
            elif m["type"] == "resumed":
                break
        # nothing else is owed: the next message is a heartbeat, not an event
        nxt = json.loads(ws_a.recv(timeout=5))
        while nxt["type"] != "heartbeat":
            assert nxt["type"] != "event", nxt
            nxt = json.loads(ws_a.recv(timeout=5))
    assert [m["event"]["resource"] for m in got] == [f"Observation/{i}" for i in written]
    seqs = [m["seq"] for m in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 50 and seqs[0] > last
