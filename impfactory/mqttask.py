"""One question over a short MQTT session of its own, answered or over at once.

Connect, subscribe to the answer topic, publish the question, wait for the first
answer that ``pick`` accepts, disconnect. Registration through an enrolment slot
is such a question (firmware/registration.py, and the scripted FakeDevice): the
session can be taken over by another client using the same slot at the same
moment, and then the question must end at once. aiomqtt wakes its message reader
on a lost session but leaves a subscribe or a QoS 1 publish waiting out its own
timeout, so the reader and the sender race here, and the first failure ends both.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import TypeVar

import aiomqtt

T = TypeVar("T")
QOS = 1


class SessionLost(aiomqtt.MqttError):
    """The session ended after the broker had accepted it, before the answer: on a
    shared account (an enrolment slot) most often another client taking it over."""


async def ask(host: str, port: int, *, identifier: str, username: str, password: str,
              topic: str, payload: bytes, reply_topic: str,
              pick: Callable[[str, bytes], T | None], timeout: float) -> T:
    """The first answer ``pick`` returns (not None) for; ``SessionLost`` when the
    session ends first, ``aiomqtt.MqttError`` (or ``OSError``) when it could not be
    opened, ``TimeoutError`` after ``timeout`` seconds (loop time)."""
    client = aiomqtt.Client(host, port, identifier=identifier, username=username,
                            password=password, clean_session=True, keepalive=30,
                            timeout=timeout,
                            # one small packet each way: no Nagle wait
                            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    try:
        return await _exchange(client, topic, payload, reply_topic, pick, timeout)
    finally:
        # a session taken over leaves aiomqtt's own record of it unread: read it here
        gone = getattr(client, "_disconnected", None)
        if isinstance(gone, asyncio.Future) and gone.done() and not gone.cancelled():
            gone.exception()


async def _exchange(client: aiomqtt.Client, topic: str, payload: bytes, reply_topic: str,
                    pick: Callable[[str, bytes], T | None], timeout: float) -> T:
    async with client:
        reader = asyncio.ensure_future(_answer(client, pick))
        sender = asyncio.ensure_future(_send(client, topic, payload, reply_topic))
        try:
            async with asyncio.timeout(timeout):
                await asyncio.wait({reader, sender}, return_when=asyncio.FIRST_EXCEPTION)
                if not reader.done():
                    sender.result()
                return await reader
        except aiomqtt.MqttError as err:
            raise SessionLost(str(err) or "the session ended before the answer") from err
        finally:
            for task in (reader, sender):
                task.cancel()
            await asyncio.wait({reader, sender})


async def _send(client: aiomqtt.Client, topic: str, payload: bytes, reply_topic: str) -> None:
    await client.subscribe(reply_topic, qos=QOS)
    await client.publish(topic, payload, qos=QOS)


async def _answer(client: aiomqtt.Client, pick: Callable[[str, bytes], T | None]) -> T:
    async for message in client.messages:
        if isinstance(message.payload, (bytes, bytearray)):
            found = pick(str(message.topic), bytes(message.payload))
            if found is not None:
                return found
    raise aiomqtt.MqttError("the session ended before the answer")
