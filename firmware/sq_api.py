"""The device-side imp API as Squirrel sees it: server, imp, hardware, agent, nv.

The behaviour lives once, in the Python objects of ``impapi`` (which Python device
code uses directly); this module only declares how Squirrel reaches them. Each API
object becomes a host class in the device's VM whose methods are natives calling
the Python method, and whose missing members (``hardware.pinM``, ``imp.net``,
``imp.configparams``) are answered by a getter::

    Squirrel  hardware.i2c89.read(0xBE, "\\x0F", 1)
      -> host class "hardware", getter("i2c89") -> the board's I2C, wrapped once
      -> host class "I2C", native "read" -> I2C.read(0xBE, b"\\x0f", 1)
      -> "\\xBC" (a Squirrel string, as the imp returns)

Squirrel cannot reach anything else of Python: a host instance stands for its
object, only the declared methods cross. A member the imp has but the emulator
does not model raises an error that names it, never a silent no-op.

Strings: Squirrel strings are bytes. They cross as Python ``str`` decoded as UTF-8
with ``surrogateescape`` (so any byte string round-trips); buses take and give
``bytes``, converted here at the boundary. One deliberate difference from the imp:
``i2c.read`` gives a blob, not a string (see ``_i2c_read``: signed ``char``).
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from impfactory.firmware import impapi
from impfactory.firmware.errors import ImpApiError

if TYPE_CHECKING:  # pragma: no cover
    from impfactory.firmware.runtime import Runtime
    from impfactory.squirrel import Vm

SERVER_METHODS = ("log", "error", "bless", "factoryblinkup", "onshutdown", "restart",
                  "isconnected", "connect", "disconnect", "onunexpecteddisconnect",
                  "setsendtimeoutpolicy")
IMP_METHODS = ("wakeup", "cancelwakeup", "onidle", "info", "environment", "getmacaddress",
               "getsoftwareversion", "clearconfiguration", "enableblinkup", "setpowersave",
               "getmemoryfree", "rssi", "getssid", "sleep", "deepsleepfor",
               "setwificonfiguration", "setenroltokens")
HARDWARE_METHODS = ("getdeviceid", "millis", "micros", "voltage", "lightlevel")
AGENT_METHODS = ("send", "on")
PIN_METHODS = ("configure", "write", "read")
I2C_METHODS = ("configure", "read", "write", "readerror", "disable")
UART_METHODS = ("configure", "write", "read", "readstring", "readblob", "flush", "disable",
                "setrxfifosize", "settxfifosize", "getflags")
SPI_METHODS = ("configure", "write", "writeread", "readblob", "readstring", "disable")

#: Members of the real imp API that the emulator does not model: reaching one is an
#: error naming it (the imp API reference lists them; this is not every one).
UNMODELLED = {
    "server": ("sleepfor", "expectonlinein", "ondisconnect", "setsendtimeout", "flush",
               "onconnect"),
    "imp": ("scanwifinetworks", "setrescuepin", "getbssid", "getchannel", "setcountry",
            "getcountry", "setstaticnetworkconfiguration", "setproxy", "onnetworkchange",
            "net.setserverinterfaces", "getethernetconfiguration", "setsleeppolicy",
            "wakeupafter", "bsp", "setsendbuffersize", "getbootrom", "getsoftwareversion2",
            "sleepfor", "softwareupdate", "cellular"),
    "hardware": ("spiflash", "usb", "fixedfrequencydac", "sampler", "wakereason", "pwm",
                 "spi0", "pinBOOT", "uartQRPW", "uartDCAB", "uartFGJH", "uartUVGD",
                 "uartPQRS", "uartABCD", "uartFG", "uartBCAW", "i2cFG", "i2cAB", "i2cPQ",
                 "i2cJK", "ledcontrol", "bluetooth"),
}


def _str_bytes(data: Any) -> Any:
    """A Squirrel string's bytes (blobs and ints pass through)."""
    if isinstance(data, str):
        return data.encode("utf-8", "surrogateescape")
    return data


def _bytes_str(data: Any) -> Any:
    """``bytes`` back as a Squirrel string (``None`` stays ``None``: a failed read)."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data).decode("utf-8", "surrogateescape")
    return data


class _Bound:
    """Methods of a Python object as natives: ``name -> fn(obj, *args)``."""

    @staticmethod
    def methods(cls: type, names: tuple[str, ...],
                adapt: dict[str, Callable[..., Any]] | None = None
                ) -> dict[str, Callable[..., Any]]:
        out: dict[str, Callable[..., Any]] = {}
        for name in names:
            if adapt and name in adapt:
                out[name] = adapt[name]
            elif hasattr(cls, name):
                out[name] = getattr(cls, name)
        return out


def _i2c_read(bus: Any, address: int, register: Any, n: int) -> Any:
    """The bytes read, as a blob.

    The imp returns a string, and on the imp (ARM: ``char`` is unsigned) a string's
    bytes index as 0..255. This VM's ``char`` is signed, so ``"\xBC"[0]`` is -68
    here: a blob indexes 0..255 as the imp's string does and has the same ``len()``,
    so code such as Electric Imp's HTS221 library reads the same values.
    """
    return bus.read(address, _str_bytes(register), n)


def _i2c_write(bus: Any, address: int, data: Any) -> Any:
    return bus.write(address, _str_bytes(data))


def _uart_write(bus: Any, data: Any) -> Any:
    return bus.write(_str_bytes(data))


def _spi_write(bus: Any, data: Any) -> Any:
    return bus.write(_str_bytes(data))


def _spi_writeread(bus: Any, data: Any) -> Any:
    answer = bus.writeread(_str_bytes(data))
    return _bytes_str(answer) if isinstance(data, str) else answer


class SquirrelApi:
    """Installs the imp API into one device's VM and answers its getters."""

    def __init__(self, vm: Vm, host: Any, runtime: Runtime) -> None:
        self.vm = vm
        self.host = host
        self.runtime = runtime
        self.py = impapi.build_api(host, runtime)
        self._members: dict[str, Any] = {}  # hardware members wrapped once (stable identity)
        self._classes: dict[str, Any] = {}

    def install(self) -> None:
        vm, py = self.vm, self.py
        server = vm.host_class("server", _Bound.methods(impapi.Server, SERVER_METHODS),
                               getter=self._unmodelled("server"))
        imp = vm.host_class("imp", _Bound.methods(impapi.Imp, IMP_METHODS),
                            getter=self._imp_member)
        hardware = vm.host_class("hardware", _Bound.methods(impapi.Hardware, HARDWARE_METHODS),
                                 getter=self._hardware_member)
        agent = vm.host_class("agent", _Bound.methods(impapi.Agent, AGENT_METHODS))
        self._classes["net"] = vm.host_class("net", {"info": lambda net: net.info()})
        vm.set_global("server", vm.wrap(py["server"], server))
        vm.set_global("imp", vm.wrap(py["imp"], imp))
        vm.set_global("hardware", vm.wrap(py["hardware"], hardware))
        vm.set_global("agent", vm.wrap(py["agent"], agent))
        vm.set_globals(self.constants())
        vm.set_global("time", vm.native(self._time, "time"))
        vm.set_global("date", vm.native(self._date, "date"))
        vm.set_global("clock", vm.native(self._clock, "clock"))
        vm.set_global("nv", dict(self.host.nv or {}))

    def save_nv(self) -> None:
        """Keep ``nv`` (plain data) on the device for the next warm boot."""
        try:
            value = self.vm.get_global("nv")
        except Exception:
            return
        self.host.nv = value if isinstance(value, dict) else None

    # --- constants ---------------------------------------------------------------

    @staticmethod
    def constants() -> dict[str, Any]:
        out = dict(impapi.CONSTANTS)
        try:
            from impfactory.hw.peripherals import CONSTANTS as PERIPHERAL_CONSTANTS
        except ImportError:  # pragma: no cover - the peripherals package is part of us
            PERIPHERAL_CONSTANTS = {}
        out.update(PERIPHERAL_CONSTANTS)
        return out

    # --- getters -----------------------------------------------------------------

    @staticmethod
    def _unmodelled(table: str) -> Callable[[Any, str], Any]:
        def getter(_obj: Any, name: str) -> Any:
            if name in UNMODELLED[table]:
                raise ImpApiError(f"{table}.{name} is not modelled by the impfactory emulator")
            raise ImpApiError(f"the index '{name}' does not exist")

        return getter

    def _imp_member(self, obj: Any, name: str) -> Any:
        if name == "configparams":
            return obj.configparams
        if name == "net":
            return self.vm.wrap(obj.net, self._classes["net"])
        return self._unmodelled("imp")(obj, name)

    def _hardware_member(self, obj: Any, name: str) -> Any:
        member = self._members.get(name)
        if member is not None:
            return member
        target = self._lookup(name)
        if target is None:
            return self._unmodelled("hardware")(obj, name)
        member = self._members[name] = self.vm.wrap(target, self._class_for(target))
        return member

    def _lookup(self, name: str) -> Any:
        board = self.host.hardware_board
        lookup = getattr(board, "lookup", None)
        if lookup is not None:
            try:
                return lookup(name)
            except Exception:
                return None
        try:
            return getattr(self.py["hardware"], name)
        except (AttributeError, ImpApiError):
            return None

    def _class_for(self, target: Any) -> Any:
        kind = type(target).__name__
        cls = self._classes.get(kind)
        if cls is not None:
            return cls
        if kind == "I2C":
            methods = _Bound.methods(type(target), I2C_METHODS,
                                     {"read": _i2c_read, "write": _i2c_write})
        elif kind == "UART":
            methods = _Bound.methods(type(target), UART_METHODS, {"write": _uart_write})
        elif kind == "SPI":
            methods = _Bound.methods(type(target), SPI_METHODS,
                                     {"write": _spi_write, "writeread": _spi_writeread})
        else:
            methods = _Bound.methods(type(target), PIN_METHODS)
        cls = self._classes[kind] = self.vm.host_class(kind, methods)
        return cls

    # --- the standard library on the device's clock --------------------------------

    def _epoch(self) -> float:
        base = getattr(self.host, "epoch", None)
        if base is None:
            base = self.host.epoch = _time.time() - self.host.device_now()
        return float(base) + float(self.host.device_now())

    def _time(self) -> int:
        return int(self._epoch())

    def _clock(self) -> float:
        return float(self.host.device_now())

    def _date(self, when: int | None = None, kind: str = "u") -> dict[str, int]:
        return date_table(self._epoch() if when is None else float(when))


def date_table(seconds: float) -> dict[str, int]:
    """The imp's ``date([time])`` for ``seconds`` since the epoch: a table of the UTC
    date (``month`` from 0), as device and agent code see it."""
    t = _time.gmtime(seconds)
    return {"year": t.tm_year, "month": t.tm_mon - 1, "day": t.tm_mday,
            "wday": (t.tm_wday + 1) % 7, "yday": t.tm_yday - 1, "hour": t.tm_hour,
            "min": t.tm_min, "sec": t.tm_sec,
            "usec": int((seconds - int(seconds)) * 1_000_000), "time": int(seconds)}
