"""Intake: an urgent call is a FHIR Task; this module reads one and builds one.

A Task is an urgent call when its ``code`` has ``urgent-call`` in
:data:`~renkei.fhir.capability.RENKEI_CODESYSTEM`. What the call needs from it:

- ``for``: the Patient (required), ``requester``: who asks (a PractitionerRole, a
  RelatedPerson for the family, an Organization for a care facility),
- ``priority``: ``stat`` / ``asap`` / ``urgent`` wake the doctor on duty; ``routine``
  waits for office hours; a Task without a priority is treated as ``asap``,
- the reason in ``reasonCode.text`` (or ``description``),
- ``input`` of type ``callback-number`` (``valueContactPoint`` or ``valueString``),
- ``input`` of type ``vitals`` referencing Observations, contained (``#id``) or stored,
- ``identifier``: its first ``system|value`` is the idempotency key,
- a ``reasonCode.coding`` in :data:`CRITERIA_SYSTEM` when an agreed escalation rule
  (renkei.criteria) opened the call: ``code`` is the rule's id, ``display`` its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from renkei.calls.errors import InvalidCall
from renkei.fhir.capability import RENKEI_CODESYSTEM

URGENT_CALL_CODE = "urgent-call"
#: identifier system for keys sent in the Idempotency-Key header of /oncall/calls
IDEMPOTENCY_SYSTEM = "https://renkei.example.jp/fhir/sid/urgent-call-idempotency-key"
PRIORITIES = ("stat", "asap", "urgent", "routine")
#: Task statuses that mean "please act": a draft Task is not routed until it becomes one
INTAKE_STATUSES = frozenset({"requested", "ready", "received"})
#: Task.reasonCode coding naming the agreed escalation rule that opened the call
CRITERIA_SYSTEM = "https://renkei.example.jp/fhir/CodeSystem/escalation-criteria"


@dataclass(frozen=True)
class RuleRef:
    """The escalation rule behind a call: its id (``criteria_rule.id``) and name."""

    id: str
    name: str


@dataclass(frozen=True)
class Intake:
    patient: str
    priority: str
    requester: str | None
    reason: str | None
    callback: str | None
    idempotency_key: str | None
    vitals: tuple[str, ...] = field(default=())
    rule: RuleRef | None = None


def is_urgent_call(task: dict[str, Any] | None) -> bool:
    """
    >>> is_urgent_call({"resourceType": "Task", "code": {"coding": [
    ...     {"system": RENKEI_CODESYSTEM, "code": "urgent-call"}]}})
    True
    """
    if not task or task.get("resourceType") != "Task":
        return False
    for coding in (task.get("code") or {}).get("coding") or []:
        if coding.get("system") == RENKEI_CODESYSTEM and coding.get("code") == URGENT_CALL_CODE:
            return True
    return False


def _input_type(entry: dict[str, Any]) -> str | None:
    for coding in (entry.get("type") or {}).get("coding") or []:
        if coding.get("system") == RENKEI_CODESYSTEM:
            code = coding.get("code")
            return str(code) if code else None
    return None


def read_intake(task: dict[str, Any]) -> Intake:
    """The call's facts from a Task; :class:`InvalidCall` names what is missing."""
    patient = ((task.get("for") or {}).get("reference")) or ""
    if not patient.startswith("Patient/") or len(patient.split("/")) != 2:
        raise InvalidCall("an urgent call needs Task.for = a Patient reference (Patient/<id>)")
    priority = task.get("priority") or "asap"
    if priority not in PRIORITIES:
        raise InvalidCall(f"Task.priority must be one of {', '.join(PRIORITIES)}")
    reason_code = task.get("reasonCode")  # 0..1 CodeableConcept in R4
    reason = (reason_code.get("text") if isinstance(reason_code, dict) else None) or task.get(
        "description"
    )
    rule = _rule_of(reason_code)
    callback = None
    vitals: list[str] = []
    for entry in task.get("input") or []:
        kind = _input_type(entry)
        if kind == "callback-number":
            point = entry.get("valueContactPoint") or {}
            callback = point.get("value") or entry.get("valueString") or callback
        elif kind == "vitals":
            ref = (entry.get("valueReference") or {}).get("reference")
            if ref:
                vitals.append(ref)
    idents = [i for i in task.get("identifier") or [] if i.get("value")]
    key = f"{idents[0].get('system', '')}|{idents[0]['value']}" if idents else None
    requester = (task.get("requester") or {}).get("reference")
    return Intake(
        patient=patient,
        priority=priority,
        requester=requester,
        reason=reason,
        callback=callback,
        idempotency_key=key,
        vitals=tuple(vitals),
        rule=rule,
    )


def _rule_of(reason_code: Any) -> RuleRef | None:
    """
    >>> _rule_of({"coding": [{"system": CRITERIA_SYSTEM, "code": "r1", "display": "SpO2"}]})
    RuleRef(id='r1', name='SpO2')
    """
    if not isinstance(reason_code, dict):
        return None
    for coding in reason_code.get("coding") or []:
        if isinstance(coding, dict) and coding.get("system") == CRITERIA_SYSTEM:
            code = coding.get("code")
            if isinstance(code, str) and code:
                return RuleRef(code[:64], str(coding.get("display") or code)[:200])
    return None


def build_task(
    *,
    patient: str,
    reason: str,
    priority: str,
    requester: str | None,
    callback: str | None,
    vitals: list[dict[str, Any] | str],
    idempotency_key: str | None,
    authored_on: datetime,
    rule: RuleRef | None = None,
) -> dict[str, Any]:
    """The Task that ``POST /oncall/calls`` creates through the FHIR engine.

    Vitals given as Observation JSON are contained in the Task; given as references they are
    referenced as they are. ``rule`` (an escalation rule opened the call) becomes a
    ``reasonCode.coding`` in :data:`CRITERIA_SYSTEM`.
    """
    if priority not in PRIORITIES:
        raise InvalidCall(f"priority must be one of {', '.join(PRIORITIES)}")
    task: dict[str, Any] = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": priority,
        "code": {
            "coding": [
                {"system": RENKEI_CODESYSTEM, "code": URGENT_CALL_CODE, "display": "Urgent call"}
            ],
            "text": "緊急連絡 (urgent call)",
        },
        "for": {"reference": patient},
        "authoredOn": authored_on.isoformat(),
        "description": reason,
        "reasonCode": {"text": reason},
    }
    if rule is not None:
        task["reasonCode"]["coding"] = [
            {"system": CRITERIA_SYSTEM, "code": rule.id, "display": rule.name}
        ]
    if idempotency_key:
        task["identifier"] = [{"system": IDEMPOTENCY_SYSTEM, "value": idempotency_key}]
    if requester:
        task["requester"] = {"reference": requester}
    inputs: list[dict[str, Any]] = []
    if callback:
        inputs.append(
            {
                "type": _input_code("callback-number"),
                "valueContactPoint": {"system": "phone", "value": callback},
            }
        )
    contained: list[dict[str, Any]] = []
    for n, vital in enumerate(vitals, start=1):
        if isinstance(vital, str):
            ref = vital
        elif isinstance(vital, dict) and vital.get("resourceType") == "Observation":
            local = f"vitals{n}"
            contained.append({**vital, "id": local})
            ref = f"#{local}"
        else:
            raise InvalidCall("vitals are Observation resources or Observation references")
        inputs.append({"type": _input_code("vitals"), "valueReference": {"reference": ref}})
    if contained:
        task["contained"] = contained
    if inputs:
        task["input"] = inputs
    return task


def _input_code(code: str) -> dict[str, Any]:
    return {"coding": [{"system": RENKEI_CODESYSTEM, "code": code}]}


__all__ = [
    "CRITERIA_SYSTEM",
    "IDEMPOTENCY_SYSTEM",
    "INTAKE_STATUSES",
    "PRIORITIES",
    "URGENT_CALL_CODE",
    "Intake",
    "RuleRef",
    "build_task",
    "is_urgent_call",
    "read_intake",
]
