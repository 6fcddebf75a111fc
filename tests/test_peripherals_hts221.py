"""The HTS221 model against its datasheet and against Electric Imp's HTS221 library.

``Library`` below is the arithmetic of HTS221.device.lib.nut 2.0.x (``_getReg``,
``_setReg``, ``_getSignedReg16LE``, ``_getCalibrationVariables``, ``setMode``,
``read``) written out in Python, line for line, talking to the model over the I²C
bus exactly as the Squirrel does: so the temperature and humidity the library
computes from the model's registers must be the ones the model was set to, within
one output LSB. The register map is checked against the datasheet on its own:
WHO_AM_I, defaults, the calibration block's layout decoded independently,
one-shot and continuous conversions timed on a virtual clock, the data-ready bits,
block data update, and each fault.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impfactory.clock import VirtualClock
from impfactory.hw.peripherals import I2C, Calibration, Host, Hts221, PinBank, PinMode
from impfactory.hw.peripherals.i2c import CLOCK_SPEED_400_KHZ

ADDR = 0xBE
MAX_MEAS_TIME_SECONDS = 0.5  # HTS221_MAX_MEAS_TIME_SECONDS


class Library:
    """HTS221.device.lib.nut's register arithmetic, ported literally."""

    def __init__(self, i2c: I2C, clock: VirtualClock, addr: int = ADDR) -> None:
        self.i2c, self.clock, self.addr = i2c, clock, addr
        self._get_calibration_variables()

    def _get_reg(self, reg: int) -> int:
        result = self.i2c.read(self.addr, chr(reg), 1)
        if result is None:
            raise RuntimeError(f"I2C read error: {self.i2c.readerror()}")
        return result[0]

    def _set_reg(self, reg: int, val: int) -> None:
        result = self.i2c.write(self.addr, chr(reg) + chr(val & 0xFF))  # format("%c%c", ...)
        if result:
            raise RuntimeError(f"I2C write error: {result}")

    def _set_reg_bit(self, reg: int, bit: int, state: int) -> None:
        val = self._get_reg(reg)
        val = val & ~(0x01 << bit) if state == 0 else val | (0x01 << bit)
        self._set_reg(reg, val)

    def _get_signed_reg16le(self, reg: int) -> int:
        regs = self.i2c.read(self.addr, chr(reg), 2)
        if regs is None:
            raise RuntimeError(f"I2C read error: {self.i2c.readerror()}")
        raw = regs[0] | (regs[1] << 8)
        return raw - 0x10000 if raw & 0x8000 else raw  # (raw << 16) >> 16 in 32 bits

    def _get_calibration_variables(self) -> None:
        self._set_reg(0x21, 0x80)
        h0_rh = self._get_reg(0x30) / 2.0
        h1_rh = self._get_reg(0x31) / 2.0
        h0_t0_out = self._get_signed_reg16le(0xB6)
        h1_t0_out = self._get_signed_reg16le(0xBA)
        self.h_slope = (h1_rh - h0_rh) / (h1_t0_out - h0_t0_out)
        self.h_offset = h0_rh - (self.h_slope * h0_t0_out)
        msb = self._get_reg(0x35)
        t0_msb = (msb & 0x03) << 8
        t1_msb = (msb & 0x0C) << 6
        t0_degc = (t0_msb | self._get_reg(0x32)) / 8.0
        t1_degc = (t1_msb | self._get_reg(0x33)) / 8.0
        t0_out = self._get_signed_reg16le(0xBC)
        t1_out = self._get_signed_reg16le(0xBE)
        self.t_slope = (t1_degc - t0_degc) / (t1_out - t0_out)
        self.t_offset = t0_degc - (self.t_slope * t0_out)

    def set_mode_one_shot(self) -> None:
        val = self._get_reg(0x20)
        val = (val | 0x80) & 0xFC  # _setDataRate(0, val, true)
        self._set_reg(0x20, val)

    def read(self) -> dict[str, float]:
        self._set_reg_bit(0x21, 0, 1)
        self.clock.advance_sync(MAX_MEAS_TIME_SECONDS)  # imp.sleep(delay)
        hum_raw = self._get_signed_reg16le(0xA8)
        temp_raw = self._get_signed_reg16le(0xAA)
        humid = self.h_slope * hum_raw + self.h_offset
        return {"temperature": self.t_slope * temp_raw + self.t_offset,
                "humidity": min(100.0, max(0.0, humid))}


def setup(unit: str = "0c2a690000000001", **kwargs: float) -> tuple[VirtualClock, I2C, Hts221]:
    clock = VirtualClock()
    sensor = Hts221(clock, unit=unit, **kwargs)
    i2c = I2C("i2c89")
    i2c.configure(CLOCK_SPEED_400_KHZ)
    i2c.attach(ADDR, sensor)
    return clock, i2c, sensor


def reg(i2c: I2C, address: int, n: int = 1) -> bytes:
    data = i2c.read(ADDR, bytes([address]), n)
    assert data is not None
    return data


# --- the library's arithmetic gives back the environment ----------------------------------


def test_the_library_reads_the_room_the_model_was_given() -> None:
    clock, i2c, sensor = setup(temperature=22.5, humidity=40.0)
    lib = Library(i2c, clock)
    lib.set_mode_one_shot()
    result = lib.read()
    assert result["temperature"] == pytest.approx(22.5, abs=1 / 50)
    assert result["humidity"] == pytest.approx(40.0, abs=1 / 50)
    assert sensor.samples == 1


@settings(max_examples=60, deadline=None)
@given(temperature=st.floats(-40.0, 120.0), humidity=st.floats(0.0, 100.0),
       unit=st.text(min_size=0, max_size=16))
def test_every_unit_and_room_round_trips_within_one_lsb(temperature: float, humidity: float,
                                                        unit: str) -> None:
    clock, i2c, _ = setup(unit, temperature=temperature, humidity=humidity)
    lib = Library(i2c, clock)
    lib.set_mode_one_shot()
    result = lib.read()
    assert abs(result["temperature"] - temperature) <= abs(lib.t_slope) * 0.51
    assert abs(result["humidity"] - humidity) <= abs(lib.h_slope) * 0.51


def test_units_differ_in_calibration_and_a_unit_is_always_the_same() -> None:
    assert Calibration.for_unit("a") == Calibration.for_unit("a")
    assert Calibration.for_unit("a") != Calibration.for_unit("b")


@given(unit=st.text(max_size=12))
def test_the_calibration_block_is_laid_out_as_the_datasheet_says(unit: str) -> None:
    _, i2c, sensor = setup(unit)
    cal = sensor.calibration
    block = reg(i2c, 0x80 | 0x30, 16)  # one auto-incrementing read of 0x30..0x3F

    def s16(lo: int) -> int:
        return int.from_bytes(block[lo - 0x30: lo - 0x30 + 2], "little", signed=True)

    assert (block[0], block[1]) == (cal.h0_rh_x2, cal.h1_rh_x2)
    assert block[2] | (block[5] & 0x03) << 8 == cal.t0_degc_x8
    assert block[3] | (block[5] & 0x0C) << 6 == cal.t1_degc_x8
    assert (s16(0x36), s16(0x3A), s16(0x3C), s16(0x3E)) == (
        cal.h0_t0_out, cal.h1_t0_out, cal.t0_out, cal.t1_out)
    assert cal.t1_degc_x8 > cal.t0_degc_x8 and cal.h1_rh_x2 > cal.h0_rh_x2


# --- the register map ------------------------------------------------------------------------


def test_identity_and_reset_values() -> None:
    _, i2c, _ = setup()
    assert reg(i2c, 0x0F) == b"\xbc"
    assert reg(i2c, 0x10) == b"\x1b"  # AV_CONF: AVGT 16, AVGH 32
    assert reg(i2c, 0x80 | 0x20, 3) == b"\x00\x00\x00"
    assert reg(i2c, 0x27) == b"\x00"
    assert reg(i2c, 0x80 | 0x28, 4) == b"\x00\x00\x00\x00"  # no conversion yet


def test_a_one_shot_completes_after_its_measurement_time() -> None:
    clock, i2c, sensor = setup(conversion_time=0.004, temperature=30.0)
    i2c.write(ADDR, b"\x20\x80")  # PD, one-shot mode
    i2c.write(ADDR, b"\x21\x01")  # ONE_SHOT
    clock.advance_sync(0.003)
    assert reg(i2c, 0x21) == b"\x01" and reg(i2c, 0x27) == b"\x00"
    clock.advance_sync(0.0011)
    assert reg(i2c, 0x21) == b"\x00"
    assert reg(i2c, 0x27) == b"\x03"  # H_DA | T_DA
    raw = int.from_bytes(reg(i2c, 0x80 | 0x2A, 2), "little", signed=True)
    assert raw == sensor.calibration.raw_temperature(30.0)
    assert reg(i2c, 0x27) == b"\x02"  # reading TEMP_OUT_H cleared T_DA only
    reg(i2c, 0x29)
    assert reg(i2c, 0x27) == b"\x00"


def test_powered_down_there_is_no_conversion() -> None:
    clock, i2c, sensor = setup()
    i2c.write(ADDR, b"\x21\x01")
    clock.advance_sync(1.0)
    assert reg(i2c, 0x27) == b"\x00" and sensor.samples == 0


@pytest.mark.parametrize(("odr_bits", "hz"), [(1, 1.0), (2, 7.0), (3, 12.5)])
def test_continuous_mode_samples_at_its_data_rate(odr_bits: int, hz: float) -> None:
    clock, i2c, sensor = setup()
    i2c.write(ADDR, bytes([0x20, 0x80 | odr_bits]))
    clock.advance_sync(2.0 / hz - 1e-6)
    reg(i2c, 0x27)
    assert sensor.samples == 1
    clock.advance_sync(2e-6)
    assert reg(i2c, 0x27) == b"\x03" and sensor.samples == 2


def test_block_data_update_keeps_a_pair_together() -> None:
    clock, i2c, sensor = setup(temperature=20.0)
    i2c.write(ADDR, b"\x20\x85")  # PD, BDU, 1 Hz
    clock.advance_sync(1.0)
    low = reg(i2c, 0x2A)  # TEMP_OUT_L of the 20 degC sample
    sensor.temperature = 40.0
    clock.advance_sync(1.0)  # a 40 degC sample completes between the two byte reads
    high = reg(i2c, 0x2B)
    assert int.from_bytes(low + high, "little", signed=True) == \
        sensor.calibration.raw_temperature(20.0)
    clock.advance_sync(1.0)
    raw = int.from_bytes(reg(i2c, 0x80 | 0x2A, 2), "little", signed=True)
    assert raw == sensor.calibration.raw_temperature(40.0)


def test_control_registers_round_trip_and_boot_clears_itself() -> None:
    _, i2c, _ = setup()
    i2c.write(ADDR, b"\x10\x3f")  # the library's setResolution(256, 512)
    assert reg(i2c, 0x10) == b"\x3f"
    i2c.write(ADDR, b"\x22\x84")  # DRDY active low, enabled
    assert reg(i2c, 0x22) == b"\x84"
    i2c.write(ADDR, b"\x21\x80")
    assert reg(i2c, 0x21) == b"\x00"
    i2c.write(ADDR, b"\x0f\x00")  # WHO_AM_I is read-only
    assert reg(i2c, 0x0F) == b"\xbc"


def test_noise_follows_the_averaging_and_is_off_by_default() -> None:
    readings = []
    for noise in (False, True):
        clock, i2c, _ = setup(noise=noise)
        i2c.write(ADDR, b"\x20\x83")
        samples = set()
        for _ in range(20):
            clock.advance_sync(0.08)
            samples.add(reg(i2c, 0x80 | 0x2A, 2))
        readings.append(len(samples))
    assert readings[0] == 1 and readings[1] > 1


# --- faults --------------------------------------------------------------------------------


def test_a_missing_sensor_nacks_and_the_library_throws_readerror() -> None:
    clock, i2c, sensor = setup()
    sensor.set_fault("missing")
    with pytest.raises(RuntimeError, match="I2C write error: -2"):
        Library(i2c, clock)
    assert i2c.read(ADDR, "\x0f", 1) is None and i2c.readerror() == -2


def test_an_out_of_range_sensor_reports_85_degrees() -> None:
    clock, i2c, sensor = setup(temperature=22.5)
    sensor.set_fault("out_of_range", "85")
    lib = Library(i2c, clock)
    lib.set_mode_one_shot()
    assert lib.read()["temperature"] == pytest.approx(85.0, abs=0.02)
    sensor.clear_fault()
    assert lib.read()["temperature"] == pytest.approx(22.5, abs=0.02)


def test_a_wrong_part_answers_another_id() -> None:
    _, i2c, sensor = setup()
    sensor.set_fault("wrong_id", "0x33")
    assert reg(i2c, 0x0F) == b"\x33"


def test_a_blank_part_reads_ff_calibration_and_the_librarys_arithmetic_breaks() -> None:
    clock, i2c, sensor = setup()
    sensor.set_fault("blank_calibration")
    assert reg(i2c, 0x80 | 0x30, 16) == b"\xff" * 16
    assert reg(i2c, 0x0F) == b"\xbc"  # the rest of the part still answers
    with pytest.raises(ZeroDivisionError):  # H1_T0_OUT - H0_T0_OUT == 0
        Library(i2c, clock)
    sensor.clear_fault()
    assert reg(i2c, 0x30) != b"\xff"


# --- a unit's calibration from its board description -----------------------------------------


def test_a_board_can_give_a_unit_a_wrong_calibration() -> None:
    good = Calibration.for_unit("u")
    clock, i2c, sensor = setup(unit="u", temperature=22.5,
                               calibration={"t1_out": good.t1_out + 2000})  # type: ignore[arg-type]
    assert sensor.calibration == good.updated({"t1_out": good.t1_out + 2000})
    lib = Library(i2c, clock)
    lib.set_mode_one_shot()
    raw = good.raw_temperature(22.5)  # the element converts as the unit really does
    t0, t1 = good.t0_degc_x8 / 8, good.t1_degc_x8 / 8
    believed = t0 + (raw - good.t0_out) * (t1 - t0) / (good.t1_out + 2000 - good.t0_out)
    assert lib.read()["temperature"] == pytest.approx(believed, abs=1e-6)
    assert abs(believed - 22.5) > 1  # the library believes the part's memory


def test_an_unknown_calibration_field_is_refused_naming_it() -> None:
    from impfactory.hw.peripherals import PeripheralConfigError

    with pytest.raises(PeripheralConfigError, match="t9_out"):
        Calibration.for_unit("u").updated({"t9_out": 1})


# --- the DRDY line ------------------------------------------------------------------------------


def drdy_setup(**kwargs: float) -> tuple[VirtualClock, I2C, Hts221, PinBank, list[int]]:
    clock = VirtualClock()
    pins = PinBank(["pin1"], Host(clock))
    sensor = Hts221(clock, unit="u", pins=pins, drdy_pin="pin1", **kwargs)
    i2c = I2C("i2c89")
    i2c.configure(CLOCK_SPEED_400_KHZ)
    i2c.attach(ADDR, sensor)
    seen: list[int] = []
    pin = pins.pin("pin1")
    pin.configure(PinMode.DIGITAL_IN_WAKEUP, lambda: seen.append(int(pin.read())))
    return clock, i2c, sensor, pins, seen


def test_drdy_rises_when_a_continuous_sample_completes_and_falls_when_it_is_read() -> None:
    clock, i2c, _, pins, seen = drdy_setup()
    i2c.write(ADDR, b"\x22\x04")  # DRDY_EN, active high, push-pull
    i2c.write(ADDR, b"\x20\x81")  # PD, 1 Hz
    clock.advance_sync(0.999)
    assert seen == [] and pins.pin("pin1").read() == 0
    clock.advance_sync(0.002)  # the first sample completes at 1.0 s: no register access needed
    assert seen == [1]
    reg(i2c, 0x80 | 0x28, 4)  # humidity and temperature read: H_DA and T_DA clear
    assert seen == [1, 0]
    clock.advance_sync(1.0)
    assert seen == [1, 0, 1]
    i2c.write(ADDR, b"\x22\x00")  # DRDY disabled: the sensor lets go of the line
    assert seen == [1, 0, 1, 0]
    clock.advance_sync(5.0)
    assert seen == [1, 0, 1, 0]  # and schedules nothing more


def test_drdy_active_low_and_open_drain() -> None:
    clock, i2c, _, pins, seen = drdy_setup()
    i2c.write(ADDR, b"\x22\x84")  # DRDY_EN, active low, push-pull
    assert seen == [1] and pins.pin("pin1").read() == 1  # driven to its idle level, high
    i2c.write(ADDR, b"\x20\x81")
    clock.advance_sync(1.0)
    assert seen == [1, 0]
    i2c.write(ADDR, b"\x22\xc4")  # open drain: pulls low while asserted, else lets go
    assert pins.pin("pin1").read() == 0
    reg(i2c, 0x80 | 0x28, 4)
    assert pins.pin("pin1").read() == 0  # released: nothing pulls the line up here


def test_drdy_after_a_one_shot() -> None:
    clock, i2c, _, _, seen = drdy_setup(conversion_time=0.004)
    i2c.write(ADDR, b"\x22\x04")
    i2c.write(ADDR, b"\x20\x80")  # PD, one-shot mode
    i2c.write(ADDR, b"\x21\x01")  # ONE_SHOT
    clock.advance_sync(0.003)
    assert seen == []
    clock.advance_sync(0.002)
    assert seen == [1]


def test_a_drdy_pin_the_board_lacks_is_a_configuration_error() -> None:
    from impfactory.hw.peripherals import PeripheralConfigError, PeripheralUsageError

    clock = VirtualClock()
    with pytest.raises((PeripheralConfigError, PeripheralUsageError), match="pin7"):
        Hts221(clock, pins=PinBank(["pin1"], Host(clock)), drdy_pin="pin7")
    with pytest.raises(PeripheralConfigError, match="needs the board's pins"):
        Hts221(clock, drdy_pin="pin1")
