"""``Store``: one connection to the cloud's database, and its unit of work.

Every write happens inside ``with store.transaction():``; a nested block (a
service calling another service, a rule grouping several calls) joins the
outer transaction, so one change (a blessing: group move + log line + webhook
outbox row) commits as one or not at all. A statement outside any transaction
is a read, or a single autocommitted write.

Repositories are the only callers of ``query``/``one``/``execute``; they hand
out model objects, so no driver row or error leaves ``cloud/store``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from impfactory.cloud.errors import StoreError
from impfactory.cloud.store.dialect import Connection, Dialect


class IntegrityViolation(StoreError, ValueError):
    """A write broke a constraint (a unique name, a foreign key): the repository turns
    it into the domain's error (``DuplicateNameError``...) where one is expected."""

    http_status = 409
    code = "Conflict"


Row = Any
"""A result row: indexable by position and by column name (inside ``cloud/store`` only)."""


class Store:
    """A connection, its dialect, and explicit transactions."""

    def __init__(self, conn: Connection, dialect: Dialect, where: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self.where = where
        self._depth = 0
        self._lock = threading.RLock()
        self._sql = dialect.sql
        self._integrity = dialect.integrity_errors
        self._errors = dialect.errors

    # ------------------------------------------------------------ unit of work

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Store]:
        """One transaction; a nested block joins the outer one (all or nothing)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            try:
                self.dialect.begin(self.conn)
            except self._errors as err:
                raise self._error(err) from err
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._depth = 0
                self.conn.execute("ROLLBACK")
                raise
            self._depth = 0
            try:
                self.conn.execute("COMMIT")
            except self._errors as err:
                self.conn.execute("ROLLBACK")
                raise self._error(err) from err

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    # ------------------------------------------------------------ statements

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; returns the rows it changed."""
        try:
            return int(self.conn.execute(self._sql(sql), args).rowcount)
        except self._errors as err:
            raise self._error(err) from err

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.transaction():
            for args in rows:
                self.execute(sql, args)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        try:
            return list(self.conn.execute(self._sql(sql), args).fetchall())
        except self._errors as err:
            raise self._error(err) from err

    def one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        try:
            return self.conn.execute(self._sql(sql), args).fetchone()
        except self._errors as err:
            raise self._error(err) from err

    def _error(self, err: BaseException) -> StoreError:
        """The driver's error as the store's: a broken constraint, or the store failing."""
        if isinstance(err, self._integrity):
            return IntegrityViolation(str(err))
        return StoreError(f"the cloud database {self.where} failed: {err}")

    def scalar(self, sql: str, args: Sequence[Any] = ()) -> Any:
        row = self.one(sql, args)
        return None if row is None else row[0]

    def script(self, ddl: str) -> None:
        """Schema statements (SQLite spelling; the dialect translates)."""
        self.dialect.script(self.conn, self.dialect.ddl(ddl))

    def close(self) -> None:
        self.conn.close()
