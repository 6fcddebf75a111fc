"""Crystalfontz CFA533/CFA633 serial LCD with keypad, speaking its packet protocol.

The Factory BlinkUp Box shows its banner and each DUT's result on a CFA533-TMI-KL
at 19200 8N1; Electric Imp's CFAx33KL library drives it. Every packet, both ways::

    | type:2 code:6 | length (0..22) | data ... | CRC lo | CRC hi |
    type 0 = command (host -> LCD)      1 = response (0x40 | code)
         2 = report (LCD -> host, 0x80 key activity)
         3 = error response (0xC0 | code: valid packet, illegal content)

    CRC: CRC-16, reflected polynomial 0x8408, initial 0xFFFF, result inverted
    (CRC-16/X-25), over type, length and data; sent low byte first.

Commands modelled (CFA533 numbering): 0 ping (echoes), 1 version (16 characters),
4 store boot state, 5 reboot (data 8, 18, 99), 6 clear, 13 contrast, 14 backlight
(one or two values 0..100), 23 key reporting masks, 24 poll keypad, 31 send text
(column 0..15, row 0..1, 1..16 characters). Each valid command is answered
``response_delay`` after its last byte arrives; a command with illegal content
(text with no characters, row 2, backlight 101, an unknown code) gets an error
response, which the library reads as such. A packet whose CRC is wrong is
discarded without an answer, as the datasheet says of malformed packets, and the
decoder resynchronises on the next byte, so garbage before or inside a stream
costs only the damaged packet.

Keys pressed on the keypad (``press``/``release``) are reported as 0x80 packets
with the key code (UP 1 ... EXIT 6 pressed, +6 released). ``lines`` is what the
two 16-character rows show, for the DUT record and the report.

Faults: ``no_ack`` (it updates the display but never answers), ``bad_crc`` (every
answer carries a wrong CRC). Not modelled: the CGRAM, cursor, user flash, fans
and temperature sensors of the CFA633, and baud rates other than 19200.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from impfactory.clock import Clock

from .errors import PeripheralConfigError
from .faults import Faultable, FaultSpec
from .uart import LineSettings, SendFn

MAX_DATA = 22
WIDTH, ROWS = 16, 2
BAUD = 19200


def crc16(data: bytes) -> int:
    """CRC-16/X-25 of ``data``: reflected 0x8408, init 0xFFFF, final inversion."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


class PacketType(enum.IntEnum):
    COMMAND = 0
    RESPONSE = 1
    REPORT = 2
    ERROR = 3


class Command(enum.IntEnum):
    PING = 0
    GET_VERSION = 1
    STORE_BOOT_STATE = 4
    REBOOT = 5
    CLEAR = 6
    SET_CONTRAST = 13
    SET_BACKLIGHT = 14
    KEY_REPORTING = 23
    POLL_KEYPAD = 24
    SEND_TEXT = 31


KEY_ACTIVITY = 0x80
KEYS = ("UP", "DOWN", "LEFT", "RIGHT", "ENTER", "EXIT")
#: Key bits of the keypad masks (commands 23, 24), as the CFA533 numbers them.
KEY_BITS = {"UP": 0x01, "ENTER": 0x02, "EXIT": 0x04, "LEFT": 0x08, "RIGHT": 0x10,
            "DOWN": 0x20}


@dataclass(frozen=True)
class Packet:
    """One packet: ``code`` (0..63), its ``type`` and up to 22 data bytes."""

    type: PacketType
    code: int
    data: bytes = b""

    @property
    def command_byte(self) -> int:
        return (int(self.type) << 6) | self.code

    def build(self) -> bytes:
        if not 0 <= self.code < 64 or len(self.data) > MAX_DATA:
            raise PeripheralConfigError(f"CFAx33KL packet: code {self.code} with "
                                        f"{len(self.data)} data bytes cannot be sent")
        body = bytes([self.command_byte, len(self.data)]) + self.data
        return body + crc16(body).to_bytes(2, "little")


@dataclass
class PacketDecoder:
    """Packets out of a byte stream fed in any chunks; bad CRCs are skipped a byte at a time."""

    buffer: bytearray = field(default_factory=bytearray)
    bad: int = 0

    def feed(self, data: bytes) -> list[Packet]:
        self.buffer += data
        found = []
        while len(self.buffer) >= 2:
            length = self.buffer[1]
            if length > MAX_DATA:
                self._skip()
                continue
            size = 2 + length + 2
            if len(self.buffer) < size:
                break
            frame = bytes(self.buffer[:size])
            if crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
                self._skip()
                continue
            del self.buffer[:size]
            found.append(Packet(PacketType(frame[0] >> 6), frame[0] & 0x3F, frame[2:-2]))
        return found

    def _skip(self) -> None:
        self.bad += 1
        del self.buffer[:1]


@dataclass
class _State:
    rows: list[bytearray]
    backlight: tuple[int, int] = (100, 100)
    contrast: int = 16

    def copy(self) -> _State:
        return _State([bytearray(r) for r in self.rows], self.backlight, self.contrast)


def _blank() -> list[bytearray]:
    return [bytearray(b" " * WIDTH) for _ in range(ROWS)]


class CfaX33Kl(Faultable):
    """A CFA533-TMI-KL on a UART (the peer of ``hardware.uart2`` on the fixture)."""

    FAULTS: ClassVar[Mapping[str, FaultSpec]] = {
        "no_ack": FaultSpec("the display updates but never answers a command"),
        "bad_crc": FaultSpec("every answer carries a wrong CRC"),
    }

    def __init__(self, clock: Clock, response_delay: float = 0.002,
                 version: str = "CFA533:h1.4,k1.9",
                 boot_lines: tuple[str, str] = ("Crystalfontz", "CFA533-TMI-KL")) -> None:
        super().__init__()
        if len(version) != 16:
            raise PeripheralConfigError(f"CFAx33KL: version {version!r} must be 16 characters")
        self.clock = clock
        self.line = LineSettings(BAUD)
        self.response_delay = response_delay
        self.version = version
        self.decoder = PacketDecoder()
        self.received: list[Packet] = []
        self.sent: list[Packet] = []
        self.key_press_mask = self.key_release_mask = 0x3F
        self._held: set[str] = set()
        self._pressed_since: set[str] = set()
        self._released_since: set[str] = set()
        self._send: SendFn = lambda data: None
        self.watchers: list[Callable[[tuple[str, str]], None]] = []
        """Called with the new ``lines`` whenever what the display shows changes."""
        rows = _blank()
        for row, text in enumerate(boot_lines):
            rows[row][: len(text[:WIDTH])] = text[:WIDTH].encode("latin-1")
        self._boot = _State(rows)
        self._state = self._boot.copy()
        self._handlers: dict[int, Callable[[bytes], bytes | None]] = {
            Command.PING: lambda data: data,
            Command.GET_VERSION: lambda data: self.version.encode("latin-1"),
            Command.STORE_BOOT_STATE: self._store_boot,
            Command.REBOOT: self._reboot,
            Command.CLEAR: self._clear,
            Command.SET_CONTRAST: self._contrast,
            Command.SET_BACKLIGHT: self._backlight,
            Command.KEY_REPORTING: self._key_reporting,
            Command.POLL_KEYPAD: self._poll,
            Command.SEND_TEXT: self._text,
        }

    # --- what a person sees and does ---------------------------------------------------

    @property
    def lines(self) -> tuple[str, str]:
        """The two rows as shown, 16 characters each."""
        first, second = (bytes(r).decode("latin-1") for r in self._state.rows)
        return first, second

    @property
    def backlight(self) -> tuple[int, int]:
        """(LCD, keypad) backlight, 0..100."""
        return self._state.backlight

    @property
    def contrast(self) -> int:
        return self._state.contrast

    def press(self, key: str) -> None:
        self._key(key, pressed=True)

    def release(self, key: str) -> None:
        self._key(key, pressed=False)

    def power_cycle(self) -> None:
        """Power off and on: the screen shows the stored boot state."""
        self._state = self._boot.copy()
        self.decoder = PacketDecoder()

    # --- UartPeer --------------------------------------------------------------------

    def attach(self, send: SendFn) -> None:
        self._send = send

    def receive(self, data: bytes) -> None:
        for packet in self.decoder.feed(data):
            self.received.append(packet)
            if packet.type is not PacketType.COMMAND:
                continue  # only a host sends commands; anything else is ignored
            shown = self.lines
            answer = self._execute(packet)
            if self.watchers and self.lines != shown:
                for watcher in list(self.watchers):
                    watcher(self.lines)
            if not self.fault("no_ack"):
                self._reply(answer)

    # --- commands ----------------------------------------------------------------------

    def _execute(self, packet: Packet) -> Packet:
        handler = self._handlers.get(packet.code)
        result = handler(packet.data) if handler is not None else None
        if result is None:
            return Packet(PacketType.ERROR, packet.code)
        return Packet(PacketType.RESPONSE, packet.code, result)

    def _text(self, data: bytes) -> bytes | None:
        if len(data) < 3 or data[0] >= WIDTH or data[1] >= ROWS:
            return None
        col, row, text = data[0], data[1], data[2:][: WIDTH - data[0]]
        self._state.rows[row][col: col + len(text)] = text
        return b""

    def _clear(self, data: bytes) -> bytes | None:
        self._state.rows = _blank()
        return b""

    def _store_boot(self, data: bytes) -> bytes | None:
        self._boot = self._state.copy()
        return b""

    def _reboot(self, data: bytes) -> bytes | None:
        if data != bytes([8, 18, 99]):
            return None
        self.clock.call_later(self.response_delay * 2, self.power_cycle)
        return b""

    def _contrast(self, data: bytes) -> bytes | None:
        if len(data) not in (1, 2) or (len(data) == 1 and data[0] > 50):
            return None
        self._state.contrast = data[0]
        return b""

    def _backlight(self, data: bytes) -> bytes | None:
        if len(data) not in (1, 2) or any(v > 100 for v in data):
            return None
        self._state.backlight = (data[0], data[-1])
        return b""

    def _key_reporting(self, data: bytes) -> bytes | None:
        if len(data) != 2 or any(v > 0x3F for v in data):
            return None
        self.key_press_mask, self.key_release_mask = data[0], data[1]
        return b""

    def _poll(self, data: bytes) -> bytes | None:
        def mask(keys: set[str]) -> int:
            return sum(KEY_BITS[k] for k in keys)

        answer = bytes([mask(self._held), mask(self._pressed_since), mask(self._released_since)])
        self._pressed_since.clear()
        self._released_since.clear()
        return answer

    # --- the wire -----------------------------------------------------------------------

    def _key(self, key: str, pressed: bool) -> None:
        name = key.upper()
        if name not in KEYS:
            raise PeripheralConfigError(f"CFAx33KL: unknown key {key!r}; keys: {', '.join(KEYS)}")
        if pressed == (name in self._held):
            return
        (self._held.add if pressed else self._held.discard)(name)
        (self._pressed_since if pressed else self._released_since).add(name)
        mask = self.key_press_mask if pressed else self.key_release_mask
        if mask & KEY_BITS[name]:
            code = KEYS.index(name) + 1 + (0 if pressed else len(KEYS))
            self._send_now(Packet(PacketType.REPORT, 0, bytes([code])))

    def _reply(self, packet: Packet) -> None:
        self.clock.call_later(self.response_delay, lambda: self._send_now(packet))

    def _send_now(self, packet: Packet) -> None:
        self.sent.append(packet)
        frame = packet.build()
        if self.fault("bad_crc"):
            frame = frame[:-2] + bytes([frame[-2] ^ 0xFF, frame[-1]])
        self._send(frame)
