"""Agents: the server-side half of every imp, run by the emulated impCloud.

* ``host.Agents``: which device has an agent running which code, what reaches it
  (messages from its device, requests at its URL) and what it may reach;
* ``agent.Agent``: one device's agent, its Squirrel VM (``impfactory.squirrel``),
  its calls, timers and requests in flight, and its limits (``AgentLimits``);
* ``api``: the agent API bound to the VM (``device``, ``http``, ``server``, ``imp``);
* ``web``: the aiohttp sub-application that serves agent URLs.

The device-side API lives in ``firmware/``; the two sides meet only over the cloud
link (``protocol/cloudlink.py``: ``agent_message`` up, ``device_message`` down).
"""

from impfactory.cloud.agents.agent import Agent, AgentLimits
from impfactory.cloud.agents.host import Agents, Answer
from impfactory.cloud.agents.web import PREFIX, agent_app

__all__ = ["PREFIX", "Agent", "AgentLimits", "Agents", "Answer", "agent_app"]
