"""Run the REST API (and optionally the whole cloud) on its own loop in a thread.

For synchronous callers (tests, the node harness, scripts) that want a live REST
API on a free loopback port and a plain way to stop it::

    with ApiThread(":memory:") as api:                      # management plane only
        api.call(api.service.accounts.create, "owner", "secret")   # on the loop's thread
        urllib.request.urlopen(api.endpoint + "/openapi.json")

    with ApiThread("cloud.db", broker_url="mqtt://127.0.0.1:1883") as api:
        ...                                                 # plus the device link (MQTT)
        api.run(some_coroutine())                           # e.g. scripted devices

``call`` and ``run`` execute on the loop's thread, the only thread allowed to
touch the database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from impfactory.cloud.api_auth import AccountBook
from impfactory.cloud.api_server import ApiService
from impfactory.cloud.server import Cloud
from impfactory.cloud.service import CloudService
from impfactory.cloud.store import open_db

T = TypeVar("T")


class ApiThread:
    """An ``ApiService`` (over a ``Cloud`` when ``broker_url`` is given) in a daemon thread."""

    def __init__(self, db: str | Path = ":memory:", *, broker_url: str | None = None,
                 service_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._db_path = db
        self._broker_url = broker_url
        self._kwargs = kwargs
        self._service_kwargs = service_kwargs or {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="impfactory-api",
                                        daemon=True)
        self.service: ApiService
        self.cloud: Cloud | None = None
        self._db: sqlite3.Connection

    def start(self) -> ApiThread:
        """Open the database and start serving; returns when the port is bound."""
        self._thread.start()

        async def boot() -> ApiService:
            self._db = open_db(self._db_path)
            book = AccountBook(self._db)
            if self._broker_url is not None:
                self.cloud = Cloud(self._db, self._broker_url, accounts=book,
                                   **self._service_kwargs)
                await self.cloud.start()
                svc = self.cloud.service
            else:
                svc = CloudService(self._db, accounts=book, **self._service_kwargs)
            service = ApiService(svc, book, **self._kwargs)
            await service.start()
            return service

        self.service = self.run(boot())
        return self

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT/v5``."""
        return self.service.endpoint

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run a coroutine on the service's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the service's loop thread and return its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def go() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as err:
                future.set_exception(err)

        self.loop.call_soon_threadsafe(go)
        return future.result(30)

    def stop(self) -> None:
        """Stop serving, close the database and end the thread."""
        async def halt() -> None:
            await self.service.stop()
            if self.cloud is not None:
                await self.cloud.stop()
            self._db.close()

        try:
            self.run(halt(), 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def __enter__(self) -> ApiThread:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
