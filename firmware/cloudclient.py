"""The device's link to impCloud: cloud-link messages over MQTT (aiomqtt).

One MQTT connection per device, all on the caller's asyncio loop (no threads).
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
order of arrival; image chunks go to the fetch waiting for them
(firmware/images.py) as soon as they are read, ahead of that queue: a chunk
only ever answers a ``chunk_request``, sent after its offer was handled.
Network waits use the loop's time: they belong to the network, not to the
emulated device's clock.

A lost link is noticed at once by everything in flight: aiomqtt wakes the
message reader on a disconnect but leaves a QoS 1 publish waiting for its
PUBACK until its own timeout. So each session has a ``gone`` future, set by the
reader when the link dies, and every publish races it: a request in flight when
the network drops fails within milliseconds, not after ``REQUEST_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import socket
import threading
from collections.abc import Callable
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from impfactory.firmware.errors import CloudClientError
from impfactory.protocol import cloudlink as cl
from impfactory.protocol import linksec

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 15.0
CLOSE_TIMEOUT = 5.0


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


def _tune(client: aiomqtt.Client, chunk_topic: str,
          on_chunk: Callable[[Any, Any, Any], None]) -> None:
    """Two short cuts through aiomqtt for the one message that comes by the thousand.

    * Image blocks skip aiomqtt's message queue: paho hands a message on
      ``chunk_topic`` to ``on_chunk`` as it reads it (on this loop), for a fraction
      of what a queued message costs (a task and an ``asyncio.wait`` each);
      everything else keeps its order in the queue.
    * Once connected, paho's "something to write" (the PUBACK of every block) is
      written on the loop's next turn (``call_soon``), the socket's writer registered
      only when the socket cannot take it all; aiomqtt hops through
      ``call_soon_threadsafe`` to register the writer every time (its connect runs in
      a worker thread), two self-pipe wake-ups per block. Off the loop's thread
      (that connect) its own way is kept.

    Both reach into aiomqtt's paho client (``_client``, as ``sever`` does); paho's
    callbacks themselves are public API.
    """
    paho = client._client
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    queued_message = paho.on_message
    threadsafe_register = paho.on_socket_register_write
    if queued_message is None or threadsafe_register is None:
        return  # an aiomqtt that does not work through these callbacks: used as it is

    def on_message(c: Any, userdata: Any, message: Any) -> None:
        if message.topic == chunk_topic:
            on_chunk(c, userdata, message)
        else:
            queued_message(c, userdata, message)

    def write() -> None:
        try:
            paho.loop_write()
        except Exception as exc:  # a broken pipe: the session is over (as aiomqtt does)
            gone = getattr(client, "_disconnected", None)
            if isinstance(gone, asyncio.Future) and not gone.done():
                gone.set_exception(exc)

    def write_soon(sock: Any) -> None:
        write()
        # the socket took part of it: write the rest when it can (unless the session
        # ended meanwhile: its descriptor may be another socket's by now)
        current = paho.socket()
        if current is not None and current is sock and paho.want_write():
            loop.add_writer(current.fileno(), write)

    def register_write(c: Any, userdata: Any, sock: Any) -> None:
        if threading.get_ident() == loop_thread:
            # on the next turn of the loop, not through the selector: a 4-byte PUBACK
            # almost always fits the socket, and adding then removing the writer was
            # two epoll_ctl calls and two selector keys per block
            loop.call_soon(write_soon, sock)
        else:
            threadsafe_register(c, userdata, sock)

    paho.on_message = on_message
    paho.on_socket_register_write = register_write


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
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[cl.Message]] = {}
        self._chunk_sinks: dict[str, Callable[[cl.Chunk | None], Any]] = {}
        self._req = itertools.count(1)
        self._closing = False
        self._gone: asyncio.Future[None] | None = None
        self._chunk_topic = cl.topic(device_id, cl.Direction.DOWN, cl.Chunk.KIND)

    async def connect(self) -> None:
        """Open the MQTT session and subscribe; ``OSError`` when the broker is not there."""
        will_topic, will_payload = cl.encode(cl.Bye(self.device_id, reason="lost"))
        client = aiomqtt.Client(
            self.host, self.port, identifier=self.device_id,
            username=self.device_id if self.password is not None else None,
            password=self.password,
            will=aiomqtt.Will(will_topic, will_payload, qos=cl.QOS),
            keepalive=30, timeout=self.timeout, clean_session=True,
            # Small request/answer packets: Nagle plus delayed ACK would add ~40 ms each.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        _tune(client, self._chunk_topic, self._on_chunk)
        try:
            await client.__aenter__()
        except MqttConnectError as err:
            raise BrokerRefused(f"the broker at {self.host}:{self.port} refused account "
                                f"{self.device_id}: {err}") from err
        except aiomqtt.MqttError as err:
            raise OSError(f"MQTT connect to {self.host}:{self.port} failed: {err}") from err
        self._client = client
        self._closing = False
        self._gone = asyncio.get_running_loop().create_future()
        try:
            await client.subscribe(cl.device_filter(self.device_id), qos=cl.QOS)
        except aiomqtt.MqttError as err:
            await self._drop_client()
            raise OSError(f"MQTT subscribe failed: {err}") from err
        self.connected = True
        self._reader = asyncio.get_running_loop().create_task(self._read(client))

    async def close(self, reason: str = "disconnect") -> None:
        """Say goodbye and close the session (quietly if the link is already gone)."""
        self._closing = True
        if self.connected:
            with contextlib.suppress(aiomqtt.MqttError, CloudClientError, TimeoutError):
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
        client, gone = self._client, self._gone
        if client is None or gone is None or gone.done():
            raise CloudClientError("not connected to the cloud")
        publish = asyncio.ensure_future(client.publish(topic, payload, qos=cl.QOS))
        try:
            # asyncio.wait: our own cancellation propagates (and cancels the publish below)
            await asyncio.wait({publish, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not publish.done():
                publish.cancel()
                await asyncio.wait({publish})
        if publish.cancelled():
            raise CloudClientError(f"link lost while sending {what}")
        err = publish.exception()
        if isinstance(err, aiomqtt.MqttError):
            raise CloudClientError(f"publish failed: {err}") from err
        if err is not None:
            raise err

    @property
    def waiting(self) -> bool:
        """Whether a request of ours waits for its answer."""
        return bool(self._pending)

    async def request(self, msg: cl.Message, timeout: float = REQUEST_TIMEOUT,
                      resend_every: float | None = None) -> cl.Message:
        """Send a request carrying ``req`` and wait for its answer.

        ``resend_every``: send it again (same ``req``) when that many seconds pass
        without an answer, until ``timeout``: for a request that may be lost
        before anyone listens for it (a hello just after a broker restart, before
        the cloud is back on it) and that the cloud may safely see twice."""
        req = getattr(msg, "req", None)
        if not isinstance(req, int):
            raise CloudClientError(f"{msg.KIND} is not a request")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[cl.Message] = loop.create_future()
        self._pending[req] = future
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
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: a send that failed first already said why
            future.cancel()
        if isinstance(reply, cl.ErrorReply):
            raise CloudRefused(reply)
        return reply

    def sever(self) -> None:
        """Cut the connection as a network failure would: no DISCONNECT, so the will fires."""
        client = self._client
        sock = client._client.socket() if client is not None else None
        shutdown = getattr(sock, "shutdown", None)
        if shutdown is not None:
            with contextlib.suppress(OSError):
                shutdown(socket.SHUT_RDWR)

    def sink_chunks(self, sha: str, sink: Callable[[cl.Chunk | None], Any] | None) -> None:
        """Route chunks of image ``sha`` to ``sink`` (None stops routing).

        When the link is lost every sink is called with ``None``.
        """
        if sink is None:
            self._chunk_sinks.pop(sha, None)
        else:
            self._chunk_sinks[sha] = sink

    async def _read(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                self._receive(message)
                # An idle device waits here for months: holding the last message (a
                # code chunk, its paho packet) would cost every device ~13 KiB.
                del message
        except aiomqtt.MqttError:
            pass
        self._mark_gone()
        if not self._closing:
            self.connected = False
            self._fail_pending(CloudClientError("link lost"))
            for sink in list(self._chunk_sinks.values()):
                sink(None)
            await self._drop_client()
            self.on_lost()

    def _on_chunk(self, paho: Any, userdata: Any, message: Any) -> None:
        """One block of an image, straight from paho's reader (never raises into it).

        Only the cloud may publish on this device's ``down`` topics (the broker's ACL)
        and the topic is this device's own, so what arrives here is the cloud's;
        chunks are not sealed (one encoding serves every device) but each names the
        SHA-256 of its bytes, and the sealed offer names the image (its block list,
        or its SHA-256)."""
        try:
            msg = cl.decode_chunk(self.device_id, bytes(message.payload))
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

    def _receive(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if not isinstance(payload, (bytes, bytearray)):
            self.bad_messages += 1
            return
        topic = str(message.topic)
        try:
            msg = cl.decode(topic, self._unseal(topic, bytes(payload)))
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
            return
        self.on_message(msg)

    def _mark_gone(self) -> None:
        """Wake every publish still waiting for its PUBACK: this session is over."""
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)

    def _fail_pending(self, err: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(err)
        self._pending.clear()

    async def _drop_client(self) -> None:
        self._mark_gone()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.__aexit__(None, None, None), CLOSE_TIMEOUT)
