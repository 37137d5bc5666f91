"""What the sharing policy and the audit log add to a read.

The same synthetic network is read through the ASGI app twice: once with no policy and
no audit (the engine alone), once as a nurse of a *sharing* organisation (the costliest
visibility path: care team joined with consent) with every read audited (hash-chained,
HMAC'd, appended by the background writer). Reports the median and p95 of each, and the
overhead of the median. SQLite always; PostgreSQL when ``RENKEI_BENCH_POSTGRES_URL``
is set. ``python -m bench.auth_overhead [--reads N]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.testclient import TestClient

from bench.report import Target
from renkei.app import Services, build_services, create_app
from renkei.auth.principal import OPERATOR, Principal
from renkei.clock import SystemClock
from renkei.config import Secret, Settings
from renkei.fhir.policy import AllowAll
from renkei.store.migrate import upgrade

NURSE = Principal(
    subject="bench-nurse",
    kind="user",
    organization_id="org-b",
    role="nurse",
    practitioner_role_id="role-b",
    scopes=frozenset({"user/*.cruds"}),
)


def _seed(client: TestClient, patients: int) -> list[str]:
    def put(body: dict[str, Any]) -> None:
        r = client.put(f"/fhir/{body['resourceType']}/{body['id']}", json=body)
        assert r.status_code in (200, 201), r.text

    for org in ("org-a", "org-b"):
        put({"resourceType": "Organization", "id": org, "name": org})
    obs = []
    for n in range(patients):
        pid = f"p{n}"
        put(
            {
                "resourceType": "Patient",
                "id": pid,
                "managingOrganization": {"reference": "Organization/org-a"},
            }
        )
        put(
            {
                "resourceType": "CareTeam",
                "id": f"ct{n}",
                "status": "active",
                "subject": {"reference": f"Patient/{pid}"},
                "participant": [
                    {"member": {"reference": "Organization/org-a"}},
                    {"member": {"reference": "Organization/org-b"}},
                ],
            }
        )
        put(
            {
                "resourceType": "Consent",
                "id": f"cs{n}",
                "status": "active",
                "scope": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                            "code": "patient-privacy",
                        }
                    ]
                },
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "patient": {"reference": f"Patient/{pid}"},
                "provision": {"type": "permit"},
            }
        )
        for k in range(3):
            oid = f"o{n}-{k}"
            put(
                {
                    "resourceType": "Observation",
                    "id": oid,
                    "status": "final",
                    "code": {"text": "体温"},
                    "subject": {"reference": f"Patient/{pid}"},
                    "valueQuantity": {"value": 36.5 + k / 10, "unit": "Cel"},
                }
            )
            obs.append(oid)
    return obs


def _time_reads(
    client: TestClient, ids: list[str], reads: int, headers: dict[str, str]
) -> list[float]:
    out = []
    for i in range(reads):
        oid = ids[(i * 7919) % len(ids)]
        t0 = time.perf_counter()
        r = client.get(f"/fhir/Observation/{oid}", headers=headers)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text
    return out


def _services(url: str, data_dir: Path, *, full: bool) -> Services:
    settings = Settings(database_url=Secret(url), data_dir=data_dir)
    if full:
        svc = build_services(settings, clock=SystemClock())

        async def auth(request: Request) -> Principal | None:
            return NURSE if request.headers.get("x-bench") else None

        svc.authenticate = auth
        return svc
    svc = build_services(settings, clock=SystemClock(), policy=AllowAll())
    svc.engine.access_listeners.clear()
    svc.audit = None

    async def operator(request: Request) -> Principal | None:
        return OPERATOR  # FHIR needs a caller; the local operator passes every check

    svc.authenticate = operator
    return svc


def measure(url: str, data_dir: Path, *, patients: int, reads: int) -> dict[str, Any]:
    """Both set-ups over one database, timed in alternating rounds so drift hits both."""
    upgrade(url)
    modes = {"baseline": _services(url, data_dir, full=False)}
    modes["policy+audit"] = _services(url, data_dir, full=True)
    clients = {m: TestClient(create_app(s.settings, services=s)) for m, s in modes.items()}
    headers = {"baseline": {}, "policy+audit": {"x-bench": "1"}}
    times: dict[str, list[float]] = {m: [] for m in modes}
    try:
        for c in clients.values():
            c.__enter__()
        seeded = _seed(clients["baseline"], patients)
        for mode, c in clients.items():
            _time_reads(c, seeded, 50, headers[mode])  # warm up
        # alternate in blocks, so load on the machine hits both alike; the audited block
        # ends by waiting for its records (untimed), so the background writer's work is
        # charged to the audited reads, not to the baseline that follows
        block = 50
        for start in range(0, reads, block):
            for mode, c in clients.items():
                for i in range(start, min(start + block, reads)):
                    oid = seeded[(i * 7919) % len(seeded)]
                    t0 = time.perf_counter()
                    r = c.get(f"/fhir/Observation/{oid}", headers=headers[mode])
                    times[mode].append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200, r.text
                audit = modes[mode].audit
                if audit is not None:
                    audit.settle()
    finally:
        for c in clients.values():
            c.__exit__(None, None, None)
        for svc in modes.values():
            svc.db.dispose()
    results: dict[str, Any] = {
        mode: {
            "median_ms": round(statistics.median(t), 3),
            "p95_ms": round(sorted(t)[int(len(t) * 0.95)], 3),
        }
        for mode, t in times.items()
    }
    base, full = results["baseline"]["median_ms"], results["policy+audit"]["median_ms"]
    results["overhead_pct"] = round((full - base) / base * 100, 1)
    results["reads"] = len(times["baseline"])
    return results


def run(report: Any = None, ctx: Any = None) -> dict[str, Any]:
    """Harness entry (``make bench``): ``ctx.database_url`` is a throwaway database."""
    if ctx is None:
        with tempfile.TemporaryDirectory() as tmp:
            return measure(f"sqlite:///{tmp}/bench.db", Path(tmp), patients=200, reads=1000)
    with tempfile.TemporaryDirectory() as tmp:
        reads = int(1000 * getattr(ctx, "scale", 1.0))
        out = measure(ctx.database_url, Path(tmp), patients=200, reads=reads)
    if report is not None:
        for mode in ("baseline", "policy+audit"):
            report.metric(f"auth.read.{mode}.median", out[mode]["median_ms"], "ms")
            report.metric(f"auth.read.{mode}.p95", out[mode]["p95_ms"], "ms")
        # issue 4: audit and policy add at most 30 % to the median read
        report.metric(
            "auth.read.overhead", out["overhead_pct"], "%", target=Target(30.0, at_most=True)
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.auth_overhead")
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--reads", type=int, default=1000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = measure(
            f"sqlite:///{tmp}/bench.db", Path(tmp), patients=args.patients, reads=args.reads
        )
        print(json.dumps({"bench": "auth_overhead", "db": "sqlite", **out}))
    pg = os.environ.get("RENKEI_BENCH_POSTGRES_URL")
    if pg:
        import psycopg

        name = f"renkei_bench_{uuid.uuid4().hex[:8]}"
        admin = pg.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        base = admin.rsplit("/", 1)[0]
        try:
            with tempfile.TemporaryDirectory() as tmp:
                url = f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
                out = measure(url, Path(tmp), patients=args.patients, reads=args.reads)
                print(json.dumps({"bench": "auth_overhead", "db": "postgresql", **out}))
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    sys.stdout.flush()


if __name__ == "__main__":
    main()
