"""Read receipts (既読): who on the care team has seen which timeline item."""

from __future__ import annotations

import sqlalchemy as sa

from renkei.store.models import Instant, metadata

read_receipt = sa.Table(
    "collab_read_receipt",
    metadata,
    sa.Column("item_type", sa.String(64), primary_key=True),
    sa.Column("item_id", sa.String(64), primary_key=True),
    #: the reader's PractitionerRole id (one person in one organisation)
    sa.Column("reader_role", sa.String(64), primary_key=True),
    sa.Column("reader_org", sa.String(64), nullable=True),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("seen_at", Instant, nullable=False),
    sa.Index("ix_collab_read_receipt_patient", "patient_id", "reader_role"),
)
