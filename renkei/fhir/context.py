"""Who is asking, and the framework-free request/response the FHIR engine works on."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestContext:
    """Facts about the caller; ``principal`` is the auth package's view of the user/client."""

    principal: Any = None
    request_id: str = ""
    remote_addr: str | None = None
    #: FHIR base URL as the client sees it, for fullUrl, Location and paging links.
    base_url: str = "http://127.0.0.1:8000/fhir"
    #: set while a Bundle is being processed, so policies can tell entries apart
    in_bundle: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: the database half of the caller's authentication (revocation, account state), when
    #: the unit of work must run it first instead of the authenticator (``api/fhir._run``)
    caller_check: Callable[[Any], None] | None = None


@dataclass
class FhirRequest:
    method: str
    #: path relative to the FHIR base, no leading slash and no query: ``Patient/1/_history``
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    #: header names in lower case
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    content_type: str = "application/fhir+json"
    context: RequestContext = field(default_factory=RequestContext)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


@dataclass
class FhirResponse:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
