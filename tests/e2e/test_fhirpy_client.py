"""A real FHIR client (fhirpy) against a real uvicorn serving a temp SQLite database."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

from renkei.app import build_services, create_app
from renkei.config import Secret, Settings
from renkei.fhir.policy import AllowAll
from renkei.store.migrate import upgrade
from tests import authkit

SYS = "urn:oid:1.2.392.100495.20.3.51.11312345678"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server(str):
    """The FHIR base URL, carrying the access token the tests send."""

    token: str

    def __new__(cls, base: str, token: str) -> Server:
        obj = super().__new__(cls, base)
        obj.token = token
        return obj

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """uvicorn on a free loopback port, in a thread; yields the FHIR base URL."""
    url = f"sqlite:///{tmp_path / 'renkei.db'}"
    upgrade(url)
    settings = Settings(database_url=Secret(url), data_dir=tmp_path / "data")
    port = _free_port()
    # protocol test: scopes enforced, no sharing layer (tests/integration/auth covers it)
    app = create_app(settings, services=build_services(settings, policy=AllowAll()))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    # An EHR back end: a registered client asks for a token by client credentials.
    client_id, secret = authkit.register_client(app.state.services, "system/*.cruds")
    assert secret is not None
    token = httpx.post(
        f"http://127.0.0.1:{port}/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/*.cruds"},
        auth=(client_id, secret),
    ).json()["access_token"]
    try:
        yield Server(f"http://127.0.0.1:{port}/fhir", token)
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def test_fhirpy_create_read_update_search_delete(server: Server) -> None:
    client = SyncFHIRClient(
        server,
        authorization=f"Bearer {server.token}",
        extra_headers={"Accept": "application/fhir+json"},
    )
    patient = client.resource(
        "Patient",
        identifier=[{"system": SYS, "value": "00001"}],
        name=[{"family": "山田", "given": ["花子"]}],
        gender="female",
        birthDate="1938-05-01",
    )
    patient.save()  # POST
    assert patient.id
    assert patient["meta"]["versionId"] == "1"

    fetched = client.reference("Patient", patient.id).to_resource()  # GET
    assert fetched["name"][0]["family"] == "山田"

    fetched["gender"] = "other"
    fetched.save()  # PUT
    assert fetched["meta"]["versionId"] == "2"
    assert client.reference("Patient", patient.id).to_resource()["gender"] == "other"

    found = client.resources("Patient").search(identifier=f"{SYS}|00001").fetch_all()
    assert [p.id for p in found] == [patient.id]
    assert client.resources("Patient").search(identifier=f"{SYS}|99999").fetch_all() == []
    assert client.resources("Patient").search(_id=patient.id).first().id == patient.id

    fetched.delete()
    with pytest.raises(ResourceNotFound):
        client.reference("Patient", patient.id).to_resource()


def test_fhirpy_sees_operation_outcome_on_invalid_resource(server: Server) -> None:
    client = SyncFHIRClient(server, authorization=f"Bearer {server.token}")
    bad = client.resource("Patient", birthDate="1938-13-45")
    with pytest.raises(OperationOutcome) as info:
        bad.save()
    assert "Patient.birthDate" in str(info.value)


def test_server_timing_header_on_every_response(server: Server) -> None:
    resp = httpx.get(f"{server}/metadata")
    assert resp.status_code == 200
    assert resp.headers["server-timing"].startswith("app;dur=")
    missing = httpx.get(f"{server}/Patient/nope", headers=server.auth)
    assert missing.status_code == 404
    assert "server-timing" in missing.headers
