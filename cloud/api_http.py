"""A small HTTP/1.1 server on the cloud's own asyncio loop.

Why not ``http.server``: the cloud's model lives in SQLite driven from one asyncio
loop (the loop that also speaks MQTT to the devices). Serving HTTP on that same
loop means every REST call touches the store from the loop's thread, one at a
time, with no locks and no cross-thread SQLite connections.

Wire handling, nothing more::

    request  = request-line CRLF *(header CRLF) CRLF [body of Content-Length bytes]
    response = status-line CRLF headers CRLF CRLF body

Keep-alive is honoured (Electric Imp's client opens connections with
``forever: true``); chunked request bodies are refused with 411, oversized heads
with 431 and bodies with 413. What a request means is the business of the
``handler`` callable given to ``HttpServer``; it never sees malformed HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
MAX_BODY = 8 * 1024 * 1024
IDLE_TIMEOUT = 75.0


@dataclass
class HttpRequest:
    """One parsed request: the path is percent-decoded, the query flattened."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class HttpResponse:
    """What a handler answers; ``headers`` are added to Content-Length/Type.

    With ``stream`` the body is those chunks as they come (server-sent events),
    with no Content-Length, and the connection closes when the stream ends.
    """

    status: int
    body: bytes = b""
    content_type: str = "application/vnd.api+json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: AsyncIterator[bytes] | None = None


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class _BadHttp(Exception):
    """The bytes on the wire are not an HTTP request we can answer normally."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def parse_query(raw: str) -> dict[str, str]:
    """Flatten a query string: ``page%5Bsize%5D=2`` → ``{"page[size]": "2"}``.

    A repeated key keeps its last value, as the clients never repeat one.
    """
    return dict(parse_qsl(raw, keep_blank_values=True))


class HttpServer:
    """Serve ``handler`` on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def port(self) -> int:
        """The bound port (valid after ``start``)."""
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and start accepting connections."""
        self._server = await asyncio.start_server(
            self._on_connect, self._host, self._port, limit=MAX_HEAD
        )

    async def stop(self) -> None:
        """Stop accepting and close every open connection."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._conns.values()):
                writer.close()  # an idle keep-alive connection ends its task normally
            if self._conns:
                await asyncio.wait(list(self._conns), timeout=5)
            for task in list(self._conns):
                task.cancel()
            await self._server.wait_closed()
            self._server = None

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns[task] = writer
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass  # the server is stopping; asyncio's stream callback must not see it raise
        finally:
            self._conns.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
            except asyncio.IncompleteReadError:
                return
            except asyncio.LimitOverrunError:
                await self._write(writer, _error(431, "request head too large"), close=True)
                return
            except ValueError:  # StreamReader raises it when the limit is exceeded
                await self._write(writer, _error(431, "request head too large"), close=True)
                return
            try:
                request, keep_alive = await self._parse(head, reader)
            except _BadHttp as bad:
                await self._write(writer, _error(bad.status, str(bad)), close=True)
                return
            response = await self._handler(request)
            if response.stream is not None:
                await _write_stream_impl(reader, writer, response)
                return
            await self._write(writer, response, close=not keep_alive,
                              head_only=request.method == "HEAD")
            if not keep_alive:
                return

    async def _parse(
        self, head: bytes, reader: asyncio.StreamReader
    ) -> tuple[HttpRequest, bool]:
        try:
            text = head.decode("iso-8859-1")
        except UnicodeDecodeError as err:  # pragma: no cover - latin-1 decodes anything
            raise _BadHttp(400, "undecodable request head") from err
        line, _, rest = text.partition("\r\n")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadHttp(400, "malformed request line")
        method, target, version = parts
        try:
            msg = http.client.parse_headers(io.BytesIO(rest.encode("iso-8859-1") + b"\r\n"))
        except http.client.HTTPException as err:
            raise _BadHttp(400, "malformed headers") from err
        headers = {k.lower(): v for k, v in msg.items()}
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise _BadHttp(411, "chunked request bodies are not accepted; send Content-Length")
        length_text = headers.get("content-length", "0").strip() or "0"
        if not length_text.isdigit():
            raise _BadHttp(400, "bad Content-Length")
        length = int(length_text)
        if length > MAX_BODY:
            raise _BadHttp(413, f"request body over {MAX_BODY} bytes")
        body = await reader.readexactly(length) if length else b""
        split = urlsplit(target)
        conn = headers.get("connection", "").lower()
        keep_alive = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
        request = HttpRequest(
            method=method.upper(),
            path=unquote(split.path),
            query=parse_query(split.query),
            headers=headers,
            body=body,
        )
        return request, keep_alive

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, response: HttpResponse, close: bool,
                     head_only: bool = False) -> None:
        """Send ``response``; ``head_only`` (a HEAD request) sends no body, per RFC 9110, so
        a keep-alive client is not left reading a body it never asked for."""
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Status"
        lines = [f"HTTP/1.1 {response.status} {reason}"]
        headers = {"Content-Length": str(len(response.body))}
        if response.body or response.status != 204:
            headers["Content-Type"] = response.content_type
        if close:
            headers["Connection"] = "close"
        headers.update(response.headers)
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1")
                     + (b"" if head_only else response.body))
        await writer.drain()


async def _write_stream_impl(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                             response: HttpResponse) -> None:
    """Send ``response.stream`` until it ends or the client goes away (EOF on its side)."""
    head = [f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}",
            f"Content-Type: {response.content_type}", "Cache-Control: no-cache",
            "Connection: close", *(f"{k}: {v}" for k, v in response.headers.items())]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("iso-8859-1"))
    await writer.drain()
    stream = response.stream
    assert stream is not None
    gone = asyncio.ensure_future(reader.read(1))  # a streaming client sends nothing more
    try:
        while True:
            chunk = asyncio.ensure_future(anext(stream))
            done, _ = await asyncio.wait({chunk, gone}, return_when=asyncio.FIRST_COMPLETED)
            if chunk not in done:
                chunk.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await chunk
                return
            try:
                data = chunk.result()
            except StopAsyncIteration:
                return
            writer.write(data)
            await writer.drain()
    finally:
        gone.cancel()
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(RuntimeError):
                await aclose()


def _error(status: int, detail: str) -> HttpResponse:
    title = HTTPStatus(status).phrase
    error = {"status": str(status), "code": "HttpError", "title": title, "detail": detail}
    body = {"errors": [error]}
    return HttpResponse(status, json.dumps(body).encode())
