"""Large responses are gzipped for clients that accept it; small ones and /auth never are."""

from __future__ import annotations

import gzip

import orjson
from fastapi.testclient import TestClient

GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


def test_capability_statement_is_gzipped_when_accepted(client: TestClient) -> None:
    plain = client.get("/fhir/metadata", headers=IDENTITY)
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    packed = client.get("/fhir/metadata", headers=GZIP)
    assert packed.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in packed.headers["vary"].lower()
    assert int(packed.headers["content-length"]) * 5 < len(plain.content)  # JSON packs well
    assert packed.json() == plain.json()  # httpx undid the gzip; same document
    assert "server-timing" in packed.headers


def test_a_small_read_is_sent_as_it_is(client: TestClient) -> None:
    created = client.post("/fhir/Patient", json={"resourceType": "Patient", "active": True})
    read = client.get(f"/fhir/Patient/{created.json()['id']}", headers=GZIP)
    assert read.status_code == 200 and "content-encoding" not in read.headers


def test_auth_responses_are_never_compressed() -> None:
    """Not by size: a large body under /auth is sent as it is, the same body elsewhere not."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from renkei.api.compression import MINIMUM_SIZE, CompressLarge

    def big(_request: object) -> PlainTextResponse:
        return PlainTextResponse("token " * MINIMUM_SIZE)

    app = Starlette(routes=[Route("/auth/token", big), Route("/fhir/x", big)])
    with TestClient(CompressLarge(app)) as c:
        assert "content-encoding" not in c.get("/auth/token", headers=GZIP).headers
        assert c.get("/fhir/x", headers=GZIP).headers["content-encoding"] == "gzip"


def test_raw_bytes_are_real_gzip(client: TestClient) -> None:
    with client.stream("GET", "/fhir/metadata", headers=GZIP) as resp:
        raw = b"".join(resp.iter_raw())
    assert orjson.loads(gzip.decompress(raw))["resourceType"] == "CapabilityStatement"
