"""Issue 13, REST hardening: logins are throttled and hashed off the loop; log streams
are counted per account.

Each refusal is shown over real HTTP: a 429 with ``Retry-After`` once an account,
or an address, has failed too often (on an injected clock, so waiting costs no
time), the right password counting for nothing; and an account's eleventh log
stream refused while another account still gets its own.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from impfactory.cloud import api_auth, api_logstream
from impfactory.cloud.api_auth import LoginThrottle
from impfactory.cloud.api_client import ApiClient, ApiClientError
from impfactory.cloud.api_thread import ApiThread


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def api() -> Iterator[tuple[ApiThread, Clock]]:
    with ApiThread(":memory:") as running:
        book = running.service.accounts
        running.call(book.create, "owner", "pw")
        running.call(book.create, "other", "pw2")
        clock = Clock()
        book.throttle = LoginThrottle(clock)
        yield running, clock


def _login(api: ApiThread, name: str, password: str) -> tuple[int, dict[str, str], dict]:
    parts = urlsplit(api.endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("POST", f"{parts.path}/auth", json.dumps({"id": name, "password": password}),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def test_an_account_that_fails_too_often_waits(api: tuple[ApiThread, Clock]) -> None:
    running, clock = api
    for _ in range(api_auth.ACCOUNT_BURST):
        assert _login(running, "owner", "guess")[0] == 401
    status, headers, body = _login(running, "owner", "pw")  # even the right one
    assert status == 429 and headers["Retry-After"] == "6"
    assert body["errors"][0]["code"] == "TooManyLogins"
    assert _login(running, "OWNER", "guess")[0] == 429  # the name, however it is spelt
    assert _login(running, "other", "pw2")[0] == 200  # another account logs in
    clock.t += 6
    assert _login(running, "owner", "pw")[0] == 200
    for _ in range(5):  # right passwords do not count
        assert _login(running, "owner", "pw")[0] == 200


def test_an_address_that_fails_too_often_waits(api: tuple[ApiThread, Clock]) -> None:
    running, clock = api
    for i in range(api_auth.ADDRESS_BURST):  # names that do not exist count as well
        assert _login(running, f"nobody{i}", "guess")[0] == 401
    status, headers, _ = _login(running, "other", "pw2")
    assert status == 429 and headers["Retry-After"] == "1"
    clock.t += 1
    assert _login(running, "other", "pw2")[0] == 200


def test_passwords_are_hashed_off_the_loop(api: tuple[ApiThread, Clock],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    running, _ = api
    threads: list[threading.Thread] = []
    real = api_auth._hash_password

    def spy(password: str, salt: bytes) -> bytes:
        threads.append(threading.current_thread())
        return real(password, salt)

    monkeypatch.setattr(api_auth, "_hash_password", spy)
    loop_thread = running.call(threading.current_thread)
    assert _login(running, "owner", "pw")[0] == 200
    assert _login(running, "owner", "nope")[0] == 401
    assert len(threads) == 2 and loop_thread not in threads


def test_log_streams_are_counted_per_account(api: tuple[ApiThread, Clock]) -> None:
    running, _ = api
    owner, other = ApiClient(running.endpoint), ApiClient(running.endpoint)
    owner.login("owner", "pw")
    other.login("other", "pw2")
    for _ in range(api_logstream.MAX_STREAMS):
        owner.call("POST", "/logstream")
    with pytest.raises(ApiClientError) as refused:
        owner.call("POST", "/logstream")
    assert refused.value.status == 429 and "at most 10 log streams" in str(refused.value)
    assert other.call("POST", "/logstream")["data"]["id"]  # not used up by the first
