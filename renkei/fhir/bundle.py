"""batch and transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction).

A transaction is all-or-nothing: it runs inside the caller's unit of work and the first
failing entry raises (its OperationOutcome names ``Bundle.entry[n]``), so the caller rolls
everything back. Entries run in the order the spec requires (DELETE, POST, PUT/PATCH,
GET/HEAD); deletes run before the other entries are planned, so conditional creates and
updates see them. ``urn:uuid:`` fullUrls of created resources (and of conditional updates)
are given ids first and every reference to them is rewritten, however deeply nested; a
conditional reference (``Patient?identifier=...``) resolves to its single match; the same
``ifNoneExist`` twice makes one resource; two entries changing one resource are refused.

A batch runs each entry in a savepoint of its own, so one failing entry does not undo the
others, and resolves no references between entries. A malformed Bundle or entry is a 400
before anything runs; a Bundle inside a Bundle is refused.
"""

from __future__ import annotations

import copy
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from sqlalchemy.orm import Session

from renkei.fhir.context import FhirRequest, FhirResponse, RequestContext
from renkei.fhir.outcome import BadRequest, FhirError, PreconditionFailed, as_fhir_error
from renkei.fhir.validate import check_type
from renkei.store import pending
from renkei.store.errors import StoreError
from renkei.store.repository import instant, new_id

if TYPE_CHECKING:
    from renkei.fhir.engine import FhirEngine

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
MAX_ENTRIES = 10_000
#: Bundles that are requests themselves; one may not travel inside another.
_REQUEST_BUNDLES = frozenset({"batch", "transaction"})


def process_bundle(engine: FhirEngine, session: Session, req: FhirRequest) -> FhirResponse:
    bundle = req.body
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequest("POST to the base URL takes a batch or transaction Bundle")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise BadRequest(f"Bundle.type must be batch or transaction, got {kind!r}")
    if req.context.in_bundle:
        raise BadRequest("a Bundle inside a Bundle is not processed")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        raise BadRequest(f"Bundle.entry must be a list of at most {MAX_ENTRIES} entries")
    engine.authorize(req, kind, None)
    parsed = [_parse_entry(i, e, req.context.base_url) for i, e in enumerate(entries)]
    if kind == "transaction":
        responses = _transaction(engine, session, req, parsed)
    else:
        responses = _batch(engine, session, req, parsed)
    return FhirResponse(
        200,
        {"resourceType": "Bundle", "type": f"{kind}-response", "entry": responses},
    )


def _copy_json(value: Any) -> Any:
    """A copy of a JSON value the entry may rewrite (references): a JSON round trip is
    about five times as fast as ``copy.deepcopy``; values JSON cannot hold (a Decimal or
    a huge int, from an in-process caller) are deep-copied instead."""
    try:
        return orjson.loads(orjson.dumps(value))
    except (TypeError, orjson.JSONDecodeError):
        return copy.deepcopy(value)


class _Entry:
    __slots__ = ("body", "full_url", "headers", "index", "method", "params", "path")

    def __init__(self, index: int, raw: Any, base_url: str) -> None:
        self.index = index
        where = f"Bundle.entry[{index}]"
        if not isinstance(raw, dict):
            raise BadRequest(f"{where} is not an object", expression=(where,))
        request = raw.get("request")
        if not isinstance(request, dict):
            raise BadRequest(
                f"{where}.request is required in a batch or transaction",
                expression=(f"{where}.request",),
            )
        method = request.get("method")
        if not isinstance(method, str) or method.upper() not in _ORDER:
            raise BadRequest(
                f"{where}.request.method {method!r} is not one of GET, HEAD, POST, PUT, "
                "PATCH, DELETE",
                expression=(f"{where}.request.method",),
            )
        method = method.upper()
        url = request.get("url")
        if not isinstance(url, str) or not url.strip():
            raise BadRequest(
                f"{where}.request.url is required", expression=(f"{where}.request.url",)
            )
        split = urlsplit(_relative(url, base_url, where))
        self.method = method
        self.path = split.path.strip("/")
        if not self.path:
            raise BadRequest(
                f"{where}: a Bundle inside a Bundle is not processed (request.url names the "
                "base URL)",
                expression=(f"{where}.request.url",),
            )
        if method == "POST" and "/" in self.path:
            raise BadRequest(
                f"{where}.request.url of a POST must be a resource type, got {url!r}",
                expression=(f"{where}.request.url",),
            )
        self.params = parse_qsl(split.query, keep_blank_values=True)
        full_url = raw.get("fullUrl")
        if full_url is not None and not isinstance(full_url, str):
            raise BadRequest(f"{where}.fullUrl must be a string", expression=(f"{where}.fullUrl",))
        self.full_url: str | None = full_url or None
        self.body = _copy_json(raw.get("resource"))
        headers = {}
        for field, header in (
            ("ifNoneMatch", "if-none-match"),
            ("ifModifiedSince", "if-modified-since"),
            ("ifMatch", "if-match"),
            ("ifNoneExist", "if-none-exist"),
        ):
            value = request.get(field)
            if value is None:
                continue
            if not isinstance(value, str):
                raise BadRequest(
                    f"{where}.request.{field} must be a string",
                    expression=(f"{where}.request.{field}",),
                )
            headers[header] = value
        self.headers = headers
        if method in ("POST", "PUT", "PATCH") and not isinstance(self.body, dict):
            raise BadRequest(
                f"{where} ({method}) has no resource", expression=(f"{where}.resource",)
            )
        if isinstance(self.body, dict) and (
            self.body.get("resourceType") == "Bundle" and self.body.get("type") in _REQUEST_BUNDLES
        ):
            raise BadRequest(
                f"{where}: a {self.body.get('type')} Bundle inside a Bundle is not processed",
                expression=(f"{where}.resource",),
            )


def _relative(url: str, base_url: str, where: str) -> str:
    """An entry's URL relative to the base; absolute URLs must name this server's base."""
    if "://" not in url.split("?", 1)[0]:
        return url
    if url.startswith(base_url + "/"):
        return url[len(base_url) + 1 :]
    raise BadRequest(
        f"{where}.request.url {url!r} is not on this server ({base_url})",
        expression=(f"{where}.request.url",),
    )


def _parse_entry(index: int, raw: Any, base_url: str) -> _Entry:
    return _Entry(index, raw, base_url)


def _sub_request(parent: FhirRequest, entry: _Entry, assign_id: str | None = None) -> FhirRequest:
    ctx = RequestContext(
        principal=parent.context.principal,
        request_id=f"{parent.context.request_id}#{entry.index}",
        remote_addr=parent.context.remote_addr,
        base_url=parent.context.base_url,
        in_bundle=True,
        extra={**parent.context.extra, "assign_id": assign_id}
        if assign_id
        else dict(parent.context.extra),
    )
    headers = dict(entry.headers)
    if parent.header("prefer"):
        headers["prefer"] = parent.header("prefer") or ""
    return FhirRequest(
        method=entry.method,
        path=entry.path,
        params=entry.params,
        headers=headers,
        body=entry.body,
        content_type="application/json-patch+json" if entry.method == "PATCH" else "",
        context=ctx,
    )


def _response_entry(resp: FhirResponse) -> dict[str, Any]:
    """One ``Bundle.entry`` of a batch/transaction-response (http.html#transaction-response)."""
    response: dict[str, Any] = {"status": _status_text(resp.status)}
    if "Location" in resp.headers:
        response["location"] = resp.headers["Location"]
    if "ETag" in resp.headers:
        response["etag"] = resp.headers["ETag"]
    out: dict[str, Any] = {}
    body = resp.body
    if body is not None and body.get("resourceType") == "OperationOutcome":
        response["outcome"] = body
    elif body is not None:
        out["resource"] = body
        meta = body.get("meta") or {}
        if meta.get("lastUpdated"):
            response["lastModified"] = meta["lastUpdated"]
        if body.get("id") and body.get("resourceType") != "Bundle":
            out["fullUrl"] = f"{body['resourceType']}/{body['id']}"
    if "lastModified" not in response and "Last-Modified" in resp.headers:
        response["lastModified"] = _instant_of(resp.headers["Last-Modified"])
    out["response"] = response
    return out


def _status_text(status: int) -> str:
    """``201`` -> ``"201 Created"``: the code first, as Bundle.entry.response.status wants."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _instant_of(http_date: str) -> str:
    from email.utils import parsedate_to_datetime

    return instant(parsedate_to_datetime(http_date))


def _batch(
    engine: FhirEngine, session: Session, req: FhirRequest, entries: list[_Entry]
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for entry in entries:
        try:
            with session.begin_nested():
                resp = engine.dispatch(session, _sub_request(req, entry))
                if resp.status >= 400:
                    raise _EntryFailed(resp)
                # inside the entry's savepoint: a row refused now fails this entry only
                pending.flush(session)
        except _EntryFailed as failed:
            resp = failed.response
        except FhirError as exc:
            resp = FhirResponse(exc.status, exc.outcome())
        except StoreError as exc:
            mapped = as_fhir_error(exc)
            assert mapped is not None
            resp = FhirResponse(mapped.status, mapped.outcome())
        results.append(_full_url(req, _response_entry(resp)))
    return results


class _EntryFailed(Exception):
    def __init__(self, response: FhirResponse) -> None:
        self.response = response


def _transaction(
    engine: FhirEngine, session: Session, req: FhirRequest, entries: list[_Entry]
) -> list[dict[str, Any]]:
    """http.html#trules: DELETE, then POST, then PUT/PATCH, then GET/HEAD; any failure raises.

    Deletes run first and before the other entries are planned, so that a conditional create
    or update in the same Bundle sees them, as the processing order implies.
    """
    seen_urls: set[str] = set()
    for entry in entries:
        if entry.full_url in seen_urls:
            raise BadRequest(
                f"Bundle.entry[{entry.index}].fullUrl {entry.full_url!r} appears twice",
                expression=(f"Bundle.entry[{entry.index}].fullUrl",),
            )
        if entry.full_url:
            seen_urls.add(entry.full_url)
    plan = _Plan()
    results: dict[int, dict[str, Any]] = {}
    deletes = [e for e in entries if e.method == "DELETE"]
    for entry in deletes:
        plan.claim(entry, _write_identity(engine, session, req.context, entry, plan))
    for entry in deletes:
        results[entry.index] = _run_entry(engine, session, req, entry, plan)
    _plan(engine, session, req.context, [e for e in entries if e.method != "DELETE"], plan)
    cache: dict[str, str] = {}
    for entry in entries:
        if isinstance(entry.body, dict):
            _rewrite(engine, session, req.context, entry, entry.body, plan.mapping, cache)
    # keys for the resources the entries may create (POSTs, PUTs as create), in one trip;
    # their rows then go with the index rows at the end instead of one INSERT each
    creating = [e for e in entries if e.method in ("POST", "PUT") and e.index not in plan.existing]
    engine.repository(session).reserve(len(creating))
    for entry in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
        if entry.method != "DELETE":
            results[entry.index] = _run_entry(engine, session, req, entry, plan)
    _send(session, plan)
    return [results[e.index] for e in entries]


def _send(session: Session, plan: _Plan) -> None:
    """Send the rows the entries deferred; a refused one fails the transaction, naming
    its entry when the database says which resource it was (a duplicate id)."""
    try:
        pending.flush(session)
    except StoreError as exc:
        mapped = as_fhir_error(exc)
        assert mapped is not None
        index = next((i for ref, i in plan.written.items() if str(exc).startswith(f"{ref} ")), None)
        if index is None:
            index = next((i for i, rid in plan.assigned.items() if f"/{rid} " in str(exc)), None)
        if index is None:
            raise mapped from exc
        where = f"Bundle.entry[{index}]"
        raise type(mapped)(f"{where}: {exc}", expression=(where,)) from exc


def _run_entry(
    engine: FhirEngine, session: Session, req: FhirRequest, entry: _Entry, plan: _Plan
) -> dict[str, Any]:
    if entry.index in plan.existing:
        resp = _existing_response(engine, session, req, entry, plan.existing[entry.index])
    else:
        sub = _sub_request(req, entry, plan.assigned.get(entry.index))
        if entry.method == "POST":
            sub.headers = {k: v for k, v in sub.headers.items() if k != "if-none-exist"}
        try:
            resp = engine.dispatch(session, sub)
        except FhirError as exc:
            raise _as_error(entry, FhirResponse(exc.status, exc.outcome(), exc.headers)) from exc
    if resp.status >= 400:
        raise _as_error(entry, resp)
    return _full_url(req, _response_entry(resp))


class _Plan:
    """Who each entry's resource is, worked out before the entries run (http.html#trules)."""

    def __init__(self) -> None:
        #: fullUrl -> "Type/id" for references to rewrite
        self.mapping: dict[str, str] = {}
        #: entry index -> id for entries that create (POST, conditional PUT with no match)
        self.assigned: dict[int, str] = {}
        #: entry index -> "Type/id" for conditional creates that matched (nothing to write)
        self.existing: dict[int, str] = {}
        #: "Type/id" -> index of the entry that changes it, to refuse overlaps
        self.written: dict[str, int] = {}

    def claim(self, entry: _Entry, identity: str | None) -> None:
        if identity is None:
            return
        if identity in self.written:
            raise BadRequest(
                f"Bundle.entry[{entry.index}] and Bundle.entry[{self.written[identity]}] both "
                f"change {identity}; a transaction may change each resource once",
                expression=(f"Bundle.entry[{entry.index}].request.url",),
            )
        self.written[identity] = entry.index


def _plan(
    engine: FhirEngine, session: Session, ctx: RequestContext, entries: list[_Entry], plan: _Plan
) -> None:
    conditions: dict[tuple[str, str], str] = {}  # (type, ifNoneExist) -> "Type/id"
    for entry in entries:
        where = f"Bundle.entry[{entry.index}]"
        if entry.method == "POST":
            res_type = entry.path
            _check_entry_type(entry, res_type)
            condition = entry.headers.get("if-none-exist")
            if condition and (res_type, condition) in conditions:
                # The same conditional create twice in one Bundle: one resource, not two.
                plan.existing[entry.index] = conditions[(res_type, condition)]
            elif condition:
                matches = engine._match(session, ctx, res_type, condition)
                if len(matches) > 1:
                    raise PreconditionFailed(
                        f"{where}: ifNoneExist matched {len(matches)} {res_type} resources; "
                        "the condition must be more selective"
                    )
                if matches:
                    plan.existing[entry.index] = matches[0].reference
            if entry.index in plan.existing:
                target = plan.existing[entry.index]
            else:
                plan.assigned[entry.index] = new_id()
                target = f"{res_type}/{plan.assigned[entry.index]}"
                plan.claim(entry, target)
            if condition:
                conditions[(res_type, condition)] = target
            if entry.full_url:
                plan.mapping[entry.full_url] = target
        elif entry.method in ("PUT", "PATCH"):
            identity = _write_identity(engine, session, ctx, entry, plan)
            plan.claim(entry, identity)
            if identity and entry.full_url and entry.method == "PUT":
                plan.mapping[entry.full_url] = identity


def _write_identity(
    engine: FhirEngine, session: Session, ctx: RequestContext, entry: _Entry, plan: _Plan
) -> str | None:
    """``Type/id`` that a PUT/PATCH/DELETE changes; conditional ones are resolved now."""
    parts = entry.path.split("/")
    if len(parts) == 2:
        return entry.path
    if len(parts) != 1 or not entry.params:
        return None  # the entry itself will answer with the right error
    res_type = parts[0]
    _check_entry_type(entry, res_type)
    matches = engine._match_params(session, ctx, res_type, entry.params)
    if len(matches) > 1:
        if entry.method == "DELETE":
            return None  # the entry refuses it with its own 412
        raise PreconditionFailed(
            f"Bundle.entry[{entry.index}]: the condition matched {len(matches)} {res_type} "
            "resources; it must match one at most"
        )
    if matches:
        return matches[0].reference
    if entry.method != "PUT":
        return None
    body_id = entry.body.get("id") if isinstance(entry.body, dict) else None
    if isinstance(body_id, str) and body_id:
        return f"{res_type}/{body_id}"
    # a conditional update with no match creates: give it its id now, for references
    plan.assigned[entry.index] = new_id()
    return f"{res_type}/{plan.assigned[entry.index]}"


def _check_entry_type(entry: _Entry, res_type: str) -> None:
    """An unknown type in an entry is a malformed Bundle (400), naming the entry."""
    try:
        check_type(res_type)
    except FhirError as exc:
        raise BadRequest(
            f"Bundle.entry[{entry.index}].request.url: {exc.diagnostics}",
            expression=(f"Bundle.entry[{entry.index}].request.url",),
        ) from exc


def _existing_response(
    engine: FhirEngine, session: Session, req: FhirRequest, entry: _Entry, reference: str
) -> FhirResponse:
    """A conditional create that matched: 200 with the existing resource (http.html#ccreate)."""
    sub = _sub_request(req, entry)
    res_type, _, res_id = reference.partition("/")
    stored = engine.repository(session).read(res_type, res_id)
    engine._visible(session, sub, stored)
    return engine._write_response(sub, stored, 200)


def _as_error(entry: _Entry, resp: FhirResponse) -> FhirError:
    from renkei.fhir.outcome import Issue

    issues = [
        Issue(
            i.get("severity", "error"),
            i.get("code", "processing"),
            f"Bundle.entry[{entry.index}]: {i.get('diagnostics', '')}",
            tuple(i.get("expression", ())),
        )
        for i in (resp.body or {}).get("issue", [])
    ]
    err = FhirError(f"Bundle.entry[{entry.index}] failed with {resp.status}", issues=issues)
    err.status = resp.status  # type: ignore[misc]
    return err


def _full_url(req: FhirRequest, out: dict[str, Any]) -> dict[str, Any]:
    if "fullUrl" in out and not out["fullUrl"].startswith("http"):
        out["fullUrl"] = f"{req.context.base_url}/{out['fullUrl']}"
    return out


def _rewrite(
    engine: FhirEngine,
    session: Session,
    ctx: RequestContext,
    entry: _Entry,
    node: Any,
    mapping: dict[str, str],
    cache: dict[str, str],
) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                node[key] = _resolve(engine, session, ctx, entry, value, mapping, cache)
            else:
                _rewrite(engine, session, ctx, entry, value, mapping, cache)
    elif isinstance(node, list):
        for item in node:
            _rewrite(engine, session, ctx, entry, item, mapping, cache)


def _resolve(
    engine: FhirEngine,
    session: Session,
    ctx: RequestContext,
    entry: _Entry,
    ref: str,
    mapping: dict[str, str],
    cache: dict[str, str],
) -> str:
    if ref in mapping:
        return mapping[ref]
    if ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
        raise BadRequest(
            f"Bundle.entry[{entry.index}]: reference {ref!r} names no entry of this Bundle"
        )
    if "?" in ref and not ref.startswith("http") and not ref.startswith("#"):
        if ref not in cache:
            res_type, _, query = ref.partition("?")
            _check_entry_type(entry, res_type)
            matches = engine._match(session, ctx, res_type, query)
            if len(matches) != 1:
                raise PreconditionFailed(
                    f"Bundle.entry[{entry.index}]: conditional reference {ref!r} matched "
                    f"{len(matches)} resources; it must match exactly one"
                )
            cache[ref] = matches[0].reference
        return cache[ref]
    return ref


__all__ = ["MAX_ENTRIES", "instant", "process_bundle"]
