"""Auth settings from the environment, checked at start-up."""

from __future__ import annotations

import pytest

from renkei.config import AuthSettings, Settings, SettingsError


def test_from_env_reads_auth_settings() -> None:
    settings = Settings.from_env(
        {"RENKEI_LOCKOUT_THRESHOLD": "3", "RENKEI_LOCKOUT_MINUTES": "30", "RENKEI_DATA_DIR": "x"}
    )
    assert settings.auth.lockout_threshold == 3
    assert settings.auth.lockout_minutes == 30
    assert Settings.from_env({}).auth == AuthSettings()


@pytest.mark.parametrize(
    "env",
    [
        {"RENKEI_LOCKOUT_THRESHOLD": "five"},
        {"RENKEI_LOCKOUT_THRESHOLD": "0"},
        {"RENKEI_ACCESS_TOKEN_MINUTES": "100000"},
        {"RENKEI_ARGON2_MEMORY_KIB": "1"},
    ],
)
def test_from_env_refuses_bad_auth_settings(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_secret_settings_hide_in_repr() -> None:
    settings = Settings.from_env({"RENKEI_DATABASE_URL": "postgresql://u:hunter2@db/renkei"})
    assert "hunter2" not in repr(settings)
