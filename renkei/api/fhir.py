"""``/fhir/...``: every FHIR interaction, adapted from HTTP to :class:`FhirEngine`.

Only JSON is served (the CapabilityStatement says so); XML asks get 406.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from renkei.api.deps import request_context
from renkei.audit.errors import AuditError
from renkei.audit.trail import reads_audit_log
from renkei.fhir.context import FhirRequest, FhirResponse
from renkei.fhir.engine import error_response
from renkei.fhir.outcome import (
    BadRequest,
    FhirError,
    Issue,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
    operation_outcome,
)

log = logging.getLogger(__name__)
router = APIRouter()

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = {"application/fhir+json", "application/json", "json", "application/json+fhir"}
_XML_TYPES = {"application/fhir+xml", "application/xml", "xml", "text/xml", "application/xml+fhir"}
_READ_METHODS = {"GET", "HEAD"}
#: Largest request body accepted: room for a transaction of thousands of resources or a
#: scanned document in a Binary, while a runaway client cannot exhaust memory.
MAX_BODY_BYTES = 32 * 1024 * 1024


class _Rollback(Exception):
    """Carries an error response out of the unit of work so nothing is committed."""

    def __init__(self, response: FhirResponse) -> None:
        self.response = response


def render(resp: FhirResponse, *, pretty: bool = False, head: bool = False) -> Response:
    content = b""
    if resp.body is not None and not head and resp.status != 304:
        content = orjson.dumps(resp.body, option=orjson.OPT_INDENT_2 if pretty else 0)
    media = f"{FHIR_JSON}; charset=utf-8" if resp.body is not None else None
    return Response(content, status_code=resp.status, headers=resp.headers, media_type=media)


def _negotiate(request: Request) -> None:
    fmt = request.query_params.get("_format")
    if fmt:
        kind = fmt.split(";")[0].strip().lower()
        if kind in _XML_TYPES:
            raise NotAcceptable("this server speaks FHIR JSON only; _format=xml is not served")
        if kind not in _JSON_TYPES:
            raise NotAcceptable(f"_format {fmt!r} is not served; use json")
        return
    accept = request.headers.get("accept", "")
    if not accept:
        return
    kinds = [a.split(";")[0].strip().lower() for a in accept.split(",")]
    if any(k in _JSON_TYPES or k in ("*/*", "application/*") for k in kinds):
        return
    if _is_binary_path(request.url.path.removeprefix("/fhir/")):
        return  # a Binary may be asked for in its own media type
    if any(k in _XML_TYPES for k in kinds):
        raise NotAcceptable("this server speaks FHIR JSON only (Accept: application/fhir+json)")


def _is_binary_path(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    return bool(parts) and parts[0] == "Binary" and len(parts) <= 2


def _parse_body(raw: bytes, content_type: str, method: str, path: str = "") -> Any:
    if not raw:
        return None
    media = content_type.split(";")[0].strip().lower()
    if _is_binary_path(path) and method in ("POST", "PUT") and media and media not in _JSON_TYPES:
        # https://hl7.org/fhir/R4/binary.html#rest: native content becomes a Binary
        body: dict[str, Any] = {
            "resourceType": "Binary",
            "contentType": media,
            "data": base64.b64encode(raw).decode("ascii"),
        }
        parts = [p for p in path.split("/") if p]
        if method == "PUT" and len(parts) == 2:
            body["id"] = parts[1]
        return body
    if media == "application/x-www-form-urlencoded":
        try:
            return parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError as exc:
            raise BadRequest("the form body is not UTF-8") from exc
    if media and media not in _JSON_TYPES and media != "application/json-patch+json":
        if media in _XML_TYPES:
            raise UnsupportedMediaType("this server accepts FHIR JSON only, not XML")
        raise UnsupportedMediaType(f"unsupported Content-Type {media!r}; send {FHIR_JSON}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc


async def _read_body(request: Request) -> bytes:
    """The body, refused with 413 as soon as it grows past MAX_BODY_BYTES."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the request body is larger than {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"the request body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def base_url(request: Request) -> str:
    configured = request.app.state.settings.base_url_explicit
    if configured:
        return str(configured).rstrip("/") + "/fhir"
    return str(request.base_url).rstrip("/") + "/fhir"


#: a clinician's stated reason for opening a record outside their care relationship
BREAK_GLASS_HEADER = "x-break-glass-reason"
_MAX_REASON = 500


async def principal_of(request: Request) -> Any:
    """The caller as the auth package sees it (None when auth is not wired in).

    A break-the-glass reason sent in ``X-Break-Glass-Reason`` becomes the principal's
    ``purpose_of_use`` for this request; the policy decides whether the role may use it.
    HTTP header values are ASCII, so a Japanese reason is sent percent-encoded UTF-8
    (``%E6%95%91%E6%80%A5...``) and decoded here.
    """
    authenticate = request.app.state.services.authenticate
    if authenticate is None:
        return None
    deferred = getattr(authenticate, "deferred", None)
    if deferred is None:
        principal = await authenticate(request)
    else:
        # the token's database check runs first in _run's own transaction
        principal, request.state.caller_check = deferred(request)
    reason = unquote(request.headers.get(BREAK_GLASS_HEADER) or "").strip()
    if principal is not None and reason:
        principal = dataclasses.replace(principal, purpose_of_use=reason[:_MAX_REASON])
    return principal


@router.api_route(
    "/fhir/{path:path}",
    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def fhir_endpoint(path: str, request: Request) -> Response:
    pretty = request.query_params.get("_pretty") == "true"
    method = request.method.upper()
    try:
        principal = await principal_of(request)  # first: anonymous callers learn nothing
        _negotiate(request)
        raw = await _read_body(request)
        content_type = request.headers.get("content-type", "")
        body = _parse_body(raw, content_type, method, path)
    except FhirError as exc:
        return render(error_response(exc), pretty=pretty)
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("_pretty",)]
    ctx = request_context(request, principal)
    freq = FhirRequest(
        method=method,
        path=path,
        params=params,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        content_type=content_type,
        context=ctx,
    )
    resp = await run_in_threadpool(_run, request.app.state.services, freq)
    native = _native_binary(request, path, resp)
    if native is not None:
        return native
    return render(resp, pretty=pretty, head=method == "HEAD")


def _native_binary(request: Request, path: str, resp: FhirResponse) -> Response | None:
    """A Binary read asked for in its own type (Accept: image/jpeg...) is served raw."""
    if request.method != "GET" or resp.status != 200 or not _is_binary_path(path):
        return None
    body = resp.body or {}
    if body.get("resourceType") != "Binary" or "data" not in body:
        return None
    accept = [a.split(";")[0].strip().lower() for a in request.headers.get("accept", "").split(",")]
    wanted = str(body.get("contentType", "")).lower()
    if wanted not in accept and not any(
        a.endswith("/*") and a != "*/*" and wanted.startswith(a[:-1]) for a in accept
    ):
        return None
    return Response(
        base64.b64decode(body["data"]),
        media_type=wanted or "application/octet-stream",
        headers=resp.headers,
    )


def _run(services: Any, freq: FhirRequest) -> FhirResponse:
    """One unit of work; a write's audit records commit with it.

    A read's records go to the background writer once the answer is known (served at
    once; refused while the log cannot be written). A failed write's records are appended
    right after its rollback, in a short write transaction of their own. If the records
    cannot be written, nothing is served and nothing is changed (fail closed).
    """
    write = freq.method not in _READ_METHODS
    audit = services.audit
    if audit is not None:
        audit.begin(freq.context)
        if reads_audit_log(freq.path):
            audit.settle()  # an auditor sees every access served before the question
    committed = False
    # A write's records commit with its own transaction, after the reads served before it
    # (the chain keeps this process's order). Taken before the transaction begins: on
    # SQLite the background writer could not finish a batch while this one holds the lock.
    carried = audit.carry() if audit is not None and write else []
    try:
        with services.db.session(write=write) as session:
            if freq.context.caller_check is not None:
                try:
                    freq.context.caller_check(session)
                except FhirError as exc:
                    raise _Rollback(error_response(exc)) from exc
            resp: FhirResponse = services.engine.handle(session, freq)
            if resp.status >= 400:
                raise _Rollback(resp)
            if audit is not None and write:
                audit.flush(session, freq.context, committed=True, before=carried)
        committed = True
    except _Rollback as rollback:
        resp = rollback.response
    except AuditError:
        log.exception("audit append failed; nothing served (%s)", freq.context.request_id)
        return _unaudited()
    finally:
        if audit is not None:
            audit.carried(carried, committed=committed)
    if audit is not None and audit.pending(freq.context):
        try:
            if not write:
                audit.submit(freq.context)
            else:
                # a failed write's records: its own transaction was rolled back
                audit.settle()
                with services.db.session(write=True) as session:
                    audit.flush(session, freq.context, committed=committed)
        except Exception:
            log.exception("audit append failed for request %s", freq.context.request_id)
            return _unaudited()
    return resp


def _unaudited() -> FhirResponse:
    """Patient data is neither served nor changed without its audit record (fail closed)."""
    return FhirResponse(
        500,
        operation_outcome(
            Issue("fatal", "exception", "the access could not be audited; nothing was served")
        ),
    )
