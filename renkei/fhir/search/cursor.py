"""The opaque ``_cursor`` of a search page: a keyset position plus a snapshot bound.

Offsets skip or repeat entries when rows are inserted between page fetches. A cursor
instead names the last (or first) row seen by its sort values and ``pk``, and carries the
highest ``pk`` that existed when the first page was served: later pages never show
resources created after the search began, and never re-show or lose earlier ones.

    >>> c = Cursor(forward=True, values=("やまだ", None), pk=42, bound=1000, total=57)
    >>> decode(encode(c)) == c
    True
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from renkei.fhir.outcome import BadRequest


@dataclass(frozen=True)
class Cursor:
    #: True: the rows after this position (next); False: the rows before it (previous)
    forward: bool
    values: tuple[Any, ...]
    pk: int
    #: the largest fhir_resource.pk visible to this search (snapshot at the first page)
    bound: int
    #: Bundle.total counted on the first page: the snapshot fixes it, so later pages
    #: need not count again (None: not counted)
    total: int | None = None


def encode(cursor: Cursor) -> str:
    payload = {
        "f": int(cursor.forward),
        "v": [_tag(v) for v in cursor.values],
        "p": cursor.pk,
        "b": cursor.bound,
        "t": cursor.total,
    }
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def decode(text: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        payload = orjson.loads(raw)
        return Cursor(
            forward=bool(payload["f"]),
            values=tuple(_untag(v) for v in payload["v"]),
            pk=int(payload["p"]),
            bound=int(payload["b"]),
            total=None if payload.get("t") is None else int(payload["t"]),
        )
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise BadRequest(f"_cursor {text[:40]!r} is not a page position this server made") from exc


def _tag(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, Decimal | float | int) and not isinstance(value, bool):
        return ["n", str(value)]
    return ["s", str(value)]


def _untag(item: Any) -> Any:
    if item is None:
        return None
    kind, text = item
    if kind == "t":
        return datetime.fromisoformat(text)
    if kind == "n":
        return Decimal(text)
    if kind == "s":
        return str(text)
    raise ValueError(f"unknown cursor value kind {kind!r}")


__all__ = ["Cursor", "decode", "encode"]
