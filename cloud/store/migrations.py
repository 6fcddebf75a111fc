"""Numbered schema migrations, keyed on the store's schema version.

``migrate(store)`` reads the version (SQLite: ``PRAGMA user_version``) and applies
every later migration in order, each in one transaction together with the new
version number, so a store stopped mid-migration is either before or after a
step, never half-way. A store whose version is newer than ``LATEST`` was made by a
newer impfactory: it is refused (``StoreVersionError``), never touched.

    version  what
    -------  --------------------------------------------------------------------
    0        nothing recorded: an empty store, or one made before versions were
    1        the baseline (``schema.BASELINE``): creates what is missing; brings
             stores of earlier releases up to date (group names unique per
             product, columns added later)
    2        indexes the repositories' lookups need; ``cloud_meta.schema_version``
             retired (the store's version is the one version)
    3        ``devices.bless_attempt``: a retried blessing is answered, never doubled
    4        ``api_webhook_lease``: which dispatcher holds a delivery (clouds
             sharing one store never post an event twice at once)
    5        ``api_webhook_lease.holder``: whose lease it is, so a cloud restarted
             after a crash takes back its own at once instead of waiting them out

A new migration is one more ``Migration`` at the end of ``MIGRATIONS``, written
with ``store.execute``/``store.script`` so each engine's dialect translates it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from impfactory.cloud.errors import StoreError
from impfactory.cloud.store.engine import Store
from impfactory.cloud.store.schema import BASELINE, DEVICEGROUPS


class StoreVersionError(StoreError):
    """The store was made by a newer impfactory (a schema version this one does not
    know): refused rather than half-understood."""


@dataclass(frozen=True)
class Migration:
    version: int
    what: str
    apply: Callable[[Store], None]
    before: Callable[[Store], None] | None = None
    """A step that cannot run inside a transaction (SQLite's foreign-key switch); it must
    be idempotent, as a stop between it and the migration's transaction repeats it."""


# columns added after a table's first release: (table, column, declaration)
LATER_COLUMNS = (
    ("webhook_outbox", "abandoned_at", "REAL"),
    ("deployments", "updated_at", "REAL"),
)


def _group_names_per_product(store: Store) -> None:
    """A release-1 store made group names unique per account: rebuild the table with
    its rows (SQLite cannot drop a constraint in place; foreign keys off meanwhile)."""
    sql = store.dialect.table_sql(store.conn, "devicegroups")
    if sql is None or "UNIQUE (owner_id, name)" not in sql:
        return
    store.dialect.foreign_keys(store.conn, False)
    try:
        with store.transaction():
            store.script(DEVICEGROUPS.replace("IF NOT EXISTS devicegroups", "devicegroups_new"))
            store.execute("INSERT INTO devicegroups_new SELECT * FROM devicegroups")
            store.execute("DROP TABLE devicegroups")
            store.execute("ALTER TABLE devicegroups_new RENAME TO devicegroups")
    finally:
        store.dialect.foreign_keys(store.conn, True)


def _baseline(store: Store) -> None:
    store.script(BASELINE)
    for table, column, decl in LATER_COLUMNS:
        if column not in store.dialect.columns(store.conn, table):
            store.execute(f"ALTER TABLE {table} ADD COLUMN {column} {store.dialect.ddl(decl)}")


def _lookup_indexes(store: Store) -> None:
    store.script("""
CREATE INDEX IF NOT EXISTS webhook_outbox_hook ON webhook_outbox(webhook_id, delivered_at);
CREATE INDEX IF NOT EXISTS webhooks_group ON webhooks(group_id, event);
CREATE INDEX IF NOT EXISTS devicegroups_targets ON devicegroups(production_target, dut_target);
CREATE INDEX IF NOT EXISTS api_tokens_account ON api_tokens(account_id, kind);
CREATE INDEX IF NOT EXISTS api_login_keys_account ON api_login_keys(account_id);
""")
    store.execute("DELETE FROM cloud_meta WHERE key='schema_version'")


def _bless_attempt(store: Store) -> None:
    if "bless_attempt" not in store.dialect.columns(store.conn, "devices"):
        store.execute(f"ALTER TABLE devices ADD COLUMN bless_attempt {store.dialect.ddl('TEXT')}")


def _webhook_leases(store: Store) -> None:
    store.script("""
CREATE TABLE IF NOT EXISTS api_webhook_lease (
    delivery_id INTEGER PRIMARY KEY, until REAL NOT NULL)
""")


def _lease_holder(store: Store) -> None:
    if "holder" not in store.dialect.columns(store.conn, "api_webhook_lease"):
        store.execute("ALTER TABLE api_webhook_lease ADD COLUMN holder TEXT")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "baseline tables; earlier releases brought up to date", _baseline,
              before=_group_names_per_product),
    Migration(2, "lookup indexes; cloud_meta.schema_version retired", _lookup_indexes),
    Migration(3, "devices.bless_attempt: the device's name for the call that blessed it",
              _bless_attempt),
    Migration(4, "webhook delivery leases (clouds sharing a store)", _webhook_leases),
    Migration(5, "webhook lease holders (a restarted cloud takes back its own)",
              _lease_holder),
)
LATEST = MIGRATIONS[-1].version


def migrate(store: Store) -> int:
    """Bring ``store`` to ``LATEST``; returns the version it had. Refuses a newer one."""
    found = store.dialect.get_version(store.conn)
    if found > LATEST:
        raise StoreVersionError(
            f"{store.where} has schema version {found}, made by a newer impfactory; this one "
            f"knows versions up to {LATEST}: upgrade impfactory, or give another --db")
    for step in MIGRATIONS[found:]:
        if step.before is not None:
            step.before(store)
        with store.transaction():
            step.apply(store)
            store.dialect.set_version(store.conn, step.version)
    return found
