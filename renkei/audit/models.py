"""Audit log tables: hash-chained records, their patient index, the chain head, seals.

``audit_record.body`` is the canonical JSON that the hash covers; the other columns of the
row repeat some of its fields so that auditors can search, and ``renkei audit verify``
checks that they agree with the body. ``audit_patient`` is a derived index (one row per
patient a record names) for the disclosure report; it is not trusted by verification.
"""

from __future__ import annotations

import sqlalchemy as sa

from renkei.store.models import BigPk, UtcDateTime, metadata

audit_record = sa.Table(
    "audit_record",
    metadata,
    sa.Column("seq", BigPk, primary_key=True, autoincrement=False),
    sa.Column("recorded", UtcDateTime(), nullable=False),
    sa.Column("subject", sa.String(200), nullable=True),
    sa.Column("organization_id", sa.String(64), nullable=True),
    sa.Column("practitioner_role_id", sa.String(64), nullable=True),
    sa.Column("client_id", sa.String(200), nullable=True),
    sa.Column("role", sa.String(32), nullable=True),
    sa.Column("interaction", sa.String(32), nullable=False),
    sa.Column("res_type", sa.String(64), nullable=True),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("break_glass", sa.Boolean, nullable=False, default=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("mac", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Index("ix_audit_record_recorded", "recorded"),
    sa.Index("ix_audit_record_subject", "subject"),
    sa.Index("ix_audit_record_org", "organization_id"),
    sa.Index("ix_audit_record_prole", "practitioner_role_id"),
    sa.Index("ix_audit_record_client", "client_id"),
    sa.Index("ix_audit_record_btg", "break_glass", "recorded"),
)

audit_patient = sa.Table(
    "audit_patient",
    metadata,
    sa.Column("patient_id", sa.String(64), primary_key=True),
    sa.Column("seq", BigPk, primary_key=True, autoincrement=False),
    sa.Index("ix_audit_patient_seq", "seq"),
)

#: one row (id=1): the last seq and hash, with an HMAC over both (detects a cut tail)
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", BigPk, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("mac", sa.String(64), nullable=True),
    sa.Column("key_id", sa.String(16), nullable=True),
    sa.Column("updated", UtcDateTime(), nullable=True),
)

#: periodic checkpoints of the chain, each with an HMAC by the key kept outside the database
audit_seal = sa.Table(
    "audit_seal",
    metadata,
    sa.Column("seq", BigPk, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("mac", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Column("sealed_at", UtcDateTime(), nullable=False),
)

__all__ = ["audit_head", "audit_patient", "audit_record", "audit_seal"]
