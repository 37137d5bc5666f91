"""Request ids, Server-Timing, metrics, and logs that never carry patient data (issue 9)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from renkei.logs import JsonFormatter


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-Id": "abc123"})
    assert given.headers["X-Request-Id"] == "abc123"
    made = client.get("/healthz")
    assert len(made.headers["X-Request-Id"]) == 32


def test_server_timing_and_metrics(client: TestClient) -> None:
    resp = client.get("/fhir/metadata")
    assert resp.headers["Server-Timing"].startswith("app;dur=")
    metrics = client.get("/metrics").text
    assert 'renkei_http_request_seconds_count{method="GET",route="/fhir/metadata"' in metrics


def test_logs_carry_no_patient_data(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    secret_name, secret_id = "秘密山田", "PHI-0099887766"
    caplog.set_level(logging.DEBUG)
    body = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:oid:1.2.392.100495.20.3.51.11312345678", "value": secret_id}
        ],
        "name": [{"family": secret_name}],
    }
    created = client.post("/fhir/Patient", json=body).json()
    client.get(f"/fhir/Patient?identifier={secret_id}")
    client.get(f"/fhir/Patient/{created['id']}")
    client.post("/fhir/Patient", json={**body, "birthDate": "bad"})  # an error path too
    formatter = JsonFormatter()
    # httpx is the test's own client logging its URLs; everything else is the server's.
    server_records = [r for r in caplog.records if not r.name.startswith("httpx")]
    text = "\n".join(formatter.format(r) for r in server_records)
    assert caplog.records, "expected access log lines"
    assert secret_name not in text
    assert secret_id not in text
    assert created["id"] not in text  # ids in URLs are not logged either
    line = json.loads(
        formatter.format(next(r for r in caplog.records if r.name == "renkei.access"))
    )
    assert {"request_id", "method", "route", "status", "duration_ms"} <= line.keys()


def test_client_hanging_up_mid_body_is_not_a_server_error(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that disconnects before its body arrives (a keep-alive race, a killed app)
    is logged as such, not as an unhandled error with a traceback, and nothing is written."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/fhir/metadata",
        "raw_path": b"/fhir/metadata",
        "query_string": b"",
        "headers": [(b"content-type", b"application/fhir+json"), (b"content-length", b"99")],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        "scheme": "http",
    }
    with caplog.at_level(logging.INFO):
        asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 400
    assert "client disconnected during POST /fhir/metadata" in caplog.text
    assert "unhandled error" not in caplog.text
