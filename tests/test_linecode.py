"""Line codes: the symbols each code makes of a frame, and how the light model
renders them into samples."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from impfactory.protocol.linecode import (
    GREY,
    LightModel,
    LineCodeError,
    Signal,
    bilevel_symbols,
    render_bilevel,
    render_symbols,
    render_trilevel,
    trilevel_levels,
)


def test_bilevel_is_manchester_msb_first() -> None:
    assert bilevel_symbols(b"\x00") == [1, 0] * 8
    assert bilevel_symbols(b"\xff") == [0, 1] * 8
    # 0x2A = 0010 1010: 0 -> on,off and 1 -> off,on
    assert bilevel_symbols(b"\x2a") == [1, 0, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0]


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_bilevel_has_a_mid_bit_transition_and_no_run_over_two(frame: bytes) -> None:
    symbols = bilevel_symbols(frame)
    assert len(symbols) == 16 * len(frame)
    pairs = list(zip(symbols[::2], symbols[1::2], strict=True))
    assert all(a != b for a, b in pairs)  # every bit is DC balanced
    runs = [len(list(group)) for _, group in itertools.groupby(symbols)]
    assert max(runs, default=0) <= 2


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
    frame = b"\x00" * 10
    base = render_bilevel(frame, symbol_rate=100.0, lead=0, tail=0)
    fast = render_bilevel(frame, symbol_rate=100.0, lead=0, tail=0, clock_error=0.05)
    assert len(fast) == math.ceil(len(base) / 1.05)


def test_active_low_inverts_and_idles_lit() -> None:
    frame = b"\x2a"
    high = render_bilevel(frame, symbol_rate=50.0)
    low = render_bilevel(frame, symbol_rate=50.0, active_high=False)
    assert np.allclose(high.samples + low.samples, 1.0)
    assert low.samples[0] == 1.0


def test_trilevel_render_levels() -> None:
    sig = render_trilevel(b"\x80", frame_rate=50.0, lead=0, tail=0)
    assert set(np.round(sig.samples, 4)) == {0.0, 1.0, round(GREY, 4)}


def test_noise_is_reproducible_from_its_seed() -> None:
    a = render_bilevel(b"\x12\x34", noise=0.05, seed=7)
    b = render_bilevel(b"\x12\x34", noise=0.05, seed=7)
    c = render_bilevel(b"\x12\x34", noise=0.05, seed=8)
    assert np.array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)
    clean = render_bilevel(b"\x12\x34")
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
