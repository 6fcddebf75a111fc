"""The connection manager walks the documented stages and fails with the right reason."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from impfactory.backoff import Backoff
from impfactory.clock import VirtualClock
from impfactory.firmware.errors import ConnectionFailed, IdentityError, SettingsError
from impfactory.firmware.identity import ELECTRIC_IMP_OUI, DeviceIdentity
from impfactory.firmware.led import LedState, StatusLed
from impfactory.firmware.settings import JsonFileStore, MemoryStore, Settings
from impfactory.firmware.wifi import (
    AccessPoint,
    ConnectionManager,
    Reason,
    WebProxy,
    WifiEnvironment,
)

S = LedState


async def ok_server() -> None:
    return None


async def refused_server() -> None:
    raise ConnectionRefusedError("nobody home")


def attempt(ap: AccessPoint | None, password: str = "secret", server=ok_server,
            proxy: dict | None = None
            ) -> tuple[ConnectionManager, StatusLed, BaseException | None]:
    async def go() -> tuple[ConnectionManager, StatusLed, BaseException | None]:
        clock = VirtualClock()
        led = StatusLed(clock)
        env = WifiEnvironment([ap] if ap else [])
        mgr = ConnectionManager(clock, led, env, "0c2a69000001")
        task = asyncio.ensure_future(mgr.connect_once("factory", password, None, server,
                                                      proxy))
        await clock.advance(30)
        err = task.exception() if task.done() else None
        return mgr, led, err

    return asyncio.run(go())


def test_good_network_goes_through_every_stage_to_online() -> None:
    mgr, led, err = attempt(AccessPoint("factory", "secret"))
    assert err is None
    assert led.states() == [S.SEARCHING_WIFI, S.JOINING_WIFI, S.GETTING_IP, S.RESOLVING,
                            S.CONNECTING, S.ONLINE]
    assert mgr.reason is Reason.SERVER_CONNECTED
    assert mgr.info.as_dict()["interface"][0]["ssid"] == "factory"


@pytest.mark.parametrize(
    ("ap", "password", "server", "reason", "last"),
    [
        (None, "secret", ok_server, Reason.NO_WIFI, S.SEARCHING_WIFI),
        (AccessPoint("factory", "secret", signal_dbm=-95), "secret", ok_server, Reason.NO_WIFI,
         S.SEARCHING_WIFI),
        (AccessPoint("factory", "secret"), "wrong", ok_server, Reason.NO_WIFI, S.JOINING_WIFI),
        (AccessPoint("factory", "secret", dhcp=False), "secret", ok_server,
         Reason.NO_IP_ADDRESS, S.GETTING_IP),
        (AccessPoint("factory", "secret", dns=False), "secret", ok_server,
         Reason.NOT_RESOLVED, S.RESOLVING),
        (AccessPoint("factory", "secret", reaches_server=False), "secret", ok_server,
         Reason.NO_SERVER, S.CONNECTING),
        (AccessPoint("factory", "secret"), "secret", refused_server, Reason.NO_SERVER,
         S.CONNECTING),
    ],
)
def test_each_fault_gives_its_reason_and_led(ap, password, server, reason, last) -> None:
    mgr, led, err = attempt(ap, password, server)
    assert isinstance(err, ConnectionFailed) and isinstance(err, ConnectionError)
    assert err.reason == reason
    assert mgr.reason is reason
    assert led.state is last  # the LED keeps flashing the stage that failed


def test_retries_back_off_and_succeed_when_the_ap_appears() -> None:
    async def go() -> tuple[list[tuple[float, Reason]], float]:
        clock = VirtualClock()
        led = StatusLed(clock)
        env = WifiEnvironment([])
        mgr = ConnectionManager(clock, led, env, "0c2a69000001",
                                backoff=Backoff(first=1, factor=2, cap=8))
        task = asyncio.ensure_future(
            mgr.connect_with_retries("factory", "secret", None, ok_server))
        await clock.advance(20)
        env.access_points.append(AccessPoint("factory", "secret"))
        for _ in range(60):
            await clock.advance(1)
            if task.done():
                break
        assert task.done() and task.exception() is None
        return mgr.failures, clock.now()

    failures, _ = asyncio.run(go())
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(failures)]
    search = 0.75
    assert [round(g - search, 6) for g in gaps[:4]] == [1, 2, 4, 8]
    assert all(r is Reason.NO_WIFI for _, r in failures)


def test_impos_reconnects_with_jitter_seeded_by_the_device() -> None:
    """A line that lost its broker does not come back in one instant: each device's
    waits are drawn from the upper half of the schedule, from a generator seeded by
    its MAC (the same device waits the same way in every run)."""
    def waits(mac: str) -> list[float]:
        async def go() -> list[float]:
            clock = VirtualClock()
            mgr = ConnectionManager(clock, StatusLed(clock), WifiEnvironment([]), mac)
            task = asyncio.ensure_future(mgr.connect_with_retries(
                "factory", "secret", None, ok_server, max_attempts=6))
            while not task.done():
                await clock.advance(1)
            assert isinstance(task.exception(), ConnectionFailed)  # no AP: it gave up
            return [b[0] - a[0] - 0.75 for a, b in itertools.pairwise(mgr.failures)]
        return asyncio.run(go())

    first = waits("0c2a69000001")
    assert first == waits("0c2a69000001")  # reproducible
    assert first != waits("0c2a69000002")  # spread across devices
    # within the upper half of 1, 2, 4, 8, 16 s (the virtual clock moves in 1 s steps)
    for wait, top in zip(first, (1, 2, 4, 8, 16), strict=True):
        assert top / 2 - 1 <= wait <= top + 1


def test_identity_from_serial_and_mac() -> None:
    a = DeviceIdentity.from_serial(0x12345)
    assert a.mac == ELECTRIC_IMP_OUI + "012345"
    assert a.device_id.endswith(a.mac) and len(a.device_id) == 16
    assert DeviceIdentity.from_mac("0C:2A:69:01:23:45") == a
    assert DeviceIdentity.from_serial(1) != DeviceIdentity.from_serial(2)
    with pytest.raises(IdentityError):
        DeviceIdentity.from_mac("not a mac")
    with pytest.raises(IdentityError):
        DeviceIdentity.from_serial(-1)


def test_settings_survive_in_both_stores(tmp_path: Path) -> None:
    for store in (MemoryStore(), JsonFileStore(tmp_path / "dev" / "settings.json")):
        s = store.load()
        assert not s.has_network
        s.ssid, s.password, s.plan_id, s.enrol_token = "f", "p", "1" * 16, "2" * 16
        store.save(s)
        s.ssid = "changed-but-not-saved"
        again = store.load()
        assert again.ssid == "f" and again.enrolled
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SettingsError):
        JsonFileStore(bad).load()
    with pytest.raises(SettingsError):
        Settings.from_dict({"ssid": "x", "bogus": 1})


GATE = WebProxy("proxy.factory.lan", 3128, "line", "s3cret")
SETTINGS = {"server": "proxy.factory.lan", "port": 3128, "username": "line",
            "password": "s3cret"}


@pytest.mark.parametrize(("proxy_there", "settings", "reason", "last"), [
    (GATE, {**SETTINGS, "port": 8080}, Reason.NO_PROXY, S.PROXY_WRONG),
    (GATE, {**SETTINGS, "server": "10.0.0.9"}, Reason.NO_PROXY, S.PROXY_WRONG),
    (None, SETTINGS, Reason.NO_PROXY, S.PROXY_WRONG),
    (GATE, {**SETTINGS, "password": "guess"}, Reason.NOT_AUTHORISED, S.PROXY_AUTH),
    (GATE, {**SETTINGS, "username": None, "password": None}, Reason.NOT_AUTHORISED,
     S.PROXY_AUTH),
    (GATE, None, Reason.NO_SERVER, S.CONNECTING),
])
def test_proxy_faults_give_their_reason_and_led(proxy_there, settings, reason, last) -> None:
    mgr, led, err = attempt(AccessPoint("factory", "secret", proxy=proxy_there),
                            proxy=settings)
    assert isinstance(err, ConnectionFailed) and err.reason == reason
    assert led.state is last and mgr.reason is reason
    assert led.states()[-2:] == ([S.CONNECTING, last] if last is not S.CONNECTING
                                 else [S.RESOLVING, S.CONNECTING])


def test_the_right_proxy_gets_through() -> None:
    for gate in (GATE, WebProxy("proxy.factory.lan", 3128)):  # with and without credentials
        mgr, led, err = attempt(AccessPoint("factory", "secret", proxy=gate), proxy=SETTINGS)
        assert err is None and led.state is S.ONLINE and mgr.reason is Reason.SERVER_CONNECTED
