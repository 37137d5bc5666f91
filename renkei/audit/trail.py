"""From engine access events to audit records: who, where from, why, which patients.

:meth:`AuditTrail.listener` is registered on the FHIR engine. During an HTTP request it
only buffers events (the API calls :meth:`AuditTrail.flush` or :meth:`AuditTrail.submit`
once the outcome is known): a write's records are appended in the write's own
transaction, so a committed change always has its record; a read's records go to the
background :class:`~renkei.audit.writer.ReadAuditWriter`, and the data is not served
while that cannot append. Events raised without a buffer (the JSON routers, operator
tools) go the same way: reads to the writer, anything else appended at once in the
caller's session.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from renkei.audit.chain import HeadHint, append, canonical
from renkei.audit.errors import AuditError
from renkei.audit.key import SealKey
from renkei.audit.writer import ReadAuditWriter, SessionFactory
from renkei.clock import Clock
from renkei.fhir.access import AccessEvent
from renkei.fhir.compartment import compartment_types, patient_ids
from renkei.fhir.context import RequestContext

BUFFER_KEY = "audit.buffer"
_ACTIONS = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "search": "R",
    "history": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
}
#: FHIR AuditEvent.outcome: 0 success, 4 minor failure, 8 serious failure
_MAX_QUERY = 2000
_MAX_ENTITIES = 1000


def _outcome(status: int) -> str:
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def _strip(ref: str | None, prefix: str) -> str | None:
    if ref is None:
        return None
    return ref[len(prefix) :] if ref.startswith(prefix) else ref


def reads_audit_log(path: str) -> bool:
    """Does this FHIR path read the audit log (AuditEvent, ``$disclosure``)?

    >>> reads_audit_log("AuditEvent?patient=p1"), reads_audit_log("Patient/p1/$disclosure")
    (True, True)
    """
    return path.startswith("AuditEvent") or path.rstrip("/").endswith("$disclosure")


class AuditTrail:
    """Turns access events into chained records; one per app, shared by all requests."""

    def __init__(self, key: SealKey, clock: Clock) -> None:
        self.key = key
        self.clock = clock
        self.hint = HeadHint()
        self.writer: ReadAuditWriter | None = None

    def attach(self, sessions: SessionFactory) -> None:
        """Give reads a background writer over ``sessions`` (the app's database)."""
        self.writer = ReadAuditWriter(sessions, self.append_records)

    def append_records(self, session: Session, records: list[dict[str, Any]]) -> list[int]:
        """Append built records; reads' records only, so the commit need not wait for
        the WAL flush (see :meth:`flush`)."""
        return append(session, records, self.key, self.clock.now(), hint=self.hint, durable=False)

    # -- engine side ------------------------------------------------------------------------

    def listener(self, session: Session, event: AccessEvent) -> None:
        if not self._worth_recording(event):
            return
        buffer = event.context.extra.get(BUFFER_KEY)
        if isinstance(buffer, list):
            buffer.append(event)
        elif self.writer is not None and event.method in ("GET", "HEAD"):
            self.writer.submit([self.record(event, committed=True)])  # a read: as the API's
        else:
            append(session, [self.record(event, committed=True)], self.key, self.clock.now())

    @staticmethod
    def _worth_recording(event: AccessEvent) -> bool:
        """Patient data only: anything naming a patient, any compartment type, any write."""
        if event.interaction == "capabilities":
            return False
        if event.res_type in (None, "AuditEvent") or event.res_type in compartment_types():
            return True
        if event.method not in ("GET", "HEAD"):
            return True
        return any(t.res_type in compartment_types() for t in event.touched)

    def security_listener(self, session: Session, event: Any) -> None:
        """Record a security event (sign-in, lockout, token, admin action) in the chain.

        Takes auth's ``AuthEvent`` (duck-typed: action, at, outcome, subject,
        subject_kind, organization_id, client_id, remote_addr, detail); appended at once,
        in the transaction of the change it reports.
        """
        failed = getattr(event, "outcome", "success") != "success"
        when = getattr(event, "at", None) or self.clock.now()
        detail = getattr(event, "detail", None) or {}
        record: dict[str, Any] = {
            "recorded": when.isoformat(),
            "request_id": None,
            "subject": getattr(event, "subject", None),
            "kind": getattr(event, "subject_kind", None),
            "organization_id": _strip(getattr(event, "organization_id", None), "Organization/"),
            "role": None,
            "practitioner_id": None,
            "practitioner_role_id": None,
            "client_id": getattr(event, "client_id", None),
            "token_id": None,
            "interaction": str(getattr(event, "action", "security"))[:32],
            "action": "E",
            "method": None,
            "path": None,
            "query": "",
            "res_type": None,
            "status": 401 if failed else 200,
            "outcome": "4" if failed else "0",
            "detail": canonical(detail)[:500] if detail else None,
            "patients": [],
            "entities": [],
            "source": getattr(event, "remote_addr", None),
            "purpose": None,
            "break_glass": False,
            "bundle_entry": False,
        }
        append(session, [record], self.key, self.clock.now(), hint=self.hint)

    # -- request side ----------------------------------------------------------------------

    @staticmethod
    def begin(ctx: RequestContext) -> None:
        """Start buffering this request's events (Bundle entries share the buffer)."""
        ctx.extra[BUFFER_KEY] = []

    @staticmethod
    def pending(ctx: RequestContext) -> bool:
        return bool(ctx.extra.get(BUFFER_KEY))

    def carry(self) -> list[dict[str, Any]]:
        """Reads queued before a write, to go into the chain ahead of its records (pass
        them to :meth:`flush` as ``before``, then to :meth:`carried`)."""
        return self.writer.take() if self.writer is not None else []

    def carried(self, records: list[dict[str, Any]], *, committed: bool) -> None:
        if self.writer is not None:
            self.writer.taken(records, committed=committed)

    def flush(
        self,
        session: Session,
        ctx: RequestContext,
        *,
        committed: bool,
        durable: bool = True,
        before: list[dict[str, Any]] | None = None,
    ) -> list[int]:
        """Append the buffered events' records in ``session``; returns their seqs.

        ``durable=False`` (reads on PostgreSQL): the commit does not wait for the WAL
        flush (``synchronous_commit = off`` for this transaction only). A database crash
        can then lose the last fraction of a second of *read* records, whole transactions
        at a time, so the chain stays intact; writes always wait.
        """
        events = ctx.extra.get(BUFFER_KEY) or []
        ctx.extra[BUFFER_KEY] = []
        if not events and not before:
            return []
        now = self.clock.now()
        records = [*(before or ()), *(self.record(e, committed=committed, now=now) for e in events)]
        return append(session, records, self.key, now, hint=self.hint, durable=durable)

    def submit(self, ctx: RequestContext) -> None:
        """Hand a read's buffered records to the background writer (served at once).

        Raises AuditError while the log cannot be written (or no writer is attached):
        the read is then not served.
        """
        events = ctx.extra.get(BUFFER_KEY) or []
        ctx.extra[BUFFER_KEY] = []
        if not events:
            return
        now = self.clock.now()
        records = [self.record(e, committed=True, now=now) for e in events]
        if self.writer is None:
            raise AuditError("no audit writer is attached for reads")
        self.writer.submit(records)

    def settle(self) -> None:
        """Before reading the log: let every read served so far reach it."""
        if self.writer is not None:
            self.writer.drain()

    # -- the record ------------------------------------------------------------------------

    def record(self, event: AccessEvent, *, committed: bool, now: Any = None) -> dict[str, Any]:
        ctx = event.context
        p = ctx.principal
        patients: set[str] = set()
        entities: list[dict[str, str]] = []
        for item in event.touched:
            patients |= patient_ids(item.content)
            if len(entities) < _MAX_ENTITIES:
                entities.append({"ref": item.reference, "how": item.how})
        if event.res_type == "Patient" and event.path.count("/") >= 1:
            # Patient/123/... names the patient even when nothing was returned
            pid = event.path.split("/")[1]
            if pid and not pid.startswith("$") and not pid.startswith("_"):
                patients.add(pid)
        for key, value in event.query:
            if key in ("patient", "subject") and value:
                patients.add(value.split("/")[-1])
        detail = event.detail
        status = event.status
        if not committed and status < 400:
            detail = "not applied: the request's transaction was rolled back"
            status = 409
        query = "&".join(f"{k}={v}" for k, v in event.query)[:_MAX_QUERY]
        purpose = getattr(p, "purpose_of_use", None)
        when = now or self.clock.now()
        return {
            "recorded": when.isoformat(),
            "request_id": ctx.request_id,
            "subject": getattr(p, "subject", None),
            "kind": getattr(p, "kind", None),
            "organization_id": _strip(getattr(p, "organization_id", None), "Organization/"),
            "role": getattr(p, "role", None),
            "practitioner_id": _strip(getattr(p, "practitioner_id", None), "Practitioner/"),
            "practitioner_role_id": _strip(
                getattr(p, "practitioner_role_id", None), "PractitionerRole/"
            ),
            "client_id": getattr(p, "client_id", None),
            "token_id": getattr(p, "token_id", None),
            "interaction": event.interaction,
            "action": _ACTIONS.get(event.interaction, "E"),
            "method": event.method,
            "path": event.path,
            "query": query,
            "res_type": event.res_type,
            "status": status,
            "outcome": _outcome(status),
            "detail": detail[:500] if detail else None,
            "patients": sorted(patients),
            "entities": entities,
            "source": ctx.remote_addr,
            "purpose": purpose,
            "break_glass": bool(purpose),
            "bundle_entry": ctx.in_bundle,
        }


__all__ = ["BUFFER_KEY", "AuditTrail", "reads_audit_log"]
