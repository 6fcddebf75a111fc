"""paho-mqtt driven by the asyncio loop: no network thread, publishes never wait.

paho exposes its socket through callbacks; registering it with the loop's
``add_reader``/``add_writer`` runs paho's read and write steps on the loop's own
thread, and a one-second task runs its keep-alive housekeeping. ``publish`` only
queues (paho keeps order and QoS 1 retries), so a handler answering a device can
publish several messages without waiting for each PUBACK. That is what lets one
cloud process serve thousands of devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from impfactory.brokerurl import BrokerUrlError, parse_url
from impfactory.cloud.errors import BrokerError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0


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
        self.on_message = on_message
        self.subscriptions: list[tuple[str, int]] = []
        self.connected = asyncio.Event()
        self.lost = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._misc: asyncio.Task[None] | None = None
        self._closing = False
        self._unacked: set[int] = set()
        self._refused: asyncio.Future[str] | None = None
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv311, clean_session=not keep_session)
        if username is not None:
            c.username_pw_set(username, password)
        c.max_inflight_messages_set(0)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        self.client = c

    async def connect(self) -> None:
        """Connect (and subscribe to everything ``subscribe`` was given)."""
        self.connected.clear()
        self.lost.clear()
        refused = self._refused = self._loop.create_future()
        connected = asyncio.ensure_future(self.connected.wait())
        try:
            self.client.connect(self.host, self.port, keepalive=30)
            sock = self.client.socket()
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
                # answers are small packets: Nagle + delayed ACK would hold each ~40 ms
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            done, _ = await asyncio.wait({connected, refused}, timeout=CONNECT_TIMEOUT,
                                         return_when=asyncio.FIRST_COMPLETED)
            if refused in done:
                self.client.disconnect()
                raise BrokerError(f"mqtt://{self.host}:{self.port} refused the connection: "
                                  f"{refused.result()}")
            if connected not in done:
                raise TimeoutError(f"no answer within {CONNECT_TIMEOUT:.0f} s")
        except (OSError, TimeoutError) as err:
            raise BrokerError(f"cannot connect to mqtt://{self.host}:{self.port}: {err}") from err
        finally:
            connected.cancel()
            self._refused = None

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        self.subscriptions.append((topic_filter, qos))
        if self.connected.is_set():
            self.client.subscribe(topic_filter, qos)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Queue a message (ordered, QoS 1 by default); safe from any thread."""
        if self.on_loop():
            self.client.publish(topic, payload, qos)
        else:
            self._loop.call_soon_threadsafe(self.client.publish, topic, payload, qos)

    def on_loop(self) -> bool:
        """True on the thread running this connection's loop."""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def call_on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on this connection's loop (from any thread)."""
        self._loop.call_soon_threadsafe(fn, *args)

    async def disconnect(self) -> None:
        self._closing = True
        if self.connected.is_set():
            if self.keep_session and self.subscriptions:
                self.client.unsubscribe([topic for topic, _ in self.subscriptions])
            self.client.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.lost.wait(), 5)
        if self._misc is not None:
            self._misc.cancel()

    # ------------------------------------------------------------ paho callbacks

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            if self._refused is not None and not self._refused.done():
                self._refused.set_result(str(reason))
            return
        # "connected" only once the broker has acknowledged every subscription, so
        # nothing a device publishes afterwards can miss us
        self._unacked = set()
        for topic_filter, qos in self.subscriptions:
            _, mid = client.subscribe(topic_filter, qos)
            if mid is not None:
                self._unacked.add(mid)
        if not self._unacked:
            self.connected.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        self._unacked.discard(mid)
        if not self._unacked:
            self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self.connected.clear()
        self.lost.set()
        if not self._closing:
            log.warning("lost the broker connection: %s", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self.on_message(message.topic, bytes(message.payload))
        except Exception:  # a handler bug must not take the connection down
            log.exception("handler failed on %s", message.topic)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._loop.add_reader(sock, client.loop_read)
        self._misc = self._loop.create_task(self._misc_loop())

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        if self._misc is not None:
            self._misc.cancel()

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._loop.remove_writer(sock)

    async def _misc_loop(self) -> None:
        while self.client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:
            await asyncio.sleep(1)
