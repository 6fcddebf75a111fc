"""The cloud's hand on the broker's accounts: account commands over MQTT.

JSON commands in the form of Mosquitto's dynamic-security plugin (``createClient``,
``setClientPassword``, ``deleteClient``) go to ``ACCOUNTS_TOPIC``; each is answered
on ``ACCOUNTS_TOPIC/response``, echoing its ``correlationData``, once applied: by
the embedded broker's security plugin (cloud/broker_embedded.py), or by the agent
beside Mosquitto once Mosquitto has reloaded its password file
(cloud/broker_accounts.py). So once ``set_device`` returns, the device can log in.
Only the cloud's account may send commands (cloud/brokersec.py).

Every cloud of a group (docs/scale.md) hears every answer on the one response
topic, and a restarted cloud may still be handed answers to its predecessor's
commands, so each ``BrokerAdmin`` names its commands with a random prefix of its
own: with plain counters, two clouds both waiting for ``impcloud-7`` took each
other's answers, and a cloud answered a registration ``ok`` (or ``unavailable``)
before its own account command was applied.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

from impfactory.cloud.brokersec import ACCOUNTS_TOPIC, RESPONSE_TOPIC, BrokerAccess
from impfactory.cloud.errors import BrokerError

log = logging.getLogger(__name__)

TIMEOUT = 10.0


class BrokerAdmin:
    """Sends account commands and matches their answers; ``publish`` is the link's."""

    def __init__(self, access: BrokerAccess, publish: Callable[[str, bytes], None]) -> None:
        self.access = access
        self._publish = publish
        self._ids = itertools.count(1)
        self._prefix = f"impcloud-{secrets.token_hex(8)}"  # this admin's, among all clouds'
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    response_topic = RESPONSE_TOPIC

    async def set_device(self, device_id: str, password: str) -> None:
        """Make the broker account ``device_id`` (client ID bound to it) use ``password``."""
        answer = await self._command({"command": "createClient", "username": device_id,
                                      "password": password, "clientid": device_id})
        if answer.get("error") == "Client already exists":
            answer = await self._command({"command": "setClientPassword",
                                          "username": device_id, "password": password})
        if "error" in answer:
            raise BrokerError(f"the broker refused an account for {device_id}: "
                              f"{answer['error']}")

    async def delete_device(self, device_id: str) -> None:
        answer = await self._command({"command": "deleteClient", "username": device_id})
        if "error" in answer and answer["error"] != "Client not found":
            raise BrokerError(f"the broker kept the account of {device_id}: {answer['error']}")

    async def _command(self, command: dict[str, Any]) -> dict[str, Any]:
        correlation = f"{self._prefix}-{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        body = json.dumps({"commands": [{**command, "correlationData": correlation}]})
        try:
            self._publish(ACCOUNTS_TOPIC, body.encode())
            return await asyncio.wait_for(future, TIMEOUT)
        except TimeoutError as err:
            raise BrokerError(f"the broker did not answer {command['command']} within "
                              f"{TIMEOUT:.0f} s (does it keep accounts?)") from err
        finally:
            self._waiting.pop(correlation, None)

    def on_response(self, payload: bytes) -> None:
        """An answer on the control response topic (from the link's receive callback)."""
        try:
            responses = json.loads(payload)["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable broker control answer: %r", payload[:200])
            return
        for response in responses if isinstance(responses, list) else ():
            if not isinstance(response, dict):
                continue
            future = self._waiting.get(str(response.get("correlationData")))
            if future is not None and not future.done():
                future.set_result(response)

    def fail_all(self, err: Exception) -> None:
        """The link is gone: nobody waits for an answer that cannot come."""
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(err)
