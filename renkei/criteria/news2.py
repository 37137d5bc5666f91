"""NEWS2 (National Early Warning Score 2, Royal College of Physicians 2017), scale 1.

Used as one kind of agreed escalation criterion (協力医療機関との事前の取り決め): a care
facility and its doctor agree that a score of, say, 5 or more means "call the doctor now".
"""

from __future__ import annotations

from dataclasses import dataclass


def _band(value: float, bands: list[tuple[float, int]], top: int) -> int:
    for upper, points in bands:
        if value <= upper:
            return points
    return top


def respiratory_rate(v: float) -> int:
    return _band(v, [(8, 3), (11, 1), (20, 0), (24, 2)], 3)


def spo2_scale1(v: float) -> int:
    return _band(v, [(91, 3), (93, 2), (95, 1)], 0)


def systolic(v: float) -> int:
    return _band(v, [(90, 3), (100, 2), (110, 1), (219, 0)], 3)


def pulse(v: float) -> int:
    return _band(v, [(40, 3), (50, 1), (90, 0), (110, 1), (130, 2)], 3)


def temperature(v: float) -> int:
    return _band(v, [(35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1)], 2)


@dataclass(frozen=True)
class News2:
    total: int
    #: points per parameter that had a value
    parts: dict[str, int]
    #: which parameters were missing (the score is then a lower bound)
    missing: tuple[str, ...]

    @property
    def any_three(self) -> bool:
        return any(p == 3 for p in self.parts.values())

    @property
    def risk(self) -> str:
        """low / low-medium / medium / high, as the RCP chart names the response bands."""
        if self.total >= 7:
            return "high"
        if self.total >= 5:
            return "medium"
        if self.any_three:
            return "low-medium"
        return "low"


_SCORERS = {
    "respiratory_rate": respiratory_rate,
    "spo2": spo2_scale1,
    "systolic": systolic,
    "pulse": pulse,
    "temperature": temperature,
}


def score(values: dict[str, float]) -> News2:
    """Score the latest values; ``consciousness`` is 0 alert / 1 not, ``oxygen`` 1 if on O2.

    >>> score({"respiratory_rate": 22, "spo2": 93, "systolic": 105, "pulse": 115,
    ...        "consciousness": 0, "temperature": 38.6, "oxygen": 0}).total
    8
    """
    parts: dict[str, int] = {}
    missing = []
    for name, scorer in _SCORERS.items():
        if name in values:
            parts[name] = scorer(values[name])
        else:
            missing.append(name)
    if "consciousness" in values:
        parts["consciousness"] = 3 if values["consciousness"] else 0
    else:
        missing.append("consciousness")
    parts["oxygen"] = 2 if values.get("oxygen") else 0
    return News2(sum(parts.values()), parts, tuple(missing))
