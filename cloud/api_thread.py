"""Run an ``ApiService`` on its own loop in a background thread.

For synchronous callers (tests, the node harness, scripts) that want a live REST
API on a free loopback port and a plain way to stop it::

    with ApiThread(":memory:") as api:
        api.call(api.service.accounts.create, "owner", "secret")   # on the loop's thread
        urllib.request.urlopen(api.endpoint + "/openapi.json")

``call`` runs a function on the loop's thread, which is the only thread allowed
to touch the service's database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from impfactory.cloud.api_server import ApiService, open_db

T = TypeVar("T")


class ApiThread:
    """An ``ApiService`` served from a daemon thread until ``stop``."""

    def __init__(self, db: str | Path | sqlite3.Connection = ":memory:", **kwargs: Any) -> None:
        self._db = db
        self._kwargs = kwargs
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="impfactory-api",
                                        daemon=True)
        self.service: ApiService

    def start(self) -> ApiThread:
        """Open the database and start serving; returns when the port is bound."""
        self._thread.start()

        async def boot() -> ApiService:
            db = self._db if isinstance(self._db, sqlite3.Connection) else open_db(self._db)
            service = ApiService(db, **self._kwargs)
            await service.start()
            return service

        self.service = asyncio.run_coroutine_threadsafe(boot(), self.loop).result(30)
        return self

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT/v5``."""
        return self.service.endpoint

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the service's loop thread and return its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as err:
                future.set_exception(err)

        self.loop.call_soon_threadsafe(run)
        return future.result(30)

    def stop(self) -> None:
        """Stop serving, close the database and end the thread."""
        async def halt() -> None:
            await self.service.stop()
            if not isinstance(self._db, sqlite3.Connection):
                self.service.db.close()

        asyncio.run_coroutine_threadsafe(halt(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def __enter__(self) -> ApiThread:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
