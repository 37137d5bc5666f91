"""The process-level deployment (deploy/local/renkei-local.sh) and readiness (issue 9)."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dbs import fresh_postgres_database
from tests.e2e.procs import RENKEI, REPO, free_port, start_server, stop, wait_for

SCRIPT = REPO / "deploy" / "local" / "renkei-local.sh"
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)

pytestmark = pytest.mark.slow


def _need(tool: str | None, what: str) -> None:
    if tool and (shutil.which(tool) or Path(tool).exists()):
        return
    if os.environ.get("RENKEI_REQUIRE_DEPLOY_TOOLS") == "1":
        pytest.fail(f"{what} is required in CI but not installed")
    pytest.skip(f"{what} not installed")


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[dict[str, str]]:
    _need("nginx" if shutil.which("nginx") else "/usr/sbin/nginx", "nginx")
    with fresh_postgres_database("renkei_deploy") as url:
        ports = [free_port(), free_port()]
        env = {
            **os.environ,
            "RENKEI_DATABASE_URL": url,
            "RENKEI_DATA_DIR": str(tmp_path / "data"),
            "RENKEI_LOCAL_DIR": str(tmp_path / "local"),
            "RENKEI_LOCAL_TLS_PORT": str(free_port()),
            "RENKEI_LOCAL_API_PORTS": " ".join(map(str, ports)),
            "RENKEI_BIN": RENKEI,
        }
        started = subprocess.run(
            [str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=120
        )
        try:
            assert started.returncode == 0, started.stderr + started.stdout
            yield env
        finally:
            subprocess.run([str(SCRIPT), "stop"], env=env, timeout=60)


def test_two_replicas_behind_tls13_proxy(deployment: dict[str, str]) -> None:
    env = deployment
    smoke = subprocess.run(
        [str(SCRIPT), "smoke"], env=env, capture_output=True, text=True, timeout=60
    )
    assert smoke.returncode == 0, smoke.stderr
    assert "smoke ok" in smoke.stdout
    ca = Path(env["RENKEI_LOCAL_DIR"]) / "certs" / "ca.crt"
    port = int(env["RENKEI_LOCAL_TLS_PORT"])
    ctx = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(verify=ctx) as client:
        resp = client.get(f"https://localhost:{port}/readyz")
        assert resp.status_code == 200
    # TLS 1.2 is refused: the proxy speaks TLS 1.3 only
    old = ssl.create_default_context(cafile=str(ca))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(httpx.ConnectError), httpx.Client(verify=old) as client:
        client.get(f"https://localhost:{port}/healthz")


def _pg(cmd: list[str]) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True)


def test_readyz_follows_the_database() -> None:
    """A private PostgreSQL cluster is stopped and started under a running replica."""
    _need(str(PG_BIN / "initdb") if PG_BIN else None, "PostgreSQL server binaries")
    _need("runuser", "runuser")
    assert PG_BIN is not None
    # pytest's tmp folders are private to root; the cluster lives where postgres can go.
    tmp_path = Path(tempfile.mkdtemp(prefix="renkei-pg-"))
    tmp_path.chmod(0o755)
    shutil.chown(tmp_path, "postgres")
    data = tmp_path / "pgdata"
    _pg([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"])
    pg_port = free_port()
    ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(tmp_path / "pg.log")]
    opts = f"-p {pg_port} -k {tmp_path} -c listen_addresses=127.0.0.1"
    _pg([*ctl, "-o", opts, "start"])
    api_port = free_port()
    proc = None
    try:
        env = {
            "RENKEI_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/postgres",
            "RENKEI_DATA_DIR": str(tmp_path / "data"),
        }
        proc = start_server(env, api_port, tmp_path / "api.log")
        ready = f"http://127.0.0.1:{api_port}/readyz"
        wait_for(ready, status=200)
        _pg([*ctl, "-m", "fast", "stop"])
        wait_for(ready, status=503, timeout=20)
        assert httpx.get(f"http://127.0.0.1:{api_port}/healthz").status_code == 200
        _pg([*ctl, "-o", opts, "start"])
        wait_for(ready, status=200, timeout=30)
    finally:
        if proc is not None:
            stop(proc)
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *ctl, "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(tmp_path, ignore_errors=True)
