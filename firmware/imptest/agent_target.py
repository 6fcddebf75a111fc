"""The agent side of a test session: a stand-in until the cloud's agent runtime plugs in.

impt runs an agent test file's build, and a device test's agent file or partner,
in the device's agent in impCloud. impfactory's cloud-side agent runtime lives in
``cloud/`` and ``firmware`` may not import it, so the session takes the agent
side from a factory (``Session(agent_factory=...)``, ``runner.run``); until the
command line passes the cloud's, this module's ``StandInAgent`` runs agent code
in a Squirrel VM of its own (``Vm(environment="agent")``, the agent's allow-list)
with the part of the agent API tests reach for::

    server.log(x) server.error(x)            the session's agent log
    server.save(table) server.load()         kept in memory for the session
    imp.wakeup(s, f) imp.cancelwakeup(id)    on the session's virtual clock
    imp.environment() -> ENVIRONMENT_AGENT   imp.configparams -> {}
    device.on(name, f) device.send(name, v)  to and from the device's agent.on/agent.send
    device.isconnected() -> true             device.onconnect/ondisconnect(f): kept, never called
    http.agenturl() http.onrequest(f)        the agent's URL; a request handler, kept
    http.jsonencode(v) http.jsondecode(s)    JSON both ways
    time() date() clock()                    the session clock (an epoch from the wall)

Anything else of the agent API, outbound HTTP included, is an error that says
the stand-in does not model it. Messages cross as data (``to_plain``): a
function or an instance cannot be sent, as on the imp. Callbacks run through
a ``firmware.runtime.Runtime`` on the session's clock: one at a time, errors
logged as impCloud logs an agent's (``ERROR: message``, then its stack).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time as _time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from impfactory.clock import VirtualClock
from impfactory.devicecode import library_dirs
from impfactory.errors import ImpFactoryError
from impfactory.firmware.imptest.device_target import install_natives
from impfactory.firmware.runtime import CALLBACK_LIMIT_S, Runtime
from impfactory.firmware.sq_api import date_table
from impfactory.squirrel import (
    ConversionError,
    LibraryError,
    SquirrelCompileError,
    SquirrelError,
    SquirrelTimeout,
    SquirrelVmStopped,
    Vm,
    format_error,
    to_plain,
)
from impfactory.squirrel.require import Part, resolve_parts

ENVIRONMENT_AGENT = 2
AGENT_URL = "https://agent.electricimp.com/"
LogSink = Callable[[str, bool], None]
Deliver = Callable[[str, Any], None]


class AgentCodeError(ImpFactoryError, RuntimeError):
    """The agent side of a build does not compile (or a library is missing)."""


class AgentApiError(ImpFactoryError, ValueError):
    """Agent code called the stand-in's API wrongly, or something it does not model."""


class AgentSide(Protocol):
    """What a session needs of an agent runtime (this stand-in, or the cloud's)."""

    kind: str
    peer: Deliver | None  # where device.send goes (the device's agent.on)

    @property
    def vm(self) -> Vm: ...
    @property
    def dead(self) -> bool: ...
    def start(self, parts: Sequence[Part], natives: Mapping[str, Callable[..., Any]]) -> bool: ...
    def later(self, seconds: float, fn: Callable[[], Any]) -> None: ...
    def now(self) -> float: ...
    def deliver(self, name: str, data: Any) -> None: ...
    def close(self) -> None: ...


AgentFactory = Callable[[VirtualClock, str, Sequence[str], LogSink], AgentSide]


def agent_id(device_id: str) -> str:
    """A stable agent ID for a device (impCloud's are 12 URL-safe characters)."""
    return hashlib.sha256(f"agent:{device_id}".encode()).hexdigest()[:12]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _callback(where: str, fn: Any) -> Callable[..., Any]:
    if not callable(fn):
        raise AgentApiError(f"{where}: expected a function, got {type(fn).__name__}")
    return fn  # type: ignore[no-any-return]


def _data(where: str, value: Any) -> Any:
    try:
        return to_plain(value)
    except ConversionError as err:
        raise AgentApiError(f"{where}: {err}") from err


class _Server:
    def __init__(self, agent: StandInAgent) -> None:
        self._agent = agent
        self._saved: Any = {}

    def log(self, message: Any) -> None:
        self._agent.log(_text(message), False)

    def error(self, message: Any) -> None:
        self._agent.log(_text(message), True)

    def save(self, table: Any) -> int:
        if not isinstance(table, dict):
            raise AgentApiError("server.save: expected a table")
        self._saved = _data("server.save", table)
        return 0

    def load(self) -> Any:
        return json.loads(json.dumps(self._saved))


class _Imp:
    def __init__(self, agent: StandInAgent) -> None:
        self._agent = agent

    def wakeup(self, seconds: Any, fn: Any) -> int:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise AgentApiError(f"imp.wakeup: bad interval {seconds!r}")
        return self._agent.runtime.later(float(seconds), _callback("imp.wakeup", fn))

    def cancelwakeup(self, handle: Any) -> None:
        if isinstance(handle, int):
            self._agent.runtime.cancel(handle)

    def environment(self) -> int:
        return ENVIRONMENT_AGENT


class _Device:
    def __init__(self, agent: StandInAgent) -> None:
        self._agent = agent

    def on(self, name: Any, fn: Any) -> None:
        handlers = self._agent.handlers
        if fn is None:
            handlers.pop(str(name), None)
        else:
            handlers[str(name)] = self._agent.runtime.bind(_callback("device.on", fn))

    def send(self, name: Any, data: Any = None) -> int:
        self._agent.send(str(name), _data("device.send", data))
        return 0

    def isconnected(self) -> bool:
        return True

    def onconnect(self, fn: Any) -> None:
        self._agent.kept["onconnect"] = fn

    def ondisconnect(self, fn: Any) -> None:
        self._agent.kept["ondisconnect"] = fn


class _Http:
    def __init__(self, agent: StandInAgent) -> None:
        self._agent = agent

    def agenturl(self) -> str:
        return AGENT_URL + self._agent.agent_id

    def onrequest(self, fn: Any) -> None:
        self._agent.kept["onrequest"] = fn

    def jsonencode(self, value: Any) -> str:
        return json.dumps(_data("http.jsonencode", value), separators=(",", ":"))

    def jsondecode(self, text: Any) -> Any:
        try:
            return json.loads(str(text))
        except json.JSONDecodeError as err:
            raise AgentApiError(f"http.jsondecode: {err}") from err


def _unmodelled(table: str) -> Callable[[Any, str], Any]:
    def getter(_obj: Any, name: str) -> Any:
        raise AgentApiError(f"{table}.{name} is not modelled by impfactory test's stand-in "
                            "agent")

    return getter


class _Engine:
    """The stand-in's engine for ``Runtime``: one agent VM."""

    def __init__(self, agent: StandInAgent, parts: Sequence[Part],
                 natives: Mapping[str, Callable[..., Any]]) -> None:
        self.agent = agent
        self.parts = tuple(parts)
        self.natives = dict(natives)
        self.vm: Vm | None = None

    @property
    def imp_api(self) -> dict[str, Any]:
        return {}

    @property
    def dead(self) -> bool:
        return self.vm is not None and self.vm.dead

    def load(self, source: str) -> Callable[[], Any]:
        try:
            resolved = resolve_parts(self.parts, library_dirs(self.agent.lib_dirs))
        except LibraryError as err:
            raise AgentCodeError(f"agent code does not compile: {err}") from err
        vm = self.vm = Vm(time_limit_s=CALLBACK_LIMIT_S, environment="agent")
        self.agent.install(vm)
        install_natives(vm, self.natives)
        try:
            main = vm.compile(resolved.source, "agent.nut", resolved.line_map)
        except SquirrelCompileError as err:
            raise AgentCodeError(f"agent code does not compile: {err}") from err
        return lambda: vm.call(main)

    def error_lines(self, err: BaseException) -> list[str]:
        if isinstance(err, SquirrelError):
            lines = [f"ERROR: {line}" for line in format_error(err)]
            if isinstance(err, SquirrelTimeout):
                lines.append("ERROR: the agent's code is stopped")
            return lines
        return [f"ERROR: {type(err).__name__}: {err}"]

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        yield

    def close(self) -> None:
        if self.vm is not None:
            self.vm.close()
        self.vm = None


class StandInAgent:
    """One device's agent, as far as tests need one (see the module doc)."""

    kind = "agent"

    def __init__(self, clock: VirtualClock, device_id: str, lib_dirs: Sequence[str] = (),
                 on_log: LogSink | None = None) -> None:
        self.clock = clock
        self.device_id = device_id
        self.agent_id = agent_id(device_id)
        self.lib_dirs = tuple(lib_dirs)
        self.on_log = on_log or (lambda _msg, _error: None)
        self.runtime = Runtime(clock, self.log)
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.kept: dict[str, Any] = {}
        self.peer: Deliver | None = None
        self.engine: _Engine | None = None
        self._epoch = _time.time() - clock.now()
        self._server = _Server(self)

    # --- the session's side -----------------------------------------------------------

    @property
    def vm(self) -> Vm:
        if self.engine is None or self.engine.vm is None:
            raise SquirrelVmStopped("the agent code was stopped")
        return self.engine.vm

    @property
    def dead(self) -> bool:
        return self.engine is None or self.engine.dead or not self.runtime.running

    def start(self, parts: Sequence[Part], natives: Mapping[str, Callable[..., Any]]) -> bool:
        """Compile and run the top level; ``AgentCodeError`` when it does not compile."""
        engine = self.engine = _Engine(self, parts, natives)
        try:
            return self.runtime.start("", engine)
        except AgentCodeError:
            engine.close()
            raise

    def later(self, seconds: float, fn: Callable[[], Any]) -> None:
        self.runtime.later(seconds, fn)

    def now(self) -> float:
        return self.clock.now()

    def deliver(self, name: str, data: Any) -> None:
        """A message from the device (``device.on`` handlers); no handler: dropped."""
        handler = self.handlers.get(name)
        if handler is not None:
            handler(data)

    def close(self) -> None:
        self.runtime.stop()

    # --- the API's side -----------------------------------------------------------------

    def log(self, message: str, error: bool) -> None:
        self.on_log(message, error)

    def send(self, name: str, data: Any) -> None:
        peer = self.peer
        if peer is not None:
            self.clock.call_later(0.0, lambda: peer(name, data))

    def install(self, vm: Vm) -> None:
        """The stand-in's agent API in ``vm``'s root table."""
        tables: dict[str, tuple[Any, tuple[str, ...]]] = {
            "server": (self._server, ("log", "error", "save", "load")),
            "imp": (_Imp(self), ("wakeup", "cancelwakeup", "environment")),
            "device": (_Device(self), ("on", "send", "isconnected", "onconnect",
                                       "ondisconnect")),
            "http": (_Http(self), ("agenturl", "onrequest", "jsonencode", "jsondecode")),
        }
        for name, (obj, methods) in tables.items():
            getter = self._imp_member if name == "imp" else _unmodelled(name)
            cls = vm.host_class(name, {m: getattr(type(obj), m) for m in methods}, getter)
            vm.set_global(name, vm.wrap(obj, cls))
        vm.set_global("ENVIRONMENT_AGENT", ENVIRONMENT_AGENT)
        vm.set_global("time", vm.native(lambda: int(self._epoch + self.clock.now()), "time"))
        vm.set_global("clock", vm.native(lambda: float(self.clock.now()), "clock"))
        vm.set_global("date", vm.native(self._date, "date"))

    def _imp_member(self, _obj: Any, name: str) -> Any:
        if name == "configparams":
            return {}
        return _unmodelled("imp")(_obj, name)

    def _date(self, when: int | None = None, kind: str = "u") -> dict[str, int]:
        return date_table(self._epoch + self.clock.now() if when is None else float(when))


def stand_in(clock: VirtualClock, device_id: str, lib_dirs: Sequence[str],
             on_log: LogSink) -> AgentSide:
    """The default ``AgentFactory``."""
    return StandInAgent(clock, device_id, lib_dirs, on_log)
