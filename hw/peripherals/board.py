"""A board: which pins and buses an imp offers and which models sit on them, as data.

Renode describes a machine in a platform file; here a board is a small JSON
document (or the same dict in code)::

    {"name": "imp001-explorer-kit", "imp": "imp001",
     "pins": ["pin1", "pin2", "pin5", "pin7", "pin8", "pin9"],
     "capabilities": {"ANALOG_OUT": ["pin1", "pin5"], "DIGITAL_IN_WAKEUP": ["pin1"]},
     "buses": {"i2c89": {"kind": "i2c", "pins": ["pin8", "pin9"], "errors": "stm32"},
               "uart57": {"kind": "uart", "baud": [916, 3750000]},
               "spi257": {"kind": "spi", "rates_khz": [30000, 15000, 7500]}},
     "aliases": {},
     "attach": [{"name": "sensor", "model": "hts221", "bus": "i2c89", "address": "0xBE"},
                {"name": "rgb", "model": "ws2812", "bus": "spi257",
                 "params": {"power_pin": "pin1"}},
                {"name": "green_btn", "model": "button", "pin": "pinC"}]}

``Board(spec, host, unit)`` builds the pins, the buses and the models; the same
firmware meets another board by loading another file, and a bench can put a real
part where a model was by leaving its line out. ``unit`` names the physical unit
(a device ID): models with per-unit variation (the HTS221's calibration) derive it
from there, so the same unit is the same every run.

Two boards ship with the package: ``imp005-fixture`` (Electric Imp's Factory
BlinkUp Box, as FactoryExampleAsync.device.nut addresses it) and
``imp001-explorer`` (the impExplorer Kit the example tests as its DUT).

Model types are a registry (``MODELS``): a name, what it attaches to (an I2C
address, a UART, an SPI bus with optional chip-select pin, or a pin) and a factory
taking the context and the attachment's ``params``. ``register_model`` adds one.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from . import cfax33kl, fixture_io, hts221, regfile, uart, ws2812
from .errors import PeripheralConfigError, PeripheralUsageError
from .faults import Faultable, parse_fault
from .host import Host
from .i2c import CLOCK_SPEEDS, ERROR_STYLES, I2C
from .pins import Pin, PinBank, PinMode
from .spi import SPI
from .uart import UART

BUILTIN_BOARDS = {
    "imp005-fixture": "board_imp005_fixture.json",
    "imp001-explorer": "board_imp001_explorer.json",
}
BUS_KINDS = ("i2c", "uart", "spi")
Bus = I2C | UART | SPI
BusT = TypeVar("BusT", I2C, UART, SPI)


@dataclass(frozen=True)
class BusSpec:
    """One bus the imp offers: its kind, the pins it uses, and its controller's limits."""

    kind: str
    pins: tuple[str, ...] = ()
    errors: str = "stm32"  # i2c: error style
    speeds: tuple[int, ...] = CLOCK_SPEEDS  # i2c: clock speeds
    baud: tuple[float, float] = (300.0, 4_000_000.0)  # uart
    min_fifo: int = 20  # uart
    rates_khz: tuple[float, ...] = ()  # spi: discrete rates (empty: range_khz)
    range_khz: tuple[float, float] = (1.0, 20_000.0)  # spi
    dedicated_cs: bool = False  # spi: USE_CS_L


@dataclass(frozen=True)
class Attachment:
    """One model on the board: where it sits and its parameters."""

    name: str
    model: str
    bus: str | None = None
    address: int | None = None  # i2c, 8-bit
    pin: str | None = None  # pin models
    cs: str | None = None  # spi chip select
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BoardSpec:
    """The whole board description (see the module docstring for the JSON form)."""

    name: str
    imp: str
    pins: tuple[str, ...]
    buses: Mapping[str, BusSpec] = field(default_factory=dict)
    capabilities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    attach: tuple[Attachment, ...] = ()
    description: str = ""

    def with_attachments(self, *extra: Attachment, without: Iterable[str] = ()) -> BoardSpec:
        """This board with some models added and others (by name) taken off."""
        drop = set(without)
        kept = tuple(a for a in self.attach if a.name not in drop)
        return BoardSpec(self.name, self.imp, self.pins, self.buses, self.capabilities,
                         self.aliases, kept + extra, self.description)


# --- reading a description ------------------------------------------------------------


def _fail(where: str, msg: str) -> PeripheralConfigError:
    return PeripheralConfigError(f"{where}: {msg}")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(where, "expected a list of names")
    return tuple(value)


def _pair(value: Any, where: str) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) for v in value) or value[0] > value[1]):
        raise _fail(where, "expected [low, high]")
    return float(value[0]), float(value[1])


def _int(value: Any, where: str) -> int:
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError as err:
            raise _fail(where, f"{value!r} is not a number") from err
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"{value!r} is not a number")
    return value


def _keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(sorted(unknown))}; "
                           f"known: {', '.join(sorted(allowed))}")


def _bus_spec(data: Any, where: str) -> BusSpec:
    if not isinstance(data, dict):
        raise _fail(where, "expected an object")
    _keys(data, {"kind", "pins", "errors", "speeds", "baud", "min_fifo", "rates_khz",
                 "range_khz", "dedicated_cs"}, where)
    kind = data.get("kind")
    if kind not in BUS_KINDS:
        raise _fail(where, f"kind must be one of {', '.join(BUS_KINDS)}, got {kind!r}")
    spec = BusSpec(kind=kind, pins=_strings(data.get("pins", []), f"{where}.pins"))
    values: dict[str, Any] = {}
    if "errors" in data:
        if data["errors"] not in ERROR_STYLES:
            raise _fail(f"{where}.errors", f"one of {', '.join(ERROR_STYLES)}")
        values["errors"] = data["errors"]
    if "speeds" in data:
        values["speeds"] = tuple(_int(v, f"{where}.speeds") for v in data["speeds"])
    if "baud" in data:
        values["baud"] = _pair(data["baud"], f"{where}.baud")
    if "min_fifo" in data:
        values["min_fifo"] = _int(data["min_fifo"], f"{where}.min_fifo")
    if "rates_khz" in data:
        values["rates_khz"] = tuple(float(v) for v in data["rates_khz"])
    if "range_khz" in data:
        values["range_khz"] = _pair(data["range_khz"], f"{where}.range_khz")
    if "dedicated_cs" in data:
        values["dedicated_cs"] = bool(data["dedicated_cs"])
    return replace(spec, **values)


def _attachment(data: Any, where: str) -> Attachment:
    if not isinstance(data, dict):
        raise _fail(where, "expected an object")
    _keys(data, {"name", "model", "bus", "address", "pin", "cs", "params"}, where)
    for key in ("name", "model"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise _fail(where, f"{key!r} must be a non-empty string")
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise _fail(f"{where}.params", "expected an object")
    address = data.get("address")
    return Attachment(name=data["name"], model=data["model"], bus=data.get("bus"),
                      address=None if address is None else _int(address, f"{where}.address"),
                      pin=data.get("pin"), cs=data.get("cs"),
                      params=MappingProxyType(copy.deepcopy(params)))


def spec_from_dict(data: Mapping[str, Any]) -> BoardSpec:
    """A ``BoardSpec`` from its JSON form, every field checked; errors name the field."""
    if not isinstance(data, Mapping):
        raise PeripheralConfigError("board description: expected an object")
    name = data.get("name")
    where = f"board {name!r}" if isinstance(name, str) else "board"
    _keys(data, {"name", "imp", "description", "pins", "capabilities", "buses", "aliases",
                 "attach"}, where)
    if not isinstance(name, str) or not isinstance(data.get("imp"), str):
        raise _fail(where, "'name' and 'imp' must be strings")
    buses_data = data.get("buses", {})
    if not isinstance(buses_data, dict):
        raise _fail(f"{where}.buses", "expected an object")
    capabilities_data = data.get("capabilities", {})
    if not isinstance(capabilities_data, dict):
        raise _fail(f"{where}.capabilities", "expected an object")
    for mode in capabilities_data:
        if mode not in PinMode.__members__:
            raise _fail(f"{where}.capabilities", f"unknown pin mode {mode!r}")
    aliases = data.get("aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise _fail(f"{where}.aliases", "expected an object of names")
    attach_data = data.get("attach", [])
    if not isinstance(attach_data, list):
        raise _fail(f"{where}.attach", "expected a list")
    return BoardSpec(
        name=name, imp=data["imp"], description=str(data.get("description", "")),
        pins=_strings(data.get("pins", []), f"{where}.pins"),
        buses=MappingProxyType({n: _bus_spec(b, f"{where}.buses.{n}")
                                for n, b in buses_data.items()}),
        capabilities=MappingProxyType({m: _strings(p, f"{where}.capabilities.{m}")
                                       for m, p in capabilities_data.items()}),
        aliases=MappingProxyType(dict(aliases)),
        attach=tuple(_attachment(a, f"{where}.attach[{i}]") for i, a in enumerate(attach_data)),
    )


def load_spec(name_or_path: str | Path) -> BoardSpec:
    """A built-in board by name (``imp005-fixture``, ``imp001-explorer``) or a JSON file."""
    if str(name_or_path) in BUILTIN_BOARDS:
        return _builtin_spec(str(name_or_path))
    return _read_spec(Path(name_or_path))


@functools.cache
def _builtin_spec(name: str) -> BoardSpec:
    """A built-in board, read once: a line builds one per device."""
    return _read_spec(Path(__file__).with_name(BUILTIN_BOARDS[name]), name)


def _read_spec(path: Path, label: str | None = None) -> BoardSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        known = ", ".join(BUILTIN_BOARDS)
        raise PeripheralConfigError(
            f"board {label or path}: cannot read it ({err.strerror}); built-in boards: {known}"
        ) from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PeripheralConfigError(f"board {path.name}: not JSON: {err}") from err
    return spec_from_dict(data)


# --- model types ------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelContext:
    """What a model factory may use: the board's host and pins, the unit's name."""

    host: Host
    pins: PinBank
    unit: str
    attachment: Attachment


ModelFactory = Callable[[ModelContext, dict[str, Any]], Any]


@dataclass(frozen=True)
class ModelType:
    """A kind of model: what it attaches to (``i2c``, ``uart``, ``spi`` or ``pin``)."""

    attaches_to: str
    factory: ModelFactory
    description: str = ""


MODELS: dict[str, ModelType] = {}


def register_model(name: str, attaches_to: str, factory: ModelFactory,
                   description: str = "") -> None:
    if attaches_to not in (*BUS_KINDS, "pin"):
        raise PeripheralConfigError(f"model {name}: cannot attach to {attaches_to!r}")
    MODELS[name] = ModelType(attaches_to, factory, description)


def _register_builtin_models() -> None:
    def bounce(params: dict[str, Any]) -> fixture_io.Bounce | None:
        spec = params.pop("bounce", None)
        if spec is None or spec is False:
            return None
        return fixture_io.Bounce(**spec) if isinstance(spec, dict) else fixture_io.Bounce()

    def registers(params: dict[str, Any]) -> regfile.StRegisterDevice:
        regs = {_int(k, "registers"): _int(v, "registers")
                for k, v in params.pop("registers", {}).items()}
        writable = [_int(r, "writable") for r in params.pop("writable", [])]
        return regfile.StRegisterDevice(regs, writable, **params)

    register_model("hts221", "i2c", lambda c, p: hts221.Hts221(
        c.host.clock, unit=c.unit, pins=c.pins, **p),
        "ST HTS221 humidity and temperature sensor (params: drdy_pin, calibration)")
    register_model("st_registers", "i2c", lambda c, p: registers(p),
                   "an ST-convention register file (WHO_AM_I and fixed values)")
    register_model("cfax33kl", "uart", lambda c, p: cfax33kl.CfaX33Kl(c.host.clock, **p),
                   "Crystalfontz CFA533/633 serial LCD with keypad")
    register_model("uart_loopback", "uart", lambda c, p: uart.UartLoopback(**p),
                   "a plug joining TX to RX")
    register_model("ws2812", "spi", lambda c, p: ws2812.Ws2812(pins=c.pins, **p),
                   "WS2812B RGB LEDs driven over SPI")
    register_model("button", "pin", lambda c, p: fixture_io.Button(
        c.pins, _pin_of(c), c.host, bounce=bounce(p), **p), "push switch, active low")
    register_model("led", "pin", lambda c, p: fixture_io.Led(c.pins, _pin_of(c), c.host, **p),
                   "LED the imp drives")
    register_model("blinkup_led", "pin", lambda c, p: fixture_io.BlinkUpLed(
        c.pins, _pin_of(c), c.host, **p), "the LED factory BlinkUp flashes")
    register_model("probe", "pin", lambda c, p: fixture_io.Probe(c.pins, _pin_of(c), c.host),
                   "records what the imp drives")
    register_model("level", "pin", lambda c, p: fixture_io.Level(c.pins, _pin_of(c), **p),
                   "a fixed input level")


def _pin_of(context: ModelContext) -> str:
    assert context.attachment.pin is not None
    return context.attachment.pin


_register_builtin_models()


# --- the board -----------------------------------------------------------------------------


class Board:
    """Pins, buses and models of one imp's board, built from a ``BoardSpec``."""

    def __init__(self, spec: BoardSpec, host: Host | None = None, unit: str = "") -> None:
        self.spec = spec
        self.host = host or Host()
        self.unit = unit
        capabilities = {PinMode[m]: pins for m, pins in spec.capabilities.items()}
        self.pins = PinBank(spec.pins, self.host, capabilities)
        self.buses: dict[str, Bus] = {}
        for name, bus in spec.buses.items():
            self._check_pins(bus.pins, f"bus {name}")
            self.buses[name] = self._build_bus(name, bus)
        for alias, target in spec.aliases.items():
            if target not in self.buses and target not in spec.pins:
                raise self._error(f"alias {alias} names {target!r}, which the board lacks")
        self.models: dict[str, Any] = {}
        for attachment in spec.attach:
            self._attach(attachment)

    @classmethod
    def load(cls, name_or_path: str | Path, host: Host | None = None, unit: str = "") -> Board:
        return cls(load_spec(name_or_path), host, unit)

    def __repr__(self) -> str:
        return f"Board({self.spec.name}, unit={self.unit!r})"

    # --- what device code reaches as hardware.X -----------------------------------------

    def names(self) -> list[str]:
        """Every ``hardware.<name>`` this board answers: pins, buses and aliases."""
        return [*self.spec.pins, *self.buses, *self.spec.aliases]

    def lookup(self, name: str) -> Pin | Bus:
        """``hardware.<name>``: a pin or a bus (aliases followed)."""
        target = self.spec.aliases.get(name, name)
        if target in self.buses:
            return self.buses[target]
        if target in self.spec.pins:
            return self.pins.pin(target)
        raise PeripheralUsageError(f"the index '{name}' does not exist on {self.spec.imp}")

    def __getitem__(self, name: str) -> Pin | Bus:
        return self.lookup(name)

    def i2c(self, name: str) -> I2C:
        return self._typed(name, I2C)

    def uart(self, name: str) -> UART:
        return self._typed(name, UART)

    def spi(self, name: str) -> SPI:
        return self._typed(name, SPI)

    # --- the models -----------------------------------------------------------------------

    def model(self, name: str) -> Any:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(self.models) or "none"
            raise PeripheralConfigError(
                f"{self.spec.name}: no model named {name!r}; models: {known}") from None

    def fault_names(self) -> list[str]:
        """Every ``model.fault`` this board's models can suffer."""
        return [f"{name}.{fault}" for name, model in self.models.items()
                if isinstance(model, Faultable) for fault in model.FAULTS]

    def set_fault(self, text: str) -> None:
        """Inject a fault named ``model.fault`` or ``model.fault=value``."""
        model_name, fault, value = parse_fault(text)
        model = self.model(model_name)
        if not isinstance(model, Faultable):
            raise PeripheralConfigError(f"{self.spec.name}: model {model_name} has no faults")
        model.set_fault(fault, value)

    def clear_faults(self) -> None:
        for model in self.models.values():
            if isinstance(model, Faultable):
                model.clear_fault()

    # --- building ------------------------------------------------------------------------

    def _error(self, msg: str) -> PeripheralConfigError:
        return PeripheralConfigError(f"board {self.spec.name}: {msg}")

    def _check_pins(self, pins: Iterable[str], what: str) -> None:
        for pin in pins:
            if pin not in self.spec.pins:
                raise self._error(f"{what}: no pin {pin!r} on this board")

    def _typed(self, name: str, kind: type[BusT]) -> BusT:
        bus = self.lookup(name)
        if not isinstance(bus, kind):
            raise PeripheralConfigError(f"{self.spec.name}: {name} is not an {kind.__name__}")
        return bus

    def _build_bus(self, name: str, spec: BusSpec) -> Bus:
        if spec.kind == "i2c":
            return I2C(name, self.host, spec.errors, spec.speeds)
        if spec.kind == "uart":
            return UART(name, self.host, spec.baud, spec.min_fifo)
        return SPI(name, self.host, self.pins, spec.rates_khz or None, spec.range_khz,
                   spec.dedicated_cs)

    def _attach(self, attachment: Attachment) -> None:
        where = f"model {attachment.name}"
        if attachment.name in self.models:
            raise self._error(f"{where}: the name is used twice")
        kind = MODELS.get(attachment.model)
        if kind is None:
            raise self._error(f"{where}: unknown model type {attachment.model!r}; "
                              f"known: {', '.join(sorted(MODELS))}")
        if kind.attaches_to == "pin":
            if attachment.pin is None:
                raise self._error(f"{where}: a {attachment.model} attaches to a 'pin'")
            self._check_pins([attachment.pin], where)
        else:
            bus = self.buses.get(attachment.bus or "")
            if bus is None or self.spec.buses[attachment.bus or ""].kind != kind.attaches_to:
                raise self._error(f"{where}: a {attachment.model} attaches to an "
                                  f"{kind.attaches_to} bus; {attachment.bus!r} is not one here")
            if kind.attaches_to == "i2c" and attachment.address is None:
                raise self._error(f"{where}: an I2C model needs an 'address'")
            if attachment.cs is not None:
                self._check_pins([attachment.cs], where)
        context = ModelContext(self.host, self.pins, self.unit, attachment)
        try:
            model = kind.factory(context, dict(attachment.params))
        except TypeError as err:  # a parameter the model does not take
            raise self._error(f"{where}: bad params {dict(attachment.params)}: {err}") from err
        if kind.attaches_to != "pin":
            bus = self.buses[attachment.bus or ""]
            if isinstance(bus, I2C):
                assert attachment.address is not None
                bus.attach(attachment.address, model)
            elif isinstance(bus, UART):
                bus.attach(model)
            else:
                bus.attach(model, attachment.cs)
        self.models[attachment.name] = model
