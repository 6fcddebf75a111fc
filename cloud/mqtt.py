"""The cloud's MQTT connection: the project's own client on the asyncio loop.

``publish`` only queues (order kept, QoS 1 resent until acknowledged, across a
reconnect too), so a handler answering a device can publish several messages without
waiting for each PUBACK. That is what lets one cloud process serve thousands of
devices. The wire work is impfactory/mqttconn.py's, as for every device: one read
parses every packet the kernel had and what a loop iteration publishes leaves in one
``send``. It was paho-mqtt driven by the loop, which read a
packet in several ``recv`` calls and built MQTT 5 properties for every message; the
cloud spent about 15 % of its CPU in it (``perf cloud``, docs/cloud.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

from impfactory.brokerurl import BrokerUrlError, parse_url
from impfactory.cloud.errors import BrokerError
from impfactory.mqttconn import MqttConnection, MqttError, MqttRefused, open_connection

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
"""Seconds for the CONNACK, and again for the SUBACKs. A broker answers in milliseconds;
one that took the TCP connection and says nothing (a broker stopping) is left for the
next try of the link's reconnect loop, not waited on for 10 s as paho's connect was."""
KEEPALIVE = 30

_Message = tuple[str, bytes, int]


class AsyncMqtt:
    """One MQTT connection whose I/O runs on the current asyncio loop."""

    def __init__(self, url: str, client_id: str,
                 on_message: Callable[[str, bytes], None], *,
                 username: str | None = None, password: str | None = None,
                 keep_session: bool = False) -> None:
        """``keep_session``: a persistent session (``clean_session`` false), so the
        broker queues what arrives for this client ID while it is away (a crashed
        cloud's requests) and hands it over on the next connect; ``disconnect``
        unsubscribes first, so a client that stops on purpose leaves nothing to queue."""
        self.keep_session = keep_session
        try:
            self.host, self.port = parse_url(url)
        except BrokerUrlError as err:
            raise BrokerError(str(err)) from None
        self.client_id, self.username, self.password = client_id, username, password
        self.on_message = on_message
        self.subscriptions: list[tuple[str, int]] = []
        self.connected = asyncio.Event()
        self.lost = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._conn: MqttConnection | None = None
        self._queued: deque[_Message] = deque()  # published while no connection was up
        self._unacked: dict[asyncio.Future[bytes], _Message] = {}  # sent, no PUBACK yet

    async def connect(self) -> None:
        """Connect, subscribe to everything ``subscribe`` was given, then send what
        waited: the messages the last connection sent without an answer, then those
        published since, in order."""
        self.connected.clear()
        self.lost.clear()
        where = f"mqtt://{self.host}:{self.port}"
        try:
            conn = await open_connection(
                self.host, self.port, client_id=self.client_id, on_message=self._deliver,
                username=self.username, password=self.password, keepalive=KEEPALIVE,
                clean_session=not self.keep_session, timeout=CONNECT_TIMEOUT)
        except MqttRefused as err:
            log.error("broker refused the connection: %s", err)
            raise BrokerError(f"{where} refused the connection: {err}") from None
        except (OSError, TimeoutError) as err:
            raise BrokerError(f"cannot connect to {where}: {err}") from err
        sock = conn.socket()
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        try:
            # "connected" only once the broker has acknowledged every subscription, so
            # nothing a device publishes afterwards can miss us
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await asyncio.gather(*(conn.subscribe(f, q) for f, q in self.subscriptions))
        except (MqttError, TimeoutError) as err:
            conn.abort()
            raise BrokerError(f"{where}: {err or 'no SUBACK'}") from err
        self._conn = conn
        conn.closed.add_done_callback(self._closed)
        waiting = [*self._unacked.values(), *self._queued]
        self._unacked, self._queued = {}, deque()
        for i, message in enumerate(waiting):
            if not self._send(conn, message):
                self._queued.extend(waiting[i:])
                break
        self.connected.set()

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe now (when connected) and at every connect from now on."""
        self.subscriptions.append((topic_filter, qos))
        conn = self._conn
        if conn is not None and self.connected.is_set():
            task = self._loop.create_task(conn.subscribe(topic_filter, qos))
            task.add_done_callback(_refused_subscription)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Queue a message (ordered, QoS 1 by default); safe from any thread."""
        if self.on_loop():
            self._publish((topic, payload, qos))
        else:
            self._loop.call_soon_threadsafe(self._publish, (topic, payload, qos))

    def on_loop(self) -> bool:
        """True on the thread running this connection's loop."""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def call_on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on this connection's loop (from any thread)."""
        self._loop.call_soon_threadsafe(fn, *args)

    def socket(self) -> Any:
        """The connection's socket as asyncio lends it (None when not connected)."""
        conn = self._conn
        return conn.socket() if conn is not None and not conn.closed.done() else None

    async def disconnect(self) -> None:
        self._closing = True
        conn = self._conn
        if conn is not None and not conn.closed.done():
            if self.keep_session and self.subscriptions:
                with contextlib.suppress(MqttError, TimeoutError):
                    async with asyncio.timeout(5):
                        await conn.unsubscribe([topic for topic, _ in self.subscriptions])
            conn.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.lost.wait(), 5)

    # ------------------------------------------------------------ inside

    def _publish(self, message: _Message) -> None:
        conn = self._conn
        if (conn is None or conn.closed.done() or not self.connected.is_set()
                or self._queued  # behind what waits: order kept
                or not self._send(conn, message)):
            self._queued.append(message)

    def _send(self, conn: MqttConnection, message: _Message) -> bool:
        """Publish on ``conn``; False when it cannot take it: it is ending (the message
        goes on the next), or 65,535 are unacknowledged (it goes as acknowledgements
        come)."""
        topic, payload, qos = message
        try:
            ack = conn.publish(topic, payload, qos)
        except MqttError:
            return False
        if ack is not None:
            self._unacked[ack] = message
            ack.add_done_callback(self._acked)
        return True

    def _acked(self, ack: asyncio.Future[bytes]) -> None:
        if not ack.cancelled() and ack.exception() is None:
            self._unacked.pop(ack, None)
            conn = self._conn
            while self._queued and conn is not None and self.connected.is_set():
                if not self._send(conn, self._queued[0]):
                    break
                self._queued.popleft()

    def _deliver(self, topic: str, payload: bytes) -> None:
        try:
            self.on_message(topic, payload)
        except Exception:  # a handler bug must not take the connection down
            log.exception("handler failed on %s", topic)

    def _closed(self, closed: asyncio.Future[None]) -> None:
        self.connected.clear()
        self.lost.set()
        if not self._closing:
            reason = closed.exception() if not closed.cancelled() else None
            log.warning("lost the broker connection: %s", reason)


def _refused_subscription(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s", task.exception())
