"""ST HTS221 humidity and temperature sensor, as its datasheet describes its registers.

The model holds the *true* environment (``temperature`` in degC, ``humidity`` in
%rH, both settable) and a per-unit calibration, and answers the registers an
HTS221 has::

    0x0F WHO_AM_I     0xBC                     0x27 STATUS_REG   H_DA(1) T_DA(0)
    0x10 AV_CONF      AVGT(5:3) AVGH(2:0)      0x28/29 HUMIDITY_OUT  int16 LE
    0x20 CTRL_REG1    PD(7) BDU(2) ODR(1:0)    0x2A/2B TEMP_OUT      int16 LE
    0x21 CTRL_REG2    BOOT(7) HEATER(1) ONE_SHOT(0)
    0x22 CTRL_REG3    DRDY_H_L(7) PP_OD(6) DRDY_EN(2)
    0x30 H0_rH_x2   0x31 H1_rH_x2   0x32 T0_degC_x8   0x33 T1_degC_x8
    0x35 T1/T0 msb (T0: bits 1:0, T1: bits 3:2)
    0x36/37 H0_T0_OUT   0x3A/3B H1_T0_OUT   0x3C/3D T0_OUT   0x3E/3F T1_OUT

Conversions follow the injected clock: with PD set and ODR 0, writing ONE_SHOT
starts one conversion that completes ``conversion_time`` later (ONE_SHOT then
clears itself, the outputs take the new sample and H_DA/T_DA are set); with ODR
1, 7 or 12.5 Hz a sample completes every period. Reading HUMIDITY_OUT_H clears
H_DA, reading TEMP_OUT_H clears T_DA. With BDU set, a pair whose low byte was read
keeps its value until its high byte is read. A read before any conversion finds
the outputs at 0, as after power-on. Time is evaluated when the registers are
accessed, so nothing is scheduled.

The calibration is generated per unit from ``unit`` (a device ID, say): two
reference points each for temperature and humidity, encoded exactly as the
datasheet lays them out, and the raw outputs lie on the straight line through
them. So the linear interpolation every driver does (Electric Imp's HTS221
library among them) gives back the true values within one LSB: 1/gain degC,
about 0.016 degC.

``calibration`` (a mapping of ``Calibration`` field names) overrides fields of
what the unit's calibration memory holds, while its sensing element still
converts as the unit's own calibration says (``transfer``): a board file can
describe a unit that left its factory with wrong calibration, whose readings a
driver then gets wrong.

The DRDY output (datasheet: pin 3) drives the imp pin named by ``drdy_pin``
when the board wires it (the impExplorer Kit wires it to pin1, which the HTS221
library's own tests wait on). With DRDY_EN set it is asserted while a new sample
is unread (H_DA or T_DA set), high unless DRDY_H_L asks for active low; push-pull
drives both levels, open drain (PP_OD) only pulls low; with DRDY_EN clear the
model lets go of the line. So that the line rises when a conversion completes,
not at the next register access, the model schedules a timer on the injected
clock for the next completion while DRDY is enabled.

Faults: ``missing`` (address NACK), ``out_of_range`` (the sensor reports that
temperature, 85 degC by default, whatever the room is), ``wrong_id`` (WHO_AM_I
answers another value: a wrong part fitted), ``blank_calibration`` (the
calibration registers read 0xFF, as an unprogrammed part's would: a driver's
interpolation then divides by zero). Not modelled: the heater, output noise (off
unless ``noise=True``), and BOOT takes no time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from impfactory.clock import Clock, TimerHandle

from .errors import PeripheralConfigError
from .faults import FaultSpec
from .pins import PinBank
from .regfile import StRegisterDevice

WHO_AM_I, AV_CONF, CTRL_REG1, CTRL_REG2, CTRL_REG3, STATUS_REG = (
    0x0F, 0x10, 0x20, 0x21, 0x22, 0x27)
HUMIDITY_OUT_L, HUMIDITY_OUT_H, TEMP_OUT_L, TEMP_OUT_H = 0x28, 0x29, 0x2A, 0x2B
CALIBRATION = range(0x30, 0x40)
DEVICE_ID = 0xBC
AV_CONF_DEFAULT = 0x1B
PD, BDU, BOOT, ONE_SHOT = 0x80, 0x04, 0x80, 0x01
DRDY_H_L, PP_OD, DRDY_EN = 0x80, 0x40, 0x04
H_DA, T_DA = 0x02, 0x01
ODR_HZ = {0: 0.0, 1: 1.0, 2: 7.0, 3: 12.5}
I2C_ADDRESS = 0xBE
#: Output noise (rms) per averaging setting, from the datasheet's AV_CONF table.
TEMP_NOISE = (0.08, 0.05, 0.04, 0.03, 0.02, 0.015, 0.01, 0.007)
HUM_NOISE = (0.4, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03)


@dataclass(frozen=True)
class Calibration:
    """One unit's factory calibration, as stored in registers 0x30..0x3F."""

    h0_rh_x2: int
    h1_rh_x2: int
    t0_degc_x8: int  # 10 bits
    t1_degc_x8: int  # 10 bits
    h0_t0_out: int
    h1_t0_out: int
    t0_out: int
    t1_out: int

    @classmethod
    def for_unit(cls, unit: str) -> Calibration:
        """A plausible calibration, the same every time for the same ``unit``."""
        rng = random.Random(f"hts221:{unit}")
        t0_x8 = rng.randint(8 * 10, 8 * 20)
        t1_x8 = t0_x8 + rng.randint(8 * 15, 8 * 25)
        t_gain, t_zero = rng.uniform(55.0, 70.0), rng.uniform(-1500.0, 500.0)
        h0_x2, h1_x2 = rng.randint(2 * 20, 2 * 35), rng.randint(2 * 65, 2 * 80)
        h_gain, h_zero = rng.uniform(100.0, 250.0), rng.uniform(-5000.0, 0.0)
        return cls(h0_x2, h1_x2, t0_x8, t1_x8,
                   round(h_zero + h_gain * h0_x2 / 2), round(h_zero + h_gain * h1_x2 / 2),
                   round(t_zero + t_gain * t0_x8 / 8), round(t_zero + t_gain * t1_x8 / 8))

    def updated(self, changes: Mapping[str, Any]) -> Calibration:
        """This calibration with some fields replaced (names as in the datasheet map)."""
        names = {f.name for f in fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise PeripheralConfigError(f"HTS221 calibration: unknown field(s) "
                                        f"{', '.join(sorted(unknown))}; known: "
                                        f"{', '.join(sorted(names))}")
        try:
            return replace(self, **{k: int(v) for k, v in changes.items()})
        except (TypeError, ValueError) as err:
            raise PeripheralConfigError(f"HTS221 calibration: {err}") from err

    def registers(self) -> dict[int, int]:
        msb = ((self.t0_degc_x8 >> 8) & 0x03) | (((self.t1_degc_x8 >> 8) & 0x03) << 2)
        regs = {0x30: self.h0_rh_x2, 0x31: self.h1_rh_x2, 0x32: self.t0_degc_x8 & 0xFF,
                0x33: self.t1_degc_x8 & 0xFF, 0x34: 0x00, 0x35: msb, 0x38: 0, 0x39: 0}
        for reg, value in ((0x36, self.h0_t0_out), (0x3A, self.h1_t0_out),
                           (0x3C, self.t0_out), (0x3E, self.t1_out)):
            regs[reg], regs[reg + 1] = value & 0xFF, (value >> 8) & 0xFF
        return regs

    def raw_temperature(self, degc: float) -> int:
        t0, t1 = self.t0_degc_x8 / 8.0, self.t1_degc_x8 / 8.0
        return _int16(self.t0_out + (degc - t0) * (self.t1_out - self.t0_out) / (t1 - t0))

    def raw_humidity(self, rh: float) -> int:
        h0, h1 = self.h0_rh_x2 / 2.0, self.h1_rh_x2 / 2.0
        return _int16(self.h0_t0_out + (rh - h0) * (self.h1_t0_out - self.h0_t0_out) / (h1 - h0))


def _int16(value: float) -> int:
    return max(-32768, min(32767, round(value)))


class Hts221(StRegisterDevice):
    """An HTS221 on an I²C bus (8-bit address 0xBE)."""

    FAULTS: ClassVar[Mapping[str, FaultSpec]] = {
        **StRegisterDevice.FAULTS,
        "out_of_range": FaultSpec("reports this temperature (degC) whatever the room is",
                                  float, 85.0),
        "wrong_id": FaultSpec("WHO_AM_I answers this value (a wrong part)",
                              lambda text: int(text, 0), 0x00),
        "blank_calibration": FaultSpec("the calibration registers read 0xFF (never programmed)"),
    }

    def __init__(self, clock: Clock, unit: str = "", temperature: float = 22.5,
                 humidity: float = 40.0, conversion_time: float = 0.004,
                 noise: bool = False, calibration: Mapping[str, Any] | None = None,
                 pins: PinBank | None = None, drdy_pin: str | None = None) -> None:
        self.transfer = Calibration.for_unit(unit)  # how this unit's element really converts
        self.calibration = (self.transfer.updated(calibration) if calibration
                            else self.transfer)  # what its calibration memory holds
        registers = {WHO_AM_I: DEVICE_ID, AV_CONF: AV_CONF_DEFAULT, CTRL_REG1: 0,
                     CTRL_REG2: 0, CTRL_REG3: 0, STATUS_REG: 0, HUMIDITY_OUT_L: 0,
                     HUMIDITY_OUT_H: 0, TEMP_OUT_L: 0, TEMP_OUT_H: 0,
                     **self.calibration.registers()}
        super().__init__(registers, writable=(AV_CONF, CTRL_REG1, CTRL_REG2, CTRL_REG3))
        self.clock = clock
        self.temperature = float(temperature)
        self.humidity = float(humidity)
        self.conversion_time = float(conversion_time)
        self.samples = 0
        self._rng = random.Random(f"hts221-noise:{unit}") if noise else None
        self._oneshot_due: float | None = None
        self._cont_start = 0.0
        self._cont_done = 0
        self._held: dict[int, bool] = {HUMIDITY_OUT_L: False, TEMP_OUT_L: False}
        self._pending: dict[int, int] = {}
        if drdy_pin is not None and pins is None:
            raise PeripheralConfigError("HTS221: drdy_pin needs the board's pins")
        self._pins = pins if drdy_pin is not None else None
        self.drdy_pin = drdy_pin
        self._drdy_source = f"hts221:drdy:{unit or id(self)}"
        self._drdy_level: float | None = None
        self._drdy_timer: tuple[float, TimerHandle] | None = None
        if self._pins is not None and drdy_pin is not None:
            self._pins.pin(drdy_pin)  # a wrong pin name fails here, at board build

    # --- what the sensor reports -----------------------------------------------------

    def reading(self) -> tuple[float, float]:
        """(temperature, humidity) the sensor measures now, faults included."""
        temperature = self.fault("out_of_range")
        return (self.temperature if temperature is None else float(temperature), self.humidity)

    # --- register behaviour ----------------------------------------------------------

    def connect(self, read: bool) -> bool:
        self._update()
        return super().connect(read)

    def write(self, data: bytes) -> bool:
        done = super().write(data)
        self._refresh_drdy()
        return done

    def read(self, n: int) -> bytes | None:
        out = super().read(n)
        self._refresh_drdy()
        return out

    def load(self, reg: int) -> int:
        if reg == WHO_AM_I and self.fault("wrong_id") is not None:
            return int(self.fault("wrong_id")) & 0xFF
        if reg in CALIBRATION and self.fault("blank_calibration"):
            return 0xFF
        value = self.regs[reg]
        if reg in self._held and self.regs[CTRL_REG1] & BDU:
            self._held[reg] = True
        elif reg in (HUMIDITY_OUT_H, TEMP_OUT_H):
            low = reg - 1
            self.regs[STATUS_REG] &= ~(H_DA if reg == HUMIDITY_OUT_H else T_DA) & 0xFF
            if self._held[low]:
                self._held[low] = False
                pending = self._pending.pop(low, None)
                if pending is not None:
                    self._set16(low, pending)
        return value

    def store(self, reg: int, value: int) -> None:
        now = self.clock.now()
        if reg == CTRL_REG1:
            before = self.regs[CTRL_REG1]
            self.regs[reg] = value & 0xFF
            if (value & PD) and (not before & PD or (value & 0x03) != (before & 0x03)):
                self._cont_start, self._cont_done = now, 0
            return
        if reg == CTRL_REG2:
            if value & BOOT:  # reload the calibration from the part's memory (instantly)
                for creg, cvalue in self.calibration.registers().items():
                    self.regs[creg] = cvalue
                value &= ~BOOT
            powered = self.regs[CTRL_REG1] & PD and not self.regs[CTRL_REG1] & 0x03
            if value & ONE_SHOT and powered and self._oneshot_due is None:
                self._oneshot_due = now + self.conversion_time
            elif value & ONE_SHOT and not powered:
                value &= ~ONE_SHOT  # power-down or continuous mode: no one-shot
            self.regs[reg] = value & 0xFF
            return
        self.regs[reg] = value & 0xFF

    # --- conversions -----------------------------------------------------------------

    def _update(self) -> None:
        """Complete every conversion the clock says has finished since the last access."""
        now = self.clock.now()
        ctrl1 = self.regs[CTRL_REG1]
        if self._oneshot_due is not None and now >= self._oneshot_due:
            self._oneshot_due = None
            self.regs[CTRL_REG2] &= ~ONE_SHOT & 0xFF
            if ctrl1 & PD:
                self._latch()
        rate = ODR_HZ[ctrl1 & 0x03]
        if ctrl1 & PD and rate:
            done = math.floor((now - self._cont_start) * rate + 1e-9)
            if done > self._cont_done:
                self._cont_done = done
                self._latch()

    def _latch(self) -> None:
        temperature, humidity = self.reading()
        if self._rng is not None:
            avconf = self.regs[AV_CONF]
            temperature += self._rng.gauss(0.0, TEMP_NOISE[(avconf >> 3) & 0x07])
            humidity += self._rng.gauss(0.0, HUM_NOISE[avconf & 0x07])
        for low, raw in ((HUMIDITY_OUT_L, self.transfer.raw_humidity(humidity)),
                         (TEMP_OUT_L, self.transfer.raw_temperature(temperature))):
            if self._held[low]:
                self._pending[low] = raw
            else:
                self._set16(low, raw)
        self.regs[STATUS_REG] |= H_DA | T_DA
        self.samples += 1

    def _set16(self, low: int, raw: int) -> None:
        self.regs[low], self.regs[low + 1] = raw & 0xFF, (raw >> 8) & 0xFF

    # --- the DRDY line -----------------------------------------------------------------

    def _next_completion(self) -> float | None:
        """Clock time of the next conversion to complete, if one is under way."""
        if self._oneshot_due is not None:
            return self._oneshot_due
        ctrl1 = self.regs[CTRL_REG1]
        rate = ODR_HZ[ctrl1 & 0x03]
        if ctrl1 & PD and rate:
            return self._cont_start + (self._cont_done + 1) / rate
        return None

    def _refresh_drdy(self) -> None:
        """Drive the DRDY line as the registers say, and wake up at the next sample."""
        if self._pins is None or self.drdy_pin is None:
            return
        ctrl3 = self.regs[CTRL_REG3]
        level: float | None = None
        if ctrl3 & DRDY_EN:
            asserted = bool(self.regs[STATUS_REG] & (H_DA | T_DA))
            high = asserted != bool(ctrl3 & DRDY_H_L)
            level = 1.0 if high else 0.0
            if ctrl3 & PP_OD and high:
                level = None  # open drain: released, the line's pull-up decides
        if level != self._drdy_level:
            self._drdy_level = level
            self._pins.drive(self.drdy_pin, self._drdy_source, level)
        due = self._next_completion() if ctrl3 & DRDY_EN else None
        if self._drdy_timer is not None and (due is None or self._drdy_timer[0] != due):
            self._drdy_timer[1].cancel()
            self._drdy_timer = None
        if due is not None and self._drdy_timer is None:
            delay = max(0.0, due - self.clock.now())
            self._drdy_timer = (due, self.clock.call_later(delay, self._drdy_due))

    def _drdy_due(self) -> None:
        self._drdy_timer = None
        self._update()
        self._refresh_drdy()
