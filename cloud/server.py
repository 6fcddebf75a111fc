"""One impCloud: database, service layer, device link and agents, started and stopped together.

::

    async with Cloud("cloud.db", "mqtt://127.0.0.1:1883", agent_port=0) as cloud:
        product = cloud.service.create_product(owner_id, "Lamp")
        ...

Everything runs on the caller's asyncio loop and thread, so the service may be
called directly between awaits (SQLite is touched from one thread only). A
restarted ``Cloud`` on the same file finds everything as it was.

The cloud's one HTTP client (``outbound``) is made here, for the agents' requests
and, when the REST API runs over this cloud, its webhook deliveries. Agents run
unless ``agents=False``; their URLs are served by the REST API's server when one
mounts them (``ApiService(agents=cloud.agents)``), or, with ``agent_port``, by a
server of their own on that loopback port (0: any free one). Either way the
service's agent base URL then names that server, unless ``agent_base_url`` was
given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from impfactory.cloud.agents import PREFIX, AgentLimits, Agents, agent_app
from impfactory.cloud.link import MESSAGE_BURST, MESSAGE_RATE, CloudLink
from impfactory.cloud.outbound import Outbound
from impfactory.cloud.service import AGENT_BASE_URL, AccountDirectory, CloudService
from impfactory.cloud.store import Store, open_store
from impfactory.cloud.web import WebServer, build_app
from impfactory.loopthread import LoopThread
from impfactory.protocol import cloudlink as cl


class Cloud:
    """The device-facing impCloud on one database and one broker."""

    def __init__(
        self,
        db: str | Path | Store,
        broker_url: str,
        *,
        now: Callable[[], float] = time.time,
        accounts: AccountDirectory | None = None,
        agent_base_url: str | None = None,
        chunk_size: int = cl.DEFAULT_CHUNK_SIZE,
        factory_token_ttl: float | None = None,
        agents: bool = True,
        agent_port: int | None = None,
        agent_limits: AgentLimits | None = None,
        http_timeout: float = 10.0,
        module_secret: bytes | None = None,
        share: str | None = None,
        message_rate: float = MESSAGE_RATE,
        message_burst: int = MESSAGE_BURST,
    ) -> None:
        """``module_secret``: the module maker's (impfactory/maker.py; default: the
        environment's or this user's), to tell real modules from made-up IDs. ``share``: a
        shared subscription group (cloud/link.py), for several clouds on one store.
        ``message_rate``/``message_burst``: what one device may send (cloud/link.py)."""
        self._owns_db = not isinstance(db, Store)
        self.db = db if isinstance(db, Store) else open_store(db)
        kwargs: dict[str, Any] = {}
        if factory_token_ttl is not None:
            kwargs["factory_token_ttl"] = factory_token_ttl
        self.service = CloudService(self.db, now=now, accounts=accounts,
                                    agent_base_url=agent_base_url or AGENT_BASE_URL,
                                    chunk_size=chunk_size, **kwargs)
        self.link = CloudLink(self.service, broker_url, module_secret=module_secret, share=share,
                              runs_agents=agents, message_rate=message_rate,
                              message_burst=message_burst)
        self.broker_url = self.link.url
        self.agent_url_fixed = agent_base_url is not None
        """The agent base URL was given: servers mounting agent URLs leave it alone."""
        self.outbound = Outbound(timeout=http_timeout)
        self.agents = (Agents(self.service, self.outbound, limits=agent_limits) if agents
                       else None)
        self._agent_port = agent_port
        self.agent_web: WebServer | None = None

    async def start(self) -> None:
        await self.outbound.start()
        try:
            if self.agents is not None:
                await self.agents.start()
                if self._agent_port is not None:
                    web = WebServer(build_app({PREFIX: agent_app(self.agents)}),
                                    port=self._agent_port)
                    await web.start()
                    self.agent_web = web
                    if not self.agent_url_fixed:
                        self.service.agent_base_url = f"http://127.0.0.1:{web.port}{PREFIX}"
            await self.link.start()
        except BaseException:
            await self._stop_http()
            raise

    async def stop(self) -> None:
        await self.link.stop()
        await self._stop_http()
        if self._owns_db:
            self.db.close()

    async def _stop_http(self) -> None:
        if self.agents is not None:
            await self.agents.stop()
        if self.agent_web is not None:
            await self.agent_web.stop()
            self.agent_web = None
        await self.outbound.stop()

    async def __aenter__(self) -> Cloud:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()


class CloudThread(LoopThread):
    """A ``Cloud`` on its own event loop in a daemon thread, for synchronous callers.

    ``call(fn, *args)`` runs ``fn`` on the cloud's loop thread (the only thread that
    may touch its database) and returns the result::

        with CloudThread(tmp_path / "cloud.db", broker_url) as cloud:
            product = cloud.call(cloud.service.create_product, "owner", "Lamp")
    """

    def __init__(self, db: str | Path, broker_url: str, **kwargs: Any) -> None:
        super().__init__("impfactory-cloud")
        self._db = db
        self._url = broker_url
        self._kwargs = kwargs
        self.cloud: Cloud | None = None

    @property
    def service(self) -> CloudService:
        assert self.cloud is not None, "not started"
        return self.cloud.service

    @property
    def url(self) -> str:
        return self._url

    def start(self) -> CloudThread:
        self.start_loop()

        async def boot() -> Cloud:
            cloud = Cloud(self._db, self._url, **self._kwargs)
            await cloud.start()
            return cloud

        self.cloud = self.run(boot(), 30)
        return self

    def stop(self) -> None:
        if self.cloud is not None:
            self.run(self.cloud.stop(), 30)
            self.cloud = None
        self.stop_loop()

    def __enter__(self) -> CloudThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
