"""The device link: one MQTT connection serving every device through the flow rules.

It subscribes once to ``imp/1/d/+/up/#``, decodes each message, lets
``DeviceRules`` answer it and publishes the answers in order (QoS 1). Bad input
never stops it: an undecodable message is logged, counted and, when its kind
expects an answer and its ``req`` can be read, answered with ``error``. A lost
broker connection is retried until the link is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass

from impfactory.cloud.errors import BrokerError
from impfactory.cloud.mqtt import AsyncMqtt
from impfactory.cloud.rules import DeviceRules
from impfactory.cloud.service import CloudService
from impfactory.protocol import cloudlink as cl

log = logging.getLogger(__name__)

REQUEST_KINDS = frozenset({"hello", "factory_token_request", "chunk_request", "bless_request"})


@dataclass
class LinkStats:
    received: int = 0
    sent: int = 0
    bad: int = 0
    failed: int = 0
    reconnects: int = 0


class CloudLink:
    """The cloud's side of every device's MQTT conversation."""

    def __init__(self, service: CloudService, url: str) -> None:
        self.service = service
        self.rules = DeviceRules(service)
        self.url = url
        self.stats = LinkStats()
        self._mqtt: AsyncMqtt | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._mqtt = AsyncMqtt(self.url, f"impcloud-{secrets.token_hex(4)}", self._receive)
        self._mqtt.subscribe(cl.CLOUD_FILTER, cl.QOS)
        await self._mqtt.connect()
        self.service.send = self.send
        self._watch = asyncio.get_running_loop().create_task(self._reconnect_forever())
        log.info("device link up on %s", self.url)

    @property
    def connected(self) -> bool:
        return self._mqtt is not None and self._mqtt.connected.is_set()

    async def stop(self) -> None:
        self.service.send = lambda msg: None
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
        """Publish one message to a device (from any thread)."""
        assert self._mqtt is not None
        topic, payload = cl.encode(msg)
        self._mqtt.publish(topic, payload, cl.QOS)
        self.stats.sent += 1

    async def _reconnect_forever(self) -> None:
        assert self._mqtt is not None
        while True:
            await self._mqtt.lost.wait()
            delay = 0.1
            while True:
                try:
                    await self._mqtt.connect()
                    self.stats.reconnects += 1
                    log.info("device link reconnected")
                    break
                except BrokerError as err:
                    log.warning("%s; retrying in %.1f s", err, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    def _receive(self, topic: str, payload: bytes) -> None:
        self.stats.received += 1
        try:
            msg = cl.decode(topic, payload)
        except cl.CloudLinkError as err:
            self.stats.bad += 1
            log.warning("bad message on %s: %s", topic[:120], cl.describe_error(err))
            self._refuse(topic, payload, err)
            return
        try:
            replies = self.rules.handle(msg)
        except Exception as err:  # a rules bug: answer, log, keep serving everyone else
            self.stats.failed += 1
            log.exception("failed on %s from %s", msg.KIND, msg.device_id)
            replies = [cl.ErrorReply(device_id=msg.device_id, req=getattr(msg, "req", None),
                                     code=cl.ErrorCode.INTERNAL, message=type(err).__name__,
                                     kind=msg.KIND)]
        for reply in replies:
            self.send(reply)

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
            value = json.loads(payload).get("req")
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
                req = value
        with contextlib.suppress(Exception):
            self.service.append_log(device_id, f"Bad {parts[5]} message refused: {err}"[:512])
        self.send(cl.ErrorReply(device_id=device_id, req=req, code=cl.ErrorCode.BAD_REQUEST,
                                message=str(err)[:1024], kind=parts[5]))
