"""The device's link to impCloud: cloud-link messages over MQTT.

One MQTT connection per device, all on the caller's asyncio loop, no threads: a
small MQTT 3.1.1 protocol of its own (impfactory/mqttconn.py), since per message
aiomqtt over paho cost more than the rest of the device's link (docs/line.md).
The device logs in with its own broker account (its device ID, the password it
registered: firmware/registration.py), subscribes to its own ``down`` topics,
publishes ``up`` messages with QoS 1, and names a ``bye`` as its last will so the
cloud learns of a lost link.

Every connection opens a session: a fresh nonce that the ``hello`` carries. The
cloud seals each message but chunks with the device's link key for that session
(protocol/linksec.py); a message whose seal does not check (anyone else's, or an
earlier session's) never reaches the device: ``on_ignored`` hears of it instead.

Requests (hello, factory token, bless) carry a ``req`` number; ``request`` waits
for the answer with the same number (or an ``error`` reply, raised as
``CloudRefused``). Everything else the cloud sends goes to ``on_message`` in
order of arrival, as it is read; image chunks go to the fetch waiting for
them (firmware/images.py): a chunk only ever answers a ``chunk_request``, sent
after its offer was handled.
Network waits use the loop's time: they belong to the network, not to the
emulated device's clock.

A lost link is noticed at once by everything in flight: the connection ends
every publish still waiting for its PUBACK as it closes (impfactory/mqttconn.py),
and the session's reader fails the requests waiting for answers: a request in
flight when the network drops fails within milliseconds, not after
``REQUEST_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Callable
from typing import Any

from impfactory import mqttconn
from impfactory.firmware.errors import CloudClientError
from impfactory.protocol import cloudlink as cl
from impfactory.protocol import linksec

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 15.0
CLOSE_TIMEOUT = 5.0


def _time_out(ack: asyncio.Future[bytes]) -> None:
    if not ack.done():
        ack.set_exception(TimeoutError())


class CloudRefused(CloudClientError):
    """The cloud answered a request with an ``error`` reply."""

    def __init__(self, reply: cl.ErrorReply) -> None:
        super().__init__(f"cloud refused: {reply.code.value}: {reply.message}")
        self.reply = reply
        self.code = reply.code


class BrokerRefused(CloudClientError):
    """The broker refused the device's account (unknown, or another password)."""


class StaleLinkKey(CloudClientError):
    """The cloud's answers are sealed with a link key other than the device's."""


class CloudClient:
    """One device's MQTT session with the cloud."""

    def __init__(self, device_id: str, host: str, port: int,
                 on_message: Callable[[cl.Message], Any],
                 on_lost: Callable[[], Any], *, password: str | None = None,
                 link_key: bytes = b"",
                 on_ignored: Callable[[str, str], Any] | None = None,
                 timeout: float = REQUEST_TIMEOUT) -> None:
        self.device_id = device_id
        self.host, self.port = host, port
        self.on_message = on_message
        self.on_lost = on_lost
        self.on_ignored = on_ignored or (lambda topic, why: None)
        self.password = password
        self.link_key = link_key
        self.timeout = timeout
        self.session = secrets.token_hex(16)
        self.connected = False
        self.bad_messages = 0
        self.ignored = 0
        self._client: mqttconn.MqttConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[cl.Message]] = {}
        self._chunk_sinks: dict[str, Callable[[cl.Chunk | None], Any]] = {}
        self._req = itertools.count(1)
        self._closing = False
        self._holding: set[int] = set()
        """Requests whose answer starts holding what follows (``request(hold=True)``)."""
        self._held: list[cl.Message] | None = None
        """What came after such an answer, until ``release`` (None: nothing held)."""
        self._chunk_topic = cl.topic(device_id, cl.Direction.DOWN, cl.Chunk.KIND)

    async def connect(self) -> None:
        """Open the MQTT session and subscribe; ``OSError`` when the broker is not there."""
        will_topic, will_payload = cl.encode(cl.Bye(self.device_id, reason="lost"))
        try:
            conn = await mqttconn.open_connection(
                self.host, self.port, client_id=self.device_id,
                on_message=self._on_mqtt_message,
                username=self.device_id if self.password is not None else None,
                password=self.password, will=(will_topic, will_payload, cl.QOS),
                keepalive=30, timeout=self.timeout)
        except mqttconn.MqttRefused as err:
            raise BrokerRefused(f"the broker at {self.host}:{self.port} refused account "
                                f"{self.device_id}: {err}") from err
        except OSError as err:
            raise OSError(f"MQTT connect to {self.host}:{self.port} failed: {err}") from err
        self._client = conn
        self._closing = False
        try:
            async with asyncio.timeout(self.timeout):
                await conn.subscribe(cl.device_filter(self.device_id), qos=cl.QOS)
        except (OSError, TimeoutError) as err:
            await self._drop_client()
            raise OSError(f"MQTT subscribe failed: {err}") from err
        self.connected = True
        self._reader = asyncio.get_running_loop().create_task(self._read(conn))

    async def close(self, reason: str = "disconnect") -> None:
        """Say goodbye and close the session (quietly if the link is already gone)."""
        self._closing = True
        if self.connected:
            with contextlib.suppress(CloudClientError, TimeoutError):
                await asyncio.wait_for(self.send(cl.Bye(self.device_id, reason=reason)),
                                       CLOSE_TIMEOUT)
        self.connected = False
        if self._reader is not None:
            self._reader.cancel()
            # asyncio.wait: our own cancellation still propagates; the reader's doesn't.
            await asyncio.wait({self._reader})
            self._reader = None
        await self._drop_client()
        self._fail_pending(CloudClientError("link closed"))

    def next_req(self) -> int:
        return next(self._req)

    async def send(self, msg: cl.Message) -> None:
        """Publish one message (QoS 1); ``CloudClientError`` as soon as the link is lost."""
        topic, payload = cl.encode(msg)
        await self.publish(topic, payload, msg.KIND)

    async def publish(self, topic: str, payload: bytes, what: str = "a message") -> None:
        """Publish any bytes on any topic (QoS 1): ``send`` encodes first; test doubles
        publish what no encoder would make."""
        client = self._client
        if client is None or client.closed.done():
            raise CloudClientError("not connected to the cloud")
        try:
            ack = client.publish(topic, payload, cl.QOS)
        except OSError as err:
            raise CloudClientError(f"publish failed: {err}") from err
        assert ack is not None  # QoS 1
        timer = asyncio.get_running_loop().call_later(self.timeout, _time_out, ack)
        try:
            await ack  # cancelled with us: the message may still go, unwaited
        except TimeoutError:
            raise CloudClientError(f"publish failed: no PUBACK within {self.timeout:g} s"
                                   ) from None
        except OSError:  # the connection ended first
            raise CloudClientError(f"link lost while sending {what}") from None
        finally:
            timer.cancel()

    @property
    def waiting(self) -> bool:
        """Whether a request of ours waits for its answer."""
        return bool(self._pending)

    async def request(self, msg: cl.Message, timeout: float = REQUEST_TIMEOUT,
                      resend_every: float | None = None, hold: bool = False) -> cl.Message:
        """Send a request carrying ``req`` and wait for its answer.

        ``resend_every``: send it again (same ``req``) when that many seconds pass
        without an answer, until ``timeout``: for a request that may be lost
        before anyone listens for it (a hello just after a broker restart, before
        the cloud is back on it) and that the cloud may safely see twice.

        ``hold``: what the cloud sends after the answer waits for ``release``
        (a hello's welcome is followed at once by the assignment and offers, which
        the device can act on only once it has taken the session as its link:
        messages reach ``on_message`` as they are read, ahead of the requester)."""
        req = getattr(msg, "req", None)
        if not isinstance(req, int):
            raise CloudClientError(f"{msg.KIND} is not a request")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[cl.Message] = loop.create_future()
        self._pending[req] = future
        if hold:
            self._holding.add(req)
        deadline = loop.time() + timeout
        try:
            while True:
                await self.send(msg)
                left = deadline - loop.time()
                wait = left if resend_every is None else min(left, resend_every)
                try:
                    reply = await asyncio.wait_for(asyncio.shield(future), max(0.0, wait))
                    break
                except TimeoutError:
                    if loop.time() >= deadline:
                        raise
        except TimeoutError as err:
            raise CloudClientError(f"no answer to {msg.KIND} within {timeout} s") from err
        finally:
            self._pending.pop(req, None)
            self._holding.discard(req)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: a send that failed first already said why
            future.cancel()
        if isinstance(reply, cl.ErrorReply):
            raise CloudRefused(reply)
        return reply

    def sever(self) -> None:
        """Cut the connection as a network failure would: no DISCONNECT, so the will fires."""
        if self._client is not None:
            self._client.abort()

    def sink_chunks(self, sha: str, sink: Callable[[cl.Chunk | None], Any] | None) -> None:
        """Route chunks of image ``sha`` to ``sink`` (None stops routing).

        When the link is lost every sink is called with ``None``.
        """
        if sink is None:
            self._chunk_sinks.pop(sha, None)
        else:
            self._chunk_sinks[sha] = sink

    async def _read(self, conn: mqttconn.MqttConnection) -> None:
        """Wait for the session to end (its messages come to ``_on_mqtt_message``)."""
        await asyncio.wait({conn.closed})
        if not self._closing:
            self.connected = False
            self._fail_pending(CloudClientError("link lost"))
            for sink in list(self._chunk_sinks.values()):
                sink(None)
            await self._drop_client()
            self.on_lost()

    def _on_mqtt_message(self, topic: str, payload: bytes) -> None:
        """A message as the connection read it, on this loop (never raises into it)."""
        if topic == self._chunk_topic:
            self._on_chunk(payload)
            return
        try:
            self._receive(topic, payload)
        except Exception:  # the device's bug must not take the MQTT reader down
            log.exception("device %s failed on a message", self.device_id)

    def _on_chunk(self, payload: bytes) -> None:
        """One block of an image, straight from the reader (never raises into it).

        Only the cloud may publish on this device's ``down`` topics (the broker's ACL)
        and the topic is this device's own, so what arrives here is the cloud's;
        chunks are not sealed (one encoding serves every device) but each names the
        SHA-256 of its bytes, and the sealed offer names the image (its block list,
        or its SHA-256)."""
        try:
            msg = cl.decode_chunk(self.device_id, payload)
        except cl.CloudLinkError as err:
            self.bad_messages += 1
            log.warning("device %s dropped a bad chunk: %s", self.device_id, err)
            return
        if self._closing:
            return
        try:
            self._dispatch(msg)
        except Exception:  # a sink's bug must not take the MQTT reader down
            log.exception("device %s failed on a chunk", self.device_id)

    def _receive(self, topic: str, payload: bytes) -> None:
        try:
            msg = cl.decode(topic, self._unseal(topic, payload))
        except linksec.SealError as err:
            self.ignored += 1
            self.on_ignored(topic, str(err))
            return
        except cl.CloudLinkError as err:
            self.bad_messages += 1
            log.warning("device %s dropped a bad message: %s", self.device_id, err)
            return
        if msg.device_id != self.device_id:  # not ours, whatever the broker did
            self.ignored += 1
            self.on_ignored(topic, "addressed to another device")
            return
        self._dispatch(msg)

    def _unseal(self, topic: str, payload: bytes) -> bytes:
        """The payload of a sealed message for this session (chunks are not sealed)."""
        if topic.endswith("/down/" + cl.Chunk.KIND):
            return payload
        return linksec.unseal(self.link_key, self.session, topic, payload)

    def _dispatch(self, msg: cl.Message) -> None:
        if isinstance(msg, cl.Chunk):
            sink = self._chunk_sinks.get(msg.sha)
            if sink is not None:
                sink(msg)
            return
        req = getattr(msg, "req", None)
        if isinstance(req, int) and req in self._pending and not isinstance(
            msg, (cl.Assignment, cl.ConfigParams)
        ):
            future = self._pending[req]
            if not future.done():
                future.set_result(msg)
                if req in self._holding and self._held is None:
                    self._held = []
            return
        if self._held is not None:
            self._held.append(msg)
            return
        self.on_message(msg)

    def release(self) -> None:
        """Hand ``on_message`` what a ``request(hold=True)`` answer held, in order, and
        stop holding."""
        held, self._held = self._held, None
        for msg in held or ():
            self.on_message(msg)

    def _fail_pending(self, err: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(err)
        self._pending.clear()

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
