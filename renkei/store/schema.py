"""Every package's tables on one MetaData, for Alembic and for tests.

Domain packages own their tables (``renkei/<domain>/models.py``); importing them here is
what makes Alembic's autogenerate see them.
"""

from __future__ import annotations

import importlib

from renkei.store.models import metadata

#: Domain packages whose ``models`` module defines tables. Add a package here when it
#: gains tables, and give it a ``migrations/`` folder of its own (an Alembic branch).
DOMAIN_MODEL_MODULES: tuple[str, ...] = (
    "renkei.access.models",
    "renkei.audit.models",
    "renkei.auth.models",
    "renkei.collab.models",
    "renkei.criteria.models",
    "renkei.roster.models",
    "renkei.notify.models",
    "renkei.calls.models",
)


def load_all_models() -> None:
    for name in DOMAIN_MODEL_MODULES:
        importlib.import_module(name)


__all__ = ["DOMAIN_MODEL_MODULES", "load_all_models", "metadata"]
