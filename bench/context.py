"""What a benchmark module gets: a database, a real uvicorn over it, in-process services.

Each backend (SQLite, PostgreSQL) gets a fresh, migrated database that is thrown away at
the end of the run, and one uvicorn process serving it on a free loopback port, started
on first use. Modules share both within a run, so a module that needs a clean data set
makes its own (distinct identifiers) rather than assuming an empty database.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from renkei.store.migrate import upgrade

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1/test"


@dataclass
class BenchContext:
    backend: str  # "sqlite" or "postgresql"
    database_url: str
    #: 1.0 is the default run (about a minute per backend); --scale multiplies counts
    scale: float = 1.0
    seed: int = 20260401
    #: free-form ``--set key=value`` options for modules
    options: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    _server: subprocess.Popen[bytes] | None = None
    _base: str | None = None
    _services: Any = None
    _log: Any = None
    _token: str | None = None
    _org: str | None = None
    #: shared by the in-process services and the server: the same signing keys
    _data_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="renkei-bench-"))

    def count(self, default: int, minimum: int = 1) -> int:
        """``default`` scaled by ``--scale``."""
        return max(minimum, int(default * self.scale))

    @property
    def base_url(self) -> str:
        """FHIR base of a real uvicorn serving this database (started on first use)."""
        if self._base is None:
            self._start_server()
        assert self._base is not None
        return self._base

    def client(self, **kwargs: Any) -> httpx.Client:
        """A keep-alive HTTP client (one connection) to the server, with an access token."""
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        return httpx.Client(base_url=self.base_url, timeout=60, headers=headers, **kwargs)

    @property
    def org_id(self) -> str:
        """The bench clinic: the organisation whose client writes (and owns) the data."""
        self.token()
        assert self._org is not None
        return self._org

    def token(self) -> str:
        """An EHR back end's token (``system/*.cruds``), got by client credentials."""
        if self._token is None:
            from renkei.auth import service as auth_service

            svc = self.services()
            with svc.db.session(write=True) as session:
                org = auth_service.create_organization(
                    session, svc.auth, svc.engine, name="ベンチ診療所", kind="clinic"
                )
                self._org = org
                made = auth_service.create_client(
                    session, svc.auth, svc.engine, org_id=org, name="bench", scope="system/*.cruds"
                )
            root = self.base_url.removesuffix("/fhir")
            resp = httpx.post(
                f"{root}/auth/token",
                data={"grant_type": "client_credentials", "scope": "system/*.cruds"},
                auth=(made.client_id, made.client_secret or ""),
                timeout=30,
            )
            resp.raise_for_status()
            self._token = str(resp.json()["access_token"])
        return self._token

    def server_cpu_seconds(self) -> float:
        """CPU seconds the uvicorn server has used (see :func:`process_cpu_seconds`)."""
        return 0.0 if self._server is None else process_cpu_seconds(self._server.pid)

    def services(self) -> Any:
        """In-process services over the same database, for engine-level measurements."""
        if self._services is None:
            from renkei.app import build_services
            from renkei.config import Secret, Settings

            settings = Settings(
                database_url=Secret(self.database_url), data_dir=Path(self._data_dir)
            )
            self._services = build_services(settings)
        return self._services

    def _start_server(self) -> None:
        port = _free_port()
        env = {
            **os.environ,
            "RENKEI_DATABASE_URL": self.database_url,
            "RENKEI_DATA_DIR": self._data_dir,
        }
        self._log = tempfile.NamedTemporaryFile(prefix="renkei-bench-server-", suffix=".log")  # noqa: SIM115
        cmd = [
            sys.executable, "-m", "uvicorn", "renkei.app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(self.workers),
            "--log-level", "warning", "--no-access-log",
            # idle connections wait between phases; uvicorn's default 5 s closes them
            # while a client may be reusing one (httpx.ReadError)
            "--timeout-keep-alive", "75",
        ]  # fmt: skip
        self._server = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=self._log)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                raise RuntimeError(f"uvicorn exited; see {self._log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    self._base = f"{base}/fhir"
                    return
            time.sleep(0.1)
        raise RuntimeError("uvicorn did not answer within 60 s")

    def close(self) -> None:
        if self._server is not None:
            self._server.terminate()
            try:
                self._server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
            self._server = None
        if self._services is not None:
            self._services.db.dispose()
            self._services = None
        if self._log is not None:
            self._log.close()


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` and its children (uvicorn's workers).

    Read from Linux ``/proc``; 0.0 where there is none. Per request, it is the server's
    own cost, apart from the client's and the database's share of the same 2 cores.
    """
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{entry.name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            if int(entry.name) == pid or int(fields[1]) == pid:
                total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="renkei-bench-") as folder:
        url = f"sqlite:///{folder}/bench.db"
        upgrade(url)
        yield url


def postgres_admin_url(explicit: str | None) -> str | None:
    """The server to use: --postgres-url, RENKEI_BENCH_POSTGRES_URL, or the local default
    if it answers. None when there is none."""
    import psycopg

    url = explicit or os.environ.get("RENKEI_BENCH_POSTGRES_URL") or DEFAULT_POSTGRES
    try:
        with psycopg.connect(_plain(url), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        if explicit or os.environ.get("RENKEI_BENCH_POSTGRES_URL"):
            raise SystemExit(f"PostgreSQL at {url} does not answer: {exc}") from exc
        return None
    return url


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A throwaway database on the server at ``admin_url``, dropped afterwards."""
    import psycopg

    name = f"renkei_bench_{uuid.uuid4().hex[:10]}"
    plain = _plain(admin_url)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = plain.rsplit("/", 1)[0]
    url = "postgresql+psycopg://" + f"{base}/{name}".split("://", 1)[1]
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _plain(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


__all__ = [
    "BenchContext",
    "postgres_admin_url",
    "postgres_database",
    "process_cpu_seconds",
    "sqlite_database",
]
