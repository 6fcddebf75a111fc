"""What differs between SQL engines, and nothing else: the one place to add an engine.

Repositories write portable SQL with ``?`` placeholders, standard upserts
(``INSERT ... ON CONFLICT (key) DO UPDATE`` / ``DO NOTHING``, which SQLite and
PostgreSQL both speak) and the schema's SQLite spelling of types. A ``Dialect``
turns that into its engine's SQL and owns everything engine-specific:

    what                      SqliteDialect               a PostgreSQL dialect would
    ------------------------  --------------------------  ---------------------------------
    connect + session setup   sqlite3, WAL, sync=NORMAL   psycopg.connect(url), autocommit
    placeholders              ``?`` (as written)          ``%s`` (``sql()`` rewrites)
    DDL types                 as written                  AUTOINCREMENT key -> BIGSERIAL,
                                                          REAL -> DOUBLE PRECISION,
                                                          BLOB -> BYTEA (``ddl()``)
    begin a write             BEGIN IMMEDIATE             BEGIN
    schema version            PRAGMA user_version         a one-row ``schema_version`` table
    "no limit"                LIMIT -1                    LIMIT NULL (``no_limit``)
    integrity errors          sqlite3.IntegrityError      psycopg.IntegrityError
    legacy-store inspection   PRAGMA table_info,          information_schema (or nothing:
                              sqlite_master               no legacy PostgreSQL stores)
    result rows               sqlite3.Row                 a row factory whose rows index
                                                          by position and by column name

The repositories read rows both ways (``row[0]``, ``row["id"]``), so a dialect's
connection must give rows that do both.

No object of the engine's driver leaves ``cloud/store``: rows are read inside the
repositories, and driver errors become ``StoreError`` / ``IntegrityViolation``.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol

from impfactory.cloud.errors import StoreError


class Connection(Protocol):
    """The DB-API subset the store uses (sqlite3 and psycopg connections both fit)."""

    def execute(self, sql: str, args: Any = ..., /) -> Any: ...

    def close(self) -> None: ...


class Dialect(Protocol):
    """One SQL engine, as the store sees it."""

    name: str
    no_limit: int | None
    errors: tuple[type[BaseException], ...]
    """The driver's base error classes (become ``StoreError``)."""
    integrity_errors: tuple[type[BaseException], ...]
    """Constraint violations (become ``IntegrityViolation``)."""

    def connect(self, where: str) -> Connection:
        """Open a connection in autocommit mode, the session set up (one per store)."""

    def sql(self, text: str) -> str:
        """A statement as written in a repository, in this engine's SQL."""

    def ddl(self, text: str) -> str:
        """Schema text (SQLite types) in this engine's SQL."""

    def script(self, conn: Connection, text: str) -> None:
        """Run several ``;``-separated statements without parameters, inside the
        current transaction (the schema's text holds no ``;`` but between statements)."""

    def begin(self, conn: Connection) -> None:
        """Start a write transaction."""

    def get_version(self, conn: Connection) -> int:
        """The store's schema version (0: a store with no version recorded)."""

    def set_version(self, conn: Connection, version: int) -> None:
        """Record the schema version (inside the migration's transaction)."""

    def columns(self, conn: Connection, table: str) -> set[str]:
        """Column names of ``table`` (empty when it does not exist)."""

    def table_sql(self, conn: Connection, table: str) -> str | None:
        """The ``CREATE TABLE`` text of ``table`` where the engine keeps it, else None."""

    def foreign_keys(self, conn: Connection, on: bool) -> None:
        """Switch foreign-key checks (outside a transaction) around a table rebuild; a
        no-op for an engine that needs no rebuild (no store of its from old releases)."""


class SqliteDialect:
    """SQLite through the standard library.

    WAL with ``synchronous=NORMAL`` keeps a commit cheap (no fsync per transaction)
    and still atomic and durable across a killed process: a SIGKILL loses no
    committed transaction (only a power cut may lose the last few). So every device
    message can be its own transaction.
    """

    name: str = "sqlite"
    no_limit: int | None = -1
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    integrity_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)

    def connect(self, where: str) -> Connection:
        try:
            db = sqlite3.connect(where, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as err:
            raise StoreError(f"cannot open the cloud database {where}: {err}") from err
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as err:
            db.close()
            raise StoreError(f"{where} is not a usable cloud database: {err}") from err
        return db

    def sql(self, text: str) -> str:
        return text

    def ddl(self, text: str) -> str:
        return text

    def script(self, conn: Connection, text: str) -> None:
        # statement by statement: executescript() would commit the caller's transaction
        for statement in text.split(";"):
            if statement.strip():
                conn.execute(statement)

    def begin(self, conn: Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def get_version(self, conn: Connection) -> int:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def set_version(self, conn: Connection, version: int) -> None:
        conn.execute(f"PRAGMA user_version={int(version)}")

    def columns(self, conn: Connection, table: str) -> set[str]:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}

    def table_sql(self, conn: Connection, table: str) -> str | None:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name=?",
                           (table,)).fetchone()
        return str(row[0]) if row is not None else None

    def foreign_keys(self, conn: Connection, on: bool) -> None:
        conn.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


SQLITE = SqliteDialect()


def dialect_for(where: str) -> tuple[Dialect, str]:
    """The dialect a ``--db`` value names, and what to connect to.

    A path (or ``:memory:``, or ``sqlite:///path``) is SQLite. A second engine is one
    more branch here (``postgresql://`` -> its dialect) and one more ``Dialect`` class.
    """
    if where.startswith("sqlite:///"):
        return SQLITE, where[len("sqlite:///"):]
    scheme = where.split("://", 1)[0] if "://" in where else ""
    if scheme:
        raise StoreError(f"unsupported database URL {where!r}: give a file path "
                         "(or sqlite:///path)")
    return SQLITE, where
