"""``renkei org|user|client|token|keys`` through ``renkei.cli.main`` with --json."""

from __future__ import annotations

import io
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc.jwk import RSAKey

from renkei.app import create_app
from renkei.cli import main
from renkei.config import Settings

Run = Callable[..., tuple[int, dict[str, Any]]]


@pytest.fixture
def run(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> Run:
    monkeypatch.setenv("RENKEI_DATABASE_URL", database_url)
    monkeypatch.setenv("RENKEI_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("RENKEI_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("RENKEI_ARGON2_MEMORY_KIB", "64")
    monkeypatch.delenv("RENKEI_BASE_URL", raising=False)

    def invoke(*argv: str, stdin: str = "") -> tuple[int, dict[str, Any]]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main([*argv, "--json"])
        out = capsys.readouterr().out.strip().splitlines()
        assert len(out) == 1, out  # exactly one JSON object
        return code, json.loads(out[0])

    return invoke


def _org(run: Run) -> str:
    code, body = run("org", "create", "--name", "さくら在宅クリニック", "--kind", "clinic")
    assert code == 0
    return str(body["id"])


def test_org_and_user_create(run: Run) -> None:
    org = _org(run)
    code, user = run(
        "user", "create", "--org", org, "--name", "山田 太郎", "--login", "yamada",
        "--role", "doctor", "--password-stdin", stdin="kanja-2024\n",
    )  # fmt: skip
    assert code == 0
    assert set(user) >= {"id", "practitioner", "practitioner_role", "totp_uri"}
    assert user["practitioner"].startswith("Practitioner/")
    assert user["practitioner_role"].startswith("PractitionerRole/")
    assert user["totp_uri"].startswith("otpauth://totp/renkei:yamada?secret=")


def test_user_create_refuses_weak_password_with_one_json_line(run: Run) -> None:
    org = _org(run)
    code, body = run(
        "user", "create", "--org", org, "--name", "山田 太郎", "--login", "yamada",
        "--role", "nurse", "--password-stdin", stdin="password\n",
    )  # fmt: skip
    assert code == 1
    assert body["ok"] is False
    assert "letters with digits" in body["error"]


def test_client_create_with_secret_or_jwks(run: Run, tmp_path: Path) -> None:
    org = _org(run)
    code, client = run("client", "create", "--org", org, "--name", "EHR", "--scope", "system/*.rs")
    assert code == 0
    assert set(client) == {"client_id", "client_secret"}
    jwks = tmp_path / "ehr.jwks.json"
    jwks.write_text(json.dumps({"keys": [RSAKey.generate_key(2048).as_dict(private=False)]}))
    code, keyed = run(
        "client", "create", "--org", org, "--name", "EHR2", "--scope", "system/Patient.rs",
        "--jwks-file", str(jwks),
    )  # fmt: skip
    assert code == 0
    assert set(keyed) == {"client_id"}


def test_client_create_unknown_org(run: Run) -> None:
    code, body = run("client", "create", "--org", "nope", "--name", "x", "--scope", "system/*.rs")
    assert code == 1
    assert "Organization/nope" in body["error"]


def test_token_issue_gives_a_working_token(run: Run, database_url: str, tmp_path: Path) -> None:
    org = _org(run)
    _, user = run(
        "user", "create", "--org", org, "--name", "佐藤 花子", "--login", "sato",
        "--role", "nurse", "--password-stdin", stdin="kanja-2024\n",
    )  # fmt: skip
    code, token = run(
        "token", "issue", "--user", user["id"], "--scope", "user/*.rs", "--minutes", "30"
    )
    assert code == 0
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 1800
    settings = Settings.from_env()
    http = TestClient(create_app(settings), base_url="http://127.0.0.1:8000")
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert http.get(f"/fhir/Organization/{org}", headers=headers).status_code == 200
    assert (
        http.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=headers).status_code
        == 403
    )


def test_token_issue_refuses_system_scopes_for_a_person(run: Run) -> None:
    org = _org(run)
    _, user = run(
        "user", "create", "--org", org, "--name", "佐藤 花子", "--login", "sato",
        "--role", "nurse", "--password-stdin", stdin="kanja-2024\n",
    )  # fmt: skip
    code, body = run("token", "issue", "--user", user["id"], "--scope", "system/*.cruds")
    assert code == 1
    assert "not available" in body["error"]


def test_keys_rotate_rewraps_and_keeps_files_private(run: Run, tmp_path: Path) -> None:
    org = _org(run)
    run("client", "create", "--org", org, "--name", "EHR", "--scope", "system/*.rs")
    run(
        "user", "create", "--org", org, "--name", "山田 太郎", "--login", "yamada",
        "--role", "doctor", "--password-stdin", stdin="kanja-2024\n",
    )  # fmt: skip
    code, rotation = run("keys", "rotate")
    assert code == 0
    assert rotation["rewrapped"] == 2
    assert rotation["data_kid"] and rotation["signing_kid"]
    files = list((tmp_path / "var" / "keys").rglob("*.json"))
    assert len(files) == 4  # two data keys, two signing keys
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    code, again = run("keys", "rotate", "--signing-only")
    assert again["rewrapped"] == 0 and again["data_kid"] is None


def test_keys_rotate_in_two_phases(run: Run) -> None:
    org = _org(run)
    run("client", "create", "--org", org, "--name", "EHR", "--scope", "system/*.rs")
    code, added = run("keys", "rotate", "--data-only", "--no-rewrap")
    assert code == 0 and added["rewrapped"] == 0 and added["signing_kid"] is None
    code, rewrapped = run("keys", "rewrap")
    assert code == 0
    assert rewrapped == {"ok": True, "data_kid": added["data_kid"], "rewrapped": 1}


def _put_patient(pid: str, org: str) -> None:
    from renkei.app import build_services
    from renkei.auth.principal import OPERATOR
    from renkei.fhir.context import FhirRequest, RequestContext

    services = build_services(Settings.from_env())
    body = {
        "resourceType": "Patient",
        "id": pid,
        "managingOrganization": {"reference": f"Organization/{org}"},
    }
    try:
        with services.db.session(write=True) as session:
            ctx = RequestContext(principal=OPERATOR)
            resp = services.engine.dispatch(
                session, FhirRequest("PUT", f"Patient/{pid}", body=body, context=ctx)
            )
            assert resp.status == 201
    finally:
        services.db.dispose()


def test_token_issue_binds_a_patient(run: Run) -> None:
    org = _org(run)
    _, user = run(
        "user", "create", "--org", org, "--name", "佐藤 花子", "--login", "sato",
        "--role", "nurse", "--password-stdin", stdin="kanja-2024\n",
    )  # fmt: skip
    _put_patient("p-own", org)
    _put_patient("p-other", "another-org")
    code, token = run(
        "token", "issue", "--user", user["id"], "--scope", "patient/*.rs", "--patient", "p-own"
    )
    assert code == 0, token
    assert token["patient"] == "p-own"
    http = TestClient(create_app(Settings.from_env()), base_url="http://127.0.0.1:8000")
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert http.get("/fhir/Patient/p-own", headers=headers).status_code == 200
    assert http.get("/fhir/Patient/p-other", headers=headers).status_code == 404
    # patient/ scopes need --patient; the patient must be one the user may see
    code, body = run("token", "issue", "--user", user["id"], "--scope", "patient/*.rs")
    assert code == 1
    assert "--patient" in body["error"]
    code, body = run(
        "token", "issue", "--user", user["id"], "--scope", "patient/*.rs", "--patient", "p-other"
    )
    assert code == 1
    assert "not known" in body["error"]
