"""The FHIR RESTful engine: one framework-free entry point for every interaction.

``FhirEngine.handle(session, request)`` routes a :class:`FhirRequest` to the interaction it
names (https://hl7.org/fhir/R4/http.html), and turns every error into an OperationOutcome
response. It never commits: the caller's unit of work does, so an HTTP request and a whole
transaction Bundle are each all-or-nothing. Bundles re-enter :meth:`FhirEngine.dispatch`
for each entry, so an entry behaves exactly as the same request sent on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import orjson
from sqlalchemy.orm import Session

from renkei.clock import Clock
from renkei.fhir import patch as fhir_patch
from renkei.fhir.access import NOTES_KEY, AccessEvent, AccessNotes, notes_of, touched_from_body
from renkei.fhir.binary import BinaryPolicy
from renkei.fhir.context import FhirRequest, FhirResponse, RequestContext
from renkei.fhir.outcome import (
    BadRequest,
    FhirError,
    Issue,
    MethodNotAllowed,
    NotFound,
    NotSupported,
    PreconditionFailed,
    as_fhir_error,
    information,
    operation_outcome,
)
from renkei.fhir.policy import AccessPolicy
from renkei.fhir.searching import SearchEngine
from renkei.fhir.timeparse import parse_instant
from renkei.fhir.validate import check_id, check_type, parse_resource
from renkei.store import pending
from renkei.store.errors import StoreError
from renkei.store.indexing import IndexWriter
from renkei.store.repository import SqlRepository, StoredResource, new_id

log = logging.getLogger(__name__)

#: handler(engine, session, request, res_type, res_id) -> response
OperationHandler = Callable[
    ["FhirEngine", Session, FhirRequest, str | None, str | None], FhirResponse
]
#: serves every interaction on one resource type from elsewhere than the resource tables
#: (AuditEvent from the audit log): handler(engine, session, request, path parts after type)
TypeHandler = Callable[["FhirEngine", Session, FhirRequest, list[str]], FhirResponse]
#: told about every dispatched interaction, successful or not (audit)
AccessListener = Callable[[Session, AccessEvent], None]


@dataclass(frozen=True)
class OperationDef:
    """A named operation (``$everything``, ``$summary``...) at one or more levels."""

    name: str
    handler: OperationHandler
    #: "system", "type", "instance"
    levels: frozenset[str]
    #: resource types it applies to at type/instance level (empty: all)
    types: frozenset[str] = frozenset()
    #: whether it only reads (GET allowed, runs in a read transaction)
    affects_state: bool = False
    definition: str | None = None
    documentation: str = ""


#: versionId is a 32-bit integer column; a larger number names no version.
MAX_VERSION = 2**31 - 1


@dataclass
class EngineSettings:
    default_count: int = 20
    max_count: int = 500
    history_default_count: int = 50


@dataclass
class FhirEngine:
    clock: Clock
    indexer: IndexWriter
    search: SearchEngine
    policy: AccessPolicy
    settings: EngineSettings = field(default_factory=EngineSettings)
    operations: dict[str, OperationDef] = field(default_factory=dict)
    #: keeps Binary bytes out of resource rows and limits attachments (None: no limits)
    binaries: BinaryPolicy | None = None
    #: called after each successful write inside the same transaction (outbox, audit)
    write_listeners: list[Callable[[Session, RequestContext, StoredResource], None]] = field(
        default_factory=list
    )
    #: called with each new resource's body (its id assigned) after the access check and
    #: before it is stored, in the same transaction; returns the body to store. Lets a
    #: Task that opens an urgent call be routed first and stored once, owner and all.
    create_preparers: list[Callable[[Session, RequestContext, dict[str, Any]], dict[str, Any]]] = (
        field(default_factory=list)
    )
    #: called with the CapabilityStatement before it is served (Subscriptions topics...)
    capability_amenders: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    #: told about every interaction dispatched (incl. each Bundle entry), after it ran
    access_listeners: list[AccessListener] = field(default_factory=list)
    #: resource types served by a handler of their own instead of the resource tables
    type_handlers: dict[str, TypeHandler] = field(default_factory=dict)
    #: the CapabilityStatement as JSON, per base URL and registrations (see _capability)
    _capabilities: dict[tuple[str, int, int, int], bytes] = field(
        default_factory=dict, init=False, repr=False
    )

    # -- entry points ----------------------------------------------------------------------

    def repository(self, session: Session) -> SqlRepository:
        return SqlRepository(session, self.clock, self.indexer)

    def register_operation(self, op: OperationDef) -> None:
        self.operations[op.name] = op

    def _capability(self, base_url: str) -> dict[str, Any]:
        """The CapabilityStatement, built once per base URL: building it walks every type's
        search parameters (5 ms), and clients ask for it often. Served as a fresh copy."""
        from renkei.fhir.capability import capability_statement

        key = (
            base_url,
            len(self.operations),
            len(self.capability_amenders),
            len(self.type_handlers),
        )
        cached = self._capabilities.get(key)
        if cached is None:
            cached = self._capabilities[key] = orjson.dumps(capability_statement(self, base_url))
        statement: dict[str, Any] = orjson.loads(cached)
        return statement

    def handle(self, session: Session, req: FhirRequest) -> FhirResponse:
        """Dispatch and map any error to an OperationOutcome response (never raises)."""
        try:
            return self.dispatch(session, req)
        except FhirError as exc:
            return error_response(exc)
        except StoreError as exc:
            mapped = as_fhir_error(exc)
            assert mapped is not None
            return error_response(mapped)

    def dispatch(self, session: Session, req: FhirRequest) -> FhirResponse:
        """Route one request; raises FhirError (bundles use this to stop a transaction).

        Access listeners hear about the request afterwards, whatever its outcome.
        """
        if not self.access_listeners:
            return self._dispatch(session, req)
        extra = req.context.extra
        outer = extra.get(NOTES_KEY)
        notes = AccessNotes()
        extra[NOTES_KEY] = notes
        status: int = 500
        detail: str | None = "internal error"
        body: dict[str, Any] | None = None
        try:
            resp = self._dispatch(session, req)
            status, detail, body = resp.status, None, resp.body
            return resp
        except FhirError as exc:
            status, detail = exc.status, str(exc)
            raise
        finally:
            if outer is None:
                extra.pop(NOTES_KEY, None)
            else:
                extra[NOTES_KEY] = outer
            self._tell_listeners(session, req, notes, status, detail, body)

    def _dispatch(self, session: Session, req: FhirRequest) -> FhirResponse:
        try:
            resp = self._route(session, req)
            if not req.context.in_bundle and resp.status < 400:
                # Deferred rows (resources, index rows, facts) go now, not at commit, so
                # that a refused one (a duplicate id) answers as its error, not a 500.
                pending.flush(session)
            return resp
        except StoreError as exc:
            mapped = as_fhir_error(exc)
            assert mapped is not None
            raise mapped from exc

    def _tell_listeners(
        self,
        session: Session,
        req: FhirRequest,
        notes: AccessNotes,
        status: int,
        detail: str | None,
        body: dict[str, Any] | None,
    ) -> None:
        touched = list(notes.touched)
        if status < 400:
            touched.extend(touched_from_body(body))
        seen: set[tuple[str, str]] = set()
        unique = []
        for item in touched:
            key = (item.reference, item.how)
            if key not in seen:
                seen.add(key)
                unique.append(item)
        event = AccessEvent(
            context=req.context,
            method=req.method.upper(),
            path=req.path,
            query=tuple(req.params),
            interaction=notes.interaction or _guess_interaction(req),
            res_type=notes.res_type,
            status=status,
            touched=tuple(unique),
            detail=detail,
        )
        for listener in self.access_listeners:
            listener(session, event)

    def authorize(self, req: FhirRequest, interaction: str, res_type: str | None) -> None:
        notes = notes_of(req.context)
        if notes is not None and notes.interaction is None:
            notes.interaction, notes.res_type = interaction, res_type
        self.policy.authorize(req.context, interaction, res_type)

    def note(
        self,
        ctx: RequestContext,
        stored: StoredResource,
        how: str = "returned",
        content: dict[str, Any] | None = None,
    ) -> None:
        """Tell access listeners that this request touched ``stored`` (operations use it)."""
        notes = notes_of(ctx)
        if notes is not None:
            notes.add(stored.res_type, stored.res_id, content or stored.content, how)

    def _route(self, session: Session, req: FhirRequest) -> FhirResponse:
        parts = [p for p in req.path.strip("/").split("/") if p]
        method = req.method.upper()
        n = len(parts)
        if n == 0:
            if method == "POST":
                from renkei.fhir.bundle import process_bundle

                return process_bundle(self, session, req)
            if method == "GET":
                return self._search(session, req, None)
            raise MethodNotAllowed(f"{method} is not allowed at the base URL")
        head = parts[0]
        if n == 1 and head == "metadata":
            if method != "GET":
                raise MethodNotAllowed("metadata is read with GET")
            return FhirResponse(200, self._capability(req.context.base_url))
        if n == 1 and head == "_history":
            return self._history(session, req, None, None)
        if head.startswith("$"):
            return self._operation(session, req, head[1:], None, None, n == 1)
        res_type = head
        check_type(res_type)
        handler = self.type_handlers.get(res_type)
        if handler is not None:
            return handler(self, session, req, parts[1:])
        if n == 1:
            return self._type_level(session, req, res_type)
        second = parts[1]
        if n == 2 and second == "_search":
            if method != "POST":
                raise MethodNotAllowed("_search is used with POST")
            return self._search(session, req, res_type)
        if n == 2 and second == "_history":
            return self._history(session, req, res_type, None)
        if second.startswith("$"):
            return self._operation(session, req, second[1:], res_type, None, n == 2)
        res_id = second
        check_id(res_id)
        if n == 2:
            return self._instance_level(session, req, res_type, res_id)
        third = parts[2]
        if third == "_history":
            if n == 3:
                return self._history(session, req, res_type, res_id)
            if n == 4:
                return self._vread(session, req, res_type, res_id, parts[3])
        if third.startswith("$") and n == 3:
            return self._operation(session, req, third[1:], res_type, res_id, True)
        if n == 3 and method == "GET":
            # compartment search: Patient/123/Observation or Patient/123/*
            return self._search(session, req, None if third == "*" else third, (res_type, res_id))
        raise NotFound(f"no interaction is served at {req.path!r}")

    def _type_level(self, session: Session, req: FhirRequest, res_type: str) -> FhirResponse:
        method = req.method.upper()
        if method == "GET":
            return self._search(session, req, res_type)
        if method == "POST":
            return self._create(session, req, res_type)
        if method == "PUT":
            return self._conditional_update(session, req, res_type)
        if method == "DELETE":
            return self._conditional_delete(session, req, res_type)
        if method == "PATCH":
            return self._conditional_patch(session, req, res_type)
        raise MethodNotAllowed(f"{method} is not allowed on {res_type}")

    def _instance_level(
        self, session: Session, req: FhirRequest, res_type: str, res_id: str
    ) -> FhirResponse:
        method = req.method.upper()
        if method in ("GET", "HEAD"):
            return self._read(session, req, res_type, res_id)
        if method == "PUT":
            return self._update(session, req, res_type, res_id)
        if method == "DELETE":
            return self._delete(session, req, res_type, res_id)
        if method == "PATCH":
            return self._patch(session, req, res_type, res_id)
        raise MethodNotAllowed(f"{method} is not allowed on {res_type}/{res_id}")

    # -- read ------------------------------------------------------------------------------

    def _visible(self, session: Session, req: FhirRequest, stored: StoredResource) -> None:
        """Hidden resources look exactly like absent ones (404), so nothing leaks."""
        if not self.policy.can_read(session, req.context, stored):
            self.note(req.context, stored, "denied")
            raise NotFound(f"{stored.res_type}/{stored.res_id} is not known")

    def _read(self, session: Session, req: FhirRequest, res_type: str, res_id: str) -> FhirResponse:
        self.authorize(req, "read", res_type)
        repo = self.repository(session)
        try:
            stored = repo.read(res_type, res_id)
        except StoreError as exc:
            from renkei.store.errors import ResourceGone

            if isinstance(exc, ResourceGone):
                # A deleted resource the caller could never see must not reveal itself either.
                self._check_gone_visible(session, req, res_type, res_id)
            raise
        self._visible(session, req, stored)
        self.note(req.context, stored)
        headers = resource_headers(stored)
        if _not_modified(req, stored):
            return FhirResponse(304, None, headers)
        return FhirResponse(200, self._out(stored.content), headers)

    def _check_gone_visible(
        self, session: Session, req: FhirRequest, res_type: str, res_id: str
    ) -> None:
        page = self.repository(session).history(res_type, res_id, count=2)
        last = next((e for e in page.entries if e.content is not None), None)
        if last is None or not self.policy.can_read(session, req.context, last):
            raise NotFound(f"{res_type}/{res_id} is not known")

    def _vread(
        self, session: Session, req: FhirRequest, res_type: str, res_id: str, vid: str
    ) -> FhirResponse:
        if req.method.upper() not in ("GET", "HEAD"):
            raise MethodNotAllowed("a version is read with GET")
        self.authorize(req, "vread", res_type)
        if not _is_number(vid) or len(vid) > 10 or int(vid) > MAX_VERSION:
            raise NotFound(f"version {vid!r} of {res_type}/{res_id} is not known")
        stored = self.repository(session).vread(res_type, res_id, int(vid))
        self._visible(session, req, stored)
        return FhirResponse(200, self._out(stored.content), resource_headers(stored))

    # -- create / update / delete ------------------------------------------------------------

    def _create(self, session: Session, req: FhirRequest, res_type: str) -> FhirResponse:
        self.authorize(req, "create", res_type)
        body = parse_resource(req.body, expected_type=res_type)
        condition = req.header("if-none-exist")
        if condition:
            matches = self._match(session, req.context, res_type, condition)
            if len(matches) == 1:
                # http.html#ccreate: one match -> ignore the POST, answer 200 with it
                existing = matches[0]
                self._visible(session, req, existing)
                return self._write_response(req, existing, 200)
            if len(matches) > 1:
                raise PreconditionFailed(
                    f"If-None-Exist matched {len(matches)} {res_type} resources; "
                    "the condition must be more selective"
                )
        body = {k: v for k, v in body.items() if k != "id"}  # http.html#create: id ignored
        return self._store_new(session, req, body)

    def _store_new(self, session: Session, req: FhirRequest, body: dict[str, Any]) -> FhirResponse:
        """Create with a server-assigned id (or the Bundle's ``assign_id``)."""
        body = self._in(body)
        self.policy.check_write(session, req.context, body["resourceType"], body, None)
        res_id = req.context.extra.get("assign_id") or new_id()
        body = self._prepare_new(session, req.context, {**body, "id": res_id})
        stored = self.repository(session).create(body, res_id=res_id)
        self._after_write(session, req.context, stored)
        return self._write_response(req, stored, 201)

    def _prepare_new(
        self, session: Session, ctx: RequestContext, body: dict[str, Any]
    ) -> dict[str, Any]:
        for prepare in self.create_preparers:
            body = prepare(session, ctx, body)
        return body

    def _update(
        self, session: Session, req: FhirRequest, res_type: str, res_id: str
    ) -> FhirResponse:
        self.authorize(req, "update", res_type)
        body = parse_resource(req.body, expected_type=res_type)
        if body.get("id") is None:
            raise BadRequest(
                "an update must carry the resource's id in the body",
                expression=(f"{res_type}.id",),
            )
        if body["id"] != res_id:
            raise BadRequest(
                f"the body's id {body['id']!r} does not match the URL's {res_id!r}",
                expression=(f"{res_type}.id",),
            )
        return self._store_update(session, req, body, _if_match(req))

    def _store_update(
        self,
        session: Session,
        req: FhirRequest,
        body: dict[str, Any],
        if_match: int | None,
        method: str = "PUT",
    ) -> FhirResponse:
        repo = self.repository(session)
        body = self._in(body)
        res_type, res_id = body["resourceType"], body["id"]
        old: StoredResource | None
        try:
            old = repo.read(res_type, res_id)
            self._visible(session, req, old)
        except StoreError:
            old = None
        self.policy.check_write(session, req.context, res_type, body, old)
        if old is None:
            body = self._prepare_new(session, req.context, body)
        stored, created = repo.update(body, if_match=if_match, method=method)
        self._after_write(session, req.context, stored)
        return self._write_response(req, stored, 201 if created else 200)

    def _conditional_update(
        self, session: Session, req: FhirRequest, res_type: str
    ) -> FhirResponse:
        self.authorize(req, "update", res_type)
        if not req.params:
            raise BadRequest("a conditional update needs search parameters in the URL")
        body = parse_resource(req.body, expected_type=res_type)
        matches = self._match_params(session, req.context, res_type, req.params)
        if len(matches) > 1:
            raise PreconditionFailed(
                f"the condition matched {len(matches)} {res_type} resources (http.html#cond-update)"
            )
        if len(matches) == 1:
            target = matches[0]
            if body.get("id") not in (None, target.res_id):
                raise BadRequest(
                    f"the body's id {body['id']!r} is not the matched resource's {target.res_id!r}",
                    expression=(f"{res_type}.id",),
                )
            body = {**body, "id": target.res_id}
            return self._store_update(session, req, body, _if_match(req))
        if body.get("id"):
            return self._store_update(session, req, body, None)
        return self._store_new(session, req, dict(body))

    def _delete(
        self, session: Session, req: FhirRequest, res_type: str, res_id: str
    ) -> FhirResponse:
        self.authorize(req, "delete", res_type)
        repo = self.repository(session)
        try:
            old = repo.read(res_type, res_id)
        except StoreError:
            old = None
        if old is not None:
            self._visible(session, req, old)
            self.note(req.context, old, "deleted")
            self.policy.check_write(session, req.context, res_type, None, old)
        stored = repo.delete(res_type, res_id, if_match=_if_match(req))
        if stored is None:
            return FhirResponse(
                200, information(f"{res_type}/{res_id} did not exist or was already deleted")
            )
        self._after_write(session, req.context, stored)
        return FhirResponse(
            200,
            information(f"deleted {res_type}/{res_id}"),
            {"ETag": stored.etag, "Last-Modified": http_date(stored.last_updated)},
        )

    def _conditional_delete(
        self, session: Session, req: FhirRequest, res_type: str
    ) -> FhirResponse:
        self.authorize(req, "delete", res_type)
        if not req.params:
            raise BadRequest("a conditional delete needs search parameters in the URL")
        matches = self._match_params(session, req.context, res_type, req.params)
        if len(matches) > 1:
            raise PreconditionFailed(
                f"the condition matched {len(matches)} {res_type} resources; "
                "this server deletes one at a time (conditionalDelete: single)"
            )
        if not matches:
            return FhirResponse(200, information(f"no {res_type} matched; nothing deleted"))
        return self._delete(session, req, res_type, matches[0].res_id)

    # -- patch -----------------------------------------------------------------------------

    def _patch(
        self, session: Session, req: FhirRequest, res_type: str, res_id: str
    ) -> FhirResponse:
        self.authorize(req, "patch", res_type)
        operations = fhir_patch.patch_document(req.body, req.content_type)
        # Locked: concurrent patches apply one after the other instead of failing with 412.
        current = self.repository(session).read(res_type, res_id, for_update=True)
        self._visible(session, req, current)
        if_match = _if_match(req)
        if if_match is not None and if_match != current.version_id:
            raise PreconditionFailed(
                f"If-Match names version {if_match} but {res_type}/{res_id} is at "
                f"{current.version_id}",
                headers={"ETag": current.etag},
            )
        assert current.content is not None
        patched = fhir_patch.apply(self._out(current.content) or {}, operations)
        if patched.get("resourceType") != res_type or patched.get("id") != res_id:
            raise fhir_patch.PatchError("a patch may not change resourceType or id")
        body = parse_resource(patched, expected_type=res_type)
        return self._store_update(session, req, body, current.version_id, method="PATCH")

    def _conditional_patch(self, session: Session, req: FhirRequest, res_type: str) -> FhirResponse:
        if not req.params:
            raise BadRequest("a conditional patch needs search parameters in the URL")
        matches = self._match_params(session, req.context, res_type, req.params)
        if len(matches) != 1:
            raise PreconditionFailed(
                f"a conditional patch needs exactly one match; found {len(matches)}"
            )
        return self._patch(session, req, res_type, matches[0].res_id)

    # -- search and history ----------------------------------------------------------------

    def _search(
        self,
        session: Session,
        req: FhirRequest,
        res_type: str | None,
        compartment: tuple[str, str] | None = None,
    ) -> FhirResponse:
        self.authorize(req, "search", res_type)
        if res_type is not None:
            check_type(res_type)
        if compartment is not None:
            # reading a compartment is reading its owner: hidden owner -> 404
            owner = self.repository(session).read(*compartment)
            self._visible(session, req, owner)
        params = list(req.params)
        if req.method.upper() == "POST" and isinstance(req.body, list):
            params.extend(req.body)  # _search with form-encoded parameters
        # search.html#errors; set on every search, as batch entries share one context
        req.context.extra["prefer_handling"] = _prefer(req, "handling")
        bundle = self.search.search(session, req.context, res_type, params, compartment=compartment)
        return FhirResponse(200, bundle)

    def _history(
        self, session: Session, req: FhirRequest, res_type: str | None, res_id: str | None
    ) -> FhirResponse:
        if req.method.upper() != "GET":
            raise MethodNotAllowed("history is read with GET")
        self.authorize(req, "history", res_type)
        since_raw = req.param("_since")
        since = parse_instant(since_raw, "_since") if since_raw else None
        count = _count(req.param("_count"), self.settings.history_default_count, self.settings)
        cursor = req.param("_cursor")
        repo = self.repository(session)
        if res_id is not None:
            assert res_type is not None
            try:
                # the history of a resource the caller may not see is as absent as it
                self._visible(session, req, repo.read(res_type, res_id))
            except StoreError as exc:
                from renkei.store.errors import ResourceGone

                if not isinstance(exc, ResourceGone):
                    raise
                self._check_gone_visible(session, req, res_type, res_id)
        page = repo.history(res_type, res_id, since=since, count=count, cursor=cursor)
        base = req.context.base_url
        path = "/".join(p for p in (res_type, res_id, "_history") if p)
        entries = []
        for stored in page.entries:
            if stored.content is not None:
                if not self.policy.can_read(session, req.context, stored):
                    continue
            elif not self._deletion_visible(session, req, stored):
                continue
            entries.append(history_entry(base, stored, self._out(stored.content)))
        links = [{"relation": "self", "url": _url(base, path, req.params)}]
        if page.next_cursor:
            next_params = [(k, v) for k, v in req.params if k != "_cursor"]
            next_params.append(("_cursor", page.next_cursor))
            links.append({"relation": "next", "url": _url(base, path, next_params)})
        bundle = {"resourceType": "Bundle", "type": "history", "link": links, "entry": entries}
        return FhirResponse(200, bundle)

    def _deletion_visible(self, session: Session, req: FhirRequest, stored: StoredResource) -> bool:
        try:
            prev = self.repository(session).vread(
                stored.res_type, stored.res_id, stored.version_id - 1
            )
        except StoreError:
            return False
        return self.policy.can_read(session, req.context, prev)

    # -- operations ------------------------------------------------------------------------

    def _operation(
        self,
        session: Session,
        req: FhirRequest,
        name: str,
        res_type: str | None,
        res_id: str | None,
        last: bool,
    ) -> FhirResponse:
        op = self.operations.get(name)
        level = "instance" if res_id else "type" if res_type else "system"
        if op is None or not last or level not in op.levels:
            raise NotSupported(f"operation ${name} is not supported at {level} level")
        if op.types and res_type not in op.types:
            raise NotSupported(f"operation ${name} is not supported for {res_type}")
        if req.method.upper() == "GET" and op.affects_state:
            raise MethodNotAllowed(f"${name} changes state; use POST")
        if req.method.upper() not in ("GET", "POST"):
            raise MethodNotAllowed(f"${name} is called with GET or POST")
        self.authorize(req, "operation", res_type)
        return op.handler(self, session, req, res_type, res_id)

    # -- helpers ---------------------------------------------------------------------------

    def _match(
        self, session: Session, ctx: RequestContext, res_type: str, query: str
    ) -> list[StoredResource]:
        from urllib.parse import parse_qsl

        query = query.split("?", 1)[1] if "?" in query else query
        try:
            params = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError as exc:
            raise BadRequest(f"malformed condition {query!r}") from exc
        return self._match_params(session, ctx, res_type, params)

    def _match_params(
        self, session: Session, ctx: RequestContext, res_type: str, params: list[tuple[str, str]]
    ) -> list[StoredResource]:
        params = [(k, v) for k, v in params if k not in ("_format", "_pretty")]
        if not params:
            raise BadRequest("a conditional interaction needs at least one search parameter")
        return self.search.match(session, ctx, res_type, params)

    def _after_write(self, session: Session, ctx: RequestContext, stored: StoredResource) -> None:
        if stored.content is not None:
            self.note(ctx, stored, "written")
        for listener in self.write_listeners:
            listener(session, ctx, stored)

    def _write_response(
        self, req: FhirRequest, stored: StoredResource, status: int
    ) -> FhirResponse:
        headers = resource_headers(stored)
        headers["Location"] = (
            f"{req.context.base_url}/{stored.res_type}/{stored.res_id}/_history/{stored.version_id}"
        )
        prefer = _prefer_return(req)
        if prefer == "minimal":
            return FhirResponse(status, None, headers)
        if prefer == "OperationOutcome":
            verb = "created" if status == 201 else "updated"
            return FhirResponse(status, information(f"{verb} {stored.reference}"), headers)
        return FhirResponse(status, self._out(stored.content), headers)

    def _in(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.binaries.externalize(body) if self.binaries else body

    def _out(self, content: dict[str, Any] | None) -> dict[str, Any] | None:
        return self.binaries.internalize(content) if self.binaries else content


# -- module helpers --------------------------------------------------------------------------


def _guess_interaction(req: FhirRequest) -> str:
    """For requests that failed before naming their interaction (bad type, bad id...)."""
    parts = [p for p in req.path.strip("/").split("/") if p]
    method = req.method.upper()
    if not parts:
        if method == "POST":
            kind = req.body.get("type") if isinstance(req.body, dict) else None
            return str(kind) if kind in ("batch", "transaction") else "batch"
        return "search"
    if parts[0] == "metadata":
        return "capabilities"
    if any(p.startswith("$") for p in parts):
        return "operation"
    if "_history" in parts:
        return "vread" if parts[-1] != "_history" else "history"
    if method in ("GET", "HEAD"):
        return "read" if len(parts) == 2 and parts[1] != "_search" else "search"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, "unknown"
    )


def error_response(exc: FhirError) -> FhirResponse:
    return FhirResponse(exc.status, exc.outcome(), dict(exc.headers))


def http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=True)


def resource_headers(stored: StoredResource) -> dict[str, str]:
    return {"ETag": stored.etag, "Last-Modified": http_date(stored.last_updated)}


def history_entry(
    base: str, stored: StoredResource, content: dict[str, Any] | None = None
) -> dict[str, Any]:
    from renkei.store.repository import instant

    url = f"{stored.res_type}/{stored.res_id}"
    entry: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
    if stored.content is not None:
        entry["resource"] = content if content is not None else stored.content
    method = stored.method
    entry["request"] = {"method": method, "url": stored.res_type if method == "POST" else url}
    status = {"POST": "201 Created", "DELETE": "204 No Content"}.get(method, "200 OK")
    entry["response"] = {
        "status": status,
        "etag": stored.etag,
        "lastModified": instant(stored.last_updated),
    }
    return entry


def _url(base: str, path: str, params: list[tuple[str, str]]) -> str:
    from urllib.parse import urlencode

    query = urlencode(params)
    return f"{base}/{path}" + (f"?{query}" if query else "")


def _count(raw: str | None, default: int, settings: EngineSettings) -> int:
    if raw is None:
        return default
    if not _is_number(raw):
        raise BadRequest(f"_count must be a non-negative integer, got {raw!r}")
    if len(raw) > 9:
        return settings.max_count
    return max(1, min(int(raw), settings.max_count))


def _is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts '²', which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def _if_match(req: FhirRequest) -> int | None:
    raw = req.header("if-match")
    if raw is None:
        return None
    value = raw.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if not _is_number(value) or len(value) > 10:
        raise BadRequest(f'If-Match must be a version ETag like W/"3", got {raw!r}')
    return int(value)


def _not_modified(req: FhirRequest, stored: StoredResource) -> bool:
    """Conditional read (http.html#cread): If-None-Match / If-Modified-Since."""
    none_match = req.header("if-none-match")
    if none_match is not None:
        tags = {t.strip().removeprefix("W/").strip('"') for t in none_match.split(",")}
        return str(stored.version_id) in tags or "*" in tags
    since = req.header("if-modified-since")
    if since:
        try:
            when = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return stored.last_updated.replace(microsecond=0) <= when
    return False


def _prefer(req: FhirRequest, name: str) -> str | None:
    """One preference of the ``Prefer`` header (RFC 7240), e.g. ``handling=lenient``."""
    prefer = req.header("prefer") or ""
    for part in prefer.split(","):
        for token in part.split(";"):
            key, _, value = token.strip().partition("=")
            if key.strip() == name:
                return value.strip().strip('"')
    return None


def _prefer_return(req: FhirRequest) -> str:
    value = _prefer(req, "return")
    if value in ("minimal", "representation", "OperationOutcome"):
        return value
    return "representation"


__all__ = [
    "AccessListener",
    "EngineSettings",
    "FhirEngine",
    "Issue",
    "OperationDef",
    "TypeHandler",
    "error_response",
    "history_entry",
    "http_date",
    "operation_outcome",
    "resource_headers",
]
