"""Urgent-call intake latency: a call created until it is routed and its page is committed.

    python -m bench.calls            # alone: SQLite, and PostgreSQL when one answers
    python -m bench --only calls     # through the bench runner, via run(report, ctx)

A real uvicorn serves a fresh database with a static roster (every call is after hours, so
it goes to the rotation group's doctor on duty). Each sample is one ``POST /fhir/Task``
(an urgent-call Task, as an EHR or nurse app sends it) until its 201 response: by then
the call row exists, the chain is snapshotted, ``Task.owner`` names the doctor on duty,
the "notified" timeline event and the page's bus event are committed in the same
transaction. Concurrency 1 (sequential) and 100 (bursts of 100 at once).

Target (issue 7): p99 <= 200 ms with 100 concurrent calls on PostgreSQL. The websocket
leg (bus -> the doctor's open connection) is measured once renkei.notify is connected.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from renkei.fhir.capability import RENKEI_CODESYSTEM  # noqa: E402

TARGET_P99_MS = 200.0
CONCURRENCY = 100


# -- data -----------------------------------------------------------------------------------


def _seed(database_url: str) -> dict[str, Any]:
    """A clinic in a group, its doctor on duty, back-up, coordinator, and 20 patients."""
    from renkei.app import build_services
    from renkei.calls import CallSettings
    from renkei.config import Secret, Settings
    from renkei.fhir.context import FhirRequest, RequestContext

    services = build_services(
        Settings(database_url=Secret(database_url), data_dir=Path(tempfile.mkdtemp())),
        call_settings=CallSettings(worker=False),
    )
    tag = uuid.uuid4().hex[:6]

    def create(body: dict[str, Any]) -> str:
        with services.db.session(write=True) as session:
            resp = services.engine.dispatch(
                session,
                FhirRequest("POST", body["resourceType"], body=body, context=RequestContext()),
            )
        assert resp.body is not None
        return f"{body['resourceType']}/{resp.body['id']}"

    try:
        clinic = create({"resourceType": "Organization", "name": f"bench clinic {tag}"})
        roles = [
            create({"resourceType": "PractitionerRole", "organization": {"reference": clinic}})
            for _ in range(4)
        ]
        patients = []
        for n in range(20):
            patient = create({"resourceType": "Patient", "name": [{"family": f"bench{n}"}]})
            create(
                {
                    "resourceType": "CareTeam",
                    "status": "active",
                    "subject": {"reference": patient},
                    "participant": [
                        {
                            "role": [
                                {
                                    "coding": [
                                        {"system": RENKEI_CODESYSTEM, "code": "primary-doctor"}
                                    ]
                                }
                            ],
                            "member": {"reference": roles[0]},
                            "onBehalfOf": {"reference": clinic},
                        }
                    ],
                }
            )
            patients.append(patient)
    finally:
        services.db.dispose()
    return {"clinic": clinic, "doctor": roles[0], "duty": roles[1], "backup": roles[2],
            "coordinator": roles[3], "patients": patients, "tag": tag}  # fmt: skip


def _roster_file(net: dict[str, Any]) -> str:
    fd, path = tempfile.mkstemp(prefix="renkei-bench-roster-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(
            {
                "groups": [
                    {
                        "id": "bench",
                        "clinics": [net["clinic"]],
                        "coordinator": net["coordinator"],
                        "ack_timeout_seconds": 600,
                        "duties": [{"primary": net["duty"], "backup": net["backup"]}],
                    }
                ],
                "office_hours": {net["clinic"]: {}},
            },
            fh,
        )
    return path


def _task(net: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "identifier": [{"system": f"urn:bench:{net['tag']}", "value": str(n)}],
        "status": "requested",
        "intent": "order",
        "priority": "stat",
        "code": {"coding": [{"system": RENKEI_CODESYSTEM, "code": "urgent-call"}]},
        "for": {"reference": net["patients"][n % len(net["patients"])]},
        "reasonCode": {"text": "SpO2 低下"},
    }


# -- server ---------------------------------------------------------------------------------


@contextmanager
def _server(database_url: str, roster: str) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "RENKEI_DATABASE_URL": database_url,
        "RENKEI_DATA_DIR": tempfile.mkdtemp(prefix="renkei-bench-"),
        "RENKEI_CALLS_ROSTER_FILE": roster,
    }
    log = tempfile.NamedTemporaryFile(prefix="renkei-bench-calls-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "renkei.app:create_app", "--factory", "--host",
         "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"],
        env=env, stdout=log, stderr=log, cwd=ROOT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start; see {log.name}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# -- measurement ----------------------------------------------------------------------------


async def _create(client: httpx.AsyncClient, net: dict[str, Any], n: int) -> float:
    started = time.perf_counter()
    resp = await client.post(
        "/fhir/Task", json=_task(net, n), headers={"Content-Type": "application/fhir+json"}
    )
    elapsed = (time.perf_counter() - started) * 1000
    if resp.status_code != 201:
        raise RuntimeError(f"create failed: {resp.status_code} {resp.text[:300]}")
    return elapsed


async def _measure(base: str, net: dict[str, Any], sequential: int, bursts: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        for n in range(5):  # warm-up
            await _create(client, net, 1_000_000 + n)
        seq = [await _create(client, net, n) for n in range(sequential)]
        burst: list[float] = []
        started = time.perf_counter()
        for b in range(bursts):
            first = 10_000 + b * CONCURRENCY
            burst += await asyncio.gather(
                *(_create(client, net, first + i) for i in range(CONCURRENCY))
            )
        wall = time.perf_counter() - started
    return {"sequential": seq, "burst": burst, "throughput": len(burst) / wall}


def _verify(database_url: str, net: dict[str, Any], expected: int) -> int:
    """Every call created is routed to the doctor on duty with exactly one page."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            routed = conn.execute(
                sa.text("SELECT count(*) FROM call WHERE owner = :o AND state = 'notifying'"),
                {"o": net["duty"]},
            ).scalar_one()
            pages = conn.execute(
                sa.text("SELECT count(*) FROM call_event WHERE kind = 'notified'")
            ).scalar_one()
    finally:
        engine.dispose()
    if routed < expected or pages != routed:
        raise RuntimeError(f"{expected} calls created, {routed} routed, {pages} pages")
    return int(routed)


def measure(database_url: str, scale: float = 1.0) -> dict[str, Any]:
    net = _seed(database_url)
    roster = _roster_file(net)
    sequential, bursts = max(10, int(50 * scale)), max(1, int(3 * scale))
    try:
        with _server(database_url, roster) as base:
            result = asyncio.run(_measure(base, net, sequential, bursts))
    finally:
        os.unlink(roster)
    result["verified"] = _verify(database_url, net, sequential + bursts * CONCURRENCY)
    return result


def run(report: Any, ctx: Any) -> None:
    """The bench runner's entry point: figures for ``ctx.backend`` into ``report``."""
    result = measure(ctx.database_url, getattr(ctx, "scale", 1.0))
    report.latency("create→routed+paged, 1 client", result["sequential"])
    report.latency(
        f"create→routed+paged, {CONCURRENCY} concurrent",
        result["burst"],
        p99_target=TARGET_P99_MS,
        backend_only="postgresql",
    )
    report.metric(f"calls/s at {CONCURRENCY} concurrent", result["throughput"], "calls/s")


def _pct(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, round(pct / 100 * len(ordered)) - 1)]


def main() -> int:
    from renkei.store.migrate import upgrade

    backends: list[tuple[str, Any]] = []
    folder = tempfile.mkdtemp(prefix="renkei-bench-")
    sqlite_url = f"sqlite:///{folder}/calls.db"
    upgrade(sqlite_url)
    backends.append(("sqlite", sqlite_url))
    admin = os.environ.get("RENKEI_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1/test")
    pg_name = None
    try:
        import psycopg

        plain = admin.replace("postgresql+psycopg://", "postgresql://")
        pg_name = f"renkei_bench_calls_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(plain, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{pg_name}"')
        pg_url = (
            "postgresql+psycopg://" + plain.rsplit("/", 1)[0].split("://", 1)[1] + f"/{pg_name}"
        )
        upgrade(pg_url)
        backends.append(("postgresql", pg_url))
    except Exception as exc:  # no server: SQLite only
        print(f"PostgreSQL not measured: {exc}")
        pg_name = None
    ok = True
    try:
        for backend, url in backends:
            r = measure(url)
            print(f"[{backend}] {r['verified']} calls routed and paged, checked in the database")
            for label, samples in (
                ("1 client", r["sequential"]),
                (f"{CONCURRENCY} concurrent", r["burst"]),
            ):
                print(
                    f"[{backend}] create→routed+paged, {label:>14}: median "
                    f"{statistics.median(samples):7.1f} ms  p95 {_pct(samples, 95):7.1f} ms  "
                    f"p99 {_pct(samples, 99):7.1f} ms  (n={len(samples)})"
                )
            print(
                f"[{backend}] throughput at {CONCURRENCY} concurrent: {r['throughput']:.1f} calls/s"
            )
            if backend == "postgresql":
                ok = _pct(r["burst"], 99) <= TARGET_P99_MS
                print(f"target p99 <= {TARGET_P99_MS:.0f} ms (PostgreSQL, 100 concurrent): "
                      f"{'met' if ok else 'MISSED'}")  # fmt: skip
    finally:
        if pg_name:
            import psycopg

            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
