"""The cloud's one HTTP client: an ``aiohttp.ClientSession`` on the cloud's own loop.

Every request the cloud makes to the outside world (webhook deliveries today,
agents' ``http.request`` next) goes through one ``Outbound``, so connections are
pooled and every request has a deadline; nothing blocks the loop or takes a
thread. A request that gets no answer is not an exception: ``Reply.status`` is
``None`` and ``Reply.error`` says why (refused, timed out, bad URL), so callers
decide what a failure means (a webhook retries later)::

    async with Outbound(timeout=10) as http:
        reply = await http.post(url, body, {"Content-Type": "application/json"})
        if reply.ok: ...

Redirects are not followed: a 3xx is the answer (a POST must never be replayed
as a bodiless GET elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

import aiohttp

USER_AGENT = "impfactory-cloud/1"
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Reply:
    """What one request gave: the status (``None`` when no answer came) and an error."""

    status: int | None
    error: str | None = None
    body: bytes = b""

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300


class Outbound:
    """One client session: opened by ``start`` on the running loop, closed by ``stop``."""

    def __init__(self, timeout: float = 10.0, max_body: int = 1 << 20) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout,
                                             connect=min(timeout, CONNECT_TIMEOUT))
        self.max_body = max_body
        """Bytes of an answer's body kept; the rest is not read (the connection is then
        not reused)."""
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the HTTP client is not started")
        return self._session

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self.timeout,
                                              headers={"User-Agent": USER_AGENT})

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, url: str, body: bytes | None = None,
                      headers: dict[str, str] | None = None) -> Reply:
        """One request and its answer; never raises for what the network does."""
        try:
            async with self.session.request(method, url, data=body, headers=headers,
                                            allow_redirects=False) as resp:
                data = bytearray()
                while len(data) < self.max_body and (
                        chunk := await resp.content.read(self.max_body - len(data))):
                    data += chunk
                error = None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
                return Reply(resp.status, error, bytes(data))
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as err:
            why = type(err).__name__
            return Reply(None, f"{why}: {err}" if str(err) else why)

    async def post(self, url: str, body: bytes, headers: dict[str, str] | None = None
                   ) -> Reply:
        """``request("POST", ...)``."""
        return await self.request("POST", url, body, headers)

    async def __aenter__(self) -> Outbound:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
