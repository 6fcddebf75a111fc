"""A module's first contact with the broker: its own account, through an enrolment slot.

The device picks one of the shared enrolment slots at random, logs in as it
(public password, client ID = the slot's name), subscribes to the slot's answer
topic, publishes a ``RegisterRequest`` (a fresh nonce, a password it chose, and
the proof only its module key can make: protocol/linksec.py) and waits for the
answer naming its nonce. Another device using the same slot at the same moment
takes the slot's session over; the loser tries another slot after a short,
jittered pause. What it gets: a password for the account named by its device ID,
and the link key (derived from its module key and the nonce) that the cloud's
messages will be sealed with. Network waits use the loop's time, as in
cloudclient.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from functools import partial

from impfactory.backoff import Backoff
from impfactory.firmware.errors import CloudClientError
from impfactory.mqttask import SessionLost, ask
from impfactory.protocol import cloudlink as cl
from impfactory.protocol import linksec

ATTEMPTS = 6
"""Tries that failed for want of a broker or an answer (refused, timed out, the cloud
unavailable) before registration gives up."""
ANSWER_TIMEOUT = 10.0
SLOT_BACKOFF = Backoff(first=0.01, cap=0.64, jitter=0.75)
"""Pause before another slot: the broker is away, or the cloud did not answer."""
COLLISIONS = 60
"""Sessions another device took over (its registration on the same slot) that do not
count as failed tries. With a hundred registrations in flight on 128 slots and a busy
cloud taking seconds to answer, most tries collide (``perf cloud --concurrency 100``
lost devices after six); each collision backs off longer, up to 2 s: a device gives up
after about 70 s of pauses between them."""
COLLISION_BACKOFF = Backoff(first=0.05, cap=2.0, jitter=0.75)
"""Pause after a collision: jittered, so the two devices do not collide again, and
growing, so a crowd thins out."""


class RegistrationRefused(CloudClientError):
    """The cloud refused to register this module (``code`` says why)."""

    def __init__(self, answer: linksec.RegisterAnswer) -> None:
        super().__init__(f"registration refused: {answer.code}: {answer.message}")
        self.code = answer.code


@dataclass(frozen=True)
class Credentials:
    """What registration gives a device: its broker password and its link key."""

    password: str
    link_key: bytes
    attempts: int
    """Tries it took, collisions included."""


async def register(host: str, port: int, device_id: str, module_key: bytes,
                   attempts: int = ATTEMPTS, timeout: float = ANSWER_TIMEOUT) -> Credentials:
    """Register ``device_id``; ``RegistrationRefused``, or ``CloudClientError`` when no
    slot got an answer (broker or cloud unreachable)."""
    last = "no attempt"
    attempt = collisions = 0
    while attempt < attempts:
        attempt += 1
        nonce = secrets.token_hex(16)
        password = secrets.token_urlsafe(24)
        request = linksec.RegisterRequest(
            linksec.slot_name(secrets.randbelow(linksec.ENROL_SLOTS)), nonce, device_id,
            password, linksec.registration_proof(module_key, device_id, nonce, password))
        try:
            answer = await _ask(host, port, request, timeout)
        except (OSError, TimeoutError) as err:  # MqttError (SessionLost too) is an OSError
            last = f"{request.slot}: {err or type(err).__name__}"
            if isinstance(err, SessionLost):
                collisions += 1
                if collisions <= COLLISIONS:  # another device took the slot: not a failure
                    attempt -= 1
                    await asyncio.sleep(COLLISION_BACKOFF.delay(collisions))
                    continue
            # the broker is away, or the cloud did not answer: pause, try another slot
            await asyncio.sleep(SLOT_BACKOFF.delay(attempt))
            continue
        if answer.ok:
            return Credentials(password, linksec.link_key(module_key, nonce),
                               attempt + collisions)
        if answer.code != linksec.RegistrationCode.UNAVAILABLE:
            raise RegistrationRefused(answer)
        last = f"{request.slot}: {answer.message}"
    raise CloudClientError(f"registration of {device_id} failed after {attempts} attempts "
                           f"and {collisions} collisions ({last})")


async def _ask(host: str, port: int, request: linksec.RegisterRequest,
               timeout: float) -> linksec.RegisterAnswer:
    topic, payload = linksec.encode_request(request)
    return await ask(host, port, identifier=linksec.slot_client_id(request.slot, request.nonce),
                     username=request.slot, password=linksec.ENROL_PASSWORD,
                     topic=topic, payload=payload, reply_topic=linksec.answer_topic(request.slot),
                     pick=partial(answer_to, request.nonce), timeout=timeout)


def answer_to(nonce: str, topic: str, payload: bytes) -> linksec.RegisterAnswer | None:
    """The registration answer for ``nonce`` in this message, else None."""
    with contextlib.suppress(cl.CloudLinkError):
        answer = linksec.decode_answer(topic, payload)
        if answer.nonce == nonce:
            return answer
    return None
