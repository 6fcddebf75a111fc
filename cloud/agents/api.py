"""The agent-side imp API as Squirrel sees it: device, http, server, imp, and the rest.

The same shape as the device's (``firmware/sq_api.py``): each API object is a host
class in the agent's VM whose methods are natives calling the Python methods
below, with a getter for members that are data (``imp.configparams``) and an error
that names any member of the real API this emulator does not model::

    Squirrel  http.post(url, headers, body).sendasync(function(resp) { ... })
      -> host class "http", native "post"  -> an HttpRequest, wrapped
      -> host class "httprequest", native "sendasync" -> the cloud's one HTTP client
         (``cloud.outbound``), on the loop; the answer becomes a table
         { statuscode, headers, body } and a call of the callback

Requests that fail get impCloud's answer: a ``statuscode`` below 100 (libcurl's
numbers, as impCloud uses: 1 unsupported protocol, 3 malformed URL, 6 host not
resolved, 7 no connection, 28 timed out, 52 empty answer, 56 receive error) and
the reason in ``body``.

Nothing here reaches the machine: the VM's root table holds only the sandbox's
allow-list and these objects, and the only way out is HTTP through the cloud's
client (``http``/``https`` URLs only).
"""

from __future__ import annotations

import base64
import inspect
import json
import math
import time as _time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode

from impfactory.cloud.errors import CloudError
from impfactory.cloud.outbound import Failure, Reply
from impfactory.errors import ImpFactoryError
from impfactory.squirrel import ConversionError, SqFunction, SquirrelThrow, to_plain

if TYPE_CHECKING:  # pragma: no cover
    from impfactory.cloud.agents.agent import Agent


class AgentApiError(ImpFactoryError, ValueError):
    """A call of the agent API with arguments it cannot take (becomes a Squirrel error)."""


#: imp.environment() on an agent (the device side numbers card 0, module 1).
ENVIRONMENT_AGENT = 2
NO_TIMEOUT = -1

CONSTANTS: dict[str, Any] = {
    "ENVIRONMENT_CARD": 0, "ENVIRONMENT_MODULE": 1, "ENVIRONMENT_AGENT": ENVIRONMENT_AGENT,
    "NO_TIMEOUT": NO_TIMEOUT,
}

#: libcurl's numbers for why a request got no answer (what impCloud passes on).
CURL_CODES: dict[Failure, int] = {
    Failure.PROTOCOL: 1, Failure.URL: 3, Failure.RESOLVE: 6, Failure.CONNECT: 7,
    Failure.TIMEOUT: 28, Failure.EMPTY: 52, Failure.IO: 56,
}
TOO_MANY_REQUESTS = 429  # ours: past ``requests_in_flight``, answered at once

#: Members of the real agent API the emulator does not model: reaching one is an
#: error naming it (not every one of them).
UNMODELLED = {
    "device": ("info",),
    "http": ("hash", "jsonencode_pretty", "setdefaultheaders"),
    "server": ("log_table", "setsendtimeoutpolicy"),
    "imp": ("getmemoryfree", "info", "net", "getmacaddress", "setsendbuffersize",
            "sleep", "scanwifinetworks", "onidle"),
    "httprequest": ("setvalidation",),
    "httpresponse": ("setvalidation",),
}

DEVICE_METHODS = ("on", "send", "onconnect", "ondisconnect", "isconnected")
HTTP_METHODS = ("onrequest", "agenturl", "get", "post", "put", "httpdelete", "request",
                "jsonencode", "jsondecode", "urlencode", "urldecode", "base64encode",
                "base64decode")
SERVER_METHODS = ("log", "error", "save", "load")
IMP_METHODS = ("environment", "wakeup", "cancelwakeup")
REQUEST_METHODS = ("sendasync", "sendsync", "cancel")
RESPONSE_METHODS = ("send", "header")


def _function(where: str, value: Any) -> SqFunction:
    if not isinstance(value, SqFunction):
        raise AgentApiError(f"{where}: expected a function, got {_type(value)}")
    return value


def _type(value: Any) -> str:
    return getattr(value, "type_name", None) or {
        type(None): "null", bool: "bool", int: "integer", float: "float", str: "string",
        bytes: "blob", dict: "table", list: "array"}.get(type(value), type(value).__name__)


def _text(where: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    raise AgentApiError(f"{where}: expected a string, got {_type(value)}")


def _headers(where: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AgentApiError(f"{where}: headers must be a table, got {_type(value)}")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or isinstance(v, (dict, list)) or v is None:
            raise AgentApiError(f"{where}: header {k!r} must be a name and a plain value")
        out[k] = v if isinstance(v, str) else json.dumps(v) if isinstance(v, bool) else str(v)
    return out


def _body(where: str, value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes):
        return value
    raise AgentApiError(f"{where}: the body must be a string or a blob, got {_type(value)}")


def _bytes_str(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _json_value(value: Any) -> Any:
    """JSON as Squirrel can hold it: integers beyond 32 bits become floats."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        return value if -(2**31) <= value < 2**31 else float(value)
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value  # pragma: no cover


def reply_table(reply: Reply) -> dict[str, Any]:
    """The response table of ``sendasync``/``sendsync`` for one outcome."""
    if reply.status is None:
        code = CURL_CODES.get(reply.failure or Failure.IO, 56)
        return {"statuscode": code, "headers": {}, "body": reply.error or ""}
    headers: dict[str, str] = {}
    for name, value in reply.headers:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return {"statuscode": reply.status, "headers": headers, "body": _bytes_str(reply.body)}


# ------------------------------------------------------------------------ the API objects


class DeviceApi:
    """``device``: the agent's device."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def on(self, name: Any, callback: Any) -> None:
        key = _text("device.on", name)
        if callback is None:
            self._agent.handlers.pop(key, None)
        else:
            self._agent.handlers[key] = _function("device.on", callback)

    def send(self, name: Any, data: Any = None) -> None:
        """To the device's ``agent.on``; dropped when the device is offline (noted in the
        log, as ours), as impCloud drops it."""
        key = _text("device.send", name)
        try:
            value = to_plain(data, "data")
        except ConversionError as err:
            raise AgentApiError(f"device.send: {err}") from err
        agent = self._agent
        try:
            sent = agent.host.send_to_device(agent.device_id, key, value)
        except CloudError as err:
            raise AgentApiError(str(err)) from err
        agent.note("to_device", key, None if sent else 0)

    def onconnect(self, callback: Any) -> None:
        self._agent.on_connect = _function("device.onconnect", callback) if callback else None

    def ondisconnect(self, callback: Any) -> None:
        self._agent.on_disconnect = (_function("device.ondisconnect", callback) if callback
                                     else None)

    def isconnected(self) -> bool:
        return self._agent.device_online


class HttpRequest:
    """``httprequest``: one outbound request, made by ``http.request`` and friends."""

    def __init__(self, agent: Agent, method: str, url: str, headers: dict[str, str],
                 body: bytes) -> None:
        self._agent = agent
        self.method, self.url, self.headers, self.body = method, url, headers, body
        self._sent = False
        self._task: Any = None

    def _start(self, where: str) -> None:
        if self._sent:
            raise AgentApiError(f"httprequest.{where}: this request was already sent")
        self._sent = True

    async def _perform(self, timeout: float | None) -> dict[str, Any]:
        agent = self._agent
        limits = agent.limits
        if agent.in_flight >= limits.requests_in_flight:
            table: dict[str, Any] = {"statuscode": TOO_MANY_REQUESTS, "headers": {},
                     "body": f"over {limits.requests_in_flight} requests in flight"}
        else:
            agent.in_flight += 1
            agent.host.requesting(agent.device_id, +1)
            try:
                reply = await agent.host.outbound.request(
                    self.method, self.url, self.body or None, self.headers,
                    timeout=timeout or limits.http_timeout_s)
            finally:
                agent.in_flight -= 1
                agent.host.requesting(agent.device_id, -1)
            table = reply_table(reply)
        agent.note("http", f"{self.method} {self.url}", int(table["statuscode"]),
                   answer=str(table["body"])[:120], to_agent=agent.host.is_agent_url(self.url))
        return table

    def sendasync(self, done: Any, stream: Any = None, timeout: Any = None) -> None:
        callback = _function("httprequest.sendasync", done)
        if stream is not None:
            raise AgentApiError("httprequest.sendasync: streaming callbacks are not modelled "
                                "by the impfactory emulator")
        self._start("sendasync")
        seconds = _timeout("httprequest.sendasync", timeout)
        agent = self._agent

        async def run() -> None:
            table = await self._perform(seconds)
            agent.call(callback, table)

        self._task = agent.spawn(run())

    def sendsync(self) -> dict[str, Any]:
        self._start("sendsync")
        table = self._agent.wait(self._perform(None))
        if table is None:  # the agent is being stopped
            raise SquirrelThrow("the request was cancelled")
        return dict(table)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _timeout(where: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AgentApiError(f"{where}: the timeout must be a number")
    if value == NO_TIMEOUT:
        return 24 * 3600.0
    if value <= 0 or not math.isfinite(value):
        raise AgentApiError(f"{where}: bad timeout {value!r}")
    return float(value)


class HttpResponse:
    """``httpresponse``: the answer to one request at the agent's URL."""

    def __init__(self, agent: Agent, answer: Callable[[int, dict[str, str], bytes], None]
                 ) -> None:
        self._agent = agent
        self._answer = answer
        self.headers: dict[str, str] = {}
        self.done = False

    def header(self, name: Any, value: Any) -> None:
        key = _text("httpresponse.header", name)
        if isinstance(value, (dict, list)) or value is None:
            raise AgentApiError("httpresponse.header: the value must be a string or a number")
        self.headers[key] = value if isinstance(value, str) else str(value)

    def send(self, status: Any, body: Any = "") -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
            raise AgentApiError(f"httpresponse.send: bad status code {status!r}")
        if self.done:
            raise AgentApiError("httpresponse.send: this request was already answered")
        if isinstance(body, (int, float)) and not isinstance(body, bool):
            body = str(body)
        data = _body("httpresponse.send", body)
        self.done = True
        self._agent.pending(self, False)
        self._answer(status, dict(self.headers), data)

    def abandon(self, status: int, why: str) -> None:
        """The agent cannot answer any more (it stopped, or took too long)."""
        if not self.done:
            self.done = True
            self._answer(status, {"Content-Type": "text/plain"}, why.encode())


class HttpApi:
    """``http``: the agent's URL, outbound requests and the encoders."""

    def __init__(self, agent: Agent, wrap_request: Callable[[HttpRequest], Any]) -> None:
        self._agent = agent
        self._wrap = wrap_request

    def onrequest(self, callback: Any) -> None:
        self._agent.request_handler = _function("http.onrequest", callback) if callback else None

    def agenturl(self) -> str:
        return self._agent.host.agent_url(self._agent.agent_id)

    def request(self, method: Any, url: Any, headers: Any = None, body: Any = None) -> Any:
        verb = _text("http.request", method).upper()
        if not verb.isalpha() or len(verb) > 16:
            raise AgentApiError(f"http.request: bad method {verb!r}")
        return self._wrap(HttpRequest(self._agent, verb, _text("http.request", url),
                                      _headers("http.request", headers),
                                      _body("http.request", body)))

    def get(self, url: Any, headers: Any = None) -> Any:
        return self.request("GET", url, headers)

    def httpdelete(self, url: Any, headers: Any = None) -> Any:
        return self.request("DELETE", url, headers)

    def post(self, url: Any, headers: Any = None, body: Any = None) -> Any:
        return self.request("POST", url, headers, body)

    def put(self, url: Any, headers: Any = None, body: Any = None) -> Any:
        return self.request("PUT", url, headers, body)

    def jsonencode(self, value: Any) -> str:
        try:
            plain = to_plain(value, "value")
            return json.dumps(plain, separators=(",", ":"), allow_nan=False,
                              default=_no_json)
        except (ConversionError, TypeError, ValueError) as err:
            raise AgentApiError(f"http.jsonencode: {err}") from err

    def jsondecode(self, text: Any) -> Any:
        try:
            return _json_value(json.loads(_text("http.jsondecode", text)))
        except (json.JSONDecodeError, RecursionError) as err:
            raise AgentApiError(f"http.jsondecode: not JSON: {err}") from None

    def urlencode(self, table: Any) -> str:
        if not isinstance(table, dict):
            raise AgentApiError("http.urlencode: expected a table")
        pairs = [(str(k), v if isinstance(v, str) else json.dumps(v) if isinstance(v, bool)
                  else str(v)) for k, v in table.items()]
        return urlencode(pairs, quote_via=quote)

    def urldecode(self, text: Any) -> dict[str, str]:
        return dict(parse_qsl(_text("http.urldecode", text), keep_blank_values=True))

    def base64encode(self, data: Any) -> str:
        return base64.b64encode(_body("http.base64encode", data)).decode("ascii")

    def base64decode(self, text: Any) -> bytes:
        try:
            return base64.b64decode(_text("http.base64decode", text), validate=False)
        except ValueError as err:
            raise AgentApiError(f"http.base64decode: {err}") from None


def _no_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return _bytes_str(value)
    raise TypeError(f"a {type(value).__name__} cannot be encoded as JSON")


class ServerApi:
    """``server``: logs, and the agent's saved table."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def log(self, message: Any) -> None:
        self._agent.log(_printable(message))

    def error(self, message: Any) -> None:
        self._agent.error(_printable(message))

    def save(self, table: Any) -> int:
        if not isinstance(table, dict):
            raise AgentApiError(f"server.save: expected a table, got {_type(table)}")
        try:
            text = json.dumps(to_plain(table, "table"), separators=(",", ":"),
                              allow_nan=False)
        except (ConversionError, TypeError, ValueError) as err:
            raise AgentApiError(f"server.save: {err}") from err
        limit = self._agent.limits.save_bytes
        if len(text.encode()) > limit:
            raise AgentApiError(f"server.save: the table is {len(text.encode())} bytes as JSON, "
                                f"over the {limit // 1024} KB limit")
        self._agent.host.save(self._agent.agent_id, text)
        return 0

    def load(self) -> dict[str, Any]:
        text = self._agent.host.load(self._agent.agent_id)
        loaded = json.loads(text) if text else {}
        return _json_value(loaded) if isinstance(loaded, dict) else {}


def _printable(message: Any) -> str:
    if isinstance(message, str):
        return message
    if isinstance(message, bool):
        return "true" if message else "false"
    if message is None:
        return "(null : 0x0)"
    if isinstance(message, (int, float)):
        return str(message)
    try:
        return json.dumps(to_plain(message), default=_no_json)
    except (ConversionError, TypeError, ValueError):
        return f"({_type(message)})"


class ImpApi:
    """``imp``: the agent's environment, its configuration parameters and its timers."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def environment(self) -> int:
        return ENVIRONMENT_AGENT

    def wakeup(self, seconds: Any, callback: Any) -> int:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise AgentApiError(f"imp.wakeup: bad interval {seconds!r}")
        return self._agent.later(float(seconds), _function("imp.wakeup", callback))

    def cancelwakeup(self, handle: Any) -> None:
        if isinstance(handle, int) and not isinstance(handle, bool):
            self._agent.cancel(handle)


class AgentApi:
    """Installs the agent API into one agent's VM."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        assert agent.vm is not None
        self.vm = agent.vm
        self._classes: dict[str, Any] = {}

    def install(self) -> None:
        vm, agent = self.vm, self.agent
        request_cls = vm.host_class("httprequest", _methods(HttpRequest, REQUEST_METHODS),
                                    getter=_unmodelled("httprequest"))
        self._classes["httpresponse"] = vm.host_class(
            "httpresponse", _methods(HttpResponse, RESPONSE_METHODS),
            getter=_unmodelled("httpresponse"))
        objects = {
            "device": (DeviceApi(agent), DeviceApi, DEVICE_METHODS, _unmodelled("device")),
            "http": (HttpApi(agent, lambda r: vm.wrap(r, request_cls)), HttpApi, HTTP_METHODS,
                     _unmodelled("http")),
            "server": (ServerApi(agent), ServerApi, SERVER_METHODS, _unmodelled("server")),
            "imp": (ImpApi(agent), ImpApi, IMP_METHODS, self._imp_member),
        }
        for name, (obj, cls, methods, getter) in objects.items():
            vm.set_global(name, vm.wrap(obj, vm.host_class(name, _methods(cls, methods),
                                                           getter=getter)))
        for name, value in CONSTANTS.items():
            vm.set_global(name, value)
        vm.set_global("time", vm.native(_Uncached(self._time), "time"))
        vm.set_global("date", vm.native(_Uncached(self._date), "date"))
        vm.set_global("clock", vm.native(_Uncached(agent.when), "clock"))

    def wrap_response(self, response: HttpResponse) -> Any:
        return self.vm.wrap(response, self._classes["httpresponse"])

    def _imp_member(self, _obj: Any, name: str) -> Any:
        if name == "configparams":
            return dict(self.agent.config)
        return _unmodelled("imp")(_obj, name)

    def _time(self) -> int:
        return int(self.agent.host.now())

    def _date(self, when: Any = None, kind: str = "u") -> dict[str, int]:
        """``date([time])``: a table of the UTC date (``month`` from 0), as on the device."""
        seconds = self.agent.host.now() if when is None else float(when)
        t = _time.gmtime(seconds)
        return {"year": t.tm_year, "month": t.tm_mon - 1, "day": t.tm_mday,
                "wday": (t.tm_wday + 1) % 7, "yday": t.tm_yday - 1, "hour": t.tm_hour,
                "min": t.tm_min, "sec": t.tm_sec,
                "usec": int((seconds - int(seconds)) * 1_000_000), "time": int(seconds)}


class _Uncached:
    """A native's function that holds this agent, kept out of the arity cache of
    ``impfactory.squirrel.natives`` (which would keep a stopped agent alive)."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn
        self.__signature__ = inspect.signature(fn)

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


def _methods(cls: type, names: tuple[str, ...]) -> dict[str, Callable[..., Any]]:
    return {name: getattr(cls, name) for name in names}


def _unmodelled(table: str) -> Callable[[Any, str], Any]:
    def getter(_obj: Any, name: str) -> Any:
        if name in UNMODELLED[table]:
            raise AgentApiError(f"{table}.{name} is not modelled by the impfactory emulator")
        raise KeyError(name)

    return getter


def message_value(value: Any) -> Any:
    """A device's ``agent.send`` value as the agent receives it (JSON-like data)."""
    return _json_value(value)


__all__ = ["CONSTANTS", "CURL_CODES", "ENVIRONMENT_AGENT", "AgentApi", "AgentApiError",
           "HttpResponse", "message_value", "reply_table"]
