"""The cloud's store: every line of SQL the cloud runs lives in this package.

    dialect.py     what differs between engines (SQLite today): connect, placeholders,
                   DDL types, schema-version storage, driver errors
    engine.py      ``Store``: one connection + explicit transactions (the unit of work)
    schema.py      the baseline tables (schema version 1)
    migrations.py  numbered migrations keyed on the schema version
    products.py, deployments.py, devices.py, accounts.py, webhooks.py, agent_store.py
                   one repository per aggregate; services call these, never SQL

``open_store(where)`` opens (creating, migrating) the store a ``--db`` value names.
"""

from __future__ import annotations

from pathlib import Path

from impfactory.cloud.errors import StoreError
from impfactory.cloud.store.dialect import Dialect, dialect_for
from impfactory.cloud.store.engine import IntegrityViolation, Store
from impfactory.cloud.store.migrations import LATEST, StoreVersionError, migrate
from impfactory.cloud.store.schema import BASELINE

SCHEMA = BASELINE
"""The baseline tables (SQLite spelling); ``LATEST`` is the version a store reaches."""

__all__ = ["LATEST", "SCHEMA", "Dialect", "IntegrityViolation", "Store", "StoreError",
           "StoreVersionError", "open_store"]


def open_store(where: str | Path) -> Store:
    """Open (and create) the store ``where`` names, migrated to ``LATEST``;
    ``":memory:"`` for a throwaway one. Refuses a store made by a newer version."""
    dialect, target = dialect_for(str(where))
    conn = dialect.connect(target)
    store = Store(conn, dialect, str(where))
    try:
        migrate(store)
    except StoreError:
        store.close()
        raise
    except dialect.errors as err:
        store.close()
        raise StoreError(f"{where} is not a usable cloud database: {err}") from err
    return store
