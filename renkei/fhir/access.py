"""What the engine tells access listeners (audit) about each interaction it served.

``FhirEngine.dispatch`` collects, for one request (or one Bundle entry), every resource it
read, returned, wrote, deleted or refused to show, then hands one :class:`AccessEvent` to
each listener, whether the interaction succeeded or failed. Listeners never change the
response; the audit package turns events into hash-chained records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from renkei.fhir.context import RequestContext

#: key in ``RequestContext.extra`` under which the engine keeps the notes of one dispatch
NOTES_KEY = "fhir.access_notes"


@dataclass(frozen=True)
class Touched:
    """One resource an interaction touched. ``content`` is the version that was seen."""

    res_type: str
    res_id: str
    content: dict[str, Any] | None
    #: "returned", "written", "deleted", "denied" (hidden: served as 404), "matched"
    how: str = "returned"

    @property
    def reference(self) -> str:
        return f"{self.res_type}/{self.res_id}"


@dataclass
class AccessNotes:
    """Filled in while a request is dispatched."""

    interaction: str | None = None
    res_type: str | None = None
    touched: list[Touched] = field(default_factory=list)

    def add(
        self, res_type: str, res_id: str, content: dict[str, Any] | None, how: str = "returned"
    ) -> None:
        self.touched.append(Touched(res_type, res_id, content, how))


@dataclass(frozen=True)
class AccessEvent:
    """One interaction as served: who (``context``), what, on which resources, outcome."""

    context: RequestContext
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    #: read, vread, search, history, create, update, patch, delete, operation, batch,
    #: transaction, capabilities
    interaction: str
    res_type: str | None
    status: int
    touched: tuple[Touched, ...]
    #: the error's diagnostics when status >= 400
    detail: str | None = None


def touched_from_body(body: dict[str, Any] | None) -> list[Touched]:
    """Resources a response hands to the client: the resource, or a Bundle's entries.

    batch/transaction responses are skipped: each entry was dispatched (and reported) on
    its own.
    """
    if not isinstance(body, dict):
        return []
    kind = body.get("resourceType")
    if kind == "Bundle":
        if body.get("type") in ("batch-response", "transaction-response"):
            return []
        out: list[Touched] = []
        for entry in body.get("entry") or []:
            res = entry.get("resource") if isinstance(entry, dict) else None
            if (
                isinstance(res, dict)
                and res.get("resourceType") not in (None, "OperationOutcome")
                and res.get("id")
            ):
                out.append(Touched(res["resourceType"], str(res["id"]), res))
        return out
    if kind in (None, "OperationOutcome", "CapabilityStatement", "Parameters"):
        return []
    if body.get("id"):
        return [Touched(str(kind), str(body["id"]), body)]
    return []


def notes_of(ctx: RequestContext) -> AccessNotes | None:
    notes = ctx.extra.get(NOTES_KEY)
    return notes if isinstance(notes, AccessNotes) else None


__all__ = ["NOTES_KEY", "AccessEvent", "AccessNotes", "Touched", "notes_of", "touched_from_body"]
