"""Assemble the REST API: database, resource modules, HTTP server.

``ApiService`` is what ``impfactory cloud serve --api-port`` (and the tests) run::

    async with ApiService(db, port=0) as api:
        print(api.endpoint)          # http://127.0.0.1:PORT/v5

It serves on the running asyncio loop (the cloud's own), so every call reaches
SQLite from that loop's thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from impfactory.cloud import api_auth, api_openapi
from impfactory.cloud.api import ImpCentralApi, Router
from impfactory.cloud.api_http import HttpServer


def open_db(path: str | Path) -> sqlite3.Connection:
    """A SQLite connection in WAL mode (``":memory:"`` for throwaway runs)."""
    db = sqlite3.connect(str(path), isolation_level="DEFERRED", check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


class ApiService:
    """The REST API bound to one database, served on ``host:port``."""

    def __init__(self, db: sqlite3.Connection, *, host: str = "127.0.0.1", port: int = 0,
                 now: Callable[[], float] = time.time) -> None:
        self.db = db
        self.accounts = api_auth.AccountBook(db, now)
        self.router = Router()
        api_auth.register(self.router, self.accounts)
        api_openapi.register(self.router)
        self.app = ImpCentralApi(self.router, self.accounts.authenticate, lambda a: a.role)
        self.http = HttpServer(self.app.handle, host, port)
        self._host = host

    @property
    def endpoint(self) -> str:
        """The base URL clients are given: ``http://HOST:PORT/v5``."""
        return f"http://{self._host}:{self.http.port}/v5"

    async def start(self) -> None:
        """Start serving."""
        await self.http.start()

    async def stop(self) -> None:
        """Stop serving (the database stays open; its owner closes it)."""
        await self.http.stop()

    async def __aenter__(self) -> ApiService:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
