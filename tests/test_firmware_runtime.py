"""Device code runs event-driven on the injected clock, and survives its own errors."""

from __future__ import annotations

import asyncio

import pytest

from impfactory.clock import VirtualClock
from impfactory.firmware import impapi
from impfactory.firmware.device import Device
from impfactory.firmware.errors import DeviceCodeError
from impfactory.firmware.events import DeviceEvent
from impfactory.firmware.hardware import SimHardware
from impfactory.firmware.identity import DeviceIdentity
from impfactory.firmware.runtime import PythonEngine
from impfactory.firmware.wifi import WifiEnvironment


def make(board: SimHardware | None = None) -> tuple[VirtualClock, Device]:
    clock = VirtualClock()
    dev = Device(DeviceIdentity.from_serial(7), clock, WifiEnvironment(), "mqtt://127.0.0.1:1",
                 hardware=board)
    return clock, dev


def run(dev: Device, source: str) -> bool:
    return dev.runtime.start(source, PythonEngine(impapi.build_api(dev, dev.runtime)))


def test_timers_run_on_the_clock_in_order() -> None:
    clock, dev = make()
    run(dev, """
ticks = []
def tick():
    ticks.append(imp.getmacaddress())
    server.log("tick %d" % len(ticks))
    if len(ticks) < 3:
        imp.wakeup(1.0, tick)
imp.wakeup(1.0, tick)
""")
    clock.advance_sync(0.5)
    assert dev.logs == []
    clock.advance_sync(10)
    assert dev.logs == ["tick 1", "tick 2", "tick 3"]
    assert dev.runtime.globals["ticks"] == [dev.mac] * 3


def test_exception_is_logged_with_line_and_device_keeps_running() -> None:
    clock, dev = make()
    ok = run(dev, """
def boom():
    x = {}
    return x["missing"]
def later():
    server.log("still alive")
imp.wakeup(1, boom)
imp.wakeup(2, later)
""")
    assert ok
    clock.advance_sync(3)
    assert dev.runtime.errors == 1
    assert dev.logs[0].startswith("ERROR: KeyError") and "(at line 4)" in dev.logs[0]
    assert dev.logs[1] == "still alive"


def test_top_level_error_and_syntax_error() -> None:
    _, dev = make()
    assert run(dev, "server.log('a')\n1/0\n") is False
    assert "ZeroDivisionError" in dev.logs[-1]
    with pytest.raises(DeviceCodeError):
        run(dev, "def broken(:\n")


def test_replaced_code_timers_never_fire_and_suspend_holds_calls() -> None:
    clock, dev = make()
    run(dev, "imp.wakeup(1, lambda: server.log('old'))")
    run(dev, "imp.wakeup(2, lambda: server.log('new'))")
    dev.runtime.suspend(5.0)
    clock.advance_sync(3)
    assert dev.logs == []
    clock.advance_sync(3)
    assert dev.logs == ["new"]


def test_imports_and_builtins_are_limited() -> None:
    _, dev = make()
    assert run(dev, "import math\nserver.log(str(math.floor(2.5)))")
    assert dev.logs[-1] == "2"
    assert not run(dev, "import os")
    assert "ImportError" in dev.logs[-1]
    assert not run(dev, "open('/etc/passwd')")
    assert "NameError" in dev.logs[-1]


def test_pins_loopback_voltage_and_button_callback() -> None:
    board = SimHardware(voltage=3.28)
    board.wire("pin2", "pin5")
    _clock, dev = make(board)
    run(dev, """
hardware.pin2.configure(DIGITAL_OUT, 0)
hardware.pin5.configure(DIGITAL_IN)
hardware.pin2.write(1)
high = hardware.pin5.read()
hardware.pin2.write(0)
low = hardware.pin5.read()
volts = hardware.voltage()
presses = []
def pressed():
    if hardware.pin1.read() == 0:
        presses.append(1)
hardware.pin1.configure(DIGITAL_IN_PULLUP, pressed)
""")
    g = dev.runtime.globals
    assert (g["high"], g["low"], g["volts"]) == (1, 0, 3.28)
    dev.press("pin1")
    dev.press("pin1")
    assert g["presses"] == [1, 1]
    board.cut("pin2")
    run(dev, "hardware.pin2.configure(DIGITAL_OUT, 1)\n"
             "hardware.pin5.configure(DIGITAL_IN)\nv = hardware.pin5.read()")
    assert dev.runtime.globals["v"] == 0


def test_api_misuse_is_a_runtime_error() -> None:
    _, dev = make()
    assert not run(dev, "hardware.pin1.read()")
    assert "PeripheralUsageError: pin1.read: pin is not configured" in dev.logs[-1]
    assert not run(dev, "imp.wakeup(-1, print)")
    assert not run(dev, "hardware.pinI")
    assert "does not exist" in dev.logs[-1]


def test_configuration_calls_persist_in_settings() -> None:
    _, dev = make()
    run(dev, """
imp.setwificonfiguration("factory", "pw")
imp.setenroltokens("0123456789abcdef", "fedcba9876543210")
ssid = imp.getssid()
""")
    assert dev.runtime.globals["ssid"] == "factory"
    assert dev.store.load().enrolled
    run(dev, "imp.clearconfiguration()")
    stored = dev.store.load()
    assert not stored.has_network and not stored.enrolled
    assert impapi.CONSTANTS["SHUTDOWN_NEWSQUIRREL"] == 1
    assert impapi.CONSTANTS["NOT_AUTHORISED"] == 7


def test_onidle_is_one_shot_and_one_slot() -> None:
    clock, dev = make()
    run(dev, """
imp.onidle(lambda: server.log("first"))
imp.onidle(lambda: server.log("second"))
""")
    clock.advance_sync(1)
    clock.advance_sync(1)
    assert dev.logs == ["second"]


def test_a_callback_that_hogs_the_loop_is_reported() -> None:
    clock, dev = make()
    run(dev, """
def hog():
    x = 0
    for i in range(10_000):
        x += i
imp.wakeup(1, hog)
""")
    import impfactory.firmware.runtime as rt

    old, rt.BLOCKED_WARN_S = rt.BLOCKED_WARN_S, 0.0
    try:
        clock.advance_sync(2)
    finally:
        rt.BLOCKED_WARN_S = old
    assert any(m.startswith("WARNING: device code held the loop") for m in dev.logs)


def test_agent_messages_are_local_events_and_deliveries() -> None:
    """What docs/device.md says is modelled of agents: send -> event, on <- agent_deliver."""
    from impfactory.firmware.events import DeviceEvent

    clock, dev = make()
    run(dev, """
got = []
def on_cfg(data):
    got.append(data)
    agent.send("ack", {"n": len(got)})
def on_bad(data):
    raise ValueError(data)
agent.on("cfg", on_cfg)
agent.on("bad", on_bad)
agent.on("gone", on_cfg)
agent.on("gone", None)
agent.send("hello", [1, 2])
""")
    assert dev.agent_deliver("cfg", {"rate": 5}) is True
    assert dev.agent_deliver("gone", 1) is False  # handler removed
    assert dev.agent_deliver("nobody", 1) is False
    assert dev.agent_deliver("bad", "oops") is True  # its error is the code's, not ours
    clock.advance_sync(1)
    sent = [r.detail for r in dev.events if r.kind is DeviceEvent.AGENT_MESSAGE]
    assert sent == [("hello", [1, 2]), ("ack", {"n": 1})]
    assert dev.runtime.globals["got"] == [{"rate": 5}]
    assert dev.runtime.errors == 1 and "ValueError: oops" in dev.logs[-1]


def test_agent_send_offline_is_dropped_with_an_error_code_and_bad_values_raise() -> None:
    """Offline: SEND_ERROR_NOT_CONNECTED (RETURN_ON_ERROR policy); not JSON: an error."""
    from impfactory.firmware.events import DeviceEvent

    _, dev = make()
    run(dev, """
codes = [agent.send("hello", 1), SEND_ERROR_NOT_CONNECTED]
agent.send("bad", float("nan"))
""")
    codes = dev.runtime.globals["codes"]
    assert codes[0] == codes[1] != 0
    assert dev.runtime.errors == 1 and "ImpApiError: agent.send" in dev.logs[-1]
    sent = [r.detail for r in dev.events if r.kind is DeviceEvent.AGENT_MESSAGE]
    assert sent == [("hello", 1)]


def test_a_callback_that_never_returns_is_stopped_and_others_run() -> None:
    """One device never stalls another: a runaway loop (even one that catches
    Exception) is stopped after CALLBACK_LIMIT_S and logged; the device carries on."""
    import time

    from impfactory.firmware import runtime

    clock, dev = make()
    run(dev, """
def spin():
    n = 0
    while True:
        try:
            n += 1
        except Exception:
            pass
def later():
    server.log("still alive")
imp.wakeup(1, spin)
imp.wakeup(2, later)
""")
    t0 = time.perf_counter()
    clock.advance_sync(3)
    took = time.perf_counter() - t0
    assert runtime.CALLBACK_LIMIT_S <= took < runtime.CALLBACK_LIMIT_S + 3.0
    assert dev.runtime.errors == 1
    assert dev.logs[0].startswith("ERROR: DeviceCodeTimeout")
    assert any(f"(at line {n})" in dev.logs[0] for n in range(4, 9))  # inside spin's loop
    assert dev.logs[-1] == "still alive"


def test_the_watchdog_leaves_an_outer_tracer_in_place() -> None:
    import sys

    def outer(frame, event, arg):  # a debugger or coverage tool
        return None

    _, dev = make()
    previous = sys.gettrace()
    sys.settrace(outer)
    try:
        run(dev, "server.log('hi')\n")
        assert sys.gettrace() is outer
    finally:
        sys.settrace(previous)
    assert dev.logs == ["hi"]


@pytest.mark.parametrize("disguise", [
    "type(spin)(spin.__code__.replace(co_filename='impfactory/firmware/device.py'), {})",
    "type(spin)(spin.__code__.replace(co_name='log', co_filename='<frozen json>'), "
    "spin.__globals__)",
])
def test_a_runaway_loop_under_a_renamed_code_object_is_stopped_too(disguise: str) -> None:
    """Issue 13: what the watchdog stops is any frame not running in a module's own
    globals, not a file name device code can choose."""
    import time

    from impfactory.firmware import runtime

    clock, dev = make()
    run(dev, f"""
def spin():
    while True:
        pass
hidden = {disguise}
imp.wakeup(1, hidden)
imp.wakeup(2, lambda: server.log("still alive"))
""")
    t0 = time.perf_counter()
    clock.advance_sync(3)
    assert time.perf_counter() - t0 < runtime.CALLBACK_LIMIT_S + 3.0
    assert dev.runtime.errors == 1 and dev.logs[0].startswith("ERROR: DeviceCodeTimeout")
    assert dev.logs[-1] == "still alive"


def test_a_device_whose_power_is_off_starts_no_code() -> None:
    """Code reaches ``_apply_code`` after power-off when Python 3.11's wait_for swallows
    the life task's cancel (gh-86296; seen as a second "application started" after a
    line closed its fleet under load): nothing runs and nothing is reported."""
    _, dev = make()
    assert not dev.powered
    asyncio.run(dev._apply_code('# impfactory: python\nserver.log("started")\n', "dep-1"))
    assert not dev.runtime.running and dev.logs == []
    assert DeviceEvent.CODE_STARTED not in [r.kind for r in dev.events]
