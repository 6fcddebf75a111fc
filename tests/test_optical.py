"""The optical channel's physics: gain, ambient, noise, drift, absence, seeds, bad input.

Figures are computed here from the config's own parameters (not copied from the
module), so a change to the model that breaks its documented physics fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impfactory.errors import ImpFactoryError
from impfactory.hw.optical import (
    PRESETS,
    OpticalChannel,
    OpticalConfig,
    OpticalError,
    to_lightlevel,
)
from impfactory.protocol.blinkup import BlinkUpConfig, encode_frame
from impfactory.protocol.decoder import BlinkUpDecoder, DecodeResult
from impfactory.protocol.linecode import bilevel_symbols


def test_gain_follows_inverse_square_and_gaussian_beam() -> None:
    base = OpticalConfig(led_peak=0.8, reference_mm=5.0, beam_radius_mm=4.0)
    assert base.gain == pytest.approx(0.8)
    assert OpticalConfig(distance_mm=10.0).gain == pytest.approx(0.8 / 4)
    assert OpticalConfig(offset_mm=4.0).gain == pytest.approx(0.8 * math.exp(-1))
    # closer than the reference does not make the LED brighter than its peak
    assert OpticalConfig(distance_mm=1.0).gain == pytest.approx(0.8)
    assert OpticalConfig(present=False).gain == 0.0


def test_levels_match_gain_plus_ambient_without_noise() -> None:
    cfg = OpticalConfig(noise_rms=0.0, ambient=0.1, lead_s=0.1, tail_s=0.1)
    out = OpticalChannel(cfg, rng=1).transmit([1.0] * 100 + [0.0] * 100, 100.0)
    lit = out[int(0.15 * 1000): int(1.05 * 1000)]
    dark = out[int(1.15 * 1000): int(2.05 * 1000)]
    assert np.allclose(lit, 0.1 + cfg.gain)
    assert np.allclose(dark, 0.1)
    assert np.allclose(out[:90], 0.1)  # lead-in: LED dark


def test_sample_count_follows_drift() -> None:
    symbols = [1, 0] * 300  # 600 symbols at 60 Hz = 10 s on the fixture's clock
    for drift in (-0.05, 0.0, 0.05):
        cfg = OpticalConfig(drift=drift, lead_s=0.0, tail_s=0.0, noise_rms=0.0, ambient=0.0)
        out = OpticalChannel(cfg, rng=2).transmit(symbols, 60.0)
        expected = 10.0 / (1 + drift) * cfg.sample_rate
        assert abs(out.size - expected) <= 1
        # count transitions: one per symbol whatever the drift
        edges = np.count_nonzero(np.diff(out > cfg.gain / 2))
        assert abs(edges - (len(symbols) - 1)) <= 1


def test_noise_and_flicker_statistics() -> None:
    cfg = OpticalConfig(noise_rms=0.02, ambient=0.3, lead_s=5.0, tail_s=0.0)
    out = OpticalChannel(cfg, rng=3).idle(5.0)
    assert out.size == 5000
    assert out.mean() == pytest.approx(0.3, abs=0.003)
    assert out.std() == pytest.approx(0.02, rel=0.1)
    flick = OpticalConfig(noise_rms=0.0, ambient=0.3, flicker=0.5, flicker_hz=100.0)
    wave = OpticalChannel(flick, rng=4).idle(1.0)
    assert wave.max() == pytest.approx(0.45, abs=0.01)
    assert wave.min() == pytest.approx(0.15, abs=0.01)
    spectrum = np.abs(np.fft.rfft(wave - wave.mean()))
    assert np.argmax(spectrum) * 1000 / wave.size == pytest.approx(100.0, abs=1.0)


def test_sensor_clips_at_full_scale() -> None:
    cfg = OpticalConfig(ambient=0.9, noise_rms=0.05)
    out = OpticalChannel(cfg, rng=5).transmit([1] * 50, 60)
    assert out.max() == 1.0 and out.min() >= 0.0
    assert to_lightlevel(out).max() == 65535


def test_absent_dut_sees_no_trace_of_the_flash() -> None:
    cfg = PRESETS["absent"]
    symbols = [1, 0, 1, 1, 0, 0] * 40
    with_flash = OpticalChannel(cfg, rng=6).transmit(symbols, 60)
    without = OpticalChannel(cfg, rng=6).transmit([0] * len(symbols), 60)
    assert np.array_equal(with_flash, without)


def test_same_seed_same_samples_other_seed_differs() -> None:
    symbols = [1, 0, 0, 1] * 30
    a = OpticalChannel(PRESETS["typical"], rng=7).transmit(symbols, 142)
    b = OpticalChannel(PRESETS["typical"], rng=7).transmit(symbols, 142)
    c = OpticalChannel(PRESETS["typical"], rng=8).transmit(symbols, 142)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@settings(max_examples=60, deadline=None)
@given(
    symbols=st.lists(st.sampled_from([0.0, 1.0]), max_size=200),
    rate=st.sampled_from([60.0, 142.0]),
    drift=st.floats(-0.1, 0.1),
    noise=st.floats(0, 0.2),
    seed=st.integers(0, 2**32 - 1),
)
def test_output_is_always_a_valid_sensor_reading(
    symbols: list[float], rate: float, drift: float, noise: float, seed: int
) -> None:
    cfg = OpticalConfig(drift=drift, noise_rms=noise)
    out = OpticalChannel(cfg, rng=seed).transmit(symbols, rate)
    assert out.ndim == 1 and out.size > 0
    assert np.all((out >= 0) & (out <= 1))


@pytest.mark.parametrize(
    "kwargs",
    [{"distance_mm": 0}, {"offset_mm": -1}, {"ambient": 1.5}, {"drift": 0.7},
     {"noise_rms": float("nan")}, {"sample_rate": 0}, {"sample_rate": 1e9},
     {"tail_s": 1e9}, {"lead_s": -1}],
)
def test_bad_config_is_a_typed_error(kwargs: dict[str, float]) -> None:
    [name] = kwargs
    with pytest.raises(OpticalError, match=name):  # the message names the bad setting
        OpticalConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_symbols_and_rate_are_typed_errors() -> None:
    ch = OpticalChannel(rng=0)
    for symbols, rate in (([2.0], 60.0), ([[1, 0]], 60.0), ([1.0], 0.0), ([float("nan")], 60)):
        with pytest.raises(OpticalError):
            ch.transmit(symbols, rate)  # type: ignore[arg-type]


def test_spec_overrides_and_rejects_nonsense() -> None:
    cfg = OpticalConfig().with_spec("offset_mm=3, noise_rms=0.02,present=no")
    assert (cfg.offset_mm, cfg.noise_rms, cfg.present) == (3.0, 0.02, False)
    for spec in ("colour=red", "noise_rms", "noise_rms=loud", "present=maybe", "drift=2"):
        with pytest.raises(ImpFactoryError):
            OpticalConfig().with_spec(spec)


# ----------------------------------------------------------------- through the decoder


_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)
_hex16 = st.text("0123456789abcdef", min_size=16, max_size=16)


def _decoded(cfg: OpticalConfig, blinkup: BlinkUpConfig, rate: float, seed: int) -> list[object]:
    samples = OpticalChannel(cfg, rng=seed).transmit(bilevel_symbols(encode_frame(blinkup)), rate)
    return BlinkUpDecoder(cfg.sample_rate, "bilevel").feed(samples)


@settings(max_examples=25, deadline=None)
@given(ssid=_text, password=_text, plan=_hex16, token=_hex16,
       rate=st.sampled_from([60.0, 142.0]), drift=st.floats(-0.05, 0.05),
       ambient=st.floats(0.0, 0.15), offset=st.floats(0.0, 2.0), seed=st.integers(0, 2**31))
def test_a_dut_in_place_decodes(ssid: str, password: str, plan: str, token: str, rate: float,
                                drift: float, ambient: float, offset: float, seed: int) -> None:
    blinkup = BlinkUpConfig(ssid=ssid.encode(), password=password.encode(), plan_id=plan,
                            token=token)
    cfg = OpticalConfig(drift=drift, ambient=ambient, offset_mm=offset, noise_rms=0.01)
    outcomes = _decoded(cfg, blinkup, rate, seed)
    results = [o for o in outcomes if isinstance(o, DecodeResult)]
    assert len(results) == 1, outcomes
    assert results[0].config == blinkup


@settings(max_examples=25, deadline=None)
@given(plan=_hex16, token=_hex16, rate=st.sampled_from([60.0, 142.0]),
       preset=st.sampled_from(["absent", "misplaced"]), seed=st.integers(0, 2**31))
def test_an_absent_or_misplaced_dut_never_decodes(plan: str, token: str, rate: float,
                                                  preset: str, seed: int) -> None:
    blinkup = BlinkUpConfig(ssid=b"factory", password=b"secret", plan_id=plan, token=token)
    outcomes = _decoded(PRESETS[preset], blinkup, rate, seed)
    assert not any(isinstance(o, DecodeResult) for o in outcomes)
