"""The emulated bench's contents: an emulated imp as the DUT, and a stand-in fixture.

``hw.bench_emulated.EmulatedBenchController`` serves the bench protocol for a
``BenchTarget``; this is the target ``impfactory bench emulate`` (and the pytest
plugin's ``bench_port``, and the bench line's tests) put on it::

    controller             EmulatedImpBench             the emulated imp (firmware.device)
    LIGHT_OUT levels ----> light_to_dut ------------->  light sensor (0.05 + 0.8 x level)
    STATUS samples   <---- dut_status_rgb <-----------  status LED (its colours)
    POWER            ----> set_power ---------------->  power_on / power_off
    UART RX          <---- uart_from_dut <------------  its log lines, CR LF
    BUTTON / LIGHT_IN ---> press_button / fixture_light: a stand-in fixture's flash

It lives beside the emulated imp rather than in ``hw/``: ``hw/`` reaches hardware
and imports only ``protocol/`` (DESIGN.md), while this wires an emulated imp's
board to the bench.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from impfactory.clock import Clock
from impfactory.firmware.device import Device, DeviceConfig
from impfactory.firmware.examples import dut_board
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID
from impfactory.firmware.identity import DeviceIdentity
from impfactory.firmware.led import COLOURS_RGB
from impfactory.firmware.signals import FixtureFlash, render_fixture_flash
from impfactory.firmware.wifi import AccessPoint, WifiEnvironment

#: The bench LED on the DUT's light sensor: ``BENCH_AMBIENT + BENCH_GAIN x level``.
BENCH_AMBIENT = 0.05
BENCH_GAIN = 0.8
#: The emulated DUT's default cloud: a port nothing listens on, so it keeps connecting.
NOWHERE = "mqtt://127.0.0.1:1"
EXAMPLE_PLAN_ID = "0123456789abcdef"
EXAMPLE_TOKEN = "fedcba9876543210"


def _hex_rgb(name: str) -> np.ndarray:
    value = COLOURS_RGB[name].lstrip("#")
    return np.array([int(value[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float64)


class EmulatedImpBench:
    """The ``BenchTarget`` of ``bench emulate``: an emulated imp DUT and a stand-in fixture.

    The bench LED sits against the DUT's light sensor (``ambient + gain x level``);
    the colour sensor reads the DUT's status LED with the emulated imp's
    colours; the DUT's UART TX carries its log lines.
    """

    def __init__(self, device: Device, clock: Clock, fixture: dict[str, Any]) -> None:
        self.device = device
        self.clock = clock
        self.fixture = fixture
        self._flash: FixtureFlash | None = None
        self._power: asyncio.Task[None] | None = None
        self._logs_sent = 0
        self.uart_received = bytearray()
        self.on_uart: Callable[[bytes], None] | None = None
        self._colours = {name: _hex_rgb(name) for name in COLOURS_RGB}
        self._colours["off"] = np.zeros(3)

    @classmethod
    def build(
        cls,
        clock: Clock,
        *,
        serial: int = 1,
        wifi: tuple[str, str] = (FACTORY_SSID, FACTORY_PASSWORD),
        server: str = NOWHERE,
        fixture: dict[str, Any] | None = None,
        config: DeviceConfig | None = None,
    ) -> EmulatedImpBench:
        """A fresh emulated imp (serial ``serial``) that can join ``wifi`` and reaches its
        cloud at ``server``; the stand-in fixture flashes ``fixture`` (default: that
        network, the example plan ID and token, at 60 Hz). The DUT takes bi-level and
        tri-level BlinkUp, as a real imp does, unless ``config`` says otherwise."""
        # like a real imp, the DUT locks to any symbol rate (60 Hz, 142 Hz ...); its board
        # is the one the example factory firmware tests (loopback wired, sane supply)
        device = Device(
            DeviceIdentity.from_serial(serial), clock,
            WifiEnvironment([AccessPoint(*wifi)]), server,
            hardware=dut_board(),
            config=config or DeviceConfig(blinkup_line_codes=("bilevel", "trilevel")),
        )
        flash = {"ssid": wifi[0], "password": wifi[1], "plan_id": EXAMPLE_PLAN_ID,
                 "token": EXAMPLE_TOKEN, "fast": False}
        return cls(device, clock, {**flash, **(fixture or {})})

    def set_power(self, on: bool) -> None:
        previous = self._power

        async def apply() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            if on:
                self.device.power_on()
            else:
                await self.device.power_off()

        self._power = asyncio.get_running_loop().create_task(apply())

    def light_to_dut(self, t0: float, levels: np.ndarray, rate_hz: float) -> None:
        self.device.feed_light(BENCH_AMBIENT + BENCH_GAIN * levels, rate_hz)

    def dut_status_rgb(self, times: np.ndarray) -> np.ndarray:
        out = np.zeros((len(times), 3))
        if not len(times):
            return out
        for seg in self.device.led.segments(float(times[0]), float(times[-1]) + 1e-9):
            if seg.on:
                out[(times >= seg.start) & (times < seg.end)] = self._colours[seg.colour]
        return out

    def press_button(self, seconds: float) -> None:
        f = self.fixture
        self._flash = render_fixture_flash(
            f["ssid"], f["password"], f["plan_id"], f["token"], "pin1",
            fast=f["fast"], active_high=True, start=self.clock.now(), device_id="stand-in",
        )

    def fixture_light(self, times: np.ndarray) -> np.ndarray:
        flash = self._flash
        lit = np.zeros(len(times))
        if flash is not None:
            idx = np.floor((times - flash.start) * flash.symbol_rate).astype(np.int64)
            inside = (idx >= 0) & (idx < len(flash.light_symbols))
            lit[inside] = flash.light_symbols[idx[inside]]
        return BENCH_AMBIENT + BENCH_GAIN * lit

    def uart_to_dut(self, data: bytes) -> None:
        """The emulated imp has no UART RX: what the host sends is kept (and, from
        ``bench emulate``, shown on its stderr) so a user sees it arrived."""
        self.uart_received += data
        if self.on_uart is not None:
            self.on_uart(data)

    def uart_from_dut(self) -> bytes:
        lines = self.device.logs[self._logs_sent :]
        self._logs_sent = len(self.device.logs)
        return "".join(f"{line}\r\n" for line in lines).encode()
