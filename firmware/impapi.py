"""The imp API that device code sees: ``server``, ``imp``, ``hardware``, ``agent``, constants.

Names and behaviour follow IMP_FACTS §4 (Squirrel spelling, Python calling). The
objects here only check arguments and translate calls; the device behind them
(``DeviceHost``) does the work, so the API is one thin, documented layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from impfactory.firmware.errors import ImpApiError
from impfactory.firmware.hardware import Pin, PinMode, SimHardware
from impfactory.firmware.runtime import Runtime
from impfactory.firmware.wifi import Reason
from impfactory.protocol import cloudlink as cl

BLINKUP_FAST = 0x01
BLINKUP_ACTIVEHIGH = 0x02
CONFIG_WIFI = 0x01
CONFIG_STATIC_NETWORK = 0x02
CONFIG_PROXY = 0x04
CONFIG_ENROLMENT = 0x08  # ours: the default "WiFi and enrolment" set
CONFIG_ALL = 0xFF
SEND_ERROR_NOT_CONNECTED = 1  # agent.send while offline (RETURN_ON_ERROR policy)
# server.setsendtimeoutpolicy: the imp's names; the values are ours (code uses names).
SUSPEND_ON_ERROR = 0
RETURN_ON_ERROR = 1
RETURN_ON_ERROR_NO_DISCONNECT = 2
WAIT_TIL_SENT = 0
WAIT_FOR_ACK = 1
# imp.environment()
ENVIRONMENT_CARD = 0
ENVIRONMENT_MODULE = 1
ENVIRONMENT_AGENT = 2

CONSTANTS: dict[str, Any] = {
    name: value for name, value in globals().items() if name.isupper() and isinstance(value, int)
}
# One source each: connection reasons (NOT_CONNECTED ... NOT_AUTHORISED), shutdown
# reasons as the cloud link numbers them, and the pin modes.
CONSTANTS.update({reason.name: int(reason) for reason in Reason})
CONSTANTS.update({f"SHUTDOWN_{r.name}": int(r) for r in cl.ShutdownReason})
CONSTANTS.update({mode.name: int(mode) for mode in PinMode})


class DeviceHost(Protocol):
    """What the device behind the API must provide (``firmware.device.Device`` does)."""

    device_id: str
    mac: str
    imp_type: str
    hardware_board: SimHardware
    configparams: dict[str, Any]

    def log(self, msg: str, error: bool = False) -> None: ...
    def is_connected(self) -> bool: ...
    def bless(self, passed: bool, callback: Callable[[bool], None]) -> None: ...
    def factory_blinkup(self, ssid: str, password: str, pin: Pin, flags: int) -> None: ...
    def on_shutdown(self, handler: Callable[[int], Any] | None) -> None: ...
    def restart(self) -> None: ...
    def clear_configuration(self, what: int) -> None: ...
    def set_wifi(self, ssid: str, key: str) -> None: ...
    def set_enrol_tokens(self, plan_id: str, token: str) -> None: ...
    def get_ssid(self) -> str: ...
    def net_info(self) -> dict[str, Any]: ...
    def enable_blinkup(self, enable: bool) -> None: ...
    def impos_version(self) -> str: ...
    def agent_send(self, name: str, data: Any) -> int: ...
    def agent_handler(self, name: str, handler: Callable[[Any], Any] | None) -> None: ...
    def device_now(self) -> float: ...
    def busy(self, seconds: float) -> None: ...
    def deep_sleep(self, seconds: float) -> None: ...
    def server_connect(self, callback: Callable[[int], Any] | None, timeout: float) -> None: ...
    def server_disconnect(self) -> None: ...
    def on_unexpected_disconnect(self, handler: Callable[[int], Any] | None) -> None: ...
    def set_send_policy(self, policy: int) -> None: ...
    def rssi(self) -> int: ...
    def memory_free(self) -> int: ...


def _callable(where: str, cb: Any) -> Callable[..., Any]:
    if not callable(cb):
        raise ImpApiError(f"{where}: expected a function, got {type(cb).__name__}")
    return cb  # type: ignore[no-any-return]


class Server:
    """``server``: the link to impCloud."""

    def __init__(self, host: DeviceHost, runtime: Runtime) -> None:
        self._host, self._rt = host, runtime

    def log(self, msg: Any) -> None:
        self._host.log(str(msg))

    def error(self, msg: Any) -> None:
        self._host.log(str(msg), error=True)

    def isconnected(self) -> bool:
        return self._host.is_connected()

    def bless(self, tests_passed: bool, callback: Callable[[bool], Any] | None = None) -> None:
        cb = self._rt.bind(_callable("server.bless", callback)) if callback else (lambda _: None)
        self._host.bless(bool(tests_passed), cb)

    def factoryblinkup(self, ssid: str, password: str, pin: Pin, flags: int = 0) -> None:
        if not isinstance(pin, Pin):
            raise ImpApiError("server.factoryblinkup: pin must be a hardware pin")
        self._host.factory_blinkup(str(ssid), str(password), pin, int(flags))

    def onshutdown(self, callback: Callable[[int], Any] | None) -> None:
        self._host.on_shutdown(
            self._rt.bind(_callable("server.onshutdown", callback)) if callback else None
        )

    def restart(self) -> None:
        self._host.restart()

    def connect(self, callback: Callable[[int], Any] | None = None,
                timeout: float = 60.0) -> None:
        """Connect if not connected; ``callback(reason)`` with ``SERVER_CONNECTED`` or why not."""
        cb = self._rt.bind(_callable("server.connect", callback)) if callback else None
        self._host.server_connect(cb, _seconds("server.connect", timeout))

    def disconnect(self) -> None:
        """Drop the link on purpose; the impOS stays offline until ``server.connect``."""
        self._host.server_disconnect()

    def onunexpecteddisconnect(self, callback: Callable[[int], Any] | None) -> None:
        cb = self._rt.bind(_callable("server.onunexpecteddisconnect", callback)) if callback \
            else None
        self._host.on_unexpected_disconnect(cb)

    def setsendtimeoutpolicy(self, policy: int, wait_for: int = WAIT_TIL_SENT,
                             timeout: float = 30.0) -> None:
        if policy not in (SUSPEND_ON_ERROR, RETURN_ON_ERROR, RETURN_ON_ERROR_NO_DISCONNECT):
            raise ImpApiError(f"server.setsendtimeoutpolicy: unknown policy {policy!r}")
        if wait_for not in (WAIT_TIL_SENT, WAIT_FOR_ACK):
            raise ImpApiError(f"server.setsendtimeoutpolicy: unknown wait mode {wait_for!r}")
        _seconds("server.setsendtimeoutpolicy", timeout)
        self._host.set_send_policy(int(policy))


def _seconds(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ImpApiError(f"{where}: bad interval {value!r}")
    return float(value)


class _Net:
    def __init__(self, host: DeviceHost) -> None:
        self._host = host

    def info(self) -> dict[str, Any]:
        return self._host.net_info()


class Imp:
    """``imp``: the impOS itself."""

    def __init__(self, host: DeviceHost, runtime: Runtime) -> None:
        self._host, self._rt = host, runtime
        self.net = _Net(host)
        self._idle: int | None = None
        self.powersave = False

    @property
    def configparams(self) -> dict[str, Any]:
        return dict(self._host.configparams)

    def info(self) -> dict[str, Any]:
        """``imp.info()``: the imp's type (what FactoryTools checks) and the impOS."""
        return {"type": self._host.imp_type, "version": self._host.impos_version()}

    def environment(self) -> int:
        """A card (imp001) or a module (everything else); agents answer ENVIRONMENT_AGENT."""
        return ENVIRONMENT_CARD if self._host.imp_type == "imp001" else ENVIRONMENT_MODULE

    def rssi(self) -> int:
        return self._host.rssi()

    def getmemoryfree(self) -> int:
        return self._host.memory_free()

    def setpowersave(self, enable: bool) -> None:
        """Accepted and remembered; the emulated radio has no power to save."""
        self.powersave = bool(enable)

    def sleep(self, seconds: float) -> None:
        """Busy-wait: the device's own time moves on, nothing else of its code runs."""
        self._host.busy(_seconds("imp.sleep", seconds))

    def deepsleepfor(self, seconds: float) -> None:
        """Go offline and off for ``seconds``, then boot warm (``nv`` survives)."""
        self._host.deep_sleep(_seconds("imp.deepsleepfor", seconds))

    def clearconfiguration(self, what: int | None = None) -> None:
        self._host.clear_configuration(CONFIG_WIFI | CONFIG_ENROLMENT if what is None else what)

    def setwificonfiguration(self, ssid: str, key: str = "") -> None:
        self._host.set_wifi(str(ssid), str(key))

    def setenroltokens(self, plan_id: str, token: str) -> None:
        self._host.set_enrol_tokens(str(plan_id), str(token))

    def getmacaddress(self) -> str:
        return self._host.mac

    def getssid(self) -> str:
        return self._host.get_ssid()

    def getsoftwareversion(self) -> str:
        return self._host.impos_version()

    def onidle(self, callback: Callable[[], Any] | None) -> None:
        """One slot, one shot: the callback runs once the impOS has nothing else to do."""
        if self._idle is not None:
            self._rt.cancel(self._idle)
            self._idle = None
        if callback is not None:
            cb = _callable("imp.onidle", callback)

            def fire() -> None:
                self._idle = None
                cb()

            self._idle = self._rt.later(0.0, fire)

    def wakeup(self, seconds: float, callback: Callable[[], Any]) -> int:
        return self._rt.later(_seconds("imp.wakeup", seconds), _callable("imp.wakeup", callback))

    def cancelwakeup(self, handle: int) -> None:
        self._rt.cancel(handle)

    def enableblinkup(self, enable: bool) -> None:
        self._host.enable_blinkup(bool(enable))


class Hardware:
    """``hardware``: pins and on-board sensors; ``hardware.pin1`` ... ``hardware.pinZ``."""

    def __init__(self, host: DeviceHost) -> None:
        self._host = host

    def __getattr__(self, name: str) -> Any:
        """``hardware.pinM``, ``hardware.i2c89``: what the device's board offers."""
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._host.hardware_board.lookup(name)
        except KeyError:
            raise AttributeError(f"the index '{name}' does not exist") from None

    def getdeviceid(self) -> str:
        return self._host.device_id

    def millis(self) -> int:
        """Milliseconds of device time, wrapping as the imp's 31-bit counter does."""
        return int(self._host.device_now() * 1000) & 0x7FFFFFFF

    def micros(self) -> int:
        return int(self._host.device_now() * 1_000_000) & 0x7FFFFFFF

    def lightlevel(self) -> int:
        """Light on the sensor, 0..65535, as the phototransistor reads it."""
        level = self._host.hardware_board.light
        return round(min(1.0, max(0.0, level)) * 65535)

    def voltage(self) -> float:
        return float(self._host.hardware_board.supply_voltage)


class Agent:
    """``agent``: messages to and from this device's agent."""

    def __init__(self, host: DeviceHost, runtime: Runtime) -> None:
        self._host, self._rt = host, runtime

    def send(self, name: str, data: Any = None) -> int:
        """0 when sent; ``SEND_ERROR_NOT_CONNECTED`` (message dropped) while offline."""
        return self._host.agent_send(str(name), data)

    def on(self, name: str, callback: Callable[[Any], Any] | None) -> None:
        bound = self._rt.bind(_callable("agent.on", callback)) if callback else None
        self._host.agent_handler(str(name), bound)


def build_api(host: DeviceHost, runtime: Runtime) -> dict[str, Any]:
    """The globals device code starts with."""
    return {
        "server": Server(host, runtime),
        "imp": Imp(host, runtime),
        "hardware": Hardware(host),
        "agent": Agent(host, runtime),
        **CONSTANTS,
    }
