"""The device link: one MQTT connection serving every device through the flow rules.

It logs in as the cloud (credentials from the broker URL or from the broker this
process started, cloud/brokersec.py), subscribes once to ``imp/1/d/+/up/#`` and to
the enrolment slots' requests, decodes each message, lets ``DeviceRules`` answer
it and publishes the answers in order (QoS 1), each sealed with the device's link
key for its current session (protocol/linksec.py); registrations go to the
``Registrar``. The broker lets only the device itself publish on its ``up``
topics, so the device ID in a topic is who sent the message; nothing in a payload
names a device. Bad input never stops it: an undecodable message is logged,
counted and, when its kind expects an answer and its ``req`` can be read, answered
with ``error``. A lost broker connection is retried until the link is closed.

Several clouds on one store (docs/scale.md) subscribe as one shared-subscription
group (``share``): the broker gives each device message to one of them. Then
nothing about a device is remembered between messages (its link key and session
are read from the store each time, as another cloud may have changed them), and
agent events go to the group's one cloud that runs agents (cloud/agent_relay.py).

Bounds: a device may send ``MESSAGE_RATE`` messages a second, in bursts of
``MESSAGE_BURST`` (a token bucket per device ID, cloud/ratelimit.py, checked
before anything is decoded). What a device sends over that is dropped unread and
counted (``LinkStats.flooded``), and told in one line of the cloud's log and one
of the device's (at most once a minute), so a flood costs the cloud a dict
lookup per message and costs other devices nothing. A payload over the link's
limits (``cloudlink.MAX_PAYLOAD``) is refused unparsed, and the broker drops the
connection of a client that sends a packet over ``broker.MAX_PACKET``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from impfactory.backoff import Backoff
from impfactory.brokerurl import safe_url
from impfactory.cloud import agent_relay
from impfactory.cloud.agent_relay import AgentRelay
from impfactory.cloud.brokeradmin import BrokerAdmin
from impfactory.cloud.brokersec import CLOUD_USER, BrokerAccess
from impfactory.cloud.errors import BrokerError
from impfactory.cloud.mqtt import AsyncMqtt
from impfactory.cloud.ratelimit import Buckets
from impfactory.cloud.registrar import Registrar
from impfactory.cloud.rules import DeviceRules
from impfactory.cloud.service import NO_AGENTS, CloudService
from impfactory.protocol import cloudlink as cl
from impfactory.protocol import linksec

log = logging.getLogger(__name__)

RECONNECT_BACKOFF = Backoff(first=0.1, cap=1.0, jitter=0.5)
"""The cloud's own link to a broker that went away: soon, then every second at most,
since every device waits for the cloud to be back on a restarted broker, and the
cloud is one client."""

_SESSION = re.compile(r"[0-9a-f]{32}\Z")
_GROUP = re.compile(r"[a-z0-9_-]{1,32}\Z")
REQUEST_KINDS = frozenset({"hello", "factory_token_request", "chunk_request", "bless_request"})
MESSAGE_RATE = 100.0
"""Messages a second one device may send once its burst is spent (wall time: what
the cloud spends on them)."""
MESSAGE_BURST = 1000
"""Messages one device may send at once (a boot's logs, a test run's lines)."""
FLOOD_TOLD_S = 60.0
"""A flooding device's drops are told (cloud log, device log) once in this many seconds."""
_DEVICE_AT = len(cl.PREFIX) + 1  # where the device ID starts in an ``up`` topic


@dataclass
class LinkStats:
    received: int = 0
    sent: int = 0
    bad: int = 0
    failed: int = 0
    reconnects: int = 0
    unsealed: int = 0  # messages for a device that never registered: not sent
    flooded: int = 0  # messages dropped unread: their device was over its rate


class CloudLink:
    """The cloud's side of every device's MQTT conversation."""

    def __init__(self, service: CloudService, url: str, *,
                 module_secret: bytes | None = None, share: str | None = None,
                 runs_agents: bool = True, message_rate: float = MESSAGE_RATE,
                 message_burst: int = MESSAGE_BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``share``: serve devices through the MQTT shared subscription group
        ``$share/{share}/…``, so several clouds on one store split their traffic; then
        the one that ``runs_agents`` hears the others' agent events, which they relay
        (cloud/agent_relay.py)."""
        if share is not None and not _GROUP.match(share):
            raise BrokerError(f"shared subscription group {share[:40]!r}: 1-32 of a-z, 0-9, "
                              "'-', '_'")
        self.share = share
        self.runs_agents = runs_agents
        self._relay: AgentRelay | None = None
        self.service = service
        self.rules = DeviceRules(service)
        self.access = BrokerAccess.from_url(url)
        self.url = self.access.url
        self.stats = LinkStats()
        self.admin: BrokerAdmin | None = None
        if self.access.secured:
            self.admin = BrokerAdmin(self.access, self._publish)
        self.registrar = Registrar(service.save_link, self.admin, self._answer_registration,
                                   secret=module_secret)
        self._links: dict[str, tuple[bytes, str | None]] = {}
        self._clock = clock
        self._flood = Buckets(message_rate, message_burst, clock)
        self._flood_told: dict[str, float] = {}  # device ID -> when its flood was last told
        self._mqtt: AsyncMqtt | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        access = self.access
        # On a secured broker the cloud's session is kept under its account's name
        # (which only its account may use): what devices send while the cloud is
        # down (crashed, restarting) waits in the broker and is handed to the cloud
        # that logs in next, so a crash loses no request. On an open broker a random
        # client ID: nobody can guess it to take the session over.
        keep = access.secured and access.keeps_sessions
        self._mqtt = self._connection(keep)
        if self.admin is None:
            log.warning("broker %s is open (no cloud credentials): devices get no accounts "
                        "of their own and anyone may use their topics", self.url)
        try:
            await self._mqtt.connect()
        except BrokerError:
            if not keep:
                raise
            # a broker that keeps no sessions (an embedded broker in another process)
            # refuses a persistent one: the cloud then does without
            log.warning("broker %s refused a kept session: connecting without one",
                        safe_url(self.url))
            self._mqtt = self._connection(False)
            await self._mqtt.connect()
        self.service.send = self.send
        if self.share is not None and not self.runs_agents:
            self._relay = self.service.agents = AgentRelay(self._publish, self.share)
        self._watch = asyncio.get_running_loop().create_task(self._reconnect_forever())
        log.info("device link up on %s", safe_url(self.url))

    def _shared(self, topic_filter: str) -> str:
        """A device-facing filter, shared with the group's other clouds when sharing:
        the broker gives each message to one member (round robin on Mosquitto)."""
        return topic_filter if self.share is None else f"$share/{self.share}/{topic_filter}"

    def _connection(self, keep_session: bool) -> AsyncMqtt:
        access = self.access
        client_id = access.username if access.secured else f"impcloud-{secrets.token_hex(16)}"
        mqtt = AsyncMqtt(self.url, client_id or CLOUD_USER, self._receive,
                         username=access.username, password=access.password,
                         keep_session=keep_session)
        mqtt.subscribe(self._shared(cl.CLOUD_FILTER), cl.QOS)
        mqtt.subscribe(self._shared(linksec.ENROL_REQUEST_FILTER), cl.QOS)
        if self.share is not None and self.runs_agents:
            mqtt.subscribe(agent_relay.topic(self.share), cl.QOS)
        if self.admin is not None:
            mqtt.subscribe(self.admin.response_topic, cl.QOS)
        return mqtt

    @property
    def connected(self) -> bool:
        return self._mqtt is not None and self._mqtt.connected.is_set()

    @property
    def lease_holder(self) -> str | None:
        """A name only this process has while it runs: the broker account it connects
        with (its client ID, which the broker gives one connection at a time; each
        cloud process has an account of its own). None on an open broker."""
        return self.access.username if self.access.secured else None

    async def stop(self) -> None:
        self.service.send = lambda msg: None
        if self._relay is not None and self.service.agents is self._relay:
            self.service.agents = NO_AGENTS
        await self.registrar.stop()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._mqtt is not None:
            await self._mqtt.disconnect()

    async def __aenter__(self) -> CloudLink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def send(self, msg: cl.Message) -> None:
        """Seal and publish one message to a device (from any thread)."""
        mqtt = self._mqtt
        assert mqtt is not None
        if not mqtt.on_loop():  # sealing may read the database: only on the loop's thread
            mqtt.call_on_loop(self.send, msg)
            return
        if isinstance(msg, cl.Chunk):  # checked by SHA-256, not sealed: one encoding for all
            topic, payload = self.service.images.encoded(msg)
        else:
            topic, payload = cl.encode(msg)
            link = self._link(msg.device_id)
            if link is None:
                self.stats.unsealed += 1
                log.debug("not sent to %s (never registered): %s", msg.device_id, msg.KIND)
                return
            key, session = link
            payload = linksec.seal(key, session or "", topic, payload)
        mqtt.publish(topic, payload, cl.QOS)
        self.stats.sent += 1

    def _publish(self, topic: str, payload: bytes) -> None:
        assert self._mqtt is not None
        self._mqtt.publish(topic, payload, cl.QOS)

    def _answer_registration(self, answer: linksec.RegisterAnswer, device_id: str) -> None:
        self._links.pop(device_id, None)  # a new link key, and no session yet
        self._publish(*linksec.encode_answer(answer))

    def _link(self, device_id: str) -> tuple[bytes, str | None] | None:
        if self.share is not None:
            # another cloud of the group may have opened a newer session or registered
            # a new key since: the store is the only truth
            return self.service.link_of(device_id)
        link = self._links.get(device_id)
        if link is None:
            link = self.service.link_of(device_id)
            if link is not None:
                self._links[device_id] = link
        return link

    def _new_session(self, device_id: str, session: str | None) -> None:
        """A hello opens a session: everything after it is sealed for that session."""
        link = self._link(device_id)
        if link is None:
            self._links.pop(device_id, None)
            return
        if link[1] != session:
            self.service.set_link_session(device_id, session)
        if self.share is None:
            self._links[device_id] = (link[0], session)

    async def _reconnect_forever(self) -> None:
        assert self._mqtt is not None
        while True:
            await self._mqtt.lost.wait()
            failures = 0
            while True:
                try:
                    await self._mqtt.connect()
                    self.stats.reconnects += 1
                    log.info("device link reconnected")
                    break
                except BrokerError as err:
                    if self.admin is not None:
                        self.admin.fail_all(err)
                    failures += 1
                    delay = RECONNECT_BACKOFF.delay(failures)
                    log.warning("%s; retrying in %.2f s", err, delay)
                    await asyncio.sleep(delay)

    def _receive(self, topic: str, payload: bytes) -> None:
        if topic.startswith(linksec.ENROL_PREFIX):
            self.registrar.receive(topic, payload)
            return
        if self.share is not None and topic.startswith(agent_relay.PREFIX):
            if self.runs_agents:
                agent_relay.replay(self.service.agents, payload)
            return
        if self.admin is not None and topic == self.admin.response_topic:
            self.admin.on_response(payload)
            return
        self.stats.received += 1
        device_id = topic[_DEVICE_AT:topic.find("/", _DEVICE_AT)]
        if not self._flood.take(device_id):
            self._dropped(device_id)
            return
        try:
            msg = cl.decode(topic, payload)
        except cl.CloudLinkError as err:
            self.stats.bad += 1
            log.warning("bad message on %s: %s", topic[:120], cl.describe_error(err))
            self._refuse(topic, payload, err)
            return
        try:
            if isinstance(msg, cl.Hello):
                self._new_session(msg.device_id, msg.session)
            replies = self.rules.handle(msg)
        except Exception as err:  # a rules bug: answer, log, keep serving everyone else
            self.stats.failed += 1
            log.exception("failed on %s from %s", msg.KIND, msg.device_id)
            replies = [cl.ErrorReply(device_id=msg.device_id, req=getattr(msg, "req", None),
                                     code=cl.ErrorCode.INTERNAL, message=type(err).__name__,
                                     kind=msg.KIND)]
        for reply in replies:
            self.send(reply)

    def _dropped(self, device_id: str) -> None:
        """Count a message dropped for its device's rate; say so once per ``FLOOD_TOLD_S``."""
        self.stats.flooded += 1
        now = self._clock()
        if now - self._flood_told.get(device_id, -math.inf) < FLOOD_TOLD_S:
            return
        self._flood_told[device_id] = now
        rate = self._flood.rate
        log.warning("device %s is flooding: messages over %g a second dropped",
                    device_id[:40], rate)
        with contextlib.suppress(Exception):  # not a known device: nothing to log to
            self.service.append_log(device_id, f"Messages over {rate:g} a second dropped "
                                    "(this device is flooding the cloud)")

    def _refuse(self, topic: str, payload: bytes, err: cl.CloudLinkError) -> None:
        """Answer an undecodable request with ``error`` when we can tell who and which."""
        parts = topic.split("/")
        if len(parts) != 6 or parts[4] != "up" or parts[5] not in REQUEST_KINDS:
            return
        device_id = parts[3]
        try:
            cl.parse_topic(f"{cl.PREFIX}/{device_id}/up/log")
        except cl.CloudLinkError:
            return
        req = None
        with contextlib.suppress(Exception):
            if isinstance(err, cl.PayloadTooLargeError):
                raise ValueError("oversized payloads are never parsed")
            obj = json.loads(payload)
            value = obj.get("req")
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
                req = value
            session = obj.get("session")
            if parts[5] == cl.Hello.KIND and isinstance(session, str) and _SESSION.match(session):
                # a malformed hello still opens its session (only the device can publish
                # on its topics), so the device can read why it was refused
                self._new_session(device_id, session)
        with contextlib.suppress(Exception):
            self.service.append_log(device_id, f"Bad {parts[5]} message refused: {err}"[:512])
        self.send(cl.ErrorReply(device_id=device_id, req=req, code=cl.ErrorCode.BAD_REQUEST,
                                message=str(err)[:1024], kind=parts[5]))
