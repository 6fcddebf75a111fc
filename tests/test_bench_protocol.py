"""The bench serial protocol: COBS, CRC, every frame type, and hostile streams.

Golden vectors come from outside the code under test: the COBS examples are the
ones Cheshire and Baker's paper and its common references use, and the CRC check
value is the catalogue's one for CRC-16/CCITT-FALSE ("123456789" → 0x29B1).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impfactory.protocol import bench as b

u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
text = st.text(max_size=40).filter(lambda s: len(s.encode()) < 256)

MESSAGES: dict[type[b.Message], st.SearchStrategy[b.Message]] = {
    b.Identify: st.just(b.Identify()),
    b.Identity: st.builds(b.Identity, u8, text, text, u16, u16),
    b.LightOut: st.builds(b.LightOut, u32, u8, u32, st.binary(max_size=1000)),
    b.LightOutDone: st.builds(b.LightOutDone, u32),
    b.LightInStart: st.builds(b.LightInStart, u32),
    b.LightInSamples: st.builds(
        b.LightInSamples, u32, st.lists(u16, max_size=500).map(tuple)
    ),
    b.StatusStart: st.builds(b.StatusStart, u32),
    b.StatusSamples: st.builds(
        b.StatusSamples, u32, st.lists(st.binary(min_size=3, max_size=3), max_size=300).map(tuple)
    ),
    b.StreamStop: st.builds(b.StreamStop, st.sampled_from(list(b.Stream))),
    b.Power: st.builds(b.Power, st.integers(0, 1)),
    b.Button: st.builds(b.Button, u16),
    b.UartConfig: st.builds(b.UartConfig, u32),
    b.UartTx: st.builds(b.UartTx, st.binary(max_size=1024)),
    b.UartRx: st.builds(b.UartRx, st.binary(max_size=1024)),
    b.Ack: st.builds(b.Ack, u8),
    b.Error: st.builds(b.Error, u8, text),
}
any_message = st.one_of(*MESSAGES.values())
packets = st.builds(b.Packet, u8, any_message)


def test_every_frame_type_has_a_strategy() -> None:
    assert set(MESSAGES) == set(b.MESSAGES.values())


@pytest.mark.parametrize(
    ("raw", "stuffed"),
    [
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
        (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
        (bytes(range(0, 255)), b"\x01\xff" + bytes(range(1, 255))),
        (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
        (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
        (bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
    ],
)
def test_cobs_golden_vectors(raw: bytes, stuffed: bytes) -> None:
    assert b.cobs_encode(raw) == stuffed
    assert b.cobs_decode(stuffed) == raw


@given(st.binary(max_size=2000))
@settings(max_examples=200, deadline=None)
def test_cobs_round_trip_has_no_zero(data: bytes) -> None:
    stuffed = b.cobs_encode(data)
    assert 0 not in stuffed
    assert len(stuffed) <= len(data) + len(data) // 254 + 1
    assert b.cobs_decode(stuffed) == data


@pytest.mark.parametrize("bad", [b"", b"\x05\x11", b"\x02\x00", b"\x03\x11\x00"])
def test_cobs_rejects_broken_blocks(bad: bytes) -> None:
    with pytest.raises(b.BenchFramingError):
        b.cobs_decode(bad)


def test_crc_is_ccitt_false_and_sent_high_byte_first() -> None:
    body = b.encode_body(7, b.Identify())
    # VER TYPE SEQ, then CRC-16/CCITT-FALSE of those three bytes, computed by hand
    crc = 0xFFFF
    for byte in b"\x01\x01\x07":
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    assert body == b"\x01\x01\x07" + crc.to_bytes(2, "big")
    assert b._crc16(b"123456789") == 0x29B1


def test_golden_ack_frame() -> None:
    # ACK of a POWER request with seq 9: body 01 40 09 06 + CRC, COBS, delimiter
    body = b.encode_body(9, b.Ack(of=b.FrameType.POWER))
    assert body[:4] == b"\x01\x40\x09\x06"
    assert b.encode(9, b.Ack(of=b.FrameType.POWER)) == bytes([len(body) + 1]) + body + b"\x00"


@given(packets)
@settings(max_examples=300, deadline=None)
def test_every_frame_round_trips(packet: b.Packet) -> None:
    wire = b.encode(packet.seq, packet.message)
    assert wire.count(0) == 1 and wire.endswith(b"\x00")
    assert b.decode(wire) == packet
    body = b.encode_body(packet.seq, packet.message)
    assert b.encode_body(packet.seq, b.decode_body(body).message) == body


@given(packets, st.integers(0, 10_000), u8)
@settings(max_examples=300, deadline=None)
def test_any_single_byte_error_is_caught(packet: b.Packet, where: int, flip: int) -> None:
    body = bytearray(b.encode_body(packet.seq, packet.message))
    i = where % len(body)
    body[i] ^= flip or 1
    with pytest.raises(b.BenchProtocolError):
        b.decode_body(bytes(body))


def test_wrong_version_unknown_type_and_trailing_bytes_are_typed_errors() -> None:
    def framed(head: bytes) -> bytes:
        return head + b._crc16(head).to_bytes(2, "big")

    with pytest.raises(b.BenchVersionError):
        b.decode_body(framed(b"\x02\x01\x01"))
    with pytest.raises(b.BenchPayloadError, match="unknown frame type"):
        b.decode_body(framed(b"\x01\x7e\x01"))
    with pytest.raises(b.BenchPayloadError):
        b.decode_body(framed(b"\x01\x06\x01\x01\x00"))  # POWER with a byte too many
    with pytest.raises(b.BenchPayloadError):
        b.decode_body(framed(b"\x01\x84\x01\x00\x00\x00\x00\x01\x02"))  # RGB cut short
    with pytest.raises(b.BenchPayloadError):
        b.decode_body(framed(b"\x01\x81\x01\x01\x05ab"))  # name longer than the frame


def test_payloads_beyond_the_limit_or_out_of_range_are_refused() -> None:
    with pytest.raises(b.BenchPayloadError):
        b.encode(1, b.UartTx(b"x" * (b.MAX_PAYLOAD + 1)))
    with pytest.raises(b.BenchPayloadError):
        b.encode(1, b.Button(70_000))
    with pytest.raises(b.BenchPayloadError):
        b.encode(256, b.Identify())
    with pytest.raises(b.BenchPayloadError):
        b.rate_to_mhz(0)
    assert b.rate_to_mhz(142.857) == 142857


def _chunkings(data: bytes) -> list[list[bytes]]:
    half = len(data) // 2
    return [[data], [data[:half], data[half:]], [data[i : i + 1] for i in range(len(data))]]


garbage = st.binary(max_size=40).map(lambda g: g.replace(b"\x00", b"\x55"))


@given(st.lists(packets, min_size=1, max_size=5), garbage, garbage, garbage)
@settings(max_examples=100, deadline=None)
def test_decoder_in_any_chunking_with_garbage_around(
    sent: list[b.Packet], before: bytes, inside: bytes, after: bytes
) -> None:
    """Garbage before, between (as its own delimited run) and after the frames."""
    frames = [b.encode(p.seq, p.message) for p in sent]
    stream = before + b"\x00" + frames[0] + inside + b"\x00" + b"".join(frames[1:]) + after
    for chunks in _chunkings(stream):
        decoder = b.FrameDecoder()
        got = [item for chunk in chunks for item in decoder.feed(chunk)]
        packets_out = [item for item in got if isinstance(item, b.Packet)]
        assert packets_out == sent
        assert decoder.faults == bool(before) + bool(inside)
        # bytes after the last delimiter wait for the next one
        assert decoder.pending() == len(after)


@given(st.lists(packets, min_size=3, max_size=6), st.data())
@settings(max_examples=100, deadline=None)
def test_decoder_resyncs_after_a_dropped_or_corrupted_byte(
    sent: list[b.Packet], data: st.DataObject
) -> None:
    frames = [b.encode(p.seq, p.message) for p in sent]
    victim = data.draw(st.integers(0, len(frames) - 1))
    damaged = bytearray(frames[victim])
    pos = data.draw(st.integers(0, len(damaged) - 2))  # keep the delimiter
    if data.draw(st.booleans()):
        del damaged[pos]
    else:
        damaged[pos] ^= data.draw(st.integers(1, 255))
        if damaged[pos] == 0:
            damaged[pos] = 0x5A if frames[victim][pos] != 0x5A else 0xA5
    frames[victim] = bytes(damaged)
    decoder = b.FrameDecoder()
    got = decoder.feed(b"".join(frames))
    packets_out = [item for item in got if isinstance(item, b.Packet)]
    assert packets_out == sent[:victim] + sent[victim + 1 :]
    assert decoder.faults == 1


def test_overlong_run_without_delimiter_is_one_fault_then_resync() -> None:
    decoder = b.FrameDecoder()
    got = decoder.feed(b"\x07" * (b.MAX_ENCODED * 3))
    assert got == []
    assert decoder.pending() <= b.MAX_ENCODED
    good = b.encode(3, b.Power(1))
    got = decoder.feed(b"\x00" + good)
    assert [type(x) for x in got] == [b.Fault, b.Packet]
    assert got[1] == b.Packet(3, b.Power(1))


def test_back_to_back_delimiters_are_idle_not_faults() -> None:
    decoder = b.FrameDecoder()
    assert decoder.feed(b"\x00\x00\x00") == []
    assert decoder.faults == 0
