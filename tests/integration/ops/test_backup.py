"""Backup -> wipe -> restore -> verify, on SQLite and PostgreSQL (issue 9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from renkei.cli import main
from renkei.ops.backup import create_backup, prune_generations, restore_backup, verify_backup
from renkei.store.models import resource


def _seed(client: TestClient, n: int) -> None:
    for i in range(n):
        resp = client.post(
            "/fhir/Patient",
            json={"resourceType": "Patient", "name": [{"family": "佐藤", "given": [f"{i}"]}]},
        )
        assert resp.status_code == 201


def _wipe(url: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        from renkei.store.schema import metadata

        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()


def _count(url: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(resource)).scalar_one()
    engine.dispose()
    return int(n)


def test_backup_wipe_restore_verify(client: TestClient, database_url: str, tmp_path: Path) -> None:
    _seed(client, 5)
    client.app.state.services.db.dispose()  # type: ignore[attr-defined]
    result = create_backup(database_url, tmp_path / "backups")
    assert result.manifest["counts"] == {"Patient": 5}
    _wipe(database_url)
    assert _count(database_url) == 0
    restore_backup(result.path, database_url)
    assert _count(database_url) == 5
    assert client.get("/fhir/Patient/_history").json()["entry"][0]["resource"]["name"]
    check = verify_backup(result.path, database_url)
    assert check == {"ok": True, "problems": [], "counts": {"Patient": 5}}


def test_verify_detects_a_damaged_backup(
    client: TestClient, database_url: str, tmp_path: Path
) -> None:
    _seed(client, 2)
    result = create_backup(database_url, tmp_path)
    data = bytearray(result.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    result.path.write_bytes(bytes(data))
    check = verify_backup(result.path, database_url)
    assert check["ok"] is False
    assert "checksum" in check["problems"][0]


def test_prune_keeps_newest_generations(tmp_path: Path) -> None:
    for stamp in ("20260101", "20260102", "20260103"):
        (tmp_path / f"renkei-{stamp}T000000Z.sqlite3").write_bytes(b"x")
        (tmp_path / f"renkei-{stamp}T000000Z.sqlite3.json").write_text("{}")
    removed = prune_generations(tmp_path, keep=2)
    assert [p.name for p in removed] == ["renkei-20260101T000000Z.sqlite3"]
    assert len(list(tmp_path.glob("*.sqlite3"))) == 2


def test_cli_backup_and_restore_need_confirmation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    monkeypatch.setenv("RENKEI_DATABASE_URL", url)
    monkeypatch.setenv("RENKEI_DATA_DIR", str(tmp_path))
    assert main(["migrate", "--json"]) == 0
    capsys.readouterr()
    assert main(["backup", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True
    assert main(["restore", out["file"], "--json"]) == 2
    refused = json.loads(capsys.readouterr().out)
    assert refused["ok"] is False and "--yes" in refused["error"]
    assert main(["restore", out["file"], "--yes", "--json"]) == 0
    assert main(["backup-verify", out["file"], "--json"]) == 0
