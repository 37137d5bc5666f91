"""Topics and filters: what a Subscription may ask for, and what matches."""

from __future__ import annotations

import pytest

from renkei.notify.errors import InvalidSubscription, UnknownTopic
from renkei.notify.outbox import Event
from renkei.notify.topics import TOPIC_BASE, TOPICS, get_topic, matches, parse_filters

OBS = TOPICS[f"{TOPIC_BASE}/observation"]
CALL = TOPICS[f"{TOPIC_BASE}/urgent-call"]


def test_get_topic_unknown_raises() -> None:
    with pytest.raises(UnknownTopic):
        get_topic("https://example.org/SubscriptionTopic/nope")


def test_parse_filters_rejects_unknown_parameter() -> None:
    with pytest.raises(InvalidSubscription, match="filter 'status'"):
        parse_filters(OBS, ["Observation?status=final"])


def test_parse_filters_rejects_empty_value() -> None:
    with pytest.raises(InvalidSubscription, match="has no value"):
        parse_filters(OBS, ["patient="])


def test_matches_patient_and_code_filters() -> None:
    event = Event(
        "resource",
        "create",
        "Observation",
        "o1",
        1,
        patient="Patient/p1",
        data={"codes": ["http://loinc.org|8867-4"]},
    )
    assert matches(OBS, [{"param": "patient", "value": "p1"}], event)
    assert matches(OBS, [{"param": "code", "value": "8867-4"}], event)
    assert matches(OBS, [{"param": "code", "value": "http://loinc.org|8867-4,x"}], event)
    assert not matches(OBS, [{"param": "patient", "value": "Patient/p2"}], event)
    assert not matches(OBS, [{"param": "code", "value": "other|8867-4"}], event)


def test_matches_respects_topic_actions_and_types() -> None:
    deleted = Event("resource", "delete", "Observation", "o1", 2, patient="Patient/p1")
    assert not matches(OBS, [], deleted)
    plain_task = Event("resource", "update", "Task", "t1", 2)
    call = Event("resource", "update", "Task", "t1", 2, data={"urgentCall": True})
    assert not matches(CALL, [], plain_task)
    assert matches(CALL, [], call)
