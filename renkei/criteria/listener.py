"""Agreed escalation criteria on Observation writes: open an urgent call, or tell the doctor.

:func:`install` adds a write listener to the FHIR engine. On every Observation create or
update (not delete) it:

1. reads the vital signs the Observation carries (pure; most writes stop here when it
   carries none),
2. fetches the rules that apply to its patient in one indexed query
   (:func:`~renkei.criteria.service.rules_for`; most patients have none: stop),
3. reads the patient's other Observations stored within the largest rule window and
   :func:`~renkei.criteria.rules.evaluate`\\ s,
4. acts on each rule that fired, in the Observation's own transaction:

   - ``open-call``: an urgent call (a Task built by the calls intake) for the patient,
     routed as any call is; the rule is recorded on the Task (``reasonCode.coding``) and
     on the call (``rule`` in the call view and the ``created`` event). While a call that
     rule opened for the patient is still open, the firing is added to that call's
     timeline (``criteria_refired``) instead of opening another.
   - ``notify-primary``: the primary doctor and clinic are told through the calls'
     notifier (topic ``criteria.notify-primary``); no call.

Failures, decided:

- Evaluation fails (a stored rule no longer parses, a query raises, a bug): the
  Observation is stored all the same; the error is logged with its traceback and counted
  in ``renkei_criteria_errors_total``. A broken rule must not stop a nurse recording vitals.
- An ``open-call`` rule fired but the call could not be opened: the write fails with an
  OperationOutcome that names the rule (:class:`~renkei.criteria.errors.EscalationFailed`,
  500) and nothing is stored, so the writer knows at once that nobody was called and can
  phone the doctor and send the Observation again. Counted as ``result="failed"``.
- ``notify-primary`` with nobody known to tell, or failing: logged and counted
  (``result="unrouted"`` / ``"failed"``); the Observation is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.orm import Session

from renkei.auth.principal import OPERATOR, Principal
from renkei.calls.intake import RuleRef
from renkei.calls.service import CallRuntime, NewCall, notify_primary, open_rule_call
from renkei.criteria.errors import EscalationFailed
from renkei.criteria.models import criteria_rule
from renkei.criteria.rules import Firing, Rule, RuleError, evaluate, parse_rule
from renkei.criteria.service import rules_for
from renkei.criteria.vitals import readings
from renkei.fhir.context import RequestContext
from renkei.store import pending
from renkei.store.models import idx_reference, resource, resource_version
from renkei.store.repository import StoredResource

log = logging.getLogger(__name__)

#: who opens calls for rules: the operator, named so that the audit log and the call's
#: ``created_by`` say it was the agreed criteria
CRITERIA_PRINCIPAL: Principal = replace(OPERATOR, subject="criteria")
#: at most this many of the patient's recent Observations are read per evaluation
RECENT_LIMIT = 500

ERRORS = Counter(
    "renkei_criteria_errors",
    "Observation writes whose escalation criteria could not be evaluated (stored anyway)",
)
FIRED = Counter(
    "renkei_criteria_fired",
    "Escalation rules fired by Observation writes, by action and what was done",
    ["action", "result"],
)

#: requester preference among Observation.performer references
_REQUESTER_TYPES = ("PractitionerRole", "Practitioner", "Organization", "RelatedPerson")


def install(engine: Any, calls: CallRuntime) -> None:
    """Evaluate the agreed criteria on every Observation ``engine`` writes."""
    engine.write_listeners.append(_listener(calls))


def _listener(rt: CallRuntime) -> Callable[[Session, RequestContext, StoredResource], None]:
    def on_write(session: Session, ctx: RequestContext, stored: StoredResource) -> None:
        if stored.res_type == "Observation" and stored.content is not None:
            on_observation(rt, session, ctx, stored)

    return on_write


def on_observation(
    rt: CallRuntime, session: Session, ctx: RequestContext, stored: StoredResource
) -> list[Firing]:
    """Evaluate and act on one stored Observation version; the rules that fired."""
    content = stored.content or {}
    if not readings(content):
        return []
    pid = _patient_id(content)
    if pid is None:
        return []
    rows = rules_for(session, pid, rt.engine.clock)
    if not rows:
        return []
    try:
        with session.begin_nested():
            firings = _evaluate(session, rows, stored, pid, rt.engine.clock.now())
    except Exception:
        log.exception(
            "escalation criteria for %s/_history/%s could not be evaluated; stored anyway",
            stored.reference,
            stored.version_id,
        )
        ERRORS.inc()
        return []
    for firing in firings:
        if firing.rule.action == "open-call":
            _open_call(rt, session, ctx, stored, pid, firing)
        else:
            _notify(rt, session, stored, pid, firing)
    return firings


# -- evaluation -----------------------------------------------------------------------------


def _patient_id(content: dict[str, Any]) -> str | None:
    """
    >>> _patient_id({"subject": {"reference": "Patient/p1"}}), _patient_id({"subject": {}})
    ('p1', None)
    """
    ref = (content.get("subject") or {}).get("reference")
    if not isinstance(ref, str) or not ref.startswith("Patient/"):
        return None
    pid = ref[len("Patient/") :]
    return pid if pid and "/" not in pid else None


def _evaluate(
    session: Session, rows: list[Any], stored: StoredResource, pid: str, now: datetime
) -> list[Firing]:
    rules: list[Rule] = []
    for row in rows:
        try:
            rules.append(parse_rule(dict(row.rule)))
        except RuleError:
            log.exception("stored escalation rule %s no longer parses; skipped", row.id)
            ERRORS.inc()
    if not rules:
        return []
    new = _timed(stored.content or {}, stored.last_updated)
    if stored.version_id > 1 and _same_readings(session, stored, new):
        return []  # an update that changed no reading (a note, a status): nothing new
    since = now - timedelta(minutes=max(r.window_minutes for r in rules))
    recent = _recent(session, pid, stored.res_id, since)
    return evaluate(rules, new, recent, now=now)


def _timed(content: dict[str, Any], last_updated: datetime) -> dict[str, Any]:
    """An Observation without a time of its own counts as taken when it was stored."""
    if content.get("effectiveDateTime") or content.get("issued"):
        return content
    return {**content, "issued": last_updated.isoformat()}


def _same_readings(session: Session, stored: StoredResource, new: dict[str, Any]) -> bool:
    v = resource_version.c
    previous = session.execute(
        sa.select(v.content, v.last_updated).where(
            v.resource_pk == stored.pk, v.version_id == stored.version_id - 1
        )
    ).first()
    if previous is None or previous.content is None:
        return False
    return readings(_timed(dict(previous.content), previous.last_updated)) == readings(new)


def _recent(session: Session, pid: str, exclude_id: str, since: datetime) -> list[dict[str, Any]]:
    """The patient's other live Observations stored since ``since`` (newest first)."""
    pending.flush(session)  # readings written earlier in this unit (a Bundle) count too
    ref = idx_reference.c
    about_patient = sa.select(ref.resource_pk).where(
        ref.res_type == "Observation",
        ref.param.in_(("subject", "patient")),
        ref.target_id == pid,
        ref.target_type == "Patient",
    )
    rows = session.execute(
        sa.select(resource.c.content, resource.c.last_updated)
        .where(
            resource.c.res_type == "Observation",
            resource.c.last_updated >= since,
            resource.c.deleted.is_(False),
            resource.c.res_id != exclude_id,
            resource.c.pk.in_(about_patient),
        )
        .order_by(resource.c.last_updated.desc())
        .limit(RECENT_LIMIT)
    )
    return [_timed(dict(r.content), r.last_updated) for r in rows]


# -- actions --------------------------------------------------------------------------------


def _firing_detail(stored: StoredResource, firing: Firing) -> dict[str, Any]:
    return {
        "observation": f"{stored.reference}/_history/{stored.version_id}",
        "reason": firing.reason,
        "values": dict(firing.values),
    }


def _requester(content: dict[str, Any], ctx: RequestContext) -> str | None:
    """Who asks: the Observation's performer, else the writer's PractitionerRole/org.

    >>> _requester({"performer": [{"reference": "Organization/o"},
    ...     {"reference": "PractitionerRole/r"}]}, RequestContext())
    'PractitionerRole/r'
    """
    performers: list[str] = [
        str(p["reference"])
        for p in content.get("performer") or []
        if isinstance(p, dict) and isinstance(p.get("reference"), str)
    ]
    for res_type in _REQUESTER_TYPES:
        for ref in performers:
            kind, _, rid = ref.partition("/")
            if kind == res_type and rid and "/" not in rid:
                return ref
    p = ctx.principal
    role = getattr(p, "practitioner_role_id", None)
    if role:
        return role if "/" in role else f"PractitionerRole/{role}"
    org = getattr(p, "organization_id", None)
    if org:
        return org if "/" in org else f"Organization/{org}"
    return None


def _open_call(
    rt: CallRuntime,
    session: Session,
    ctx: RequestContext,
    stored: StoredResource,
    pid: str,
    firing: Firing,
) -> None:
    rule = RuleRef(firing.rule.id, firing.rule.name)
    detail = _firing_detail(stored, firing)
    new = NewCall(
        patient=f"Patient/{pid}",
        reason=f"{rule.name}: {firing.reason}",
        priority=firing.rule.priority,
        requester=_requester(stored.content or {}, ctx),
        vitals=[detail["observation"]],
    )
    try:
        # One firing of a rule at a time (across processes): the open-call check that
        # follows then sees a call a concurrent writer has just opened.
        session.execute(
            sa.select(criteria_rule.c.id).where(criteria_rule.c.id == rule.id).with_for_update()
        )
        call_id, opened = open_rule_call(
            rt,
            session,
            CRITERIA_PRINCIPAL,
            new,
            rule=rule,
            idempotency_key=f"criteria/{stored.res_id}/{stored.version_id}/{rule.id}",
            firing=detail,
            base_url=ctx.base_url,
        )
    except Exception as exc:
        FIRED.labels("open-call", "failed").inc()
        log.exception("rule %s fired on %s but no call was opened", rule.id, stored.reference)
        why = getattr(exc, "message", None) or getattr(exc, "diagnostics", None) or str(exc)
        raise EscalationFailed(
            f"the Observation meets the agreed escalation rule {rule.name!r} "
            f"({firing.reason}) but the urgent call could not be opened ({why}); "
            "nothing was stored. Call the doctor directly, then send the Observation again.",
            expression=("Observation",),
        ) from exc
    FIRED.labels("open-call", "opened" if opened else "refired").inc()
    log.info(
        "rule %s on %s: call %s %s",
        rule.id,
        stored.reference,
        call_id,
        "opened" if opened else "already open (refired)",
    )


def _notify(
    rt: CallRuntime, session: Session, stored: StoredResource, pid: str, firing: Firing
) -> None:
    rule = RuleRef(firing.rule.id, firing.rule.name)
    detail = _firing_detail(stored, firing)
    try:
        with session.begin_nested():
            told = notify_primary(
                rt,
                session,
                f"Patient/{pid}",
                rule=rule,
                about=detail["observation"],
                key=f"criteria/{stored.res_id}/{stored.version_id}/{rule.id}",
                detail=detail,
            )
    except Exception:
        FIRED.labels("notify-primary", "failed").inc()
        log.exception("rule %s fired on %s: telling the primary doctor failed", rule.id, pid)
        return
    if not told:
        FIRED.labels("notify-primary", "unrouted").inc()
        log.warning("rule %s fired for Patient/%s, who has no known primary doctor", rule.id, pid)
        return
    FIRED.labels("notify-primary", "notified").inc()


__all__ = ["CRITERIA_PRINCIPAL", "ERRORS", "FIRED", "install", "on_observation"]
