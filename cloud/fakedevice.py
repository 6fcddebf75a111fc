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
import socket
from types import TracebackType
from typing import TypeVar

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from impfactory.protocol import cloudlink as cl
from impfactory.protocol import linksec

from impfactory.maker import maker_secret
from impfactory.mqttask import ask

TIMEOUT = 20.0
M = TypeVar("M", bound=cl.Message)


class FakeDeviceError(Exception):
    """The cloud did not answer as the script expected."""


class FakeDeviceRefused(FakeDeviceError):
    """The cloud answered a request with ``error``."""

    def __init__(self, reply: cl.ErrorReply) -> None:
        super().__init__(f"{reply.kind}: {reply.code.value}: {reply.message}")
        self.reply = reply


def _host_port(url: str) -> tuple[str, int]:
    rest = url.removeprefix("mqtt://")
    host, _, port = rest.rpartition(":")
    return host, int(port)


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
        self._pending: dict[int, asyncio.Future[cl.Message]] = {}
        self._chunks: dict[str, dict[int, bytes]] = {}
        self._chunk_event: dict[str, asyncio.Event] = {}
        self._req = itertools.count(1)
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ session

    async def connect(self) -> None:
        """Register when it has no account yet (or the broker forgot it), then log in."""
        if self.password is None:
            await self.register()
        try:
            client = await self._login()
        except MqttConnectError:
            await self.register()
            client = await self._login()
        self._client = client
        self.session = secrets.token_hex(16)
        await client.subscribe(cl.device_filter(self.device_id), qos=cl.QOS)
        self._reader = asyncio.get_running_loop().create_task(self._read(client))

    async def _login(self) -> aiomqtt.Client:
        host, port = _host_port(self.url)
        will_topic, will_payload = cl.encode(cl.Bye(device_id=self.device_id, reason="lost"))
        client = aiomqtt.Client(host, port, identifier=self.device_id,
                                username=self.device_id, password=self.password,
                                will=aiomqtt.Will(will_topic, will_payload, qos=cl.QOS),
                                max_inflight_messages=0, timeout=self.timeout,
                                # small request/answer packets: no Nagle wait
                                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        await client.__aenter__()
        return client

    async def register(self) -> None:
        """Get this module's broker account and link key through an enrolment slot."""
        host, port = _host_port(self.url)
        if self.module_key is None:
            self.module_key = linksec.module_key(maker_secret(), self.device_id)
        for attempt in range(6):
            nonce, password = secrets.token_hex(16), secrets.token_urlsafe(24)
            slot = linksec.slot_name(secrets.randbelow(linksec.ENROL_SLOTS))
            request = linksec.RegisterRequest(slot, nonce, self.device_id, password,
                                              linksec.registration_proof(
                                                  self.module_key, self.device_id, nonce,
                                                  password))
            try:
                answer = await self._ask(host, port, request)
            except (aiomqtt.MqttError, TimeoutError):  # the slot was taken over: another
                await asyncio.sleep(0.01 * 2 ** attempt)
                continue
            if not answer.ok:
                raise FakeDeviceError(f"registration refused: {answer.code}: {answer.message}")
            self.password, self.link_key = password, linksec.link_key(self.module_key, nonce)
            self.registrations += 1
            return
        raise FakeDeviceError(f"registration of {self.device_id} got no answer")

    async def _ask(self, host: str, port: int,
                   request: linksec.RegisterRequest) -> linksec.RegisterAnswer:
        def pick(topic: str, payload: bytes) -> linksec.RegisterAnswer | None:
            answer = linksec.decode_answer(topic, payload)
            return answer if answer.nonce == request.nonce else None

        topic, payload = linksec.encode_request(request)
        return await ask(host, port,
                         identifier=linksec.slot_client_id(request.slot, request.nonce),
                         username=request.slot, password=linksec.ENROL_PASSWORD,
                         topic=topic, payload=payload,
                         reply_topic=linksec.answer_topic(request.slot), pick=pick,
                         timeout=self.timeout)

    async def close(self, *, clean: bool = True) -> None:
        """Disconnect: with ``bye`` when clean, else drop the socket so the will fires."""
        client, self._client = self._client, None
        if client is None:
            return
        if clean:
            with contextlib.suppress(aiomqtt.MqttError):
                topic, payload = cl.encode(cl.Bye(device_id=self.device_id))
                await client.publish(topic, payload, qos=cl.QOS)
        else:
            sock = client._client.socket()  # an abrupt loss, on purpose: no DISCONNECT
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.__aexit__(None, None, None), 5)
        lost = getattr(client, "_disconnected", None)  # read it, so asyncio does not complain
        if isinstance(lost, asyncio.Future) and lost.done() and not lost.cancelled():
            lost.exception()

    async def __aenter__(self) -> FakeDevice:
        await self.connect()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # ------------------------------------------------------------ raw traffic

    async def send(self, msg: cl.Message) -> None:
        assert self._client is not None, "not connected"
        topic, payload = cl.encode(msg)
        await self._client.publish(topic, payload, qos=cl.QOS)

    async def send_raw(self, topic: str, payload: bytes) -> None:
        """Publish anything at all (bad input tests)."""
        assert self._client is not None, "not connected"
        await self._client.publish(topic, payload, qos=cl.QOS)

    def next_req(self) -> int:
        return next(self._req)

    async def request(self, msg: cl.Message) -> cl.Message:
        """Send a request and wait for the reply with its ``req``; ``error`` raises."""
        reply = await self.request_raw(msg)
        if isinstance(reply, cl.ErrorReply):
            raise FakeDeviceRefused(reply)
        return reply

    async def request_raw(self, msg: cl.Message) -> cl.Message:
        req = getattr(msg, "req", None)
        assert isinstance(req, int)
        future: asyncio.Future[cl.Message] = asyncio.get_running_loop().create_future()
        self._pending[req] = future
        try:
            await self.send(msg)
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError as err:
            raise FakeDeviceError(f"no answer to {msg.KIND} within {self.timeout} s") from err
        finally:
            self._pending.pop(req, None)

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
        if any(i not in have for i in range(ref.total)):
            return b""  # partial on purpose (skip given)
        data = b"".join(have[i] for i in range(ref.total))
        if hashlib.sha256(data).hexdigest() != ref.sha or len(data) != ref.size:
            have.clear()
            raise FakeDeviceError(f"image {ref.sha[:12]} failed its SHA-256 check")
        self.images[ref.sha] = data
        return data

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

    async def _read(self, client: aiomqtt.Client) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, (bytes, bytearray))
                topic = str(message.topic)
                data = bytes(payload)
                if not topic.endswith("/down/chunk"):
                    try:
                        data = linksec.unseal(self.link_key, self.session, topic, data)
                    except linksec.SealError as err:
                        self.ignored.append((topic, str(err)))
                        continue
                self._dispatch(cl.decode(topic, data))

    def _dispatch(self, msg: cl.Message) -> None:
        if isinstance(msg, cl.Chunk):
            self._chunks.setdefault(msg.sha, {})[msg.index] = msg.data
            self._chunk_event.setdefault(msg.sha, asyncio.Event()).set()
            return
        self.history.append(msg)
        req = getattr(msg, "req", None)
        future = self._pending.get(req) if isinstance(req, int) else None
        if future is not None and not future.done() and not (
            isinstance(msg, cl.ErrorReply) and msg.kind == "chunk_request"
        ):
            future.set_result(msg)
            return
        self.unread.append(msg)
        self._arrived.set()
