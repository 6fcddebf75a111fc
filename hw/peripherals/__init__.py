"""Virtual peripherals: the imp's pins and buses, and models of the parts wired to them.

Like Wokwi and Renode: a bus owns its transactions and the injected clock, a model
owns only its registers, and which model sits on which pin or bus is configuration
(``Board``, read from JSON). Nothing here runs device code or knows Squirrel: the
emulated imp binds these objects to ``hardware.*`` and passes a ``Host`` (its clock,
and how to run a device callback).

    board = Board.load("imp001-explorer", Host(clock, runtime.call), unit=device_id)
    board["i2c89"].configure(CLOCK_SPEED_400_KHZ)
    board["i2c89"].read(0xBE, b"\\x0F", 1)          # b"\\xBC"
    board.set_fault("sensor.missing")               # now None, readerror() -2

Modules: ``pins`` (PinBank, Pin), ``i2c``, ``uart``, ``spi`` (the buses), ``hts221``,
``cfax33kl``, ``fixture_io`` (buttons, LEDs), ``ws2812``, ``regfile`` (models),
``board`` (descriptions and the registry of model types), ``faults``, ``host``.
"""

from __future__ import annotations

from typing import Any

from . import i2c, spi, uart
from .board import (
    Attachment,
    Board,
    BoardSpec,
    BusSpec,
    load_spec,
    register_model,
    spec_from_dict,
)
from .cfax33kl import CfaX33Kl, Packet, PacketDecoder, PacketType, crc16
from .errors import PeripheralConfigError, PeripheralError, PeripheralUsageError
from .faults import Faultable, FaultSpec
from .fixture_io import BlinkUpLed, Bounce, Button, Led, Level, Probe
from .host import Host
from .hts221 import Calibration, Hts221
from .i2c import I2C, I2CError, I2CTarget
from .pins import LEGACY_PIN_NAMES, Pin, PinBank, PinMode
from .regfile import StRegisterDevice
from .spi import SPI, SpiTarget
from .uart import UART, LineSettings, UartLoopback, UartPeer
from .ws2812 import Ws2812

#: Every constant device code may use with these buses and pins, by its imp name.
CONSTANTS: dict[str, Any] = {
    **i2c.CONSTANTS, **uart.CONSTANTS, **spi.CONSTANTS,
    **{mode.name: int(mode) for mode in PinMode},
}

__all__ = [
    "CONSTANTS", "I2C", "LEGACY_PIN_NAMES", "SPI", "UART", "Attachment", "BlinkUpLed",
    "Board", "BoardSpec", "Bounce", "BusSpec", "Button", "Calibration", "CfaX33Kl",
    "FaultSpec", "Faultable", "Host", "Hts221", "I2CError", "I2CTarget", "Led", "Level",
    "LineSettings", "Packet", "PacketDecoder", "PacketType", "PeripheralConfigError",
    "PeripheralError", "PeripheralUsageError", "Pin", "PinBank", "PinMode", "Probe",
    "SpiTarget", "StRegisterDevice", "UartLoopback", "UartPeer", "Ws2812", "crc16",
    "load_spec", "register_model", "spec_from_dict",
]
