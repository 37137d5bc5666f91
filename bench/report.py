"""Figures that compare: one table per run, a column per database, medians and tails.

Benchmark modules only call :meth:`Report.metric` and :meth:`Report.latency`; the report
lays the figures out side by side, adds the PostgreSQL/SQLite ratio and checks targets.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile.

    >>> percentile([5, 1, 4, 2, 3], 50), percentile(list(range(1, 101)), 99)
    (3, 99)
    """
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Target:
    """A goal for a figure: ``at_least`` (throughput) or ``at_most`` (latency)."""

    value: float
    at_most: bool = False
    #: only checked on this backend (None: every backend)
    backend: str | None = None

    def met(self, measured: float) -> bool:
        return measured <= self.value if self.at_most else measured >= self.value

    def __str__(self) -> str:
        return f"{'≤' if self.at_most else '≥'} {self.value:g}"


@dataclass
class _Row:
    section: str
    name: str
    unit: str
    target: Target | None
    values: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


class Report:
    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], _Row] = {}
        self.backends: list[str] = []
        self.backend = ""
        self.section = ""
        self.context: dict[str, Any] = {}

    # -- what modules call ----------------------------------------------------------------

    def begin(self, backend: str) -> None:
        """Figures from now on belong to ``backend`` (a column)."""
        self.backend = backend
        if backend not in self.backends:
            self.backends.append(backend)

    def metric(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        target: Target | None = None,
        note: str = "",
    ) -> None:
        key = (self.section, name)
        row = self._rows.setdefault(key, _Row(self.section, name, unit, target))
        row.values[self.backend] = value
        if note:
            row.notes[self.backend] = note
        shown = f"{value:,.1f} {unit}" + (f"  ({note})" if note else "")
        print(f"  [{self.backend}] {self.section}: {name} = {shown}", flush=True)

    def __call__(self, name: str, value: float, unit: str, **kwargs: Any) -> None:
        """``report(name, value, unit)``: the same as :meth:`metric`, for simple modules."""
        self.metric(name, value, unit, **kwargs)

    def latency(
        self,
        name: str,
        samples_ms: Sequence[float],
        *,
        p99_target: float | None = None,
        backend_only: str | None = None,
    ) -> None:
        """Median, p95 and p99 of ``samples_ms`` as three rows."""
        target = Target(p99_target, at_most=True, backend=backend_only) if p99_target else None
        self.metric(f"{name} median", statistics.median(samples_ms), "ms")
        self.metric(f"{name} p95", percentile(samples_ms, 95), "ms")
        self.metric(f"{name} p99", percentile(samples_ms, 99), "ms", target=target)

    # -- output ---------------------------------------------------------------------------

    def failures(self) -> list[str]:
        out = []
        for row in self._rows.values():
            if row.target is None:
                continue
            for backend, value in row.values.items():
                if row.target.backend and row.target.backend != backend:
                    continue
                if not row.target.met(value):
                    out.append(f"{row.section}: {row.name} [{backend}] = {value:.1f} {row.unit}")
        return out

    def render(self) -> str:
        cols = self.backends
        header = ["section", "figure", *cols]
        if len(cols) == 2:
            header.append(f"{cols[1]}/{cols[0]}")
        header += ["unit", "target"]
        lines = [header]
        for row in self._rows.values():
            cells = [row.section, row.name]
            cells += [_fmt(row.values.get(c)) for c in cols]
            if len(cols) == 2:
                a, b = row.values.get(cols[0]), row.values.get(cols[1])
                cells.append(f"{b / a:.2f}x" if a and b is not None else "")
            target = ""
            if row.target is not None:
                checked = [
                    v
                    for c, v in row.values.items()
                    if not row.target.backend or row.target.backend == c
                ]
                ok = all(row.target.met(v) for v in checked)
                where = f" ({row.target.backend})" if row.target.backend else ""
                target = f"{row.target}{where} {'ok' if ok else 'MISSED'}"
            cells += [row.unit, target]
            lines.append(cells)
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        out = []
        for n, line in enumerate(lines):
            out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
            if n == 0:
                out.append("  ".join("-" * w for w in widths))
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "context": self.context,
            "figures": [
                {
                    "section": r.section,
                    "name": r.name,
                    "unit": r.unit,
                    "values": r.values,
                    "target": str(r.target) if r.target else None,
                }
                for r in self._rows.values()
            ],
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False))


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


__all__ = ["Report", "Target", "percentile"]
