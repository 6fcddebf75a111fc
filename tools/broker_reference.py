"""A broker's raw publish/subscribe rate: the yardstick of ``perf line`` and ``perf firmware``.

A benchmark of the line alone says little on a shared machine: a busy neighbour
halves it. So the benchmarks also measure, in the same run, what the same broker
does with the same client (the cloud's ``AsyncMqtt``: impfactory/mqttconn.py on the loop)
when nothing but MQTT is asked of it, and print the ratio:

    one publisher ──QoS 1──▶ broker ──QoS 1──▶ K subscribers (one topic each)
    (the cloud's account,                      (device accounts, each reading only
     as the cloud publishes)                    its own ``down`` topic, as devices do)

Every message goes to one subscriber, round robin, all queued at once (the
connection keeps them in order); the clock runs from the first publish to the last
delivery, and so does the count of CPU: this process's (publisher and subscribers) and,
given ``broker_cpu`` (``BrokerServer.cpu_seconds``), the broker's. ``cpu_us_per_message``
is then what one message costs the machine at the least: no message of a line or a
download, which the same client and broker carry, can cost less. On a
broker the project started, subscribers get device accounts through the same
account commands the cloud uses (``BrokerAdmin``), removed afterwards; on an open
broker they connect anonymously.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from impfactory.cloud.brokeradmin import BrokerAdmin
from impfactory.cloud.brokersec import BrokerAccess
from impfactory.cloud.errors import BrokerError
from impfactory.cloud.mqtt import AsyncMqtt
from impfactory.protocol import cloudlink as cl

DELIVERY_TIMEOUT = 120.0


@dataclass(frozen=True)
class RawRate:
    """What the broker delivered: messages and bytes per second, first publish to last
    delivery, and the CPU that took (``broker_cpu_s`` None where the broker's is not
    known: an embedded broker's is in ``cpu_s``, an external one's is elsewhere)."""

    messages: int
    size: int
    subscribers: int
    seconds: float
    cpu_s: float = 0.0
    broker_cpu_s: float | None = None

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds

    @property
    def bytes_per_s(self) -> float:
        return self.messages * self.size / self.seconds

    @property
    def cpu_us_per_message(self) -> float:
        """Microseconds of CPU per message: this process's and the broker's when known."""
        return (self.cpu_s + (self.broker_cpu_s or 0.0)) / self.messages * 1e6


async def raw_rate(cloud_url: str, *, messages: int, size: int, subscribers: int = 100,
                   qos: int = cl.QOS,
                   broker_cpu: Callable[[], float | None] | None = None) -> RawRate:
    """Publish ``messages`` payloads of ``size`` bytes to ``subscribers`` device topics.

    ``cloud_url`` carries the cloud's credentials (``BrokerServer.cloud_url``) or none
    for an open broker; ``broker_cpu`` reads the broker's CPU seconds so far."""
    if messages < 1 or size < 0 or subscribers < 1:
        raise BrokerError("raw rate: messages and subscribers must be at least 1")
    access = BrokerAccess.from_url(cloud_url)
    admin: BrokerAdmin | None = None

    def to_admin(topic: str, payload: bytes) -> None:
        if admin is not None:
            admin.on_response(payload)

    publisher = AsyncMqtt(access.url, f"impcloud-{secrets.token_hex(16)}", to_admin,
                          username=access.username, password=access.password)
    if access.secured:
        admin = BrokerAdmin(access, lambda t, p: publisher.publish(t, p, cl.QOS))
        publisher.subscribe(admin.response_topic, cl.QOS)
    await publisher.connect()
    names = [secrets.token_hex(8) for _ in range(subscribers)]
    received = 0
    done = asyncio.get_running_loop().create_future()

    def count(topic: str, payload: bytes) -> None:
        nonlocal received
        received += 1
        if received == messages and not done.done():
            done.set_result((time.perf_counter(), time.process_time(), _read(broker_cpu)))

    clients: list[AsyncMqtt] = []
    try:
        passwords = {name: secrets.token_urlsafe(16) for name in names}
        if admin is not None:
            await asyncio.gather(*(admin.set_device(n, p) for n, p in passwords.items()))
        for name in names:
            client = AsyncMqtt(access.url, name, count,
                               username=name if admin is not None else None,
                               password=passwords[name] if admin is not None else None)
            client.subscribe(cl.device_filter(name), qos)
            clients.append(client)
        await asyncio.gather(*(c.connect() for c in clients))
        payload = bytes(size)
        topics = [f"{cl.PREFIX}/{name}/down/raw" for name in names]
        broker_before = _read(broker_cpu)
        started, cpu_before = time.perf_counter(), time.process_time()
        for i in range(messages):
            publisher.publish(topics[i % subscribers], payload, qos)
        try:
            ended, cpu_after, broker_after = await asyncio.wait_for(done, DELIVERY_TIMEOUT)
        except TimeoutError as err:
            raise BrokerError(f"raw rate: {received} of {messages} messages delivered within "
                              f"{DELIVERY_TIMEOUT:.0f} s") from err
        broker_s = (broker_after - broker_before
                    if broker_before is not None and broker_after is not None else None)
        return RawRate(messages, size, subscribers, max(ended - started, 1e-9),
                       cpu_after - cpu_before, broker_s)
    finally:
        await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)
        if admin is not None:
            await asyncio.gather(*(admin.delete_device(n) for n in names),
                                 return_exceptions=True)
        await publisher.disconnect()


def _read(broker_cpu: Callable[[], float | None] | None) -> float | None:
    return broker_cpu() if broker_cpu is not None else None
