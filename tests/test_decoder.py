"""The streaming BlinkUp decoder: every chunking decodes the same, each impairment of
the issue holds as a property over random payloads, failures are typed outcomes, and
no stream makes it raise anything but its own error."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from impfactory.protocol.blinkup import (
    PREAMBLE,
    BadCRCError,
    BlinkUpConfig,
    encode_frame,
)
from impfactory.protocol.crc16 import crc16
from impfactory.protocol.decoder import (
    TRANSITIONS,
    BadMagicError,
    BadSamplesError,
    BlinkUpDecodeError,
    BlinkUpDecoder,
    CorruptFrameError,
    DecodeResult,
    DecoderEvent,
    DecoderState,
    DecoderStateError,
    SyncLostError,
)
from impfactory.protocol.linecode import (
    LightModel,
    Signal,
    bilevel_symbols,
    render_bilevel,
    render_symbols,
    render_trilevel,
)
from impfactory.tools.perf_decoder import slip_decodes

FS = 1000.0
PROPERTY = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def feed_all(
    decoder: BlinkUpDecoder, samples: np.ndarray, chunks: list[int] | None = None
) -> list[Any]:
    out: list[Any] = []
    if chunks is None:
        return decoder.feed(samples)
    pos = 0
    for size in chunks:
        out += decoder.feed(samples[pos : pos + size])
        pos += size
    out += decoder.feed(samples[pos:])
    return out


def decoded(outcomes: list[Any]) -> list[BlinkUpConfig]:
    return [o.config for o in outcomes if isinstance(o, DecodeResult)]


@st.composite
def payloads(draw: st.DrawFn) -> BlinkUpConfig:
    ssid = draw(st.binary(min_size=1, max_size=32))
    password = draw(st.none() | st.binary(max_size=64))
    enrol = draw(st.booleans())
    hex16 = st.binary(min_size=8, max_size=8).map(bytes.hex)
    return BlinkUpConfig(
        ssid=ssid,
        password=password,
        plan_id=draw(hex16) if enrol else None,
        token=draw(hex16) if enrol else None,
    )


SMALL = BlinkUpConfig(ssid=b"line-7", password=b"pw", plan_id="00112233aabbccdd", token="1" * 16)


# ----------------------------------------------------------------- chunking


def test_whole_halved_and_sample_at_a_time_decode_the_same() -> None:
    sig = render_bilevel(encode_frame(SMALL), symbol_rate=142.0, noise=0.03, seed=5,
                         light=LightModel(gain=0.4, ambient=0.3))
    n = len(sig)
    runs = {
        "whole": feed_all(BlinkUpDecoder(FS, "bilevel", 142.0), sig.samples),
        "halved": feed_all(BlinkUpDecoder(FS, "bilevel", 142.0), sig.samples, [n // 2]),
        "one": feed_all(BlinkUpDecoder(FS, "bilevel", 142.0), sig.samples, [1] * n),
        "odd": feed_all(BlinkUpDecoder(FS, "bilevel", 142.0), sig.samples, [3, 1000, 7, 333] * 3),
    }
    reference = runs["whole"]
    assert decoded(reference) == [SMALL]
    for name, outcomes in runs.items():
        assert len(outcomes) == 1, name
        assert outcomes[0].frame == reference[0].frame, name
        assert outcomes[0].stats.bit_starts == reference[0].stats.bit_starts, name
        assert outcomes[0].stats.thresholds == reference[0].stats.thresholds, name


def test_trilevel_chunking_is_invisible_too() -> None:
    sig = render_trilevel(encode_frame(BlinkUpConfig(ssid=b"t")), noise=0.01, seed=2)
    whole = feed_all(BlinkUpDecoder(FS, "trilevel"), sig.samples)
    ones = feed_all(BlinkUpDecoder(FS, "trilevel"), sig.samples, [1] * len(sig))
    assert decoded(whole) == decoded(ones) == [BlinkUpConfig(ssid=b"t")]
    assert whole[0].stats.bit_starts == ones[0].stats.bit_starts


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 900), max_size=30))
def test_any_chunking(chunks: list[int]) -> None:
    sig = render_bilevel(encode_frame(SMALL), symbol_rate=142.0, noise=0.02, seed=1)
    assert decoded(feed_all(BlinkUpDecoder(FS, "bilevel"), sig.samples, chunks)) == [SMALL]


def test_tiny_chunks_lag_less_than_a_symbol_and_flush_ends_a_capture() -> None:
    # Chunks shorter than a symbol are gathered before they are decoded: ``receiving``
    # may lag the light by less than one symbol, and ``flush`` decodes the rest.
    bare = render_bilevel(encode_frame(SMALL), symbol_rate=142.0, noise=0.02, seed=3, tail=0)
    # the capture ends within a sample or two of the frame's end
    for extra in range(12):
        samples = np.concatenate((bare.samples, np.zeros(extra)))
        whole_out = BlinkUpDecoder(FS, "bilevel", 142.0).feed(samples)
        if whole_out:
            break
    (whole,) = whole_out
    period = whole.stats.symbol_period
    for size in (1, 2, 5):
        decoder = BlinkUpDecoder(FS, "bilevel", 142.0)
        outcomes: list[Any] = []
        started = None
        for pos in range(0, len(samples), size):
            outcomes += decoder.feed(samples[pos : pos + size])
            if started is None and decoder.receiving:
                started = pos + size  # samples fed when the decoder first said so
        outcomes += decoder.flush()
        assert decoder.flush() == []
        assert started is not None, size
        lag = started - (whole.stats.lock + 1)
        assert 0 <= lag < period + size, (size, lag)
        assert [o.frame for o in outcomes] == [whole.frame], size
        assert outcomes[0].stats.bit_starts == whole.stats.bit_starts
        assert outcomes[0].stats.end == whole.stats.end


def _outcome_key(o: Any) -> tuple[Any, ...]:
    return (type(o).__name__, str(o), o.stats.end, o.frame if isinstance(o, DecodeResult)
            else o.data)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["bilevel", "trilevel"]), st.lists(st.integers(1, 700), min_size=1,
                                                          max_size=40))
def test_failures_too_do_not_depend_on_the_chunking(code: str, chunks: list[int]) -> None:
    # A reception that breaks off, light that stops, then a good one: the same
    # outcomes, in the same words, ending at the same sample, however it is cut
    # (a failure ends where it became certain, not where a feed happened to notice).
    render = render_bilevel if code == "bilevel" else render_trilevel
    frame = encode_frame(SMALL)
    one = render(frame, noise=0.02, seed=4).samples  # type: ignore[operator]
    two = render(frame, noise=0.02, seed=5).samples  # type: ignore[operator]
    stream = np.concatenate((one[: len(one) // 2], np.full(700, 0.5), one[len(one) // 2 :],
                             two[: len(two) // 3], np.zeros(600), two))
    whole = [_outcome_key(o) for o in BlinkUpDecoder(FS, code).feed(stream)]  # type: ignore[arg-type]
    assert [k[0] for k in whole].count("DecodeResult") == 1
    assert "SyncLostError" in [k[0] for k in whole]
    decoder = BlinkUpDecoder(FS, code)  # type: ignore[arg-type]
    cut = feed_all(decoder, stream, chunks * (1 + len(stream) // sum(chunks)))
    assert [_outcome_key(o) for o in cut + decoder.flush()] == whole


# ----------------------------------------------------------------- impairments


@PROPERTY
@given(payloads(), st.floats(-0.05, 0.05), st.sampled_from([60.0, 142.0]), st.floats(0, 1))
def test_clock_mismatch_5_percent(
    cfg: BlinkUpConfig, err: float, rate: float, phase: float
) -> None:
    sig = render_bilevel(encode_frame(cfg), symbol_rate=rate, clock_error=err, phase=phase,
                         noise=0.01, seed=0)
    assert decoded(BlinkUpDecoder(FS, "bilevel", rate).feed(sig.samples)) == [cfg]


@PROPERTY
@given(payloads(), st.floats(0.1, 1.0), st.floats(0, 1), st.sampled_from([60.0, 142.0]))
def test_any_swing_down_to_10_percent_and_any_ambient(
    cfg: BlinkUpConfig, swing: float, where: float, rate: float
) -> None:
    ambient = where * (1.0 - swing)  # anywhere that keeps the swing in range
    sig = render_bilevel(encode_frame(cfg), symbol_rate=rate, noise=0.005, seed=1,
                         light=LightModel(gain=swing, ambient=ambient))
    assert decoded(BlinkUpDecoder(FS, "bilevel", rate).feed(sig.samples)) == [cfg]


@PROPERTY
@given(payloads(), st.integers(0, 3000), st.integers(0, 3000), st.integers(0, 2**32 - 1))
def test_leading_and_trailing_garbage(cfg: BlinkUpConfig, lead: int, tail: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sig = render_bilevel(encode_frame(cfg), symbol_rate=142.0, noise=0.01, seed=rng,
                         light=LightModel(gain=0.5, ambient=0.2))

    def garbage(n: int) -> np.ndarray:
        kind = rng.integers(3)
        if kind == 0:  # random light
            return rng.uniform(0, 1, n)
        if kind == 1:  # a flickering lamp, square wave at a random rate
            period = rng.uniform(3, 60)
            return 0.2 + 0.5 * ((np.arange(n) // period) % 2)
        return np.full(n, rng.uniform(0, 1))  # steady light

    stream = np.concatenate((garbage(lead), sig.samples, garbage(tail)))
    assert cfg in decoded(BlinkUpDecoder(FS, "bilevel", 142.0).feed(stream))


@PROPERTY
@given(payloads(), st.sampled_from([60.0, 142.0]), st.integers(0, 2**32 - 1))
def test_noise_with_margin_over_the_measured_limit(
    cfg: BlinkUpConfig, rate: float, seed: int
) -> None:
    # 11 dB: 4 dB above the measured 99% limit at 142 Hz (7 dB, docs/blinkup.md)
    swing = 0.4
    sigma = swing / 2 / 10 ** (11 / 20)
    sig = render_bilevel(encode_frame(cfg), symbol_rate=rate, noise=sigma, seed=seed,
                         light=LightModel(gain=swing, ambient=0.3, clip=False))
    assert decoded(BlinkUpDecoder(FS, "bilevel", rate).feed(sig.samples)) == [cfg]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads(), st.sampled_from([60.0, 142.0]), st.floats(-0.05, 0.05), st.floats(0.1, 0.5),
       st.floats(0, 1), st.booleans(), st.integers(0, 2**32 - 1))
def test_all_impairments_at_once_rate_not_told(
    cfg: BlinkUpConfig, rate: float, err: float, swing: float, where: float, high: bool,
    seed: int,
) -> None:
    # As a DUT runs it: the decoder is not told 60 or 142 Hz. Clock error, swing,
    # ambient, polarity, garbage either side, and noise 4 dB above the limit, together
    # (swings up to half of full scale, so the noise around them stays in range too).
    rng = np.random.default_rng(seed)
    sigma = swing / 2 / 10 ** (11 / 20)
    ambient = 3 * sigma + where * (1.0 - swing - 6 * sigma)  # the noisy swing stays in range
    sig = render_bilevel(encode_frame(cfg), symbol_rate=rate, clock_error=err,
                         active_high=high, noise=sigma, seed=rng, phase=float(rng.random()),
                         light=LightModel(gain=swing, ambient=ambient))
    stream = np.concatenate((rng.uniform(0, 1, int(rng.integers(0, 2000))), sig.samples,
                             rng.uniform(0, 1, int(rng.integers(0, 2000)))))
    decoder = BlinkUpDecoder(FS, "bilevel")
    assert cfg in decoded(feed_all(decoder, stream, [int(rng.integers(1, 500))] * 60))


@PROPERTY
@given(payloads(), st.integers(0, 2**32 - 1))
def test_trilevel_noise_with_margin(cfg: BlinkUpConfig, seed: int) -> None:
    # 19 dB: 4 dB above the measured 99% tri-level limit (15 dB, an ideal screen)
    swing = 0.5
    sigma = swing / 2 / 10 ** (19 / 20)
    sig = render_trilevel(encode_frame(cfg), noise=sigma, seed=seed,
                          light=LightModel(gain=swing, ambient=0.2, clip=False))
    assert decoded(BlinkUpDecoder(FS, "trilevel").feed(sig.samples)) == [cfg]


@PROPERTY
@given(payloads(), st.sampled_from([60.0, 142.0]), st.floats(0.1, 1.0))
def test_either_polarity(cfg: BlinkUpConfig, rate: float, swing: float) -> None:
    sig = render_bilevel(encode_frame(cfg), symbol_rate=rate, active_high=False,
                         light=LightModel(gain=swing), noise=0.005, seed=3)
    out = BlinkUpDecoder(FS, "bilevel").feed(sig.samples)
    assert decoded(out) == [cfg]
    assert out[0].stats.inverted


@PROPERTY
@given(payloads(), st.floats(-0.05, 0.05), st.floats(0.1, 1.0), st.floats(0, 1),
       st.sampled_from([30.0, 60.0]))
def test_trilevel_impairments(
    cfg: BlinkUpConfig, err: float, swing: float, where: float, rate: float
) -> None:
    sig = render_trilevel(encode_frame(cfg), frame_rate=rate, clock_error=err, noise=0.005,
                          seed=4, light=LightModel(gain=swing, ambient=where * (1 - swing)))
    assert decoded(BlinkUpDecoder(FS, "trilevel").feed(sig.samples)) == [cfg]


SLIP_PAYLOADS = 1000
SLIP_FAILURES = 4


def test_a_slipping_sampler_decodes_99_percent() -> None:
    """1 % of samples dropped and 1 % read twice, at 142 Hz (issue 15, item 11).

    The claim is >= 99 % of full payloads decoded. Statistically: with a true success
    rate of 99 %, 1,000 independent payloads would show 4 or fewer failures with
    probability 2.9 % (Poisson, mean 10), so passing shows >= 99 % with 97 %
    confidence. The decoder's rate is about 99.9 % (``impfactory perf decoder
    --slips``), so the expected failures (about 1) sit well inside the allowance;
    the draws are seeded and the test is deterministic. About 4 s.
    """
    ok = slip_decodes(142.0, SLIP_PAYLOADS, seed=1511)
    assert SLIP_PAYLOADS - ok <= SLIP_FAILURES


def test_slips_at_60_hz_are_harmless() -> None:
    # 17 samples a symbol: a run would need 8 slips the same way to look a symbol off
    assert slip_decodes(60.0, 100, seed=1512) == 100


def _ambiguous_run() -> np.ndarray:
    """SMALL with samples dropped inside one run of four symbols until it measures
    three and a half: the decoder counts it wrong and the line check fails."""
    frame = encode_frame(SMALL)
    sig = render_bilevel(frame, symbol_rate=142.0, lead=0.05, tail=0.1, phase=0.3)
    runs, i = [], 0
    for _level, group in itertools.groupby(bilevel_symbols(frame)):
        runs.append((i, len(list(group))))
        i += runs[-1][1]
    start = next(i for i, n in runs if n == 4 and i > 60)  # a run of four, in the data
    middle = int((0.05 + (start + 2) / 142.0) * 1000)
    return np.delete(sig.samples, range(middle - 2, middle + 2))


def test_a_run_the_slips_made_ambiguous_is_repaired() -> None:
    (result,) = BlinkUpDecoder(FS, "bilevel").feed(_ambiguous_run())
    assert isinstance(result, DecodeResult) and result.config == SMALL
    assert result.stats.repaired == 1


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=30))
def test_the_repair_does_not_depend_on_the_chunking(chunks: list[int]) -> None:
    samples = _ambiguous_run()
    (whole,) = BlinkUpDecoder(FS, "bilevel").feed(samples)
    decoder = BlinkUpDecoder(FS, "bilevel")
    cut = feed_all(decoder, samples, chunks * (1 + len(samples) // sum(chunks))) + decoder.flush()
    assert [_outcome_key(o) for o in cut] == [_outcome_key(whole)]
    assert cut[0].stats.repaired == 1 and cut[0].stats.bit_starts == whole.stats.bit_starts


def test_symbol_rate_is_measured_not_assumed() -> None:
    sig = render_bilevel(encode_frame(SMALL), symbol_rate=142.0, clock_error=0.04)
    (result,) = BlinkUpDecoder(FS, "bilevel").feed(sig.samples)
    assert result.stats.symbol_rate == pytest.approx(142.0 * 1.04, rel=0.02)


def test_two_blinkups_in_one_stream() -> None:
    other = BlinkUpConfig(clear=True)
    a = render_bilevel(encode_frame(SMALL), symbol_rate=142.0)
    b = render_bilevel(encode_frame(other), symbol_rate=142.0)
    out = BlinkUpDecoder(FS).feed(np.concatenate((a.samples, b.samples)))
    assert decoded(out) == [SMALL, other]


# ----------------------------------------------------------------- states and failures


def test_state_is_receiving_during_a_blinkup_only() -> None:
    sig = render_bilevel(encode_frame(SMALL), symbol_rate=142.0)
    decoder = BlinkUpDecoder(FS, "bilevel", 142.0)
    assert decoder.state is DecoderState.IDLE
    assert decoder.feed(sig.samples[: len(sig) // 2]) == []
    assert decoder.receiving and decoder.state is DecoderState.FRAME
    assert decoded(decoder.feed(sig.samples[len(sig) // 2 :])) == [SMALL]
    assert decoder.state is DecoderState.IDLE and not decoder.receiving


def test_signal_that_stops_mid_frame_is_sync_lost() -> None:
    sig = render_bilevel(encode_frame(SMALL), symbol_rate=142.0, tail=0)
    cut = np.concatenate((sig.samples[: len(sig) * 2 // 3], np.zeros(500)))
    decoder = BlinkUpDecoder(FS)
    (failure,) = decoder.feed(cut)
    assert isinstance(failure, SyncLostError)
    assert failure.stats is not None and failure.data
    assert decoder.state is DecoderState.IDLE


def test_corrupt_frame_reports_the_packet_error() -> None:
    frame = bytearray(encode_frame(SMALL))
    frame[8] ^= 0x10
    sig = render_bilevel(bytes(frame), symbol_rate=142.0)
    (failure,) = BlinkUpDecoder(FS).feed(sig.samples)
    assert isinstance(failure, CorruptFrameError)
    assert isinstance(failure.cause, BadCRCError)
    assert failure.frame == bytes(frame)


def test_wrong_magic_is_bad_magic() -> None:
    # tri-level: the magic is bits on the screen and can be wrong
    body = bytes([4, 1, 2, 0x41, 0x42])
    crc = crc16(body)
    frame = b"\x00\x00\x00\x2b" + body + bytes([crc >> 8, crc & 0xFF])
    out = BlinkUpDecoder(FS, "trilevel").feed(render_trilevel(frame).samples)
    assert isinstance(out[0], BadMagicError) and not decoded(out)
    good = PREAMBLE + body + bytes([crc >> 8, crc & 0xFF])
    assert decoded(BlinkUpDecoder(FS, "trilevel").feed(render_trilevel(good).samples))


def test_a_blink_that_never_shows_the_start_word_is_bad_magic() -> None:
    # bi-level: the magic is the start word; a bare square wave at the symbol rate
    # locks like a sync run and then never shows it
    blink = render_symbols([1, 0] * 400, symbol_rate=142.0, light=LightModel(0.5, 0.2))
    out = BlinkUpDecoder(FS, "bilevel").feed(blink.samples)
    kinds = [type(o) for o in out]
    # a BadMagicError every HUNT_SYMBOLS while it blinks; its end stops a last hunt
    assert kinds[:-1] == [BadMagicError] * (len(kinds) - 1) and len(kinds) >= 4
    assert kinds[-1] in (BadMagicError, SyncLostError)
    assert "start word" in str(out[0])


def test_state_table_rejects_unknown_events() -> None:
    for state in DecoderState:
        for event in DecoderEvent:
            decoder = BlinkUpDecoder(FS)
            decoder._state = state
            if (state, event) in TRANSITIONS:
                decoder._event(event)
                assert decoder.state is TRANSITIONS[(state, event)]
            else:
                with pytest.raises(DecoderStateError):
                    decoder._event(event)


@pytest.mark.parametrize(
    "bad", [[1.0, float("nan")], [float("inf")], [[0.1, 0.2], [0.3, 0.4]], ["a", "b"], [object()],
            [1e308, -1e308], [0.5, 2e6]]
)
def test_bad_samples_raise_a_typed_error_and_change_nothing(bad: Any) -> None:
    sig = render_bilevel(encode_frame(SMALL), symbol_rate=142.0)
    decoder = BlinkUpDecoder(FS)
    decoder.feed(sig.samples[:1500])
    with pytest.raises(BadSamplesError):
        decoder.feed(bad)
    assert decoded(decoder.feed(sig.samples[1500:])) == [SMALL]


def test_bad_construction_is_typed() -> None:
    with pytest.raises(BlinkUpDecodeError):
        BlinkUpDecoder(FS, "morse")  # type: ignore[arg-type]
    with pytest.raises(BlinkUpDecodeError):
        BlinkUpDecoder(0.0)
    with pytest.raises(BlinkUpDecodeError):
        BlinkUpDecoder(FS, "bilevel", 900.0)
    with pytest.raises(BlinkUpDecodeError):
        BlinkUpDecoder(FS, full_scale=0.0)


def test_reset_forgets_a_reception() -> None:
    sig = render_bilevel(encode_frame(SMALL), symbol_rate=142.0)
    decoder = BlinkUpDecoder(FS)
    decoder.feed(sig.samples[:2000])
    assert decoder.receiving
    decoder.reset()
    assert decoder.state is DecoderState.IDLE
    assert decoded(decoder.feed(sig.samples)) == [SMALL]


# ----------------------------------------------------------------- fuzz


def _only_outcomes(outcomes: list[Any]) -> None:
    for o in outcomes:
        assert isinstance(o, DecodeResult | BlinkUpDecodeError)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(0, 3000),
               elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)),
    st.sampled_from(["bilevel", "trilevel"]),
    st.integers(1, 500),
)
def test_fuzz_random_streams(samples: np.ndarray, code: str, chunk: int) -> None:
    decoder = BlinkUpDecoder(FS, code)  # type: ignore[arg-type]
    for i in range(0, len(samples), chunk):
        _only_outcomes(decoder.feed(samples[i : i + chunk]))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["bilevel", "trilevel"]))
def test_fuzz_damaged_signals(seed: int, code: str) -> None:
    """Real frames with spans overwritten, dropped or repeated: outcomes, never raises."""
    rng = np.random.default_rng(seed)
    frame = encode_frame(SMALL)
    sig: Signal = (render_bilevel(frame, symbol_rate=142.0) if code == "bilevel"
                   else render_trilevel(frame))
    x = sig.samples.copy()
    for _ in range(int(rng.integers(1, 6))):
        a = int(rng.integers(0, len(x)))
        b = min(len(x), a + int(rng.integers(1, 200)))
        action = rng.integers(3)
        if action == 0:
            x[a:b] = rng.uniform(-0.5, 1.5, b - a)
        elif action == 1:
            x = np.delete(x, slice(a, b))
        else:
            x = np.insert(x, a, x[a:b])
    decoder = BlinkUpDecoder(FS, code)  # type: ignore[arg-type]
    for i in range(0, len(x), 97):
        _only_outcomes(decoder.feed(x[i : i + 97]))


@pytest.mark.parametrize(("fs", "rate"), [(500.0, 142.0), (2000.0, 142.0), (8000.0, 60.0)])
def test_other_sample_rates(fs: float, rate: float) -> None:
    sig = render_bilevel(encode_frame(SMALL), symbol_rate=rate, sample_rate=fs, noise=0.02,
                         seed=9, clock_error=-0.03, light=LightModel(gain=0.4, ambient=0.3))
    assert decoded(BlinkUpDecoder(fs, "bilevel").feed(sig.samples)) == [SMALL]
    tri = render_trilevel(encode_frame(SMALL), sample_rate=fs, noise=0.01, seed=9)
    assert decoded(BlinkUpDecoder(fs, "trilevel").feed(tri.samples)) == [SMALL]


def test_too_few_samples_per_symbol_is_refused() -> None:
    with pytest.raises(BadSamplesError, match="symbol_rate"):
        BlinkUpDecoder(400.0, "bilevel", 142.0)


@pytest.mark.parametrize("code", ["bilevel", "trilevel"])
def test_lamp_flicker_and_noise_are_not_blinkups(code: str) -> None:
    """Mains lamps flicker at 100/120 Hz: outside every auto-rate band, so an idle
    receiver stays silent (no lock, no failure) however long it watches."""
    rng = np.random.default_rng(3)
    t = np.arange(30_000) / FS
    streams = [
        0.3 + 0.1 * np.sin(2 * np.pi * 100 * t) + rng.normal(0, 0.01, t.size),
        0.3 + 0.1 * np.sign(np.sin(2 * np.pi * 120 * t)) + rng.normal(0, 0.01, t.size),
        rng.uniform(0, 1, t.size),
        0.4 + rng.normal(0, 0.05, t.size),
    ]
    for x in streams:
        decoder = BlinkUpDecoder(FS, code)  # type: ignore[arg-type]
        assert decoder.feed(x) == []
        assert decoder.state is DecoderState.IDLE


@pytest.mark.parametrize("sigma", [0.03, 0.1, 0.3])
def test_slow_noise_is_not_a_screen(sigma: float) -> None:
    """The tri-level sync search has no grid to hold noise to (a screen's frames are
    uneven), so slow noise (low-pass filtered: runs of plausible frame lengths) is
    kept out by the levels: sliced noise shows no two steady levels. A minute of it
    each, at three strengths."""
    rng = np.random.default_rng(int(sigma * 100))
    lowpass = np.convolve(rng.normal(0, sigma, 60_000), np.ones(8) / np.sqrt(8), "same")
    wander = np.cumsum(rng.normal(0, sigma, 60_000)) * 0.05
    wander -= np.convolve(wander, np.ones(200) / 200, "same")
    for x in (0.4 + lowpass, 0.4 + wander):
        decoder = BlinkUpDecoder(FS, "trilevel")
        for i in range(0, len(x), 1000):
            assert decoder.feed(x[i : i + 1000]) == []
            assert not decoder.receiving


@pytest.mark.parametrize("code", ["bilevel", "trilevel"])
def test_a_frame_at_the_very_first_sample(code: str) -> None:
    frame = encode_frame(SMALL)
    sig = (render_bilevel(frame, symbol_rate=142.0, lead=0.0) if code == "bilevel"
           else render_trilevel(frame, lead=0.0))
    assert decoded(BlinkUpDecoder(FS, code).feed(sig.samples)) == [SMALL]  # type: ignore[arg-type]
