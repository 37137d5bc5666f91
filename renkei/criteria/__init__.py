"""Agreed escalation criteria on incoming vital signs (協力医療機関との事前の取り決め).

Pure parts: :func:`parse_rule`, :func:`evaluate`, the vital-sign readers and NEWS2. Wired
parts: the rule table and its service (``service.py``, ``/criteria/rules``) and the
Observation write listener that opens urgent calls (:func:`install`, ``listener.py``).
"""

from renkei.criteria.errors import (
    CriteriaError,
    EscalationFailed,
    InvalidRule,
    NotPermitted,
    RuleNotFound,
)
from renkei.criteria.listener import install
from renkei.criteria.news2 import News2, score
from renkei.criteria.rules import Firing, Rule, RuleError, Threshold, evaluate, parse_rule
from renkei.criteria.vitals import Reading, readings

__all__ = [
    "CriteriaError",
    "EscalationFailed",
    "Firing",
    "InvalidRule",
    "News2",
    "NotPermitted",
    "Reading",
    "Rule",
    "RuleError",
    "RuleNotFound",
    "Threshold",
    "evaluate",
    "install",
    "parse_rule",
    "readings",
    "score",
]
