"""JSON Patch (RFC 6902) for the FHIR patch interaction (https://hl7.org/fhir/R4/http.html#patch).

FHIRPath Patch (a Parameters body) is not supported and is refused with 415.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import jsonpatch
import orjson

from renkei.fhir.outcome import BadRequest, InvalidResource, UnsupportedMediaType

JSON_PATCH = "application/json-patch+json"


class PatchError(InvalidResource):
    """The patch does not apply, or its result is not a valid resource."""


def patch_document(body: Any, content_type: str) -> list[dict[str, Any]]:
    """The list of patch operations from a request body (or a Binary inside a Bundle)."""
    media = (content_type or "").split(";")[0].strip().lower()
    if isinstance(body, dict) and body.get("resourceType") == "Binary":
        # In a Bundle, a JSON Patch travels as a Binary (http.html#patch).
        if (body.get("contentType") or "").split(";")[0] != JSON_PATCH:
            raise UnsupportedMediaType("a patch Binary must have contentType " + JSON_PATCH)
        try:
            body = orjson.loads(base64.b64decode(body.get("data", ""), validate=True))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise BadRequest("the patch Binary's data is not base64-encoded JSON") from exc
    elif isinstance(body, dict) and body.get("resourceType") == "Parameters":
        raise UnsupportedMediaType("FHIRPath Patch is not supported; send a JSON Patch")
    elif media and media != JSON_PATCH:
        raise UnsupportedMediaType(f"patch needs Content-Type {JSON_PATCH}, got {media!r}")
    if not isinstance(body, list) or not all(isinstance(op, dict) for op in body):
        raise BadRequest("a JSON Patch document is a JSON array of operations")
    return body


def apply(content: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply the operations to a copy of ``content``.

    >>> apply({"resourceType": "Patient", "id": "1", "active": False},
    ...       [{"op": "replace", "path": "/active", "value": True}])["active"]
    True
    """
    try:
        patched: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(content), operations)
        return patched
    except jsonpatch.JsonPatchTestFailed as exc:
        raise PatchError(f"patch test failed: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise PatchError(f"the patch does not apply: {exc}") from exc
    except (TypeError, KeyError, ValueError) as exc:
        raise BadRequest(f"malformed JSON Patch: {exc}") from exc
