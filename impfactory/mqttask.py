"""One question over a short MQTT session of its own, answered or over at once.

Connect, subscribe to the answer topic, publish the question, wait for the first
answer that ``pick`` accepts, disconnect. Registration through an enrolment slot
is such a question (firmware/registration.py, and the scripted FakeDevice): the
session can be taken over by another client using the same slot at the same
moment, and then the question ends at once with :class:`SessionLost`.

It runs on the project's own MQTT connection (impfactory/mqttconn.py), as a device's
cloud link does. On aiomqtt, a busy line's taken-over sessions each left a warning,
a future whose exception nobody read, or a traceback from paho's socket callbacks
on stderr (``perf cloud --concurrency 100``: over a thousand lines a run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from impfactory.mqttconn import MqttError, open_connection

T = TypeVar("T")
QOS = 1


class SessionLost(MqttError):
    """The session ended after the broker had accepted it, before the answer: on a
    shared account (an enrolment slot) most often another client taking it over."""


async def ask(host: str, port: int, *, identifier: str, username: str, password: str,
              topic: str, payload: bytes, reply_topic: str,
              pick: Callable[[str, bytes], T | None], timeout: float) -> T:
    """The first answer ``pick`` returns (not None) for; ``SessionLost`` when the
    session ends first, ``MqttError`` (an ``OSError``) when it could not be opened,
    ``TimeoutError`` after ``timeout`` seconds in all (loop time)."""
    found: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    def heard(topic: str, message: bytes) -> None:
        if not found.done():
            answer = pick(topic, message)
            if answer is not None:
                found.set_result(answer)

    async with asyncio.timeout(timeout):
        conn = await open_connection(host, port, client_id=identifier, on_message=heard,
                                     username=username, password=password,
                                     clean_session=True, timeout=timeout)
        try:
            await conn.subscribe(reply_topic, QOS)
            conn.publish(topic, payload, QOS)  # its PUBACK matters less than the answer
            either: set[asyncio.Future[Any]] = {found, conn.closed}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except MqttError as err:  # the subscription refused, or the session lost
            raise SessionLost(str(err)) from err
        finally:
            if not conn.closed.done():
                conn.disconnect()
    if found.done():
        return found.result()
    raise SessionLost("the session ended before the answer")
