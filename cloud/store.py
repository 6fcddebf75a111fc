"""The cloud's SQLite database: one connection, WAL, short transactions.

WAL with ``synchronous=NORMAL`` keeps a commit cheap (no fsync per transaction,
still crash-safe at the cost of the last few commits on power loss), so every
device message can be its own transaction. The REST API's tables (``api_*``) live
in the same file; ``open_db`` is the one way this package opens it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from impfactory.cloud.errors import StoreError

SCHEMA_VERSION = 3
"""1: the first release; 2: device group names unique per product (were per account);
3: ``agent_store`` (what agents keep with ``server.save``)."""

DEVICEGROUPS = """
CREATE TABLE IF NOT EXISTS devicegroups (
    id TEXT PRIMARY KEY, product_id TEXT NOT NULL REFERENCES products(id),
    owner_id TEXT NOT NULL, type TEXT NOT NULL, name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', region TEXT, env_vars TEXT,
    production_target TEXT REFERENCES devicegroups(id),
    dut_target TEXT REFERENCES devicegroups(id),
    load_code_after_blessing INTEGER NOT NULL DEFAULT 1,
    current_deployment TEXT, min_supported_deployment TEXT, min_impos_version TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    UNIQUE (product_id, name));
"""
"""Device group names are unique within their product, as in impCentral."""

SCHEMA = DEVICEGROUPS + """
CREATE TABLE IF NOT EXISTS cloud_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS owners (
    id TEXT PRIMARY KEY, plan_id TEXT NOT NULL UNIQUE, unbond_key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', min_impos_version TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    UNIQUE (owner_id, name));
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE,
    group_id TEXT NOT NULL REFERENCES devicegroups(id), product_id TEXT NOT NULL,
    owner_id TEXT NOT NULL, sha TEXT NOT NULL, device_code TEXT NOT NULL,
    agent_code TEXT NOT NULL, device_sha TEXT NOT NULL, agent_sha TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', origin TEXT, tags TEXT NOT NULL DEFAULT '[]',
    flagged INTEGER NOT NULL DEFAULT 0, promoted INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, updated_at REAL);
CREATE INDEX IF NOT EXISTS deployments_group ON deployments(group_id, seq);
CREATE INDEX IF NOT EXISTS deployments_device_sha ON deployments(device_sha);
CREATE INDEX IF NOT EXISTS deployments_agent_sha ON deployments(agent_sha);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, mac TEXT NOT NULL, name TEXT NOT NULL DEFAULT '',
    owner_id TEXT, group_id TEXT REFERENCES devicegroups(id), product_id TEXT,
    imp_type TEXT NOT NULL DEFAULT '', blessed INTEGER NOT NULL DEFAULT 0,
    activated INTEGER NOT NULL DEFAULT 0, online INTEGER NOT NULL DEFAULT 0,
    impos_version TEXT NOT NULL DEFAULT '', deployment_id TEXT, plan_id TEXT,
    agent_id TEXT, fixture_id TEXT, factory_group_id TEXT,
    led TEXT NOT NULL DEFAULT '', connection TEXT NOT NULL DEFAULT '',
    bless_failures INTEGER NOT NULL DEFAULT 0, last_enrolled_at REAL, blessed_at REAL,
    last_seen REAL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS devices_group ON devices(group_id);
CREATE INDEX IF NOT EXISTS devices_owner ON devices(owner_id, created_at, id);
CREATE INDEX IF NOT EXISTS devices_mac ON devices(mac);
CREATE INDEX IF NOT EXISTS devices_agent ON devices(agent_id);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY, kind TEXT NOT NULL, plan_id TEXT NOT NULL,
    owner_id TEXT NOT NULL, fixture_id TEXT, expires_at REAL, used_at REAL,
    used_by TEXT, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, ts REAL NOT NULL,
    type TEXT NOT NULL, msg TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_device ON logs(device_id, id);
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY, group_id TEXT NOT NULL REFERENCES devicegroups(id),
    event TEXT NOT NULL, url TEXT NOT NULL, content_type TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, webhook_id TEXT NOT NULL, event TEXT NOT NULL,
    payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, delivered_at REAL,
    last_error TEXT, created_at REAL NOT NULL, abandoned_at REAL);
CREATE INDEX IF NOT EXISTS webhook_outbox_pending ON webhook_outbox(delivered_at, id);
CREATE TABLE IF NOT EXISTS agent_store (
    agent_id TEXT PRIMARY KEY, data TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS device_links (
    device_id TEXT PRIMARY KEY, link_key TEXT NOT NULL, session TEXT,
    registered_at REAL NOT NULL, registrations INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS impos_releases (
    version TEXT PRIMARY KEY, sha TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,
    data BLOB NOT NULL, created_at REAL NOT NULL);
"""


def open_db(path: str | Path) -> sqlite3.Connection:
    """Open (and create) the cloud database; ``":memory:"`` for a throwaway one.

    Autocommit mode: each ``with tx(db):`` block is one explicit transaction.
    """
    try:
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    except sqlite3.Error as err:
        raise StoreError(f"cannot open the cloud database {path}: {err}") from err
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=5000")
        ensure_schema(db)
    except sqlite3.Error as err:
        db.close()
        raise StoreError(f"{path} is not a usable cloud database: {err}") from err
    return db


def ensure_schema(db: sqlite3.Connection) -> None:
    """Create the cloud's tables when missing (idempotent); bring older ones up to date."""
    db.executescript(SCHEMA)
    _add_missing_columns(db)
    _group_names_per_product(db)
    db.execute(
        "INSERT OR REPLACE INTO cloud_meta (key, value) VALUES ('schema_version', ?)",
        (str(SCHEMA_VERSION),),
    )


def _group_names_per_product(db: sqlite3.Connection) -> None:
    """A release-1 database made group names unique per account: rebuild the table with
    its rows (SQLite cannot drop a constraint in place; foreign keys are off meanwhile)."""
    row = db.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='devicegroups'"
                     ).fetchone()
    if row is None or "UNIQUE (owner_id, name)" not in row[0]:
        return
    db.execute("PRAGMA foreign_keys=OFF")
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(DEVICEGROUPS.replace("IF NOT EXISTS devicegroups", "devicegroups_new"))
            db.execute("INSERT INTO devicegroups_new SELECT * FROM devicegroups")
            db.execute("DROP TABLE devicegroups")
            db.execute("ALTER TABLE devicegroups_new RENAME TO devicegroups")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.execute("PRAGMA foreign_keys=ON")


# columns added after a table's first release: (table, column, declaration)
LATER_COLUMNS = (
    ("webhook_outbox", "abandoned_at", "REAL"),
    ("deployments", "updated_at", "REAL"),
    ("devices", "bless_attempt", "TEXT"),  # the device's name for the call that blessed it
)


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a database made by an earlier release up to date, keeping its rows."""
    for table, column, decl in LATER_COLUMNS:
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
