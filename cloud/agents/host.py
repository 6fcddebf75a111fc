"""Every agent of one cloud: when each runs, what reaches it, and what it may reach.

``Agents`` lives on the cloud's loop beside the device link. The service tells it
what happened to a device (``AgentEvents`` in ``cloud/service.py``); it decides,
in order, on the loop, never inside the service's transaction::

    device changed (hello, state, bye, assignment, blessing)  -> sync(device)
    restart of the device or its group                          -> sync(device, restart)
    agent.send from the device                                  -> the agent's device.on
    a request at the agent's URL (``cloud/agents/web.py``)       -> its http.onrequest

**Which code an agent runs.** One agent per device that is assigned, has an
agent ID, and whose deployment has agent code. The deployment is the one the
device reports running, or, before it has run any, the one it is being offered:
so a device and its agent always run the two halves of one deployment. A new
deployment reaches the agent with its device (at a restart, or when the device
next connects and loads it); a device or group restart restarts the agent; a
device moved to a group with no agent code (a blessed DUT loading an application
without one) has its agent stopped. The agent of a device offline for
``offline_lifetime_s`` is stopped, and starts again when the device returns or
its URL is requested.

**What it can reach.** Its device (messages, through the service and the cloud
link), the cloud's HTTP client (``cloud.outbound``: the one session, with
deadlines), its saved table in the store, the device's log. Nothing else: no
file, no process, no other agent except over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import greenlet

from impfactory.clock import Clock, RealClock, TimerHandle
from impfactory.cloud import offers
from impfactory.cloud.agents.agent import Agent, AgentLimits
from impfactory.cloud.agents.api import HttpResponse, message_value
from impfactory.cloud.errors import NotFoundError
from impfactory.cloud.model import Deployment, Device
from impfactory.cloud.outbound import Outbound
from impfactory.cloud.service import NO_AGENTS, CloudService

log = logging.getLogger(__name__)


@dataclass
class AgentStats:
    started: int = 0
    stopped: int = 0
    messages_in: int = 0
    messages_dropped: int = 0
    requests_served: int = 0


@dataclass(frozen=True)
class Answer:
    """What a request at an agent's URL gets."""

    status: int
    headers: dict[str, str]
    body: bytes


class Agents:
    """The agents of one ``CloudService``, making requests through ``outbound``."""

    def __init__(self, svc: CloudService, outbound: Outbound, *,
                 limits: AgentLimits | None = None, clock: Clock | None = None) -> None:
        self.svc = svc
        self.outbound = outbound
        self.limits = limits or AgentLimits()
        self.clock: Clock = clock or RealClock()
        self.stats = AgentStats()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # at start
        self.main_greenlet: greenlet.greenlet = greenlet.getcurrent()
        self._agents: dict[str, Agent] = {}
        self._by_agent: dict[str, str] = {}
        self._activity: dict[str, deque[dict[str, Any]]] = {}
        self._events: deque[Callable[[], object]] = deque()
        self._draining = False
        self._offline: dict[str, TimerHandle] = {}
        self._idle: dict[str, list[asyncio.Future[None]]] = {}
        self._requests: dict[str, int] = {}  # outbound requests in flight, by device

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Attach to the service on the running loop (its thread is the agents' thread)."""
        self.loop = asyncio.get_running_loop()
        self.main_greenlet = greenlet.getcurrent()
        self.svc.agents = self

    async def stop(self) -> None:
        """Stop every agent; the service hears no more of them."""
        if self.svc.agents is self:
            self.svc.agents = NO_AGENTS
        self._events.clear()
        for handle in self._offline.values():
            handle.cancel()
        self._offline.clear()
        for agent in list(self._agents.values()):
            self._stop(agent, cancel_requests=True)
        for waiters in self._idle.values():
            for future in waiters:
                if not future.done():
                    future.set_result(None)
        self._idle.clear()

    # --- what the service tells (AgentEvents) -------------------------------------------

    def device_changed(self, device_id: str, restart: bool = False) -> None:
        self._later(lambda: self.sync(device_id, restart=restart))

    def device_message(self, device_id: str, name: str, value: Any) -> None:
        self._later(lambda: self._deliver(device_id, name, value))

    def is_running(self, device_id: str) -> bool | None:
        agent = self._agents.get(device_id)
        return agent is not None and agent.running

    def _later(self, fn: Callable[[], object]) -> None:
        self._events.append(fn)
        if not self._draining and self.loop is not None:
            self._draining = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        try:
            while self._events:
                fn = self._events.popleft()
                try:
                    fn()
                except Exception:  # one agent's trouble costs no other agent its events
                    log.exception("agents: failed to handle an event")
        finally:
            self._draining = False
        self._check_idle()

    # --- which agent runs -----------------------------------------------------------------

    def sync(self, device_id: str, *, restart: bool = False) -> Agent | None:
        """Bring ``device_id``'s agent in line with the device (see the module doc)."""
        device = self.svc.find_device(device_id)
        wanted = self._wanted(device)
        agent = self._agents.get(device_id)
        if agent is not None and (
                device is None or wanted is None or restart
                or wanted.id != agent.deployment_id or device.agent_id != agent.agent_id):
            self._stop(agent)
            agent = None
        if agent is None and device is not None and wanted is not None:
            agent = self._start(device, wanted)
        if agent is not None and device is not None:
            self._connection(agent, device.online)
        return agent

    def _wanted(self, device: Device | None) -> Deployment | None:
        if device is None or not device.agent_id or not device.group_id:
            return None
        dep = None
        if device.deployment_id:
            with contextlib.suppress(NotFoundError):
                dep = self.svc.get_deployment(device.deployment_id)
        if dep is None:
            dep = offers.target_deployment(self.svc, device)
        if dep is None or not dep.agent_code.strip():
            return None
        return dep

    def config(self, device: Device) -> dict[str, Any]:
        """``imp.configparams`` of the device's agent: the device's, plus ``deviceid`` and,
        on a DUT's agent, ``factory_fixture_url`` (IMP_FACTS §4)."""
        params: dict[str, Any] = dict(offers.configparams(self.svc, device))
        params["deviceid"] = device.id
        if "factory_imp_device_id" in params and device.fixture_id \
                and params["factory_imp_device_id"] == device.fixture_id:
            fixture = self.svc.find_device(device.fixture_id)
            url = self.svc.agent_url(fixture.agent_id) if fixture is not None else None
            if url:
                params["factory_fixture_url"] = url
        return params

    def _start(self, device: Device, dep: Deployment) -> Agent:
        assert device.agent_id is not None
        agent = Agent(self, device.id, device.agent_id, dep.id, dep.agent_code,
                      self.config(device))
        agent.device_online = device.online
        self._agents[device.id] = agent
        self._by_agent[device.agent_id] = device.id
        self.stats.started += 1
        agent.start()
        return agent

    def _stop(self, agent: Agent, *, cancel_requests: bool = False) -> None:
        if self._agents.get(agent.device_id) is agent:
            del self._agents[agent.device_id]
        if self._by_agent.get(agent.agent_id) == agent.device_id:
            del self._by_agent[agent.agent_id]
        handle = self._offline.pop(agent.device_id, None)
        if handle is not None:
            handle.cancel()
        self.stats.stopped += 1
        agent.stop(cancel_requests=cancel_requests)
        self._check_idle(agent.device_id)

    def stopped_itself(self, agent: Agent) -> None:
        """Its code was stopped (a limit): it stays registered, not running, until a
        restart or new code (``sync`` with another deployment) replaces it."""
        agent.stop()
        self._check_idle()

    def _connection(self, agent: Agent, online: bool) -> None:
        if online == agent.device_online:
            return
        agent.device_online = online
        handler = agent.on_connect if online else agent.on_disconnect
        if handler is not None:
            agent.call(handler, *([{}] if not online and _takes_argument(handler) else []))
        if online:
            handle = self._offline.pop(agent.device_id, None)
            if handle is not None:
                handle.cancel()
        elif agent.device_id not in self._offline:
            self._offline[agent.device_id] = self.clock.call_later(
                self.limits.offline_lifetime_s, lambda: self._expire(agent))

    def _expire(self, agent: Agent) -> None:
        self._offline.pop(agent.device_id, None)
        if self._agents.get(agent.device_id) is agent and not agent.device_online:
            self._stop(agent)

    # --- device -> agent ------------------------------------------------------------------

    def _deliver(self, device_id: str, name: str, value: Any) -> None:
        agent = self._agents.get(device_id) or self.sync(device_id)
        if agent is None or not agent.running:
            self.stats.messages_dropped += 1
            self.note(device_id, "from_device", name, 0)
            self.log(device_id, f"agent.send(\"{name}\") dropped: the device's agent is not "
                                "running", "status")
            return
        handler = agent.handlers.get(name)
        if handler is None:
            self.stats.messages_dropped += 1
            agent.note("from_device", name, 0)
            agent.error(f"ERROR: no handler for agent.send(): \"{name}\"")
            return
        self.stats.messages_in += 1
        agent.note("from_device", name)
        agent.call(handler, message_value(value))

    def send_to_device(self, device_id: str, name: str, value: Any) -> bool:
        """An agent's ``device.send``: True when handed to the online device."""
        return self.svc.send_to_device(device_id, name, value)

    # --- requests at agent URLs ---------------------------------------------------------------

    async def serve(self, agent_id: str, method: str, path: str, query: dict[str, str],
                    headers: dict[str, str], body: bytes) -> Answer:
        """One request at ``agent_id``'s URL, answered as its ``http.onrequest`` says."""
        device_id = self._by_agent.get(agent_id)
        agent = self._agents.get(device_id) if device_id else None
        if agent is None:
            found = self.svc.list_devices(agent_id=agent_id, limit=1)
            if found:
                agent = self.sync(found[0].id)
        if agent is None or not agent.running or agent.api is None:
            return Answer(404, {"Content-Type": "text/plain"}, b"Not Found: no such agent")
        handler = agent.request_handler
        if handler is None:  # impCloud: an agent without http.onrequest answers 404
            agent.note("http_in", f"{method} {path}", 404)
            return Answer(404, {"Content-Type": "text/plain"}, b"Not Found")
        future: asyncio.Future[Answer] = self.loop.create_future()

        def answer(status: int, hdrs: dict[str, str], data: bytes) -> None:
            if not future.done():
                future.set_result(Answer(status, hdrs, data))

        response = HttpResponse(agent, answer)
        agent.pending(response, True)
        table = {"method": method, "path": path, "query": dict(query),
                 "headers": {k.lower(): v for k, v in headers.items()},
                 "body": body.decode("utf-8", "surrogateescape")}
        self.stats.requests_served += 1
        agent.call_then(handler, (table, agent.api.wrap_response(response)),
                        lambda ok: None if ok else response.abandon(
                            500, "the agent's request handler failed"))
        try:
            result = await asyncio.wait_for(asyncio.shield(future),
                                            self.limits.response_timeout_s)
        except TimeoutError:
            response.abandon(504, "the agent did not answer in time")
            result = future.result()
        finally:
            agent.pending(response, False)
        agent.note("http_in", f"{method} {path}", result.status)
        return result

    def agent_url(self, agent_id: str) -> str:
        return self.svc.agent_url(agent_id) or ""

    def is_agent_url(self, url: str) -> bool:
        """``url`` is (under) an agent URL of this cloud."""
        return url.startswith(self.svc.agent_base_url + "/")

    # --- what agents use of the cloud -----------------------------------------------------

    def now(self) -> float:
        return self.svc.now()

    def log(self, device_id: str, text: str, kind: str) -> None:
        try:
            self.svc.append_log(device_id, text, kind)
        except Exception:  # the log is best effort; the agent carries on
            log.exception("agents: could not log for %s", device_id)

    def save(self, agent_id: str, text: str) -> None:
        self.svc.agent_save(agent_id, text)

    def load(self, agent_id: str) -> str | None:
        return self.svc.agent_load(agent_id)

    # --- activity, for reports ----------------------------------------------------------------

    def note(self, device_id: str, kind: str, detail: str, status: int | None = None,
             **extra: Any) -> None:
        entries = self._activity.get(device_id)
        if entries is None:
            entries = self._activity[device_id] = deque(maxlen=self.limits.activity)
            while len(self._activity) > self.limits.activity_devices:
                del self._activity[next(iter(self._activity))]
        entries.append({"t": self.svc.now(), "kind": kind, "detail": detail,
                        "status": status, **extra})
        if device_id in self._idle:
            self._check_idle(device_id)

    def activity(self, device_id: str) -> list[dict[str, Any]]:
        """What ``device_id``'s agent did (oldest first, the last ``limits.activity``)."""
        return list(self._activity.get(device_id, ()))

    def agent(self, device_id: str) -> Agent | None:
        return self._agents.get(device_id)

    def agents(self) -> list[Agent]:
        return list(self._agents.values())

    async def settled(self, device_id: str, messages: int = 0,
                      timeout: float = 3.0) -> list[dict[str, Any]]:
        """``device_id``'s activity once its agent has heard ``messages`` messages from its
        device and has nothing queued, running or in flight (or ``timeout`` wall seconds
        have passed)."""
        deadline = self.loop.time() + timeout
        while self._busy(device_id, messages):
            future: asyncio.Future[None] = self.loop.create_future()
            self._idle.setdefault(device_id, []).append(future)
            try:
                await asyncio.wait_for(future, deadline - self.loop.time())
            except TimeoutError:
                break
        return self.activity(device_id)

    def requesting(self, device_id: str, change: int) -> None:
        """Count the outbound requests in flight for a device's agents (a stopped agent's
        requests still complete)."""
        left = self._requests.get(device_id, 0) + change
        if left > 0:
            self._requests[device_id] = left
        else:
            self._requests.pop(device_id, None)

    def _busy(self, device_id: str, messages: int = 0) -> bool:
        agent = self._agents.get(device_id)
        if self._events or device_id in self._requests or (
                agent is not None and agent.running and agent.busy):
            return True
        heard = sum(1 for e in self._activity.get(device_id, ()) if e["kind"] == "from_device")
        return heard < messages

    def _check_idle(self, device_id: str | None = None) -> None:
        """Wake whoever waits on a device's agent (they look again for themselves)."""
        if not self._idle:
            return
        for key in [device_id] if device_id is not None else list(self._idle):
            for future in self._idle.pop(key, ()):
                if not future.done():
                    future.set_result(None)

    def idle_changed(self, agent: Agent) -> None:
        """An agent finished a call or a request: wake whoever waits for it to settle."""
        self._check_idle(agent.device_id)


def _takes_argument(fn: Any) -> bool:
    arity = getattr(fn, "arity", None)
    return arity is None or arity >= 1
