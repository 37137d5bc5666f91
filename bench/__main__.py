"""``python -m bench`` (``make bench``): run benchmark modules on SQLite and PostgreSQL.

Every module of this package with a ``run(report, ctx)`` function is a benchmark; ``core``
runs first, the others in name order. ``--only core,search`` picks some. Each backend gets a
throwaway database and a real uvicorn; figures come out as one comparable table.

    python -m bench                    # default run, both databases, a few minutes at most
    python -m bench --only core --scale 5 --json bench.json
    python -m bench --backend sqlite --set read_clients=16
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.context import BenchContext, postgres_admin_url, postgres_database, sqlite_database
from bench.report import Report

#: modules of this package that are the harness, not benchmarks
_HARNESS = frozenset({"__main__", "context", "report"})


def discover() -> dict[str, ModuleType]:
    """Benchmark modules by name: ``core`` first, then the rest alphabetically."""
    import bench

    found: dict[str, ModuleType] = {}
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__))
    for name in sorted(names, key=lambda n: (n != "core", n)):
        if name in _HARNESS or name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{name}")
        if callable(getattr(module, "run", None)):
            found[name] = module
    return found


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--only", help="comma-separated modules to run (default: all)")
    p.add_argument("--list", action="store_true", help="list the benchmark modules and exit")
    p.add_argument(
        "--backend", choices=["sqlite", "postgresql", "both"], default="both",
        help="databases to measure (postgresql only when a server answers)",
    )  # fmt: skip
    p.add_argument("--postgres-url", help="admin URL (default: RENKEI_BENCH_POSTGRES_URL, "
                   "else postgresql://postgres@127.0.0.1/test if it answers)")  # fmt: skip
    p.add_argument("--scale", type=float, default=1.0, help="multiply request counts (e.g. 5)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="module option, e.g. read_clients=16")  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    modules = discover()
    if args.list:
        for name, module in modules.items():
            print(f"{name:12} {(module.__doc__ or '').strip().splitlines()[0]}")
        return 0
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in modules]
        if unknown:
            print(f"unknown module(s): {', '.join(unknown)}; have {', '.join(modules)}")
            return 2
        modules = {n: modules[n] for n in wanted}
    options = dict(item.split("=", 1) for item in args.set if "=" in item)
    report = Report()
    report.context = _machine(args)
    print(_describe(report.context), flush=True)
    started = time.monotonic()
    failed: list[str] = []
    for backend, database in _backends(args):
        report.begin(backend)
        with database as url:
            ctx = BenchContext(
                backend, url, scale=args.scale, options=options, workers=args.workers
            )
            try:
                for name, module in modules.items():
                    report.section = name
                    run: Callable[[Report, BenchContext], None] = module.run
                    try:
                        run(report, ctx)
                    except Exception:  # one broken module must not hide the others' figures
                        traceback.print_exc()
                        failed.append(f"{name} [{backend}]")
            finally:
                ctx.close()
    print()
    print(report.render())
    print(f"\n{time.monotonic() - started:.0f} s in all")
    if args.json:
        report.write_json(args.json)
    missed = report.failures()
    if missed:
        print("targets missed:\n  " + "\n  ".join(missed))
    if failed:
        print("modules that failed (traceback above): " + ", ".join(failed))
        return 1
    return 1 if missed and args.check else 0


def _backends(args: argparse.Namespace) -> Iterator[tuple[str, Any]]:
    if args.backend in ("sqlite", "both"):
        yield "sqlite", sqlite_database()
    if args.backend in ("postgresql", "both"):
        admin = postgres_admin_url(args.postgres_url)
        if admin is None:
            print("PostgreSQL: no server answers; measuring SQLite only", flush=True)
            return
        yield "postgresql", postgres_database(admin)


def _machine(args: argparse.Namespace) -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load],
        "busy_processes": _busy_processes(),
        "python_speed_ms": _python_speed_ms(),
        "scale": args.scale,
        "workers": args.workers,
    }


def _python_speed_ms() -> float:
    """Milliseconds for ``sum(range(10**6))``, best of 5 (what ``python -m timeit`` says).

    The machines these figures come from differ by 2x between sessions; this one number,
    printed with them, tells a slower machine from a slower renkei.
    """
    import timeit

    return round(min(timeit.repeat("sum(range(10**6))", number=20, repeat=5)) / 20 * 1000, 1)


def _busy_processes() -> int:
    """Other processes using at least 20% of a CPU over one second (Linux /proc; -1 if
    unknown): a noisy machine skews every figure, so the report says how noisy it was."""

    def cpu_ticks() -> dict[int, int]:
        ticks = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry.name}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
        return ticks

    try:
        before = cpu_ticks()
        time.sleep(1.0)
        after = cpu_ticks()
    except OSError:
        return -1
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return sum(1 for pid, t in after.items() if t - before.get(pid, t) >= 0.2 * hz)


def _describe(context: dict[str, Any]) -> str:
    return (
        f"renkei bench: {context['cpus']} CPUs, load {context['load_before']}, "
        f"{context['busy_processes']} other busy processes (>=20% CPU), "
        f"python speed {context['python_speed_ms']} ms (sum(range(10**6))), "
        f"scale {context['scale']}, {context['workers']} uvicorn worker(s)"
    )


if __name__ == "__main__":
    sys.exit(main())
