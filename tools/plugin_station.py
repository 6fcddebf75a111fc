"""A fixture and the DUTs placed in front of it, for synchronous pytest tests.

``Product.add_fixture()`` (plugin_product) gives a ``Fixture``: an emulated imp005
on a Factory BlinkUp Box, enrolled in the account, assigned to a fixture group
and running that group's firmware. ``fixture.blinkup(...)`` places a fresh DUT (an
emulated imp001 on an impExplorer Kit with the test jig wiring pin2 to pin5) in
front of its LED, presses the footswitch and shines the flash through the optical
channel; it returns a ``Dut`` as soon as the light is over. The DUT then lives on
by itself (WiFi, cloud, DUT firmware, bless, application) while the test waits on
it::

    dut = fixture.blinkup(temperature=60.0)           # a board too hot for its limits
    assert dut.wait_for("blessed", "test_failed") == "test_failed"
    assert_led_sequence(dut, ["blinkup_ok", "online", "test_failed"])

Every device runs on the product's cloud loop (one asyncio loop in a thread); the
handles below only ask that loop, so a test stays plain synchronous code. Waits
are in wall seconds; device time runs ``scale`` times faster (100 by default), so
a 10 s re-trigger guard costs a tenth of a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from impfactory.errors import ImpFactoryError
from impfactory.firmware.device import Device
from impfactory.firmware.events import DeviceEvent
from impfactory.firmware.examples import DUT_IMP, dut_board
from impfactory.firmware.fleet import Fleet
from impfactory.firmware.settings import MemoryStore, Settings
from impfactory.firmware.wifi import AccessPoint, WifiEnvironment
from impfactory.fixture.blinkup_fixture import BlinkUpFixture, OpticalEmitter
from impfactory.hw.optical import OpticalChannel, OpticalConfig
from impfactory.loopthread import LoopThread
from impfactory.protocol.statusled import LedState

__all__ = ["EVENTS", "Dut", "Fixture", "WaitTimeout"]

T = TypeVar("T")

#: Every status-LED state name ``Dut.wait_for_led`` knows.
LED_STATES: tuple[str, ...] = tuple(s.value for s in LedState)
#: Every event name ``Dut.wait_for`` knows (docs/device.md, "Stage events").
EVENTS: tuple[str, ...] = tuple(e.value for e in DeviceEvent)
#: Wall seconds a wait lasts unless told otherwise.
WAIT_S = 30.0
#: Wall seconds between two looks at a status LED (its timeline has no waiters).
LED_POLL_S = 0.01
#: Device seconds between switching a DUT on and pressing the footswitch.
PLACE_S = 1.0


class WaitTimeout(ImpFactoryError, TimeoutError):
    """A device did not do what a test waited for; the message says what it did instead."""


@dataclass
class _Loop:
    """The product's loop thread and fleet, shared by its handles."""

    thread: LoopThread
    fleet: Fleet
    wifi: tuple[str, str]
    #: The impOS a device ships with, and the older one of ``outdated_impos`` DUTs (they
    #: update first when the product requires a newer one: ``imp_product(min_impos=)``).
    impos: str
    impos_outdated: str
    #: The cloud's ``send_to_device(device_id, name, data) -> bool`` (an agent's
    #: ``device.send``), called on the loop.
    send_to_device: Callable[[str, str, Any], bool]

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        return self.thread.call(fn, *args)

    def run(self, coro: Any, timeout: float) -> Any:
        return self.thread.run(coro, timeout)


class _Imp:
    """What a fixture and a DUT share: a device on the product's loop, its log, its board."""

    def __init__(self, loop: _Loop, device: Device) -> None:
        self._loop = loop
        self._device = device
        #: Event index where waits start looking (a DUT's placement; a fixture's start).
        self._since = 0
        self.device_id: str = device.device_id
        self.mac: str = device.mac

    @property
    def logs(self) -> list[str]:
        """Its ``server.log``/``server.error`` lines and runtime errors."""
        return self._loop.call(lambda: list(self._device.logs))

    def model(self, name: str) -> Any:
        """A model on its board by name (docs/peripherals.md)."""
        return self._loop.call(self._device.hardware_board.model, name)

    def wait_for_log(self, text: str, timeout: float = WAIT_S) -> str:
        """Wait until it logs a line containing ``text`` (a DUT: since it was placed,
        activated or switched on, as ``wait_for``); return that line."""
        async def seek() -> str | None:
            device = self._device
            seen = self._since
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                records = device.events[seen:]
                for record in records:
                    if record.kind is DeviceEvent.LOG and text in str(record.detail):
                        return str(record.detail)
                seen += len(records)
                left = deadline - loop.time()
                if left <= 0:
                    return None
                try:
                    await device.wait_for(DeviceEvent.LOG, left)
                except TimeoutError:
                    return None

        found = self._loop.run(seek(), timeout + 5.0)
        if found is None:
            raise WaitTimeout(self._told(f"logged no line with {text!r} within {timeout:g} s"))
        return str(found)

    def _told(self, what: str) -> str:
        logs = self.logs[-5:]
        return f"{self!r} {what}" + (f"; last log lines: {logs}" if logs else "")


class Dut(_Imp):
    """One device under test, placed by a ``Fixture``; read it, wait on it, talk to it.

    Names are those of docs/device.md: events (``blinkup_ok``, ``online``,
    ``testing``, ``blessed``, ``test_failed``, ``code_started`` ...) and status-LED
    states (``waiting_blinkup``, ``blinkup_ok``, ``online``, ``blessed`` ...).
    """

    def __repr__(self) -> str:
        return f"Dut({self.device_id})"

    # -- what it did ---------------------------------------------------------------
    @property
    def events(self) -> list[str]:
        """Its stage events so far, in order (``log`` and ``agent_message`` left out)."""
        return self._loop.call(lambda: [r.kind.value for r in self._device.events
                                        if r.kind not in (DeviceEvent.LOG,
                                                          DeviceEvent.AGENT_MESSAGE)])

    @property
    def led_states(self) -> list[str]:
        """The states its status LED showed, in order, a repeat shown once."""
        return self._loop.call(lambda: [s.value for s in self._device.led.states()])

    @property
    def blessed(self) -> bool:
        """Whether the cloud told it it is blessed."""
        return bool(self._loop.call(lambda: self._device.blessed))

    @property
    def agent_messages(self) -> list[tuple[str, Any]]:
        """Every ``agent.send(name, data)`` it made, as ``(name, data)``."""
        return self._loop.call(lambda: [r.detail for r in self._device.events
                                        if r.kind is DeviceEvent.AGENT_MESSAGE])

    @property
    def testresult(self) -> dict[str, Any] | None:
        """The last ``agent.send("testresult", {...})`` of its DUT firmware, or ``None``."""
        found = [data for name, data in self.agent_messages
                 if name == "testresult" and isinstance(data, dict)]
        return found[-1] if found else None

    def model(self, name: str) -> Any:
        """A model on its board by name (docs/peripherals.md): ``sensor`` (HTS221:
        ``temperature``, ``humidity``), ``rgb`` (WS2812: ``colors``), ... Read it; to
        change a reading use ``set(name, attribute, value)``."""
        return self._loop.call(self._device.hardware_board.model, name)

    def set(self, model: str, attribute: str, value: Any) -> None:
        """Change what a model of its board reads, e.g. ``set("sensor", "temperature", 30)``."""
        target = self.model(model)
        if not hasattr(target, attribute):
            raise AttributeError(f"model {model!r} has no {attribute!r}")
        self._loop.call(setattr, target, attribute, value)

    # -- waiting ---------------------------------------------------------------------
    def wait_for(self, *names: str, timeout: float = WAIT_S, after: str | None = None) -> str:
        """Wait until it has done one of the events ``names`` (since it was placed, or
        since its last ``after`` event); return the one it did. On timeout a
        ``WaitTimeout`` says what it did instead."""
        if not names:
            raise TypeError("wait_for needs at least one event name")
        unknown = [n for n in (*names, *([after] if after else [])) if n not in EVENTS]
        if unknown:
            raise ValueError(f"unknown event(s) {', '.join(map(repr, unknown))}; events: "
                             f"{', '.join(EVENTS)}")
        kinds = [DeviceEvent(n) for n in names]

        async def first() -> str | None:
            device = self._device
            since = self._since
            if after is not None:
                marks = [i for i, r in enumerate(device.events)
                         if i >= since and r.kind.value == after]
                if not marks:
                    await device.wait_for(DeviceEvent(after), timeout, since=since)
                    marks = [i for i, r in enumerate(device.events)
                             if i >= since and r.kind.value == after]
                since = marks[-1] + 1
            waits = [asyncio.ensure_future(device.wait_for(k, timeout, since=since))
                     for k in kinds]
            done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            results = [t.result() for t in done if t.exception() is None]
            return min(results, key=lambda r: r.time).kind.value if results else None

        try:
            found = self._loop.run(first(), timeout + 5.0)
        except TimeoutError:
            found = None
        if found is None:
            raise WaitTimeout(self._told(f"did not do {' or '.join(names)}"
                                         + (f" after {after}" if after else "")
                                         + f" within {timeout:g} s"))
        return str(found)

    def wait_for_led(self, state: str, timeout: float = WAIT_S) -> None:
        """Wait until its status LED shows ``state`` (docs/device.md's names), since it was
        placed. The LED lags the events: connection stages during the 3 s BlinkUp green
        show when the green ends, so wait on the LED for what an operator would see."""
        if state not in LED_STATES:
            raise ValueError(f"unknown LED state {state!r}; states: {', '.join(LED_STATES)}")

        async def seen() -> bool:
            device = self._device
            start = device.events[self._since].time if self._since < len(device.events) \
                else device.clock.now()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while loop.time() < deadline:
                if any(s.value == state and t >= start for t, s in device.led.timeline):
                    return True
                await asyncio.sleep(LED_POLL_S)
            return False

        if not self._loop.run(seen(), timeout + 5.0):
            raise WaitTimeout(self._told(f"never showed {state} within {timeout:g} s"))

    def _told(self, what: str) -> str:
        logs = self.logs[-5:]
        return (f"{self!r} {what}; it did {' > '.join(self.events) or 'nothing'}; "
                f"LED {' > '.join(self.led_states)}"
                + (f"; last log lines: {logs}" if logs else ""))

    # -- acting on it ----------------------------------------------------------------
    def send(self, name: str, data: Any = None) -> bool:
        """Send a message to it as its agent would (``device.send``): its ``agent.on(name)``
        handler runs. False when it is offline."""
        return bool(self._loop.call(self._loop.send_to_device, self.device_id, name, data))

    def power_off(self) -> None:
        self._loop.run(self._device.power_off(), 30.0)

    def power_on(self) -> None:
        """Switch it on again (its stored settings, if it kept any, take it online);
        waits look from here on."""
        def on() -> None:
            self._since = len(self._device.events)
            self._device.power_on()

        self._loop.call(on)


class Fixture(_Imp):
    """An emulated BlinkUp fixture running its group's firmware, with DUTs to place.

    ``logs``, ``wait_for_log(text)`` and ``model(name)`` (its Factory BlinkUp Box:
    ``lcd``, ``led_green``, ``led_red`` ...) as a DUT's."""

    def __init__(self, loop: _Loop, device: Device) -> None:
        super().__init__(loop, device)
        self._station = BlinkUpFixture(device, loop.fleet.clock)

    def __repr__(self) -> str:
        return f"Fixture({self.device_id})"

    def blinkup(self, dut: Dut | None = None, *, temperature: float = 22.5,
                humidity: float = 40.0, voltage: float = 3.3, loopback: bool = True,
                sensor: bool = True, faults: Sequence[str] = (), offset_mm: float = 0.0,
                wifi_password: str | None = None, outdated_impos: bool = False,
                timeout: float = WAIT_S) -> Dut:
        """Place a DUT, press the footswitch, shine the flash into it; return the DUT.

        A new DUT's board: its HTS221 reads ``temperature`` and ``humidity``
        (``sensor=False``: it does not answer), the supply is ``voltage``, the jig's
        pin2-pin5 wire is there unless ``loopback=False``, ``faults`` are board-model
        faults (``"sensor.wrong_id=0"``, as ``impfactory test --fault``).
        ``offset_mm`` moves it off the emitter's axis (10 mm: it never decodes),
        ``wifi_password`` gives the factory's access point another key than the one
        the fixture flashes, ``outdated_impos`` ships it with an older impOS than the
        product requires (``imp_product(min_impos=...)``): it updates first. Pass an earlier
        ``dut`` to place it again (switched off and on, as an operator would).
        """
        loop = self._loop
        if dut is None:
            board = dut_board(temperature=temperature, voltage=voltage, loopback=loopback,
                              sensor=sensor, humidity=humidity)
            for fault in faults:
                board.set_fault(fault)
            ssid, password = loop.wifi
            env = WifiEnvironment([AccessPoint(ssid, wifi_password or password)])
            device = loop.call(lambda: loop.fleet.add(
                store=MemoryStore(Settings(
                    impos_version=loop.impos_outdated if outdated_impos else loop.impos)),
                hardware=board, env=env, imp_type=DUT_IMP))
            dut = Dut(loop, device)
        target = dut._device
        channel = OpticalChannel(OpticalConfig(offset_mm=offset_mm), rng=1)

        async def place() -> None:
            if target.powered:
                await target.power_off()
            dut._since = len(target.events)
            target.power_on()  # the operator switches it on in front of the LED ...
            await loop.fleet.clock.sleep(PLACE_S)  # ... and reaches for the footswitch
            await self._station.blinkup(OpticalEmitter(channel, target, loop.fleet.clock))

        loop.run(place(), timeout)
        return dut
