"""The BlinkUp packet: golden vectors, round trips over every payload kind, and a
typed error for every way a frame can be wrong."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impfactory.errors import ImpFactoryError
from impfactory.protocol.blinkup import (
    BadCRCError,
    BadHexFieldError,
    BadLengthError,
    BadPreambleError,
    BlinkUpConfig,
    BlinkUpError,
    BlinkUpValueError,
    DuplicateTLVError,
    EmptyPacketError,
    ProxyConfig,
    StaticNetwork,
    TruncatedError,
    UnknownTLVError,
    ValueTooLongError,
    decode_frame,
    encode_frame,
)
from impfactory.protocol.crc16 import crc16


def crc_bitwise(data: bytes) -> int:
    """An independent rendering of IMP_FACTS §1: the table entry computed on the fly."""
    crc = 0
    for b in data:
        index = ((crc >> 8) ^ b) & 0xFF
        entry = index
        for _ in range(8):
            entry = (entry >> 1) ^ (0xA001 if entry & 1 else 0)
        crc = ((crc << 8) & 0xFFFF) ^ entry
    return crc


def frame_by_hand(body: bytes) -> bytes:
    crc = crc_bitwise(body)
    return b"\x00\x00\x00\x2a" + body + bytes([crc >> 8, crc & 0xFF])


# ----------------------------------------------------------------- golden vectors


def test_crc_check_value() -> None:
    assert crc16(b"\x02\x07\x00") == 0x1D41


def test_clear_configuration_frame() -> None:
    assert encode_frame(BlinkUpConfig(clear=True)) == bytes.fromhex("0000002a0207001d41")
    assert decode_frame(bytes.fromhex("0000002a0207001d41")) == BlinkUpConfig(clear=True)


def test_enrolment_is_little_endian_on_the_wire() -> None:
    cfg = BlinkUpConfig(
        ssid=b"Factory", password=b"secret", plan_id="0123456789abcdef", token="fedcba9876543210"
    )
    body = (
        bytes([2 + 7 + 2 + 6 + 2 + 16])
        + b"\x01\x07Factory"
        + b"\x06\x06secret"
        + b"\x05\x10"
        + bytes.fromhex("efcdab8967452301")
        + bytes.fromhex("1032547698badcfe")
    )
    assert encode_frame(cfg) == frame_by_hand(body)
    assert decode_frame(frame_by_hand(body)) == cfg


def test_static_network_and_proxy_layout() -> None:
    cfg = BlinkUpConfig(
        ssid=b"n",
        static_network=StaticNetwork("192.168.1.20", "255.255.255.0", "192.168.1.1", "1.1.1.1"),
        proxy=ProxyConfig("px", 0x1F90, "u", "p"),
    )
    body = (
        b"\x01\x01n"
        + b"\x06\x00"  # no password: the SDK still sends an empty one
        + b"\x0b\x10"
        + bytes([192, 168, 1, 20, 255, 255, 255, 0, 192, 168, 1, 1, 1, 1, 1, 1])
        + b"\x0d\x09\x90\x1f\x02px\x01u\x01p"
    )
    assert encode_frame(cfg) == frame_by_hand(bytes([len(body)]) + body)


def test_crc_table_matches_independent_implementation() -> None:
    data = bytes(range(256)) * 2
    assert crc16(data) == crc_bitwise(data)


# ----------------------------------------------------------------- round trips

hex16 = st.text("0123456789abcdef", min_size=16, max_size=16)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
short_text = st.text(max_size=40).filter(lambda s: len(s.encode()) <= 80)


@st.composite
def configs(draw: st.DrawFn) -> BlinkUpConfig:
    ssid = draw(st.none() | st.binary(max_size=32))
    password = draw(st.none() | st.binary(max_size=64)) if ssid else None
    enrol = draw(st.none() | st.tuples(hex16, hex16))
    static = draw(
        st.none()
        | st.builds(StaticNetwork, ipv4, ipv4, ipv4, ipv4, st.none() | ipv4)
    )
    proxy = draw(st.none() | st.builds(ProxyConfig, short_text, st.integers(0, 65535)))
    cfg = BlinkUpConfig(
        ssid=ssid,
        password=password,
        plan_id=enrol[0] if enrol else None,
        token=enrol[1] if enrol else None,
        static_network=static,
        proxy=proxy,
        clear=draw(st.booleans()),
    )
    return cfg


@settings(max_examples=300, deadline=None)
@given(configs())
def test_round_trip_every_payload_kind(cfg: BlinkUpConfig) -> None:
    try:
        frame = encode_frame(cfg)
    except ValueTooLongError as err:
        assert err.field == "packet"
        return
    except EmptyPacketError:
        assert cfg == BlinkUpConfig()
        return
    assert decode_frame(frame) == cfg
    assert encode_frame(decode_frame(frame)) == frame
    assert frame[4] == len(frame) - 7


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=32), st.binary(min_size=1, max_size=64))
def test_ssid_and_password_any_bytes_any_length(ssid: bytes, password: bytes) -> None:
    cfg = BlinkUpConfig(ssid=ssid or b"x", password=password)
    assert decode_frame(encode_frame(cfg)) == cfg


def test_non_ascii_text_round_trips_as_utf8() -> None:
    cfg = BlinkUpConfig(ssid="Café ☕", password="pässwörd")
    assert cfg.ssid == "Café ☕".encode()
    out = decode_frame(encode_frame(cfg))
    assert out.to_json()["ssid"] == "Café ☕"


def test_proxy_username_and_password_optional() -> None:
    for proxy in (ProxyConfig("h", 1), ProxyConfig("h", 1, "u"), ProxyConfig("h", 1, "", "")):
        cfg = BlinkUpConfig(proxy=proxy)
        assert decode_frame(encode_frame(cfg)) == cfg


# ----------------------------------------------------------------- edge cases as the SDK
# writes them (FlashPacket.js: the password TLV always follows a non-empty SSID, an
# empty SSID writes no WiFi TLV, empty proxy credentials are skipped)


def test_ssid_without_password_sends_an_empty_password_tlv() -> None:
    frame = encode_frame(BlinkUpConfig(ssid=b"net"))
    assert frame == frame_by_hand(b"\x07\x01\x03net\x06\x00")
    assert decode_frame(frame) == BlinkUpConfig(ssid=b"net", password=b"")
    assert BlinkUpConfig(ssid="net") == BlinkUpConfig(ssid="net", password="")


def test_empty_ssid_sends_no_wifi_tlvs() -> None:
    enrol = {"plan_id": "0123456789abcdef", "token": "fedcba9876543210"}
    frame = encode_frame(BlinkUpConfig(ssid=b"", **enrol))
    assert frame == frame_by_hand(
        b"\x12\x05\x10" + bytes.fromhex("efcdab8967452301") + bytes.fromhex("1032547698badcfe")
    )
    assert BlinkUpConfig(ssid="", **enrol) == BlinkUpConfig(**enrol)
    assert decode_frame(frame).ssid is None


def test_empty_proxy_credentials_are_left_out() -> None:
    frame = encode_frame(BlinkUpConfig(proxy=ProxyConfig("px", 8080, "", "")))
    assert frame == frame_by_hand(b"\x07\x0d\x05\x90\x1f\x02px")
    with_user = encode_frame(BlinkUpConfig(proxy=ProxyConfig("px", 8080, "u", "")))
    assert with_user == frame_by_hand(b"\x09\x0d\x07\x90\x1f\x02px\x01u")


def test_the_empty_packet_is_not_a_blinkup() -> None:
    empty = bytes.fromhex("0000002a000000")
    assert empty == frame_by_hand(b"\x00")  # a well-formed frame (CRC 0000) with LEN 0
    with pytest.raises(EmptyPacketError) as info:
        decode_frame(empty)
    assert info.value.field == "LEN"
    assert isinstance(info.value, BadLengthError)
    with pytest.raises(EmptyPacketError) as info:
        encode_frame(BlinkUpConfig())
    assert info.value.field == "packet"
    with pytest.raises(EmptyPacketError):
        encode_frame(BlinkUpConfig(ssid=b""))


# ----------------------------------------------------------------- typed errors


def test_errors_are_typed_and_inherit_value_error() -> None:
    assert issubclass(BlinkUpError, ImpFactoryError)
    assert issubclass(BlinkUpError, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"ssid": b"x" * 33}, ValueTooLongError, "ssid"),
        ({"ssid": b"x", "password": b"p" * 65}, ValueTooLongError, "password"),
        ({"plan_id": "0123", "token": "0" * 16}, BadHexFieldError, "plan_id"),
        ({"plan_id": "0" * 16, "token": "g" * 16}, BadHexFieldError, "token"),
        ({"plan_id": "0" * 16}, BlinkUpValueError, "enrolment"),
        ({"password": b"p"}, BlinkUpValueError, "password"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict[str, object], error: type, field: str) -> None:
    with pytest.raises(error) as info:
        BlinkUpConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field in str(info.value)


def test_bad_static_address_and_proxy_port() -> None:
    with pytest.raises(BlinkUpValueError, match=r"static_network\.gateway"):
        StaticNetwork("1.2.3.4", "255.0.0.0", "1.2.3.999", "8.8.8.8")
    with pytest.raises(BlinkUpValueError, match="port"):
        ProxyConfig("h", 70000)


def test_packet_over_255_bytes() -> None:
    cfg = BlinkUpConfig(
        ssid=b"s" * 32, password=b"p" * 64, proxy=ProxyConfig("x" * 160, 80)
    )
    with pytest.raises(ValueTooLongError) as info:
        encode_frame(cfg)
    assert info.value.field == "packet"


GOOD = encode_frame(BlinkUpConfig(ssid=b"net", password=b"pw", plan_id="1" * 16, token="2" * 16))


def test_bad_crc() -> None:
    bad = GOOD[:-1] + bytes([GOOD[-1] ^ 1])
    with pytest.raises(BadCRCError) as info:
        decode_frame(bad)
    assert info.value.field == "crc"
    assert info.value.received != info.value.expected


def test_bad_preamble() -> None:
    with pytest.raises(BadPreambleError):
        decode_frame(b"\x00\x00\x01\x2a" + GOOD[4:])


@pytest.mark.parametrize("cut", [0, 3, 4, 5, 10, len(GOOD) - 2, len(GOOD) - 1])
def test_truncated_everywhere(cut: int) -> None:
    with pytest.raises(TruncatedError):
        decode_frame(GOOD[:cut])


def test_trailing_bytes_are_a_bad_length() -> None:
    with pytest.raises(BadLengthError, match="LEN"):
        decode_frame(GOOD + b"\x00")


def test_unknown_tlv() -> None:
    with pytest.raises(UnknownTLVError) as info:
        decode_frame(frame_by_hand(b"\x03\x63\x01\x00"))
    assert info.value.tlv_type == 0x63


def test_tlv_length_past_len() -> None:
    with pytest.raises(BadLengthError, match="ssid"):
        decode_frame(frame_by_hand(b"\x05\x01\x05abc"))


def test_enrolment_wrong_size() -> None:
    with pytest.raises(BadLengthError, match="enrolment"):
        decode_frame(frame_by_hand(b"\x11\x05\x0f" + b"\x00" * 15))


def test_ssid_too_long_on_the_wire() -> None:
    with pytest.raises(ValueTooLongError, match="ssid"):
        decode_frame(frame_by_hand(b"\x23\x01\x21" + b"s" * 33))


def test_duplicate_tlv() -> None:
    with pytest.raises(DuplicateTLVError):
        decode_frame(frame_by_hand(b"\x06\x01\x01a\x01\x01b"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_config_or_a_typed_error(data: bytes) -> None:
    for candidate in (data, b"\x00\x00\x00\x2a" + data, frame_by_hand(data[:255])):
        with contextlib.suppress(BlinkUpError):
            decode_frame(candidate)
