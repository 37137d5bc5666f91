"""Photos and documents from the field: Binary bytes kept out of the row, limits enforced."""

from __future__ import annotations

import base64

import sqlalchemy as sa
from fastapi.testclient import TestClient

from renkei.store.models import resource

JPEG = b"\xff\xd8\xff\xe0" + b"photo-bytes" * 100


def test_binary_json_roundtrip_keeps_bytes_out_of_the_row(
    client: TestClient, database_url: str
) -> None:
    body = {
        "resourceType": "Binary",
        "contentType": "image/jpeg",
        "data": base64.b64encode(JPEG).decode(),
    }
    created = client.post("/fhir/Binary", json=body)
    assert created.status_code == 201, created.text
    assert base64.b64decode(created.json()["data"]) == JPEG
    bid = created.json()["id"]
    read = client.get(f"/fhir/Binary/{bid}").json()
    assert base64.b64decode(read["data"]) == JPEG
    assert "extension" not in read
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(resource.c.content).where(resource.c.res_id == bid)
        ).scalar_one()
    engine.dispose()
    assert "data" not in stored  # the row holds a pointer, not the photo


def test_binary_native_upload_and_download(client: TestClient) -> None:
    created = client.post("/fhir/Binary", content=JPEG, headers={"Content-Type": "image/jpeg"})
    assert created.status_code == 201
    bid = created.json()["id"]
    raw = client.get(f"/fhir/Binary/{bid}", headers={"Accept": "image/jpeg"})
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "image/jpeg"
    assert raw.content == JPEG
    as_json = client.get(f"/fhir/Binary/{bid}", headers={"Accept": "application/fhir+json"})
    assert as_json.json()["contentType"] == "image/jpeg"


def test_binary_refuses_bad_type_and_size(client: TestClient) -> None:
    exe = client.post(
        "/fhir/Binary", content=b"MZ...", headers={"Content-Type": "application/x-msdownload"}
    )
    assert exe.status_code == 415
    assert "allowed" in exe.json()["issue"][0]["diagnostics"]
    services = client.app.state.services  # type: ignore[attr-defined]
    services.engine.binaries.max_bytes = 1000
    big = client.post(
        "/fhir/Binary", content=b"\xff" * 1001, headers={"Content-Type": "image/jpeg"}
    )
    assert big.status_code == 413
    bad_b64 = client.post(
        "/fhir/Binary", json={"resourceType": "Binary", "contentType": "image/png", "data": "@@@"}
    )
    assert bad_b64.status_code in (400, 422)


def test_inline_attachment_over_limit_is_refused(client: TestClient) -> None:
    doc = {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [
            {
                "attachment": {
                    "contentType": "image/jpeg",
                    "data": base64.b64encode(b"x" * 70_000).decode(),
                }
            }
        ],
    }
    resp = client.post("/fhir/DocumentReference", json=doc)
    assert resp.status_code == 413
    assert "Binary" in resp.json()["issue"][0]["diagnostics"]
    small = {
        **doc,
        "content": [
            {"attachment": {"contentType": "image/png", "data": base64.b64encode(b"ok").decode()}}
        ],
    }
    assert client.post("/fhir/DocumentReference", json=small).status_code == 201
