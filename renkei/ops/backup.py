"""Backup, restore and verify, with generations (MHLW guideline 第6.0版 システム運用編 backup).

SQLite uses the online backup API (consistent while the server runs); PostgreSQL uses
``pg_dump --format=custom`` and ``pg_restore``. Each backup gets a manifest (JSON beside it)
with a SHA-256 of the file and row counts per resource type, so :func:`verify_backup` can
restore it into a scratch database and prove it is whole. Keep copies on other media and
one offline: a ransomware attack that reaches this machine reaches this folder too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from renkei.store.models import resource

#: Extra checks run on a restored scratch database (the audit chain adds itself here).
Verifier = Callable[[str], dict[str, Any]]
VERIFIERS: list[Verifier] = []


class BackupError(Exception):
    """A backup, restore or verification could not be done; the message says why."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: dict[str, Any]


def _sqlite_path(url: str) -> Path:
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(path)


def _pg_url(url: str) -> str:
    """A libpq URL (pg_dump does not know the +psycopg driver suffix)."""
    return "postgresql://" + url.split("://", 1)[1]


def resource_counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(resource.c.res_type, sa.func.count())
                .where(resource.c.deleted.is_(False))
                .group_by(resource.c.res_type)
            )
            return {str(t): int(n) for t, n in rows}
    except sa.exc.SQLAlchemyError as exc:
        raise BackupError(f"cannot read resource counts: {exc.__class__.__name__}") from exc
    finally:
        engine.dispose()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _run(cmd: list[str]) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    except FileNotFoundError as exc:
        raise BackupError(f"{cmd[0]} is not installed (apt-get install postgresql-client)") from exc
    if done.returncode != 0:
        raise BackupError(f"{cmd[0]} failed: {done.stderr.strip()[:500]}")


def create_backup(url: str, directory: Path, *, now: datetime | None = None) -> BackupResult:
    """Write one consistent backup and its manifest into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    if url.startswith("sqlite"):
        target = directory / f"renkei-{stamp}.sqlite3"
        source = sqlite3.connect(_sqlite_path(url))
        dest = sqlite3.connect(target)
        try:
            source.backup(dest)
        finally:
            dest.close()
            source.close()
        kind = "sqlite"
    else:
        target = directory / f"renkei-{stamp}.pgdump"
        _run(["pg_dump", "--format=custom", "--no-owner", f"--file={target}", _pg_url(url)])
        kind = "postgresql"
    target.chmod(0o600)
    manifest = {
        "kind": kind,
        "file": target.name,
        "sha256": _sha256(target),
        "created": stamp,
        "counts": resource_counts(url),
    }
    manifest_path = target.with_suffix(target.suffix + ".json")
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    manifest_path.chmod(0o600)
    return BackupResult(target, manifest)


def prune_generations(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups (and their manifests); returns what went."""
    if keep < 1:
        raise BackupError("keep at least one generation")
    backups = sorted(
        [p for p in directory.glob("renkei-*") if p.suffix in (".sqlite3", ".pgdump")],
        key=lambda p: p.name,
        reverse=True,
    )
    removed = []
    for old in backups[keep:]:
        old.unlink()
        old.with_suffix(old.suffix + ".json").unlink(missing_ok=True)
        removed.append(old)
    return removed


def _manifest(path: Path) -> dict[str, Any]:
    manifest_path = path.with_suffix(path.suffix + ".json")
    if not manifest_path.exists():
        raise BackupError(f"no manifest beside {path.name}; was it made by renkei backup?")
    data: dict[str, Any] = json.loads(manifest_path.read_text())
    return data


def restore_backup(path: Path, url: str) -> dict[str, Any]:
    """Replace the database at ``url`` with the backup's content (checksum checked first)."""
    manifest = _manifest(path)
    if _sha256(path) != manifest["sha256"]:
        raise BackupError(f"{path.name} does not match its manifest checksum; refusing to restore")
    if manifest["kind"] == "sqlite":
        if not url.startswith("sqlite"):
            raise BackupError("a SQLite backup restores into a SQLite database")
        target = _sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = sqlite3.connect(path)
        dest = sqlite3.connect(target)
        try:
            source.backup(dest)
        finally:
            dest.close()
            source.close()
    else:
        if not url.startswith("postgresql"):
            raise BackupError("a PostgreSQL backup restores into a PostgreSQL database")
        _run(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                f"--dbname={_pg_url(url)}",
                str(path),
            ]
        )
    return manifest


def verify_backup(path: Path, url: str) -> dict[str, Any]:
    """Restore into a scratch database beside ``url``'s server and compare with the manifest.

    Returns ``{"ok": bool, "problems": [...], "counts": {...}}``; the scratch database is
    removed afterwards.
    """
    manifest = _manifest(path)
    problems: list[str] = []
    if _sha256(path) != manifest["sha256"]:
        return {"ok": False, "problems": ["checksum does not match the manifest"], "counts": {}}
    with _scratch_database(manifest["kind"], url) as scratch:
        restore_backup(path, scratch)
        counts = resource_counts(scratch)
        if counts != manifest["counts"]:
            problems.append(
                f"resource counts differ: backup {manifest['counts']}, restored {counts}"
            )
        for verifier in VERIFIERS:
            result = verifier(scratch)
            if not result.get("ok", False):
                problems.append(f"{verifier.__name__}: {result}")
    return {"ok": not problems, "problems": problems, "counts": counts}


class _scratch_database:
    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._name = f"renkei_verify_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> str:
        if self.kind == "sqlite":
            self._tmp = tempfile.TemporaryDirectory(prefix="renkei-verify-")
            return f"sqlite:///{self._tmp.name}/scratch.db"
        if not self.url.startswith("postgresql"):
            raise BackupError("verifying a PostgreSQL backup needs a PostgreSQL server URL")
        self._admin(f'CREATE DATABASE "{self._name}"')
        base = self.url.rsplit("/", 1)[0]
        return f"{base}/{self._name}"

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp.name, ignore_errors=True)
            self._tmp.cleanup()
        else:
            self._admin(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        engine = sa.create_engine(
            self.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
        )
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(sql)
        finally:
            engine.dispose()
