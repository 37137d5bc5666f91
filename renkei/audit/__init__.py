"""Tamper-evident audit log of every access to patient data (MHLW guideline: access logs).

Records are appended by :class:`AuditTrail` (an access listener of the FHIR engine),
hash-chained and HMAC-sealed by :mod:`renkei.audit.chain`, read as FHIR AuditEvent by
:class:`AuditEventService`, and checked by ``renkei audit verify``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from renkei.audit.chain import Report, append, seal, verify
from renkei.audit.errors import AuditError, ChainBroken, SealKeyError
from renkei.audit.fhir import AuditEventService, RecordFilter, may_read_audit, to_audit_event
from renkei.audit.key import SealKey, key_path
from renkei.audit.trail import AuditTrail

if TYPE_CHECKING:
    from renkei.clock import Clock
    from renkei.config import Settings
    from renkei.fhir.engine import FhirEngine


def install_audit(
    engine: FhirEngine,
    settings: Settings,
    clock: Clock,
    *,
    record_filter: RecordFilter | None = None,
) -> AuditTrail:
    """Wire the audit log into an engine: listener, AuditEvent type, ``$disclosure``."""
    key = SealKey.load(key_path(settings.data_dir, settings.audit_key_file))
    trail = AuditTrail(key, clock)
    engine.access_listeners.append(trail.listener)
    service = AuditEventService(record_filter)
    engine.type_handlers["AuditEvent"] = service.handle
    engine.register_operation(service.operation())
    return trail


__all__ = [
    "AuditError",
    "AuditEventService",
    "AuditTrail",
    "ChainBroken",
    "RecordFilter",
    "Report",
    "SealKey",
    "SealKeyError",
    "append",
    "install_audit",
    "key_path",
    "may_read_audit",
    "seal",
    "to_audit_event",
    "verify",
]
