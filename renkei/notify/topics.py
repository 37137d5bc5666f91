"""The SubscriptionTopics this server offers (R5 Subscriptions Backport IG for R4).

In R4 a topic is only a canonical URL (the IG's components.html); the definitions live
here, are listed by ``Subscription/$topic-list`` and in the CapabilityStatement, and each
says which events it covers and which filters a Subscription may set on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from renkei.notify.errors import InvalidSubscription, UnknownTopic
from renkei.notify.outbox import Event

TOPIC_BASE = "https://renkei.example.jp/fhir/SubscriptionTopic"

#: Resources that make up a patient's shared summary (what $summary shows).
SUMMARY_TYPES = frozenset(
    {
        "Patient",
        "Condition",
        "AllergyIntolerance",
        "MedicationRequest",
        "MedicationStatement",
        "CarePlan",
        "Procedure",
        "Immunization",
        "Consent",
    }
)


@dataclass(frozen=True)
class Filter:
    name: str
    description: str
    #: values (already split on ","), event -> matches
    test: Callable[[list[str], Event], bool]


@dataclass(frozen=True)
class Topic:
    url: str
    title: str
    description: str
    resource_types: frozenset[str]
    actions: frozenset[str]
    filters: tuple[Filter, ...]
    extra: Callable[[Event], bool] | None = None

    def covers(self, event: Event) -> bool:
        if event.kind != "resource" or event.res_type not in self.resource_types:
            return False
        if event.action not in self.actions:
            return False
        return self.extra is None or self.extra(event)

    def filter(self, name: str) -> Filter | None:
        return next((f for f in self.filters if f.name == name), None)

    def to_json(self) -> dict[str, object]:
        return {
            "url": self.url,
            "title": self.title,
            "description": self.description,
            "resourceTypes": sorted(self.resource_types),
            "actions": sorted(self.actions),
            "filters": [{"name": f.name, "description": f.description} for f in self.filters],
        }


def _patient_test(values: list[str], event: Event) -> bool:
    wanted = {v if "/" in v else f"Patient/{v}" for v in values}
    return event.patient in wanted


def _audience_test(values: list[str], event: Event) -> bool:
    return bool(set(values) & set(event.audience))


def _code_test(values: list[str], event: Event) -> bool:
    codes = set(event.data.get("codes", []))
    for value in values:
        if "|" in value:
            if value in codes:
                return True
        elif any(c.split("|", 1)[-1] == value for c in codes):
            return True
    return False


_PATIENT = Filter("patient", "Patient/<id> the event is about", _patient_test)

TOPICS: dict[str, Topic] = {
    t.url: t
    for t in (
        Topic(
            url=f"{TOPIC_BASE}/urgent-call",
            title="Urgent call created or updated",
            description="A Task with code urgent-call was created, or its state changed.",
            resource_types=frozenset({"Task"}),
            actions=frozenset({"create", "update"}),
            filters=(
                _PATIENT,
                Filter("owner", "PractitionerRole/<id> currently responsible", _audience_test),
            ),
            extra=lambda e: bool(e.data.get("urgentCall")),
        ),
        Topic(
            url=f"{TOPIC_BASE}/patient-summary",
            title="Patient summary changed",
            description=(
                "A resource of the patient's shared summary was created, updated or deleted: "
                + ", ".join(sorted(SUMMARY_TYPES))
                + "."
            ),
            resource_types=SUMMARY_TYPES,
            actions=frozenset({"create", "update", "delete"}),
            filters=(_PATIENT,),
        ),
        Topic(
            url=f"{TOPIC_BASE}/communication",
            title="New Communication for a patient",
            description="A Communication about a patient was created.",
            resource_types=frozenset({"Communication"}),
            actions=frozenset({"create"}),
            filters=(
                _PATIENT,
                Filter("recipient", "reference of a recipient", _audience_test),
            ),
        ),
        Topic(
            url=f"{TOPIC_BASE}/observation",
            title="Observation for a patient",
            description="An Observation about a patient was created or updated.",
            resource_types=frozenset({"Observation"}),
            actions=frozenset({"create", "update"}),
            filters=(_PATIENT, Filter("code", "token: [system|]code", _code_test)),
        ),
    )
}


def get_topic(url: str) -> Topic:
    topic = TOPICS.get(url)
    if topic is None:
        raise UnknownTopic(url)
    return topic


def parse_filters(topic: Topic, criteria: list[str]) -> list[dict[str, str]]:
    """Backport filter criteria (``Observation?patient=Patient/1``) to checked pairs.

    >>> t = TOPICS[f"{TOPIC_BASE}/observation"]
    >>> parse_filters(t, ["Observation?patient=Patient/1&code=http://loinc.org|8867-4"])
    [{'param': 'patient', 'value': 'Patient/1'}, {'param': 'code', 'value': 'http://loinc.org|8867-4'}]
    """
    out: list[dict[str, str]] = []
    for raw in criteria:
        query = raw.split("?", 1)[1] if "?" in raw else raw
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError as exc:
            raise InvalidSubscription(
                f"malformed filter criteria {raw!r}", "Subscription.criteria"
            ) from exc
        for name, value in pairs:
            if topic.filter(name) is None:
                allowed = ", ".join(f.name for f in topic.filters)
                raise InvalidSubscription(
                    f"filter {name!r} is not offered by topic {topic.url}; allowed: {allowed}",
                    "Subscription.criteria",
                )
            if not value:
                raise InvalidSubscription(f"filter {name!r} has no value", "Subscription.criteria")
            out.append({"param": name, "value": value})
    return out


def matches(topic: Topic, filters: list[dict[str, str]], event: Event) -> bool:
    """Whether ``event`` is in ``topic`` and passes every filter (AND; commas are OR)."""
    if not topic.covers(event):
        return False
    for item in filters:
        flt = topic.filter(item["param"])
        if flt is None or not flt.test(item["value"].split(","), event):
            return False
    return True


__all__ = [
    "SUMMARY_TYPES",
    "TOPICS",
    "TOPIC_BASE",
    "Topic",
    "get_topic",
    "matches",
    "parse_filters",
]
