"""Broker accounts for real modules: the cloud's side of registration.

A device without broker credentials publishes a ``RegisterRequest`` from one of
the shared enrolment slots (protocol/linksec.py). For each request the registrar

1. drops it unanswered when its slot is over its rate (``RATE`` a second, bursts
   of ``BURST``): the slots' password is public, so anyone may send requests, and
   this bounds what they cost; dropped requests are only counted;
2. refuses it (``bad_proof``) unless its proof was made with the module key of
   the device ID it names: made-up IDs never get an account, nor a row in the
   device table, whatever token they hold;
3. has the broker create the account (or change its password: a module that
   lost its settings registers again), stores the new link key, and answers
   ``ok`` on the slot's answer topic.

Answers carry no secret. Registration does not enrol: the device's first
``hello`` on its own account carries its BlinkUp token as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from impfactory.cloud.brokeradmin import BrokerAdmin
from impfactory.cloud.errors import BrokerError, StoreError
from impfactory.cloud.ratelimit import Buckets
from impfactory.maker import maker_secret
from impfactory.protocol import linksec
from impfactory.protocol.cloudlink import CloudLinkError

log = logging.getLogger(__name__)

RATE = 10.0
"""Registrations a second one enrolment slot may ask for (128 slots: 1,280 a second)."""
BURST = 20


@dataclass
class RegistrarStats:
    received: int = 0
    registered: int = 0
    refused: int = 0
    throttled: int = 0
    failed: int = 0


class Registrar:
    """Answers registration requests; ``admin`` None means an open broker (no accounts)."""

    def __init__(self, save_link: Callable[[str, bytes], None], admin: BrokerAdmin | None,
                 answer: Callable[[linksec.RegisterAnswer, str], None], *,
                 secret: bytes | None = None, clock: Callable[[], float] = time.monotonic,
                 rate: float = RATE, burst: int = BURST) -> None:
        self.save_link = save_link  # (device ID, link key): CloudService.save_link
        self.admin = admin
        self.answer = answer
        self.secret = secret if secret is not None else maker_secret()
        self.clock = clock
        self.rate, self.burst = rate, burst
        self.stats = RegistrarStats()
        self._buckets = Buckets(rate, burst, clock)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def receive(self, topic: str, payload: bytes) -> None:
        """One message on a slot's request topic (never raises)."""
        self.stats.received += 1
        try:
            slot = linksec.slot_of(topic)
        except CloudLinkError:
            self.stats.refused += 1
            return
        if not self._buckets.take(slot):
            self.stats.throttled += 1
            return
        try:
            request = linksec.decode_request(topic, payload)
        except CloudLinkError as err:
            self.stats.refused += 1
            log.info("registration refused on %s: %s", slot, err)
            return  # no nonce to answer to
        if not request.verify(self.secret):
            self.stats.refused += 1
            log.info("registration of %s refused: not a real module", request.device_id)
            self._answer(request, linksec.RegistrationCode.BAD_PROOF,
                         "the proof does not match a module key")
            return
        task = asyncio.get_running_loop().create_task(self._register(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _register(self, request: linksec.RegisterRequest) -> None:
        device_id = request.device_id
        lock, users = self._locks.get(device_id, (asyncio.Lock(), 0))
        self._locks[device_id] = (lock, users + 1)  # one registration of a device at a time
        try:
            async with lock:
                if self.admin is not None:
                    await self.admin.set_device(device_id, request.password)
                key = linksec.module_key(self.secret, device_id)
                self.save_link(device_id, linksec.link_key(key, request.nonce))
        except (BrokerError, StoreError) as err:
            self.stats.failed += 1
            log.warning("registration of %s failed: %s", device_id, err)
            self._answer(request, linksec.RegistrationCode.UNAVAILABLE, str(err))
            return
        finally:
            lock, users = self._locks[device_id]
            if users <= 1:
                del self._locks[device_id]
            else:
                self._locks[device_id] = (lock, users - 1)
        self.stats.registered += 1
        self._answer(request, linksec.RegistrationCode.OK, "")

    def _answer(self, request: linksec.RegisterRequest, code: str, message: str) -> None:
        self.answer(linksec.RegisterAnswer(request.slot, request.nonce,
                                           code == linksec.RegistrationCode.OK, code, message),
                    request.device_id)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
