"""The CFAx33KL LCD model against Electric Imp's CFAx33KL library, over a 19200-baud UART.

Golden CRCs come from outside the model: ``library_crc`` is the library's ``_crc``
and ``_s16tou16`` written out line for line, cross-checked with crcmod's X-25 and
the catalogue's check value for "123456789". Packets in these tests are built
with that function, never with the model's code.

``Library`` ports the library's transmit queue and receive state machine
(``_enqueue``, ``_transmitNextInQueue``, ``_transmit``, ``_uartReceive``,
``_processIncomingByte``, ``_processPacket``): it sends the next packet only
after the display answers the last, so the fixture's banner reaching ``lines``
proves the model answers every packet as the library expects.
"""

from __future__ import annotations

import itertools
from typing import Any

import crcmod.predefined
import pytest
from hypothesis import given
from hypothesis import strategies as st

from impfactory.clock import VirtualClock
from impfactory.hw.peripherals import UART, CfaX33Kl, Host, PacketDecoder, crc16
from impfactory.hw.peripherals.uart import NO_CTSRTS, PARITY_NONE

BLANK = " " * 16


def library_crc(data: bytes | list[int]) -> int:
    """CFAx33KL.device.lib.nut ``_crc`` then ``_s16tou16``, literally."""
    crc = 0xFFFF
    for byte in data:
        value = byte
        for _ in range(8):
            if (crc ^ value) & 0x01:  # noqa: SIM108 (kept as the library writes it)
                crc = (crc >> 1) ^ 0x8408
            else:
                crc = crc >> 1
            value >>= 1
    b = ~crc
    return (((b >> 8) & 0xFF) << 8) + (b & 0xFF)


def frame(command: int, data: bytes = b"") -> bytes:
    body = bytes([command, len(data)]) + data
    return body + library_crc(body).to_bytes(2, "little")


X25 = crcmod.predefined.mkCrcFun("x-25")


def test_crc_golden_vectors() -> None:
    assert library_crc(b"123456789") == 0x906E  # CRC-16/X-25 check value
    assert crc16(b"123456789") == 0x906E
    # the library's clearAll() packet, and an ACK the display sends back
    assert frame(0x06) == b"\x06\x00" + library_crc(b"\x06\x00").to_bytes(2, "little")
    assert crc16(b"\x06\x00") == library_crc(b"\x06\x00") == X25(b"\x06\x00")


@given(st.binary(max_size=40))
def test_crc_agrees_with_the_library_and_crcmod(data: bytes) -> None:
    assert crc16(data) == library_crc(data) == X25(data)


class Library:
    """CFAx33KL.device.lib.nut's queue and receive state machine, ported."""

    def __init__(self, uart: UART) -> None:
        self.uart = uart
        uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS, self._uart_receive)
        self.queue: list[dict[str, Any]] = []
        self.active: dict[str, Any] | None = None
        self.state = 0
        self.rx: dict[str, Any] = {}
        self.results: list[tuple[int, dict[str, Any]]] = []
        self.keys: list[int] = []
        self.errors: list[str] = []

    def set_text(self, x: int, y: int, text: str) -> None:
        text = text[: 16 - x]
        self._enqueue(0x1F, [x, y, *text.encode("latin-1")])

    def set_line1(self, text: str) -> None:
        self.set_text(0, 0, BLANK)
        self.set_text(0, 0, text)

    def set_line2(self, text: str) -> None:
        self.set_text(0, 1, BLANK)
        self.set_text(0, 1, text)

    def clear_all(self) -> None:
        self._enqueue(0x06, [])

    def set_brightness(self, value: int) -> None:
        self._enqueue(0x0E, [max(0, min(100, value))])

    def store_boot_state(self) -> None:
        self._enqueue(0x04, [])

    def get_version(self) -> None:
        self._enqueue(0x01, [])

    def _enqueue(self, command: int, data: list[int]) -> None:
        self.queue.append({"command": command, "dataLength": len(data), "data": data})
        if self.active is None:
            self._next()

    def _next(self) -> None:
        if self.queue:
            self.active = self.queue.pop(0)
            self.uart.write(frame(self.active["command"], bytes(self.active["data"])))

    def _uart_receive(self) -> None:
        while (byte := self.uart.read()) != -1:
            self._byte(byte)

    def _byte(self, byte: int) -> None:
        if self.state == 0:
            self.rx = {"command": byte}
            self.state = 1
        elif self.state == 1:
            self.rx["dataLength"], self.rx["data"] = byte, []
            self.state = 2 if byte > 0 else 3
        elif self.state == 2:
            self.rx["data"].append(byte)
            if len(self.rx["data"]) >= self.rx["dataLength"]:
                self.state = 3
        elif self.state == 3:
            self.rx["crc"] = byte
            self.state = 4
        else:
            self.rx["crc"] = (byte << 8) + self.rx["crc"]
            self.state = 0
            self._packet(self.rx)

    def _done(self, result: dict[str, Any]) -> None:
        assert self.active is not None
        self.results.append((self.active["command"], result))
        self.active = None
        self._next()

    def _packet(self, packet: dict[str, Any]) -> None:
        body = [packet["command"], packet["dataLength"], *packet["data"]]
        if library_crc(body) != packet["crc"]:
            if self.active is not None:
                self._done({"err": "Received packet failed CRC"})
            return
        kind = packet["command"] >> 6
        if kind == 1 and self.active is not None:
            if packet["command"] & 0x3F == self.active["command"]:
                self._done({"msg": packet["data"]})
            else:
                self.errors.append("Packet ACK sequencing error")
                self.active = None
                self._next()
        if kind == 2 and packet["command"] == 0x80 and packet["dataLength"] == 1:
            self.keys.append(packet["data"][0])
        if kind == 3 and self.active is not None:
            if self.active["command"] == 0x1F and self.active["dataLength"] == 2:
                self._done({"msg": self.active["data"]})
            else:
                self._done({"err": "Transmitted packet was invalid"})


def setup(baud: int = 19200) -> tuple[VirtualClock, UART, CfaX33Kl]:
    clock = VirtualClock()
    uart = UART("uart2", Host(clock), baud_range=(9160, 4_000_000), min_fifo=80)
    lcd = CfaX33Kl(clock)
    uart.attach(lcd)
    return clock, uart, lcd


def test_the_fixture_banner_reaches_the_screen_packet_by_packet() -> None:
    clock, uart, lcd = setup()
    lib = Library(uart)
    # BootFactoryFixture.setDisplay(FIXTURE_BANNER), then brightness and boot state
    lib.clear_all()
    lib.set_line1("Electric Imp")
    lib.set_line2("Factory Example")
    lib.set_brightness(100)
    lib.store_boot_state()
    assert lcd.lines == ("Crystalfontz    ", "CFA533-TMI-KL   ")  # nothing has arrived yet
    clock.advance_sync(1.0)
    assert lcd.lines == ("Electric Imp    ", "Factory Example ")
    assert [cmd for cmd, _ in lib.results] == [0x06, 0x1F, 0x1F, 0x1F, 0x1F, 0x0E, 0x04]
    assert all(result == {"msg": []} for _, result in lib.results)
    assert lib.queue == [] and lib.active is None and lib.errors == []
    assert lcd.backlight == (100, 100)


def test_each_command_is_acked_with_0x40_or_its_code_after_the_response_delay() -> None:
    clock, uart, lcd = setup()
    got: list[bytes] = []
    uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS)
    uart.write(frame(0x06))
    packet_time = 4 * 10 / 19200
    clock.advance_sync(packet_time + lcd.response_delay - 1e-6)
    assert uart.readblob() == b""
    clock.advance_sync(packet_time + 1e-5)
    got.append(uart.readblob())
    assert got == [frame(0x46)]


def test_the_version_is_sixteen_characters() -> None:
    clock, uart, _ = setup()
    lib = Library(uart)
    lib.get_version()
    clock.advance_sync(0.1)
    (command, result), = lib.results
    assert command == 0x01 and len(result["msg"]) == 16
    assert bytes(result["msg"]).startswith(b"CFA533")


@pytest.mark.parametrize(("packet", "reply_type"), [
    (frame(0x1F, b"\x00\x01"), 0xC0),  # text with no characters
    (frame(0x1F, b"\x00\x02abc"), 0xC0),  # row 2
    (frame(0x0E, b"\x65"), 0xC0),  # backlight 101
    (frame(0x3E), 0xC0),  # a command the display does not have
    (frame(0x00, b"echo"), 0x40),  # ping
])
def test_illegal_content_gets_an_error_response(packet: bytes, reply_type: int) -> None:
    clock, uart, _ = setup()
    uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS)
    uart.write(packet)
    clock.advance_sync(0.1)
    reply = uart.readblob()
    assert reply[0] == reply_type | packet[0]
    assert reply == frame(reply[0], packet[2:-2] if reply_type == 0x40 else b"")


def test_the_library_treats_an_empty_text_error_as_success() -> None:
    clock, uart, lcd = setup()
    lib = Library(uart)
    lib.set_text(0, 0, "")
    clock.advance_sync(0.1)
    assert lib.results == [(0x1F, {"msg": [0, 0]})]
    assert lcd.lines[0] == "Crystalfontz    "


def test_a_bad_crc_is_not_answered_and_the_next_packet_is() -> None:
    clock, uart, lcd = setup()
    uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS)
    bad = bytearray(frame(0x1F, b"\x00\x00XXXX"))
    bad[-1] ^= 0xFF
    uart.write(bytes(bad) + frame(0x1F, b"\x00\x00ok"))
    clock.advance_sync(0.1)
    assert uart.readblob() == frame(0x5F)
    assert lcd.lines[0].startswith("okystalfontz")
    assert lcd.decoder.bad >= 1


@given(garbage=st.binary(max_size=8), cuts=st.lists(st.integers(0, 60), max_size=6))
def test_the_decoder_finds_the_packets_in_any_chunking_and_after_garbage(
        garbage: bytes, cuts: list[int]) -> None:
    packets = [frame(0x1F, b"\x00\x00Electric Imp"), frame(0x06), frame(0x0E, b"\x32")]
    stream = b"".join(packets)
    decoder = PacketDecoder()
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    decoder.feed(garbage + b"\x00")  # garbage, then a byte that cannot start a long frame
    found = []
    for start, end in itertools.pairwise(points):
        found += decoder.feed(stream[start:end])
    assert [p.build() for p in found][-3:] == packets


def test_keys_are_reported_and_the_library_sees_exit_release() -> None:
    clock, uart, lcd = setup()
    lib = Library(uart)
    lcd.press("EXIT")
    lcd.release("exit")
    lcd.release("EXIT")  # not pressed any more: nothing to report
    clock.advance_sync(0.1)
    assert lib.keys == [6, 12]  # CFAx33KL_KEY_EXIT_PRESS, CFAx33KL_KEY_EXIT_RELEASE


def test_key_reporting_masks_and_polling() -> None:
    clock, uart, lcd = setup()
    uart.configure(19200, 8, PARITY_NONE, 1, NO_CTSRTS)
    uart.write(frame(0x17, b"\x00\x04"))  # report EXIT releases only
    clock.advance_sync(0.1)
    assert uart.readblob() == frame(0x57)
    lcd.press("EXIT")
    lcd.press("UP")
    clock.advance_sync(0.1)
    assert uart.readblob() == b""
    lcd.release("EXIT")
    clock.advance_sync(0.1)
    assert uart.readblob() == frame(0x80, b"\x0c")
    uart.write(frame(0x18))
    clock.advance_sync(0.1)
    # held: UP; pressed since the last poll: UP and EXIT; released since: EXIT
    assert uart.readblob() == frame(0x58, b"\x01\x05\x04")


def test_the_boot_state_survives_a_power_cycle() -> None:
    clock, uart, lcd = setup()
    lib = Library(uart)
    lib.clear_all()
    lib.set_line1("Booted")
    lib.store_boot_state()
    lib.set_line1("Changed")
    clock.advance_sync(1.0)
    assert lcd.lines[0] == "Changed         "
    lcd.power_cycle()
    assert lcd.lines == ("Booted          ", BLANK)


def test_a_display_that_never_acks_stalls_the_library() -> None:
    clock, uart, lcd = setup()
    lcd.set_fault("no_ack")
    lib = Library(uart)
    lib.set_line1("Electric Imp")
    clock.advance_sync(1.0)
    assert lib.results == [] and lib.active is not None and len(lib.queue) == 1
    assert lcd.lines[0] == BLANK  # the first packet (the blank line) was shown


def test_a_display_answering_bad_crcs_fails_the_callback() -> None:
    clock, uart, lcd = setup()
    lcd.set_fault("bad_crc")
    lib = Library(uart)
    lib.clear_all()
    clock.advance_sync(0.1)
    assert lib.results == [(0x06, {"err": "Received packet failed CRC"})]


def test_a_uart_at_the_wrong_baud_gets_no_answer() -> None:
    clock, uart, lcd = setup()
    uart.configure(9600, 8, PARITY_NONE, 1, NO_CTSRTS)
    uart.write(frame(0x1F, b"\x00\x00Hello"))
    clock.advance_sync(0.2)
    assert uart.readblob() == b""
    assert lcd.lines[0] == "Crystalfontz    "
