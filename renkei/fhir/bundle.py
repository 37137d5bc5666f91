"""batch and transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction).

A transaction is all-or-nothing: it runs inside the caller's unit of work and the first
failing entry raises, so the caller rolls everything back. Entries run in the order the
spec requires (DELETE, POST, PUT/PATCH, GET/HEAD); ``urn:uuid:`` fullUrls of created
resources are given ids first and every reference to them is rewritten; a conditional
reference (``Patient?identifier=...``) resolves to its single match. A batch runs each
entry in a savepoint of its own, so one failing entry does not undo the others.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy.orm import Session

from renkei.fhir.context import FhirRequest, FhirResponse, RequestContext
from renkei.fhir.outcome import BadRequest, FhirError, NotFound, PreconditionFailed, as_fhir_error
from renkei.fhir.validate import check_type
from renkei.store.errors import StoreError
from renkei.store.repository import instant, new_id

if TYPE_CHECKING:
    from renkei.fhir.engine import FhirEngine

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_STATUS_TEXT = {
    200: "200 OK",
    201: "201 Created",
    204: "204 No Content",
    304: "304 Not Modified",
}
MAX_ENTRIES = 10_000


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
    parsed = [_parse_entry(i, e) for i, e in enumerate(entries)]
    if kind == "transaction":
        responses = _transaction(engine, session, req, parsed)
    else:
        responses = _batch(engine, session, req, parsed)
    return FhirResponse(
        200,
        {"resourceType": "Bundle", "type": f"{kind}-response", "entry": responses},
    )


class _Entry:
    __slots__ = ("body", "full_url", "headers", "index", "method", "params", "path")

    def __init__(self, index: int, raw: Any) -> None:
        self.index = index
        if not isinstance(raw, dict):
            raise BadRequest(f"Bundle.entry[{index}] is not an object")
        request = raw.get("request")
        if not isinstance(request, dict):
            raise BadRequest(
                f"Bundle.entry[{index}].request is required in a batch or transaction",
                expression=(f"Bundle.entry[{index}].request",),
            )
        method = str(request.get("method", "")).upper()
        if method not in _ORDER:
            raise BadRequest(
                f"Bundle.entry[{index}].request.method {method!r} is not supported",
                expression=(f"Bundle.entry[{index}].request.method",),
            )
        url = request.get("url")
        if not isinstance(url, str) or not url:
            raise BadRequest(
                f"Bundle.entry[{index}].request.url is required",
                expression=(f"Bundle.entry[{index}].request.url",),
            )
        split = urlsplit(url)
        self.method = method
        self.path = split.path.strip("/")
        self.params = parse_qsl(split.query, keep_blank_values=True)
        self.full_url: str | None = raw.get("fullUrl")
        self.body = copy.deepcopy(raw.get("resource"))
        headers = {}
        for field, header in (
            ("ifNoneMatch", "if-none-match"),
            ("ifModifiedSince", "if-modified-since"),
            ("ifMatch", "if-match"),
            ("ifNoneExist", "if-none-exist"),
        ):
            if request.get(field):
                headers[header] = str(request[field])
        self.headers = headers
        if method in ("POST", "PUT") and not isinstance(self.body, dict):
            raise BadRequest(
                f"Bundle.entry[{index}] ({method}) has no resource",
                expression=(f"Bundle.entry[{index}].resource",),
            )


def _parse_entry(index: int, raw: Any) -> _Entry:
    return _Entry(index, raw)


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
    response: dict[str, Any] = {"status": _STATUS_TEXT.get(resp.status, str(resp.status))}
    if "Location" in resp.headers:
        response["location"] = resp.headers["Location"]
    if "ETag" in resp.headers:
        response["etag"] = resp.headers["ETag"]
    out: dict[str, Any] = {}
    if resp.body is not None:
        if (
            resp.body.get("resourceType") == "OperationOutcome" and resp.status >= 400
        ) or resp.body.get("resourceType") == "OperationOutcome":
            response["outcome"] = resp.body
        else:
            out["resource"] = resp.body
            meta = resp.body.get("meta") or {}
            if meta.get("lastUpdated"):
                response["lastModified"] = meta["lastUpdated"]
            if "fullUrl" not in out and resp.body.get("id"):
                out["fullUrl"] = f"{resp.body['resourceType']}/{resp.body['id']}"
    out["response"] = response
    return out


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
    ctx = req.context
    # 1. Give every created resource its id up front, so references can be rewritten.
    mapping: dict[str, str] = {}
    assigned: dict[int, str] = {}
    existing: dict[int, str] = {}
    seen_urls: set[str] = set()
    for entry in entries:
        if entry.full_url:
            if entry.full_url in seen_urls:
                raise BadRequest(
                    f"Bundle.entry[{entry.index}].fullUrl {entry.full_url!r} appears twice"
                )
            seen_urls.add(entry.full_url)
        if entry.method == "POST":
            res_type = entry.path
            check_type(res_type)
            condition = entry.headers.get("if-none-exist")
            target_id: str | None = None
            if condition:
                matches = engine._match(session, ctx, res_type, condition)
                if len(matches) > 1:
                    raise PreconditionFailed(
                        f"Bundle.entry[{entry.index}]: ifNoneExist matched {len(matches)}"
                    )
                if matches:
                    target_id = matches[0].res_id
                    existing[entry.index] = target_id
            if target_id is None:
                target_id = new_id()
                assigned[entry.index] = target_id
            if entry.full_url:
                mapping[entry.full_url] = f"{res_type}/{target_id}"
        elif entry.method == "PUT" and entry.full_url and "?" not in entry.path:
            mapping[entry.full_url] = entry.path
    # 2. Rewrite references (and resolve conditional ones) in every resource.
    cache: dict[str, str] = {}
    for entry in entries:
        if isinstance(entry.body, dict):
            _rewrite(engine, session, ctx, entry, entry.body, mapping, cache)
    # 3. Run in the spec's order; any failure aborts the whole transaction.
    results: dict[int, dict[str, Any]] = {}
    for entry in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
        if entry.method == "POST" and entry.index in existing:
            sub = _sub_request(req, entry)
            resp = engine.dispatch(session, sub)  # conditional create answers 200
        else:
            sub = _sub_request(req, entry, assigned.get(entry.index))
            if entry.method == "POST":
                sub.headers = {k: v for k, v in sub.headers.items() if k != "if-none-exist"}
            resp = engine.dispatch(session, sub)
        if resp.status >= 400:
            raise _as_error(entry, resp)
        results[entry.index] = _full_url(req, _response_entry(resp))
    return [results[e.index] for e in entries]


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
        raise NotFound(
            f"Bundle.entry[{entry.index}]: reference {ref!r} names no entry of this Bundle"
        )
    if "?" in ref and not ref.startswith("http") and not ref.startswith("#"):
        if ref not in cache:
            res_type, _, query = ref.partition("?")
            check_type(res_type)
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
