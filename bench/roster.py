"""Who-is-on-duty latency for a group with a year of roster and 500 overrides.

    python -m bench.roster          # alone
    make bench                      # through the bench package's runner, via run(report, ctx)

Measures, on a deterministic synthetic group (4 clinics, 6 doctors, daily primary and weekly
back-up rotation, holidays, 年末年始, 500 overrides spread over the year):

- ``snapshot_build``: laying out the whole year once (what a new roster version costs);
- ``on_duty``: the pure query on a built snapshot (median, p95), 10 000 random instants;
- ``duty_at_sqlite`` (and ``duty_at_postgres`` with RENKEI_BENCH_POSTGRES_URL): the service
  call other packages use — version lookup + cached snapshot + query — per call.

Target (issue 6): who-is-on-duty median <= 1 ms.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from renkei.auth.principal import Principal  # noqa: E402
from renkei.clock import ManualClock  # noqa: E402
from renkei.roster import service  # noqa: E402
from renkei.roster.config import parse_config  # noqa: E402
from renkei.roster.holidays import national_holidays  # noqa: E402
from renkei.roster.models import roster_override  # noqa: E402
from renkei.roster.snapshot import Override, Plan, Roster, on_duty  # noqa: E402

SEED = 20260401
OVERRIDES = 500
QUERIES = 10_000
START = datetime(2026, 4, 1, tzinfo=UTC)
DOCTORS = [f"PractitionerRole/bench-dr-{n}" for n in range(1, 7)]
CLINICS = [f"Organization/bench-clinic-{n}" for n in range(1, 5)]
TARGET_MS = 1.0


def group() -> dict[str, Any]:
    return {
        "name": "bench group",
        "coordinator": DOCTORS[0],
        "clinics": [{"id": c, "office_hours": {"weekday": ["09:00-18:00"]}} for c in CLINICS],
        "doctors": DOCTORS,
        "windows": [
            {
                "name": "平日夜間",
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "start": "18:00",
                "end": "09:00",
            },
            {
                "name": "週末",
                "days": ["sat"],
                "start": "13:00",
                "end": "09:00",
                "end_days_later": 2,
            },
        ],
        "closures": [{"name": "年末年始", "from": "12-29", "to": "01-03"}],
        "rotation": {
            "primary": {"doctors": DOCTORS, "per": "day"},
            "backup": {"doctors": DOCTORS[3:] + DOCTORS[:3], "per": "week"},
        },
    }


def overrides(rng: random.Random) -> list[Override]:
    out = []
    for n in range(OVERRIDES):
        start = START + timedelta(minutes=rng.randrange(365 * 24 * 60))
        out.append(
            Override(
                id=f"o{n}",
                layer=rng.choice(["primary", "backup"]),
                assignee=rng.choice(DOCTORS),
                start=start,
                end=start + timedelta(hours=rng.randrange(1, 72)),
                seq=n + 2,
            )
        )
    return out


def _instants(rng: random.Random, n: int = QUERIES) -> list[datetime]:
    return [START + timedelta(seconds=rng.randrange(365 * 24 * 3600)) for _ in range(n)]


def _timed(fn: Callable[[datetime], Any], instants: list[datetime]) -> dict[str, float]:
    samples = []
    for t in instants:
        t0 = time.perf_counter()
        fn(t)
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {
        "median_ms": statistics.median(samples),
        "p95_ms": samples[int(len(samples) * 0.95)],
        "n": len(samples),
    }


def bench_pure() -> dict[str, Any]:
    rng = random.Random(SEED)
    cfg = parse_config(group())
    ovs = overrides(rng)
    for year in (2026, 2027):  # jpholiday's first call per year (~0.15 s) is a one-off
        national_holidays(year)
    t0 = time.perf_counter()
    roster = Roster([Plan(START, cfg)], ovs)
    roster.segments(START, START + timedelta(days=366))
    build_ms = (time.perf_counter() - t0) * 1000
    return {
        "snapshot_build_ms": build_ms,
        "on_duty": _timed(lambda t: on_duty(roster, t), _instants(rng)),
    }


def bench_db(url: str) -> dict[str, float]:
    from renkei.store.db import Database
    from renkei.store.migrate import upgrade

    upgrade(url)
    rng = random.Random(SEED)
    db = Database(url)
    clock = ManualClock(START)
    operator = Principal(subject="bench", kind="operator")
    with db.session(write=True) as session:
        view = service.create_group(session, clock, operator, group())
    try:
        with db.session(write=True) as session:
            rows = [
                {
                    "id": o.id + view.id[:8], "group_id": view.id, "version": 1,
                    "layer": o.layer, "assignee": o.assignee, "start_at": o.start,
                    "end_at": o.end, "reason": "bench", "created_at": START,
                    "created_by": "bench",
                }
                for o in overrides(rng)
            ]  # fmt: skip
            session.execute(roster_override.insert(), rows)
        service._CACHE.clear()  # the loaded snapshot above predates the bulk rows
        with db.session() as session:
            service.duty_at(session, view.id, START)  # warm: load and cache the snapshot
            instants = _instants(rng, 2000)
            service.load_roster(session, view.id).segments(START, START + timedelta(days=366))
            return _timed(lambda t: service.duty_at(session, view.id, t), instants)
    finally:
        _drop_group(db, view.id)
        db.dispose()


def _drop_group(db: Any, group_id: str) -> None:
    """Leave a shared benchmark database as it was found."""
    from renkei.roster import models

    with db.session(write=True) as session:
        for table in (
            models.roster_override,
            models.roster_plan,
            models.roster_change,
            models.roster_membership,
            models.roster_ical_token,
        ):
            session.execute(table.delete().where(table.c.group_id == group_id))
        session.execute(models.roster_group.delete().where(models.roster_group.c.id == group_id))


@contextmanager
def _scratch_postgres(admin_url: str) -> Iterator[str]:
    """A throwaway database on the server of ``admin_url``, dropped afterwards."""
    import psycopg

    plain = "postgresql://" + admin_url.split("://", 1)[1]
    name = f"renkei_bench_roster_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield "postgresql+psycopg://" + plain.split("://", 1)[1].rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(report: Callable[..., Any] | None = None, ctx: Any = None) -> dict[str, Any]:
    """Run the roster benchmark; ``report(name, value, unit)`` receives each figure."""
    results: dict[str, Any] = bench_pure()
    with tempfile.TemporaryDirectory() as tmp:
        results["duty_at_sqlite"] = bench_db(f"sqlite:///{tmp}/bench.db")
    pg = os.environ.get("RENKEI_BENCH_POSTGRES_URL")
    if pg:
        with _scratch_postgres(pg) as url:
            results["duty_at_postgres"] = bench_db(url)
    if report is not None:
        report("roster.snapshot_build", results["snapshot_build_ms"], "ms")
        for key in ("on_duty", "duty_at_sqlite", "duty_at_postgres"):
            if key in results:
                report(f"roster.{key}.median", results[key]["median_ms"], "ms")
                report(f"roster.{key}.p95", results[key]["p95_ms"], "ms")
    return results


def main() -> int:
    results = run()
    print(f"roster: a year of roster, {OVERRIDES} overrides, 6 doctors")
    print(f"  snapshot build (whole year)   {results['snapshot_build_ms']:8.1f} ms")
    ok = True
    for key in ("on_duty", "duty_at_sqlite", "duty_at_postgres"):
        if key not in results:
            continue
        r = results[key]
        ok = ok and r["median_ms"] <= TARGET_MS
        print(
            f"  {key:<29} median {r['median_ms'] * 1000:8.1f} us   p95 {r['p95_ms'] * 1000:8.1f} us"
            f"   (n={r['n']})"
        )
    print(f"  target: median <= {TARGET_MS} ms: {'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
