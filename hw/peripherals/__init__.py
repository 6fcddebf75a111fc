"""Virtual peripherals: the imp's pins and buses, and models of the parts wired to them.

Like Wokwi and Renode: a bus owns its transactions and the injected clock, a model
owns only its registers, and which model sits on which pin or bus is configuration.
Nothing here runs device code or knows Squirrel: the emulated imp binds these
objects to ``hardware.*`` and passes a ``Host`` (its clock, and how to run a device
callback).
"""

from __future__ import annotations

from .cfax33kl import CfaX33Kl, Packet, PacketDecoder, PacketType, crc16
from .errors import PeripheralConfigError, PeripheralError, PeripheralUsageError
from .faults import Faultable, FaultSpec
from .fixture_io import BlinkUpLed, Bounce, Button, Led, Level, Probe
from .host import Host
from .hts221 import Calibration, Hts221
from .i2c import I2C, I2CError, I2CTarget
from .pins import LEGACY_PIN_NAMES, Pin, PinBank, PinMode
from .regfile import StRegisterDevice
from .uart import UART, LineSettings, UartLoopback, UartPeer

__all__ = [
    "I2C", "LEGACY_PIN_NAMES", "UART", "BlinkUpLed", "Bounce", "Button", "Calibration",
    "CfaX33Kl", "FaultSpec", "Faultable", "Host", "Hts221", "I2CError", "I2CTarget", "Led",
    "Level", "LineSettings", "Packet", "PacketDecoder", "PacketType", "PeripheralConfigError",
    "PeripheralError", "PeripheralUsageError", "Pin", "PinBank", "PinMode", "Probe",
    "StRegisterDevice", "UartLoopback", "UartPeer", "crc16",
]
