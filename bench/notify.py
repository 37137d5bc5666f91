"""Websocket fan-out: event-to-delivery latency and memory per idle connection.

    python -m bench.notify                 # default: 200 connections, 100 events/s, 10 s
    python -m bench.notify --full          # issue 5's target: 2,000 connections, 200 events/s
    make bench                             # through the bench package's runner: run(report, ctx)

A real server process (uvicorn) is started on a free loopback port, on a scratch SQLite
file (or PostgreSQL with RENKEI_BENCH_POSTGRES_URL). This process opens the websocket
connections (each authenticated, subscribed to one of P patients), then asks the server to
commit events through ``renkei.notify.publish`` at a fixed rate, one write transaction per
event, from a thread inside the server (a bench-only route; the FHIR validation and
indexing of a real write are left out so that the figure is the notifier's own). Each event
concerns one patient, so it goes to connections/P clients.

Event-to-delivery = client receive time - the event's commit-time stamp (same host clock).
Memory per idle connection = server RSS growth / connections, after they subscribed and
sat idle. Target (issue 5): p99 <= 100 ms at 200 events/s with 2,000 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_P99_MS = 100.0


@dataclass(frozen=True)
class Plan:
    connections: int = 200
    patients: int = 50
    rate: float = 100.0
    seconds: float = 10.0

    @property
    def events(self) -> int:
        return int(self.rate * self.seconds)


DEFAULT = Plan()
FULL = Plan(connections=2000, patients=200, rate=200.0, seconds=20.0)
#: patients the server registers at start (enough for every plan's ``patients``)
SEEDED_PATIENTS = 200


# -- the server side (imported by uvicorn in the child process) -----------------------------


def make_app() -> Any:
    """uvicorn factory: the product app, a token map for bench users, and /bench/emit."""
    from fastapi import FastAPI

    from renkei.app import build_services, create_app
    from renkei.auth.principal import OPERATOR, Principal
    from renkei.config import Settings
    from renkei.fhir.context import FhirRequest, RequestContext
    from renkei.notify import Event, publish

    settings = Settings.from_env()
    profile_to = os.environ.get("RENKEI_BENCH_PROFILE")
    if profile_to:  # profile the event loop thread, written at exit
        import atexit
        import cProfile

        profiler = cProfile.Profile()
        atexit.register(lambda: profiler.dump_stats(profile_to))

    def verify(token: str) -> Principal | None:
        if token.startswith("bench-"):
            return Principal(
                subject=token,
                kind="user",
                organization_id="bench-org",
                role="nurse",
                scopes=frozenset({"user/*.rs"}),
            )
        return None

    services = build_services(settings, notify_kwargs={"token_verifier": verify})
    # the patients the connections follow, registered by the bench users' organisation:
    # every delivery goes through the real sharing check
    with services.db.session(write=True) as session:
        for n in range(SEEDED_PATIENTS):
            patient = {
                "resourceType": "Patient",
                "id": f"bench-{n}",
                "managingOrganization": {"reference": "Organization/bench-org"},
            }
            services.engine.dispatch(
                session,
                FhirRequest(
                    "PUT",
                    f"Patient/bench-{n}",
                    body=patient,
                    context=RequestContext(principal=OPERATOR),
                ),
            )
    app: FastAPI = create_app(settings, services=services)

    def _emit(rate: float, count: int, patients: int) -> None:
        interval = 1.0 / rate
        start = time.perf_counter()
        for i in range(count):
            due = start + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            with services.db.session(write=True) as session:
                publish(
                    session,
                    Event(  # about a seeded patient: delivery checks read it
                        "resource",
                        "update",
                        "Patient",
                        f"bench-{i % patients}",
                        1,
                        patient=f"Patient/bench-{i % patients}",
                    ),
                    clock=services.clock,
                )

    @app.post("/bench/emit", include_in_schema=False)
    async def emit(rate: float, count: int, patients: int) -> dict[str, Any]:
        if profile_to:
            profiler.enable()  # async route: runs on the event loop's thread
        threading.Thread(target=_emit, args=(rate, count, patients), daemon=True).start()
        return {"started": True}

    @app.post("/bench/profile", include_in_schema=False)
    async def profile() -> dict[str, Any]:
        if profile_to:
            profiler.disable()
            profiler.dump_stats(profile_to)
        return {"profiled": bool(profile_to)}

    return app


# -- the client side ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@contextmanager
def _database() -> Iterator[str]:
    pg = os.environ.get("RENKEI_BENCH_POSTGRES_URL")
    if pg:
        import psycopg

        admin = pg.replace("postgresql+psycopg://", "postgresql://")
        name = f"renkei_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        base = admin.rsplit("/", 1)[0]
        try:
            yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"


@contextmanager
def _server(url: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    from renkei.store.migrate import upgrade

    upgrade(url)
    port = _free_port()
    env = {**os.environ, "RENKEI_DATABASE_URL": url}
    env.pop("RENKEI_REDIS_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench.notify:make_app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--ws",
            os.environ.get("RENKEI_BENCH_WS", "websockets-sansio"),
            "--ws-per-message-deflate",
            "false",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("bench server did not start")
            time.sleep(0.2)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _client(
    port: int, n: int, patients: int, ready: asyncio.Event, lags: list[float], stop: asyncio.Event
) -> int:
    from websockets.asyncio.client import connect

    async with connect(
        f"ws://127.0.0.1:{port}/ws",
        subprotocols=["renkei.v1", f"bearer.bench-{n}"],  # type: ignore[list-item]
        open_timeout=60,
        ping_interval=None,
        max_queue=None,
    ) as ws:
        await ws.send(
            json.dumps(
                {"type": "subscribe", "topic": "patient", "patient": f"bench-{n % patients}"}
            )
        )
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == "subscribed":
                break
        ready.set()
        received = 0
        try:
            async for raw in ws:  # cancelled by _drive when the run is over
                now = time.time()
                if '"type":"event"' in raw[:20]:
                    msg = json.loads(raw)
                    sent = datetime.fromisoformat(msg["event"]["time"]).timestamp()
                    lags.append(now - sent)
                    received += 1
        except asyncio.CancelledError:
            pass
        return received


async def _drive(port: int, pid: int, plan: Plan) -> dict[str, Any]:
    import httpx

    rss_before = _rss_kib(pid)
    lags: list[float] = []
    stop = asyncio.Event()
    readies = [asyncio.Event() for _ in range(plan.connections)]
    tasks = []
    t0 = time.monotonic()
    for n in range(plan.connections):
        tasks.append(asyncio.create_task(_client(port, n, plan.patients, readies[n], lags, stop)))
        if n % 100 == 99:
            await asyncio.sleep(0.05)  # don't SYN-flood the listen backlog
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=300)
    connect_s = time.monotonic() - t0
    await asyncio.sleep(2.0)  # idle
    rss_idle = _rss_kib(pid)
    cpu0, own0, wall0 = _cpu_seconds(pid), time.process_time(), time.monotonic()
    async with httpx.AsyncClient() as http:
        await http.post(
            f"http://127.0.0.1:{port}/bench/emit",
            params={"rate": plan.rate, "count": plan.events, "patients": plan.patients},
        )
    expected = plan.events * (plan.connections // plan.patients)
    deadline = time.monotonic() + plan.seconds + 30
    while len(lags) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    wall = time.monotonic() - wall0
    async with httpx.AsyncClient() as http:
        await http.post(f"http://127.0.0.1:{port}/bench/profile")
    server_cpu = (_cpu_seconds(pid) - cpu0) / wall
    client_cpu = (time.process_time() - own0) / wall
    await asyncio.sleep(0.5)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ordered = sorted(lags)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0

    return {
        "plan": asdict(plan),
        "connect_seconds": round(connect_s, 2),
        "expected_deliveries": expected,
        "deliveries": len(lags),
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else 0.0,
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2) if ordered else 0.0,
        "server_rss_before_mib": round(rss_before / 1024, 1),
        "server_rss_idle_mib": round(rss_idle / 1024, 1),
        "kib_per_idle_connection": round((rss_idle - rss_before) / plan.connections, 1),
        "server_cpu_share": round(server_cpu, 2),
        "client_cpu_share": round(client_cpu, 2),
        "load_average": round(os.getloadavg()[0], 1),
    }


def run(
    report: Callable[..., Any] | None = None, ctx: Any = None, *, plan: Plan | None = None
) -> dict[str, Any]:
    """Run the benchmark; ``report(name, value, unit)`` receives each figure."""
    plan = plan or (FULL if getattr(ctx, "full", False) else DEFAULT)
    _raise_fd_limit(plan.connections * 2 + 100)
    with _database() as url, _server(url) as (port, proc):
        results = asyncio.run(_drive(port, proc.pid, plan))
    results["database"] = url.split(":", 1)[0]
    if results["deliveries"] == 0:
        raise RuntimeError(
            "no event reached any websocket: the figures would mean nothing "
            "(authentication or the sharing check refused every delivery?)"
        )
    if report is not None:
        report("notify.ws.p50", results["p50_ms"], "ms")
        report("notify.ws.p99", results["p99_ms"], "ms")
        report("notify.ws.kib_per_idle_connection", results["kib_per_idle_connection"], "KiB")
        report(
            "notify.ws.delivered_ratio",
            results["deliveries"] / max(1, results["expected_deliveries"]),
            "",
        )
    return results


def _raise_fd_limit(wanted: int) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(wanted, soft)), hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.notify", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--full", action="store_true", help="2,000 connections at 200 events/s")
    parser.add_argument("--connections", type=int)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--patients", type=int)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    base = FULL if args.full else DEFAULT
    plan = Plan(
        connections=args.connections or base.connections,
        patients=args.patients or base.patients,
        rate=args.rate or base.rate,
        seconds=args.seconds or base.seconds,
    )
    results = run(plan=plan)
    if args.json:
        print(json.dumps(results))
    else:
        p = results["plan"]
        print(
            f"notify: {p['connections']} websocket connections, {p['rate']:.0f} events/s for "
            f"{p['seconds']:.0f} s, fan-out {p['connections'] // p['patients']} per event "
            f"({results['database']})"
        )
        print(f"  connected in                 {results['connect_seconds']:8.2f} s")
        print(
            f"  deliveries                   {results['deliveries']:8d} of "
            f"{results['expected_deliveries']}"
        )
        print(f"  event-to-delivery p50        {results['p50_ms']:8.2f} ms")
        print(f"  event-to-delivery p99        {results['p99_ms']:8.2f} ms")
        print(f"  event-to-delivery max        {results['max_ms']:8.2f} ms")
        print(
            f"  server RSS idle              {results['server_rss_idle_mib']:8.1f} MiB "
            f"(before connections: {results['server_rss_before_mib']} MiB)"
        )
        print(f"  memory per idle connection   {results['kib_per_idle_connection']:8.1f} KiB")
        print(
            f"  CPU while emitting           server {results['server_cpu_share']:.2f} core, "
            f"bench client {results['client_cpu_share']:.2f} core, "
            f"machine load {results['load_average']}"
        )
        ok = (
            results["p99_ms"] <= TARGET_P99_MS
            and results["deliveries"] == results["expected_deliveries"]
        )
        print(f"  target p99 <= {TARGET_P99_MS:.0f} ms, nothing lost: {'OK' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
