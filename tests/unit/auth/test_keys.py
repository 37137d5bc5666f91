"""Keyring and signing keys on disk: 0600 files, kid prefixes, rotation, tamper refusal."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from renkei.auth.errors import KeyringError
from renkei.auth.keys import Keyring, SigningKeys, key_folders
from renkei.clock import ManualClock


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_folders_are_created_private_on_first_start(tmp_path: Path, clock: ManualClock) -> None:
    data, signing = key_folders(tmp_path / "var")
    Keyring(data, clock)
    SigningKeys(signing, clock)
    assert _mode(tmp_path / "var" / "keys") == 0o700
    files = list(data.glob("*.json")) + list(signing.glob("*.json"))
    assert len(files) == 2
    assert all(_mode(f) == 0o600 for f in files)
    # the key material is in the file, so nothing key-like needs the database
    assert "material" in json.loads(files[0].read_text())


def test_seal_open_round_trip_with_kid_and_context(tmp_path: Path, clock: ManualClock) -> None:
    ring = Keyring(tmp_path / "data", clock)
    sealed = ring.seal("秘密のシード", "auth_user.totp_secret:u1")
    assert sealed.split(".")[1] == ring.active_kid
    assert "秘密" not in sealed
    assert str(ring.open(sealed, "auth_user.totp_secret:u1")) == "秘密のシード"
    assert "秘密" not in repr(ring.open(sealed, "auth_user.totp_secret:u1"))


def test_open_refuses_other_row_and_tampering(tmp_path: Path, clock: ManualClock) -> None:
    ring = Keyring(tmp_path / "data", clock)
    sealed = ring.seal("seed", "auth_user.totp_secret:u1")
    with pytest.raises(KeyringError):
        ring.open(sealed, "auth_user.totp_secret:u2")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(KeyringError):
        ring.open(flipped, "auth_user.totp_secret:u1")


def test_rotation_keeps_old_values_readable_and_rewrap_moves_them(
    tmp_path: Path, clock: ManualClock
) -> None:
    ring = Keyring(tmp_path / "data", clock)
    old_kid = ring.active_kid
    sealed = ring.seal("seed", "ctx")
    clock.advance(seconds=1)
    new_kid = ring.add_key()
    assert ring.active_kid == new_kid != old_kid
    assert str(ring.open(sealed, "ctx")) == "seed"
    rewrapped = ring.rewrap(sealed, "ctx")
    assert ring.kid_of(rewrapped) == new_kid
    assert str(ring.open(rewrapped, "ctx")) == "seed"


def test_a_second_process_sees_keys_added_by_another(tmp_path: Path, clock: ManualClock) -> None:
    server = Keyring(tmp_path / "data", clock)
    operator = Keyring(tmp_path / "data", clock)
    clock.advance(seconds=1)
    kid = operator.add_key()
    sealed = operator.seal("seed", "ctx")
    assert str(server.open(sealed, "ctx")) == "seed"
    assert server.active_kid == kid


def test_world_readable_key_file_is_refused(tmp_path: Path, clock: ManualClock) -> None:
    ring = Keyring(tmp_path / "data", clock)
    path = next((tmp_path / "data").glob("*.json"))
    path.chmod(0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        Keyring(tmp_path / "data", clock).seal("x", "ctx")
    assert ring is not None


def test_signing_keys_rotate_and_publish_all(tmp_path: Path, clock: ManualClock) -> None:
    keys = SigningKeys(tmp_path / "signing", clock)
    first = keys.active().kid
    clock.advance(seconds=1)
    second = keys.add_key()
    assert keys.active().kid == second
    published = {k["kid"] for k in keys.jwks()["keys"]}
    assert published == {first, second}
    assert all("d" not in k for k in keys.jwks()["keys"])
