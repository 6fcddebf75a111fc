"""``impfactory perf decoder``: how fast, how noise-proof, and how often the CRC misses.

* Speed (always): a bi-level 142 Hz (``BLINKUP_FAST``) BlinkUp of a full factory
  payload (32-character SSID, 63-character password, enrolment) sampled at 1 kHz,
  fed to one decoder on one core (the process is pinned to one CPU where the OS
  allows), twice: in 1,000-sample chunks (``x_realtime``) and in 64-sample chunks
  (``small_chunks``; a caller feeding light as it arrives pays a cost per chunk).
  The decoder is not told the rate, like an imp that cannot know whether the
  fixture uses ``BLINKUP_FAST``. ``x_realtime`` = signal duration / median CPU time
  of the decoding thread; ``x_realtime_wall`` uses the wall clock (the same on a
  quiet machine, lower when other jobs share the core). ``compiled`` says whether the
  bi-level receiver's loops ran compiled (protocol/_bilevel.c, built at install) or
  in Python (no C compiler at install, or ``IMPFACTORY_PURE_DECODER=1``).
* ``--noise``: the fraction of frames decoded at each signal-to-noise ratio, with
  random sampling phase and a random sender clock error within ±5%, by a decoder
  not told the rate (as a DUT runs it). SNR is
  ``20 log10(swing / (2 sigma))``: the power of the (balanced) two-level signal
  around its mean over the noise power (tri-level: the black-to-white swing). The
  tri-level code is swept on an ideal screen and as the SDK paces it at 60 fps on a
  90 Hz sRGB display (±1 ms jitter).
* ``--corruption N``: flip k random bits (k = 1, 2, 3, 4, 8) in the packet part of
  N random frames each and count how many ``decode_frame`` still accepts.
* ``--slips``: the bi-level code read by a sampler that slips: 1 % of samples dropped
  and 1 % read twice (``linecode.drop_and_repeat``), random full payloads at 142 and
  60 Hz with a random sender clock error within ±5 %, the fraction decoded.
* ``--screen``: the tri-level code as Electric Imp's SDK really paces it
  (``protocol/screen.py``): for every schedule of 20, 30 and 60 frames/s on 60, 90,
  120 and 144 Hz displays, with ±1 ms refresh jitter, an sRGB screen and noise 0.05
  of the black-to-white swing, the fraction of random full payloads decoded
  (``--payloads`` each; ``--drop`` adds dropped refreshes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from impfactory.protocol.blinkup import BlinkUpConfig, BlinkUpError, decode_frame, encode_frame
from impfactory.protocol.decoder import COMPILED, BlinkUpDecoder, DecodeResult
from impfactory.protocol.linecode import (
    BILEVEL_FAST_RATE,
    BILEVEL_RATE,
    TRILEVEL_RATE,
    LightModel,
    Signal,
    drop_and_repeat,
    render_bilevel,
    render_trilevel,
)
from impfactory.protocol.screen import DISPLAY_RATES, SDK_FRAME_RATES, Screen

FACTORY_PAYLOAD = BlinkUpConfig(
    ssid=b"F" * 32, password=b"p" * 63, plan_id="0123456789abcdef", token="fedcba9876543210"
)
SMALL_CHUNK = 64
"""Samples per feed for the small-chunk figure (64 ms of light at 1 kHz)."""
PRINTABLE = np.frombuffer(bytes(range(0x20, 0x7F)), dtype=np.uint8)
SCREEN_JITTER = 0.001
"""Refresh jitter of the screen sweep (s): ±1 ms."""
SCREEN_NOISE = 0.05
"""Noise sigma of the screen sweep, as a fraction of the black-to-white swing."""


def random_full_payload(rng: np.random.Generator) -> BlinkUpConfig:
    """A full payload: 32-character SSID, 63-character password (printable ASCII,
    as WPA passphrases are) and a random enrolment."""
    return BlinkUpConfig(
        ssid=bytes(rng.choice(PRINTABLE, 32)),
        password=bytes(rng.choice(PRINTABLE, 63)),
        plan_id=rng.bytes(8).hex(),
        token=rng.bytes(8).hex(),
    )


SLIP = 0.01
"""Fraction of samples dropped, and of samples read twice, in the slip figure."""


def slip_decodes(
    symbol_rate: float,
    payloads: int,
    seed: int = 0,
    *,
    drop: float = SLIP,
    repeat: float = SLIP,
) -> int:
    """How many of ``payloads`` random full payloads a bi-level decoder (not told the
    rate) decodes when the sampler drops ``drop`` and repeats ``repeat`` of its
    samples. Each payload has a random light swing (20-60% of full scale, ambient
    0.2), noise 2% of the swing, sampling phase and sender clock error (±5%)."""
    rng = np.random.default_rng(seed)
    ok = 0
    for _ in range(payloads):
        cfg = random_full_payload(rng)
        swing = float(rng.uniform(0.2, 0.6))
        signal = render_bilevel(
            encode_frame(cfg),
            symbol_rate=symbol_rate,
            seed=rng,
            light=LightModel(gain=swing, ambient=0.2),
            noise=0.02 * swing,
            phase=float(rng.random()),
            clock_error=float(rng.uniform(-0.05, 0.05)),
        )
        samples = drop_and_repeat(signal.samples, drop, repeat, rng)
        decoder = BlinkUpDecoder(signal.sample_rate, "bilevel")
        outcomes = decoder.feed(samples) + decoder.flush()
        ok += any(isinstance(o, DecodeResult) and o.config == cfg for o in outcomes)
    return ok


def screen_decodes(
    fps: float,
    refresh_hz: float,
    payloads: int,
    seed: int = 0,
    *,
    jitter: float = SCREEN_JITTER,
    drop: float = 0.0,
    noise: float = SCREEN_NOISE,
    gamma: str | float = "srgb",
) -> int:
    """How many of ``payloads`` random full payloads a tri-level decoder (not told the
    frame rate) decodes from a screen pacing them as the SDK does at ``fps`` on a
    ``refresh_hz`` display. Each payload has its own random light swing (10-80% of
    full scale) and ambient offset, sampling phase, pacing draws, and noise
    ``noise`` times its swing; all drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    screen = Screen(refresh_hz, jitter, drop, gamma)
    ok = 0
    for _ in range(payloads):
        cfg = random_full_payload(rng)
        swing = float(rng.uniform(0.1, 0.8))
        ambient = float(rng.uniform(0.0, 1.0 - swing))
        signal = render_trilevel(
            encode_frame(cfg),
            frame_rate=fps,
            screen=screen,
            seed=rng,
            light=LightModel(gain=swing, ambient=ambient),
            noise=noise * swing,
            phase=float(rng.random()),
        )
        decoder = BlinkUpDecoder(signal.sample_rate, "trilevel")
        outcomes = decoder.feed(signal.samples) + decoder.flush()
        ok += any(isinstance(o, DecodeResult) and o.config == cfg for o in outcomes)
    return ok


def factory_signal(sample_rate: float = 1000.0) -> Signal:
    """The benchmark's light: the full factory payload at 142 Hz, mild noise."""
    return render_bilevel(
        encode_frame(FACTORY_PAYLOAD),
        symbol_rate=BILEVEL_FAST_RATE,
        sample_rate=sample_rate,
        light=LightModel(gain=0.5, ambient=0.2),
        noise=0.02,
        seed=1,
    )


@contextlib.contextmanager
def one_core() -> Iterator[str]:
    """Run on one CPU (Linux) while inside; say which, or why not. The previous
    affinity comes back after, so a caller's other work (and its children) is not
    left on one core."""
    if not hasattr(os, "sched_setaffinity"):
        yield "not pinned (no sched_setaffinity)"
        return
    before = os.sched_getaffinity(0)
    cpu = max(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield f"pinned to CPU {cpu}"
    finally:
        os.sched_setaffinity(0, before)


def measure_speed(
    repeat: int = 20, chunk: int = 1000, sample_rate: float = 1000.0
) -> dict[str, Any]:
    """Decode the full factory payload ``repeat`` times fed in ``chunk``-sample pieces;
    return the figures (times per decode: CPU time of this thread, and wall)."""
    if repeat < 1 or chunk < 1:
        raise BlinkUpError("--repeat and --chunk must be >= 1", "perf")
    signal = factory_signal(sample_rate)
    samples = signal.samples
    cpu, wall = [], []
    BlinkUpDecoder(sample_rate, "bilevel").feed(samples)  # warm-up, untimed (first calls)
    for _ in range(repeat):
        decoder = BlinkUpDecoder(sample_rate, "bilevel")
        outcomes = []
        start_wall, start_cpu = time.perf_counter(), time.thread_time()
        for i in range(0, samples.shape[0], chunk):
            outcomes += decoder.feed(samples[i : i + chunk])
        outcomes += decoder.flush()
        cpu.append(time.thread_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
        if not (
            len(outcomes) == 1
            and isinstance(outcomes[0], DecodeResult)
            and outcomes[0].config == FACTORY_PAYLOAD
        ):
            raise BlinkUpError(f"benchmark frame did not decode: {outcomes}", "perf")
    median = statistics.median(cpu)
    return {
        "chunk": chunk,
        "repeat": repeat,
        "decode_ms_median": round(median * 1e3, 3),
        "decode_ms_best": round(min(cpu) * 1e3, 3),
        "x_realtime": round(signal.duration / median, 1),
        "x_realtime_wall": round(signal.duration / statistics.median(wall), 1),
    }


def success_rate(
    snr_db: float,
    frames: int,
    line_code: str = "bilevel",
    symbol_rate: float = BILEVEL_FAST_RATE,
    seed: int = 1,
    swing: float = 0.5,
    tell_rate: bool = False,
    screen: Screen | None = None,
) -> float:
    """Fraction of ``frames`` full factory payloads decoded correctly at ``snr_db``, by
    a decoder that is not told the rate (as a DUT runs it) unless ``tell_rate``. A
    ``screen`` paces tri-level frames as the SDK does (no clock error then: the
    display is the clock)."""
    rng = np.random.default_rng(seed)
    frame = encode_frame(FACTORY_PAYLOAD)
    sigma = swing / 2.0 / 10 ** (snr_db / 20.0)
    ok = 0
    for _ in range(frames):
        impair: dict[str, Any] = {
            "light": LightModel(gain=swing, ambient=0.25, clip=False),
            "noise": sigma,
            "seed": rng,
            "phase": float(rng.random()),
        }
        clock_error = float(rng.uniform(-0.05, 0.05))
        if screen is None:
            impair["clock_error"] = clock_error
        if line_code == "bilevel":
            signal = render_bilevel(frame, symbol_rate=symbol_rate, **impair)
        else:
            signal = render_trilevel(frame, frame_rate=symbol_rate, screen=screen, **impair)
        decoder = BlinkUpDecoder(1000.0, line_code, symbol_rate if tell_rate else None)  # type: ignore[arg-type]
        outcomes = decoder.feed(signal.samples) + decoder.flush()
        ok += any(isinstance(o, DecodeResult) and o.config == FACTORY_PAYLOAD for o in outcomes)
    return ok / frames


def crc_misses(frames: int, flips: int, seed: int = 0) -> int:
    """Corrupt ``flips`` random bits of LEN/TLVs/CRC in ``frames`` random frames; count
    the corrupted frames that still decode."""
    rng = np.random.default_rng(seed)
    missed = 0
    for _ in range(frames):
        cfg = BlinkUpConfig(
            ssid=rng.bytes(int(rng.integers(1, 33))),
            password=rng.bytes(int(rng.integers(0, 65))),
            plan_id=rng.bytes(8).hex(),
            token=rng.bytes(8).hex(),
        )
        frame = bytearray(encode_frame(cfg))
        nbits = (len(frame) - 4) * 8
        for bit in rng.choice(nbits, flips, replace=False).tolist():
            frame[4 + bit // 8] ^= 0x80 >> (bit % 8)
        try:
            decode_frame(bytes(frame))
        except BlinkUpError:
            continue
        missed += 1
    return missed


def _run(args: argparse.Namespace) -> int:
    if args.frames < 1 or args.corruption < 0 or args.small_chunk < 1 or args.payloads < 1:
        raise BlinkUpError(
            "--frames, --payloads and --small-chunk must be >= 1, --corruption >= 0", "perf"
        )
    if not 0.0 <= args.drop <= 0.5:
        raise BlinkUpError("--drop must be within 0..0.5", "perf")
    signal = factory_signal()
    result: dict[str, Any] = {
        "signal_s": round(signal.duration, 3),
        "samples": int(signal.samples.shape[0]),
        "sample_rate_hz": signal.sample_rate,
        "symbol_rate_hz": BILEVEL_FAST_RATE,
        "frame_bytes": len(encode_frame(FACTORY_PAYLOAD)),
        "compiled": COMPILED,
    }
    with one_core() as cpu:
        result["cpu"] = cpu
        result.update(measure_speed(args.repeat, args.chunk))
        small = measure_speed(args.repeat, args.small_chunk)
    result["small_chunks"] = small
    if not args.json:
        print(
            f"decoder: {result['signal_s']} s bi-level 142 Hz full factory payload "
            f"({result['frame_bytes']} bytes, {result['samples']} samples at 1 kHz), "
            f"one core ({result['cpu']}), {'compiled' if COMPILED else 'Python'} loops, "
            f"CPU time, median of {args.repeat}:"
        )
        for row in (result, small):
            print(
                f"  chunks of {row['chunk']:>5}: {row['decode_ms_median']} ms = "
                f"{row['x_realtime']}x real time (wall clock {row['x_realtime_wall']}x)"
            )
    if args.noise:
        paced = Screen(90.0, jitter=SCREEN_JITTER)
        sweeps: dict[str, tuple[str, float, list[int], Screen | None]] = {
            "bilevel_142": ("bilevel", BILEVEL_FAST_RATE, [10, 9, 8, 7, 6, 5, 4], None),
            "bilevel_60": ("bilevel", BILEVEL_RATE, [8, 7, 6, 5, 4, 3, 2], None),
            "trilevel_60": ("trilevel", TRILEVEL_RATE, [18, 16, 15, 14, 13, 12], None),
            "trilevel_60_on_90hz_srgb": ("trilevel", TRILEVEL_RATE, [14, 12, 11, 10, 9, 8], paced),
        }
        noise: dict[str, Any] = {}
        for name, (code, rate, snrs, screen) in sweeps.items():
            rates = {str(s): success_rate(s, args.frames, code, rate, screen=screen) for s in snrs}
            # the lowest SNR from which every step up (down the sweep's list) holds 99%
            limit = None
            for snr in snrs:  # highest first
                if rates[str(snr)] < 0.99:
                    break
                limit = snr
            noise[name] = {"success": rates, "snr_db_99": limit}
            if not args.json:
                table = "  ".join(f"{s} dB {r:.0%}" for s, r in rates.items())
                print(f"noise {name}: {table}  -> >=99% down to {limit} dB")
        result["noise"] = {"frames": args.frames, **noise}
    if args.corruption:
        crc: dict[str, Any] = {}
        for flips in (1, 2, 3, 4, 8):
            missed = crc_misses(args.corruption, flips)
            crc[str(flips)] = {"missed": missed, "rate": missed / args.corruption}
            if not args.json:
                print(
                    f"corruption: {flips} bit(s) flipped in {args.corruption} frames: "
                    f"{missed} accepted ({missed / args.corruption:.4%})"
                )
        result["corruption"] = {"frames": args.corruption, "flips": crc}
    if args.slips:
        slips: dict[str, Any] = {}
        for name, rate in (("bilevel_142", BILEVEL_FAST_RATE), ("bilevel_60", BILEVEL_RATE)):
            ok = slip_decodes(rate, args.frames, seed=int(rate))
            slips[name] = {"decoded": ok, "rate": ok / args.frames}
            if not args.json:
                print(
                    f"slips {name}: {SLIP:.0%} dropped, {SLIP:.0%} repeated samples: "
                    f"{ok}/{args.frames} decoded ({ok / args.frames:.1%})"
                )
        result["slips"] = {"frames": args.frames, "drop": SLIP, "repeat": SLIP, **slips}
    if args.screen:
        result["screen"] = _screen_sweep(args)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


def _screen_sweep(args: argparse.Namespace) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    if not args.json:
        print(
            f"screen: SDK pacing, ±{SCREEN_JITTER * 1e3:g} ms jitter, "
            f"{args.drop:.1%} dropped refreshes, sRGB, noise {SCREEN_NOISE:g} of the "
            f"swing, {args.payloads} full payloads per schedule:"
        )
    for fps in SDK_FRAME_RATES:
        for hz in DISPLAY_RATES:
            start = time.perf_counter()
            ok = screen_decodes(fps, hz, args.payloads, seed=int(fps * 1000 + hz), drop=args.drop)
            rows[f"{fps:g}fps_{hz:g}hz"] = {
                "decoded": ok,
                "payloads": args.payloads,
                "rate": ok / args.payloads,
                "seconds": round(time.perf_counter() - start, 2),
            }
            if not args.json:
                print(
                    f"  {fps:>2g} fps on {hz:>3g} Hz: {ok}/{args.payloads} "
                    f"({ok / args.payloads:.1%})"
                )
    return {
        "jitter_s": SCREEN_JITTER,
        "drop": args.drop,
        "noise": SCREEN_NOISE,
        "gamma": "srgb",
        "schedules": rows,
    }


def register(sub: Any) -> None:
    parser = sub.add_parser("decoder", help="BlinkUp decoder speed, noise limit, CRC misses")
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    parser.add_argument("--repeat", type=int, default=20, help="timed decodes (default 20)")
    parser.add_argument("--chunk", type=int, default=1000, help="samples per feed (1000)")
    parser.add_argument(
        "--small-chunk",
        type=int,
        default=SMALL_CHUNK,
        help=f"samples per feed for the small-chunk figure ({SMALL_CHUNK})",
    )
    parser.add_argument("--noise", action="store_true", help="also sweep the SNR")
    parser.add_argument(
        "--frames",
        type=int,
        default=200,
        help="frames per SNR step, and per rate with --slips (200)",
    )
    parser.add_argument(
        "--corruption",
        type=int,
        default=0,
        metavar="N",
        help="also count CRC misses over N corrupted frames per flip count",
    )
    parser.add_argument(
        "--slips",
        action="store_true",
        help="also decode bi-level payloads from a sampler that drops and repeats 1%% of "
        "samples (--frames each)",
    )
    parser.add_argument(
        "--screen",
        action="store_true",
        help="also decode tri-level payloads paced as the SDK paces them, per schedule",
    )
    parser.add_argument(
        "--payloads", type=int, default=100, help="full payloads per screen schedule (100)"
    )
    parser.add_argument(
        "--drop",
        type=float,
        default=0.0,
        help="fraction of dropped display refreshes in the screen sweep (0)",
    )
    parser.set_defaults(func=_run)
