"""Agreed escalation criteria (協力医療機関との事前の取り決め) and their evaluation.

A rule is data a facility and its doctor agree on, e.g. "SpO2 below 90 %: call now",
"temperature 38.5 or more with a change in consciousness: call now", "NEWS2 of 5 or more:
call within the hour". :func:`evaluate` is pure: given the rules, the Observation just
received and the patient's recent ones, it says which rules fire and why.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from renkei.criteria.news2 import score
from renkei.criteria.vitals import Reading, readings

_OPS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "lt": (operator.lt, "<"),
    "le": (operator.le, "≤"),
    "gt": (operator.gt, ">"),
    "ge": (operator.ge, "≥"),
    "eq": (operator.eq, "="),
}
VITALS = frozenset(
    {
        "temperature",
        "spo2",
        "respiratory_rate",
        "pulse",
        "systolic",
        "diastolic",
        "consciousness",
        "oxygen",
    }
)
#: longest rule id or name (they are copied onto the urgent call)
NAME_MAX = 200
_JA = {
    "temperature": "体温",
    "spo2": "SpO2",
    "respiratory_rate": "呼吸数",
    "pulse": "脈拍",
    "systolic": "収縮期血圧",
    "diastolic": "拡張期血圧",
    "consciousness": "意識レベル変化",
    "oxygen": "酸素投与",
}


class RuleError(ValueError):
    """A rule definition is malformed; the message names the field."""


@dataclass(frozen=True)
class Threshold:
    vital: str
    op: str
    value: float

    def holds(self, latest: dict[str, float]) -> bool:
        return self.vital in latest and _OPS[self.op][0](latest[self.vital], self.value)

    def describe(self, latest: dict[str, float]) -> str:
        if self.vital == "consciousness":
            return _JA["consciousness"]
        return (
            f"{_JA[self.vital]} {latest.get(self.vital)}（基準 {_OPS[self.op][1]} {self.value:g}）"
        )


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    all_of: tuple[Threshold, ...] = ()
    news2_at_least: int | None = None
    #: open-call (an urgent call is opened) or notify-primary (the primary doctor is told)
    action: str = "open-call"
    priority: str = "stat"
    #: readings older than this are not combined with the new one
    window_minutes: int = 60

    @property
    def vitals(self) -> frozenset[str]:
        if self.news2_at_least is not None:
            return VITALS
        return frozenset(t.vital for t in self.all_of)

    def to_json(self) -> dict[str, Any]:
        """The rule's normal JSON form: :func:`parse_rule` reads it back unchanged.

        >>> rule = parse_rule({"id": "r1", "name": "SpO2 < 90", "all_of": [
        ...     {"vital": "spo2", "op": "lt", "value": 90}]})
        >>> parse_rule(rule.to_json()) == rule, rule.to_json()["all_of"]
        (True, [{'vital': 'spo2', 'op': 'lt', 'value': 90}])
        """
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.all_of:
            out["all_of"] = [
                {"vital": t.vital, "op": t.op, "value": _plain(t.value)} for t in self.all_of
            ]
        if self.news2_at_least is not None:
            out["news2_at_least"] = self.news2_at_least
        out.update(action=self.action, priority=self.priority, window_minutes=self.window_minutes)
        return out


def _plain(value: float) -> int | float:
    """90.0 -> 90, 38.5 -> 38.5 (as a person would write the threshold)."""
    return int(value) if value.is_integer() else value


@dataclass(frozen=True)
class Firing:
    rule: Rule
    reason: str
    values: dict[str, float] = field(default_factory=dict)


def parse_rule(data: dict[str, Any]) -> Rule:
    """A rule from its JSON/YAML form; raises :class:`RuleError` with the bad field.

    >>> parse_rule({"id": "spo2", "name": "SpO2 < 90", "all_of": [
    ...     {"vital": "spo2", "op": "lt", "value": 90}]}).all_of[0].op
    'lt'
    """
    if not isinstance(data, dict):
        raise RuleError("a rule is an object")
    for key in ("id", "name"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise RuleError(f"rule.{key} is required")
        if len(data[key]) > NAME_MAX:
            raise RuleError(f"rule.{key} is at most {NAME_MAX} characters")
    conditions = []
    for i, cond in enumerate(data.get("all_of") or []):
        if not isinstance(cond, dict):
            raise RuleError(f"rule.all_of[{i}] is an object")
        if cond.get("vital") not in VITALS:
            raise RuleError(f"rule.all_of[{i}].vital must be one of {sorted(VITALS)}")
        if cond.get("op") not in _OPS:
            raise RuleError(f"rule.all_of[{i}].op must be one of {sorted(_OPS)}")
        if not isinstance(cond.get("value"), int | float) or isinstance(cond.get("value"), bool):
            raise RuleError(f"rule.all_of[{i}].value must be a number")
        conditions.append(Threshold(cond["vital"], cond["op"], float(cond["value"])))
    news2 = data.get("news2_at_least")
    if news2 is not None and (not isinstance(news2, int) or not 1 <= news2 <= 20):
        raise RuleError("rule.news2_at_least must be an integer from 1 to 20")
    if not conditions and news2 is None:
        raise RuleError("a rule needs all_of conditions or news2_at_least")
    action = data.get("action", "open-call")
    if action not in ("open-call", "notify-primary"):
        raise RuleError("rule.action must be open-call or notify-primary")
    priority = data.get("priority", "stat")
    if priority not in ("stat", "asap", "urgent", "routine"):
        raise RuleError("rule.priority must be stat, asap, urgent or routine")
    window = data.get("window_minutes", 60)
    if not isinstance(window, int) or not 1 <= window <= 24 * 60:
        raise RuleError("rule.window_minutes must be 1..1440")
    return Rule(data["id"], data["name"], tuple(conditions), news2, action, priority, window)


def _latest(all_readings: Iterable[Reading], since: datetime, now: datetime) -> dict[str, float]:
    latest: dict[str, tuple[datetime, float]] = {}
    for r in all_readings:
        at = r.at or now
        if at < since:
            continue
        if r.vital not in latest or at >= latest[r.vital][0]:
            latest[r.vital] = (at, r.value)
    return {k: v for k, (_, v) in latest.items()}


def evaluate(
    rules: Iterable[Rule],
    new: dict[str, Any],
    recent: Iterable[dict[str, Any]],
    *,
    now: datetime,
) -> list[Firing]:
    """Rules that fire because of ``new``; ``recent`` are the patient's other Observations.

    A rule fires only when the new Observation carries one of the vitals it looks at, so an
    unrelated reading never re-fires an old finding.
    """
    new_readings = readings(new)
    if not new_readings:
        return []
    new_vitals = {r.vital for r in new_readings}
    old_readings = [r for obs in recent for r in readings(obs)]
    fired = []
    for rule in rules:
        if not (rule.vitals & new_vitals):
            continue
        since = now - timedelta(minutes=rule.window_minutes)
        latest = _latest([*old_readings, *new_readings], since, now)
        if rule.news2_at_least is not None:
            result = score(latest)
            if result.total >= rule.news2_at_least and all(t.holds(latest) for t in rule.all_of):
                fired.append(
                    Firing(
                        rule, f"NEWS2 {result.total}点（基準 {rule.news2_at_least}点以上）", latest
                    )
                )
            continue
        if all(t.holds(latest) for t in rule.all_of):
            reason = "、".join(t.describe(latest) for t in rule.all_of)
            fired.append(Firing(rule, reason, latest))
    return fired
