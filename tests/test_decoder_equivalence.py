"""The decoder decides exactly as it did before its per-chunk work was cut.

protocol/decoder.py slices a chunk with two comparisons and a ``bytes.find`` per
flip, times edges with one comparison (numpy for many at once), filters into its
history in place, and runs the bi-level symbol loop with the data stage inlined;
tests/decoder_reference.py is the decoder before that (a Python crossing walk per
edge, a method call per data symbol, numpy's wrappers for medians and means). On
random impaired streams (noise up to a quarter of the swing, clock error, a
slipping sampler, garbage, cut receptions, either line code and polarity) fed in
random chunks, both give the same outcomes: the same types and messages, frames,
failed data, and every measurement (positions, periods, thresholds, bit starts) to
the last bit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import decoder_reference as reference
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from impfactory.protocol import decoder as vectorised
from impfactory.protocol.blinkup import BlinkUpConfig, encode_frame
from impfactory.protocol.linecode import (
    LightModel,
    drop_and_repeat,
    render_bilevel,
    render_trilevel,
)


def _key(outcome: Any) -> tuple[Any, ...]:
    stats = dataclasses.asdict(outcome.stats) if outcome.stats is not None else None
    return (type(outcome).__name__, str(outcome), stats, getattr(outcome, "frame", None),
            getattr(outcome, "data", None))


def _decode(module: Any, code: str, samples: np.ndarray, chunks: list[int]) -> list[Any]:
    decoder = module.BlinkUpDecoder(1000.0, code)
    out: list[Any] = []
    pos = 0
    for size in chunks:
        out += decoder.feed(samples[pos : pos + size])
        pos += size
    out += decoder.feed(samples[pos:]) + decoder.flush()
    return [_key(o) for o in out]


def _stream(seed: int, code: str) -> np.ndarray:
    """One or two receptions, each with random impairments, between stretches of
    uniform noise."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(int(rng.integers(1, 3))):
        cfg = BlinkUpConfig(ssid=rng.bytes(int(rng.integers(1, 20))),
                            password=rng.bytes(int(rng.integers(0, 12))))
        swing = float(rng.uniform(0.1, 0.6))
        impair: dict[str, Any] = {
            "light": LightModel(gain=swing, ambient=float(rng.uniform(0.0, 0.3))),
            "noise": float(rng.uniform(0.0, 0.25)) * swing, "seed": rng,
            "phase": float(rng.random()), "clock_error": float(rng.uniform(-0.05, 0.05)),
        }
        if code == "bilevel":
            signal = render_bilevel(encode_frame(cfg),
                                    symbol_rate=float(rng.choice([60.0, 142.0])),
                                    active_high=bool(rng.random() < 0.8), **impair)
        else:
            signal = render_trilevel(encode_frame(cfg), **impair)
        x = signal.samples
        if rng.random() < 0.4:
            x = drop_and_repeat(x, 0.01, 0.01, rng)
        x = x.copy()
        for _ in range(int(rng.integers(0, 3))):
            a = int(rng.integers(0, len(x)))
            b = min(len(x), a + int(rng.integers(1, 300)))
            x[a:b] = rng.uniform(-0.2, 1.2, b - a)
        if rng.random() < 0.3:
            cut = int(rng.integers(0, len(x)))
            x = x[:cut] if rng.random() < 0.5 else x[cut:]
        parts += [x, rng.uniform(0.0, 1.0, int(rng.integers(0, 400)))]
    return np.concatenate(parts)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["bilevel", "bilevel", "bilevel", "trilevel"]),
    st.lists(st.integers(1, 1500), max_size=12) | st.lists(st.integers(1, 80), max_size=60),
)
def test_same_outcomes_as_the_per_symbol_decoder(
    seed: int, code: str, chunks: list[int]
) -> None:
    samples = _stream(seed, code)
    assert _decode(vectorised, code, samples, chunks) == _decode(
        reference, code, samples, chunks
    )

