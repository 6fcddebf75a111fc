"""The decoder decides exactly as it did before its per-chunk work was cut, and the
same however the stream is cut.

protocol/decoder.py slices a chunk with two comparisons and a ``bytes.find`` per
flip, times edges with one comparison (numpy for many at once), filters into its
history in place, and runs the bi-level symbol loop with the data stage inlined;
tests/decoder_reference.py is the decoder before that (a Python crossing walk per
edge, a method call per data symbol, numpy's wrappers for medians and means), kept
frozen. On random impaired streams (noise up to a quarter of the swing, clock error,
a slipping sampler, garbage, cut receptions, either line code and polarity), both
give the same outcomes: the same types and messages, frames, failed data, and every
measurement (positions, periods, thresholds, bit starts) to the last bit.

The reference itself was not chunk-independent (about one tri-level stream in six
decoded differently whole and in 7-sample chunks, bi-level hardly ever): at the end
of a feed it decided as if no edge could come before the feed's last sample, though
an edge sliced in the next feed is timed up to EDGE_REACH samples earlier; and a
reception whose end was noticed in a later feed resumed the sync search at that
feed's start, skipping the samples after its end. The decoder now decides at a
feed's end only what no later edge can change and resumes the search where the
reception ended. So the reference is the oracle *fed whole* (where the second cause
cannot arise), with its end-of-feed decisions held back as far as the fix holds
them (they differ only within the last EDGE_REACH samples of a stream), and the
decoder is fed in random chunks. The decoder's own chunk independence is checked
directly too: whole against random chunkings, and the streams that showed it.

Where the extension is built, the bi-level receiver's loops, the idle slicer and the
sync runs' means run compiled (protocol/_bilevel.c); the Python loops stay as the
fallback. Both are held to the reference here, and to each other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import decoder_reference as reference
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from impfactory.protocol import bilevel_kernel
from impfactory.protocol import decoder as vectorised
from impfactory.protocol.blinkup import BlinkUpConfig, encode_frame
from impfactory.protocol.decoder import BlinkUpDecoder as Decoder
from impfactory.protocol.linecode import (
    LightModel,
    drop_and_repeat,
    render_bilevel,
    render_trilevel,
)
from impfactory.protocol.screen import DISPLAY_RATES, SDK_FRAME_RATES, Screen
from impfactory.tools.perf_decoder import random_full_payload


def _key(outcome: Any) -> tuple[Any, ...]:
    stats = dataclasses.asdict(outcome.stats) if outcome.stats is not None else None
    return (
        type(outcome).__name__,
        str(outcome),
        stats,
        getattr(outcome, "frame", None),
        getattr(outcome, "data", None),
    )


class _HeldBack(reference.BlinkUpDecoder):
    """The reference deciding at the end of a feed only what the decoder decides there:
    what no edge timed EDGE_REACH samples before the feed's end can change (the
    reference decided bi-level symbols a sample before it, tri-level runs at it)."""

    def _end_of_chunk(self, now: int) -> None:
        held = now - vectorised.EDGE_REACH
        super()._end_of_chunk(held + 1 if self._soft else held)


@contextlib.contextmanager
def _compiled(on: bool) -> Iterator[None]:
    """Decoders made inside run the compiled loops (``on``, where built) or Python's."""
    before = vectorised.COMPILED
    vectorised.COMPILED = before and on
    try:
        yield
    finally:
        vectorised.COMPILED = before


def _decode(decoder_class: Any, code: str, samples: np.ndarray, chunks: list[int]) -> list[Any]:
    decoder = decoder_class(1000.0, code)
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
        cfg = BlinkUpConfig(
            ssid=rng.bytes(int(rng.integers(1, 20))), password=rng.bytes(int(rng.integers(0, 12)))
        )
        swing = float(rng.uniform(0.1, 0.6))
        impair: dict[str, Any] = {
            "light": LightModel(gain=swing, ambient=float(rng.uniform(0.0, 0.3))),
            "noise": float(rng.uniform(0.0, 0.25)) * swing,
            "seed": rng,
            "phase": float(rng.random()),
            "clock_error": float(rng.uniform(-0.05, 0.05)),
        }
        if code == "bilevel":
            signal = render_bilevel(
                encode_frame(cfg),
                symbol_rate=float(rng.choice([60.0, 142.0])),
                active_high=bool(rng.random() < 0.8),
                **impair,
            )
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


def _cut(samples: np.ndarray, sizes: list[int]) -> list[int]:
    """Chunk sizes that cut the whole stream, ``sizes`` over and over."""
    chunks: list[int] = []
    total = 0
    while total < samples.shape[0]:
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(size)
        total += size
    return chunks


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["bilevel", "bilevel", "bilevel", "trilevel"]),
    st.lists(st.integers(1, 1500), max_size=12) | st.lists(st.integers(1, 80), max_size=60),
)
def test_same_outcomes_as_the_per_symbol_decoder(seed: int, code: str, chunks: list[int]) -> None:
    samples = _stream(seed, code)
    expected = _decode(_HeldBack, code, samples, [samples.shape[0]])
    for compiled in (True, False):
        with _compiled(compiled):
            assert _decode(Decoder, code, samples, chunks) == expected


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["bilevel", "trilevel"]),
    st.lists(st.integers(1, 2000), min_size=1, max_size=6)
    | st.lists(st.integers(1, 40), min_size=1, max_size=6),
)
def test_any_chunking_decodes_as_the_whole_stream(seed: int, code: str, sizes: list[int]) -> None:
    """The compiled decoder in chunks, Python's whole: the same."""
    samples = _stream(seed, code)
    with _compiled(False):
        whole = _decode(Decoder, code, samples, [samples.shape[0]])
    assert _decode(Decoder, code, samples, _cut(samples, sizes)) == whole


@pytest.mark.parametrize("seed", [36, 35, 52])
def test_the_streams_that_decoded_differently_in_chunks_now_do_not(seed: int) -> None:
    """Tri-level streams the old decoder decoded differently whole and in 7-sample
    chunks: seed 36 lost sync whole and failed its CRC in chunks, 35 lost sync 25
    samples apart, 52 read a different corrupt frame."""
    samples = _stream(seed, "trilevel")
    assert _decode(Decoder, "trilevel", samples, _cut(samples, [7])) == _decode(
        Decoder, "trilevel", samples, [samples.shape[0]]
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 2**32 - 1),
    st.booleans(),
    st.lists(st.integers(1, 1500), max_size=12) | st.lists(st.integers(1, 60), max_size=60),
)
def test_the_compiled_tri_level_runs_decide_as_python_does(
    seed: int, paced: bool, chunks: list[int]
) -> None:
    """The tri-level runs' timing in C (``tri_runs``) against the Python loop it
    replaces: impaired streams, or full payloads paced as the SDK paces them on a
    noisy screen with dropped refreshes (the runs last whole refreshes); the same
    outcomes to the last bit, in any chunks."""
    if paced:
        rng = np.random.default_rng(seed)
        swing = float(rng.uniform(0.1, 0.8))
        samples = render_trilevel(
            encode_frame(random_full_payload(rng)),
            frame_rate=float(rng.choice(SDK_FRAME_RATES)),
            screen=Screen(float(rng.choice(DISPLAY_RATES)), 0.001, float(rng.uniform(0, 0.02)),
                          "srgb"),
            light=LightModel(gain=swing, ambient=float(rng.uniform(0, 1 - swing))),
            noise=float(rng.uniform(0.0, 0.15)) * swing, seed=rng, phase=float(rng.random()),
        ).samples
    else:
        samples = _stream(seed, "trilevel")
    with _compiled(False):
        python = _decode(Decoder, "trilevel", samples, chunks)
    with _compiled(True):
        assert _decode(Decoder, "trilevel", samples, chunks) == python


def test_the_tri_level_means_are_pythons_sum_to_the_last_bit() -> None:
    """A run's mean light is ``sum(inner) / len(inner)`` as this Python computes it
    (compensated from 3.12 on): values whose plain sum rounds differently."""
    if not vectorised.COMPILED:
        pytest.skip("the extension is not built")
    hist = np.array([1e16, 1.0, -1e16, 1.0, 3.0, 0.1, 0.2, 0.3] * 4)
    out = np.empty(12)
    for start in range(0, 24, 3):
        count, *_rest = bilevel_kernel.tri_runs(
            [float(start + 7), float(start + 8)], [0, 1], hist, 0, 0, float(start - 0.5), 1,
            None, 8.0, 0.01, 1e9, float(start + 8), out)
        assert count == 1
        lo, hi = math.ceil(start - 0.5 + 0.2 * 7.5), math.floor(start + 7 - 0.2 * 7.5) + 1
        assert out[2] == sum(hist[lo:hi].tolist()) / (hi - lo)
