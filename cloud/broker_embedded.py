"""The embedded (amqtt) broker's security: accounts, access rules, control topic.

amqtt has plugin hooks for authentication (``authenticate(session)``) and for
topics (``topic_filtering(session, topic, action)`` for PUBLISH, SUBSCRIBE and,
at each delivery, RECEIVE), so the rules of cloud/brokersec.py are enforced here
as Mosquitto enforces them with its password and ACL files:

* anonymous clients and wrong passwords are refused;
* device accounts must use their own name as client ID, enrolment slots their
  name or their name and a suffix (``enrol-007-<nonce>``: each registration its
  own session, so registrations never collide here), and the cloud may choose;
* each account publishes, subscribes and receives only on its own topics; a
  will message must name a topic its account may publish on (amqtt sends wills
  without asking the topic plugin);
* the cloud adds device accounts with commands (``createClient``,
  ``setClientPassword``, ``deleteClient``) on ``ACCOUNTS_TOPIC``, answered on
  ``ACCOUNTS_TOPIC/response`` as the agent beside Mosquitto answers them.

What no plugin can do: amqtt 0.12 deletes the session of a reused client ID, and
with ``clean_session`` false copies the newcomer's will and credentials into the
old session, *before* it authenticates the newcomer; and it keeps serving a client
whose account is deleted until it disconnects. ``GuardedBroker`` authenticates
first (overriding amqtt's private ``_initialize_client_session``) and refuses
``clean_session`` false, which the cloud link never uses; tests/test_attacks.py
proves it on the installed amqtt. It also asks the topic rule without yielding
(``_topic_filtering``): amqtt's broadcast loop walks its subscription table across
that call and fails when another client changes it meanwhile; and it keeps a
client ID's newest session when amqtt's session monitor or two racing logins
would drop its subscriptions (``_cleanup_session``, ``add_subscription``). There
are no rate limits or message-size limits per client beyond amqtt's own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import MQTTError
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session
from amqtt.utils import gen_client_id

from impfactory.cloud.brokersec import (
    ACCOUNTS_TOPIC,
    CLOUD_READS,
    CLOUD_WRITES,
    LINE_TOPICS,
    RESPONSE_TOPIC,
    cloud_users,
    line_users,
)
from impfactory.protocol import cloudlink as cl
from impfactory.protocol import linksec

log = logging.getLogger(__name__)


@dataclass
class _Account:
    kind: str  # "cloud" | "slot" | "device" | "line"
    salt: bytes
    digest: bytes
    clientid: str | None


def _digest(salt: bytes, password: str) -> bytes:
    return hashlib.sha256(salt + password.encode()).digest()


class AccountTable:
    """The embedded broker's accounts (in memory; a broker restarted in place keeps them)."""

    def __init__(self, cloud_password: str, line_password: str | None = None) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}
        for user in cloud_users():
            self._put(user, cloud_password, None, "cloud")
        if line_password is not None:
            for user in line_users():
                self._put(user, line_password, user, "line")
        for slot in linksec.slot_names():
            self._put(slot, linksec.ENROL_PASSWORD, slot, "slot")

    def _put(self, username: str, password: str, clientid: str | None, kind: str) -> None:
        salt = os.urandom(16)
        with self._lock:
            self._accounts[username] = _Account(kind, salt, _digest(salt, password), clientid)

    def create(self, username: str, password: str, clientid: str | None) -> str | None:
        """Add a device account; an error text when it cannot be added."""
        if not cl.DEVICE_ID.matches(username):
            return "Only device accounts can be created"
        with self._lock:
            if username in self._accounts:
                return "Client already exists"
        self._put(username, password, clientid, "device")
        return None

    def set_password(self, username: str, password: str) -> str | None:
        with self._lock:
            found = self._accounts.get(username)
        if found is None or found.kind != "device":
            return "Client not found"
        self._put(username, password, found.clientid, "device")
        return None

    def delete(self, username: str) -> str | None:
        with self._lock:
            found = self._accounts.get(username)
            if found is None or found.kind != "device":
                return "Client not found"
            del self._accounts[username]
        return None

    def kind_of(self, username: str | None) -> str | None:
        with self._lock:
            found = self._accounts.get(username or "")
        return found.kind if found is not None else None

    def authenticate(self, username: str | None, password: str | None,
                     clientid: str | None) -> str | None:
        """The account's kind when the credentials (and client ID) are right, else None."""
        if not username or password is None:
            return None
        with self._lock:
            found = self._accounts.get(username)
        if found is None:
            return None
        if not hmac.compare_digest(found.digest, _digest(found.salt, password)):
            return None
        if found.clientid is not None and clientid != found.clientid and not (
                found.kind == "slot" and (clientid or "").startswith(found.clientid + "-")):
            return None
        return found.kind


def _matches(allowed: str, topic: str) -> bool:
    """``topic`` (a name, or a subscription filter) lies within the filter ``allowed``."""
    want, have = allowed.split("/"), topic.split("/")
    for i, level in enumerate(want):
        if level == "#":
            return True
        if i >= len(have) or have[i] == "#" or (level != "+" and level != have[i]):
            return False
        if level != "+" and have[i] == "+":
            return False
    return len(have) == len(want)


def may(kind: str | None, username: str | None, topic: str, publish: bool) -> bool:
    """The access rules of cloud/brokersec.py for one account and one topic."""
    if kind == "cloud":
        allowed = CLOUD_WRITES if publish else CLOUD_READS
        return any(_matches(a, topic) for a in allowed)
    if kind == "line":
        return _matches(LINE_TOPICS, topic)
    if kind == "slot" and username is not None:
        mine = linksec.request_topic(username) if publish else linksec.answer_topic(username)
        return topic == mine
    if kind == "device" and username is not None:
        direction = "up" if publish else "down"
        return _matches(f"{cl.PREFIX}/{username}/{direction}/#", topic)
    return False


@dataclass
class _Config:
    accounts: Any = None


class SecurityPlugin(BaseAuthPlugin, BaseTopicPlugin):
    """Authentication, topic access and the control topic, over one ``AccountTable``."""

    Config = _Config

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.accounts: AccountTable = self.config.accounts

    async def authenticate(self, *, session: Session) -> bool | None:
        kind = self.accounts.authenticate(session.username, session.password, session.client_id)
        if kind is None:
            log.info("embedded broker refused client %r (user %r)", session.client_id,
                     session.username)
            return False
        if session.will_flag and not may(kind, session.username, session.will_topic or "",
                                         publish=True):
            log.info("embedded broker refused client %r: will on %r", session.client_id,
                     session.will_topic)
            return False
        return True

    async def topic_filtering(self, *, session: Session | None = None, topic: str | None = None,
                              action: Action | None = None) -> bool | None:
        return self.allowed(session, topic, action)

    def allowed(self, session: Session | None, topic: str | None, action: Action | None) -> bool:
        if session is None or not topic:
            return False
        kind = self.accounts.kind_of(session.username)
        return may(kind, session.username, topic, publish=action is Action.PUBLISH)

    async def on_broker_message_broadcast(self, *, client_id: str, message: Any) -> None:
        """Dynamic-security commands from the cloud (only it may publish on the topic)."""
        if message is None or message.topic != ACCOUNTS_TOPIC:
            return
        replies = self._commands(bytes(message.data or b""))
        await self.context.broadcast_message(RESPONSE_TOPIC,  # type: ignore[attr-defined]
                                             json.dumps({"responses": replies}).encode(), 1)

    def _commands(self, data: bytes) -> list[dict[str, Any]]:
        try:
            commands = json.loads(data)["commands"]
            assert isinstance(commands, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            return [{"command": "Unknown command", "error": "Invalid/missing commands"}]
        return [self._command(c) for c in commands if isinstance(c, dict)]

    def _command(self, command: dict[str, Any]) -> dict[str, Any]:
        name = command.get("command")
        username, password = command.get("username"), command.get("password")
        reply: dict[str, Any] = {"command": name}
        if "correlationData" in command:
            reply["correlationData"] = command["correlationData"]
        error: str | None
        if not isinstance(username, str):
            error = "Invalid/missing username"
        elif name == "createClient" and isinstance(password, str):
            clientid = command.get("clientid")
            error = self.accounts.create(username, password,
                                         clientid if isinstance(clientid, str) else None)
        elif name == "setClientPassword" and isinstance(password, str):
            error = self.accounts.set_password(username, password)
        elif name == "deleteClient":
            error = self.accounts.delete(username)
        else:
            error = "Unknown command"
        if error is not None:
            reply["error"] = error
        return reply


class GuardedBroker(Broker):
    """amqtt's broker, authenticating a client before it can touch another's session."""

    refused = 0
    _closing = False

    async def _initialize_client_session(self, reader: Any, writer: Any, remote_address: str,
                                         remote_port: int) -> tuple[BrokerProtocolHandler, Session]:
        handler, session = await BrokerProtocolHandler.init_from_connect(
            reader, writer, self.plugins_manager)
        if not session.clean_session or not await self._authenticate(session, None):  # type: ignore[arg-type]
            self.refused += 1
            handler.attach(session, reader, writer)
            await handler.mqtt_connack_authorize(False)
            await writer.close()
            raise MQTTError(f"client {session.client_id!r} refused before touching any session")
        if session.client_id:
            # the same account again (client IDs are bound to accounts): end the old
            # connection as a takeover does, then forget its session
            old, old_handler = self._sessions.get(session.client_id, (None, None))
            if old is not None and old_handler is not None and old.transitions.is_connected():
                await old_handler.handle_connection_closed()
                await old_handler.stop()
            await self._delete_session(session.client_id)
        else:
            session.client_id = gen_client_id()
        session.parent = 0
        delay = self.config.get("timeout-disconnect-delay", 0)
        if session.keep_alive > 0 and isinstance(delay, int):
            session.keep_alive += delay
        return handler, session

    async def _cleanup_session(self, client_id: str) -> None:
        """amqtt's session monitor lists disconnected sessions, then cleans each up by
        client ID after a pass through the loop: a client that reconnected meanwhile
        under that ID lost its new session and subscriptions (an enrolment slot is
        reused within a second all the time). Only a disconnected session goes."""
        session, _ = self._sessions.get(client_id, (None, None))
        if (session is not None and session.transitions.state != "disconnected"
                and not self._closing):
            return
        await super()._cleanup_session(client_id)

    async def shutdown(self) -> None:
        self._closing = True
        await super().shutdown()

    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        """amqtt keeps one subscription per client ID and filter: a session taken over
        while its SUBSCRIBE was under way can add its own after the takeover removed
        it, and would then hide the new session's. The newest session wins."""
        topic_filter = subscription[0]
        subs = self._subscriptions.get(topic_filter)
        if subs:
            subs[:] = [(s, q) for s, q in subs if s.client_id != session.client_id or s is session]
        return int(await super().add_subscription(subscription, session))

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        """Our one rule, asked without a pass through the event loop: amqtt's broadcast
        loop walks its subscription table across this call, and a pass through the loop
        there lets another client change the table under it (RuntimeError: a message
        lost; seen at 100 DUTs in flight)."""
        plugin = next((p for p in self.plugins_manager.plugins
                       if isinstance(p, SecurityPlugin)), None)
        if plugin is None:
            return bool(await super()._topic_filtering(session, topic, action))
        return plugin.allowed(session, topic, action)


def broker_class() -> type[Broker]:
    """``GuardedBroker`` when the installed amqtt has the internals it overrides."""
    needed = ("_initialize_client_session", "_authenticate", "_delete_session",
              "_topic_filtering", "add_subscription", "_cleanup_session")
    if all(name in Broker.__dict__ for name in needed):
        return GuardedBroker
    log.warning("this amqtt lacks %s: client-ID takeover is not prevented", needed)
    return Broker


def plugins(accounts: AccountTable) -> dict[str, Any]:
    """The ``plugins`` section of the embedded broker's configuration."""
    return {f"{__name__}.SecurityPlugin": {"accounts": accounts}}
