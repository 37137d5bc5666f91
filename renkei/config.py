"""Settings from ``RENKEI_*`` environment variables, checked once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Secret(str):
    """A string whose repr hides it, so URLs with passwords stay out of logs and tracebacks."""

    def __repr__(self) -> str:
        return "Secret('**********')"


class SettingsError(ValueError):
    """A setting is missing or malformed; raised at start-up, never on a request."""


@dataclass(frozen=True)
class AuthSettings:
    """Sign-in and token rules (MHLW guideline 6.0, システム運用編 認証・認可).

    The argon2 cost is a setting so that tests can lower it; production keeps the defaults
    (RFC 9106's second recommended option: t=3, 64 MiB).
    """

    #: consecutive failed sign-ins (password or TOTP) that lock an account
    lockout_threshold: int = 5
    lockout_minutes: int = 15
    access_token_minutes: int = 60
    refresh_token_days: int = 14
    authorization_code_seconds: int = 60
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4

    def __post_init__(self) -> None:
        if self.lockout_threshold < 1 or self.lockout_minutes < 1:
            raise SettingsError("RENKEI_LOCKOUT_THRESHOLD and RENKEI_LOCKOUT_MINUTES must be >= 1")
        if not 1 <= self.access_token_minutes <= 24 * 60:
            raise SettingsError("RENKEI_ACCESS_TOKEN_MINUTES must be between 1 and 1440")
        if self.refresh_token_days < 1:
            raise SettingsError("RENKEI_REFRESH_TOKEN_DAYS must be >= 1")
        if self.argon2_time_cost < 1 or self.argon2_memory_kib < 8 or self.argon2_parallelism < 1:
            raise SettingsError("argon2 parameters are too small")


@dataclass(frozen=True)
class Settings:
    database_url: Secret
    data_dir: Path
    redis_url: Secret | None = None
    #: public base URL (behind a proxy); None: taken from each request's Host
    base_url_explicit: str | None = None
    #: A FHIR date or dateTime without an offset is read in this zone (JST by default).
    default_timezone: str = "Asia/Tokyo"
    default_page_size: int = 20
    max_page_size: int = 500
    sql_echo: bool = False
    auth: AuthSettings = field(default_factory=AuthSettings)
    extra: dict[str, str] = field(default_factory=dict)
    #: the audit seal (HMAC) key file; default ``<data_dir>/audit-seal.key``
    audit_key_file: Path | None = None

    def __post_init__(self) -> None:
        url = str(self.database_url)
        if not (url.startswith("sqlite") or url.startswith("postgresql")):
            raise SettingsError(
                "RENKEI_DATABASE_URL must be sqlite:///path or postgresql+psycopg://..., "
                f"got scheme {url.split(':', 1)[0]!r}"
            )
        try:
            ZoneInfo(self.default_timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise SettingsError(f"unknown time zone {self.default_timezone!r}") from exc
        if not 1 <= self.default_page_size <= self.max_page_size:
            raise SettingsError("RENKEI_PAGE_SIZE must be between 1 and RENKEI_MAX_PAGE_SIZE")

    @property
    def is_sqlite(self) -> bool:
        return str(self.database_url).startswith("sqlite")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("RENKEI_DATA_DIR", "./var"))
        default_db = f"sqlite:///{data_dir / 'renkei.db'}"
        url = env.get("RENKEI_DATABASE_URL", default_db)
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        redis = env.get("RENKEI_REDIS_URL")
        try:
            page = int(env.get("RENKEI_PAGE_SIZE", "20"))
            max_page = int(env.get("RENKEI_MAX_PAGE_SIZE", "500"))
        except ValueError as exc:
            raise SettingsError("RENKEI_PAGE_SIZE and RENKEI_MAX_PAGE_SIZE are integers") from exc
        auth = _auth_from_env(env)
        return cls(
            database_url=Secret(url),
            data_dir=data_dir,
            redis_url=Secret(redis) if redis else None,
            base_url_explicit=env.get("RENKEI_BASE_URL") or None,
            default_timezone=env.get("RENKEI_TIMEZONE", "Asia/Tokyo"),
            default_page_size=page,
            max_page_size=max_page,
            sql_echo=env.get("RENKEI_SQL_ECHO", "") == "1",
            auth=auth,
            audit_key_file=Path(env["RENKEI_AUDIT_KEY_FILE"])
            if env.get("RENKEI_AUDIT_KEY_FILE")
            else None,
        )


_AUTH_ENV = {
    "lockout_threshold": "RENKEI_LOCKOUT_THRESHOLD",
    "lockout_minutes": "RENKEI_LOCKOUT_MINUTES",
    "access_token_minutes": "RENKEI_ACCESS_TOKEN_MINUTES",
    "refresh_token_days": "RENKEI_REFRESH_TOKEN_DAYS",
    "argon2_time_cost": "RENKEI_ARGON2_TIME_COST",
    "argon2_memory_kib": "RENKEI_ARGON2_MEMORY_KIB",
}


def _auth_from_env(env: dict[str, str]) -> AuthSettings:
    values: dict[str, int] = {}
    for name, var in _AUTH_ENV.items():
        if env.get(var):
            try:
                values[name] = int(env[var])
            except ValueError as exc:
                raise SettingsError(f"{var} must be an integer, got {env[var]!r}") from exc
    return AuthSettings(**values)
