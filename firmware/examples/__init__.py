"""Example firmware: factory (fixture + DUT) and application device code.

The firmware files are device code, not modules: read them with ``source(name)``
and deploy the text as a deployment's ``device_code``. ``factory_source`` fills in
the factory WiFi settings the fixture flashes into each DUT.
"""

from __future__ import annotations

from importlib import resources

from impfactory.firmware.hardware import SimHardware

FACTORY = "factory_firmware.py"
APPLICATION = "application_firmware.py"


def source(name: str) -> str:
    """The text of one example firmware file."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def factory_source(ssid: str, password: str, fast: bool = True) -> str:
    """The factory firmware with the factory's WiFi network filled in."""
    text = source(FACTORY)
    text = text.replace('SSID = "factory-wifi"', f"SSID = {ssid!r}")
    text = text.replace('PASSWORD = "factory-password"', f"PASSWORD = {password!r}")
    if not fast:
        text = text.replace("BLINKUP_FLAGS = BLINKUP_FAST", "BLINKUP_FLAGS = 0")
    return text


def application_source() -> str:
    return source(APPLICATION)


def dut_board(temperature: float = 25.0, voltage: float = 3.3,
              loopback: bool = True) -> SimHardware:
    """A DUT board as the example factory firmware expects it.

    pin2 wired to pin5 (cut it with ``loopback=False``), a TMP36-style sensor on
    pin9 reading ``temperature`` degC, and the supply at ``voltage``.
    """
    board = SimHardware(voltage=voltage)
    if loopback:
        board.wire("pin2", "pin5")
    board.set_input("pin9", (0.5 + temperature / 100.0) / 3.3)
    return board
