"""Agents' traffic: a device's ``agent.send``, an agent's ``device.send``, and what
agents keep with ``server.save``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from impfactory.cloud.errors import InvalidError
from impfactory.cloud.services.context import Context
from impfactory.protocol import cloudlink as cl

log = logging.getLogger(__name__)

AgentListener = Callable[[str, str, Any], None]
"""``(device_id, name, value)`` for each ``agent.send`` a device makes."""


class AgentTraffic:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._listeners: list[AgentListener] = []

    def add_agent_listener(self, listener: AgentListener) -> Callable[[], None]:
        """Hear every device's ``agent.send`` beside its agent (tests, tools):
        ``listener(device_id, name, value)``. Returns the function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def agent_message(self, device_id: str, name: str, value: Any) -> bool:
        """A device's ``agent.send``: handed to every listener; False (and a line in the
        device log) when the device has no agent yet, i.e. was never enrolled."""
        device = self.ctx.repos.devices.get(device_id)
        if device is None or device.agent_id is None:
            self.ctx.log(device_id, f"agent.send({name!r}) dropped: the device has no agent")
            return False
        for listener in list(self._listeners):
            try:
                listener(device_id, name, value)
            except Exception:  # one listener's bug must not cost the others the message
                log.exception("agent listener failed on %r from %s", name, device_id)
        self.ctx.agents.device_message(device_id, name, value)
        return True

    def send_to_device(self, device_id: str, name: str, value: Any = None) -> bool:
        """An agent's ``device.send(name, value)``: True when handed to the online device,
        False when it is offline (the message is dropped, as impCloud drops it)."""
        device = self.ctx.device(device_id)
        try:
            msg = cl.validate(cl.DeviceMessage(device_id=device.id, name=name, value=value))
        except cl.CloudLinkError as err:
            raise InvalidError(f"device.send: {err}") from err
        if not device.online:
            return False
        self.ctx.send(msg)
        return True

    def agent_save(self, agent_id: str, data: str) -> None:
        """``server.save``: the agent's table (JSON text), kept across restarts; ``{}``
        clears it."""
        repo = self.ctx.repos.agent_store
        with self.ctx.tx():
            if data == "{}":
                repo.clear(agent_id)
            else:
                repo.save(agent_id, data, self.ctx.now())

    def agent_load(self, agent_id: str) -> str | None:
        """``server.load``: what the agent last saved (JSON text), or ``None``."""
        return self.ctx.repos.agent_store.load(agent_id)
