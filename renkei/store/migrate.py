"""Run Alembic migrations from code (``renkei migrate``, ``renkei serve``, tests).

Every package may keep an Alembic branch in ``renkei/<package>/migrations/``; the store's
own history lives in ``renkei/store/migrations/versions``. ``upgrade heads`` applies all.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def version_locations() -> list[str]:
    locations = [str(_PACKAGE_ROOT / "store" / "migrations" / "versions")]
    for folder in sorted(_PACKAGE_ROOT.glob("*/migrations")):
        if folder.parent.name != "store" and folder.is_dir():
            locations.append(str(folder))
    return locations


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_PACKAGE_ROOT / "store" / "migrations"))
    cfg.set_main_option("version_locations", " ".join(version_locations()))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at ``url`` to the newest schema; safe to run concurrently on PG."""
    if url.startswith("sqlite") and ":///" in url:
        path = url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


def current_heads(url: str) -> set[str]:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()
