"""Alembic environment: one MetaData for every package, advisory lock on PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from renkei.store.schema import load_all_models, metadata

load_all_models()
config = context.config

#: Any constant works; two processes migrating at once queue on it instead of racing.
_PG_MIGRATION_LOCK = 724_001


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        url = str(config.attributes.get("url") or config.get_main_option("sqlalchemy.url"))
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as connection:
            _run(connection)
        engine.dispose()
    else:
        _run(connectable)


def _run(connection: sa.Connection) -> None:
    is_pg = connection.dialect.name == "postgresql"
    if is_pg:
        connection.exec_driver_sql(f"SELECT pg_advisory_lock({_PG_MIGRATION_LOCK})")
        connection.commit()
    try:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if is_pg:
            connection.exec_driver_sql(f"SELECT pg_advisory_unlock({_PG_MIGRATION_LOCK})")
            connection.commit()


run_migrations_online()
