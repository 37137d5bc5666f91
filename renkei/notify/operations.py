"""FHIR operations of the Subscriptions backport, served by the engine under ``/fhir``.

- ``GET Subscription/$topic-list``: the SubscriptionTopic canonicals offered (also in the
  CapabilityStatement, extension ``capabilitystatement-subscriptiontopic-canonical``).
- ``GET Subscription/{id}/$status`` (or ``Subscription/$status?id=``): status Parameters,
  with ``events-since-subscription-start``.
- ``GET Subscription/{id}/$events?eventsSinceNumber=&eventsUntilNumber=&content=``: replay.
- ``POST Subscription/{id}/$get-ws-binding-token``: token for ``bind-with-token`` on /ws.
- ``POST Subscription/{id}/$get-signing-secret``: the HMAC key rest-hook POSTs are signed
  with (renkei's own; see docs/notifications.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from renkei.fhir.context import FhirRequest, FhirResponse
from renkei.fhir.engine import FhirEngine, OperationDef
from renkei.fhir.outcome import BadRequest, NotFound
from renkei.notify.access import AccessChecker
from renkei.notify.errors import InvalidBindingToken, InvalidSubscription, SubscriptionNotFound
from renkei.notify.subscriptions import (
    CONTENTS,
    events_since,
    get_row,
    issue_binding_token,
    load_notified,
    notification_bundle,
    status_parameters,
)
from renkei.notify.topics import TOPICS
from renkei.store.errors import StoreError

if TYPE_CHECKING:
    from renkei.notify.service import NotifyService

BACKPORT_CAPABILITY_EXT = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "capabilitystatement-subscriptiontopic-canonical"
)
WEBSOCKET_EXT = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket"
TOPIC_LIST_PROFILE = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "backport-subscription-topic-canonical-urls"
)


def _params(req: FhirRequest) -> dict[str, list[str]]:
    """Operation inputs from the query string and, for POST, a Parameters body."""
    out: dict[str, list[str]] = {}
    for key, value in req.params:
        out.setdefault(key, []).append(value)
    body = req.body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for p in body.get("parameter") or []:
            for k, v in p.items():
                if k.startswith("value") and v is not None:
                    out.setdefault(p.get("name", ""), []).append(str(v))
    return out


def _visible_row(engine: FhirEngine, session: Session, req: FhirRequest, sub_id: str) -> Any:
    """The subscription's row, if the caller may read the Subscription (else 404)."""
    try:
        stored = engine.repository(session).read("Subscription", sub_id)
    except StoreError as exc:
        raise NotFound(f"Subscription/{sub_id} is not known") from exc
    if not engine.policy.can_read(session, req.context, stored):
        raise NotFound(f"Subscription/{sub_id} is not known")
    try:
        return get_row(session, sub_id)
    except SubscriptionNotFound as exc:
        raise NotFound(str(exc)) from exc


def _int(values: list[str] | None, name: str) -> int | None:
    if not values:
        return None
    raw = values[0]
    if not raw.isdigit():
        raise BadRequest(f"{name} must be a non-negative integer, got {raw!r}")
    return int(raw)


def register_operations(engine: FhirEngine, notify: NotifyService) -> None:
    def topic_list(
        eng: FhirEngine, session: Session, req: FhirRequest, rt: str | None, rid: str | None
    ) -> FhirResponse:
        params = [{"name": "subscription-topic-canonical", "valueCanonical": url} for url in TOPICS]
        return FhirResponse(
            200,
            {
                "resourceType": "Parameters",
                "meta": {"profile": [TOPIC_LIST_PROFILE]},
                "parameter": params,
            },
        )

    def status(
        eng: FhirEngine, session: Session, req: FhirRequest, rt: str | None, rid: str | None
    ) -> FhirResponse:
        ids = [rid] if rid else [i for v in _params(req).get("id", []) for i in v.split(",")]
        if not ids:
            raise BadRequest("$status at type level needs one or more id parameters")
        entries = []
        for sub_id in ids:
            row = _visible_row(eng, session, req, sub_id)
            params = status_parameters(row, "query-status")
            entries.append(
                {
                    "fullUrl": f"urn:uuid:{params['id']}",
                    "resource": params,
                    "search": {"mode": "match"},
                }
            )
        return FhirResponse(
            200,
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(entries),
                "entry": entries,
            },
        )

    def events(
        eng: FhirEngine, session: Session, req: FhirRequest, rt: str | None, rid: str | None
    ) -> FhirResponse:
        assert rid is not None
        row = _visible_row(eng, session, req, rid)
        params = _params(req)
        since = _int(params.get("eventsSinceNumber"), "eventsSinceNumber") or 1
        until = _int(params.get("eventsUntilNumber"), "eventsUntilNumber")
        content = (params.get("content") or [row.content])[0]
        if content not in CONTENTS:
            raise BadRequest(f"content must be one of {', '.join(CONTENTS)}")
        rows = events_since(session, rid, since, until)
        checker = AccessChecker(session, eng.policy, notify.clock)
        items, _withheld = load_notified(session, checker, req.context.principal, rows)
        view = _RowView(row, content=content)
        bundle = notification_bundle(view, "query-event", notify.clock.now(), items)
        return FhirResponse(200, bundle)

    def binding_token(
        eng: FhirEngine, session: Session, req: FhirRequest, rt: str | None, rid: str | None
    ) -> FhirResponse:
        ids = [rid] if rid else [i for v in _params(req).get("id", []) for i in v.split(",")]
        if not ids:
            raise BadRequest("$get-ws-binding-token needs a Subscription id")
        for sub_id in ids:
            _visible_row(eng, session, req, sub_id)
        try:
            token, expires = issue_binding_token(
                session, notify.clock, ids, req.context.principal, notify.config.binding_token_ttl
            )
        except (InvalidSubscription, InvalidBindingToken) as exc:
            raise BadRequest(str(exc)) from exc
        from renkei.store.repository import instant

        return FhirResponse(
            200,
            {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "token", "valueString": token},
                    {"name": "expiration", "valueDateTime": instant(expires)},
                    *({"name": "subscription", "valueString": i} for i in ids),
                    {"name": "websocket-url", "valueUrl": websocket_url(req.context.base_url)},
                ],
            },
        )

    def signing_secret(
        eng: FhirEngine, session: Session, req: FhirRequest, rt: str | None, rid: str | None
    ) -> FhirResponse:
        assert rid is not None
        row = _visible_row(eng, session, req, rid)
        return FhirResponse(
            200,
            {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "algorithm", "valueString": "HMAC-SHA256"},
                    {"name": "header", "valueString": "X-Renkei-Signature"},
                    {"name": "secret", "valueString": row.secret},
                ],
            },
        )

    sub = frozenset({"Subscription"})
    for op in (
        OperationDef(
            "topic-list",
            topic_list,
            frozenset({"type"}),
            sub,
            documentation="SubscriptionTopic canonical URLs offered",
        ),
        OperationDef(
            "status",
            status,
            frozenset({"type", "instance"}),
            sub,
            definition="http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
        ),
        OperationDef(
            "events",
            events,
            frozenset({"instance"}),
            sub,
            definition="http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events",
        ),
        OperationDef(
            "get-ws-binding-token",
            binding_token,
            frozenset({"type", "instance"}),
            sub,
            affects_state=True,
            definition="http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-get-ws-binding-token",
        ),
        OperationDef(
            "get-signing-secret",
            signing_secret,
            frozenset({"instance"}),
            sub,
            affects_state=True,
            documentation="HMAC-SHA256 key that signs this subscription's rest-hook POSTs",
        ),
    ):
        engine.register_operation(op)

    def amend(statement: dict[str, Any]) -> None:
        rest = statement["rest"][0]
        base = statement.get("implementation", {}).get("url", "")
        rest.setdefault("extension", []).append(
            {"url": WEBSOCKET_EXT, "valueUri": websocket_url(base)}
        )
        for res in rest.get("resource", []):
            if res.get("type") == "Subscription":
                res.setdefault("extension", []).extend(
                    {"url": BACKPORT_CAPABILITY_EXT, "valueCanonical": url} for url in TOPICS
                )
                res["supportedProfile"] = [
                    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"
                ]

    engine.capability_amenders.append(amend)


class _RowView:
    """A subscription row with the payload level overridden ($events ``content``)."""

    def __init__(self, row: Any, *, content: str) -> None:
        self._row = row
        self.content = content

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


def websocket_url(fhir_base: str) -> str:
    """``http://h/fhir`` -> ``ws://h/ws``.

    >>> websocket_url("https://renkei.example.jp/fhir")
    'wss://renkei.example.jp/ws'
    """
    base = fhir_base.rstrip("/")
    if base.endswith("/fhir"):
        base = base[: -len("/fhir")]
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + "/ws"


__all__ = ["register_operations", "websocket_url"]
