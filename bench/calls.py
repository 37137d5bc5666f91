"""Urgent-call intake latency: a call created until the doctor on duty's websocket has the page.

    python -m bench.calls            # alone: SQLite, and PostgreSQL when one answers
    python -m bench --only calls     # through the bench runner, via run(report, ctx)

A real uvicorn serves a fresh database with a static roster (every call is after hours, so
it goes to the rotation group's doctor on duty). Each sample is one ``POST /fhir/Task``
(an urgent-call Task, as an EHR or nurse app sends it) until its 201 response: by then
the call row exists, the chain is snapshotted, ``Task.owner`` names the doctor on duty,
the "notified" timeline event and the page's bus event are committed in the same
transaction. The second figure runs until the page event arrives on the doctor on
duty's open websocket (renkei.notify, topic ``my-calls``). Concurrency 1 (sequential) and
100 (bursts of 100 at once).

Target (issue 7): p99 <= 200 ms to the websocket with 100 concurrent calls on PostgreSQL.
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

from bench.context import process_cpu_seconds  # noqa: E402
from renkei.fhir.capability import RENKEI_CODESYSTEM  # noqa: E402

TARGET_P99_MS = 200.0
_WARM_UP = 5
CONCURRENCY = 100
WS_TOKEN = "bench-" + uuid.uuid4().hex


# -- data -----------------------------------------------------------------------------------


def _seed(database_url: str) -> dict[str, Any]:
    """A clinic in a group, its doctor on duty, back-up, coordinator, and 20 patients."""
    from renkei.app import build_services
    from renkei.auth.principal import OPERATOR
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
                FhirRequest(
                    "POST",
                    body["resourceType"],
                    body=body,
                    context=RequestContext(principal=OPERATOR),
                ),
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
            patient = create(
                {
                    "resourceType": "Patient",
                    "name": [{"family": f"bench{n}"}],
                    "managingOrganization": {"reference": clinic},
                }
            )
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


# -- server ---------------------------------------------------------------------------------


def make_app() -> Any:
    """BENCH ONLY: the normal app, plus a websocket token for the doctor on duty.

    The auth package's token verification is not what is measured; the bench hands the
    notify hub a one-entry map (``RENKEI_BENCH_WS_TOKEN`` -> the duty PractitionerRole).
    """
    from fastapi import Request

    from renkei.app import build_services, create_app
    from renkei.auth.principal import Principal
    from renkei.config import Settings

    settings = Settings.from_env()
    token, role = os.environ["RENKEI_BENCH_WS_TOKEN"], os.environ["RENKEI_BENCH_WS_ROLE"]
    principal = Principal(
        subject="bench-duty",
        kind="user",
        practitioner_role_id=role,
        scopes=frozenset({"user/*.cruds"}),
    )
    services = build_services(
        settings, notify_kwargs={"token_verifier": lambda t: principal if t == token else None}
    )
    # the calling app: a back end of the patients' clinic (sharing and scopes still apply)
    caller = Principal(
        subject="bench-nurse-app",
        kind="client",
        organization_id=os.environ["RENKEI_BENCH_CLINIC"].removeprefix("Organization/"),
        client_id="bench-nurse-app",
        scopes=frozenset({"system/*.cruds"}),
    )

    async def authenticate(request: Request) -> Principal | None:
        return caller if request.headers.get("authorization") == f"Bearer {token}" else None

    services.authenticate = authenticate
    return create_app(settings, services=services)


@contextmanager
def _server(database_url: str, roster: str, duty: str, clinic: str) -> Iterator[tuple[str, int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "RENKEI_DATABASE_URL": database_url,
        "RENKEI_DATA_DIR": tempfile.mkdtemp(prefix="renkei-bench-"),
        "RENKEI_CALLS_ROSTER_FILE": roster,
        "RENKEI_BENCH_WS_TOKEN": WS_TOKEN,
        "RENKEI_BENCH_WS_ROLE": duty,
        "RENKEI_BENCH_CLINIC": clinic,
        "PYTHONPATH": str(ROOT),
    }
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115
        prefix="renkei-bench-calls-", suffix=".log", delete=False
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.calls:make_app", "--factory", "--host",
         "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
         "--timeout-keep-alive", "75"],  # idle between bursts: no close/reuse race
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
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# -- measurement ----------------------------------------------------------------------------


class _Pages:
    """The duty doctor's websocket: when each Task's page arrived (perf_counter)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future[float]] = {}

    async def listen(self, url: str, ready: asyncio.Event) -> None:
        import websockets

        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"type": "auth", "token": WS_TOKEN}))
            await ws.send(json.dumps({"type": "subscribe", "id": "c", "topic": "my-calls"}))
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "subscribed":
                    ready.set()
                event = msg.get("event") or {}
                if msg.get("type") == "event" and event.get("action") == "page":
                    ref = event.get("resource", "")
                    now = time.perf_counter()
                    self.arrived.setdefault(ref, now)
                    waiter = self.waiters.get(ref)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(now)

    async def wait(self, ref: str, timeout: float = 60) -> float:
        if ref in self.arrived:
            return self.arrived[ref]
        waiter = self.waiters.setdefault(ref, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(waiter, timeout)


async def _create(
    client: httpx.AsyncClient, pages: _Pages, net: dict[str, Any], n: int
) -> tuple[float, float]:
    """(create→201 ms, create→page on the doctor's websocket ms)."""
    started = time.perf_counter()
    resp = await client.post(
        "/fhir/Task",
        json=_task(net, n),
        headers={"Content-Type": "application/fhir+json", "Authorization": f"Bearer {WS_TOKEN}"},
    )
    answered = time.perf_counter()
    if resp.status_code != 201:
        raise RuntimeError(f"create failed: {resp.status_code} {resp.text[:300]}")
    paged = await pages.wait(f"Task/{resp.json()['id']}")
    return (answered - started) * 1000, (paged - started) * 1000


async def _measure(base: str, net: dict[str, Any], sequential: int, bursts: int) -> dict[str, Any]:
    pages = _Pages()
    ready = asyncio.Event()
    listener = asyncio.create_task(pages.listen(base.replace("http://", "ws://") + "/ws", ready))
    await asyncio.wait_for(ready.wait(), 30)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
            for n in range(_WARM_UP):
                await _create(client, pages, net, 1_000_000 + n)
            seq = [await _create(client, pages, net, n) for n in range(sequential)]
            burst: list[tuple[float, float]] = []
            started = time.perf_counter()
            for b in range(bursts):
                first = 10_000 + b * CONCURRENCY
                burst += await asyncio.gather(
                    *(_create(client, pages, net, first + i) for i in range(CONCURRENCY))
                )
            wall = time.perf_counter() - started
    finally:
        listener.cancel()
    return {
        "sequential": [a for a, _ in seq],
        "sequential_ws": [w for _, w in seq],
        "burst": [a for a, _ in burst],
        "burst_ws": [w for _, w in burst],
        "throughput": len(burst) / wall,
    }


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
        with _server(database_url, roster, net["duty"], net["clinic"]) as (base, pid):
            cpu = process_cpu_seconds(pid)
            result = asyncio.run(_measure(base, net, sequential, bursts))
            calls = _WARM_UP + sequential + bursts * CONCURRENCY
            result["server_cpu_ms"] = (process_cpu_seconds(pid) - cpu) * 1000 / calls
    finally:
        os.unlink(roster)
    result["verified"] = _verify(database_url, net, sequential + bursts * CONCURRENCY)
    return result


def run(report: Any, ctx: Any) -> None:
    """The bench runner's entry point: figures for ``ctx.backend`` into ``report``."""
    result = measure(ctx.database_url, getattr(ctx, "scale", 1.0))
    report.latency("create→routed (201), 1 client", result["sequential"])
    report.latency("create→page on websocket, 1 client", result["sequential_ws"])
    report.latency(f"create→routed (201), {CONCURRENCY} concurrent", result["burst"])
    report.latency(
        f"create→page on websocket, {CONCURRENCY} concurrent",
        result["burst_ws"],
        p99_target=TARGET_P99_MS,
        backend_only="postgresql",
    )
    report.metric(f"calls/s at {CONCURRENCY} concurrent", result["throughput"], "calls/s")
    report.metric("server CPU per call", result["server_cpu_ms"], "ms")


def _pct(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, round(pct / 100 * len(ordered)) - 1)]


@contextmanager
def _databases() -> Iterator[list[tuple[str, str]]]:
    """A fresh SQLite file, and a fresh PostgreSQL database when a server answers."""
    import psycopg

    from renkei.store.migrate import upgrade

    folder = tempfile.mkdtemp(prefix="renkei-bench-")
    out = [("sqlite", f"sqlite:///{folder}/calls.db")]
    upgrade(out[0][1])
    admin = os.environ.get("RENKEI_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1/test")
    plain = admin.replace("postgresql+psycopg://", "postgresql://")
    name = f"renkei_bench_calls_{uuid.uuid4().hex[:8]}"
    created = False
    try:
        with psycopg.connect(plain, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created = True
        url = "postgresql+psycopg://" + plain.rsplit("/", 1)[0].split("://", 1)[1] + f"/{name}"
        upgrade(url)
        out.append(("postgresql", url))
    except psycopg.Error as exc:
        print(f"PostgreSQL not measured: {exc}")
    try:
        yield out
    finally:
        if created:
            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    ok = True
    with _databases() as backends:
        for backend, url in backends:
            r = measure(url)
            print(f"[{backend}] {r['verified']} calls routed and paged, checked in the database")
            series = (
                ("201, 1 client", r["sequential"]),
                ("websocket, 1 client", r["sequential_ws"]),
                (f"201, {CONCURRENCY} concurrent", r["burst"]),
                (f"websocket, {CONCURRENCY} concurrent", r["burst_ws"]),
            )
            for label, samples in series:
                print(
                    f"[{backend}] create→{label:>24}: median "
                    f"{statistics.median(samples):7.1f} ms  p95 {_pct(samples, 95):7.1f} ms  "
                    f"p99 {_pct(samples, 99):7.1f} ms  (n={len(samples)})"
                )
            print(f"[{backend}] {r['throughput']:.1f} calls/s at {CONCURRENCY} concurrent")
            print(f"[{backend}] server CPU per call {r['server_cpu_ms']:.1f} ms")
            if backend == "postgresql":
                ok = _pct(r["burst_ws"], 99) <= TARGET_P99_MS
                verdict = "met" if ok else "MISSED"
                print(
                    f"target: p99 to the websocket <= {TARGET_P99_MS:.0f} ms at "
                    f"{CONCURRENCY} concurrent on PostgreSQL: {verdict}"
                )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
