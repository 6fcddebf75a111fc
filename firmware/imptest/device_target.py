"""The device side of a test session: one emulated imp with its board, no cloud.

``DeviceTarget`` puts a test build on a ``TestDevice``: a ``firmware.Device`` on
the session's virtual clock, on a board from ``hw.peripherals`` (the impExplorer
Kit unless told otherwise, faults injected by name), running the build in a
``TestEngine`` (the device's own Squirrel engine, compiling the build's parts and
adding the natives the test framework reports through). Nothing here knows about
tests: the session drives it through ``start``, ``later``, ``vm`` and ``now``.

A test device is a device in a test device group as impt uses one, a
development group, reached without a cloud:

* it counts as connected (``server.isconnected()``) until its code calls
  ``server.disconnect()``, which the session hears (``on_disconnect``: impt fails
  the session unless ``allowDisconnect``); ``server.connect(cb)`` reconnects;
* ``agent.send`` reaches the partner agent when the session has one (``peer``),
  after the current callback, as a message would;
* ``server.bless`` calls back ``false`` (only DUTs in a factory DUT group can be
  blessed), ``server.factoryblinkup`` logs impOS's "This is not a factory imp.";
* ``server.restart`` and deep sleep would reboot the imp and end the test code's
  life, so they are errors that say so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from impfactory.clock import VirtualClock
from impfactory.firmware import impapi
from impfactory.firmware.device import Device, DeviceConfig
from impfactory.firmware.errors import ImpApiError
from impfactory.firmware.events import DeviceEvent
from impfactory.firmware.hardware import Pin, SimHardware, load_board
from impfactory.firmware.identity import DeviceIdentity
from impfactory.firmware.runtime import CALLBACK_LIMIT_S, Runtime
from impfactory.firmware.sq_engine import SquirrelEngine
from impfactory.firmware.wifi import Reason, WifiEnvironment
from impfactory.squirrel import Resolved, SquirrelVmStopped, Vm
from impfactory.squirrel.require import Part, resolve_parts

DEFAULT_BOARD = "imp001-explorer"
DEVICE_SERIAL = 0x7E57  # the emulated test imp's serial: the same device ID every run
NO_BROKER = "mqtt://127.0.0.1:1"  # a test device never goes online

LogSink = Callable[[str, bool], None]
Deliver = Callable[[str, Any], None]


class TestEngine(SquirrelEngine):
    """The device's Squirrel engine, compiling a test build's parts and giving its
    framework the natives ``natives`` (as the root table ``__imptest_host``)."""

    __test__ = False

    def __init__(self, host: Any, runtime: Runtime, parts: Sequence[Part],
                 natives: Mapping[str, Callable[..., Any]], lib_dirs: Iterable[str],
                 time_limit_s: float = CALLBACK_LIMIT_S) -> None:
        super().__init__(host, runtime, tuple(lib_dirs), time_limit_s)
        self.parts = tuple(parts)
        self.natives = dict(natives)

    def resolve(self, source: str) -> Resolved:
        return resolve_parts(self.parts, self.lib_dirs)

    def load(self, source: str) -> Callable[[], Any]:
        run = super().load(source)
        install_natives(self.vm, self.natives)
        return run


def install_natives(vm: Vm | None, natives: Mapping[str, Callable[..., Any]]) -> None:
    """``__imptest_host``: the table of natives the test framework reports through."""
    if vm is not None and natives:
        vm.set_global("__imptest_host", {name: vm.native(fn, f"impUnit.{name}")
                                         for name, fn in natives.items()})


class TestDevice(Device):
    """An emulated imp in a test device group (see the module doc)."""

    __test__ = False

    def __init__(self, clock: VirtualClock, hardware: SimHardware, lib_dirs: Iterable[str],
                 on_log: LogSink) -> None:
        super().__init__(DeviceIdentity.from_serial(DEVICE_SERIAL), clock, WifiEnvironment([]),
                         NO_BROKER, hardware=hardware,
                         config=DeviceConfig(lib_dirs=tuple(lib_dirs)))
        self.on_log = on_log
        self.peer: Deliver | None = None  # the partner agent's inbox
        self.on_disconnect: Callable[[], None] | None = None
        self._offline = False

    def log(self, msg: str, error: bool = False) -> None:
        super().log(msg, error)
        self.on_log(msg, error)

    def is_connected(self) -> bool:
        return not self._offline

    def agent_send(self, name: str, data: Any) -> int:
        peer = self.peer
        if self._offline:
            return impapi.SEND_ERROR_NOT_CONNECTED
        if peer is not None:
            self.clock.call_later(0.0, lambda: peer(name, data))
        return 0

    def bless(self, passed: bool, callback: Callable[[bool], None]) -> None:
        self._emit(DeviceEvent.BLESS_REFUSED, "not a DUT: a test device group is a "
                                              "development group")
        self.clock.call_later(0.0, lambda: callback(False))

    def factory_blinkup(self, ssid: str, password: str, pin: Pin, flags: int) -> None:
        self.log("Factory BlinkUp request failed. This is not a factory imp.")

    def restart(self) -> None:
        raise ImpApiError("server.restart would reboot the imp and end its test code: "
                          "impfactory test does not model it")

    def deep_sleep(self, seconds: float) -> None:
        raise ImpApiError("deep sleep would reboot the imp and end its test code: "
                          "impfactory test does not model it")

    def server_disconnect(self) -> None:
        if not self._offline:
            self._offline = True
            hook = self.on_disconnect
            if hook is not None:
                self.clock.call_later(0.0, hook)

    def server_connect(self, callback: Callable[[int], Any] | None, timeout: float) -> None:
        self._offline = False
        if callback is not None:
            self.clock.call_later(0.0, lambda: callback(int(Reason.SERVER_CONNECTED)))


def board_hardware(board: str | Path = DEFAULT_BOARD, faults: Iterable[str] = (),
                   unit: str = "") -> SimHardware:
    """A board by built-in name or JSON file, with faults set (``sensor.wrong_id=0``)."""
    hardware = SimHardware(board=load_board(board, unit=unit))
    for fault in faults:
        hardware.set_fault(fault)
    return hardware


def emulated_device_id() -> str:
    """The emulated test imp's device ID (the same every run)."""
    return DeviceIdentity.from_serial(DEVICE_SERIAL).device_id


class DeviceTarget:
    """One emulated imp running one side of a test build."""

    kind = "device"

    def __init__(self, clock: VirtualClock, board: str | Path = DEFAULT_BOARD,
                 faults: Iterable[str] = (), lib_dirs: Iterable[str] = (),
                 on_log: LogSink | None = None, time_limit_s: float = CALLBACK_LIMIT_S) -> None:
        self.clock = clock
        self.time_limit_s = time_limit_s
        self.board_name = str(board)
        self.hardware = board_hardware(board, faults, emulated_device_id())
        self.lib_dirs = tuple(str(d) for d in lib_dirs)
        self.device = TestDevice(clock, self.hardware, self.lib_dirs,
                                 on_log or (lambda _msg, _error: None))
        self.engine: TestEngine | None = None

    @property
    def device_id(self) -> str:
        return self.device.device_id

    @property
    def peer(self) -> Deliver | None:
        """Where ``agent.send`` goes (the agent's ``device.on``)."""
        return self.device.peer

    @peer.setter
    def peer(self, deliver: Deliver | None) -> None:
        self.device.peer = deliver

    @property
    def imp_type(self) -> str:
        return self.device.imp_type

    @property
    def vm(self) -> Vm:
        if self.engine is None or self.engine.vm is None:
            raise SquirrelVmStopped("the device code was stopped")
        return self.engine.vm

    @property
    def on_disconnect(self) -> Callable[[], None] | None:
        return self.device.on_disconnect

    @on_disconnect.setter
    def on_disconnect(self, hook: Callable[[], None] | None) -> None:
        self.device.on_disconnect = hook

    @property
    def dead(self) -> bool:
        """The code is gone: its VM was stopped, or it never started."""
        engine = self.engine
        return engine is None or engine.dead or not self.device.runtime.running

    def start(self, parts: Sequence[Part], natives: Mapping[str, Callable[..., Any]]) -> bool:
        """Load and run the top level; False when it threw (the device log says what).
        A build that does not compile raises ``DeviceCodeError``."""
        runtime = self.device.runtime
        self.engine = TestEngine(self.device, runtime, parts, natives, self.lib_dirs,
                                 self.time_limit_s)
        return runtime.start("", self.engine)

    def later(self, seconds: float, fn: Callable[[], Any]) -> None:
        """Run ``fn`` as a callback of this code (held while it sleeps)."""
        self.device.runtime.later(seconds, fn)

    def now(self) -> float:
        return self.device.device_now()

    def deliver(self, name: str, data: Any) -> None:
        """A message from the agent (``agent.on`` handlers); no handler: dropped."""
        self.device.agent_deliver(name, data)

    def close(self) -> None:
        self.device.runtime.stop()
