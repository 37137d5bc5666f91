"""Request ids, Server-Timing, metrics, and logs that never carry patient data (issue 9)."""

from __future__ import annotations

import json
import logging

import pytest
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
