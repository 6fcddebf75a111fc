"""Attacks a stranger on the factory network tries, callable outside pytest.

The stranger has a plain MQTT client and what anyone on the network has: the
broker's address, the device IDs it can guess or see, and the enrolment slots'
password (public by design: every impOS carries it). It has no cloud password,
no device's password or link key, and not the module maker's secret.

``Stranger`` is the client tests/test_attacks.py drives against a cloud of its
own. ``live_attacks(url, ...)`` tries the same attacks against a factory that is
running (``impfactory soak`` runs them while its line runs through crashes), and
answers one ``Attack`` per try, saying whether it was refused; what the cloud's
store must show afterwards is checked by the caller (``check_store``).

"Nothing happened" is never shown by sleeping: the stranger ends with a barrier,
a registration of its own on its own slot. The cloud answers requests in the
order the broker hands them over, and the broker hands a client's messages over
in the order it sent them, so when the answer arrives the cloud has dealt with
everything the stranger sent before it, and the broker has delivered to the
stranger everything it was going to.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from impfactory.brokerurl import parse_url
from impfactory.cloud.brokersec import CLOUD_USER
from impfactory.protocol import cloudlink as cl
from impfactory.protocol import linksec

NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]  # no Nagle wait per request


class Stranger:
    """Someone on the factory network with a plain MQTT client."""

    def __init__(self, url: str) -> None:
        self.host, self.port = parse_url(url)
        self.received: list[tuple[str, bytes]] = []
        self._arrived = asyncio.Event()

    async def refused(self, identifier: str, username: str | None = None,
                      password: str | None = None) -> bool:
        """True when the broker refuses this login (False: it let the stranger in)."""
        try:
            async with aiomqtt.Client(self.host, self.port, identifier=identifier,
                                      username=username, password=password, timeout=10):
                return False
        except MqttConnectError:
            return True

    @contextlib.asynccontextmanager
    async def slot(self, slot: str = "enrol-031",
                   sniff: tuple[str, ...] = ()) -> AsyncIterator[aiomqtt.Client]:
        """Logged in as an enrolment slot (the only account the stranger has), listening
        to its own answers and to whatever ``sniff`` names the broker lets it have."""
        async with aiomqtt.Client(self.host, self.port, identifier=slot, username=slot,
                                  password=linksec.ENROL_PASSWORD, timeout=10,
                                  socket_options=NO_DELAY) as client:
            await client.subscribe(linksec.answer_topic(slot), qos=1)
            for topic_filter in sniff:
                with contextlib.suppress(aiomqtt.MqttError):  # amqtt refuses; Mosquitto filters
                    await client.subscribe(topic_filter, qos=1)
            reader = asyncio.create_task(self._read(client))
            try:
                yield client
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            self.received.append((str(message.topic), message.payload))
            self._arrived.set()

    async def publish(self, client: aiomqtt.Client, msg: cl.Message) -> None:
        await client.publish(*cl.encode(msg), qos=1)

    async def register(self, client: aiomqtt.Client, slot: str, device_id: str,
                       proof: str | None = None) -> str:
        """A registration with a proof the stranger made up; returns its nonce."""
        nonce = secrets.token_hex(16)
        request = linksec.RegisterRequest(slot, nonce, device_id, secrets.token_urlsafe(24),
                                          proof or secrets.token_hex(32))
        await client.publish(*linksec.encode_request(request), qos=1)
        return nonce

    def answer(self, nonce: str) -> linksec.RegisterAnswer | None:
        for topic, payload in self.received:
            if topic.endswith("/registered"):
                answer = linksec.decode_answer(topic, payload)
                if answer.nonce == nonce:
                    return answer
        return None

    async def barrier(self, client: aiomqtt.Client, slot: str = "enrol-031") -> None:
        """Until the cloud answers a registration of ours (asked again while the slot's
        rate is used up): see the module docstring."""
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            nonce = await self.register(client, slot, "fedcba9876543210")
            retry = asyncio.get_running_loop().time() + 1.0
            while self.answer(nonce) is None:
                now = asyncio.get_running_loop().time()
                assert now < deadline, "the cloud never answered the stranger"
                if now > retry:
                    break
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), retry - now)
            else:
                return

    def others(self, slot: str = "enrol-031") -> list[str]:
        """Topics of what the stranger received that were not its own slot's answers."""
        return [t for t, _ in self.received if t != linksec.answer_topic(slot)]


@dataclass
class Attack:
    """One try: what was attempted, and whether the factory refused it."""

    name: str
    refused: bool
    detail: str = ""


@dataclass
class LiveAttacks:
    """What ``live_attacks`` tried, and what the store must show for it afterwards."""

    attacks: list[Attack] = field(default_factory=list)
    made_up: list[str] = field(default_factory=list)
    """Device IDs the stranger invented: none may exist in the store."""
    forged_bless: list[str] = field(default_factory=list)
    """Devices the stranger tried to bless (fixtures): none may be blessed, and the cloud
    must never have heard the request."""

    @property
    def refused(self) -> int:
        return sum(a.refused for a in self.attacks)


async def live_attacks(url: str, victims: list[str], fixtures: list[str],
                       flood: int = 200) -> LiveAttacks:
    """Try every attack against the running factory behind ``url``.

    ``victims``: device IDs of DUTs (whose accounts the stranger tries to borrow);
    ``fixtures``: fixtures' IDs (whose factory tokens and blessings it tries to forge).
    """
    s = Stranger(url)
    out = LiveAttacks()

    def tried(name: str, refused: bool, detail: str = "") -> None:
        out.attacks.append(Attack(name, refused, detail))

    tried("anonymous login", await s.refused("anyone"))
    tried("the cloud's account with a guessed password",
          await s.refused(f"{CLOUD_USER}-x", CLOUD_USER, secrets.token_urlsafe(8)))
    for victim in victims[:3]:
        tried(f"device {victim}'s account with a guessed password",
              await s.refused(victim, victim, secrets.token_urlsafe(8)))
    slot = f"enrol-{secrets.randbelow(linksec.ENROL_SLOTS):03d}"
    tried(f"slot {slot} with a guessed password", await s.refused(slot, slot, "guess"))
    sniff = ("#", "imp/#", f"{cl.PREFIX}/+/down/#", f"{linksec.ENROL_PREFIX}/#")
    async with s.slot(slot, sniff=sniff) as client:
        for fixture in fixtures:
            await s.publish(client, cl.FactoryTokenRequest(fixture, req=5))
            await s.publish(client, cl.BlessRequest(fixture, req=9, passed=True))
            out.forged_bless.append(fixture)
        made_up = "0c2a69" + secrets.token_hex(5)
        nonce = await s.register(client, slot, made_up)
        out.made_up.append(made_up)
        for _ in range(flood):
            device_id = secrets.token_hex(8)
            await s.publish(client, cl.Hello(device_id, req=1, mac=device_id[4:]))
            out.made_up.append(device_id)
        await s.barrier(client, slot)
        answer = s.answer(nonce)
    # no answer is no account either (a busy slot's rate, a fault meanwhile): the store
    # check (check_store) says whether the module got anywhere
    tried("registering a made-up module", answer is None or not answer.ok,
          answer.code if answer is not None else "no answer; none in the store")
    others = s.others(slot)
    tried("listening to every topic (#) on a live line", not others,
          f"{len(others)} messages of others" if others else "nothing of anyone else's")
    tried(f"forged factory token and bless requests for {len(fixtures)} fixture(s)",
          not any(t.endswith(("/factory_token", "/bless_answer")) for t in others))
    tried(f"{flood} hellos from made-up devices", True, "none in the store")
    return out


def check_store(svc: Any, tried: LiveAttacks) -> list[str]:
    """What the store shows that the attacks got: a list of breaches (empty: none).

    An attack the store shows got somewhere is marked not refused, whatever the
    stranger saw at the time."""
    made_up = [f"made-up device {d} exists" for d in tried.made_up
               if svc.find_device(d) is not None]
    forged = []
    for device_id in tried.forged_bless:
        device = svc.find_device(device_id)
        if device is not None and device.blessed:
            forged.append(f"fixture {device_id} blessed by a stranger")
        if device is not None and any("Blessing refused" in e.msg
                                      for e in svc.device_logs(device_id, size=1000)):
            forged.append(f"a stranger's bless request for {device_id} reached the cloud")
    for attack in tried.attacks:
        if (made_up and ("made-up" in attack.name)) or (forged and "forged" in attack.name):
            attack.refused = False
            attack.detail = "the store shows it got in"
    return made_up + forged
