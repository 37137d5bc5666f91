"""The one seam through which websockets authenticate: ``authenticate_token``.

Websocket clients send their OAuth access token in the first message or in the
``Sec-WebSocket-Protocol`` header, never in the URL (URLs end up in proxy logs). Until the
auth package lands, ``NotifyService.token_verifier`` is None and every token is refused;
tests install a token map. The merge connects it to the real JWT verification
(``build_services`` passes the auth package's verifier), so this function does not change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from renkei.auth.principal import Principal

if TYPE_CHECKING:
    from renkei.app import Services


def authenticate_token(services: Services, token: str) -> Principal | None:
    """The principal an access token stands for, or None if it is invalid/expired/revoked."""
    notify = getattr(services, "notify", None)
    if notify is None or notify.token_verifier is None or not token:
        return None
    principal: Any = notify.token_verifier(token)
    return principal if principal is not None else None


__all__ = ["authenticate_token"]
