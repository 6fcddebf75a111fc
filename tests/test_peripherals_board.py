"""Boards as data: the two boards FactoryExampleAsync.device.nut meets, faults by name.

Every ``hardware.*`` name the example's fixture HAL (imp005 Factory BlinkUp Box)
and DUT HAL (imp001 Explorer Kit) use resolves on the matching built-in board to
the right kind of object with the right model behind it. A description with a
mistake is refused with the field named; a fault is set from one string.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from impfactory.clock import VirtualClock
from impfactory.hw.peripherals import (
    I2C,
    SPI,
    UART,
    Attachment,
    Board,
    CfaX33Kl,
    Host,
    Hts221,
    PeripheralConfigError,
    PeripheralUsageError,
    Pin,
    PinMode,
    load_spec,
    register_model,
    spec_from_dict,
)
from impfactory.hw.peripherals.i2c import CLOCK_SPEED_400_KHZ
from impfactory.hw.peripherals.uart import NO_CTSRTS, PARITY_NONE

SHARED = Path(__file__).resolve().parents[2] / "shared" / "imp-libraries"
FIXTURE_HAL = {"LED_RED": "pinF", "LED_GREEN": "pinE", "BLINKUP_PIN": "pinM",
               "GREEN_BTN": "pinC", "FOOTSWITCH": "pinH", "LCD_DISPLAY_UART": "uart2",
               "USB_PWR_EN": "pinR", "USB_FAULT_L": "pinW", "RS232_UART": "uart0",
               "FTDI_UART": "uart1"}
DUT_HAL = {"LED_SPI": "spi257", "SENSOR_AND_GROVE_I2C": "i2c89",
           "POWER_GATE_AND_WAKE_PIN": "pin1", "AD_GROVE1_DATA1": "pin2", "AD_GROVE2_DATA1": "pin5"}


def fixture(host: Host | None = None) -> Board:
    return Board.load("imp005-fixture", host or Host(VirtualClock()), unit="5000d8c46a56cfca")


def dut(unit: str = "0c2a690000000001") -> Board:
    return Board.load("imp001-explorer", Host(VirtualClock()), unit=unit)


def test_the_examples_hal_names_match_the_example_source() -> None:
    example = SHARED / "FactoryTools" / "examples" / "FactoryExampleAsync.device.nut"
    if not example.exists():
        pytest.skip("the shared imp-libraries are not next to this checkout")
    text = example.read_text(encoding="utf-8")
    for key, name in {**FIXTURE_HAL, **DUT_HAL}.items():
        assert f'"{key}"' in text and f"hardware.{name}" in text


@pytest.mark.parametrize(("board", "hal"), [(fixture, FIXTURE_HAL), (dut, DUT_HAL)])
def test_every_name_the_example_uses_is_there(board: Any, hal: dict[str, str]) -> None:
    b = board()
    kinds = {"uart": UART, "i2c": I2C, "spi": SPI, "pin": Pin}
    for name in hal.values():
        kind = next(k for prefix, k in kinds.items() if name.startswith(prefix))
        assert isinstance(b.lookup(name), kind), name
        assert name in b.names()


def test_names_an_imp_lacks_are_refused() -> None:
    with pytest.raises(PeripheralUsageError, match="the index 'pinI' does not exist on imp005"):
        fixture().lookup("pinI")
    with pytest.raises(PeripheralUsageError, match="'i2c89' does not exist on imp005"):
        fixture().lookup("i2c89")
    with pytest.raises(PeripheralUsageError, match="'pinA' does not exist on imp001"):
        dut().lookup("pinA")


def test_the_fixture_front_panel() -> None:
    calls: list[Any] = []
    board = fixture()
    board.host.dispatch = lambda fn, *a: calls.append(fn) or fn(*a)  # set after building
    button = board.pins.pin("pinC")
    levels: list[int] = []
    button.configure(PinMode.DIGITAL_IN, lambda: levels.append(button.read()))
    assert button.read() == 0  # the box's buttons are active high, as Electric Imp's
    board.model("green_btn").tap(hold=0)  # example reads them: pressed is 1
    assert levels == [1, 0] and len(calls) == 2
    board.pins.pin("pinF").configure(PinMode.DIGITAL_OUT, 0)
    board["pinF"].write(1)
    assert board.model("led_red").lit
    board.pins.pin("pinW").configure(PinMode.DIGITAL_IN)
    assert board["pinW"].read() == 1  # USB_FAULT_L at rest: no fault
    board["pinM"].show_signal("flash")
    assert [s for _, s in board.model("blinkup_led").flashes] == ["flash"]


def test_the_fixture_lcd_answers_on_uart2() -> None:
    clock = VirtualClock()
    board = fixture(Host(clock))
    lcd = board.model("lcd")
    assert isinstance(lcd, CfaX33Kl)
    uart = board.uart("uart2")
    uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS)
    uart.write(b"\x06\x00\x97\x5b")  # clearAll() as the library sends it (CRC-16/X-25)
    clock.advance_sync(0.05)
    assert uart.readblob() == b"\x46\x00\xf1\x1d"  # its ACK
    assert lcd.lines == (" " * 16, " " * 16)


def test_the_explorer_kit_sensors() -> None:
    board = dut()
    i2c = board.i2c("i2c89")
    i2c.configure(CLOCK_SPEED_400_KHZ)
    assert i2c.read(0xBE, "\x0f", 1) == b"\xbc"  # HTS221
    assert i2c.read(0x32, "\x0f", 1) == b"\x33"  # LIS3DH
    assert i2c.read(0xB8, "\x0f", 1) == b"\xb1"  # LPS22HB
    assert i2c.read(0x40, "\x0f", 1) is None and i2c.readerror() == -2
    assert isinstance(board.model("sensor"), Hts221)


def test_the_unit_names_the_calibration() -> None:
    assert dut("a").model("sensor").calibration == dut("a").model("sensor").calibration
    assert dut("a").model("sensor").calibration != dut("b").model("sensor").calibration


def test_capabilities_follow_the_imp() -> None:
    with pytest.raises(PeripheralUsageError, match="ANALOG_IN is not available"):
        fixture().pins.pin("pinA").configure(PinMode.ANALOG_IN)
    with pytest.raises(PeripheralUsageError, match="DIGITAL_IN_WAKEUP is not available"):
        dut().pins.pin("pin2").configure(PinMode.DIGITAL_IN_WAKEUP)
    dut().pins.pin("pin1").configure(PinMode.DIGITAL_IN_WAKEUP)
    dut().pins.pin("pin9").configure(PinMode.ANALOG_IN)


def test_uart_limits_come_from_the_board() -> None:
    with pytest.raises(PeripheralUsageError, match="outside 9160"):
        fixture().uart("uart2").configure(1200, 8, PARITY_NONE, 1, NO_CTSRTS)
    with pytest.raises(PeripheralUsageError, match="at least 80"):
        fixture().uart("uart2").setrxfifosize(40)


# --- faults by name ---------------------------------------------------------------------------


def test_faults_by_name() -> None:
    board = dut()
    assert "sensor.missing" in board.fault_names()
    assert "sensor.out_of_range" in board.fault_names()
    i2c = board.i2c("i2c89")
    i2c.configure(CLOCK_SPEED_400_KHZ)
    board.set_fault("sensor.missing")
    assert i2c.read(0xBE, "\x0f", 1) is None and i2c.readerror() == -2
    board.clear_faults()
    board.set_fault("sensor.out_of_range=120")
    assert board.model("sensor").reading()[0] == 120.0
    panel = fixture()
    panel.set_fault("green_btn.stuck=pressed")
    panel.set_fault("lcd.no_ack")
    assert panel.model("green_btn").pressed and panel.model("lcd").fault("no_ack")


@pytest.mark.parametrize(("text", "message"), [
    ("sensor", "expected MODEL.FAULT"),
    ("heater.missing", "no model named 'heater'"),
    ("sensor.melted", "unknown fault 'melted'"),
    ("sensor.out_of_range=hot", "bad value 'hot'"),
    ("rgb.dark", "model rgb has no faults"),
])
def test_a_bad_fault_is_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(PeripheralConfigError, match=message):
        dut().set_fault(text)


# --- descriptions ------------------------------------------------------------------------------


MINIMAL: dict[str, Any] = {
    "name": "bench", "imp": "imp001", "pins": ["pin1", "pin8", "pin9"],
    "buses": {"i2c89": {"kind": "i2c", "pins": ["pin8", "pin9"]},
              "uart1289": {"kind": "uart", "baud": [916, 7500000]}},
    "aliases": {"sensors": "i2c89"},
    "attach": [{"name": "t", "model": "hts221", "bus": "i2c89", "address": "0xBE",
                "params": {"temperature": 30}}],
}


def variant(**changes: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(MINIMAL))
    data.update(changes)
    return data


def test_a_description_loads_from_a_file_and_aliases_resolve(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(MINIMAL))
    board = Board.load(path, Host(VirtualClock()))
    assert board.lookup("sensors") is board.lookup("i2c89")
    assert board.model("t").temperature == 30.0


def bad_attach(**fields: Any) -> dict[str, Any]:
    return variant(attach=[{"name": "t", "model": "hts221", "bus": "i2c89", "address": "0xBE",
                            **fields}])


@pytest.mark.parametrize(("data", "message"), [
    (variant(buses={"i2c89": {"kind": "can"}}), r"buses\.i2c89: kind must be one of"),
    (variant(buses={"i2c89": {"kind": "i2c", "pins": ["pin4"]}}), "no pin 'pin4'"),
    (variant(buses={"i2c89": {"kind": "i2c", "speed": 1}}), r"unknown key\(s\) speed"),
    (variant(colour="red"), r"unknown key\(s\) colour"),
    (bad_attach(model="bme280"), "unknown model type 'bme280'"),
    (bad_attach(bus="i2c12"), "'i2c12' is not one here"),
    (bad_attach(bus="uart1289"), "attaches to an i2c bus"),
    (bad_attach(address=None), "needs an 'address'"),
    (bad_attach(address="0xZZ"), r"address: '0xZZ' is not a number"),
    (bad_attach(params={"colour": 1}), "bad params"),
    (variant(attach=[{"name": "b", "model": "button"}]), "attaches to a 'pin'"),
    (variant(attach=[{"name": "b", "model": "button", "pin": "pinC"}]), "no pin 'pinC'"),
    (variant(attach=MINIMAL["attach"] * 2), "the name is used twice"),
    (variant(aliases={"x": "spi9"}), "alias x names 'spi9'"),
    (variant(capabilities={"FLYING": []}), "unknown pin mode 'FLYING'"),
])
def test_a_bad_description_is_refused_with_the_field_named(data: dict[str, Any],
                                                           message: str) -> None:
    with pytest.raises(PeripheralConfigError, match=message):
        Board(spec_from_dict(data), Host(VirtualClock()))


def test_unreadable_files_and_unknown_boards(tmp_path: Path) -> None:
    with pytest.raises(PeripheralConfigError, match="built-in boards: imp005-fixture"):
        load_spec("imp999")
    (tmp_path / "x.json").write_text("{nope")
    with pytest.raises(PeripheralConfigError, match="not JSON"):
        load_spec(tmp_path / "x.json")


def test_a_real_part_in_place_of_a_model_and_a_new_model_type() -> None:
    spec = load_spec("imp001-explorer").with_attachments(without=["sensor"])
    board = Board(spec, Host(VirtualClock()))
    board.i2c("i2c89").configure(CLOCK_SPEED_400_KHZ)
    assert board.i2c("i2c89").read(0xBE, "\x0f", 1) is None  # the bench wires a real one

    class Eeprom:
        def connect(self, read: bool) -> bool:
            return True

        def write(self, data: bytes) -> bool:
            return True

        def read(self, n: int) -> bytes:
            return b"\xee" * n

    register_model("test_eeprom", "i2c", lambda context, params: Eeprom())
    spec = spec.with_attachments(Attachment("rom", "test_eeprom", bus="i2c89", address=0xA0))
    board = Board(spec, Host(VirtualClock()))
    board.i2c("i2c89").configure(CLOCK_SPEED_400_KHZ)
    assert board.i2c("i2c89").read(0xA0, "", 2) == b"\xee\xee"


def test_the_board_file_in_the_docs_builds() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "peripherals.md").read_text("utf-8")
    example = doc.split("```json\n", 1)[1].split("```", 1)[0]
    clock = VirtualClock()
    board = Board(spec_from_dict(json.loads(example)), Host(clock))
    assert board.lookup("sensors") is board.lookup("i2c89")
    assert board.model("sensor").temperature == 25.0
    assert board.model("start").bounce.edges == 4
    assert isinstance(board.model("lcd"), CfaX33Kl)
