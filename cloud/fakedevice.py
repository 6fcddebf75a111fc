"""A scripted fake imp: the cloud link spoken step by step, for tests and benchmarks.

Built only from ``protocol/cloudlink`` and an MQTT client (aiomqtt), never from
the cloud's internals, so it proves the cloud over the wire before (and besides)
the emulated imp. A test drives it one step at a time::

    async with FakeDevice(url) as dut:
        await dut.hello(plan_id, token)             # -> Welcome, or FakeDeviceRefused
        offer = await dut.expect(cl.CodeOffer)
        await dut.run(offer)                        # fetch, check SHA-256, report state
        answer = await dut.bless(True)

Everything the cloud sends is kept in ``history``; messages not yet consumed by
``expect`` wait in ``unread``. Like an imp, it first registers its own broker
account through an enrolment slot (protocol/linksec.py; its module key comes
from the maker's secret, impfactory/maker.py) and accepts only messages sealed
for its session; anything else lands in ``ignored``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import secrets
from types import TracebackType
from typing import TypeVar

from impfactory.brokerurl import parse_url
from impfactory.errors import ImpFactoryError
from impfactory.firmware.cloudclient import BrokerRefused, CloudClient, CloudRefused
from impfactory.firmware.errors import CloudClientError
from impfactory.firmware.registration import register
from impfactory.maker import maker_secret
from impfactory.protocol import cloudlink as cl
from impfactory.protocol import linksec

TIMEOUT = 20.0
M = TypeVar("M", bound=cl.Message)


class FakeDeviceError(ImpFactoryError):
    """The cloud did not answer as the script expected (an ``ImpFactoryError``: the
    command that drove the script says so and exits non-zero, without a traceback)."""


class FakeDeviceRefused(FakeDeviceError):
    """The cloud answered a request with ``error``."""

    def __init__(self, reply: cl.ErrorReply) -> None:
        super().__init__(f"{reply.kind}: {reply.code.value}: {reply.message}")
        self.reply = reply


class FakeDevice:
    """One device's MQTT session, scripted."""

    def __init__(self, url: str, device_id: str | None = None, *, mac: str | None = None,
                 impos_version: str = "42.0", imp_type: str = "imp005",
                 timeout: float = TIMEOUT, module_key: bytes | None = None) -> None:
        self.mac = mac or secrets.token_hex(6)
        self.device_id = device_id or ("0c2a" + self.mac)
        self.url = url
        self.module_key = module_key
        self.password: str | None = None
        self.link_key = b""
        self.session = ""
        self.registrations = 0
        self.ignored: list[tuple[str, str]] = []
        self.impos_version = impos_version
        self.imp_type = imp_type
        self.deployment: str | None = None
        self.timeout = timeout
        self.history: list[cl.Message] = []
        self.unread: list[cl.Message] = []
        self.images: dict[str, bytes] = {}
        self._arrived = asyncio.Event()
        self._chunks: dict[str, dict[int, bytes | memoryview]] = {}
        self._chunk_event: dict[str, asyncio.Event] = {}
        self._req = itertools.count(1)
        self._link: CloudClient | None = None

    # ------------------------------------------------------------ session

    async def connect(self) -> None:
        """Register when it has no account yet (or the broker forgot it), then log in."""
        if self.password is None:
            await self.register()
        link = self._new_link()
        try:
            await link.connect()
        except BrokerRefused:
            await self.register()
            link = self._new_link()
            await link.connect()
        self._link = link
        self.session = link.session

    def _new_link(self) -> CloudClient:
        """The emulated imp's own client: a new session each time, as an imp has."""
        host, port = parse_url(self.url)
        return CloudClient(self.device_id, host, port, self._dispatch, lambda: None,
                           password=self.password, link_key=self.link_key,
                           on_ignored=lambda topic, why: self.ignored.append((topic, why)),
                           timeout=self.timeout)

    async def register(self) -> None:
        """Get this module's broker account and link key through an enrolment slot,
        exactly as an emulated imp does (firmware/registration.py)."""
        host, port = parse_url(self.url)
        if self.module_key is None:
            self.module_key = linksec.module_key(maker_secret(), self.device_id)
        try:
            creds = await register(host, port, self.device_id, self.module_key,
                                   timeout=self.timeout)
        except CloudClientError as err:  # RegistrationRefused, or no slot answered
            raise FakeDeviceError(str(err)) from err
        self.password, self.link_key = creds.password, creds.link_key
        self.registrations += 1

    async def close(self, *, clean: bool = True) -> None:
        """Disconnect: with ``bye`` when clean, else drop the socket so the will fires."""
        link, self._link = self._link, None
        if link is None:
            return
        if not clean:
            link.sever()  # an abrupt loss, on purpose: no DISCONNECT
            link.connected = False
        await link.close()

    async def __aenter__(self) -> FakeDevice:
        await self.connect()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # ------------------------------------------------------------ raw traffic

    @property
    def link(self) -> CloudClient:
        if self._link is None:
            raise FakeDeviceError("not connected")
        return self._link

    async def send(self, msg: cl.Message) -> None:
        await self.link.send(msg)

    async def send_raw(self, topic: str, payload: bytes) -> None:
        """Publish anything at all (bad input tests)."""
        await self.link.publish(topic, payload)

    def next_req(self) -> int:
        return next(self._req)

    async def request(self, msg: cl.Message) -> cl.Message:
        """Send a request and wait for the reply with its ``req``; ``error`` raises."""
        reply = await self.request_raw(msg)
        if isinstance(reply, cl.ErrorReply):
            raise FakeDeviceRefused(reply)
        return reply

    async def request_raw(self, msg: cl.Message) -> cl.Message:
        """The reply to ``msg``, an ``error`` reply included (kept in ``history``)."""
        try:
            reply = await self.link.request(msg, timeout=self.timeout)
        except CloudRefused as err:
            reply = err.reply
        except CloudClientError as err:
            raise FakeDeviceError(str(err)) from err
        self.history.append(reply)
        return reply

    async def expect(self, cls: type[M], timeout: float | None = None) -> M:
        """The next unread message of class ``cls`` (waiting for it if need be)."""
        deadline = asyncio.get_running_loop().time() + (timeout or self.timeout)
        while True:
            for i, msg in enumerate(self.unread):
                if isinstance(msg, cls):
                    del self.unread[i]
                    return msg
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                kinds = [m.KIND for m in self.unread]
                raise FakeDeviceError(f"no {cls.KIND} arrived; unread: {kinds}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def expect_nothing(self, cls: type[cl.Message], wait: float = 0.3) -> None:
        """Assert that no ``cls`` message arrives within ``wait`` seconds."""
        await asyncio.sleep(wait)
        found = [m for m in self.unread if isinstance(m, cls)]
        if found:
            raise FakeDeviceError(f"unexpected {cls.KIND}: {found[0]}")

    # ------------------------------------------------------------ scripted steps

    async def hello(self, plan_id: str | None = None, token: str | None = None) -> cl.Welcome:
        reply = await self.request(cl.Hello(
            device_id=self.device_id, req=self.next_req(), mac=self.mac,
            impos_version=self.impos_version, imp_type=self.imp_type,
            deployment=self.deployment, plan_id=plan_id, token=token, session=self.session))
        assert isinstance(reply, cl.Welcome), reply
        return reply

    async def factory_token(self) -> cl.FactoryToken:
        reply = await self.request(cl.FactoryTokenRequest(device_id=self.device_id,
                                                          req=self.next_req()))
        assert isinstance(reply, cl.FactoryToken), reply
        return reply

    async def bless(self, passed: bool, attempt: str | None = None) -> cl.BlessAnswer:
        """``attempt``: the call's name, the same when asking again (docs/cloudlink.md)."""
        reply = await self.request(cl.BlessRequest(device_id=self.device_id,
                                                   req=self.next_req(), passed=passed,
                                                   attempt=attempt))
        assert isinstance(reply, cl.BlessAnswer), reply
        return reply

    async def log(self, text: str) -> None:
        await self.send(cl.Log(device_id=self.device_id, msg=text))

    async def agent_send(self, name: str, value: object = None) -> None:
        """``agent.send(name, value)``: a message for this device's agent."""
        await self.send(cl.AgentMessage(device_id=self.device_id, name=name, value=value))

    async def report(self, led: str = "online") -> None:
        await self.send(cl.StateReport(device_id=self.device_id, led=led,
                                       impos_version=self.impos_version,
                                       deployment=self.deployment))

    async def fetch(self, ref: cl.ImageRef, *, skip: frozenset[int] = frozenset(),
                    batch: int = 16) -> bytes:
        """Fetch the blocks of ``ref`` not yet held (minus ``skip``), check SHA-256."""
        have = self._chunks.setdefault(ref.sha, {})
        event = self._chunk_event.setdefault(ref.sha, asyncio.Event())
        wanted = [i for i in range(ref.total) if i not in have and i not in skip]
        link = self.link
        link.sink_chunks(ref.sha, self._chunk)
        try:
            await self._fetch_blocks(ref, wanted, have, event, batch)
        finally:
            link.sink_chunks(ref.sha, None)
        if any(i not in have for i in range(ref.total)):
            return b""  # partial on purpose (skip given)
        data = b"".join(have[i] for i in range(ref.total))
        if hashlib.sha256(data).hexdigest() != ref.sha or len(data) != ref.size:
            have.clear()
            raise FakeDeviceError(f"image {ref.sha[:12]} failed its SHA-256 check")
        self.images[ref.sha] = data
        return data

    async def _fetch_blocks(self, ref: cl.ImageRef, wanted: list[int],
                            have: dict[int, bytes | memoryview],
                            event: asyncio.Event, batch: int) -> None:
        for start in range(0, len(wanted), batch):
            blocks = tuple(wanted[start:start + batch])
            await self.send(cl.ChunkRequest(device_id=self.device_id, sha=ref.sha,
                                            blocks=blocks))
            deadline = asyncio.get_running_loop().time() + self.timeout
            while not all(b in have for b in blocks):
                error = next((m for m in self.unread if isinstance(m, cl.ErrorReply)
                              and m.kind == "chunk_request"), None)
                if error is not None:
                    self.unread.remove(error)
                    raise FakeDeviceRefused(error)
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    raise FakeDeviceError(f"blocks {blocks} of {ref.sha[:12]} never came")
                event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, 0.5))

    async def run(self, offer: cl.CodeOffer) -> str:
        """Fetch an offered deployment, 'run' it, report it; returns the device code."""
        code = await self.fetch(offer.device)
        if offer.agent is not None:
            await self.fetch(offer.agent)
        self.deployment = offer.deployment
        await self.report()
        return code.decode()

    async def install(self, offer: cl.OsOffer) -> None:
        """Fetch and 'install' an impOS image: after this, ``hello`` again."""
        await self.fetch(offer.image)
        self.impos_version = offer.version

    # ------------------------------------------------------------ receiving

    def _chunk(self, chunk: cl.Chunk | None) -> None:
        """A block of an image being fetched (None: the link went; ``fetch`` times out)."""
        if chunk is not None:
            self._chunks.setdefault(chunk.sha, {})[chunk.index] = chunk.data
            self._chunk_event.setdefault(chunk.sha, asyncio.Event()).set()

    def _dispatch(self, msg: cl.Message) -> None:
        """What the client did not take as a reply or a chunk: ``history`` and ``unread``."""
        self.history.append(msg)
        self.unread.append(msg)
        self._arrived.set()
