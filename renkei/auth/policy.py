"""``ScopePolicy``: SMART scopes checked on every FHIR interaction, before any sharing rule.

Wraps an inner :class:`~renkei.fhir.policy.AccessPolicy` (the care-team/consent sharing
policy; ``AllowAll`` until it is plugged in). This layer answers "may this token do this
kind of thing to this type of resource at all"; the inner one answers "to this patient's
data". Batch and transaction entries re-enter the engine one by one, so each entry meets
``authorize`` on its own; resources pulled in by ``_include``/``_revinclude`` and history
entries meet ``can_read``, which requires read scope on their type.

Contexts: a back end (``kind == "client"``) is granted ``system/`` scopes, a person
``user/`` scopes. ``patient/`` scopes need a patient launch context, which this server does
not issue yet, so they grant nothing. The local operator (``kind == "operator"``) passes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from renkei.auth.principal import Principal
from renkei.auth.scopes import INTERACTION_PERMISSION, PERMISSIONS, permits
from renkei.fhir.context import RequestContext
from renkei.fhir.outcome import Forbidden, Unauthorized
from renkei.fhir.policy import AccessPolicy
from renkei.store.models import resource
from renkei.store.repository import StoredResource

#: Sent with every 401 (RFC 6750 §3).
WWW_AUTHENTICATE = 'Bearer realm="renkei"'
_CONTEXTS = {"client": ("system",), "user": ("user",)}
#: where ``authorize`` leaves the interaction, for ``can_read`` of the same request
_KEY = "scope.interaction"
_WRITES = ("create", "update", "patch", "delete")


def _principal(ctx: RequestContext) -> Principal:
    principal = ctx.principal
    if not isinstance(principal, Principal):
        raise Unauthorized(
            "a bearer access token is required", headers={"WWW-Authenticate": WWW_AUTHENTICATE}
        )
    return principal


def _contexts(principal: Principal) -> tuple[str, ...]:
    return _CONTEXTS.get(principal.kind, ())


class ScopePolicy:
    """AccessPolicy that enforces SMART v2 scopes, then defers to ``inner``."""

    def __init__(self, inner: AccessPolicy) -> None:
        self.inner = inner

    def authorize(self, ctx: RequestContext, interaction: str, res_type: str | None) -> None:
        principal = _principal(ctx)
        ctx.extra[_KEY] = (interaction, res_type)
        if principal.kind != "operator":
            self._check_scope(principal, interaction, res_type)
        self.inner.authorize(ctx, interaction, res_type)

    def _check_scope(self, principal: Principal, interaction: str, res_type: str | None) -> None:
        if interaction in ("capabilities", "batch", "transaction"):
            return  # a Bundle's entries are each authorized as they run
        perm = INTERACTION_PERMISSION.get(interaction)
        if perm is None:
            raise Forbidden(f"interaction {interaction!r} is not permitted by any scope")
        contexts = _contexts(principal)
        # res_type None (system-level search, history, operation) needs a wildcard grant
        if not permits(principal.scopes, res_type, perm, contexts):
            target = res_type or "all types"
            raise Forbidden(
                f"the token's scopes do not allow {interaction} on {target} "
                f"(needs {'/'.join(contexts) or 'a'} scope with '{perm}')",
                headers={"WWW-Authenticate": f'{WWW_AUTHENTICATE}, error="insufficient_scope"'},
            )

    def can_read(self, session: Session, ctx: RequestContext, stored: StoredResource) -> bool:
        principal = _principal(ctx)
        if principal.kind != "operator" and not self._may_see(principal, ctx, stored.res_type):
            return False
        return self.inner.can_read(session, ctx, stored)

    def _may_see(self, principal: Principal, ctx: RequestContext, res_type: str) -> bool:
        interaction, authorized_type = ctx.extra.get(_KEY, ("read", None))
        contexts = _contexts(principal)
        if interaction in _WRITES and res_type == authorized_type:
            return True  # the write scope was checked; the engine looks at the old version
        if interaction == "search":
            # matches need 's' (checked), included resources of other types 'r' or 's'
            return res_type == authorized_type or any(
                permits(principal.scopes, res_type, p, contexts) for p in "rs"
            )
        return permits(principal.scopes, res_type, "r", contexts)

    def check_write(
        self,
        session: Session,
        ctx: RequestContext,
        res_type: str,
        new: dict[str, Any] | None,
        old: StoredResource | None,
    ) -> None:
        _principal(ctx)
        self.inner.check_write(session, ctx, res_type, new, old)

    def search_filter(self, session: Session, ctx: RequestContext, res_type: str | None) -> Any:
        """A SQL condition matching ``can_read``'s type rule, so the search engine never
        loads rows the scope check would drop: in a search, types other than the searched
        one (includes, chain and ``_has`` targets) need 'r' or 's'; elsewhere (conditional
        matches) any permission on the type. Then the inner policy's condition."""
        principal = _principal(ctx)
        inner = self.inner.search_filter(session, ctx, res_type)  # type: ignore[arg-type]
        if principal.kind == "operator":
            return inner
        contexts = _contexts(principal)
        interaction, authorized_type = ctx.extra.get(_KEY, ("search", None))
        own: Any = None
        if res_type is None:
            if not any(permits(principal.scopes, None, p, contexts) for p in "rs"):
                own = resource.c.res_type.in_(self._readable_types(principal, contexts))
        elif res_type != authorized_type or interaction not in (*_WRITES, "search"):
            letters = "rs" if interaction in ("search", "read", "operation") else PERMISSIONS
            if not any(permits(principal.scopes, res_type, p, contexts) for p in letters):
                own = sa.false()
        if own is None:
            return inner
        return own if inner is None else sa.and_(own, inner)

    @staticmethod
    def _readable_types(principal: Principal, contexts: tuple[str, ...]) -> list[str]:
        from renkei.auth.scopes import resource_scopes

        return sorted(
            {
                s.res_type
                for s in resource_scopes(principal.scopes)
                if s.context in contexts and s.res_type != "*" and s.perms & {"r", "s"}
            }
        )


__all__ = ["WWW_AUTHENTICATE", "ScopePolicy"]
