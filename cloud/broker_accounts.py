"""Device accounts for the Mosquitto the project starts: a password file, reloaded in batches.

The cloud asks for an account as it asks the embedded broker: a command on
``ACCOUNTS_TOPIC`` (cloud/brokeradmin.py). Beside each Mosquitto the project
starts runs this agent, an MQTT client of its own (account ``impfactory-accounts``,
in the same process as ``BrokerServer``). It applies each batch of commands to
its table, writes the whole password file, has Mosquitto reload it (SIGHUP), waits
until Mosquitto takes a login only that file allows (``_load``), and then answers
every command of the batch. The answer's guarantee: a login begun after it sees the
account as the command left it (made, new password, or gone) until a later command
changes it. Commands arriving meanwhile form the next batch, and after each
batch the agent rests four times as long as the reload costs, so
reloading (it costs Mosquitto about 1.4 µs per account: 0.4 ms at 250 accounts,
2.8 ms at 2,000, during which every client waits) never holds the broker more
than a fifth of the time, however fast devices register: batches grow instead.
Measured against the run-time alternative, Mosquitto's dynamic-security plugin,
in docs/cloud.md ("Broker security").
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from impfactory.brokerurl import parse_url
from impfactory.cloud.brokersec import (
    ACCOUNTS_TOPIC,
    AGENT_USER,
    PROBE_USER,
    RESPONSE_TOPIC,
    Realm,
    password_line,
    write_private,
)
from impfactory.cloud.errors import BrokerError
from impfactory.cloud.mqtt import AsyncMqtt
from impfactory.loopthread import LoopThread
from impfactory.mqttconn import MqttRefused, open_connection

log = logging.getLogger(__name__)

_DEVICE = re.compile(r"[0-9a-f]{16}\Z")
RELOAD_S_PER_ACCOUNT = 1.5e-6
"""What a reload costs Mosquitto per account (measured: 2.8 ms at 2,000 accounts)."""
RELOAD_TRIES = 10
"""SIGHUPs per batch before the agent gives up (5 ms apart, doubling: about 5 s)."""
PROBE_TIMEOUT = 5.0


class AccountFile:
    """Mosquitto's password file: the fixed accounts, one line per device, the probe."""

    def __init__(self, path: Path, fixed: dict[str, str]) -> None:
        self.path = path
        self.fixed = fixed
        self.devices: dict[str, str] = {}
        self.probe: str | None = None
        """The agent's probe account's line (a new password in each file)."""
        self._lock = threading.Lock()
        if path.exists():  # a broker restarted in place: its devices are still here
            for line in path.read_text().splitlines():
                name = line.split(":", 1)[0]
                if _DEVICE.match(name):
                    self.devices[name] = line

    def apply(self, command: dict[str, Any]) -> str | None:
        """One account command; an error text when it cannot be applied."""
        name, password = command.get("command"), command.get("password")
        username = command.get("username")
        if not isinstance(username, str) or not _DEVICE.match(username):
            return "Only device accounts can be changed"
        with self._lock:
            known = username in self.devices
            if name == "createClient" and isinstance(password, str):
                if known:
                    return "Client already exists"
                self.devices[username] = password_line(username, password)
            elif name == "setClientPassword" and isinstance(password, str):
                if not known:
                    return "Client not found"
                self.devices[username] = password_line(username, password)
            elif name == "deleteClient":
                if not known:
                    return "Client not found"
                del self.devices[username]
            else:
                return "Unknown command"
        return None

    @property
    def count(self) -> int:
        return len(self.fixed) + len(self.devices)

    def write(self) -> None:
        with self._lock:
            lines = [*self.fixed.values(), *self.devices.values()]
            if self.probe is not None:
                lines.append(self.probe)
        write_private(self.path, "\n".join(lines) + "\n")


class AccountAgent(LoopThread):
    """Answers account commands for one Mosquitto (its process: ``pid()``)."""

    def __init__(self, realm: Realm, url: str, pid: Callable[[], int]) -> None:
        super().__init__("impfactory-accounts")
        self.realm = realm
        self.url = url
        self.pid = pid
        self.accounts: AccountFile = realm.accounts
        self.batches = 0
        self.resent = 0
        """SIGHUPs sent again because Mosquitto had not reloaded (it drops a SIGHUP
        that arrives while it reloads)."""
        self._pending: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self._wake: asyncio.Event | None = None
        self._mqtt: AsyncMqtt | None = None
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> AccountAgent:
        self.start_loop()
        self.run(self._start(), 30)
        return self

    def stop(self) -> None:
        if self.loop_alive:
            self.run(self._stop(), 30)
        self.stop_loop()

    async def _start(self) -> None:
        self._wake = asyncio.Event()
        mqtt = AsyncMqtt(self.url, AGENT_USER, self._receive, username=AGENT_USER,
                         password=self.realm.agent_password)
        mqtt.subscribe(ACCOUNTS_TOPIC, 1)
        await mqtt.connect()
        self._mqtt = mqtt
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.wait({self._worker})
        if self._mqtt is not None:
            await self._mqtt.disconnect()

    def _receive(self, topic: str, payload: bytes) -> None:
        try:
            commands = json.loads(payload)["commands"]
            assert isinstance(commands, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            self._answer([{"command": "Unknown command", "error": "Invalid/missing commands"}])
            return
        for command in commands:
            if isinstance(command, dict):
                reply: dict[str, Any] = {"command": command.get("command")}
                if "correlationData" in command:
                    reply["correlationData"] = command["correlationData"]
                self._pending.append((command, reply))
        assert self._wake is not None
        self._wake.set()

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            replies = []
            for command, reply in batch:
                error = self.accounts.apply(command)
                if error is not None:
                    reply["error"] = error
                replies.append(reply)
            try:
                await self._load()
            except (BrokerError, OSError) as err:  # the broker is gone
                log.error("account batch not loaded: %s", err)
                for reply in replies:
                    reply.setdefault("error", str(err))
            self._answer(replies)
            self.batches += 1
            # rest four times the reload's cost: Mosquitto reloads a fifth of the time at
            # most (a reload holds up every client), and busy batches grow instead
            await asyncio.sleep(4 * RELOAD_S_PER_ACCOUNT * self.accounts.count)

    async def _load(self) -> None:
        """Write the file and return once Mosquitto has loaded it.

        Mosquitto (2.0.11, src/loop.c) handles SIGHUP by setting a flag, reloads at
        the end of its loop turn and then clears the flag: a SIGHUP arriving during
        a reload is lost, and that reload may have read the older file. Ordering the
        signal before the answer is therefore not enough (under load a batch's
        signal lands in the previous batch's reload, and its accounts stay unknown
        until the next batch). So each file holds the probe account with a password
        of its own, and the agent logs in with it after the signal: once Mosquitto
        takes that login it has loaded this file (or none later: the agent writes
        the next only after answering), and keeps every account in it. A refused
        probe means the signal was lost (not merely late: a signal pending while
        Mosquitto waits is handled as the wait ends, so by the end of the turn that
        accepts the probe's socket, and its CONNECT is read in a later turn): it is
        sent again.
        """
        password = secrets.token_urlsafe(16)
        self.accounts.probe = password_line(PROBE_USER, password)
        self.accounts.write()
        host, port = parse_url(self.url)
        for attempt in range(RELOAD_TRIES):
            os.kill(self.pid(), signal.SIGHUP)
            if await login_accepted(host, port, PROBE_USER, password):
                return
            self.resent += 1
            await asyncio.sleep(0.005 * 2 ** attempt)
        raise BrokerError(f"Mosquitto did not load the accounts after {RELOAD_TRIES} SIGHUPs")

    def _answer(self, replies: list[dict[str, Any]]) -> None:
        if replies and self._mqtt is not None:
            self._mqtt.publish(RESPONSE_TOPIC, json.dumps({"responses": replies}).encode(), 1)


async def login_accepted(host: str, port: int, username: str, password: str) -> bool:
    """Whether the broker takes this login now: one MQTT 3.1.1 CONNECT (client ID
    the username, clean session), its CONNACK, then DISCONNECT. A connection of its
    own (impfactory/mqttconn.py) rather than an ``AsyncMqtt``: no paho client per
    batch, and a refusal is an answer here, not an error to log."""
    try:
        conn = await open_connection(host, port, client_id=username,
                                     on_message=lambda topic, payload: None,
                                     username=username, password=password, keepalive=0,
                                     timeout=PROBE_TIMEOUT)
    except MqttRefused:
        return False
    except OSError as err:
        raise BrokerError(f"cannot log in to mqtt://{host}:{port}: {err}") from err
    conn.disconnect()
    return True
