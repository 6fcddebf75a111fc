"""Example firmware and the boards it runs on.

The firmware files are device code, not modules: read them with ``source(name)``
and deploy the text as a deployment's ``device_code``. Squirrel is the language of
the examples (``factory_firmware.nut``, ``application_firmware.nut``), as on a real
imp; the same behaviour in Python (``*.py``, marked as Python device code) stays
for tests of the Python engine. ``factory_source`` fills in the factory WiFi the
fixture flashes into each DUT. ``factory_agent.nut`` is the factory firmware's
agent code (``factory_agent_source`` fills in a results service).

Boards: the fixture is an imp005 on Electric Imp's Factory BlinkUp Box (buttons on
pinC/pinH, BlinkUp LED on pinM, LCD on uart2), a DUT an imp001 on an impExplorer
Kit (HTS221 on i2c89, a test jig wiring pin2 to pin5), both from
``impfactory.hw.peripherals``.
"""

from __future__ import annotations

from importlib import resources

from impfactory.firmware.hardware import SimHardware, load_board

FACTORY = "factory_firmware.nut"
FACTORY_AGENT = "factory_agent.nut"
APPLICATION = "application_firmware.nut"
FACTORY_PY = "factory_firmware.py"
APPLICATION_PY = "application_firmware.py"
FIXTURE_IMP = "imp005"
DUT_IMP = "imp001"
FIXTURE_BOARD = "imp005-fixture"
DUT_BOARD = "imp001-explorer"


def source(name: str) -> str:
    """The text of one example firmware file."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def squirrel_string(text: str) -> str:
    """``text`` as a Squirrel string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def factory_source(ssid: str, password: str, fast: bool = True, python: bool = False) -> str:
    """The factory firmware with the factory's WiFi network filled in."""
    if python:
        text = source(FACTORY_PY)
        text = text.replace('SSID = "factory-wifi"', f"SSID = {ssid!r}")
        text = text.replace('PASSWORD = "factory-password"', f"PASSWORD = {password!r}")
        if not fast:
            text = text.replace("BLINKUP_FLAGS = BLINKUP_FAST", "BLINKUP_FLAGS = 0")
        return text
    text = source(FACTORY)
    text = text.replace('const SSID = "factory-wifi";', f"const SSID = {squirrel_string(ssid)};")
    text = text.replace('const PASSWORD = "factory-password";',
                        f"const PASSWORD = {squirrel_string(password)};")
    if not fast:
        text = text.replace("BLINKUP_FLAGS <- BLINKUP_FAST;", "BLINKUP_FLAGS <- 0;")
    return text


def factory_agent_source(results_url: str = "") -> str:
    """The factory agent (``factory_agent.nut``), posting results to ``results_url`` too
    when one is given."""
    text = source(FACTORY_AGENT)
    return text.replace('const RESULTS_URL = "";',
                        f"const RESULTS_URL = {squirrel_string(results_url)};")


def application_source(python: bool = False) -> str:
    return source(APPLICATION_PY if python else APPLICATION)


def dut_board(temperature: float = 22.5, voltage: float = 3.3, loopback: bool = True,
              sensor: bool = True, humidity: float = 40.0, unit: str = "") -> SimHardware:
    """A DUT as the example factory firmware expects it: an imp001 Explorer Kit.

    Its HTS221 reads ``temperature`` and ``humidity`` (``sensor=False``: the sensor
    does not answer), the test jig wires pin2 to pin5 (cut it with
    ``loopback=False``), the supply is at ``voltage``. For the Python example, pin9
    also carries a TMP36-style voltage for ``temperature``.
    """
    board = load_board(DUT_BOARD, unit=unit)
    hardware = SimHardware(voltage=voltage, board=board)
    hts = board.model("sensor")
    hts.temperature, hts.humidity = float(temperature), float(humidity)
    if not sensor:
        board.set_fault("sensor.missing")
    if loopback:
        hardware.wire("pin2", "pin5")
    hardware.set_input("pin9", (0.5 + temperature / 100.0) / 3.3)
    return hardware


def fixture_board(unit: str = "") -> SimHardware:
    """A fixture as the example factory firmware expects it: the Factory BlinkUp Box."""
    return SimHardware(board=load_board(FIXTURE_BOARD, unit=unit))
