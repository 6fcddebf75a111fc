"""An MQTT 3.1.1 client connection as an asyncio protocol: no thread, no library.

What a device's cloud link needs of MQTT and nothing more (firmware/cloudclient.py;
the cloud's account agent checks a login with it too, cloud/broker_accounts.py):
connect with a client ID, account and last will; subscribe; publish at QoS 0 or 1
and learn of the PUBACK; receive at QoS 0 or 1 (QoS 1 acknowledged); keep alive;
disconnect, or drop the connection as a failing network would. A line worker runs
hundreds of these in one process, and per message this costs a fraction of what
aiomqtt over paho did (``perf line``, docs/line.md): paho reads a packet in three
or more ``recv`` calls, one packet per wake-up of the loop, builds MQTT 5
properties and reason codes even for 3.1.1, and sends each packet alone; aiomqtt
added a task and an ``asyncio.wait`` per message. Here one read parses every
packet the kernel had, and what a loop iteration writes (the
PUBACKs of a burst, a reply) leaves in one ``send``.

Bytes are copied as little as Python allows, since an impOS image is megabytes per
device: the kernel reads into the connection's own buffer (``asyncio.BufferedProtocol``)
and a message's payload is copied out of it once. There is no buffer while the
connection is quiet (between small reads: ten thousand idle devices share one
process), and it doubles while reads fill it, up to ``READ_BUFFER``. A PUBLISH is
queued as its header and its payload, joined once on the way out; and the connection
writes no more than the transport takes (``pause_writing``), so a burst of a hundred
megabytes waits as the messages it is (a cached image's blocks are shared, not
copied) rather than as one growing buffer that the transport copies again on every
send.

Anything a broker may not send a 3.1.1 client at QoS 1 (QoS 2 flows, a malformed
packet) ends the connection: ``closed`` says why.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14
MAX_PACKET = 1 << 22
"""Bytes a packet from the broker may take (a cloud-link message is far smaller)."""

_PUBACK = struct.Struct("!BBH")
_U16 = struct.Struct("!H")
MIN_READ = 2048
"""The read buffer of a quiet connection."""
READ_BUFFER = 1 << 18
"""The most the read buffer grows to while reads fill it (a packet larger than that
grows it for itself)."""
WRITE_PIECE = 1 << 18
"""Bytes joined for one ``transport.write``; the next piece waits until the transport
has room (``resume_writing``)."""


class MqttError(OSError):
    """The connection failed or ended (an ``OSError``: the network's kind of failure)."""


class MqttRefused(MqttError):
    """The broker answered CONNECT with a refusal (``code``: the CONNACK return code)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"the broker refused the connection (CONNACK return code {code})")
        self.code = code


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return _U16.pack(len(b)) + b


def _fit(nbytes: int) -> int:
    """A read buffer for reads of about ``nbytes``: twice that, a power of two, within
    ``MIN_READ`` and ``READ_BUFFER``."""
    size = MIN_READ
    while size < 2 * nbytes and size < READ_BUFFER:
        size *= 2
    return size


def _header(first: int, size: int) -> bytes:
    """A packet's fixed header: its first byte and the length of what follows."""
    return bytes((first,)) + _length(size)


def _packet(first: int, body: bytes) -> bytes:
    return _header(first, len(body)) + body


class MqttConnection(asyncio.BufferedProtocol):
    """One client connection; made by :func:`open_connection`."""

    def __init__(self, on_message: Callable[[str, bytes], None], keepalive: int) -> None:
        self.on_message = on_message
        self.keepalive = keepalive
        loop = self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = loop.create_future()
        """Done when the connection is over: its exception says why, unless we ended it."""
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()  # none while quiet: made for the next read (get_buffer)
        self._view = memoryview(self._buf)
        self._len = 0  # bytes of ``_buf`` read and not yet parsed
        self._out: deque[bytes | memoryview] = deque()
        self._out_bytes = 0
        self._flush_due = False
        self._paused = False
        self._connack: asyncio.Future[int] = loop.create_future()
        self._acks: dict[int, asyncio.Future[bytes]] = {}
        self._mid = 0
        self._sent_at = 0.0
        self._ping_at: float | None = None
        self._keeper: asyncio.TimerHandle | None = None
        self._ending = False

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if not self._buf:
            self._buf = bytearray(MIN_READ)
            self._view = memoryview(self._buf)
        return self._view[self._len :]

    def buffer_updated(self, nbytes: int) -> None:
        self._len += nbytes
        buf, end = self._buf, self._len
        filled = end == len(buf)  # the kernel had more than there was room for
        at = 0
        try:
            while end - at >= 2:
                size, shift, i, whole = 0, 0, at + 1, False
                while i < end:  # the remaining length: 1 to 4 bytes, 7 bits each
                    byte = buf[i]
                    i += 1
                    size |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        whole = True
                        break
                    shift += 7
                    if shift > 21:
                        raise MqttError("malformed remaining length from the broker")
                if size > MAX_PACKET:
                    raise MqttError(f"a packet of {size} bytes from the broker")
                if not whole:
                    break
                if end - i < size:  # the rest of this packet is still on its way
                    if i - at + size > len(buf):  # and it is larger than the buffer
                        self._resize(at, i - at + size + MIN_READ)
                        return
                    break
                self._handle(buf[at], i, i + size)
                at = i + size
        except MqttError as err:
            self._len = 0
            self._fail(err)
            return
        if filled and len(buf) < READ_BUFFER:  # a burst: read more at a time
            self._resize(at, min(2 * len(buf), READ_BUFFER))
        elif at == end and nbytes <= MIN_READ // 2:
            # quiet (nothing pending, a small read): no buffer until the next read, so
            # thousands of idle connections hold none
            self._buf = bytearray()
            self._view = memoryview(self._buf)
            self._len = 0
        elif (
            at == end
            and len(buf) > MIN_READ
            and (_fit(nbytes) * 4 <= len(buf) or len(buf) > READ_BUFFER)
        ):
            # nothing pending, and this read was far smaller than the buffer (the burst is
            # over: an idle connection keeps only what its last read needed)
            self._resize(at, _fit(nbytes))
        elif at:  # what is left (part of a packet) moves to the front
            left = end - at
            if left:
                self._view[:left] = self._view[at:end]
            self._len = left

    def data_received(self, data: bytes) -> None:
        """Bytes as a plain protocol would get them (tests feed a stream this way)."""
        at = 0
        while at < len(data) and not self.closed.done():
            room = self.get_buffer(-1)
            n = min(len(room), len(data) - at)
            room[:n] = data[at : at + n]
            at += n
            self.buffer_updated(n)

    def _resize(self, at: int, size: int) -> None:
        """A new read buffer of ``size`` bytes holding the unparsed bytes from ``at``
        (a new one: asyncio may still hold a view of the old)."""
        left = self._len - at
        buf = bytearray(size)
        buf[:left] = self._view[at : self._len]
        self._buf, self._view, self._len = buf, memoryview(buf), left

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._out:
            self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(
            MqttError(f"connection lost: {exc}")
            if exc is not None
            else MqttError("the broker closed the connection")
        )

    # ------------------------------------------------------------ what the client does

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> asyncio.Future[bytes] | None:
        """Send a PUBLISH; at QoS 1 the future its PUBACK completes (None at QoS 0)."""
        self._check_open()
        head = _str(topic)
        ack = None
        if qos:
            mid = self._next_mid()
            ack = self._acks[mid] = self._loop.create_future()
            head += _U16.pack(mid)
        # the payload is queued as it is, joined with the rest once on the way out
        self._write(_header(0x30 | qos << 1, len(head) + len(payload)) + head)
        self._write(payload)
        return ack

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe and wait for the SUBACK; ``MqttError`` if the broker refused it."""
        self._check_open()
        mid = self._next_mid()
        ack = self._acks[mid] = self._loop.create_future()
        self._write(_packet(0x82, _U16.pack(mid) + _str(topic_filter) + bytes((qos,))))
        codes = await ack
        if not codes or codes[0] & 0x80:
            raise MqttError(f"the broker refused the subscription to {topic_filter}")

    async def unsubscribe(self, topic_filters: Sequence[str]) -> None:
        """Unsubscribe from ``topic_filters`` and wait for the UNSUBACK."""
        self._check_open()
        mid = self._next_mid()
        ack = self._acks[mid] = self._loop.create_future()
        body = _U16.pack(mid) + b"".join(_str(f) for f in topic_filters)
        self._write(_packet(UNSUBSCRIBE << 4 | 2, body))
        await ack

    def socket(self) -> Any:
        """The connection's socket as asyncio lends it (``setsockopt``/``getsockopt``),
        or None once closed."""
        transport = self._transport
        return transport.get_extra_info("socket") if transport is not None else None

    def disconnect(self) -> None:
        """End the session politely: DISCONNECT (the broker drops the will), then close."""
        self._ending = True
        if self._transport is not None:
            self._write(b"\xe0\x00")
            self._paused = False  # all of it to the transport, which sends it as it closes
            self._flush(whole=True)
            self._transport.close()

    def abort(self) -> None:
        """Drop the connection as a failing network would: no DISCONNECT, so the will
        fires, and ``closed`` ends with an error."""
        if self._transport is not None:
            self._transport.abort()

    # ------------------------------------------------------------ inside

    def _check_open(self) -> None:
        if self._transport is None or self.closed.done():
            raise MqttError("not connected")

    def _next_mid(self) -> int:
        if len(self._acks) >= 65535:  # every ID waits for its acknowledgement
            raise MqttError("65,535 messages in flight")
        for _ in range(65535):
            self._mid = self._mid % 65535 + 1
            if self._mid not in self._acks:
                return self._mid
        raise MqttError("65,535 messages in flight")

    def _write(self, data: bytes | memoryview) -> None:
        """Queue bytes; what one loop iteration queues leaves in one ``send`` (or in
        pieces as the transport takes them)."""
        if not self._flush_due and not self._paused:
            self._flush_due = True
            self._loop.call_soon(self._flush)
        self._out.append(data)
        self._out_bytes += len(data)

    def _flush(self, whole: bool = False) -> None:
        self._flush_due = False
        transport = self._transport
        out = self._out
        if transport is None or transport.is_closing():
            return
        while out and not self._paused:
            if whole or self._out_bytes <= WRITE_PIECE:
                piece = list(out)
                out.clear()
                self._out_bytes = 0
            else:
                piece, size = [], 0
                while out and size < WRITE_PIECE:
                    data = out.popleft()
                    piece.append(data)
                    size += len(data)
                self._out_bytes -= size
            transport.write(b"".join(piece) if len(piece) > 1 else piece[0])
            self._sent_at = self._loop.time()

    def _handle(self, first: int, start: int, end: int) -> None:
        """One packet: its first byte and where its body lies in the read buffer."""
        kind = first >> 4
        buf = self._buf
        if kind == PUBLISH:
            qos = (first >> 1) & 3
            if qos > 1:
                raise MqttError("a QoS 2 message from the broker (we subscribe at most at 1)")
            # the topic's length, the topic, and at QoS 1 the packet ID, within the packet
            at = start + 2 + (_U16.unpack_from(buf, start)[0] if end - start >= 2 else 0)
            if at + 2 * qos > end:
                raise MqttError("a short PUBLISH from the broker")
            try:
                topic = str(self._view[start + 2 : at], "utf-8")
            except UnicodeDecodeError:
                raise MqttError("a topic that is not UTF-8 from the broker") from None
            if qos:
                self._write(_PUBACK.pack(0x40, 2, _U16.unpack_from(buf, at)[0]))
                at += 2
            self.on_message(topic, bytes(self._view[at:end]))  # the one copy of a payload
        elif kind in (PUBACK, SUBACK, UNSUBACK):
            if end - start < 2:
                raise MqttError("a short acknowledgement from the broker")
            ack = self._acks.pop(_U16.unpack_from(buf, start)[0], None)
            if ack is not None and not ack.done():
                ack.set_result(bytes(self._view[start + 2 : end]))
        elif kind == PINGRESP:
            self._ping_at = None
        elif kind == CONNACK:
            if end - start < 2:
                raise MqttError("a short CONNACK from the broker")
            if not self._connack.done():
                self._connack.set_result(buf[start + 1])
        else:
            raise MqttError(f"an unexpected packet (type {kind}) from the broker")

    def _fail(self, err: MqttError) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            self._keeper = None
        if not self._connack.done():
            self._connack.set_exception(err)
            self._connack.exception()  # retrieved: open_connection reads it if waiting
        acks, self._acks = self._acks, {}
        for ack in acks.values():
            if not ack.done():
                ack.set_exception(err)
                ack.exception()  # retrieved: whoever waits for it reads it again
        if not self.closed.done():
            if self._ending:
                self.closed.set_result(None)
            else:
                self.closed.set_exception(err)
                self.closed.exception()  # retrieved: the owner may just see it done
        if self._transport is not None:
            self._transport.abort()

    def _keep_alive(self) -> None:
        """Every half keep-alive: PINGREQ if idle; no PINGRESP in a keep-alive: dead."""
        now = self._loop.time()
        if self._ping_at is not None and now - self._ping_at > self.keepalive:
            self._fail(MqttError(f"no PINGRESP within {self.keepalive} s"))
            return
        if self._ping_at is None and now - self._sent_at >= self.keepalive / 2:
            self._ping_at = now
            self._write(b"\xc0\x00")
        self._keeper = self._loop.call_later(self.keepalive / 2, self._keep_alive)


async def open_connection(
    host: str,
    port: int,
    *,
    client_id: str,
    on_message: Callable[[str, bytes], None],
    username: str | None = None,
    password: str | None = None,
    will: tuple[str, bytes, int] | None = None,
    keepalive: int = 30,
    clean_session: bool = True,
    timeout: float = 10.0,
) -> MqttConnection:
    """Connect and wait for the CONNACK (``timeout`` seconds in all). ``MqttRefused``
    when the broker refuses, ``MqttError`` (an ``OSError``) when it cannot be reached."""
    loop = asyncio.get_running_loop()
    conn = MqttConnection(on_message, keepalive)
    flags = 0x02 if clean_session else 0
    payload = _str(client_id)
    if will is not None:
        topic, message, qos = will
        flags |= 0x04 | qos << 3
        payload += _str(topic) + _str(message)
    if username is not None:
        flags |= 0x80
        payload += _str(username)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    header = _str("MQTT") + bytes((4, flags)) + _U16.pack(keepalive)
    try:
        async with asyncio.timeout(timeout):
            await loop.create_connection(lambda: conn, host, port)  # TCP_NODELAY: asyncio's
            conn._write(_packet(CONNECT << 4, header + payload))
            code = await asyncio.shield(conn._connack)
    except TimeoutError:
        conn.abort()
        raise MqttError(f"no CONNACK from {host}:{port} within {timeout:g} s") from None
    except BaseException:
        conn.abort()
        raise
    if code != 0:
        conn._ending = True
        conn.abort()
        raise MqttRefused(code)
    conn._sent_at = loop.time()
    if keepalive:
        conn._keeper = loop.call_later(keepalive / 2, conn._keep_alive)
    return conn
