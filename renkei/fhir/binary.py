"""Binary resources and inline attachments: size limits, allowed types, bytes kept apart.

A ``Binary``'s ``data`` is moved to the :class:`BlobStore` before the resource is stored
and put back when it is read, so resource rows (and every index, history and backup read
of them) stay small. Photos from the field are limited in size and type; anything else is
refused with 413/415 and a message that says what is allowed.
"""

from __future__ import annotations

import base64
import binascii
import copy
from dataclasses import dataclass, field
from typing import Any

from renkei.fhir.outcome import BadRequest, PayloadTooLarge, UnsupportedMediaType
from renkei.store.blobs import BlobStore

BLOB_EXTENSION = "https://renkei.example.jp/fhir/StructureDefinition/blob-sha256"
DEFAULT_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/heic",
        "image/webp",
        "application/pdf",
        "text/plain",
        "application/fhir+json",
        "application/json-patch+json",
        # JP Core's DiagnosticReport (endoscopy) example carries its report inline as XML
        "application/xml",
    }
)


@dataclass
class BinaryPolicy:
    store: BlobStore
    max_bytes: int = 10 * 1024 * 1024
    #: inline ``Attachment.data`` in other resources (e.g. DocumentReference) stays small
    max_inline_bytes: int = 64 * 1024
    allowed_types: frozenset[str] = field(default_factory=lambda: DEFAULT_TYPES)

    def check_type(self, content_type: str | None) -> None:
        media = (content_type or "").split(";")[0].strip().lower()
        if media not in self.allowed_types:
            raise UnsupportedMediaType(
                f"content type {media or '(none)'!r} is not accepted; "
                f"allowed: {', '.join(sorted(self.allowed_types))}",
                expression=("Binary.contentType",),
            )

    def _decode(self, data: Any, where: str) -> bytes:
        if not isinstance(data, str):
            raise BadRequest(f"{where} must be base64 text", expression=(where,))
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadRequest(f"{where} is not valid base64", expression=(where,)) from exc

    def externalize(self, body: dict[str, Any]) -> dict[str, Any]:
        """Before storing: check a Binary or inline attachments, and move Binary bytes out."""
        if body.get("resourceType") == "Binary":
            self.check_type(body.get("contentType"))
            if "data" not in body:
                return body
            raw = self._decode(body["data"], "Binary.data")
            if len(raw) > self.max_bytes:
                raise PayloadTooLarge(
                    f"Binary is {len(raw)} bytes; the limit is {self.max_bytes}",
                    expression=("Binary.data",),
                )
            key = self.store.put(raw)
            out = {k: v for k, v in body.items() if k != "data"}
            others = [e for e in out.get("extension") or [] if e.get("url") != BLOB_EXTENSION]
            out["extension"] = [*others, {"url": BLOB_EXTENSION, "valueString": key}]
            return out
        self._check_inline(body, body.get("resourceType", ""))
        return body

    def _check_inline(self, node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "contentType" in node and "data" in node:
                raw = self._decode(node["data"], f"{path}.data")
                if len(raw) > self.max_inline_bytes:
                    raise PayloadTooLarge(
                        f"{path}.data is {len(raw)} bytes inline; attachments over "
                        f"{self.max_inline_bytes} bytes go in a Binary referenced by url",
                        expression=(f"{path}.data",),
                    )
                self.check_type(node.get("contentType"))
            for key, value in node.items():
                self._check_inline(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                self._check_inline(item, f"{path}[{i}]")

    def internalize(self, content: dict[str, Any] | None) -> dict[str, Any] | None:
        """After reading: put a Binary's bytes back (other resources are returned as they are)."""
        if not content or content.get("resourceType") != "Binary":
            return content
        keys = [
            e.get("valueString")
            for e in content.get("extension") or []
            if e.get("url") == BLOB_EXTENSION
        ]
        if not keys:
            return content
        out = copy.copy(content)
        out["extension"] = [
            e for e in content.get("extension") or [] if e.get("url") != BLOB_EXTENSION
        ]
        if not out["extension"]:
            del out["extension"]
        out["data"] = base64.b64encode(self.store.get(str(keys[0]))).decode("ascii")
        return out
