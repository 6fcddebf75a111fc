"""The cloud's HTTP stack at the wire: what a hand-written server gets wrong.

``Expect: 100-continue``, chunked request bodies, 405 with ``Allow``, a body that
never arrives (408) and a head that never ends (dropped), size limits (413),
bodies that are JSON only to Python (NaN, ``1e999``, deep nesting, lone
surrogates: 400), a malformed request logged in one line, and the outbound client's
deadline; log streams that end when their client goes or the server stops. Raw
sockets where the bytes matter, ``http.client`` elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import re
import select
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from impfactory.cloud.api_client import ApiClient, ApiClientError
from impfactory.cloud.api_jsonapi import ApiError, BadRequest, parse_json
from impfactory.cloud.api_thread import ApiThread
from impfactory.cloud.errors import InvalidError, NotFoundError
from impfactory.cloud.outbound import Outbound, Reply
from impfactory.cloud.web import SHUTDOWN_TIMEOUT, Limits

TWO_MB = 2 * 1024 * 1024


def _serve(limits: Limits) -> Iterator[tuple[ApiThread, str]]:
    with ApiThread(":memory:", limits=limits) as api:
        api.call(api.service.accounts.create, "owner", "pw")
        token = ApiClient(api.endpoint).login("owner", "pw").token
        assert token is not None
        yield api, token


@pytest.fixture
def api() -> Iterator[tuple[ApiThread, str]]:
    """Default size limit, a short body deadline."""
    yield from _serve(Limits(body_timeout=2.0))


@pytest.fixture
def small() -> Iterator[tuple[ApiThread, str]]:
    """A 1000-byte body limit."""
    yield from _serve(Limits(max_body=1000))


def _sock(api: ApiThread) -> socket.socket:
    parts = urlsplit(api.endpoint)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def _answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """One answer with a Content-Length body: its head and body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, (head, body)
        body += chunk
    return head, body


def _error_code(body: bytes) -> str:
    return str(json.loads(body)["errors"][0]["code"])


def _group(api: ApiThread, token: str) -> dict[str, Any]:
    owner = ApiClient(api.endpoint)
    owner.token = token
    product = owner.call("POST", "/products", {"data": {"type": "product",
                                                        "attributes": {"name": "P"}}})["data"]
    return dict(owner.call("POST", "/devicegroups", {"data": {
        "type": "development_devicegroup", "attributes": {"name": "D"},
        "relationships": {"product": {"type": "product", "id": product["id"]}}}})["data"])


def _deployment(group: dict[str, Any], code: str) -> bytes:
    return json.dumps({"data": {"type": "deployment", "attributes": {
        "device_code": code, "agent_code": ""}, "relationships": {
        "devicegroup": {"type": group["type"], "id": group["id"]}}}}).encode()


def test_a_2mb_post_with_expect_100_continue_is_told_to_go_on_before_it_sends(
        api: tuple[ApiThread, str]) -> None:
    """The client holds its body until ``100 Continue`` (curl waits 1 s for it, then sends
    anyway): the server must say it as soon as the head is in."""
    running, token = api
    body = _deployment(_group(running, token), "x" * TWO_MB)
    with _sock(running) as sock:
        sock.sendall(f"POST /v5/deployments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
                     f"\r\nContent-Type: application/vnd.api+json\r\nContent-Length: {len(body)}"
                     "\r\nExpect: 100-continue\r\n\r\n".encode())
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(1)  # byte by byte: nothing of the final answer is read here
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        head, answer = _answer(sock)
    assert head.startswith(b"HTTP/1.1 201"), (head, answer[:200])
    assert len(json.loads(answer)["data"]["id"]) > 0


def test_an_expectation_other_than_100_continue_is_a_417(api: tuple[ApiThread, str]) -> None:
    running, _ = api
    with _sock(running) as sock:
        sock.sendall(b"POST /v5/auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 2\r\nExpect: tea\r\n\r\n")
        head, body = _answer(sock)
    assert head.startswith(b"HTTP/1.1 417") and _error_code(body) == "ExpectationFailed"


def test_an_announced_over_limit_body_is_refused_before_100_continue(
        small: tuple[ApiThread, str]) -> None:
    running, token = small
    with _sock(running) as sock:
        sock.sendall(f"POST /v5/products HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 1001\r\n"
                     "Expect: 100-continue\r\n\r\n".encode())
        head, body = _answer(sock)
    assert head.startswith(b"HTTP/1.1 413") and _error_code(body) == "PayloadTooLarge"


def test_chunked_request_bodies_are_read(api: tuple[ApiThread, str]) -> None:
    running, token = api
    parts = urlsplit(running.endpoint)
    doc = json.dumps({"data": {"type": "product", "attributes": {"name": "Chunked"}}}).encode()
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("POST", "/v5/products", body=iter([doc[:7], doc[7:20], doc[20:]]),
                     headers={"Authorization": f"Bearer {token}",
                              "Content-Type": "application/vnd.api+json"},
                     encode_chunked=True)
        resp = conn.getresponse()
        made = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 201 and made["data"]["attributes"]["name"] == "Chunked"


def test_a_chunked_body_over_the_limit_is_a_413(small: tuple[ApiThread, str]) -> None:
    running, token = small
    chunk = b'{"data": "' + b"y" * 1200 + b'"}'
    with _sock(running) as sock:
        sock.sendall(f"POST /v5/products HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     .encode() + b"".join(b"%x\r\n%s\r\n" % (len(c), c)
                                          for c in (chunk[:500], chunk[500:])) + b"0\r\n\r\n")
        head, body = _answer(sock)
    assert head.startswith(b"HTTP/1.1 413") and _error_code(body) == "PayloadTooLarge"


def test_a_wrong_method_is_a_405_whose_allow_names_the_served_methods(
        api: tuple[ApiThread, str]) -> None:
    running, token = api
    served: dict[str, set[str]] = {}
    for route in running.service.router.routes:
        served.setdefault(route.template, set()).add(route.method)
    parts = urlsplit(running.endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        for template, methods in served.items():
            wrong = next(m for m in ("PUT", "PATCH", "DELETE", "POST") if m not in methods)
            conn.request(wrong, "/v5" + re.sub(r"\{\w+\}", "x", template),
                         headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            body = resp.read()
            allowed = set((resp.getheader("Allow") or "").replace(" ", "").split(","))
            want = methods | ({"HEAD"} if "GET" in methods else set())
            assert resp.status == 405 and allowed == want, (template, resp.status, allowed)
            assert _error_code(body) == "MethodNotAllowed"
    finally:
        conn.close()


def test_a_body_that_stalls_is_a_408_while_others_are_served(api: tuple[ApiThread, str]) -> None:
    running, token = api
    with _sock(running) as stalled:
        stalled.sendall(f"POST /v5/products HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
                        "\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"da"
                        .encode())
        owner = ApiClient(running.endpoint)
        owner.token = token
        assert owner.call("GET", "/products")["data"] == []  # served meanwhile
        assert select.select([stalled], [], [], 0)[0] == []  # and the stalled one still waits
        head, body = _answer(stalled)  # within body_timeout (2 s), not the socket's 10 s
        assert head.startswith(b"HTTP/1.1 408") and _error_code(body) == "RequestTimeout"
        assert b"Connection: close" in head  # the connection is spent


def test_a_head_that_never_ends_is_dropped_after_the_idle_timeout() -> None:
    with ApiThread(":memory:", limits=Limits(idle_timeout=0.5)) as running, \
            _sock(running) as stuck:
        stuck.sendall(b"GET /v5/openapi.json HTTP/1.1\r\nHost: x\r\n")  # no blank line
        assert stuck.recv(1) == b""  # closed by the server well before the socket's 10 s
        assert ApiClient(running.endpoint).call("GET", "/openapi.json", auth=False)["paths"]


@pytest.mark.parametrize("raw", [
    b'{"data": {"type": "product", "attributes": {"name": NaN}}}',
    b'{"data": {"type": "product", "attributes": {"name": Infinity}}}',
    b'{"data": {"type": "product", "attributes": {"name": -Infinity}}}',
    b'{"data": {"type": "product", "attributes": {"name": 1e999}}}',
    b'{"data": {"type": "product", "attributes": {"name": "\\ud800"}}}',
    b'{"data": {"type": "product", "attributes": {"\\udfff": "x"}}}',
    b'{"data": ' + b"[" * 100 + b"]" * 100 + b"}",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"x": ' * 100_000 + b"1" + b"}" * 100_000,
], ids=["nan", "inf", "-inf", "1e999", "surrogate", "surrogate-key", "deep", "deeper", "deep-obj"])
def test_json_that_only_python_would_read_is_a_400(api: tuple[ApiThread, str], raw: bytes
                                                   ) -> None:
    running, token = api
    parts = urlsplit(running.endpoint)
    for path, auth in (("/v5/products", {"Authorization": f"Bearer {token}"}), ("/v5/auth", {})):
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        try:
            conn.request("POST", path, body=raw,
                         headers={"Content-Type": "application/json", **auth})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        assert resp.status == 400 and _error_code(body) == "InvalidJson", (path, body[:200])


def test_parse_json_keeps_what_is_json() -> None:
    assert parse_json(b'{"a": [1, 2.5, "\\ud83d\\ude00", null, true]}') == {
        "a": [1, 2.5, "\U0001F600", None, True]}
    assert parse_json(b"[" * 64 + b"]" * 64) is not None
    with pytest.raises(BadRequest):
        parse_json(b"[" * 65 + b"]" * 65)


def test_a_refusal_is_answered_with_its_class_status_not_its_name() -> None:
    """The status and code are the error class's attributes: a class named like another
    status keeps its own, and a new kind of refusal needs no mapping anywhere."""

    class NotFoundishError(InvalidError):  # named for a 404, declared a 400
        pass

    class GoneError(NotFoundError):
        http_status = 410
        code = "Gone"

    for err, status, code in ((NotFoundishError("x"), 400, "Invalid"),
                              (GoneError("x"), 410, "Gone"),
                              (NotFoundError("x"), 404, "NotFound")):
        answer = ApiError.refusal(err).as_error()
        assert (answer["status"], answer["code"]) == (str(status), code)
        assert answer["detail"] == "x"


def test_a_malformed_request_is_one_log_line_and_a_400(
        api: tuple[ApiThread, str], caplog: pytest.LogCaptureFixture) -> None:
    running, _ = api
    caplog.set_level(logging.INFO, logger="impfactory.cloud.web.protocol")
    with _sock(running) as sock:
        sock.sendall(b"GET /v5/openapi.json HTTP/1.1\r\nContent-Length: x\r\n\r\n")
        assert re.match(rb"HTTP/1\.[01] 400 ", sock.recv(4096))
    records = [r for r in caplog.records if r.name == "impfactory.cloud.web.protocol"]
    assert records and all(r.exc_info is None and r.levelno == logging.INFO for r in records)
    assert "Content-Length" in records[0].getMessage()


def _open_stream(api: ApiThread, token: str) -> tuple[str, socket.socket]:
    """A log stream, opened as EventSource does; answers its id and the socket, once the
    stream's first frame has arrived."""
    owner = ApiClient(api.endpoint)
    owner.token = token
    sid = owner.call("POST", "/logstream")["data"]["id"]
    sock = _sock(api)
    sock.sendall(f"GET /v5/logstream/{sid}?format=json HTTP/1.1\r\nHost: x\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    seen = b""
    while b"impfactory log stream" not in seen:
        chunk = sock.recv(4096)
        assert chunk, seen
        seen += chunk
    assert seen.startswith(b"HTTP/1.1 200") and b"text/event-stream" in seen
    return sid, sock


def test_a_log_stream_ends_when_its_client_goes(api: tuple[ApiThread, str]) -> None:
    running, token = api
    sid, sock = _open_stream(running, token)
    owner = ApiClient(running.endpoint)
    owner.token = token

    def stream_known() -> bool:
        try:
            owner.call("PUT", f"/logstream/{sid}/nodevice")
        except ApiClientError as err:
            return "no log stream" not in str(err)
        return True

    assert stream_known()
    sock.close()
    deadline = time.monotonic() + 10
    while stream_known():
        assert time.monotonic() < deadline, "the stream outlived its client"
        time.sleep(0.02)


def test_stopping_the_server_ends_open_log_streams_cleanly() -> None:
    """The stream's last chunk arrives and the connection closes; ``stop`` does not wait
    out the shutdown timeout for a stream that would never end by itself."""
    running, token = next(served := _serve(Limits()))
    _, sock = _open_stream(running, token)
    with sock:
        started = time.monotonic()
        with contextlib.suppress(StopIteration):
            next(served)  # leaves the ApiThread: stops the server
        took = time.monotonic() - started
        rest = b""
        while chunk := sock.recv(4096):
            rest += chunk
    assert rest.endswith(b"0\r\n\r\n"), rest[-80:]  # the chunked stream's proper end
    assert took < SHUTDOWN_TIMEOUT


def test_the_outbound_client_gives_up_at_its_deadline_and_names_why() -> None:
    """A receiver's answer is its status and body; one that takes the connection and never
    answers is a failure with a reason once the client's timeout has passed; so is a port
    nobody serves, and a URL that is none."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused

    async def thanks(request: web.Request) -> web.Response:
        return web.Response(status=202, body=b"thanks " + await request.read())

    async def attempt() -> list[Reply]:
        app = web.Application()
        app.router.add_post("/hook", thanks)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            async with Outbound(timeout=0.3, max_body=100_000) as http:
                served = runner.addresses[0][1]
                replies = [await http.post(f"http://127.0.0.1:{port}/hook", body)
                           for port, body in ((served, b"{}"), (served, b"x" * 150_000),
                                              (silent.getsockname()[1], b"{}"),
                                              (closed.getsockname()[1], b"{}"))]
                replies.append(await http.post("http://[::1/hook", b"{}"))
        finally:
            await runner.cleanup()
        return replies

    try:
        answered, cut, *failed = asyncio.run(attempt())
    finally:
        silent.close()
        closed.close()
    assert (answered.ok, answered.status, answered.body) == (True, 202, b"thanks {}")
    assert cut.body == (b"thanks " + b"x" * 150_000)[:100_000]  # up to max_body, whole
    timed_out, refused, bad_url = [(r.status, r.error) for r in failed]
    assert timed_out[0] is None and "Timeout" in (timed_out[1] or "")
    assert refused[0] is None and "Connect" in (refused[1] or "")
    assert bad_url[0] is None and bad_url[1]
