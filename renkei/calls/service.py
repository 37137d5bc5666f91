"""Urgent-call business rules: intake, routing, actions, worker steps, timeline, self-check.

Every function takes the session of the caller's unit of work and a clock; none commits.
One call changes state only under its row lock (``SELECT ... FOR UPDATE``), and the state,
its timeline events, its bus events, its outbound deliveries and the Task's new version
are written in that one transaction: a crash leaves either all of a step or none of it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter, Gauge
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from renkei.auth.principal import OPERATOR, Principal
from renkei.calls import escalation as esc
from renkei.calls.channels import Channel
from renkei.calls.config import CallSettings
from renkei.calls.errors import (
    CallError,
    CallNotFound,
    DuplicateCall,
    InvalidCall,
    InvalidTransition,
    NotPermitted,
)
from renkei.calls.intake import (
    IDEMPOTENCY_SYSTEM,
    INTAKE_STATUSES,
    RuleRef,
    build_task,
    is_urgent_call,
    read_intake,
)
from renkei.calls.models import call, call_delivery, call_event
from renkei.calls.ports import BusEvent, CallPorts, as_ref
from renkei.calls.routing import plan_route
from renkei.clock import Clock
from renkei.fhir.context import FhirRequest, RequestContext
from renkei.fhir.outcome import BadRequest, Conflict, FhirError
from renkei.store.db import insert_if_new
from renkei.store.repository import StoredResource

log = logging.getLogger(__name__)

SessionFactory = Callable[..., AbstractContextManager[Session]]

#: RequestContext.extra flag on the calls package's own Task writes (the listener skips them)
INTERNAL = "renkei.calls.internal"
STATE_SYSTEM = "https://renkei.example.jp/fhir/CodeSystem/urgent-call-state"
OUTCOME_SYSTEM = "https://renkei.example.jp/fhir/CodeSystem/urgent-call-outcome"

#: Task.status for each call state (https://hl7.org/fhir/R4/task.html#statemachine)
TASK_STATUS = {
    "new": "requested",
    "queued": "requested",
    "notifying": "requested",
    "acknowledged": "received",
    "accepted": "accepted",
    "resolved": "completed",
    "cancelled": "cancelled",
    "failed": "failed",
}

CALLS_CREATED = Counter("renkei_calls_created", "Urgent calls taken in")
CALL_STEPS = Counter("renkei_calls_steps", "Urgent-call transitions recorded", ["kind"])
STEP_CONFLICTS = Counter(
    "renkei_calls_step_conflicts",
    "Worker steps refused by the database because the step was already recorded",
)
STEP_ERRORS = Counter("renkei_calls_step_errors", "Worker steps that raised and were retried")
OVERDUE = Gauge("renkei_calls_overdue", "Open calls whose next step is overdue (self-check)")


@dataclass
class CallRuntime:
    """The collaborators of the calls package, chosen once in ``create_app``."""

    ports: CallPorts
    settings: CallSettings = field(default_factory=CallSettings)
    #: outbound channels by name; a delivery row is written for each one on every page
    channels: dict[str, Channel] = field(default_factory=dict)
    #: set by :func:`install`: the FHIR engine the Task goes through
    engine: Any = None


def install(runtime: CallRuntime, engine: Any) -> None:
    """Connect the runtime to the FHIR engine: Tasks written by FHIR clients enter routing."""
    runtime.engine = engine
    engine.create_preparers.append(_task_preparer(runtime))
    engine.write_listeners.append(_task_listener(runtime))


# -- intake ---------------------------------------------------------------------------------


def _task_preparer(
    rt: CallRuntime,
) -> Callable[[Session, RequestContext, dict[str, Any]], dict[str, Any]]:
    """A new urgent-call Task is taken in and routed before it is stored, so its first
    version already names the owner: one Task write per call instead of two."""

    def prepare(session: Session, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("resourceType") != "Task" or ctx.extra.get(INTERNAL):
            return body
        if not is_urgent_call(body) or body.get("status") not in INTAKE_STATUSES:
            return body
        try:
            routed = intake_task(rt, session, rt.engine.clock, body, _actor_of(ctx.principal))
        except DuplicateCall as exc:
            raise Conflict(exc.message) from exc
        except CallError as exc:
            raise BadRequest(exc.message, expression=("Task",)) from exc
        return body if routed is None else _mirror(body, routed, routed.updated_at)

    return prepare


def _task_listener(rt: CallRuntime) -> Callable[[Session, RequestContext, StoredResource], None]:
    def on_write(session: Session, ctx: RequestContext, stored: StoredResource) -> None:
        if stored.res_type != "Task" or ctx.extra.get(INTERNAL):
            return
        if stored.version_id == 1 and stored.content is not None:
            return  # a brand-new Task was taken in by _task_preparer
        row = _load(session, stored.res_id, lock=True)
        actor = _actor_of(ctx.principal)
        if stored.content is None:  # the Task was deleted: nobody must keep waiting on it
            if row is not None and row.state in esc.OPEN_STATES:
                now = rt.engine.clock.now()
                # no Task version to mirror onto: the deletion is its last one
                _act(rt, session, now, row, actor, "cancel", {"reason": "deleted"}, mirror=False)
            return
        if not is_urgent_call(stored.content):
            return
        try:
            if row is None:
                if stored.content.get("status") in INTAKE_STATUSES:
                    routed = intake_task(rt, session, rt.engine.clock, stored.content, actor)
                    if routed is not None:
                        _update_task(rt, session, routed.updated_at, routed)
            elif stored.content.get("status") == "cancelled" and row.state in esc.OPEN_STATES:
                _act(rt, session, rt.engine.clock.now(), row, actor, "cancel", {})
        except DuplicateCall as exc:
            raise Conflict(exc.message) from exc
        except CallError as exc:
            raise BadRequest(exc.message, expression=("Task",)) from exc

    return on_write


def intake_task(
    rt: CallRuntime, session: Session, clock: Clock, task: dict[str, Any], actor: str
) -> Any:
    """Create the call row for an urgent-call Task and route it in this transaction.

    Returns the routed call row for the caller to mirror onto the Task, or None when the
    Task was not taken in again (it had a call before it was deleted) or routing failed
    (the worker retries it and then writes the Task's next version)."""
    intake = read_intake(task)
    if _content(rt, session, intake.patient) is None:
        raise InvalidCall(f"{intake.patient} is not known")
    now = clock.now()
    values: dict[str, Any] = {
        "id": task["id"],
        "patient": intake.patient,
        "requester": intake.requester,
        "priority": intake.priority,
        "callback": intake.callback,
        "reason": intake.reason,
        "state": "new",
        "chain": [],
        "step_index": 0,
        "round": 0,
        "max_rounds": 1,
        "step_seq": 0,
        "next_due_at": now,
        "attempts": 0,
        "idempotency_key": intake.idempotency_key,
        "created_by": actor,
        "created_at": now,
        "updated_at": now,
        "rule_id": intake.rule.id if intake.rule else None,
        "rule_name": intake.rule.name if intake.rule else None,
    }
    if not insert_if_new(session, call, values):
        if _load(session, task["id"]) is not None:
            return None  # a deleted Task written again: its call stays as it ended
        raise DuplicateCall(
            f"an urgent call with identifier {intake.idempotency_key} already exists"
        )
    created: dict[str, Any] = {"priority": intake.priority, "vitals": list(intake.vitals)}
    if intake.rule is not None:
        created["rule"] = {"id": intake.rule.id, "name": intake.rule.name}
        created["reason"] = intake.reason
    _record(session, task["id"], now, "created", "created", actor, intake.requester, 0, created)
    CALLS_CREATED.inc()
    row: Any = _Row({c.name: None for c in call.columns} | values)
    try:
        with session.begin_nested():
            return route_call(rt, session, now, row, actor, mirror=False)
    except Exception:
        # Routing is retried by the worker (the call stays "new", due now); the call itself
        # is never refused because the roster could not be read.
        log.exception("routing call %s failed; the worker will retry", task["id"])
        STEP_ERRORS.inc()
        return None


def route_call(
    rt: CallRuntime, session: Session, now: datetime, row: Any, actor: str, *, mirror: bool = True
) -> Any:
    """Route a new or queued call: snapshot the chain and page its first step.

    Returns the routed row; ``mirror=False`` leaves writing the Task to the caller."""
    care = rt.ports.directory.primary_care(session, row.patient)
    plan = plan_route(session, rt.ports.duty, care, row.priority, now)
    state = _state(row)
    extra = {
        "clinic": plan.clinic,
        "group_id": plan.group_id,
        "coordinator": plan.coordinator,
        "route": plan.route,
        "warning": plan.warning,
    }
    if plan.route == "queued":
        assert plan.queue_until is not None
        if row.state == "queued" and row.next_due_at and plan.queue_until <= now:
            plan_until = now
        else:
            plan_until = plan.queue_until
        new, effects = _queue(state, plan.queue_owner, plan_until)
    else:
        new, effects = esc.start(state, plan.chain, plan.max_rounds, now, plan.route)
        if plan.warning:
            effects = [_with_detail(effects[0], warning=plan.warning), *effects[1:]]
    return _persist(rt, session, now, row, new, effects, actor, extra, mirror=mirror)


def _queue(s: esc.CallState, owner: str | None, until: datetime) -> esc.Transition:
    if s.state == "queued":
        from dataclasses import replace

        return replace(s, owner=owner, next_due_at=until), []
    return esc.queue(s, owner, until)


def _with_detail(effect: esc.Effect, **extra: Any) -> esc.Effect:
    if isinstance(effect, esc.Record):
        return esc.Record(effect.kind, effect.key, effect.target, {**effect.detail, **extra})
    return effect


@dataclass(frozen=True)
class NewCall:
    patient: str
    reason: str
    priority: str = "asap"
    requester: str | None = None
    callback: str | None = None
    vitals: list[dict[str, Any] | str] = field(default_factory=list)


def create_call(
    rt: CallRuntime,
    session_factory: SessionFactory,
    clock: Clock,
    principal: Principal,
    new: NewCall,
    idempotency_key: str | None,
    base_url: str,
) -> tuple[dict[str, Any], bool]:
    """``POST /oncall/calls``: create the Task through the FHIR engine; (view, created).

    Takes a session factory rather than a session because a concurrent duplicate (same
    idempotency key) is only seen when the second transaction fails on the unique key;
    the retry runs in a fresh transaction and finds the first call.
    """
    requester = new.requester or (
        as_ref("PractitionerRole", principal.practitioner_role_id)
        if principal.practitioner_role_id
        else None
    )
    key = f"{principal.subject}/{idempotency_key}" if idempotency_key else None
    for attempt in range(2):
        task = build_task(
            patient=new.patient,
            reason=new.reason,
            priority=new.priority,
            requester=requester,
            callback=new.callback,
            vitals=new.vitals,
            idempotency_key=key,
            authored_on=clock.now(),
        )
        headers = {"if-none-exist": f"identifier={IDEMPOTENCY_SYSTEM}|{key}"} if key else {}
        ctx = RequestContext(principal=principal, base_url=base_url)
        try:
            with session_factory(write=True) as session:
                resp = rt.engine.dispatch(
                    session, FhirRequest("POST", "Task", headers=headers, body=task, context=ctx)
                )
                task_id = (resp.body or {}).get("id")
                row = _load(session, task_id) if task_id else None
                if row is None:
                    raise InvalidTransition(
                        "a Task with this idempotency key exists but is not an open urgent call"
                    )
                return call_view(row, base_url), resp.status == 201
        except Conflict:
            if attempt == 0 and key:
                continue
            raise DuplicateCall("a concurrent request with this idempotency key won") from None
        except FhirError as exc:
            raise _as_call_error(exc) from exc
    raise DuplicateCall("a concurrent request with this idempotency key won")  # pragma: no cover


def _as_call_error(exc: FhirError) -> CallError:
    if exc.status in (401, 403):
        return NotPermitted(exc.diagnostics)
    if exc.status == 404:
        return InvalidCall(exc.diagnostics)
    return InvalidCall(exc.diagnostics)


# -- calls opened by agreed escalation rules (renkei.criteria) ------------------------------


def open_rule_call(
    rt: CallRuntime,
    session: Session,
    principal: Principal,
    new: NewCall,
    *,
    rule: RuleRef,
    idempotency_key: str,
    firing: dict[str, Any],
    base_url: str = "",
) -> tuple[str, bool]:
    """Open the urgent call a fired escalation rule asks for, in the caller's transaction.

    Returns ``(call id, opened)``. While a call the same rule opened for the same patient
    is still open, no second call is opened: the firing is added to that call's timeline
    as ``criteria_refired`` (once per ``firing["observation"]``), so a nurse posting SpO2
    every five minutes does not page the doctor every five minutes. The caller serialises
    firings of one rule (renkei.criteria locks the rule's row), which makes the check safe
    across processes. Raises :class:`CallError` when the call cannot be opened.
    """
    now = rt.engine.clock.now()
    existing = session.execute(
        sa.select(call.c.id, call.c.step_seq)
        .where(
            call.c.rule_id == rule.id,
            call.c.patient == new.patient,
            call.c.state.in_(sorted(esc.OPEN_STATES)),
        )
        .order_by(call.c.created_at)
        .limit(1)
    ).first()
    actor = _actor_of(principal)
    if existing is not None:
        key = f"criteria_refired:{firing.get('observation', '')}"[:100]
        try:
            with session.begin_nested():
                _record(
                    session,
                    existing.id,
                    now,
                    "criteria_refired",
                    key,
                    actor,
                    None,
                    existing.step_seq,
                    {"rule": {"id": rule.id, "name": rule.name}, **firing},
                )
        except IntegrityError:
            pass  # this Observation version is on the timeline already
        return existing.id, False
    task = build_task(
        patient=new.patient,
        reason=new.reason,
        priority=new.priority,
        requester=new.requester,
        callback=new.callback,
        vitals=new.vitals,
        idempotency_key=idempotency_key,
        authored_on=now,
        rule=rule,
    )
    headers = {"if-none-exist": f"identifier={IDEMPOTENCY_SYSTEM}|{idempotency_key}"}
    ctx = RequestContext(principal=principal, base_url=base_url)
    try:
        resp = rt.engine.dispatch(
            session, FhirRequest("POST", "Task", headers=headers, body=task, context=ctx)
        )
    except FhirError as exc:
        raise _as_call_error(exc) from exc
    task_id = (resp.body or {}).get("id")
    if not task_id or _load(session, task_id) is None:
        raise InvalidTransition(f"the Task for rule {rule.id} was stored but no call was opened")
    return str(task_id), resp.status == 201


def notify_primary(
    rt: CallRuntime,
    session: Session,
    patient: str,
    *,
    rule: RuleRef,
    about: str,
    key: str,
    detail: dict[str, Any],
) -> tuple[str, ...]:
    """Tell the patient's primary doctor and clinic that a rule fired; no call is opened.

    The recipients are found as routing finds the primary care (``primary_care``) and told
    through the same notifier as pages (topic ``criteria.notify-primary``). Returns who was
    told; empty when the patient has no known primary doctor or clinic.
    """
    care = rt.ports.directory.primary_care(session, patient)
    recipients = tuple(r for r in (care.doctor, care.clinic) if r)
    if not recipients:
        return ()
    rt.ports.notifier.publish(
        session,
        BusEvent(
            topic="criteria.notify-primary",
            call_id=None,
            at=rt.engine.clock.now(),
            recipients=recipients,
            payload={"rule": {"id": rule.id, "name": rule.name}, "patient": patient, **detail},
            key=key,
            patient=patient,
            about=about,
        ),
    )
    return recipients


# -- actions by people ----------------------------------------------------------------------

ACTIONS = ("acknowledge", "accept", "reject", "handover", "resolve", "cancel")


def act(
    rt: CallRuntime,
    session: Session,
    clock: Clock,
    call_id: str,
    principal: Principal,
    action: str,
    args: dict[str, Any],
    base_url: str = "",
) -> dict[str, Any]:
    """Apply one person's action to a call, under its row lock; returns the call view."""
    if action not in ACTIONS:
        raise InvalidCall(f"unknown action {action!r}")
    row = _load(session, call_id, lock=True)
    if row is None or not _may_see(principal, row):
        raise CallNotFound(f"call {call_id} is not known")
    _check_permitted(principal, row, action)
    expected = args.get("step")
    if (
        expected is not None
        and int(expected) != row.step_seq
        and action
        in (
            "acknowledge",
            "accept",
            "reject",
        )
    ):
        raise InvalidTransition(
            f"step {expected} is over; the call is at step {row.step_seq} with {row.owner}",
            row.state,
        )
    if action == "handover":
        target = args.get("to") or ""
        if not target.startswith("PractitionerRole/") or _content(rt, session, target) is None:
            raise InvalidCall("handover needs 'to': a known PractitionerRole/<id>")
    if action == "reject" and not (args.get("reason") or "").strip():
        raise InvalidCall("a rejection needs a reason")
    _act(rt, session, clock.now(), row, _actor_of(principal), action, args, principal)
    fresh = _load(session, call_id)
    assert fresh is not None
    return call_view(fresh, base_url)


def _act(
    rt: CallRuntime,
    session: Session,
    now: datetime,
    row: Any,
    actor: str,
    action: str,
    args: dict[str, Any],
    principal: Principal | None = None,
    *,
    mirror: bool = True,
) -> None:
    s = _state(row)
    by = _acting_ref(principal) or actor
    try:
        if action == "acknowledge":
            new, effects = esc.acknowledge(s, by)
        elif action == "accept":
            new, effects = esc.accept(s, by)
        elif action == "reject":
            new, effects = esc.reject(s, by, str(args.get("reason") or ""), now)
        elif action == "handover":
            new, effects = esc.handover(s, by, str(args["to"]), now, args.get("note"))
        elif action == "resolve":
            new, effects = esc.resolve(s, by, str(args.get("outcome") or ""), args.get("note"))
        else:
            new, effects = esc.cancel(s, by, args.get("reason"))
    except esc.TransitionRefused as exc:
        raise InvalidTransition(str(exc), row.state) from exc
    if action in ("handover", "reject") and (row.owner or "").startswith("PractitionerRole/"):
        # the holder passed the call on: their duty access ends (a later page re-grants)
        rt.ports.access.release(session, row.id, row.owner, now)
    extra: dict[str, Any] = {}
    if action == "resolve":
        extra = {"outcome": args.get("outcome"), "note": args.get("note")}
    _persist(rt, session, now, row, new, effects, actor, extra, mirror=mirror)


def _check_permitted(p: Principal, row: Any, action: str) -> None:
    refs = _refs_of(p)
    operator = p.kind == "operator"
    coordinator = bool(row.coordinator and row.coordinator in refs) or (
        p.role in ("coordinator", "admin")
        and p.organization_id is not None
        and row.clinic == as_ref("Organization", p.organization_id)
    )
    owner = row.owner is not None and row.owner in refs
    if action == "cancel":
        requester = (row.requester and row.requester in refs) or row.created_by == p.subject
        if not (requester or operator or coordinator):
            raise NotPermitted("only the requester (or the coordinator) may cancel a call")
        return
    if action == "handover":
        if not (owner or coordinator or operator):
            raise NotPermitted("only the doctor holding the call or the coordinator hands it over")
        return
    if not (owner or operator or (coordinator and action in ("resolve", "reject"))):
        raise NotPermitted(f"the call is with {row.owner}; only they may {action} it")


def _refs_of(p: Principal) -> set[str]:
    refs = set()
    if p.practitioner_role_id:
        refs.add(as_ref("PractitionerRole", p.practitioner_role_id))
    if p.practitioner_id:
        refs.add(as_ref("Practitioner", p.practitioner_id))
    if p.organization_id:
        refs.add(as_ref("Organization", p.organization_id))
    return refs


def _acting_ref(p: Principal | None) -> str | None:
    if p is None:
        return None
    if p.practitioner_role_id:
        return as_ref("PractitionerRole", p.practitioner_role_id)
    return None


def _actor_of(principal: Any) -> str:
    if principal is None:
        return "anonymous"
    return str(getattr(principal, "subject", None) or "anonymous")


def _may_see(p: Principal, row: Any) -> bool:
    if p.kind == "operator":
        return True
    refs = _refs_of(p)
    involved = {row.owner, row.requester, row.coordinator} | {
        step.get("target") for step in row.chain or []
    }
    if refs & {r for r in involved if r}:
        return True
    if row.created_by == p.subject:
        return True
    return (
        p.role in ("coordinator", "admin")
        and p.organization_id is not None
        and row.clinic == as_ref("Organization", p.organization_id)
    )


# -- worker steps ---------------------------------------------------------------------------


def claim_due(session: Session, now: datetime) -> Any:
    """Lock one call whose next step is due; other workers skip it (``SKIP LOCKED``)."""
    stmt = (
        sa.select(call)
        .where(call.c.state.in_(sorted(esc.TIMED_STATES)), call.c.next_due_at <= now)
        .order_by(call.c.next_due_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return session.execute(stmt).first()


#: the actor of worker steps in the timeline: which process ran the step
WORKER_ACTOR = f"worker:{socket.gethostname()}:{os.getpid()}"


def run_step(rt: CallRuntime, session: Session, now: datetime, row: Any) -> None:
    """Run the due step of a claimed call: route it, or escalate a timed-out page."""
    if row.state in ("new", "queued"):
        route_call(rt, session, now, row, WORKER_ACTOR)
        return
    new, effects = esc.timeout(_state(row), now)
    _persist(rt, session, now, row, new, effects, WORKER_ACTOR, {})


def backoff_step(session: Session, now: datetime, call_id: str, step_seq: int) -> None:
    """A step raised: try it again later (bounded back-off); the self-check sees if it sticks."""
    row = session.execute(
        sa.select(call.c.attempts).where(call.c.id == call_id, call.c.step_seq == step_seq)
    ).first()
    if row is None:
        return
    delay = timedelta(seconds=min(2 ** min(row.attempts, 6), 60))
    session.execute(
        call.update()
        .where(call.c.id == call_id, call.c.step_seq == step_seq)
        .values(attempts=call.c.attempts + 1, next_due_at=now + delay)
    )


# -- persistence ----------------------------------------------------------------------------


def _persist(
    rt: CallRuntime,
    session: Session,
    now: datetime,
    row: Any,
    new: esc.CallState,
    effects: list[esc.Effect],
    actor: str,
    extra: dict[str, Any],
    *,
    mirror: bool = True,
) -> Any:
    """Write a transition and its effects; returns the row as it now stands. ``mirror``:
    also write the Task's next version (False while the Task itself is being created)."""
    timed = new.state in esc.TIMED_STATES
    values: dict[str, Any] = {
        "state": new.state,
        "chain": [s.to_json() for s in new.chain],
        "step_index": new.step_index,
        "round": new.round,
        "max_rounds": new.max_rounds,
        "step_seq": new.step_seq,
        "step_token": f"{row.id}:{new.step_seq}" if timed else None,
        "owner": new.owner,
        "next_due_at": new.next_due_at if timed else None,
        "updated_at": now,
        "attempts": 0,
        **extra,
    }
    if new.state in esc.FINAL_STATES:
        values["closed_at"] = now
    session.execute(call.update().where(call.c.id == row.id).values(**values))
    fresh: Any = _Row({**row._mapping, **values})
    for effect in effects:
        if isinstance(effect, esc.Record):
            _record(
                session,
                row.id,
                now,
                effect.kind,
                effect.key,
                actor,
                effect.target,
                new.step_seq,
                effect.detail,
            )
        elif isinstance(effect, esc.Page):
            _page(rt, session, now, fresh, effect)
        elif isinstance(effect, esc.TellRequester):
            _tell_requester(rt, session, now, fresh, effect.message)
        elif isinstance(effect, esc.Close):
            rt.ports.access.end(session, row.id, now)
    if new.state != row.state and fresh.requester:
        _publish(
            rt,
            session,
            now,
            fresh,
            "urgent-call.update",
            (fresh.requester,),
            f"update:{new.step_seq}:{new.state}",
            {"state": new.state, "owner": new.owner},
        )
    if mirror:
        _update_task(rt, session, now, fresh)
    return fresh


def _record(
    session: Session,
    call_id: str,
    now: datetime,
    kind: str,
    key: str,
    actor: str,
    target: str | None,
    step_seq: int,
    detail: dict[str, Any] | None,
) -> None:
    # values as parameters, as for every timeline and delivery row: a ``.values()``
    # statement per row costs more to build than the round trip
    session.execute(
        call_event.insert(),
        {
            "call_id": call_id,
            "at": now,
            "kind": kind,
            "actor": actor,
            "target": target,
            "step_seq": step_seq,
            "step_key": key,
            "detail": detail or {},
        },
    )
    CALL_STEPS.labels(kind).inc()


def _summary_url(rt: CallRuntime, patient: str) -> str:
    return f"{rt.settings.base_url}/fhir/{patient}/$summary"


def _call_payload(rt: CallRuntime, row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "task": f"Task/{row.id}",
        "priority": row.priority,
        "reason": row.reason,
        "patient": row.patient,
        "patient_summary": _summary_url(rt, row.patient),
        "requester": row.requester,
        "callback": row.callback,
        "state": row.state,
    }


def _page(rt: CallRuntime, session: Session, now: datetime, row: Any, page: esc.Page) -> None:
    _record(
        session,
        row.id,
        now,
        "notified",
        f"notified:{page.step_seq}",
        "system",
        page.target,
        page.step_seq,
        {"role": page.role, "round": page.round},
    )
    if page.target.startswith("PractitionerRole/"):
        rt.ports.access.grant(
            session, row.id, page.target, row.patient, now, now + rt.settings.access_max
        )
    step = {
        "seq": page.step_seq,
        "role": page.role,
        "round": page.round,
        "ack_timeout_seconds": page.timeout_s,
        "token": f"{row.id}:{page.step_seq}",
    }
    _publish(
        rt,
        session,
        now,
        row,
        "urgent-call.page",
        (page.target,),
        f"page:{page.step_seq}",
        {"step": step},
    )
    if not rt.channels:
        return
    _deliver(
        rt,
        session,
        now,
        row,
        f"{row.id}:{page.step_seq}:page",
        {
            "type": "urgent-call.page",
            "at": now.isoformat(),
            "call": _call_payload(rt, row),
            "step": step,
            "recipient": {
                "reference": page.target,
                "telecom": rt.ports.directory.telecom(session, page.target),
            },
        },
    )


def _tell_requester(rt: CallRuntime, session: Session, now: datetime, row: Any, msg: str) -> None:
    _record(
        session,
        row.id,
        now,
        "requester_told",
        "requester_told",
        "system",
        row.requester,
        row.step_seq,
        {"message": msg, "callback": row.callback},
    )
    recipients = tuple(r for r in (row.requester, row.created_by) if r)
    _publish(rt, session, now, row, "urgent-call.failed", recipients, "failed", {"message": msg})
    telecom = [{"system": "phone", "value": row.callback}] if row.callback else []
    if row.requester:
        telecom += rt.ports.directory.telecom(session, row.requester)
    _deliver(
        rt,
        session,
        now,
        row,
        f"{row.id}:failed",
        {
            "type": "urgent-call.failed",
            "at": now.isoformat(),
            "message": msg,
            "call": _call_payload(rt, row),
            "recipient": {"reference": row.requester, "telecom": telecom},
        },
    )


def _publish(
    rt: CallRuntime,
    session: Session,
    now: datetime,
    row: Any,
    topic: str,
    recipients: tuple[str, ...],
    key: str,
    extra: dict[str, Any],
) -> None:
    payload = {"call": _call_payload(rt, row), **extra}
    rt.ports.notifier.publish(
        session,
        BusEvent(
            topic=topic,
            call_id=row.id,
            at=now,
            recipients=recipients,
            payload=payload,
            key=f"{row.id}:{key}",
            step=row.step_seq,
        ),
    )


def _deliver(
    rt: CallRuntime, session: Session, now: datetime, row: Any, key: str, payload: dict[str, Any]
) -> None:
    """Outbox rows for the outbound channels, in the step's own transaction."""
    for name in rt.channels:
        dedup = f"{key}:{name}"
        session.execute(
            call_delivery.insert(),
            {
                "call_id": row.id,
                "dedup_key": dedup,
                "channel": name,
                "payload": {"id": dedup, **payload},
                "created_at": now,
                "next_attempt_at": now,
                "attempts": 0,
            },
        )


def _update_task(rt: CallRuntime, session: Session, now: datetime, row: Any) -> None:
    """Mirror the call onto its Task: a new version, indexed and seen by other listeners."""
    repo = rt.engine.repository(session)
    current = repo.read("Task", row.id)
    body = _mirror({k: v for k, v in (current.content or {}).items() if k != "meta"}, row, now)
    stored, _ = repo.update(body)
    ctx = RequestContext(principal=OPERATOR, extra={INTERNAL: True})
    for listener in rt.engine.write_listeners:
        listener(session, ctx, stored)


def _mirror(task: dict[str, Any], row: Any, now: datetime) -> dict[str, Any]:
    """The Task as the call now stands: status, business status, owner, outcome."""
    body = dict(task)
    body["status"] = TASK_STATUS[row.state]
    body["businessStatus"] = {
        "coding": [{"system": STATE_SYSTEM, "code": row.state}],
        "text": row.state,
    }
    if row.owner:
        body["owner"] = {"reference": row.owner}
    body["lastModified"] = now.isoformat()
    if row.state == "failed":
        body["statusReason"] = {"text": esc.FAILED_MESSAGE}
    if row.state == "resolved" and row.outcome:
        output = [
            {
                "type": {"coding": [{"system": OUTCOME_SYSTEM, "code": "outcome"}]},
                "valueCodeableConcept": {
                    "coding": [{"system": OUTCOME_SYSTEM, "code": row.outcome}]
                },
            }
        ]
        if row.note:
            output.append(
                {
                    "type": {"coding": [{"system": OUTCOME_SYSTEM, "code": "note"}]},
                    "valueString": row.note,
                }
            )
        body["output"] = output
    return body


# -- reads ----------------------------------------------------------------------------------


class _Row:
    """A call row built from known column values (saves re-reading what was just written)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._mapping = values
        self.__dict__.update(values)


def _load(session: Session, call_id: str, *, lock: bool = False) -> Any:
    stmt = sa.select(call).where(call.c.id == call_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.execute(stmt).first()


def _content(rt: CallRuntime, session: Session, ref: str) -> dict[str, Any] | None:
    from renkei.calls.ports import _content as content_of

    return content_of(session, ref)


def _state(row: Any) -> esc.CallState:
    return esc.CallState(
        state=row.state,
        chain=tuple(esc.Step.from_json(s) for s in row.chain or []),
        step_index=row.step_index,
        round=row.round,
        max_rounds=row.max_rounds,
        step_seq=row.step_seq,
        owner=row.owner,
        next_due_at=row.next_due_at,
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def call_view(row: Any, base_url: str = "") -> dict[str, Any]:
    """The JSON shape of a call in /oncall/calls (base_url: the FHIR base)."""
    chain = list(row.chain or [])
    current = chain[row.step_index] if row.state == "notifying" and chain else None
    return {
        "id": row.id,
        "task": f"Task/{row.id}",
        "state": row.state,
        "task_status": TASK_STATUS[row.state],
        "priority": row.priority,
        "patient": row.patient,
        "requester": row.requester,
        "callback": row.callback,
        "reason": row.reason,
        "owner": row.owner,
        "route": row.route,
        "clinic": row.clinic,
        "group": row.group_id,
        "coordinator": row.coordinator,
        "warning": row.warning,
        "step": {
            "seq": row.step_seq,
            "index": row.step_index,
            "round": row.round,
            "role": current["role"] if current else None,
            "token": row.step_token,
            "due_at": _iso(row.next_due_at),
        },
        "chain": chain,
        "max_rounds": row.max_rounds,
        "outcome": row.outcome,
        "note": row.note,
        "rule": {"id": row.rule_id, "name": row.rule_name} if row.rule_id else None,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "closed_at": _iso(row.closed_at),
        "links": {
            "task": f"{base_url}/Task/{row.id}",
            "patient_summary": f"{base_url}/{row.patient}/$summary",
            "timeline": f"/oncall/calls/{row.id}/timeline",
        },
    }


def get_call(
    session: Session, call_id: str, principal: Principal, base_url: str = ""
) -> dict[str, Any]:
    row = _load(session, call_id)
    if row is None or not _may_see(principal, row):
        raise CallNotFound(f"call {call_id} is not known")
    view = call_view(row, base_url)
    view["timeline"] = timeline(session, call_id)
    return view


def timeline(session: Session, call_id: str) -> list[dict[str, Any]]:
    """Every event of a call in order: created, routed, notified, acknowledged, ..."""
    rows = session.execute(
        sa.select(call_event).where(call_event.c.call_id == call_id).order_by(call_event.c.pk)
    )
    return [
        {
            "kind": r.kind,
            "at": _iso(r.at),
            "actor": r.actor,
            "target": r.target,
            "step": r.step_seq,
            "detail": r.detail or {},
        }
        for r in rows
    ]


def list_calls(
    session: Session, principal: Principal, *, state: str | None, mine: bool, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest calls the caller may see. Visibility is part of the query: filtering
    the newest ``limit`` rows afterwards would hide a clinic's calls behind others'."""
    stmt = (
        sa.select(call)
        .where(_visible_to(session, principal))
        .order_by(call.c.created_at.desc(), call.c.id.desc())
        .limit(max(1, min(limit, 500)))
    )
    if state == "open":
        stmt = stmt.where(call.c.state.in_(sorted(esc.OPEN_STATES)))
    elif state:
        stmt = stmt.where(call.c.state == state)
    if mine:
        refs = _refs_of(principal)
        stmt = stmt.where(call.c.owner.in_(sorted(refs)) if refs else sa.false())
    return [call_view(r) for r in session.execute(stmt) if _may_see(principal, r)]


def _visible_to(session: Session, p: Principal) -> Any:
    """SQL for :func:`_may_see` (which still checks each row it returns)."""
    if p.kind == "operator":
        return sa.true()
    conds: list[Any] = [call.c.created_by == p.subject]
    refs = sorted(_refs_of(p))
    if refs:
        conds += [
            call.c.owner.in_(refs),
            call.c.requester.in_(refs),
            call.c.coordinator.in_(refs),
            _chain_names(session, refs),
        ]
    if p.role in ("coordinator", "admin") and p.organization_id is not None:
        conds.append(call.c.clinic == as_ref("Organization", p.organization_id))
    return sa.or_(*conds)


def _chain_names(session: Session, refs: list[str]) -> Any:
    """A step of the call's escalation chain targets one of ``refs``."""
    if session.get_bind().dialect.name == "postgresql":
        sql = (
            "EXISTS (SELECT 1 FROM jsonb_array_elements(call.chain) AS step(v)"
            " WHERE step.v ->> 'target' IN :chain_refs)"
        )
    else:
        sql = (
            "EXISTS (SELECT 1 FROM json_each(call.chain) AS step"
            " WHERE json_extract(step.value, '$.target') IN :chain_refs)"
        )
    return sa.text(sql).bindparams(sa.bindparam("chain_refs", refs, expanding=True))


# -- self-check -----------------------------------------------------------------------------


def self_check(rt: CallRuntime, session: Session, clock: Clock) -> dict[str, Any]:
    """Open calls whose next step is overdue (or missing): metric, log, coordinator told.

    Each overdue step is reported to the coordinator once (``overdue:<step>`` is unique in
    the timeline); the gauge and the returned list always show the current count.
    """
    now = clock.now()
    limit = now - rt.settings.overdue_grace
    rows = session.execute(
        sa.select(call).where(
            call.c.state.in_(sorted(esc.TIMED_STATES)),
            sa.or_(call.c.next_due_at.is_(None), call.c.next_due_at < limit),
        )
    ).all()
    report = []
    for row in rows:
        late = (now - row.next_due_at).total_seconds() if row.next_due_at else None
        item = {
            "id": row.id,
            "state": row.state,
            "step": row.step_seq,
            "owner": row.owner,
            "next_due_at": _iso(row.next_due_at),
            "late_seconds": late,
            "attempts": row.attempts,
        }
        report.append(item)
        try:
            with session.begin_nested():
                _record(
                    session,
                    row.id,
                    now,
                    "overdue",
                    f"overdue:{row.step_seq}",
                    "system",
                    row.coordinator,
                    row.step_seq,
                    item,
                )
        except IntegrityError:
            continue  # already reported for this step
        log.warning("urgent call %s is overdue: %s", row.id, item)
        recipients = (row.coordinator,) if row.coordinator else ("operators",)
        _publish(
            rt,
            session,
            now,
            row,
            "urgent-call.overdue",
            recipients,
            f"overdue:{row.step_seq}",
            {"overdue": item},
        )
    OVERDUE.set(len(report))
    return {"checked_at": now.isoformat(), "overdue": report, "count": len(report)}


__all__ = [
    "ACTIONS",
    "CALLS_CREATED",
    "INTERNAL",
    "OVERDUE",
    "STEP_CONFLICTS",
    "STEP_ERRORS",
    "TASK_STATUS",
    "WORKER_ACTOR",
    "CallRuntime",
    "NewCall",
    "act",
    "backoff_step",
    "call_view",
    "claim_due",
    "create_call",
    "get_call",
    "install",
    "intake_task",
    "list_calls",
    "notify_primary",
    "open_rule_call",
    "route_call",
    "run_step",
    "self_check",
    "timeline",
]
