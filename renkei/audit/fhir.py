"""The audit log read as FHIR ``AuditEvent`` (https://hl7.org/fhir/R4/auditevent.html).

AuditEvents are not stored as resources: ``GET /fhir/AuditEvent`` is served from the audit
table, for auditors only (role ``admin`` or a SMART scope on AuditEvent), and every other
interaction on the type is refused, so nobody can create, change or delete one through
the API. ``Patient/[id]/$disclosure`` answers "who saw my record" in one GROUP BY query.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.audit.models import audit_patient, audit_record
from renkei.fhir.context import FhirRequest, FhirResponse, RequestContext
from renkei.fhir.outcome import BadRequest, Forbidden, MethodNotAllowed, NotFound
from renkei.fhir.timeparse import parse_instant

if TYPE_CHECKING:
    from renkei.fhir.engine import FhirEngine, OperationDef

#: extra SQL condition on audit_record rows an auditor may see (None: all)
RecordFilter = Callable[[Session, RequestContext], Any]

_INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_SUBJECT_SYSTEM = "urn:renkei:subject"
_CLIENT_SYSTEM = "urn:renkei:client"
_MAX_COUNT = 500


def may_read_audit(principal: Any) -> bool:
    """Auditors: role admin, or a SMART scope naming AuditEvent with read/search rights.

    ``None`` (no authentication configured: embedded demo, engine tests) and the local
    operator (``kind == "operator"`` without an organisation) are let through.
    A wildcard scope (``system/*.rs``) does not reach the audit log.
    """
    if principal is None:
        return True
    if getattr(principal, "kind", None) == "operator" and not getattr(
        principal, "organization_id", None
    ):
        return True  # the local operator (renkei CLI, workers)
    if getattr(principal, "role", None) == "admin":
        return True
    for scope in getattr(principal, "scopes", ()) or ():
        _, _, rest = scope.partition("/")
        res_type, _, perms = rest.partition(".")
        if res_type == "AuditEvent" and ("r" in perms or "s" in perms or perms == "read"):
            return True
    return False


def to_audit_event(row: Any, base_url: str) -> dict[str, Any]:
    """One audit row as an AuditEvent (from the hashed body, not the search columns)."""
    body = json.loads(row.body)
    seq = str(row.seq)
    agents: list[dict[str, Any]] = []
    who: dict[str, Any]
    if body.get("practitioner_role_id"):
        who = {"reference": f"PractitionerRole/{body['practitioner_role_id']}"}
    elif body.get("subject"):
        who = {"identifier": {"system": _SUBJECT_SYSTEM, "value": body["subject"]}}
    else:
        who = {"display": "anonymous"}
    person: dict[str, Any] = {"who": who, "requestor": True}
    if body.get("subject"):
        person["altId"] = body["subject"]
    if body.get("role"):
        person["role"] = [{"text": body["role"]}]
    if body.get("source"):
        person["network"] = {"address": body["source"], "type": "2"}
    if body.get("purpose"):
        person["purposeOfUse"] = [
            {
                "coding": [{"system": _ACT_REASON, "code": "BTG", "display": "break the glass"}],
                "text": body["purpose"],
            }
        ]
    agents.append(person)
    if body.get("organization_id"):
        agents.append(
            {
                "who": {"reference": f"Organization/{body['organization_id']}"},
                "requestor": False,
            }
        )
    if body.get("client_id"):
        agents.append(
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://dicom.nema.org/resources/ontology/DCM",
                            "code": "110150",
                            "display": "Application",
                        }
                    ]
                },
                "who": {"identifier": {"system": _CLIENT_SYSTEM, "value": body["client_id"]}},
                "requestor": False,
            }
        )
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"Patient/{pid}"},
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "1",
            },
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"},
        }
        for pid in body.get("patients") or ()
    ]
    for ent in body.get("entities") or ():
        if ent["ref"].startswith("Patient/"):
            continue
        entities.append(
            {
                "what": {"reference": ent["ref"]},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                },
                "description": ent.get("how"),
            }
        )
    query = body.get("query")
    if query:
        entities.append({"type": {"code": "2"}, "name": "query", "description": query})
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": seq,
        "meta": {"versionId": "1", "lastUpdated": body["recorded"]},
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [{"system": _INTERACTION_SYSTEM, "code": body.get("interaction")}],
        "action": body.get("action", "E"),
        "recorded": body["recorded"],
        "outcome": body.get("outcome", "0"),
        "agent": agents,
        "source": {
            "observer": {"display": "renkei"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
    }
    if body.get("detail"):
        event["outcomeDesc"] = body["detail"]
    if body.get("purpose"):
        event["purposeOfEvent"] = person["purposeOfUse"]
    if entities:
        event["entity"] = entities
    event["extension"] = [
        {"url": "urn:renkei:audit:request-id", "valueString": body.get("request_id") or ""},
        {"url": "urn:renkei:audit:http", "valueString": f"{body.get('method')} {body.get('path')}"},
        {"url": "urn:renkei:audit:status", "valueInteger": int(body.get("status", 0))},
        {"url": "urn:renkei:audit:hash", "valueString": row.hash},
    ]
    return event


def _ref_id(value: str, res_type: str) -> str:
    return value[len(res_type) + 1 :] if value.startswith(f"{res_type}/") else value


def _date_condition(value: str) -> Any:
    col = audit_record.c.recorded
    prefix = value[:2] if value[:2] in ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb") else "eq"
    raw = value[2:] if value[:2] == prefix else value
    when = parse_instant(raw if "T" in raw else f"{raw}T00:00:00+09:00", "date")
    ops = {
        "gt": col > when,
        "sa": col > when,
        "ge": col >= when,
        "lt": col < when,
        "eb": col < when,
        "le": col <= when,
    }
    if prefix in ops:
        return ops[prefix]
    if "T" in raw:
        return col == when if prefix == "eq" else col != when
    # a bare day means the whole day (JST unless the value says otherwise)
    from datetime import timedelta

    end = when + timedelta(days=1)
    inside = sa.and_(col >= when, col < end)
    return inside if prefix == "eq" else sa.not_(inside)


class AuditEventService:
    """Serves the AuditEvent type and ``$disclosure`` from the audit table."""

    def __init__(self, record_filter: RecordFilter | None = None) -> None:
        self.record_filter = record_filter

    def handle(
        self, engine: FhirEngine, session: Session, req: FhirRequest, parts: list[str]
    ) -> FhirResponse:
        method = req.method.upper()
        engine.authorize(req, "search" if not parts else "read", "AuditEvent")
        if method not in ("GET", "HEAD") and not (parts == ["_search"] and method == "POST"):
            raise MethodNotAllowed(
                "AuditEvents are written by the server only; they cannot be created, "
                "changed or deleted through the API"
            )
        if not may_read_audit(req.context.principal):
            raise Forbidden("reading the audit log is for auditors (role admin)")
        if not parts or parts == ["_search"]:
            params = list(req.params)
            if isinstance(req.body, list):
                params.extend(req.body)
            return FhirResponse(200, self.search(session, req.context, params))
        if len(parts) == 1 and parts[0].isdigit():
            stmt = self._base(session, req.context).where(audit_record.c.seq == int(parts[0]))
            row = session.execute(stmt).first()
            if row is None:
                raise NotFound(f"AuditEvent/{parts[0]} is not known")
            return FhirResponse(200, to_audit_event(row, req.context.base_url))
        raise NotFound(f"AuditEvent/{'/'.join(parts)} is not known")

    def _base(self, session: Session, ctx: RequestContext) -> sa.Select[Any]:
        stmt = sa.select(audit_record)
        if self.record_filter is not None:
            cond = self.record_filter(session, ctx)
            if cond is not None:
                stmt = stmt.where(cond)
        return stmt

    def search(
        self, session: Session, ctx: RequestContext, params: list[tuple[str, str]]
    ) -> dict[str, Any]:
        stmt = self._base(session, ctx)
        count, before, wanted_total = 50, None, "known"
        for name, value in params:
            if name in ("patient", "entity") and value:
                ids = [v.strip() for v in value.split(",") if v.strip()]
                if name == "patient":
                    pids = [_ref_id(v, "Patient") for v in ids]
                    sub = sa.select(audit_patient.c.seq).where(audit_patient.c.patient_id.in_(pids))
                    stmt = stmt.where(audit_record.c.seq.in_(sub))
                else:
                    stmt = stmt.where(
                        sa.or_(*(audit_record.c.body.contains(f'"ref":"{v}"') for v in ids))
                    )
            elif name == "agent" and value:
                conds = []
                for v in value.split(","):
                    v = v.strip()
                    conds += [
                        audit_record.c.subject == v,
                        audit_record.c.client_id == v,
                        audit_record.c.practitioner_role_id == _ref_id(v, "PractitionerRole"),
                        audit_record.c.organization_id == _ref_id(v, "Organization"),
                    ]
                stmt = stmt.where(sa.or_(*conds))
            elif name == "date" and value:
                stmt = stmt.where(_date_condition(value))
            elif name in ("subtype", "type") and value:
                codes = [v.rpartition("|")[2] for v in value.split(",")]
                stmt = stmt.where(audit_record.c.interaction.in_(codes))
            elif name == "outcome" and value:
                stmt = stmt.where(_outcome_condition(value))
            elif name == "purpose" and value:
                # break-the-glass review: purpose=BTG
                if value.upper() != "BTG":
                    raise BadRequest("purpose supports BTG (break-the-glass) only")
                stmt = stmt.where(audit_record.c.break_glass.is_(True))
            elif name == "_count":
                if not value.isdigit():
                    raise BadRequest(f"_count must be a non-negative integer, got {value!r}")
                count = max(1, min(int(value), _MAX_COUNT))
            elif name == "_before":
                if not value.isdigit():
                    raise BadRequest("_before is a paging cursor from a next link")
                before = int(value)
            elif name == "_total":
                if value not in ("none", "estimate", "accurate"):
                    raise BadRequest("_total is none, estimate or accurate")
                wanted_total = value
            elif name in ("_sort", "_format", "_pretty"):
                continue
            else:
                raise BadRequest(f"search parameter {name!r} is not supported for AuditEvent")
        # Counted only when asked (the log is the largest table there is), or known anyway:
        # a first page that holds every match. As the FHIR search does (docs/search.md).
        total: int | None = None
        if wanted_total in ("estimate", "accurate"):
            total = session.execute(
                sa.select(sa.func.count()).select_from(stmt.subquery())
            ).scalar_one()
        if before is not None:
            stmt = stmt.where(audit_record.c.seq < before)
        rows = list(session.execute(stmt.order_by(audit_record.c.seq.desc()).limit(count + 1)))
        if total is None and wanted_total == "known" and before is None and len(rows) <= count:
            total = len(rows)
        base = ctx.base_url
        keep = [(k, v) for k, v in params if k != "_before"]
        links = [{"relation": "self", "url": _url(base, params)}]
        if len(rows) > count:
            cursor = ("_before", str(rows[count - 1].seq))
            links.append({"relation": "next", "url": _url(base, [*keep, cursor])})
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
        if total is not None:
            bundle["total"] = total
        return {
            **bundle,
            "link": links,
            "entry": [
                {
                    "fullUrl": f"{base}/AuditEvent/{r.seq}",
                    "resource": to_audit_event(r, base),
                    "search": {"mode": "match"},
                }
                for r in rows[:count]
            ],
        }

    # -- Patient/[id]/$disclosure ----------------------------------------------------------

    def disclosure(
        self,
        engine: FhirEngine,
        session: Session,
        req: FhirRequest,
        res_type: str | None,
        res_id: str | None,
    ) -> FhirResponse:
        """Who accessed this patient's record: one row per (person, organisation, role)."""
        assert res_type == "Patient" and res_id is not None
        if not may_read_audit(req.context.principal):
            raise Forbidden("the disclosure report is for auditors (role admin)")
        patient = engine.repository(session).read("Patient", res_id)
        if not engine.policy.can_read(session, req.context, patient):
            raise NotFound(f"Patient/{res_id} is not known")
        rec = audit_record
        sub = sa.select(audit_patient.c.seq).where(audit_patient.c.patient_id == res_id)
        stmt = (
            sa.select(
                rec.c.subject,
                rec.c.practitioner_role_id,
                rec.c.organization_id,
                rec.c.role,
                rec.c.client_id,
                sa.func.count().label("n"),
                sa.func.min(rec.c.recorded).label("first"),
                sa.func.max(rec.c.recorded).label("last"),
                sa.func.sum(sa.case((rec.c.break_glass.is_(True), 1), else_=0)).label("btg"),
            )
            .where(rec.c.seq.in_(sub), rec.c.status < 400, rec.c.res_type != "AuditEvent")
            .group_by(
                rec.c.subject,
                rec.c.practitioner_role_id,
                rec.c.organization_id,
                rec.c.role,
                rec.c.client_id,
            )
            .order_by(sa.func.max(rec.c.recorded).desc())
        )
        parts = []
        for row in session.execute(stmt):
            part: list[dict[str, Any]] = []
            if row.practitioner_role_id:
                who = {"reference": f"PractitionerRole/{row.practitioner_role_id}"}
                part.append({"name": "who", "valueReference": who})
            # no subject: no authenticated caller (operator tools, auth not configured)
            part.append({"name": "subject", "valueString": row.subject or "operator"})
            if row.organization_id:
                org = {"reference": f"Organization/{row.organization_id}"}
                part.append({"name": "organization", "valueReference": org})
            if row.role:
                part.append({"name": "role", "valueCode": row.role})
            if row.client_id:
                part.append({"name": "client", "valueString": row.client_id})
            part += [
                {"name": "count", "valueInteger": int(row.n)},
                {"name": "first", "valueInstant": _instant(row.first)},
                {"name": "last", "valueInstant": _instant(row.last)},
                {"name": "breakTheGlass", "valueInteger": int(row.btg or 0)},
            ]
            parts.append({"name": "access", "part": part})
        return FhirResponse(200, {"resourceType": "Parameters", "parameter": parts})

    def operation(self) -> OperationDef:
        from renkei.fhir.engine import OperationDef

        return OperationDef(
            name="disclosure",
            handler=self.disclosure,
            levels=frozenset({"instance"}),
            types=frozenset({"Patient"}),
            documentation="Who accessed this patient's record (from the audit log); auditors only.",
        )


def _instant(when: datetime) -> str:
    from renkei.store.repository import instant

    return instant(when)


def _outcome_condition(value: str) -> Any:
    codes = {v.rpartition("|")[2] for v in value.split(",")}
    conds = []
    if "0" in codes:
        conds.append(audit_record.c.status < 400)
    if "4" in codes:
        conds.append(sa.and_(audit_record.c.status >= 400, audit_record.c.status < 500))
    if "8" in codes or "12" in codes:
        conds.append(audit_record.c.status >= 500)
    if not conds:
        raise BadRequest("outcome is one of 0, 4, 8, 12")
    return sa.or_(*conds)


def _url(base: str, params: list[tuple[str, str]]) -> str:
    query = urlencode(params)
    return f"{base}/AuditEvent" + (f"?{query}" if query else "")


__all__ = ["AuditEventService", "RecordFilter", "may_read_audit", "to_audit_event"]
