"""Line codes: the symbols each code makes of a frame (the bi-level one exactly as
docs/blinkup.md draws it), and how the light model renders them into samples."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impfactory.protocol.blinkup import BlinkUpConfig, encode_frame
from impfactory.protocol.linecode import (
    BILEVEL_FAST_RATE,
    BILEVEL_RATE,
    BILEVEL_RUN_LIMIT,
    BILEVEL_WHITENING,
    GREY,
    LightModel,
    LineCodeError,
    Signal,
    bilevel_check,
    bilevel_destuff,
    bilevel_symbols,
    bilevel_whiten,
    drop_and_repeat,
    render_bilevel,
    render_symbols,
    render_trilevel,
    trilevel_levels,
)

FULL = BlinkUpConfig(ssid=b"F" * 32, password=b"p" * 63, plan_id="0123456789abcdef",
                     token="fedcba9876543210")


def runs_of(symbols: list[int]) -> list[int]:
    return [len(list(group)) for _, group in itertools.groupby(symbols)]


def to_bytes(bits: list[int]) -> bytes:
    return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def test_bilevel_layout_sync_run_start_word_then_data() -> None:
    frame = encode_frame(BlinkUpConfig(clear=True))
    symbols = bilevel_symbols(frame)
    assert symbols[:48] == [1, 0] * 24  # the preamble 00 00 00: a max/min sync run
    assert symbols[48:56] == [0, 0, 1, 1, 0, 1, 0, 0]  # the magic 2A: the start word
    # LEN 02 = 0000 0010, XOR PN9 0000 0111 = 0000 0101, a stuffed 1 after four dark
    # symbols: as docs/blinkup.md draws it
    assert symbols[56:65] == [0, 0, 1, 0, 0, 0, 1, 0, 1]
    # then the packet 02 07 00 1D 41 and its line check, whitened and stuffed
    data = bilevel_destuff(symbols[56:])
    assert data.violations == []
    payload = to_bytes(bilevel_whiten(data.bits))
    assert payload == bytes.fromhex("0207001d41") + bilevel_check(bytes.fromhex("0207001d41"))


def test_the_line_check_is_crc16_ccitt() -> None:
    assert bilevel_check(b"123456789") == bytes.fromhex("29b1")  # CRC-16/CCITT-FALSE check


def test_whitening_is_pn9() -> None:
    pn = BILEVEL_WHITENING
    assert "".join(map(str, pn[:32])) == "00000111101111100010111001100100"
    assert pn[:511] == pn[511:1022]  # a maximal-length sequence: period 2^9 - 1
    assert sum(pn[:511]) == 256
    assert bilevel_whiten(bilevel_whiten([1, 0, 1, 1])) == [1, 0, 1, 1]


def test_a_frame_without_the_preamble_has_no_bilevel_form() -> None:
    with pytest.raises(LineCodeError, match="preamble"):
        bilevel_symbols(b"\x00\x00\x00\x2b\x02\x07\x00\x1d\x41")


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=32), st.binary(max_size=64))
def test_bilevel_runs_are_short_and_stuffing_undoes(ssid: bytes, password: bytes) -> None:
    frame = encode_frame(BlinkUpConfig(ssid=ssid, password=password))
    symbols = bilevel_symbols(frame)
    # from the start word on, light or dark never lasts longer than the run limit
    # (the sync run's last dark symbol and the start word's first two make 3)
    assert max(runs_of(symbols[47:])) <= BILEVEL_RUN_LIMIT
    data = bilevel_destuff(symbols[56:])
    assert data.violations == []
    bits = bilevel_whiten(data.bits)
    assert len(bits) == 8 * (len(frame) - 4 + 2)
    packet = to_bytes(bits)
    assert packet == frame[4:] + bilevel_check(frame[4:])


def test_a_full_payload_flashes_in_well_under_10_s() -> None:
    # 32-character SSID, 63-character password, enrolment: 124-byte frame. Manchester
    # (two symbols a bit) took 14.0 s at 142 Hz; one symbol a bit, stuffed, 7.8 s.
    seconds = len(bilevel_symbols(encode_frame(FULL))) / BILEVEL_FAST_RATE
    assert 7.0 < seconds < 8.0
    assert len(bilevel_symbols(encode_frame(FULL))) / BILEVEL_RATE < 19.0


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([b"\x00", b"\xff", b"@", b"0", b"p", b"\x55"]),
       st.binary(min_size=16, max_size=16), st.booleans())
def test_any_full_payload_takes_about_the_same_time(
    fill: bytes, enrol: bytes, hexkey: bool
) -> None:
    # the whitening makes even all-00 or all-FF bytes look random to the stuffing:
    # whatever a full payload carries (a 64-character hex key too), it flashes in
    # under 8.2 s at 142 Hz
    cfg = BlinkUpConfig(ssid=fill * 32, password=fill * (64 if hexkey else 63),
                        plan_id=enrol[:8].hex(), token=enrol[8:].hex())
    assert len(bilevel_symbols(encode_frame(cfg))) / BILEVEL_FAST_RATE < 8.2


def test_drop_and_repeat_slips_the_sampler() -> None:
    x = np.arange(100_000, dtype=np.float64)
    y = drop_and_repeat(x, 0.01, 0.02, seed=1)
    assert len(y) == pytest.approx(len(x) * 1.01, rel=0.01)
    assert np.all(np.diff(y) >= 0)  # in order: only repeated (step 0) or dropped (> 1)
    assert np.mean(np.diff(y) == 0.0) == pytest.approx(0.02, abs=0.003)
    assert 1 - len(np.unique(y)) / len(x) == pytest.approx(0.01, abs=0.003)
    assert np.array_equal(drop_and_repeat(x, 0.0, 0.0, seed=1), x)
    with pytest.raises(LineCodeError, match="drop"):
        drop_and_repeat(x, 0.9, 0.0, seed=1)


def test_trilevel_per_imp_facts() -> None:
    levels = trilevel_levels(b"\x80")
    assert levels[:4] == [0.0, 1.0, 0.0, GREY]
    assert len(levels) == 16 + 6
    assert levels[-6:] == [0.0] * 6
    assert pytest.approx(0xBF / 0xFF) == GREY


def test_render_maps_levels_through_the_light_model() -> None:
    sig = render_symbols(
        [1, 0, 1], symbol_rate=100.0, sample_rate=1000.0,
        light=LightModel(gain=0.3, ambient=0.2), lead=0.0, tail=0.0,
    )
    assert len(sig) == 30
    assert sig.duration == pytest.approx(0.03)
    assert np.allclose(sig.samples[:10], 0.5) and np.allclose(sig.samples[10:20], 0.2)


def test_render_clips_to_sensor_range() -> None:
    sig = render_symbols([1, 0], symbol_rate=10.0, light=LightModel(gain=1.0, ambient=0.5))
    assert sig.samples.max() == 1.0
    unclipped = render_symbols(
        [1, 0], symbol_rate=10.0, light=LightModel(gain=1.0, ambient=0.5, clip=False)
    )
    assert unclipped.samples.max() == 1.5


def test_clock_error_stretches_or_shrinks_the_signal() -> None:
    frame = encode_frame(BlinkUpConfig(clear=True))
    base = render_bilevel(frame, symbol_rate=100.0, lead=0, tail=0)
    fast = render_bilevel(frame, symbol_rate=100.0, lead=0, tail=0, clock_error=0.05)
    assert len(fast) == math.ceil(len(base) / 1.05)


def test_active_low_inverts_and_idles_lit() -> None:
    frame = encode_frame(BlinkUpConfig(clear=True))
    high = render_bilevel(frame, symbol_rate=50.0)
    low = render_bilevel(frame, symbol_rate=50.0, active_high=False)
    assert np.allclose(high.samples + low.samples, 1.0)
    assert low.samples[0] == 1.0


def test_trilevel_render_levels() -> None:
    sig = render_trilevel(b"\x80", frame_rate=50.0, lead=0, tail=0)
    assert set(np.round(sig.samples, 4)) == {0.0, 1.0, round(GREY, 4)}


def test_noise_is_reproducible_from_its_seed() -> None:
    frame = encode_frame(BlinkUpConfig(clear=True))
    a = render_bilevel(frame, noise=0.05, seed=7)
    b = render_bilevel(frame, noise=0.05, seed=7)
    c = render_bilevel(frame, noise=0.05, seed=8)
    assert np.array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)
    clean = render_bilevel(frame)
    assert 0.03 < float(np.std(a.samples - clean.samples)) < 0.07


def test_bad_rates_are_typed_errors() -> None:
    with pytest.raises(LineCodeError):
        render_symbols([1], symbol_rate=0.0)
    with pytest.raises(LineCodeError):
        render_symbols([1], symbol_rate=10.0, clock_error=0.9)
    with pytest.raises(LineCodeError):
        Signal(np.zeros(3), 0.0)


@pytest.mark.parametrize(
    "bad",
    [
        {"sample_rate": math.nan},
        {"symbol_rate": math.inf},
        {"noise": -0.1},
        {"noise": math.nan},
        {"lead": -1.0},
        {"tail": math.inf},
        {"phase": math.nan},
        {"light": LightModel(gain=math.inf)},
        {"sample_rate": 1e12},  # would need terabytes: refused, not attempted
    ],
)
def test_render_refuses_nonsense_with_a_typed_error(bad: dict[str, object]) -> None:
    kwargs: dict[str, object] = {"symbol_rate": 60.0, **bad}
    with pytest.raises(LineCodeError) as err:
        render_symbols([1.0, 0.0], **kwargs)  # type: ignore[arg-type]
    [field] = bad  # the error names the one argument that is wrong
    assert err.value.field == field
