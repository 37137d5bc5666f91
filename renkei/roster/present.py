"""JSON shapes of roster answers, shared by the HTTP API and the CLI.

Instants are ISO 8601 in the group's local time (``2026-04-01T18:00:00+09:00``), which is
what a coordinator reads; they compare equal to the UTC instants they stand for.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from renkei.roster.config import GroupConfig
from renkei.roster.snapshot import Duty, Fairness, Gap, Segment, Shift
from renkei.roster.windows import Window


def instant(t: datetime, cfg: GroupConfig) -> str:
    return t.astimezone(cfg.tz).isoformat()


def person(ref: str | None, cfg: GroupConfig) -> dict[str, str] | None:
    if ref is None:
        return None
    return {"id": ref, "name": cfg.doctor_names.get(ref, ref)}


def window(w: Window | None, cfg: GroupConfig) -> dict[str, Any] | None:
    if w is None:
        return None
    return {"start": instant(w.start, cfg), "end": instant(w.end, cfg), "labels": list(w.labels)}


def duty(d: Duty, cfg: GroupConfig) -> dict[str, Any]:
    seg = d.segment
    return {
        "at": instant(d.at, cfg),
        "on_duty": d.primary is not None,
        "primary": person(d.primary, cfg),
        "backup": person(d.backup, cfg),
        "coordinator": d.coordinator,
        "window": window(d.window, cfg),
        "until": instant(seg.end, cfg) if seg else None,
        "primary_override": seg.primary_override if seg else None,
        "backup_override": seg.backup_override if seg else None,
    }


def segment(s: Segment, cfg: GroupConfig) -> dict[str, Any]:
    return {
        "start": instant(s.start, cfg),
        "end": instant(s.end, cfg),
        "primary": person(s.primary, cfg),
        "backup": person(s.backup, cfg),
        "labels": list(s.window.labels),
        "primary_override": s.primary_override,
        "backup_override": s.backup_override,
    }


def shift(s: Shift, cfg: GroupConfig) -> dict[str, Any]:
    return {
        "start": instant(s.start, cfg),
        "end": instant(s.end, cfg),
        "role": s.role,
        "doctor": person(s.doctor, cfg),
        "labels": list(s.labels),
    }


def gap(g: Gap, cfg: GroupConfig) -> dict[str, Any]:
    return {
        "start": instant(g.start, cfg),
        "end": instant(g.end, cfg),
        "missing": g.missing,
        "labels": list(g.labels),
    }


def fairness(f: Fairness, cfg: GroupConfig) -> dict[str, Any]:
    return {
        "months": f.months,
        "doctors": [
            {
                "doctor": person(doc, cfg),
                "months": {m: asdict(row) for m, row in sorted(per.items())},
                "total": {
                    key: round(sum(getattr(r, key) for r in per.values()), 2)
                    for key in ("nights", "days", "hours", "backup_nights", "backup_days")
                },
            }
            for doc, per in f.doctors.items()
        ],
    }


__all__ = ["duty", "fairness", "gap", "instant", "person", "segment", "shift", "window"]
