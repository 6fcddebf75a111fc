"""The emulated imp: one device from power-on to production.

``Device`` joins the parts of this package into one impOS::

    light sensor --> BlinkUpReceiver --> Settings (store) --> ConnectionManager
         |                                                        |  (WiFi model, LED)
    StatusLed <---------- every stage drives the LED --------------+
                                                                   v
    Runtime (device code, imp API) <--- code/impOS images <--- CloudClient (MQTT)

Everything waits on the injected clock except network exchanges (loop time), and
one device is a handful of asyncio tasks, so thousands share one loop. Stage
events (``DeviceEvent``) are recorded in ``events`` and sent to subscribers, so a
line runner observes a DUT without reaching into it. The public surface is listed
in docs/device.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from impfactory.brokerurl import parse_url
from impfactory.clock import Clock, TimerHandle
from impfactory.devicecode import is_python_code
from impfactory.firmware import impapi
from impfactory.firmware.blinkup_rx import BlinkUpReceiver
from impfactory.firmware.cloudclient import (
    REQUEST_TIMEOUT,
    BrokerRefused,
    CloudClient,
    CloudRefused,
    StaleLinkKey,
)
from impfactory.firmware.errors import (
    CloudClientError,
    ConnectionFailed,
    DeviceCodeError,
    FirmwareImageError,
    ImpApiError,
)
from impfactory.firmware.events import DeviceEvent, DeviceRecord
from impfactory.firmware.hardware import Pin, SimHardware
from impfactory.firmware.identity import DeviceIdentity
from impfactory.firmware.images import Blocks, fetch_blocks, fetch_image
from impfactory.firmware.led import LedEvent, StatusLed
from impfactory.firmware.registration import register
from impfactory.firmware.runtime import Engine, PythonEngine, Runtime
from impfactory.firmware.settings import MemoryStore, Settings, SettingsStore
from impfactory.firmware.signals import FixtureFlash, render_fixture_flash
from impfactory.firmware.wifi import ConnectionManager as _ConnectionManager
from impfactory.firmware.wifi import Reason, StageTimes, WifiEnvironment
from impfactory.hw.peripherals import PeripheralError
from impfactory.maker import maker_secret
from impfactory.protocol import cloudlink as cl
from impfactory.protocol import linksec
from impfactory.protocol.blinkup import BlinkUpConfig, BlinkUpError
from impfactory.protocol.decoder import LineCode
from impfactory.protocol.linecode import Signal

log = logging.getLogger(__name__)

DUT_GROUP_TYPES = frozenset({"dut_devicegroup", "pre_dut_devicegroup"})
FIXTURE_GROUP_TYPES = frozenset({"factoryfixture_devicegroup", "pre_factoryfixture_devicegroup"})


LINK_PATIENCE = 30.0
"""Loop seconds ``server.bless`` and ``server.factoryblinkup`` wait for a lost link to
come back (impOS suspends Squirrel meanwhile under ``SUSPEND_ON_ERROR``)."""
HELLO_RESEND = 2.0
"""Loop seconds after which an unanswered hello, blessing or token request is sent
again: one sent just after a broker restart, before the cloud is back on the
broker, is lost (the cloud answers a repeated hello or blessing as the first, and a
repeated token request with another token)."""
STALE_WELCOMES = 2
"""Welcomes that fail their seal, for one connection's hello, before the module takes
its link key to be stale and registers again. One can be a session mix-up that the
hello sent again puts right (the cloud re-reads the session from every hello); a
second means the cloud keeps another key: that of a registration attempt this module
gave up and another cloud of the group finished after ours (docs/scale.md)."""
GREETING_TIMEOUT = 5.0
"""Loop seconds to wait for configparams after welcome before running stored code."""
OFFER_GRACE = 0.25
"""Loop seconds an offer may trail configparams before stored code runs."""


@dataclass
class DeviceConfig:
    """Tunables of one emulated imp (device-clock seconds unless noted)."""

    blinkup_window_s: float = 60.0
    sensor_rate: float = 1000.0
    blinkup_symbol_rate: float | None = None  # None: lock to any rate (60, 142 ...)
    # ("bilevel",): a fixture's LED; add "trilevel" for a phone screen (end-user BlinkUp).
    blinkup_line_codes: tuple[LineCode, ...] = ("bilevel",)
    impos_install_s: float = 2.0
    boot_s: float = 0.25
    stage_times: StageTimes = field(default_factory=StageTimes)
    log_buffer: int = 200
    brownout_v: float = 2.7  # ours: below this supply the imp shows a power problem
    lib_dirs: tuple[str, ...] = ()  # ``#require`` folders, before the environment and built-in
    memory_free: dict[str, int] = field(default_factory=lambda: {"imp001": 81_920,
                                                                  "imp005": 196_608})


class Device:
    """One emulated imp. Create it, then ``power_on()`` inside a running loop."""

    def __init__(self, identity: DeviceIdentity, clock: Clock, env: WifiEnvironment,
                 server_url: str, store: SettingsStore | None = None,
                 hardware: SimHardware | None = None, config: DeviceConfig | None = None,
                 imp_type: str | None = None, module_key: bytes | None = None) -> None:
        """``module_key``: the secret the module was made with (default: derived from the
        maker's secret, impfactory/maker.py, when the device first registers)."""
        self.identity = identity
        self.module_key = module_key
        self.device_id = identity.device_id
        self.mac = identity.mac
        self.clock = clock
        self.env = env
        self.server_url = server_url
        self.store = store or MemoryStore()
        self.hardware_board = hardware or SimHardware()
        self.config = config or DeviceConfig()
        self.imp_type = imp_type or self.hardware_board.imp_type
        self.led = StatusLed(clock)
        self.settings: Settings = self.store.load()
        self.runtime = Runtime(clock, self._runtime_log)
        self.hardware_board.dispatch = self.runtime.call
        self.hardware_board.use_clock(DeviceClock(self))
        self.events: list[DeviceRecord] = []
        self.logs: list[str] = []
        self.configparams: dict[str, str | bool] = {}
        self.group_type: str | None = None
        self.blessed = False
        self.powered = False
        self.deployment: str | None = None
        self._subscribers: list[Callable[[DeviceRecord], Any]] = []
        self._waiters: list[tuple[DeviceEvent, asyncio.Future[DeviceRecord]]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._life: asyncio.Task[None] | None = None
        self._cloud: CloudClient | None = None
        self._bad_welcomes = 0
        self._stale_link: asyncio.Future[None] | None = None  # set: re-register
        self._lost: asyncio.Event | None = None
        self._ops: asyncio.Lock | None = None
        self._window: TimerHandle | None = None
        self._listening = False
        self._receiver: BlinkUpReceiver | None = None
        self._shutdown_handler: Callable[[int], Any] | None = None
        self._agent_handlers: dict[str, Callable[[Any], Any]] = {}
        self._unsent_logs: list[cl.Log] = []
        self._flashing = False
        self._flash_end: TimerHandle | None = None
        self._partials: dict[str, Blocks] = {}
        self._busy_until = 0.0
        #: ``server.factoryblinkup`` calls that started a flash: what the operator sees
        #: on the fixture ("Sending BlinkUp"), so a press the code did not take shows.
        self.factory_blinkups = 0
        self.nv: dict[str, Any] | None = None  # the Squirrel ``nv`` table across warm boots
        self._manual_offline = False
        self._connect_wanted = asyncio.Event()
        self._connect_callbacks: list[Callable[[int], Any]] = []
        self._unexpected_handler: Callable[[int], Any] | None = None
        self._send_policy = impapi.SUSPEND_ON_ERROR
        self._greeted = asyncio.Event()
        self._offered = asyncio.Event()
        self.net = _ConnectionManager(clock, self.led, env, self.mac, self.config.stage_times)

    # ------------------------------------------------------------ public surface

    def subscribe(self, callback: Callable[[DeviceRecord], Any]) -> None:
        """Call ``callback(record)`` for every event from now on."""
        self._subscribers.append(callback)

    async def wait_for(self, kind: DeviceEvent, timeout: float = 30.0,
                       since: int | None = None) -> DeviceRecord:
        """The first event of ``kind`` at or after index ``since`` (default: a new one).

        ``timeout`` is in loop (wall) seconds.
        """
        if since is not None:
            for record in self.events[since:]:
                if record.kind is kind:
                    return record
        future: asyncio.Future[DeviceRecord] = asyncio.get_running_loop().create_future()
        self._waiters.append((kind, future))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters = [(k, f) for k, f in self._waiters if f is not future]

    def power_on(self) -> None:
        """Boot: load settings, open the BlinkUp window, connect if configured."""
        if self.powered:
            return
        self.powered = True
        self.settings = self.store.load()
        self._lost = asyncio.Event()
        self._ops = asyncio.Lock()
        self._emit(DeviceEvent.POWERED_ON)
        if self.hardware_board.supply_voltage < self.config.brownout_v:
            # Too little supply to run the radio: the LED says so and nothing boots.
            self.led.handle(LedEvent.POWER_PROBLEM)
            self._emit(DeviceEvent.POWER_PROBLEM, self.hardware_board.supply_voltage)
            return
        self._open_window(self.config.blinkup_window_s)
        self._start_life(boot=True)

    async def power_off(self) -> None:
        """Cut the power: code stops, the link drops, the LED goes dark, settings stay."""
        if not self.powered:
            return
        self.powered = False
        self._close_window()
        self.runtime.stop()
        self.nv = None  # nv survives warm boots and deep sleep, not a power cut
        if self._flash_end is not None:  # the LED goes dark: no flash is in progress
            self._flash_end.cancel()
            self._flash_end = None
        self._flashing = False
        current = asyncio.current_task()
        tasks = [t for t in (self._life, *self._tasks) if t is not None and t is not current]
        if self._lost is not None:
            self._lost.set()  # a life waiting on its link wakes and sees the power is off
        await _cancel_and_wait(tasks)
        self._life = None
        await self._drop_cloud("power off")
        self.led.handle(LedEvent.POWER_OFF)
        self._emit(DeviceEvent.POWERED_OFF)

    def feed_light(self, samples: np.ndarray | Signal, sample_rate: float | None = None) -> None:
        """The light sensor sees ``samples`` (fractions of full scale at ``sample_rate``).

        A ``protocol.linecode.Signal`` carries its own rate. While the BlinkUp
        window is open the samples go to the BlinkUp receiver; always, the last
        sample is what ``hardware.lightlevel()`` reads. Malformed samples raise
        ``BadSamplesError`` and change nothing.
        """
        if isinstance(samples, Signal):
            sample_rate = samples.sample_rate
            samples = samples.samples
        data = np.asarray(samples, dtype=np.float64)
        if data.size:
            self.hardware_board.light = float(data[-1])
        if not (self.powered and self._listening):
            return
        rate = float(sample_rate or self.config.sensor_rate)
        rx = self._receiver
        if rx is None or rx.sample_rate != rate:
            rx = self._receiver = BlinkUpReceiver(
                rate, self._blinkup_started, self._blinkup_config, self._blinkup_error,
                self.config.blinkup_symbol_rate, self.config.blinkup_line_codes)
        rx.feed(data)

    def end_light(self) -> None:
        """The light stream is over (a flash ended, a capture ran out): the BlinkUp
        receiver decodes what it still holds (``BlinkUpReceiver.end``)."""
        if self.powered and self._listening and self._receiver is not None:
            self._receiver.end()

    def press(self, button: str = "footswitch", active_low: bool = True) -> None:
        """Press and release a button: a button model of the board by name (the
        fixture's ``footswitch``, ``green_btn``), else a bare pin by name, pulled to
        its active level and back."""
        try:
            model = self.hardware_board.model(button)
        except (KeyError, LookupError, PeripheralError):
            model = None
        if model is not None and hasattr(model, "tap"):
            model.tap(0.0)
            return
        pressed, released = (0.0, 1.0) if active_low else (1.0, 0.0)
        self.hardware_board.set_input(button, pressed)
        self.hardware_board.set_input(button, released)

    def on_flash(self, callback: Callable[[FixtureFlash], Any]) -> None:
        """Fixture side: call ``callback(flash)`` whenever ``server.factoryblinkup`` flashes."""
        self.subscribe(lambda r: callback(r.detail) if r.kind is DeviceEvent.BLINKUP_SENT
                       else None)

    @property
    def is_online(self) -> bool:
        return self._cloud is not None and self._cloud.connected

    @property
    def listening(self) -> bool:
        """True while the BlinkUp window is open."""
        return self._listening and self.powered

    # ------------------------------------------------------------ DeviceHost (imp API)

    def log(self, msg: str, error: bool = False) -> None:
        line = msg[: cl.MAX_LOG_LENGTH]
        self.logs.append(("ERROR: " if error and not line.startswith("ERROR") else "") + line)
        self._emit(DeviceEvent.LOG, line)
        kind = cl.LogType.SERVER_ERROR if error else cl.LogType.SERVER_LOG
        entry = cl.Log(self.device_id, msg=line, type=kind)
        if self.is_online:
            self._spawn(self._send_quiet(entry))
        elif len(self._unsent_logs) < self.config.log_buffer:
            self._unsent_logs.append(entry)

    def is_connected(self) -> bool:
        return self.is_online

    def bless(self, passed: bool, callback: Callable[[bool], None]) -> None:
        self._spawn(self._bless(passed, callback))

    def factory_blinkup(self, ssid: str, password: str, pin: Pin, flags: int) -> None:
        """Flash a factory BlinkUp; ignored (with a log line) while one is in progress.

        In progress means from this call until the flash's light has ended: the token
        request, then ``flash.duration`` on the device clock. Device code is held for
        all of it and resumes only after the flash is over (``_end_flash``), so a call
        queued behind the flash (a press, a timer due while the LED flashed) starts
        the next one; only a second call from the same callback is ignored.
        """
        if self._flashing:
            self.log("factoryblinkup already in progress; ignored")
            return
        self._flashing = True
        self.factory_blinkups += 1
        self.runtime.suspend(None)
        self._spawn(self._factory_blinkup(ssid, password, pin, flags))

    def on_shutdown(self, handler: Callable[[int], Any] | None) -> None:
        self._shutdown_handler = handler

    def restart(self) -> None:
        self._spawn(self._reboot("server.restart"))

    def clear_configuration(self, what: int) -> None:
        s = self.settings
        if what & impapi.CONFIG_WIFI:
            s.ssid, s.password = "", ""
        if what & impapi.CONFIG_STATIC_NETWORK:
            s.static_network = None
        if what & impapi.CONFIG_PROXY:
            s.proxy = None
        if what & impapi.CONFIG_ENROLMENT:
            s.plan_id, s.enrol_token = "", ""
            s.extra.pop("token_sent", None)
        self.store.save(s)

    def set_wifi(self, ssid: str, key: str) -> None:
        self.settings.ssid, self.settings.password = ssid, key
        self.store.save(self.settings)

    def set_enrol_tokens(self, plan_id: str, token: str) -> None:
        self.settings.plan_id, self.settings.enrol_token = plan_id.lower(), token.lower()
        self.store.save(self.settings)

    def get_ssid(self) -> str:
        return self.settings.ssid

    def net_info(self) -> dict[str, Any]:
        return self.net.info.as_dict()

    def enable_blinkup(self, enable: bool) -> None:
        if enable:
            self._open_window(None)
        else:
            self._close_window()

    def impos_version(self) -> str:
        return self.settings.impos_version

    def agent_send(self, name: str, data: Any) -> int:
        """Publish an ``agent_message``: 0 when handed to the link, else an error code.

        Offline the message is dropped and ``SEND_ERROR_NOT_CONNECTED`` returned, as
        a real imp does under its ``RETURN_ON_ERROR`` send policy (the default policy
        would block Squirrel while it reconnects, which one shared loop cannot do).
        A name or value the link cannot carry raises ``ImpApiError`` in device code.
        The ``agent_message`` event records every call, sent or not.
        """
        try:
            msg = cl.validate(cl.AgentMessage(self.device_id, name=name, value=data))
        except cl.CloudLinkError as err:
            raise ImpApiError(f"agent.send: {err}") from err
        self._emit(DeviceEvent.AGENT_MESSAGE, (name, data))
        if not self.is_online:
            return impapi.SEND_ERROR_NOT_CONNECTED
        self._spawn(self._send_after_busy(msg))
        return 0

    def device_now(self) -> float:
        """The device's own time: the shared clock, ahead by any ``imp.sleep`` still owed."""
        return max(self.clock.now(), self._busy_until)

    def busy(self, seconds: float) -> None:
        self._busy_until = self.device_now() + seconds
        self.runtime.hold(self._busy_until - self.clock.now())

    def deep_sleep(self, seconds: float) -> None:
        self.log(f"deep sleep for {seconds:g} s")
        self._spawn(self._deep_sleep(seconds))

    async def _deep_sleep(self, seconds: float) -> None:
        self.runtime.stop()
        old = self._life
        if old is not None:
            await _cancel_and_wait([old])
            self._life = None
        was_online = self.is_online
        await self._drop_cloud("deep sleep")
        if was_online:
            self._emit(DeviceEvent.OFFLINE)
        self.led.handle(LedEvent.POWER_OFF)
        await self.clock.sleep(seconds)
        if self.powered:
            self._start_life(boot=True)

    def server_connect(self, callback: Callable[[int], Any] | None, timeout: float) -> None:
        if self.is_online:
            if callback is not None:
                self.clock.call_later(0.0, lambda: callback(int(Reason.SERVER_CONNECTED)))
            return
        if callback is not None:
            self._connect_callbacks.append(callback)
            self.clock.call_later(timeout, lambda: self._connect_done(int(self.net.reason)
                                                                      or int(Reason.NO_SERVER),
                                                                      only=callback))
        self._manual_offline = False
        self._connect_wanted.set()

    def _connect_done(self, reason: int, only: Callable[[int], Any] | None = None) -> None:
        if only is not None:
            if only not in self._connect_callbacks:
                return
            self._connect_callbacks.remove(only)
            only(reason)
            return
        callbacks, self._connect_callbacks = self._connect_callbacks, []
        for callback in callbacks:
            callback(reason)

    def server_disconnect(self) -> None:
        self._manual_offline = True
        self._connect_wanted.clear()
        client, self._cloud = self._cloud, None  # offline from this moment on
        if client is not None:
            self._spawn(client.close("server.disconnect"))
        if self._lost is not None:
            self._lost.set()

    def on_unexpected_disconnect(self, handler: Callable[[int], Any] | None) -> None:
        self._unexpected_handler = handler

    def set_send_policy(self, policy: int) -> None:
        self._send_policy = policy

    def rssi(self) -> int:
        return int(self.net.info.rssi) if self.is_online else 0

    def memory_free(self) -> int:
        """A fixed budget per imp type (ours: the emulator does not count the VM's use)."""
        return self.config.memory_free.get(self.imp_type, 81_920)

    def agent_handler(self, name: str, handler: Callable[[Any], Any] | None) -> None:
        if handler is None:
            self._agent_handlers.pop(name, None)
        else:
            self._agent_handlers[name] = handler

    def agent_deliver(self, name: str, data: Any = None) -> bool:
        """The agent sends ``name`` to the device; False when no ``agent.on`` handler."""
        handler = self._agent_handlers.get(name)
        if handler is None:
            return False
        handler(data)
        return True

    # ------------------------------------------------------------ events

    def _emit(self, kind: DeviceEvent, detail: Any = None) -> None:
        record = DeviceRecord(self.clock.now(), kind, detail)
        self.events.append(record)
        for callback in list(self._subscribers):
            try:
                callback(record)
            except Exception:  # an observer's bug must not break the device
                log.exception("device %s: subscriber failed", self.device_id)
        for k, future in self._waiters:
            if k is kind and not future.done():
                future.set_result(record)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("device %s: task failed", self.device_id, exc_info=task.exception())

    def _runtime_log(self, msg: str, error: bool) -> None:
        self.log(msg, error)
        if error:
            self._emit(DeviceEvent.CODE_ERROR, msg)

    # ------------------------------------------------------------ BlinkUp window

    def _open_window(self, seconds: float | None) -> None:
        self._close_window()
        self._listening = True
        if seconds is not None:
            self._window = self.clock.call_later(seconds, self._window_expired)

    def _close_window(self) -> None:
        if self._window is not None:
            self._window.cancel()
            self._window = None
        self._listening = False
        self._receiver = None

    def _window_expired(self) -> None:
        self._window = None
        if self._receiver is not None and self._receiver.receiving:
            self._window = self.clock.call_later(1.0, self._window_expired)
            return
        self._close_window()
        self._emit(DeviceEvent.BLINKUP_WINDOW_CLOSED)

    def _blinkup_started(self) -> None:
        self.led.handle(LedEvent.BLINKUP_START)
        self._emit(DeviceEvent.BLINKUP_STARTED)

    def _blinkup_error(self, err: BlinkUpError) -> None:
        self.led.handle(LedEvent.BLINKUP_BAD)
        self._emit(DeviceEvent.BLINKUP_FAILED, str(err))

    def _blinkup_config(self, cfg: BlinkUpConfig) -> None:
        s = self.settings
        if cfg.clear:
            s.ssid = s.password = s.plan_id = s.enrol_token = ""
            s.static_network = s.proxy = None
            s.extra.pop("token_sent", None)
        if cfg.ssid is not None:
            s.ssid = cfg.ssid.decode("utf-8", "replace")
            s.password = (cfg.password or b"").decode("utf-8", "replace")
        if cfg.enrolment is not None:
            s.plan_id, s.enrol_token = cfg.enrolment
            s.extra.pop("token_sent", None)
        if cfg.static_network is not None:
            s.static_network = {"ip": cfg.static_network.ip}
        if cfg.proxy is not None:
            px = cfg.proxy
            s.proxy = {"server": px.server, "port": px.port, "username": px.username,
                       "password": px.password}
        self.store.save(s)
        self.led.handle(LedEvent.BLINKUP_GOOD)
        self._emit(DeviceEvent.BLINKUP_OK, cfg)
        self._start_life(boot=False)

    # ------------------------------------------------------------ life: connect, session

    def _start_life(self, boot: bool) -> None:
        old = self._life
        if old is not None and old is not asyncio.current_task():
            old.cancel()
        self._life = asyncio.get_running_loop().create_task(self._live(old, boot))

    async def _live(self, previous: asyncio.Task[None] | None, boot: bool) -> None:
        if previous is not None and previous is not asyncio.current_task():
            await _cancel_and_wait([previous])
        await self._drop_cloud("restart")
        self.runtime.stop()
        if boot:
            await self.clock.sleep(self.config.boot_s)
        while self.powered:
            if not self.settings.has_network:
                self.led.handle(LedEvent.UNCONFIGURED)
                return  # waits for BlinkUp (or code that sets WiFi and restarts)
            assert self._lost is not None
            self._lost.clear()
            self._greeted.clear()
            self._offered.clear()
            static = (self.settings.static_network or {}).get("ip")
            await self.net.connect_with_retries(
                self.settings.ssid, self.settings.password, static, self._open_cloud,
                on_failure=lambda err: self._emit(DeviceEvent.CONNECT_FAILED, err.reason),
                proxy=self.settings.proxy,
            )
            self._emit(DeviceEvent.ONLINE)
            self._connect_done(int(Reason.SERVER_CONNECTED))
            if self._cloud is not None:  # what came after the welcome, now it is our link
                self._cloud.release()
            await self._after_online()
            await self._lost.wait()
            # Code keeps running offline (logs are buffered); the impOS reconnects,
            # unless the code took the link down itself or asked to handle a drop.
            self._emit(DeviceEvent.OFFLINE)
            if (not self._manual_offline and self._unexpected_handler is not None
                    and self._send_policy != impapi.SUSPEND_ON_ERROR):
                self._manual_offline = True
                self._connect_wanted.clear()
                handler = self._unexpected_handler
                handler(int(Reason.NO_SERVER))
            if self._manual_offline:
                await self._connect_wanted.wait()

    async def _open_cloud(self) -> None:
        host, port = parse_url(self.server_url)
        s = self.settings
        if not s.registered:
            await self._register(host, port)
        client = self._client(host, port)
        try:
            await client.connect()
        except BrokerRefused:
            # the broker does not know our account (it lost its accounts): once more
            await self._register(host, port)
            client = self._client(host, port)
            await client.connect()
        enrol = s.enrolled and s.extra.get("token_sent") != s.enrol_token
        try:
            try:
                reply = await self._hello(client, enrol)
            except StaleLinkKey:
                # the cloud seals with a key this module no longer has: register again
                # (a new key and password), once per connection attempt
                await client.close("stale link key")
                await self._register(host, port)
                client = self._client(host, port)
                await client.connect()
                reply = await self._hello(client, enrol)
        except CloudRefused as err:
            await client.close("refused")
            self._emit(DeviceEvent.ENROL_REFUSED, err.code.value)
            raise ConnectionFailed(int(Reason.NOT_AUTHORISED), str(err)) from err
        except CloudClientError as err:
            await client.close("no welcome")
            raise ConnectionFailed(int(Reason.NO_SERVER), str(err)) from err
        self._cloud = client
        if isinstance(reply, cl.Welcome):
            self.blessed = reply.blessed
            if enrol:
                s.extra["token_sent"] = s.enrol_token
                self.store.save(s)
                self._emit(DeviceEvent.ENROLLED, reply.plan_id)

    async def _hello(self, client: CloudClient, enrol: bool) -> cl.Message:
        """Say hello on ``client`` until welcome; ``StaleLinkKey`` once
        ``STALE_WELCOMES`` welcomes came sealed with another key."""
        s = self.settings
        hello = cl.Hello(
            self.device_id, req=client.next_req(), mac=self.mac,
            impos_version=s.impos_version, imp_type=self.imp_type,
            deployment=s.deployment_id or None,
            plan_id=s.plan_id if enrol else None, token=s.enrol_token if enrol else None,
            session=client.session,
        )
        stale: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._bad_welcomes, self._stale_link = 0, stale
        answer = asyncio.ensure_future(
            client.request(hello, resend_every=HELLO_RESEND, hold=True))
        try:
            racing: set[asyncio.Future[Any]] = {answer, stale}
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
            if answer.done():
                return answer.result()
        finally:
            self._stale_link = None
            if not answer.done():
                answer.cancel()
                await asyncio.wait({answer})
        raise StaleLinkKey(f"{STALE_WELCOMES} welcomes sealed with another link key")

    def _client(self, host: str, port: int) -> CloudClient:
        s = self.settings
        return CloudClient(self.device_id, host, port, self._on_message, self._on_lost,
                           password=s.broker_password, link_key=bytes.fromhex(s.link_key),
                           on_ignored=self._on_ignored)

    async def _register(self, host: str, port: int) -> None:
        """Get this module's own broker account (firmware/registration.py) and keep it."""
        if self.module_key is None:
            self.module_key = linksec.module_key(maker_secret(), self.device_id)
        credentials = await register(host, port, self.device_id, self.module_key)
        s = self.settings
        s.broker_password, s.link_key = credentials.password, credentials.link_key.hex()
        self.store.save(s)
        self._emit(DeviceEvent.REGISTERED, credentials.attempts)

    def _on_ignored(self, topic: str, why: str) -> None:
        """A message on our topics that the cloud did not seal for us: never acted on."""
        kind = topic.rsplit("/", 1)[-1][:40]
        self._ignore(f"{kind}: {why}")
        stale = self._stale_link
        if kind == cl.Welcome.KIND and stale is not None and not stale.done():
            self._bad_welcomes += 1  # only the cloud may publish on our topics
            if self._bad_welcomes >= STALE_WELCOMES:
                stale.set_result(None)
        elif kind == cl.BlessAnswer.KIND and stale is None:
            # the key went stale while online (the late attempt landed after our hello):
            # the blessing's answers cannot be read, so take the link down; the hello
            # on the next one finds the key stale and registers again
            client = self._cloud
            if client is not None and client.waiting:
                self._bad_welcomes += 1
                if self._bad_welcomes >= STALE_WELCOMES:
                    self._bad_welcomes = 0
                    self._spawn(self._relink(client, "stale link key"))

    async def _relink(self, client: CloudClient, reason: str) -> None:
        """Close ``client`` and go through losing the link: the device reconnects."""
        await client.close(reason)
        if self._cloud is client:
            self._on_lost()

    def _ignore(self, what: str) -> None:
        log.warning("device %s ignored %s", self.device_id, what)
        self.logs.append(f"ignored {what}")
        self._emit(DeviceEvent.IGNORED, what)

    async def _after_online(self) -> None:
        unsent, self._unsent_logs = self._unsent_logs, []
        for entry in unsent:
            await self._send_quiet(entry)
        await self._report()
        # Run the code kept in flash unless the cloud offers other code. The cloud
        # sends assignment, configparams and any offer right after welcome, in
        # order; code must not start before its configparams are known.
        # (asyncio.timeout, not wait_for: in Python 3.11 wait_for can swallow the life
        # task's cancel at power-off when it races with the timeout, gh-86296.)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(GREETING_TIMEOUT):
                await self._greeted.wait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(OFFER_GRACE):
                await self._offered.wait()
        s = self.settings
        assert self._ops is not None
        async with self._ops:
            if not self.runtime.running and not self._offered.is_set() and s.device_code:
                await self._apply_code(s.device_code, s.deployment_id)

    def _on_lost(self) -> None:
        self._cloud = None
        if self._lost is not None:
            self._lost.set()

    async def _drop_cloud(self, reason: str) -> None:
        client, self._cloud = self._cloud, None
        if client is not None:
            await client.close(reason)

    async def _send_quiet(self, msg: cl.Message) -> None:
        client = self._cloud
        if client is None:
            return
        with contextlib.suppress(CloudClientError):
            await client.send(msg)

    async def _report(self) -> None:
        await self._send_quiet(cl.StateReport(
            self.device_id, connection=Reason(self.net.reason).name, led=self.led.state.value,
            impos_version=self.settings.impos_version, deployment=self.deployment,
        ))

    def _on_message(self, msg: cl.Message) -> None:
        if isinstance(msg, cl.Assignment):
            self.group_type = msg.group_type
            self.blessed = msg.blessed
            self._emit(DeviceEvent.ASSIGNED, msg.group_type)
        elif isinstance(msg, cl.ConfigParams):
            self.configparams = dict(msg.params)
            self._greeted.set()
        elif isinstance(msg, cl.OsOffer):
            self._offered.set()
            self._spawn(self._update_impos(msg))
        elif isinstance(msg, cl.CodeOffer):
            self._offered.set()
            self._spawn(self._load_code(msg))
        elif isinstance(msg, cl.Restart):
            self._spawn(self._reboot(msg.reason))
        elif isinstance(msg, cl.DeviceMessage):
            # The agent's device.send: no agent.on handler means dropped, and impOS logs
            # it (Electric Imp's "no handler for device.send()" troubleshooting note).
            if not self.agent_deliver(msg.name, msg.value):
                self.log("ERROR: no handler for device.send()", error=True)
        elif isinstance(msg, cl.ShutdownNotice):
            handler = self._shutdown_handler
            if handler is not None and self.runtime.running:
                handler(int(msg.reason))
            else:
                self._spawn(self._reboot(f"shutdown {msg.reason.name}"))
        else:  # an answer nobody is waiting for (a bless answer we never asked for ...)
            self._ignore(f"{msg.KIND}: nothing asked for it")

    async def _reboot(self, why: str) -> None:
        self.log(f"restarting: {why}")
        self._shutdown_handler = None
        self.runtime.stop()
        self._start_life(boot=True)

    # ------------------------------------------------------------ images

    async def _update_impos(self, offer: cl.OsOffer) -> None:
        assert self._ops is not None
        async with self._ops:
            client = self._cloud
            if client is None or offer.version == self.settings.impos_version:
                return
            self.runtime.stop()
            self.led.handle(LedEvent.UPDATE_START)
            self._emit(DeviceEvent.IMPOS_UPDATING, offer.version)
            try:
                await fetch_blocks(client, offer.image, blocks=self._partial(offer.image.sha),
                                   on_bad_block=self._bad_block(offer.image.sha))
            except (FirmwareImageError, CloudClientError) as err:
                self._emit(DeviceEvent.IMAGE_FAILED, str(err))
                self.led.handle(LedEvent.UPDATE_DONE)
                self._start_life(boot=True)
                return
            self._partials.pop(offer.image.sha, None)  # whole now: its blocks are not kept
            await self.clock.sleep(self.config.impos_install_s)
            self.settings.impos_version = offer.version
            self.store.save(self.settings)
            self.led.handle(LedEvent.UPDATE_DONE)
            self._emit(DeviceEvent.IMPOS_UPDATED, offer.version)
            self._start_life(boot=True)

    def _partial(self, sha: str) -> Blocks:
        """Blocks of image ``sha`` kept across a lost link (one image at a time)."""
        if sha not in self._partials:
            self._partials = {sha: {}}
        return self._partials[sha]

    def _bad_block(self, sha: str) -> Callable[[int, str], None]:
        """Record each damaged block of image ``sha`` (it is asked for again)."""
        return lambda index, why: self._emit(DeviceEvent.BLOCK_REFETCHED, (sha, index, why))

    def sever_link(self) -> bool:
        """Test hook: the network drops the cloud connection under the device."""
        if self._cloud is None:
            return False
        self._cloud.sever()
        return True

    async def _load_code(self, offer: cl.CodeOffer) -> None:
        assert self._ops is not None
        async with self._ops:
            client = self._cloud
            if client is None:
                return
            if offer.deployment == self.deployment and self.runtime.running:
                return
            try:
                image = await fetch_image(client, offer.device,
                                          blocks=self._partial(offer.device.sha),
                                          on_bad_block=self._bad_block(offer.device.sha))
                self._partials.pop(offer.device.sha, None)  # whole now: blocks not kept
                # one copy of a deployment's code however many devices run it
                source = sys.intern(image.decode("utf-8"))
            except (FirmwareImageError, CloudClientError, UnicodeDecodeError) as err:
                self._emit(DeviceEvent.IMAGE_FAILED, str(err))
                self.log(f"code download failed: {err}", error=True)
                return
            s = self.settings
            s.device_code, s.deployment_id, s.code_sha = source, offer.deployment, offer.sha
            self.store.save(s)
            await self._apply_code(source, offer.deployment)

    async def _apply_code(self, source: str, deployment: str) -> None:
        if not self.powered:
            # A device whose power is off runs nothing, whatever path got here: its
            # tasks are cancelled at power-off, but a wait_for inside one (an image
            # fetch) can swallow that cancel in Python 3.11 (gh-86296) and go on a
            # second longer, until cancelled again.
            return
        self._shutdown_handler = None
        self._agent_handlers.clear()
        self.deployment = deployment or None
        self.led.handle(LedEvent.NEW_CODE)
        self._emit(DeviceEvent.CODE_STARTED, deployment)
        if self.group_type in DUT_GROUP_TYPES:
            self._emit(DeviceEvent.TESTING, deployment)
        try:
            self.runtime.start(source, self.engine_for(source))
        except DeviceCodeError as err:
            self._emit(DeviceEvent.CODE_ERROR, str(err))
        await self._report()

    def engine_for(self, source: str) -> Engine:
        """The engine that runs ``source``: Squirrel, unless it is marked as Python."""
        if is_python_code(source):
            return PythonEngine(impapi.build_api(self, self.runtime), owner=self.device_id)
        from impfactory.firmware.sq_engine import SquirrelEngine  # the VM loads on first use

        return SquirrelEngine(self, self.runtime)

    # ------------------------------------------------------------ bless, factory BlinkUp

    async def _caught_up(self) -> None:
        """Wait until the shared clock reaches the device's own time.

        ``imp.sleep`` moves the device on at once (its code is held meanwhile): what
        its code then asks of the world (a bless, a token, a message) leaves when the
        world's time has caught up, as on an imp that was busy all along. Without
        this a bless answer could arrive, and new code be offered, while the code
        that asked was still asleep.
        """
        delay = self._busy_until - self.clock.now()
        if delay > 0:
            await self.clock.sleep(delay)

    async def _send_after_busy(self, msg: cl.Message) -> None:
        await self._caught_up()
        await self._send_quiet(msg)

    async def _bless(self, passed: bool, callback: Callable[[bool], None]) -> None:
        await self._caught_up()
        if not passed:
            client = self._cloud
            self.led.handle(LedEvent.TEST_FAILED)
            self._emit(DeviceEvent.TEST_FAILED)
            callback(False)
            if client is not None:
                req = cl.BlessRequest(self.device_id, req=client.next_req(), passed=False)
                with contextlib.suppress(CloudClientError):
                    await client.request(req)
            return
        blessed, reason = await self._ask_blessing()
        try:
            if blessed:
                self.blessed = True
                self.led.handle(LedEvent.BLESSED)
                self._emit(DeviceEvent.BLESSED)
            else:
                self.led.handle(LedEvent.TEST_FAILED)
                self._emit(DeviceEvent.BLESS_REFUSED, reason)
            callback(blessed)
        finally:
            if self._cloud is not None:  # what came behind the answer (the production
                self._cloud.release()    # group's assignment), now the answer is handled

    async def _ask_blessing(self) -> tuple[bool, str]:
        """Ask the cloud to bless this device: (blessed, why not).

        Every ask names the same attempt, so however often a lost answer makes the
        device ask again (``_request_patiently``), the cloud blesses once and answers
        a repeat of the blessing call "blessed" (cloud/rules.py).
        """
        attempt = secrets.token_hex(8)
        try:
            reply = await self._request_patiently(lambda client: cl.BlessRequest(
                self.device_id, req=client.next_req(), passed=True, attempt=attempt),
                hold=True)
        except CloudRefused as err:
            return False, err.code.value
        except CloudClientError as err:
            return False, str(err)
        if isinstance(reply, cl.BlessAnswer):
            return reply.blessed, reply.reason
        return False, f"unexpected answer {reply.KIND}"

    async def _request_patiently(self, make: Callable[[CloudClient], cl.Message],
                                 hold: bool = False) -> cl.Message:
        """One request to the cloud, as impOS makes it under ``SUSPEND_ON_ERROR``.

        Offline, it waits for the link; when the link drops or the cloud does not
        answer (a broker or cloud restarting after a crash) it asks again, every
        ``HELLO_RESEND`` seconds, for ``LINK_PATIENCE`` loop seconds in all. A refusal
        is an answer: raised at once. ``hold``: what follows the answer waits for the
        link's ``release`` (``CloudClient.request``).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINK_PATIENCE
        while True:
            client = await self._await_link(deadline - loop.time())
            if client is None:
                raise CloudClientError("not connected")
            try:
                return await client.request(
                    make(client), timeout=max(0.1, min(REQUEST_TIMEOUT, deadline - loop.time())),
                    resend_every=HELLO_RESEND, hold=hold)
            except CloudRefused:
                raise
            except CloudClientError:
                if loop.time() >= deadline or not self.powered:
                    raise
                await asyncio.sleep(0.05)  # until the link's loss is seen, then again

    async def _await_link(self, patience: float) -> CloudClient | None:
        """The cloud link, once the device is (back) online; ``None`` after ``patience``
        loop seconds offline, or when the code took the link down itself."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while self._cloud is None or not self._cloud.connected:
            if self._manual_offline or not self.powered or loop.time() >= deadline:
                return None
            await asyncio.sleep(0.05)
        return self._cloud

    async def _factory_blinkup(self, ssid: str, password: str, pin: Pin, flags: int) -> None:
        await self._caught_up()
        try:
            reply = await self._request_patiently(
                lambda client: cl.FactoryTokenRequest(self.device_id, req=client.next_req()))
            if not isinstance(reply, cl.FactoryToken):
                raise CloudClientError(f"unexpected answer {reply.KIND}")
        except CloudClientError as err:
            self.log(cl.FACTORY_REFUSED_LOG if isinstance(err, CloudRefused)
                     else f"factoryblinkup failed: {err}", error=True)
            self._emit(DeviceEvent.FACTORY_REFUSED, str(err))
            self._end_flash()
            return
        flash = render_fixture_flash(
            ssid, password, reply.plan_id, reply.token, pin.name,
            fast=bool(flags & impapi.BLINKUP_FAST),
            active_high=bool(flags & impapi.BLINKUP_ACTIVEHIGH),
            start=self.clock.now(), device_id=self.device_id,
        )
        self._emit(DeviceEvent.BLINKUP_SENT, flash)
        pin.show_signal(flash)
        # One timer ends the flash: two (a runtime resume and this task's sleep) let
        # held code run, and call factoryblinkup, before the flag cleared.
        self._flash_end = self.clock.call_later(flash.duration, self._end_flash)

    def _end_flash(self) -> None:
        """The flash is over: clear the flag first, then let held device code run."""
        self._flash_end = None
        self._flashing = False
        self.runtime.suspend(0.0)


class DeviceClock:
    """The device's own time for its board's models: the shared clock, plus any
    ``imp.sleep`` the device still owes (a busy-wait moves only this device on)."""

    def __init__(self, device: Device) -> None:
        self._device = device
        self._clock = device.clock

    def now(self) -> float:
        return self._device.device_now()

    async def sleep(self, seconds: float) -> None:
        await self._clock.sleep(self._shared(seconds))

    def call_later(self, seconds: float, callback: Callable[[], Any]) -> TimerHandle:
        return self._clock.call_later(self._shared(seconds), callback)

    def _shared(self, seconds: float) -> float:
        """Shared-clock seconds until ``seconds`` from the device's now."""
        return max(0.0, self.now() + seconds - self._clock.now())


async def _cancel_and_wait(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until they have finished.

    ``asyncio.wait`` (not ``await task``) so a cancellation of the *caller* is never
    swallowed; cancelled again each second because ``asyncio.wait_for`` in Python
    3.11 can swallow a cancel that races with its own completion (gh-86296).
    """
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
