"""The cloud's one HTTP server: an aiohttp application on the cloud's own loop.

Why on that loop: the cloud's model lives in SQLite driven from one asyncio loop
(the loop that also speaks MQTT to the devices), so every request reaches the
store from the loop's thread, one at a time, with no locks. aiohttp does the wire
(keep-alive, pipelining, chunked bodies, ``Expect: 100-continue``, ``HEAD``, 405
with ``Allow``); the cloud only says what a request means.

One application, built by ``build_app``::

    /                   root: the error middleware, body limits, shutdown of streams
    ├── /v5/...         the impCentral API (``ImpCentralApi.subapp``), one aiohttp route
    │                   per entry of its route table, plus HEAD for every GET
    └── /agent/...      agent URLs (issue 11): one more sub-application, added to the
                        ``subapps`` given to ``build_app``; ``--agent-url`` then names
                        this server

Every error is answered in one place, ``json_errors``: ``ApiError`` and
``CloudError`` carry their status as a class attribute, aiohttp's own refusals
(unknown path 404, wrong method 405 with ``Allow``) become the same JSON:API
error document, and anything else is a bug, logged with its traceback and
answered as a JSON:API 500. (An agent URL's handler returns the response the
agent's code made, which the middleware passes through untouched.)

Limits (``Limits``): a body may be at most ``MAX_BODY`` bytes (413, sent before
``100 Continue`` when the length is announced) and must arrive within
``BODY_TIMEOUT`` seconds (408, and the connection closes); a connection idle, or
stuck inside a request head, for ``IDLE_TIMEOUT`` seconds is closed; a request or
header line may be ``MAX_LINE`` bytes. Bytes that are not HTTP (or a line over the
limit) get aiohttp's plain-text 400 and one log line, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import HttpVersion11, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from impfactory.cloud.api_jsonapi import (
    JSONAPI,
    ApiError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    error_body,
)
from impfactory.cloud.errors import CloudError

log = logging.getLogger(__name__)
ACCESS_LOG = logging.getLogger("impfactory.cloud.access")
"""One INFO line per request: ``GET /v5/products 200 3.1 ms``."""
PROTOCOL_LOG = logging.getLogger("impfactory.cloud.web.protocol")
"""aiohttp's own complaints (malformed requests), one line each."""

MAX_BODY = 8 * 1024 * 1024
MAX_LINE = 16 * 1024
BODY_TIMEOUT = 30.0
IDLE_TIMEOUT = 75.0
SHUTDOWN_TIMEOUT = 5.0
"""Seconds ``stop`` waits for requests in flight before cancelling them."""


@dataclass(frozen=True)
class Limits:
    """What one request may cost the server."""

    max_body: int = MAX_BODY
    body_timeout: float = BODY_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    max_line: int = MAX_LINE
    """Bytes of the request line, and of each header line."""


LIMITS = web.AppKey("limits", Limits)
CLOSING = web.AppKey("closing", asyncio.Event)
"""Set when the server stops: open streams end."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(subapps: dict[str, web.Application], limits: Limits = Limits()
              ) -> web.Application:
    """The root application serving each of ``subapps`` under its prefix."""
    app = web.Application(middlewares=[json_errors], client_max_size=limits.max_body + 1)
    app[LIMITS] = limits
    app[CLOSING] = asyncio.Event()

    async def closing(app: web.Application) -> None:
        app[CLOSING].set()

    app.on_shutdown.append(closing)
    for prefix, sub in subapps.items():
        app.add_subapp(prefix, sub)
    return app


def error_response(err: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    """``err`` as a JSON:API error document."""
    return web.Response(status=err.status, body=error_body([err]), content_type=JSONAPI,
                        headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into a JSON:API error answer (the only place that does)."""
    try:
        return await handler(request)
    except ApiError as err:
        answer = error_response(err, err.headers)
        if isinstance(err, RequestTimeout | PayloadTooLarge):
            answer.force_close()  # the rest of the body is unread: the connection is spent
        return answer
    except CloudError as err:
        return error_response(ApiError.refusal(err))
    except web.HTTPNotFound:  # aiohttp's router found no route
        return error_response(NotFound(f"no such path: {request.path}", code="UnknownPath"))
    except web.HTTPMethodNotAllowed as exc:  # a route, not with this method
        allowed = ", ".join(sorted(exc.allowed_methods))
        return error_response(MethodNotAllowed(
            f"{request.method} is not allowed on {request.path}; allowed: {allowed}"),
            headers={"Allow": allowed})
    except Exception:  # a bug: log it loudly; the suite fails on any 5xx
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return error_response(InternalError("the emulated cloud hit a bug; see its log"))


def _too_large(limits: Limits) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is over {limits.max_body} bytes")


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue``: refuse an announced over-size body at once (413, and the
    client never sends it), else tell the client to go on."""
    limits = request.config_dict[LIMITS]
    if request.content_length is not None and request.content_length > limits.max_body:
        answer = error_response(_too_large(limits))
        answer.force_close()
        return answer
    if request.version != HttpVersion11:
        return None
    if request.headers.get("Expect", "").lower() != "100-continue":
        return error_response(ApiError(f"unknown Expect: {request.headers['Expect']!r:.80}",
                                       code="ExpectationFailed", status=417))
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    return None


async def read_body(request: web.Request) -> bytes:
    """The whole request body (``Content-Length`` or chunked), within the limits: an
    over-size one is a 413 before a byte of it is read when its length is announced;
    one that does not arrive within ``body_timeout`` is a 408."""
    if not request.body_exists:
        return b""
    limits = request.config_dict[LIMITS]
    if request.content_length is not None and request.content_length > limits.max_body:
        raise _too_large(limits)
    try:
        async with asyncio.timeout(limits.body_timeout):
            return await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {limits.body_timeout:g} s"
                             ) from None
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limits) from None


async def send_stream(request: web.Request, status: int, content_type: str,
                      chunks: AsyncIterator[bytes]) -> web.StreamResponse:
    """Send ``chunks`` as they come (server-sent events) until they end, the client goes
    (aiohttp then cancels this handler) or the server stops; the connection closes after.
    A HEAD gets the head alone."""
    answer = web.StreamResponse(status=status, headers={"Cache-Control": "no-cache"})
    answer.content_type = content_type
    answer.force_close()
    stop = asyncio.ensure_future(request.config_dict[CLOSING].wait())
    chunk: asyncio.Future[bytes] | None = None
    try:
        await answer.prepare(request)
        while request.method != "HEAD":
            chunk = asyncio.ensure_future(anext(chunks))
            await asyncio.wait({chunk, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not chunk.done():
                break  # the server is stopping
            try:
                data = chunk.result()
            except StopAsyncIteration:
                break
            await answer.write(data)
    except ConnectionError:
        pass  # the client went away mid-write
    finally:
        stop.cancel()
        if chunk is not None and not chunk.done():
            chunk.cancel()  # the source's own clean-up runs inside it
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await chunk
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    return answer


class AccessLine(AbstractAccessLogger):
    """``METHOD PATH STATUS MS``: the path as sent (still percent-encoded, so one line)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %d %.1f ms", request.method, request.rel_url.raw_path,
                         response.status, time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


class _OneLine(logging.Filter):
    """aiohttp logs a malformed request with a traceback; it is the client's fault, not
    the server's, so it becomes one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            said = record.getMessage()
            record.msg, record.args = "%s: %s", (said, " ".join(str(exc.message).split())[:200])
            record.exc_info = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


PROTOCOL_LOG.addFilter(_OneLine())


class WebServer:
    """Serve ``app`` on ``host:port`` (0: a free port) with ``web.AppRunner`` on the
    running loop; ``access_log`` writes one line per request to ``ACCESS_LOG``."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0, *,
                 access_log: bool = False) -> None:
        self.app = app
        self._host = host
        self._port = port
        self._access_log = access_log
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound port (valid after ``start``)."""
        if self._runner is None:
            raise RuntimeError("server not started")
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        """Bind and start accepting connections."""
        limits = self.app[LIMITS]
        runner = web.AppRunner(
            self.app, handle_signals=False, access_log_class=AccessLine,
            access_log=ACCESS_LOG if self._access_log else None, logger=PROTOCOL_LOG,
            keepalive_timeout=limits.idle_timeout, handler_cancellation=True,
            max_line_size=limits.max_line, max_field_size=limits.max_line,
            shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        """Stop accepting, end open streams, finish requests in flight, close."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def json_response(status: int, document: object | None, content_type: str = JSONAPI
                  ) -> web.Response:
    """A JSON answer (an empty one when ``document`` is ``None``)."""
    if document is None:
        return web.Response(status=status)
    return web.Response(status=status, body=json.dumps(document).encode(),
                        content_type=content_type)
