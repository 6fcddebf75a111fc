"""Run the REST API (and optionally the whole cloud) on its own loop in a thread.

For synchronous callers (tests, the node harness, scripts) that want a live REST
API on a free loopback port and a plain way to stop it::

    with ApiThread(":memory:") as api:                      # management plane only
        api.call(api.service.accounts.create, "owner", "secret")   # on the loop's thread
        ApiClient(api.endpoint).call("GET", "/openapi.json", auth=False)

    with ApiThread("cloud.db", broker_url="mqtt://127.0.0.1:1883") as api:
        ...                                                 # plus the device link (MQTT)
        api.run(some_coroutine())                           # e.g. scripted devices

``call`` and ``run`` execute on the loop's thread, the only thread allowed to
touch the database.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from impfactory.cloud.api_auth import AccountBook
from impfactory.cloud.api_server import ApiService
from impfactory.cloud.server import Cloud
from impfactory.cloud.service import CloudService
from impfactory.cloud.store import Store, open_store
from impfactory.loopthread import LoopThread


class ApiThread(LoopThread):
    """An ``ApiService`` (over a ``Cloud`` when ``broker_url`` is given) in a daemon thread."""

    def __init__(self, db: str | Path = ":memory:", *, broker_url: str | None = None,
                 service_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__("impfactory-api")
        self._db_path = db
        self._broker_url = broker_url
        self._kwargs = kwargs
        self._service_kwargs = service_kwargs or {}
        self.service: ApiService
        self.cloud: Cloud | None = None
        self._db: Store

    def start(self) -> ApiThread:
        """Open the database and start serving; returns when the port is bound."""
        self.start_loop()

        async def boot() -> ApiService:
            self._db = open_store(self._db_path)
            book = AccountBook(self._db)
            if self._broker_url is not None:
                self.cloud = Cloud(self._db, self._broker_url, accounts=book,
                                   **self._service_kwargs)
                await self.cloud.start()
                svc = self.cloud.service
            else:
                svc = CloudService(self._db, accounts=book, **self._service_kwargs)
            kwargs = dict(self._kwargs)
            if self.cloud is not None:
                kwargs.setdefault("outbound", self.cloud.outbound)
                kwargs.setdefault("agents", self.cloud.agents)
            service = ApiService(svc, book, **kwargs)
            await service.start()
            return service

        self.service = self.run(boot())
        return self

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT/v5``."""
        return self.service.endpoint

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
            self.stop_loop()

    def __enter__(self) -> ApiThread:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
