"""The modelled network around a device, and the connection manager that walks it.

An imp connects in stages, each with its own LED pattern and its own failure
reason code (IMP_FACTS §3, §4)::

    search WiFi -> join -> get IP (DHCP) -> resolve server name -> connect -> online
    NO_WIFI       NO_WIFI  NO_IP_ADDRESS    NOT_RESOLVED           NO_SERVER
                                                  (through a proxy: NO_PROXY, NOT_AUTHORISED)

A network may only let traffic out through an HTTP proxy (``AccessPoint.proxy``).
A device given proxy settings by BlinkUp (TLV 13) connects through them: a
proxy that is not there (wrong address or port) shows the "proxy address or
port wrong" LED and fails with ``NO_PROXY``; rejected credentials show "proxy
credentials rejected" and fail with ``NOT_AUTHORISED``. A device without proxy
settings on a proxy-only network cannot reach the server (``NO_SERVER``).

``WifiEnvironment`` says what the world offers (access points with SSID,
password, signal, DHCP, DNS, a route to the server); ``ConnectionManager`` runs
the stages on the device clock, drives the LED, and on failure raises
``ConnectionFailed`` with the reason; ``connect_with_retries`` retries with
exponential backoff while the LED keeps flashing the stage that failed. The last
stage, reaching the server, is real: the caller passes a coroutine that opens the
MQTT link, and its ``OSError`` becomes ``NO_SERVER``.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from impfactory.backoff import Backoff
from impfactory.clock import Clock
from impfactory.firmware.errors import ConnectionFailed
from impfactory.firmware.led import LedEvent, StatusLed


class Reason(enum.IntEnum):
    """Connection failure reasons, numbered as the imp API numbers them."""

    NOT_CONNECTED = 0
    NO_WIFI = 1
    NO_IP_ADDRESS = 2
    NOT_RESOLVED = 3
    NO_SERVER = 4
    SERVER_CONNECTED = 5
    NO_PROXY = 6
    NOT_AUTHORISED = 7


MIN_SIGNAL_DBM = -90.0


@dataclass(frozen=True)
class WebProxy:
    """An HTTP proxy on the modelled network; ``username`` None means it asks for none."""

    server: str
    port: int
    username: str | None = None
    password: str | None = None


@dataclass
class AccessPoint:
    """One WiFi network as the device's radio would find it."""

    ssid: str
    password: str = ""
    signal_dbm: float = -50.0
    dhcp: bool = True
    dns: bool = True
    reaches_server: bool = True
    ip_prefix: str = "192.168.1."
    proxy: WebProxy | None = None
    """When set, the server is reachable only through this proxy."""


@dataclass
class WifiEnvironment:
    """The radio world a device sits in; tests edit it to inject faults."""

    access_points: list[AccessPoint] = field(default_factory=list)

    def find(self, ssid: str) -> AccessPoint | None:
        """The strongest AP with ``ssid`` that is above the radio's sensitivity."""
        seen = [ap for ap in self.access_points
                if ap.ssid == ssid and ap.signal_dbm >= MIN_SIGNAL_DBM]
        return max(seen, key=lambda ap: ap.signal_dbm) if seen else None


@dataclass(frozen=True)
class StageTimes:
    """How long each stage takes on the device clock (seconds)."""

    search: float = 0.75
    join: float = 1.0
    get_ip: float = 0.5
    resolve: float = 0.25
    connect: float = 0.25


DEVICE_BACKOFF = Backoff(first=1.0, factor=2.0, cap=60.0, jitter=0.5)
"""impOS's reconnect schedule (device-clock seconds): 1 s doubling to a minute, each
wait drawn from its upper half, so a fleet that lost its broker together does not
come back together."""


@dataclass
class NetInfo:
    """What ``imp.net.info()`` reports after joining."""

    ssid: str = ""
    ip: str = ""
    rssi: float = 0.0
    mac: str = ""

    def as_dict(self) -> dict[str, Any]:
        """``imp.net.info()``: the WiFi interface is always listed with its MAC
        (FactoryTools reads an imp001's MAC from it before the device is online);
        address, SSID and signal only while connected, ``active`` its index then."""
        wifi: dict[str, Any] = {"type": "wifi", "macaddress": self.mac}
        if not self.ip:
            return {"active": None, "interface": [wifi]}
        wifi.update({"ipv4": {"address": self.ip}, "ssid": self.ssid, "rssi": self.rssi})
        return {"active": 0, "interface": [wifi]}


class ConnectionManager:
    """Walks the connection stages for one device."""

    def __init__(self, clock: Clock, led: StatusLed, env: WifiEnvironment, mac: str,
                 times: StageTimes | None = None, backoff: Backoff | None = None) -> None:
        self.clock = clock
        self.led = led
        self.env = env
        self.mac = mac
        self.times = times or StageTimes()
        self.backoff = backoff or DEVICE_BACKOFF
        self._rng: random.Random | None = None  # made on the first retry (2.5 KiB)
        self.info = NetInfo(mac=mac)
        self.failures: list[tuple[float, Reason]] = []
        self.reason = Reason.NOT_CONNECTED

    async def connect_once(self, ssid: str, password: str, static_ip: str | None,
                           open_server: Callable[[], Awaitable[None]],
                           proxy: dict[str, Any] | None = None) -> None:
        """One attempt through every stage; ``ConnectionFailed`` names the stage that failed.

        ``proxy``: the device's proxy settings (``server``, ``port``, optional
        ``username``/``password``), as BlinkUp stored them.
        """
        self.info = NetInfo(mac=self.mac)
        self.led.handle(LedEvent.SEARCH)
        await self.clock.sleep(self.times.search)
        ap = self.env.find(ssid)
        if ap is None:
            raise self._fail(Reason.NO_WIFI, f"no access point {ssid!r} in range")
        self.led.handle(LedEvent.JOIN)
        await self.clock.sleep(self.times.join)
        if ap.password != password:
            raise self._fail(Reason.NO_WIFI, f"access point {ssid!r} rejected the password")
        self.led.handle(LedEvent.GET_IP)
        await self.clock.sleep(self.times.get_ip)
        if static_ip is None and not ap.dhcp:
            raise self._fail(Reason.NO_IP_ADDRESS, "no DHCP answer")
        ip = static_ip or ap.ip_prefix + str(2 + int(self.mac[-2:], 16))
        self.info = NetInfo(ssid=ssid, ip=ip, rssi=ap.signal_dbm, mac=self.mac)
        self.led.handle(LedEvent.RESOLVE)
        await self.clock.sleep(self.times.resolve)
        if not ap.dns:
            raise self._fail(Reason.NOT_RESOLVED, "server name did not resolve")
        self.led.handle(LedEvent.CONNECT)
        await self.clock.sleep(self.times.connect)
        self._through_proxy(ap, proxy)
        if not ap.reaches_server:
            raise self._fail(Reason.NO_SERVER, "no route to the server")
        try:
            await open_server()
        except OSError as err:
            raise self._fail(Reason.NO_SERVER, f"server refused: {err}") from err
        self.reason = Reason.SERVER_CONNECTED
        self.led.handle(LedEvent.ONLINE)

    async def connect_with_retries(self, ssid: str, password: str, static_ip: str | None,
                                   open_server: Callable[[], Awaitable[None]],
                                   on_failure: Callable[[ConnectionFailed], Any] | None = None,
                                   max_attempts: int | None = None,
                                   proxy: dict[str, Any] | None = None) -> None:
        """Try until online; back off between failures (the LED keeps the failed stage)."""
        failures = 0
        while True:
            try:
                await self.connect_once(ssid, password, static_ip, open_server, proxy)
                return
            except ConnectionFailed as err:
                failures += 1
                if on_failure is not None:
                    on_failure(err)
                if max_attempts is not None and failures >= max_attempts:
                    raise
                if self._rng is None:  # per device, the same in every run
                    self._rng = random.Random(self.mac)
                await self.clock.sleep(self.backoff.delay(failures, self._rng))

    def _through_proxy(self, ap: AccessPoint, proxy: dict[str, Any] | None) -> None:
        """The proxy part of connecting: raise ``ConnectionFailed`` unless the way out is open."""
        there = ap.proxy
        if proxy is None:
            if there is not None:
                raise self._fail(Reason.NO_SERVER,
                                 "the network lets traffic out only through its proxy")
            return
        if there is None or (proxy.get("server"), proxy.get("port")) != (there.server,
                                                                        there.port):
            self.led.handle(LedEvent.PROXY_WRONG)
            raise self._fail(Reason.NO_PROXY, f"no proxy at {proxy.get('server')}:"
                                              f"{proxy.get('port')}")
        if there.username is not None and (proxy.get("username"), proxy.get("password")) != (
                there.username, there.password):
            self.led.handle(LedEvent.PROXY_AUTH)
            raise self._fail(Reason.NOT_AUTHORISED, "the proxy rejected the credentials")

    def _fail(self, reason: Reason, detail: str) -> ConnectionFailed:
        self.reason = reason
        self.info = NetInfo(mac=self.mac)
        self.failures.append((self.clock.now(), reason))
        return ConnectionFailed(int(reason), detail)
