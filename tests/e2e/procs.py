"""Real server processes for end-to-end tests: free ports, start, wait, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
RENKEI = str(Path(sys.executable).parent / "renkei")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, *, timeout: float = 30.0, status: int = 200, **kwargs: object) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(url, timeout=2, **kwargs)  # type: ignore[arg-type]
            if resp.status_code == status:
                return
            last = resp.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s (last: {last})")


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, **env}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [RENKEI, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    wait_for(f"http://127.0.0.1:{port}/healthz")
    return proc


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
