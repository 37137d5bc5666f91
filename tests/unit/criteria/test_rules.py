"""Escalation criteria: thresholds, combinations, NEWS2, windows (issue 8 part 4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from renkei.criteria import RuleError, evaluate, parse_rule, score
from renkei.fhir.capability import RENKEI_CODESYSTEM

NOW = datetime(2026, 4, 1, 17, 0, tzinfo=UTC)  # 02:00 in Tokyo


def obs(
    code: str, value: float, *, minutes_ago: int = 0, system: str = "http://loinc.org"
) -> dict[str, Any]:
    at = (NOW - timedelta(minutes=minutes_ago)).isoformat()
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "effectiveDateTime": at,
        "valueQuantity": {"value": value},
    }


def bp(systolic: float, diastolic: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "effectiveDateTime": NOW.isoformat(),
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": systolic},
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                "valueQuantity": {"value": diastolic},
            },
        ],
    }


SPO2 = parse_rule(
    {"id": "spo2", "name": "SpO2 < 90", "all_of": [{"vital": "spo2", "op": "lt", "value": 90}]}
)
SBP = parse_rule(
    {"id": "sbp", "name": "sBP < 90", "all_of": [{"vital": "systolic", "op": "lt", "value": 90}]}
)
FEVER_JCS = parse_rule(
    {
        "id": "fever-jcs",
        "name": "38.5℃以上かつ意識変化",
        "all_of": [
            {"vital": "temperature", "op": "ge", "value": 38.5},
            {"vital": "consciousness", "op": "ge", "value": 1},
        ],
    }
)
NEWS = parse_rule({"id": "news2", "name": "NEWS2 ≥ 5", "news2_at_least": 5, "priority": "asap"})


def test_evaluate_spo2_below_threshold_fires() -> None:
    fired = evaluate([SPO2, SBP], obs("2708-6", 88), [], now=NOW)
    assert [f.rule.id for f in fired] == ["spo2"]
    assert "SpO2 88.0" in fired[0].reason


def test_evaluate_value_at_threshold_does_not_fire() -> None:
    assert evaluate([SPO2], obs("2708-6", 90), [], now=NOW) == []


def test_evaluate_blood_pressure_panel_component() -> None:
    assert [f.rule.id for f in evaluate([SBP], bp(84, 50), [], now=NOW)] == ["sbp"]
    assert evaluate([SBP], bp(120, 70), [], now=NOW) == []


def test_evaluate_combination_needs_both_within_window() -> None:
    jcs_changed = obs("jcs", 10, minutes_ago=20, system=RENKEI_CODESYSTEM)
    fever = obs("8310-5", 38.7)
    assert [f.rule.id for f in evaluate([FEVER_JCS], fever, [jcs_changed], now=NOW)] == [
        "fever-jcs"
    ]
    # fever alone does not fire
    assert evaluate([FEVER_JCS], fever, [], now=NOW) == []
    # JCS 0 (alert) does not count as a change
    alert = obs("jcs", 0, minutes_ago=5, system=RENKEI_CODESYSTEM)
    assert evaluate([FEVER_JCS], fever, [alert], now=NOW) == []
    # a consciousness change older than the window does not combine
    stale = obs("jcs", 10, minutes_ago=120, system=RENKEI_CODESYSTEM)
    assert evaluate([FEVER_JCS], fever, [stale], now=NOW) == []


def test_evaluate_unrelated_observation_does_not_refire() -> None:
    recent = [obs("2708-6", 85, minutes_ago=10)]
    assert evaluate([SPO2], obs("8310-5", 36.5), recent, now=NOW) == []


def test_evaluate_news2_from_recent_readings() -> None:
    recent = [
        obs("9279-1", 22, minutes_ago=10),  # 2
        obs("2708-6", 93, minutes_ago=10),  # 2
        obs("8867-4", 115, minutes_ago=10),  # 2
    ]
    fired = evaluate([NEWS], obs("8310-5", 38.6), recent, now=NOW)  # +1 = 7
    assert [f.rule.id for f in fired] == ["news2"]
    assert "NEWS2 7点" in fired[0].reason
    assert evaluate([NEWS], obs("8310-5", 37.0), recent[:1], now=NOW) == []


@pytest.mark.parametrize(
    ("values", "total", "risk"),
    [
        (
            {
                "respiratory_rate": 16,
                "spo2": 97,
                "systolic": 130,
                "pulse": 70,
                "consciousness": 0,
                "temperature": 36.8,
            },
            0,
            "low",
        ),
        (
            {
                "respiratory_rate": 16,
                "spo2": 97,
                "systolic": 85,
                "pulse": 70,
                "consciousness": 0,
                "temperature": 36.8,
            },
            3,
            "low-medium",
        ),
        (
            {
                "respiratory_rate": 26,
                "spo2": 90,
                "systolic": 88,
                "pulse": 135,
                "consciousness": 1,
                "temperature": 39.5,
                "oxygen": 1,
            },
            19,
            "high",
        ),
    ],
)
def test_score_news2_bands(values: dict[str, float], total: int, risk: str) -> None:
    result = score(values)
    assert result.total == total
    assert result.risk == risk


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "x", "all_of": [{"vital": "spo2", "op": "lt", "value": 90}]}, "rule.id"),
        ({"id": "x", "name": "x"}, "all_of"),
        ({"id": "x", "name": "x", "all_of": [{"vital": "mood", "op": "lt", "value": 1}]}, "vital"),
        ({"id": "x", "name": "x", "all_of": [{"vital": "spo2", "op": "<", "value": 1}]}, "op"),
        (
            {"id": "x", "name": "x", "all_of": [{"vital": "spo2", "op": "lt", "value": "90"}]},
            "value",
        ),
        ({"id": "x", "name": "x", "news2_at_least": 50}, "news2_at_least"),
        ({"id": "x", "name": "x", "news2_at_least": 5, "action": "page-everyone"}, "action"),
    ],
)
def test_parse_rule_rejects_malformed(data: dict[str, Any], field: str) -> None:
    with pytest.raises(RuleError, match=field):
        parse_rule(data)


def test_rule_to_json_round_trips() -> None:
    for rule in (SPO2, SBP, FEVER_JCS):
        assert parse_rule(rule.to_json()) == rule
    news = parse_rule({"id": "n", "name": "NEWS2", "news2_at_least": 5, "action": "notify-primary"})
    assert news.to_json() == {
        "id": "n",
        "name": "NEWS2",
        "news2_at_least": 5,
        "action": "notify-primary",
        "priority": "stat",
        "window_minutes": 60,
    }


def test_parse_rule_limits_the_name() -> None:
    with pytest.raises(RuleError, match=r"rule\.name is at most 200"):
        parse_rule({"id": "x", "name": "x" * 201, "news2_at_least": 5})
