"""The cloud's one HTTP client: an ``aiohttp.ClientSession`` on the cloud's own loop.

Every request the cloud makes to the outside world (webhook deliveries, agents'
``http.request``) goes through one ``Outbound``, so connections are pooled and
every request has a deadline (the session's, or one of its own); nothing blocks
the loop or takes a thread. A request that gets no answer is not an exception:
``Reply.status`` is ``None``, ``Reply.error`` says why and ``Reply.failure`` names
the kind of failure (``Failure``: refused, timed out, bad URL …), so callers
decide what a failure means (a webhook retries later, an agent sees a status
code below 100)::

    async with Outbound(timeout=10) as http:
        reply = await http.post(url, body, {"Content-Type": "application/json"})
        if reply.ok: ...

Redirects are not followed: a 3xx is the answer (a POST must never be replayed
as a bodiless GET elsewhere).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any

import aiohttp
from yarl import URL

USER_AGENT = "impfactory-cloud/1"
CONNECT_TIMEOUT = 5.0


class Failure(StrEnum):
    """Why a request got no answer."""

    PROTOCOL = "protocol"  # not http or https
    URL = "url"  # not a URL
    RESOLVE = "resolve"  # the host name does not resolve
    CONNECT = "connect"  # nobody accepts the connection
    TIMEOUT = "timeout"  # no (whole) answer within the deadline
    EMPTY = "empty"  # the server closed the connection without answering
    IO = "io"  # the connection broke while sending or receiving


@dataclass(frozen=True)
class Reply:
    """What one request gave: the status (``None`` when no answer came) and an error;
    an answer's headers (names as sent, in order) and body; a failure's kind."""

    status: int | None
    error: str | None = None
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = field(default=())
    failure: Failure | None = None

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
                      headers: dict[str, str] | None = None, *,
                      timeout: float | None = None) -> Reply:
        """One request and its answer; never raises for what the network does.
        ``timeout``: this request's own deadline in seconds (else the session's)."""
        try:
            target = URL(url, encoded=False)
        except (ValueError, TypeError) as err:
            return Reply(None, f"not a URL: {err}", failure=Failure.URL)
        if target.scheme not in ("http", "https"):
            return Reply(None, f"unsupported protocol {target.scheme or '(none)'!r}",
                         failure=Failure.PROTOCOL)
        if not target.host:
            return Reply(None, "the URL names no host", failure=Failure.URL)
        extra: dict[str, Any] = {}  # (passing timeout=None would lift the session's deadline)
        if timeout is not None:
            extra["timeout"] = aiohttp.ClientTimeout(total=timeout,
                                                     connect=min(timeout, CONNECT_TIMEOUT))
        try:
            async with self.session.request(method, url, data=body, headers=headers,
                                            allow_redirects=False, **extra) as resp:
                data = bytearray()
                while len(data) < self.max_body and (
                        chunk := await resp.content.read(self.max_body - len(data))):
                    data += chunk
                error = None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
                return Reply(resp.status, error, bytes(data),
                             tuple((k, v) for k, v in resp.headers.items()))
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as err:
            why = type(err).__name__
            return Reply(None, f"{why}: {err}" if str(err) else why, failure=failure_of(err))

    async def get(self, url: str, headers: dict[str, str] | None = None) -> Reply:
        """``request("GET", ...)``."""
        return await self.request("GET", url, None, headers)

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


def failure_of(err: BaseException) -> Failure:
    """The kind of failure an exception of the client stands for."""
    if isinstance(err, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return Failure.TIMEOUT
    if isinstance(err, aiohttp.ClientConnectorError):
        cause = err.os_error
        if isinstance(cause, socket.gaierror):
            return Failure.RESOLVE
        return Failure.CONNECT
    if isinstance(err, aiohttp.ServerDisconnectedError):
        return Failure.EMPTY
    if isinstance(err, aiohttp.InvalidURL | ValueError):
        return Failure.URL
    return Failure.IO
