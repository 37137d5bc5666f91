"""Agreed escalation criteria on incoming vital signs (協力医療機関との事前の取り決め)."""

from renkei.criteria.news2 import News2, score
from renkei.criteria.rules import Firing, Rule, RuleError, Threshold, evaluate, parse_rule
from renkei.criteria.vitals import Reading, readings

__all__ = [
    "Firing",
    "News2",
    "Reading",
    "Rule",
    "RuleError",
    "Threshold",
    "evaluate",
    "parse_rule",
    "readings",
    "score",
]
