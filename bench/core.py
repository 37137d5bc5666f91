"""FHIR core: creates, reads by id, transaction Bundles, and where write time goes.

Through a real uvicorn (HTTP, one keep-alive connection, then several): single creates/s,
reads/s and the read-by-id latency the server reports in ``Server-Timing``, transaction
Bundles of 100 entries. In process, through the engine: creates/s with the app's index
writer and with none (the indexer's cost), and the share of validation and JSON encoding.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from bench.context import BenchContext
from bench.report import Report, Target
from renkei.api.timing import app_duration_ms
from renkei.auth.principal import OPERATOR
from renkei.demo.generate import observation, patient

FHIR_JSON = {"Content-Type": "application/fhir+json"}
PG = "postgresql"
#: issue #2 targets on the 2-core machine with PostgreSQL
READ_P99_MS = 10.0
CREATES_PER_S = 400.0
BUNDLE_RESOURCES_PER_S = 1500.0
BUNDLE_SIZE = 100


def run(report: Report, ctx: BenchContext) -> None:
    rng = random.Random(ctx.seed)
    ids = _creates(report, ctx, rng)
    _reads(report, ctx, ids)
    _bundles(report, ctx, rng)
    _engine_writes(report, ctx, rng)


# -- HTTP ----------------------------------------------------------------------------------


def _creates(report: Report, ctx: BenchContext, rng: random.Random) -> list[str]:
    bodies = [orjson.dumps(_owned(ctx, rng, n)) for n in range(1, ctx.count(600, 20) + 1)]
    warm = min(50, len(bodies) // 4)
    ids: list[str] = []
    server_ms: list[float] = []
    with ctx.client() as client:
        for body in bodies[:warm]:  # warm-up: model caches, connection, query plans
            ids.append(_post(client, "Patient", body)[0])
        cpu = ctx.server_cpu_seconds()
        start = time.perf_counter()
        for body in bodies[warm:]:
            rid, ms = _post(client, "Patient", body)
            ids.append(rid)
            server_ms.append(ms)
        elapsed = time.perf_counter() - start
        cpu = ctx.server_cpu_seconds() - cpu
    report.metric(
        "creates/s (1 connection)",
        len(server_ms) / elapsed,
        "req/s",
        target=Target(CREATES_PER_S, backend=PG),
    )
    report.latency("create server time", server_ms)
    # all of the server's threads: request, event loop, and the notify sequencer's share
    report.metric("server CPU per create", cpu * 1000 / len(server_ms), "ms")
    clients = int(ctx.options.get("write_clients", "4"))
    more = [orjson.dumps(_owned(ctx, rng, n)) for n in range(1, ctx.count(400, 8) + 1)]
    rate, _ = _concurrent(ctx, clients, more, lambda c, b: _post(c, "Patient", b)[1])
    report.metric(f"creates/s ({clients} connections)", rate, "req/s")
    return ids


def _post(client: httpx.Client, res_type: str, body: bytes) -> tuple[str, float]:
    resp = client.post(
        f"/{res_type}", content=body, headers={**FHIR_JSON, "Prefer": "return=minimal"}
    )
    if resp.status_code != 201:
        raise RuntimeError(f"create failed: {resp.status_code} {resp.text[:300]}")
    location = resp.headers["Location"]
    rid = location.split(f"/{res_type}/", 1)[1].split("/", 1)[0]
    return rid, app_duration_ms(resp.headers.get("server-timing")) or 0.0


def _get(client: httpx.Client, path: str) -> float:
    resp = client.get(path)
    if resp.status_code != 200:
        raise RuntimeError(f"read failed: {resp.status_code} {resp.text[:300]}")
    return app_duration_ms(resp.headers.get("server-timing")) or 0.0


def _reads(report: Report, ctx: BenchContext, ids: list[str]) -> None:
    rng = random.Random(ctx.seed + 1)
    paths = [f"/Patient/{rng.choice(ids)}" for _ in range(ctx.count(1500, 20))]
    server_ms: list[float] = []
    client_ms: list[float] = []
    with ctx.client() as client:
        for path in paths[: min(100, len(paths) // 4)]:
            _get(client, path)
        start = time.perf_counter()
        for path in paths:
            t0 = time.perf_counter()
            server_ms.append(_get(client, path))
            client_ms.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - start
    report.metric("reads/s (1 connection)", len(paths) / elapsed, "req/s")
    report.latency("read by id server time", server_ms, p99_target=READ_P99_MS, backend_only=PG)
    report.latency("read by id client round trip", client_ms)
    clients = int(ctx.options.get("read_clients", "8"))
    many = [f"/Patient/{rng.choice(ids)}" for _ in range(ctx.count(2000, 16))]
    rate, concurrent_ms = _concurrent(ctx, clients, many, _get)
    report.metric(f"reads/s ({clients} connections)", rate, "req/s")
    report.latency(f"read by id server time ({clients} connections)", concurrent_ms)


def _concurrent(
    ctx: BenchContext,
    clients: int,
    work: list[Any],
    call: Callable[[httpx.Client, Any], float],
) -> tuple[float, list[float]]:
    """Requests/s with ``clients`` threads, each on its own connection, and server times."""
    shares = [work[i::clients] for i in range(clients)]
    timings: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def worker(n: int) -> None:
        with ctx.client() as client:
            client.get("/metadata")  # open the connection before the clock starts
            barrier.wait()
            try:
                for item in shares[n]:
                    timings[n].append(call(client, item))
            except BaseException as exc:  # reported after the run
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} worker(s) failed: {errors[0]}")
    return len(work) / elapsed, [ms for share in timings for ms in share]


def _transaction(ctx: BenchContext, rng: random.Random, start: int) -> bytes:
    """100 entries: 20 patients, each with 4 body-temperature Observations (urn:uuid refs)."""
    entries = []
    for n in range(start, start + BUNDLE_SIZE // 5):
        full_url = f"urn:uuid:bench-{n}-{rng.getrandbits(48):012x}"
        entries.append(
            {
                "fullUrl": full_url,
                "resource": _owned(ctx, rng, n),
                "request": {"method": "POST", "url": "Patient"},
            }
        )
        for k in range(4):
            when = f"2026-04-{1 + k:02d}T09:00:00+09:00"
            entries.append(
                {
                    "resource": observation(rng, full_url, when),
                    "request": {"method": "POST", "url": "Observation"},
                }
            )
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def _bundles(report: Report, ctx: BenchContext, rng: random.Random) -> None:
    count = ctx.count(30, minimum=2)  # enough Bundles that one collector pause is not the p95
    bodies = [_transaction(ctx, rng, 100_000 + i * BUNDLE_SIZE) for i in range(count + 1)]
    server_ms: list[float] = []
    with ctx.client() as client:
        _post_bundle(client, bodies[0])  # warm-up
        start = time.perf_counter()
        for body in bodies[1:]:
            server_ms.append(_post_bundle(client, body))
        elapsed = time.perf_counter() - start
    report.metric(
        f"transaction resources/s (Bundles of {BUNDLE_SIZE})",
        count * BUNDLE_SIZE / elapsed,
        "res/s",
        target=Target(BUNDLE_RESOURCES_PER_S, backend=PG),
    )
    report.latency(f"transaction of {BUNDLE_SIZE} server time", server_ms)


def _post_bundle(client: httpx.Client, body: bytes) -> float:
    resp = client.post("", content=body, headers={**FHIR_JSON, "Prefer": "return=minimal"})
    if resp.status_code != 200:
        raise RuntimeError(f"transaction failed: {resp.status_code} {resp.text[:300]}")
    return app_duration_ms(resp.headers.get("server-timing")) or 0.0


# -- in process: where does write time go? --------------------------------------------------


def _engine_writes(report: Report, ctx: BenchContext, rng: random.Random) -> None:
    """Creates through ``FhirEngine.handle`` with the app's indexer, then with none.

    The difference is the index writer's cost per create; run again after the search
    indexer lands to see what it costs. Validation and JSON encoding are timed alone.
    """
    from renkei.fhir.context import FhirRequest, RequestContext
    from renkei.fhir.validate import parse_resource
    from renkei.store.indexing import NullIndexWriter

    services = ctx.services()
    engine = services.engine
    bodies = [_owned(ctx, rng, 500_000 + n) for n in range(ctx.count(300, 10))]
    app_indexer = engine.indexer

    def creates_per_s(indexer: Any) -> float:
        engine.indexer = indexer
        try:
            start = time.perf_counter()
            for body in bodies:
                with services.db.session(write=True) as session:
                    req = FhirRequest(
                        "POST",
                        "Patient",
                        body=dict(body),
                        context=RequestContext(principal=OPERATOR),
                    )
                    resp = engine.handle(session, req)
                    if resp.status != 201:
                        raise RuntimeError(f"engine create failed: {resp.body}")
            return len(bodies) / (time.perf_counter() - start)
        finally:
            engine.indexer = app_indexer

    creates_per_s(app_indexer)  # warm-up
    with_index = creates_per_s(app_indexer)
    without = creates_per_s(NullIndexWriter())
    name = type(app_indexer).__name__
    report.metric(f"engine creates/s ({name})", with_index, "req/s")
    report.metric("engine creates/s (no index rows)", without, "req/s")
    report.metric(
        f"index cost per create ({name})",
        max(0.0, 1000 / with_index - 1000 / without),
        "ms",
    )
    start = time.perf_counter()
    for body in bodies:
        parse_resource(body, expected_type="Patient")
    report.metric(
        "validation per Patient", (time.perf_counter() - start) * 1000 / len(bodies), "ms"
    )
    start = time.perf_counter()
    for body in bodies:
        orjson.dumps(body)
    report.metric(
        "JSON encoding per Patient", (time.perf_counter() - start) * 1000 / len(bodies), "ms"
    )


def _owned(ctx: BenchContext, rng: random.Random, n: int) -> dict[str, Any]:
    """A generated patient registered by the bench clinic (the sharing policy's owner)."""
    body = patient(rng, n)
    body["managingOrganization"] = {"reference": f"Organization/{ctx.org_id}"}
    return body
