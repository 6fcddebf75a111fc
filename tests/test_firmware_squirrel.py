"""Squirrel device code on an emulated imp: the imp API, the boards, errors as impOS shows them.

Each test runs real Squirrel (the 3.0.5 VM) on a ``Device`` with a virtual clock
and no cloud: what device code sees of its imp, its board's peripherals, and how
its mistakes reach the device log.
"""

from __future__ import annotations

import pytest

from impfactory.clock import VirtualClock
from impfactory.firmware import examples
from impfactory.firmware.device import Device
from impfactory.firmware.errors import DeviceCodeError
from impfactory.firmware.hardware import SimHardware
from impfactory.firmware.identity import DeviceIdentity
from impfactory.firmware.wifi import WifiEnvironment


def make(hardware: SimHardware | None = None) -> tuple[VirtualClock, Device]:
    clock = VirtualClock()
    dev = Device(DeviceIdentity.from_serial(7), clock, WifiEnvironment([]),
                 "mqtt://127.0.0.1:1", hardware=hardware or examples.dut_board())
    return clock, dev


def run(dev: Device, source: str) -> bool:
    return dev.runtime.start(source, dev.engine_for(source))


def test_hello_imp_api() -> None:
    clock, dev = make()
    assert run(dev, """
server.log("id " + hardware.getdeviceid() + " type " + imp.info().type);
server.log("env " + imp.environment() + " card " + ENVIRONMENT_CARD);
server.log("mac " + imp.getmacaddress() + " " + imp.net.info().interface[0].macaddress);
imp.wakeup(1.5, function() { server.log("woke at " + hardware.millis()); });
imp.onidle(function() { server.log("idle"); });
""")
    clock.advance_sync(2.0)
    assert dev.logs[:3] == [f"id {dev.device_id} type imp001", "env 0 card 0",
                            f"mac {dev.mac} {dev.mac}"]
    assert dev.logs[3:] == ["idle", "woke at 1500"]


def test_hts221_through_electric_imps_library_reads_the_room() -> None:
    clock, dev = make(examples.dut_board(temperature=31.0, humidity=55.0))
    assert run(dev, """
#require "HTS221.device.lib.nut:2.0.1"
hardware.i2c89.configure(CLOCK_SPEED_400_KHZ);
local sensor = HTS221(hardware.i2c89, 0xBE);
sensor.setMode(HTS221_MODE.ONE_SHOT);
server.log(format("id 0x%02X", sensor.getDeviceID()));
local r = sensor.read();
server.log(format("%.1f degC %.1f %%", r.temperature, r.humidity));
sensor.read(function(r) { server.log(format("async %.1f", r.temperature)); });
""")
    clock.advance_sync(1.0)
    assert dev.logs == ["id 0xBC", "31.0 degC 55.0 %", "async 31.0"]


def test_a_missing_sensor_reads_null_and_says_why() -> None:
    _, dev = make(examples.dut_board(sensor=False))
    assert run(dev, """
hardware.i2c89.configure(CLOCK_SPEED_400_KHZ);
local got = hardware.i2c89.read(0xBE, "\\x0F", 1);
server.log("null " + (got == null) + " error " + hardware.i2c89.readerror());
""")
    assert dev.logs[-1] == "null true error -2"  # the imp001's NACK on its address


def test_nv_survives_a_warm_restart_but_not_a_power_cut() -> None:
    _, dev = make()
    code = 'nv.boots <- ("boots" in nv) ? nv.boots + 1 : 1; server.log("boot " + nv.boots);'
    assert run(dev, code)
    assert run(dev, code)  # new code on the same power: a warm start
    assert dev.logs == ["boot 1", "boot 2"]
    dev.runtime.stop()
    dev.nv = None  # what power_off does
    assert run(dev, code)
    assert dev.logs[-1] == "boot 1"


def test_imp_sleep_moves_the_device_on_and_holds_its_callbacks() -> None:
    clock, dev = make()
    assert run(dev, """
imp.wakeup(0.1, function() { server.log("timer at " + hardware.millis()); });
local before = hardware.millis();
imp.sleep(0.5);
server.log("slept " + (hardware.millis() - before));
""")
    assert dev.logs == ["slept 500"]
    clock.advance_sync(0.2)
    assert dev.logs == ["slept 500"]  # the timer waits out the busy-wait
    clock.advance_sync(0.5)
    assert dev.logs[-1] == "timer at 500"


def test_runtime_errors_carry_the_call_stack_with_files_and_lines() -> None:
    _, dev = make()
    assert not run(dev, """#require "HTS221.device.lib.nut:2.0.1"
function readIt(sensor) {
    return sensor.read().temperature;
}
local sensor = HTS221(hardware.i2c89, 0x10);
readIt(sensor);
""")
    lines = [line for line in dev.logs if line.startswith("ERROR")]
    assert lines[0].startswith("ERROR: I2C ") and "error" in lines[0]
    assert any("HTS221.device.lib.nut:" in line for line in lines)
    assert lines[-1] == "ERROR:   from main device.nut:5"  # the constructor reads the sensor


def test_a_compile_error_names_file_line_and_column() -> None:
    _, dev = make()
    with pytest.raises(DeviceCodeError, match=r"device.nut:3:"):
        run(dev, 'server.log("a");\nlocal x = 5;\nlocal y = ;\n')
    assert dev.logs[-1].startswith("ERROR: device code does not compile: device.nut:3:")


def test_an_unknown_library_is_refused_naming_it() -> None:
    _, dev = make()
    with pytest.raises(DeviceCodeError, match=r"NoSuch\.lib\.nut"):
        run(dev, '#require "NoSuch.lib.nut:1.0.0"\nserver.log("x");\n')


def test_a_call_not_modelled_names_itself_and_a_typo_is_the_usual_error() -> None:
    _, dev = make()
    assert not run(dev, "hardware.spiflash.enable();")
    assert "hardware.spiflash is not modelled" in dev.logs[0]
    assert not run(dev, "hardware.pinQ.configure(DIGITAL_OUT);")  # no pinQ on an imp001
    assert "the index 'pinQ' does not exist" in dev.logs[-2]


def test_api_errors_are_catchable_squirrel_errors() -> None:
    _, dev = make()
    assert run(dev, """
try { imp.wakeup(-1, function() {}); } catch (e) { server.log("caught: " + e); }
try { hardware.pin1.read(); } catch (e) { server.log("caught: " + e); }
""")
    assert dev.logs == ["caught: imp.wakeup: bad interval -1",
                        "caught: pin1.read: pin is not configured"]


def test_a_runaway_callback_is_stopped_and_the_device_goes_on() -> None:
    clock, dev = make()
    _, other = make()
    assert run(dev, """
imp.wakeup(1, function() { while (true) {} });
imp.wakeup(2, function() { server.log("still here"); });
""")
    assert run(other, 'server.log("other device runs");')
    clock.advance_sync(3.0)
    errors = [line for line in dev.logs if line.startswith("ERROR")]
    assert errors[0] == "ERROR: the code ran longer than its time limit of 2 s and was stopped"
    assert errors[1] == "ERROR:   in unknown device.nut:2"
    assert errors[2] == (f"ERROR: device {dev.device_id}: its code is stopped until it "
                         "restarts or gets new code")
    assert len(errors) == 3 and "still here" not in dev.logs  # no more of that code ran
    assert run(other, 'server.log("and goes on");')  # another device's VM is untouched
    assert other.logs == ["other device runs", "and goes on"]


def test_device_code_cannot_reach_the_machine() -> None:
    _, dev = make()
    for name in ("system", "file", "dofile", "loadfile", "remove", "rename", "getenv",
                 "writeclosuretofile", "stdin", "stdout", "stderr", "setroottable",
                 "setdebughook", "compilestring"):
        dev.logs.clear()
        assert not run(dev, f"local f = ::{name};"), name
        assert f"the index '{name}' does not exist" in dev.logs[0], name


def test_the_fixture_box_lcd_shows_the_example_banner() -> None:
    clock, dev = make(examples.fixture_board())
    dev.configparams = {"factoryfirmware": True, "factory_imp": dev.mac}
    assert run(dev, examples.factory_source("factory-wifi", "factory-password"))
    clock.advance_sync(1.0)
    assert "fixture ready" in dev.logs
    lcd = dev.hardware_board.model("lcd")
    assert lcd.lines == ("Electric Imp    ", "impfactory      ")


def test_a_pin_callback_raised_by_the_codes_own_write_runs_after_it() -> None:
    clock, dev = make()  # the DUT jig wires pin2 to pin5
    assert run(dev, """
hardware.pin5.configure(DIGITAL_IN, function() { server.log("pin5 now " + hardware.pin5.read()); });
hardware.pin2.configure(DIGITAL_OUT, 0);
hardware.pin2.write(1);
server.log("wrote");
""")
    assert dev.logs == ["wrote"]  # not inside the write: impOS runs callbacks one at a time
    clock.advance_sync(0.0)
    assert dev.logs == ["wrote", "pin5 now 1"]


def test_the_explorer_kits_hts221_raises_pin1_when_data_is_ready() -> None:
    clock, dev = make(examples.dut_board(temperature=25.0))
    assert run(dev, """
#require "HTS221.device.lib.nut:2.0.1"
hardware.i2c89.configure(CLOCK_SPEED_400_KHZ);
local sensor = HTS221(hardware.i2c89, 0xBE);
hardware.pin1.configure(DIGITAL_IN_WAKEUP, function() {
    if (hardware.pin1.read()) {
        local t = sensor.read().temperature;
        server.log(format("ready at %d ms: %.1f degC", hardware.millis(), t));
    }
});
sensor.setMode(HTS221_MODE.CONTINUOUS, 1);
sensor.configureDataReadyInterrupt(true);
""")
    clock.advance_sync(2.5)
    assert dev.logs == ["ready at 1000 ms: 25.0 degC", "ready at 2000 ms: 25.0 degC"]


def test_a_device_whose_code_stopped_is_freed() -> None:
    """Nothing of the VM glue (caches of natives, host objects) keeps a device alive."""
    import gc
    import weakref

    firmware = examples.factory_source("factory-wifi", "factory-password")
    refs = []
    for serial in range(1, 6):
        dev = Device(DeviceIdentity.from_serial(serial), VirtualClock(), WifiEnvironment([]),
                     "mqtt://127.0.0.1:1", hardware=examples.dut_board())
        dev.configparams = {"factoryfirmware": True, "factory_imp": "000000000000"}
        assert run(dev, firmware)
        dev.runtime.stop()
        refs.append(weakref.ref(dev))
        del dev
    gc.collect()
    assert [r() for r in refs] == [None] * 5
