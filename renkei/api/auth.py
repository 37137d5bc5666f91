"""``/auth/...`` (OAuth 2 / SMART on FHIR) and ``/fhir/.well-known/smart-configuration``.

A thin adapter: parse the form, run one ``renkei.auth`` function in a unit of work, shape
the answer. Auth errors become RFC 6749 §5.2 JSON here and nowhere else.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from renkei.api.fhir import base_url
from renkei.auth import launch, oauth, service
from renkei.auth.errors import AccountLocked, AuthError, InvalidClient, InvalidRequest, InvalidToken
from renkei.auth.keys import SIGNING_ALG
from renkei.auth.principal import Principal
from renkei.auth.server import AuthServer
from renkei.fhir.outcome import Unauthorized

if TYPE_CHECKING:
    from renkei.app import Services

router = APIRouter(tags=["oauth"])
T = TypeVar("T")

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_PAGE_HEADERS = {
    **_NO_STORE,
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _auth(request: Request) -> AuthServer:
    auth = _services(request).auth
    assert auth is not None, "auth is not wired in"
    return auth


async def _unit(request: Request, fn: Callable[[Any], T]) -> T:
    """Run ``fn(session)`` in a write unit of work in a worker thread.

    ``CommitThenRaise`` commits what was done (a revoked family, an audit event), then
    reports its error; any other error rolls everything back.
    """
    services = _services(request)

    def run() -> T:
        deferred: AuthError | None = None
        with services.db.session(write=True) as session:
            try:
                return fn(session)
            except oauth.CommitThenRaise as exc:
                deferred = exc.error
        assert deferred is not None
        raise deferred

    return await run_in_threadpool(run)


async def _form(request: Request) -> dict[str, str]:
    """Form fields; a repeated parameter is an error (RFC 6749 §3.1)."""
    form = await request.form()
    out: dict[str, str] = {}
    for key, value in form.multi_items():
        if not isinstance(value, str):
            raise InvalidRequest(f"{key} must be a plain field")
        if key in out:
            raise InvalidRequest(f"parameter {key!r} is repeated")
        out[key] = value
    return out


def _credentials(request: Request, form: dict[str, str]) -> oauth.ClientCredentials:
    return oauth.ClientCredentials(
        basic=oauth.parse_basic(request.headers.get("authorization")),
        client_id=form.get("client_id"),
        client_secret=form.get("client_secret"),
        assertion_type=form.get("client_assertion_type"),
        assertion=form.get("client_assertion"),
    )


def _remote(request: Request) -> str | None:
    return request.client.host if request.client else None


def auth_error_response(request: Request, exc: Exception) -> Response:
    """RFC 6749 §5.2 error JSON; 401 with WWW-Authenticate for client authentication."""
    assert isinstance(exc, AuthError)
    headers = dict(_NO_STORE)
    if isinstance(exc, InvalidClient) and request.headers.get("authorization"):
        headers["WWW-Authenticate"] = 'Basic realm="renkei"'
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status,
        headers=headers,
    )


# -- endpoints -----------------------------------------------------------------------------------


@router.post("/auth/token", summary="OAuth 2 token endpoint (RFC 6749 §3.2)")
async def token(request: Request) -> JSONResponse:
    form = await _form(request)
    creds = _credentials(request, form)
    auth = _auth(request)
    fhir_base = auth.fhir_base(base_url(request))
    endpoint = auth.issuer_for(fhir_base) + "/token"
    remote = _remote(request)

    def run(session: Any) -> dict[str, Any]:
        client = oauth.authenticate_client(
            session, auth, creds, token_endpoint=endpoint, remote_addr=remote
        )
        return oauth.token_response(
            session, auth, client, form, fhir_base=fhir_base, remote_addr=remote
        )

    return JSONResponse(await _unit(request, run), headers=_NO_STORE)


@router.post("/auth/revoke", summary="Token revocation (RFC 7009)")
async def revoke(request: Request) -> Response:
    form = await _form(request)
    token_value = form.get("token")
    if not token_value:
        raise InvalidRequest("token is required")
    auth = _auth(request)
    endpoint = auth.issuer_for(auth.fhir_base(base_url(request))) + "/token"
    creds = _credentials(request, form)
    remote = _remote(request)

    def run(session: Any) -> None:
        client = oauth.authenticate_client(
            session, auth, creds, token_endpoint=endpoint, remote_addr=remote
        )
        oauth.revoke(session, auth, client, token_value, remote_addr=remote)

    await _unit(request, run)
    return Response(status_code=200, headers=_NO_STORE)


@router.post("/auth/introspect", summary="Token introspection (RFC 7662)")
async def introspect(request: Request) -> JSONResponse:
    form = await _form(request)
    token_value = form.get("token")
    if not token_value:
        raise InvalidRequest("token is required")
    auth = _auth(request)
    endpoint = auth.issuer_for(auth.fhir_base(base_url(request))) + "/token"
    creds = _credentials(request, form)
    remote = _remote(request)

    def run(session: Any) -> dict[str, Any]:
        client = oauth.authenticate_client(
            session, auth, creds, token_endpoint=endpoint, remote_addr=remote
        )
        return oauth.introspect(session, auth, client, token_value)

    return JSONResponse(await _unit(request, run), headers=_NO_STORE)


@router.get("/auth/jwks", summary="Public keys that sign access tokens (RFC 7517)")
async def jwks(request: Request) -> JSONResponse:
    return JSONResponse(_auth(request).signing.jwks(), headers={"Cache-Control": "max-age=300"})


@router.get("/auth/authorize", include_in_schema=False)
async def authorize_page(request: Request) -> Response:
    params = dict(request.query_params)
    return await _authorize(request, params, sign_in=False)


@router.post("/auth/authorize", include_in_schema=False)
async def authorize_submit(request: Request) -> Response:
    return await _authorize(request, await _form(request), sign_in=True)


async def _authorize(request: Request, params: dict[str, str], *, sign_in: bool) -> Response:
    auth = _auth(request)
    fhir_base = auth.fhir_base(base_url(request))
    remote = _remote(request)

    def run(session: Any) -> Response:
        try:
            areq = oauth.check_authorization_request(session, auth, params, fhir_base=fhir_base)
        except InvalidRequest as exc:
            return _error_page(exc.description)
        except oauth.RedirectError as exc:
            query = {"error": exc.error, "error_description": exc.description}
            if exc.state is not None:
                query["state"] = exc.state
            return _redirect(exc.redirect_uri, query)
        client = service.get_client(session, areq.client_id)
        assert client is not None  # checked by check_authorization_request
        if not sign_in:
            return _login_page(client.name, areq, None, "", 200)
        ticket = params.get("launch_ticket")
        if ticket is not None:
            try:
                user_id = launch.open_ticket(auth, areq.hidden_fields(), ticket)
                user = oauth.active_user(session, user_id)
            except AuthError as exc:
                return _error_page(exc.description)
            return _pick_patient(session, auth, areq, client, user, ticket, params, fhir_base)
        result = service.sign_in(
            session,
            auth,
            login=params.get("login", ""),
            password=params.get("password", ""),
            code=params.get("totp", ""),
            remote_addr=remote,
        )
        if result.error is not None:
            status = 429 if isinstance(result.error, AccountLocked) else 401
            return _login_page(
                client.name, areq, result.error.description, params.get("login", ""), status
            )
        user = result.user
        assert user is not None  # no error: signed in
        if areq.wants_patient:
            ticket = launch.seal_ticket(auth, areq.hidden_fields(), user.id)
            return _pick_patient(session, auth, areq, client, user, ticket, {}, fhir_base)
        return _code_redirect(session, auth, areq, user, None, fhir_base)

    return await _unit(request, run)


def _code_redirect(
    session: Any,
    auth: AuthServer,
    areq: oauth.AuthorizationRequest,
    user: Any,
    patient_id: str | None,
    fhir_base: str,
) -> Response:
    code = oauth.issue_code(session, auth, areq, user, patient_id)
    query = {"code": code, "iss": auth.issuer_for(fhir_base)}
    if areq.state is not None:
        query["state"] = areq.state
    return _redirect(areq.redirect_uri, query)


def _pick_patient(
    session: Any,
    auth: AuthServer,
    areq: oauth.AuthorizationRequest,
    client: Any,
    user: Any,
    ticket: str,
    params: dict[str, str],
    fhir_base: str,
) -> Response:
    """SMART standalone launch: the signed-in person picks the patient the app is for.

    With ``patient`` chosen (and visible to them) the code is issued; otherwise the page
    lists the patients they may see, narrowed by ``patient_name``.
    """
    probe = launch.user_probe(user, client.client_id)
    chosen = params.get("patient")
    error = None
    if chosen:
        try:
            patient_id = launch.require_patient(session, auth, probe, chosen)
        except AuthError:
            error = "選択された患者は表示できません。一覧から選んでください。"
        else:
            return _code_redirect(session, auth, areq, user, patient_id, fhir_base)
    name = params.get("patient_name", "")
    directory = auth.patients
    choices = directory.choices(session, probe, name) if directory is not None else []
    page = _templates.get_template("patient.html").render(
        client_name=client.name,
        scope=areq.scope,
        error=error,
        patient_name=name,
        choices=choices,
        hidden={**areq.hidden_fields(), "launch_ticket": ticket},
        action="/auth/authorize",
    )
    return HTMLResponse(page, status_code=400 if error else 200, headers=_PAGE_HEADERS)


def _redirect(uri: str, query: dict[str, str]) -> Response:
    sep = "&" if "?" in uri else "?"
    return RedirectResponse(uri + sep + urlencode(query), status_code=303, headers=_NO_STORE)


def _error_page(message: str) -> Response:
    body = (
        "<!doctype html><meta charset='utf-8'><title>renkei</title>"
        f"<h1>サインインできません</h1><p>{html.escape(message)}</p>"
    )
    return HTMLResponse(body, status_code=400, headers=_PAGE_HEADERS)


def _login_page(
    client_name: str, areq: oauth.AuthorizationRequest, error: str | None, login: str, status: int
) -> Response:
    html = _templates.get_template("login.html").render(
        client_name=client_name,
        scope=areq.scope,
        error=error,
        login=login,
        hidden=areq.hidden_fields(),
        action="/auth/authorize",
    )
    return HTMLResponse(html, status_code=status, headers=_PAGE_HEADERS)


@router.get(
    "/fhir/.well-known/smart-configuration", summary="SMART App Launch discovery", tags=["oauth"]
)
async def smart_configuration(request: Request) -> JSONResponse:
    auth = _auth(request)
    issuer = auth.issuer_for(auth.fhir_base(base_url(request)))
    return JSONResponse(
        {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/jwks",
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "introspection_endpoint": f"{issuer}/introspect",
            "revocation_endpoint": f"{issuer}/revoke",
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none",
            ],
            "token_endpoint_auth_signing_alg_values_supported": list(oauth.ASSERTION_ALGORITHMS),
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "access_token_signing_alg_values_supported": [SIGNING_ALG],
            "scopes_supported": [
                "system/*.cruds",
                "user/*.cruds",
                "patient/*.cruds",
                "launch/patient",
                "offline_access",
                "online_access",
            ],
            "capabilities": [
                "launch-standalone",
                "context-standalone-patient",
                "client-public",
                "client-confidential-symmetric",
                "client-confidential-asymmetric",
                "permission-offline",
                "permission-online",
                "permission-patient",
                "permission-user",
                "permission-v1",
                "permission-v2",
            ],
        }
    )


# -- the bearer-token seam (services.authenticate) -------------------------------------------------


#: FHIR paths served without a token (CapabilityStatement and SMART discovery)
_PUBLIC_FHIR = ("/fhir/metadata", "/fhir/.well-known/")


def _needs_token(path: str) -> bool:
    """Whether ``path`` is on the FHIR API and not one of its public documents.

    >>> _needs_token("/fhir/Patient"), _needs_token("/fhir/metadata"), _needs_token("/oncall/x")
    (True, False, False)
    """
    if not (path == "/fhir" or path.startswith("/fhir/")):
        return False
    return not any(path == p.rstrip("/") or path.startswith(p) for p in _PUBLIC_FHIR)


def _http_base(url: str) -> str:
    """A websocket's base URL names the same server as its http(s) twin (the token's aud).

    >>> _http_base("wss://renkei.example.jp/fhir")
    'https://renkei.example.jp/fhir'
    """
    if url.startswith("ws://") or url.startswith("wss://"):
        return "http" + url[2:]
    return url


class BearerAuthenticator:
    """``services.authenticate``: the Bearer token of a request -> Principal (None if absent).

    A present but bad token raises the FHIR ``Unauthorized`` error (401 OperationOutcome
    with ``WWW-Authenticate: Bearer error="invalid_token"``). Calling it checks everything,
    in a session of its own; :meth:`deferred` leaves the database half to the caller's
    unit of work (the FHIR API), which saves a session and a thread hop per request.
    """

    def __init__(self, services: Services) -> None:
        self.services = services

    async def __call__(self, request: Request) -> Principal | None:
        principal, check = self.deferred(request)
        if principal is None or check is None:
            return principal
        services = self.services

        def run() -> None:
            with services.db.session() as session:
                check(session)

        await run_in_threadpool(run)
        return principal

    def deferred(
        self, request: Request
    ) -> tuple[Principal | None, Callable[[Session], None] | None]:
        """The caller as the token says, and the check to run before trusting it.

        The check raises ``Unauthorized`` when the token was revoked or the account is no
        longer active; the caller must run it before anything is read or written.
        """
        header = request.headers.get("authorization")
        if not header:
            if _needs_token(request.url.path):
                # refused before the engine parses anything: an anonymous caller learns
                # nothing, not even which types or parameters exist
                raise Unauthorized(
                    "a bearer access token is required",
                    headers={"WWW-Authenticate": 'Bearer realm="renkei"'},
                )
            return None, None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized(
                "send the access token as 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": 'Bearer realm="renkei", error="invalid_request"'},
            )
        auth = self.services.auth
        assert auth is not None
        try:
            principal = oauth.verify_bearer(
                auth, value.strip(), fhir_base=_http_base(base_url(request))
            )
        except InvalidToken as exc:
            raise _invalid_token(exc) from exc

        def check(session: Session) -> None:
            try:
                oauth.check_caller(session, principal)
            except InvalidToken as exc:
                raise _invalid_token(exc) from exc

        return principal, check


def _invalid_token(exc: InvalidToken) -> Unauthorized:
    description = exc.description.replace('"', "'")
    return Unauthorized(
        exc.description,
        headers={
            "WWW-Authenticate": f'Bearer realm="renkei", error="invalid_token", '
            f'error_description="{description}"'
        },
    )


def bearer_authenticator(services: Services) -> BearerAuthenticator:
    """``services.authenticate`` for the app (see :class:`BearerAuthenticator`)."""
    return BearerAuthenticator(services)


__all__ = ["BearerAuthenticator", "auth_error_response", "bearer_authenticator", "router"]


def websocket_token_verifier(services: Services) -> Callable[[str], Principal | None]:
    """The notify package's websocket seam: an access token -> Principal (None if bad).

    A websocket message carries no Host-based FHIR base, so the audience is the configured
    base (``RENKEI_BASE_URL``) or, without one, the token's own ``aud`` — which is safe
    because the signature check that follows accepts only this deployment's keys.
    """
    import base64
    import json

    def verify(token: str) -> Principal | None:
        auth = services.auth
        if auth is None or not token:
            return None
        fhir_base = auth.fhir_base(None) if services.settings.base_url_explicit else None
        if fhir_base is None:
            try:
                payload = token.split(".")[1]
                claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
                aud = claims.get("aud")
                fhir_base = aud[0] if isinstance(aud, list) else aud
            except (IndexError, ValueError, AttributeError):
                return None
            if not isinstance(fhir_base, str) or not fhir_base.endswith("/fhir"):
                return None
        try:
            with services.db.session() as session:
                return oauth.bearer_principal(session, auth, token, fhir_base=fhir_base)
        except AuthError:
            return None

    return verify
