"""Agent events of a share group's clouds, carried to the one cloud that runs its agents.

Clouds that split the devices' traffic (``--share GROUP``, cloud/link.py) must not
each start an agent for the same device: an agent holds state in memory (its
variables, timers, handlers) and answers at one URL. So one cloud of the group
runs the agents and the others run none (``cloud serve --no-agents``); what their
devices tell an agent (``AgentEvents``: a device changed, an ``agent.send``)
travels to it over the broker, and it replays each into its ``Agents``. What the
agents send back to devices goes out through that cloud's own link (sealed with
the link key from the shared store), so no answer depends on which cloud heard
the device.

Topic and payload (only cloud accounts may use the topic; ``{group}`` is the share
group)::

    impfactory/cloud/1/{group}/agents
    {"v":1,"device_id":"<16 hex>","event":"changed","restart":false}
    {"v":1,"device_id":"<16 hex>","event":"message","name":"<name>","value":<JSON>}

No I/O here beyond the ``publish`` function given; bad payloads raise the typed
``RelayError`` (``replay`` logs and drops them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from impfactory.cloud.errors import CloudError
from impfactory.cloud.service import AgentEvents

log = logging.getLogger(__name__)

VERSION: Final = 1
PREFIX: Final = f"impfactory/cloud/{VERSION}"
FILTER: Final = f"{PREFIX}/+/agents"
"""What a cloud account may use (brokersec.CLOUD_READS/WRITES)."""
MAX_PAYLOAD: Final = 64 * 1024

_DEVICE = re.compile(r"[0-9a-f]{16}\Z")
_GROUP = re.compile(r"[a-z0-9_-]{1,32}\Z")


class RelayError(CloudError, ValueError):
    """A relayed agent event is malformed."""


@dataclass(frozen=True)
class AgentEvent:
    """One ``AgentEvents`` call: ``changed`` (with ``restart``) or ``message``."""

    device_id: str
    event: str
    restart: bool = False
    name: str = ""
    value: Any = None


def topic(group: str) -> str:
    if not _GROUP.match(group):
        raise RelayError(f"bad share group {group[:40]!r}")
    return f"{PREFIX}/{group}/agents"


def encode(event: AgentEvent) -> bytes:
    obj: dict[str, Any] = {"v": VERSION, "device_id": event.device_id, "event": event.event}
    if event.event == "changed":
        obj["restart"] = event.restart
    else:
        obj["name"], obj["value"] = event.name, event.value
    try:
        payload = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as err:
        raise RelayError(f"agent event not representable as JSON: {err}") from err
    if len(payload) > MAX_PAYLOAD:
        raise RelayError(f"agent event of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return payload


def decode(payload: bytes) -> AgentEvent:
    if len(payload) > MAX_PAYLOAD:
        raise RelayError(f"agent event of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise RelayError(f"agent event is not JSON: {type(err).__name__}") from None
    if not isinstance(obj, dict) or obj.get("v") != VERSION:
        raise RelayError("agent event is not a version-1 object")
    device_id, event = obj.get("device_id"), obj.get("event")
    if not isinstance(device_id, str) or not _DEVICE.match(device_id):
        raise RelayError("agent event: bad device_id")
    if event == "changed" and set(obj) == {"v", "device_id", "event", "restart"} \
            and isinstance(obj["restart"], bool):
        return AgentEvent(device_id, "changed", restart=obj["restart"])
    if event == "message" and set(obj) == {"v", "device_id", "event", "name", "value"} \
            and isinstance(obj["name"], str) and len(obj["name"]) <= 256:
        return AgentEvent(device_id, "message", name=obj["name"], value=obj["value"])
    raise RelayError(f"agent event: unknown or malformed event {str(event)[:20]!r}")


class AgentRelay:
    """``AgentEvents`` of a cloud that runs no agents: each goes to the group's agent cloud."""

    def __init__(self, publish: Callable[[str, bytes], None], group: str) -> None:
        self._publish = publish
        self._topic = topic(group)

    def device_changed(self, device_id: str, restart: bool = False) -> None:
        self._send(AgentEvent(device_id, "changed", restart=restart))

    def device_message(self, device_id: str, name: str, value: Any) -> None:
        self._send(AgentEvent(device_id, "message", name=name, value=value))

    def is_running(self, device_id: str) -> bool | None:
        return None  # the agent cloud knows

    def _send(self, event: AgentEvent) -> None:
        try:
            payload = encode(event)
        except RelayError as err:
            log.warning("agent event for %s not relayed: %s", event.device_id, err)
            return
        # the service tells us inside its transaction: send once that has committed, so
        # the agent cloud reads what caused the event (as local Agents do, on the loop)
        asyncio.get_running_loop().call_soon(self._publish, self._topic, payload)


def replay(agents: AgentEvents, payload: bytes) -> None:
    """Hand a relayed event to this cloud's agents; a bad one is logged and dropped."""
    try:
        event = decode(payload)
    except RelayError as err:
        log.warning("dropped a relayed agent event: %s", err)
        return
    if event.event == "changed":
        agents.device_changed(event.device_id, event.restart)
    else:
        agents.device_message(event.device_id, event.name, event.value)
