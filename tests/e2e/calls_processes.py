"""Real server processes for the urgent-call crash and two-replica tests (test support).

Each server is ``python -m uvicorn tests.e2e.calls_app:make_app --factory`` on a free
loopback port, against one PostgreSQL database, with a static roster whose steps time out
after one second so a whole escalation takes seconds.
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
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from renkei.calls.intake import URGENT_CALL_CODE
from renkei.fhir.capability import RENKEI_CODESYSTEM
from tests.calls_support import Network

REPO = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "e2e-webhook-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_roster(path: Path, net: Network, *, timeout_s: float = 1.0, rounds: int = 1) -> Path:
    """Clinic A is never open (every call goes to the duty chain); 1 s per step."""
    path.write_text(
        json.dumps(
            {
                "groups": [
                    {
                        "id": "g1",
                        "clinics": [net.clinic_a],
                        "coordinator": net.coordinator,
                        "ack_timeout_seconds": timeout_s,
                        "max_rounds": rounds,
                        "duties": [{"primary": net.duty, "backup": net.backup}],
                    }
                ],
                "office_hours": {net.clinic_a: {}},
            }
        )
    )
    return path


@dataclass
class Server:
    db_url: str
    roster: Path
    log_path: Path
    tokens: Path | None = None
    webhook: str | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        env = {
            **os.environ,
            "RENKEI_DATABASE_URL": self.db_url,
            "RENKEI_CALLS_ROSTER_FILE": str(self.roster),
            "RENKEI_CALLS_POLL_SECONDS": "0.05",
            "RENKEI_CALLS_OVERDUE_GRACE_SECONDS": "60",
            "PYTHONPATH": str(REPO),
        }
        if self.tokens:
            env["RENKEI_TEST_TOKENS_FILE"] = str(self.tokens)
        if self.webhook:
            env["RENKEI_CALLS_WEBHOOK_URL"] = self.webhook
            env["RENKEI_CALLS_WEBHOOK_SECRET"] = WEBHOOK_SECRET
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "tests.e2e.calls_app:make_app", "--factory",
                "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not start in time")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.proc = None


def urgent_task(net: Network, n: int) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "identifier": [{"system": "urn:e2e", "value": f"call-{n}"}],
        "status": "requested",
        "intent": "order",
        "priority": "stat",
        "code": {"coding": [{"system": RENKEI_CODESYSTEM, "code": URGENT_CALL_CODE}]},
        "for": {"reference": net.patient_1},
        "requester": {"reference": net.nurse},
        "reasonCode": {"text": f"e2e call {n}"},
        "input": [
            {
                "type": {"coding": [{"system": RENKEI_CODESYSTEM, "code": "callback-number"}]},
                "valueString": "03-0000-0000",
            }
        ],
    }


def post_task(client: httpx.Client, base: str, net: Network, n: int) -> str:
    """Create call ``n`` (If-None-Exist makes a retry after a crash harmless)."""
    for _ in range(50):
        try:
            resp = client.post(
                f"{base}/fhir/Task",
                json=urgent_task(net, n),
                headers={
                    "Content-Type": "application/fhir+json",
                    "If-None-Exist": f"identifier=urn:e2e|call-{n}",
                },
            )
        except httpx.HTTPError:
            time.sleep(0.1)
            continue
        if resp.status_code in (200, 201):
            return str(resp.json()["id"])
        if resp.status_code == 409:  # a concurrent duplicate won; ask again
            continue
        raise AssertionError(resp.text)
    raise AssertionError("could not create the call")


def timelines(db_url: str) -> dict[str, list[Any]]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT call_id, kind, target, step_seq, actor FROM call_event "
                    "WHERE kind <> 'published' ORDER BY pk"
                )
            ).all()
    finally:
        engine.dispose()
    out: dict[str, list[Any]] = {}
    for row in rows:
        out.setdefault(row.call_id, []).append(row)
    return out


def scalar_rows(db_url: str, sql: str) -> list[Any]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)).all())
    finally:
        engine.dispose()


class WebhookReceiver:
    """A gateway stand-in: records every delivery (dedup key) it receives."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with lock:
                    receiver.keys.append(self.headers.get("x-renkei-delivery", ""))
                    receiver.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
