"""``impfactory perf bench``: the bench protocol's speed, over a real pty.

* ``codec``: frames/s and MB/s through ``encode`` + ``FrameDecoder.feed`` of
  full light-in sample frames (510 samples, 1 kB payload) on one core.
* ``round trip``: IDENTIFY request → IDENTITY reply through the emulated
  controller on a pty (driver thread, controller loop thread): median and p99.
* ``stream``: light-in at the highest rate the emulated controller accepts
  (20 kHz) for ``--seconds``: samples received per second and samples lost.
* ``stream cpu``: CPU seconds the whole process (controller firmware under
  simulation, driver, pty) spends per wall second of that stream.
* ``firmware``: the controller firmware alone on a simulated board and a virtual
  clock, no pty: bench seconds of a 20 kHz light-in and a 100 Hz status stream
  it runs per wall second (``x_realtime``), so the highest light-in rate it could
  sustain in real time is about ``20 kHz x x_realtime``.
* ``silent``: how long the driver takes to report a controller that stopped
  answering, against its configured bound ``timeout x (retries + 1)``.
* ``--status N``: the fraction of status-LED looks (IMP_FACTS §3) named right
  from 100 Hz RGB samples with gaussian sensor noise of 2..14 % of full scale
  per channel, N random phases each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np

from impfactory.clock import VirtualClock
from impfactory.hw.bench import BenchDriver, BenchTimeoutError
from impfactory.hw.bench_emulated import TICK_S, ControllerThread, EmulatedBenchController
from impfactory.protocol import bench as bp
from impfactory.protocol.bench_status import PATTERNS, decode_status
from impfactory.tools.cmd_bench import number_type


class _QuietBench:
    """A bench with nothing on it but a fixture LED showing a ramp."""

    def set_power(self, on: bool) -> None:
        pass

    def light_to_dut(self, t0: float, levels: np.ndarray, rate_hz: float) -> None:
        pass

    def dut_status_rgb(self, times: np.ndarray) -> np.ndarray:
        return np.zeros((len(times), 3))

    def press_button(self, seconds: float) -> None:
        pass

    def fixture_light(self, times: np.ndarray) -> np.ndarray:
        return np.asarray(times % 1.0)

    def uart_to_dut(self, data: bytes) -> None:
        pass

    def uart_from_dut(self) -> bytes:
        return b""


def measure_codec(frames: int = 2000) -> dict[str, Any]:
    msg = bp.LightInSamples(0, tuple(range(510)))
    started = time.perf_counter()
    wire = b"".join(bp.encode(i % 255 + 1, msg) for i in range(frames))
    encoded = time.perf_counter() - started
    decoder = bp.FrameDecoder()
    started = time.perf_counter()
    got = decoder.feed(wire)
    decoded = time.perf_counter() - started
    assert len(got) == frames and decoder.faults == 0
    return {
        "frames": frames,
        "frame_bytes": len(wire) // frames,
        "encode_frames_per_s": round(frames / encoded),
        "decode_frames_per_s": round(frames / decoded),
        "decode_mb_per_s": round(len(wire) / decoded / 1e6, 2),
    }


def measure_bench(requests: int = 500, seconds: float = 2.0) -> dict[str, Any]:
    controller = EmulatedBenchController(_QuietBench())
    with ControllerThread(controller) as path, BenchDriver.open(path, timeout=0.5) as driver:
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            driver.identify()
            times.append(time.perf_counter() - started)
        light = driver.start_light_in(20_000.0)
        started, cpu = time.perf_counter(), time.process_time()
        time.sleep(seconds)
        driver.stop()
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        count, lost = light.count(), light.lost
        driver.timeout, driver.retries = 0.2, 2
        controller.faults.muted = True
        started = time.perf_counter()
        try:
            driver.identify()
        except BenchTimeoutError:
            silent = time.perf_counter() - started
        else:  # pragma: no cover - a muted controller cannot answer
            raise AssertionError("a muted controller answered")
    times.sort()
    return {
        "round_trip_median_ms": round(statistics.median(times) * 1000, 3),
        "round_trip_p99_ms": round(times[int(0.99 * (len(times) - 1))] * 1000, 3),
        "stream_rate_hz": 20_000,
        "stream_samples_per_s": round(count / wall),
        "stream_lost": lost,
        "stream_cpu_s_per_s": round(cpu / wall, 3),
        "silent_detect_s": round(silent, 3),
        "silent_bound_s": round(0.2 * 3, 3),
    }


def measure_firmware(seconds: float = 5.0) -> dict[str, Any]:
    """The firmware on its simulated board, driven without a pty on a virtual clock."""
    clock = VirtualClock()
    controller = EmulatedBenchController(_QuietBench(), clock)
    frames = bytearray()

    def keep(frame: bytes) -> None:  # no pty: the frames are kept here
        frames.extend(frame)

    controller._write = keep  # type: ignore[method-assign]
    controller.receive(bp.encode(1, bp.Identify()))
    controller.receive(bp.encode(2, bp.LightInStart(bp.rate_to_mhz(20_000.0))))
    controller.receive(bp.encode(3, bp.StatusStart(bp.rate_to_mhz(100.0))))
    started = time.perf_counter()
    steps = round(seconds / TICK_S)
    for _ in range(steps):
        clock.advance_sync(TICK_S)
        controller.run()
    wall = time.perf_counter() - started
    got = [p for p in bp.FrameDecoder().feed(bytes(frames)) if isinstance(p, bp.Packet)]
    light = sum(len(p.message.samples) for p in got if isinstance(p.message, bp.LightInSamples))
    status = sum(len(p.message.rgb) for p in got if isinstance(p.message, bp.StatusSamples))
    return {
        "bench_seconds": seconds,
        "light_in_samples": light,
        "status_samples": status,
        "x_realtime": round(seconds / wall, 2),
    }


RGB = {"amber": (255, 176, 0), "green": (32, 192, 64), "red": (224, 32, 32)}


def _render_look(pattern: tuple[int, ...], colour: str, seconds: float, rate: float,
                 phase_ms: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    """RGB samples of a LED showing ``pattern`` (lit first, each period starting lit)."""
    t = np.arange(round(seconds * rate)) / rate * 1000.0 + phase_ms
    edges = np.cumsum(pattern)
    lit = np.searchsorted(edges, t % edges[-1], side="right") % 2 == 0
    rgb = np.where(lit[:, None], RGB[colour], (4, 4, 4)).astype(np.float64)
    return np.clip(rgb + rng.normal(0.0, noise * 255, rgb.shape), 0, 255)


def measure_status(trials: int = 50, rate: float = 100.0) -> dict[str, Any]:
    """Fraction of status-LED looks named right at each sensor noise level."""
    rng = np.random.default_rng(1)
    out: dict[str, Any] = {}
    for noise in (0.02, 0.06, 0.10, 0.14):
        right = total = 0
        for look in PATTERNS:
            colour = min(look.colours) if look.colours else "red"
            for _ in range(trials):
                seconds = 3 * sum(look.pattern) / 1000 + 1.5
                rgb = _render_look(look.pattern, colour, seconds, rate,
                                   float(rng.uniform(0, 4000)), noise, rng)
                states = [r.state for r in decode_status(rgb, rate)]
                right += states == [look.name]
                total += 1
        out[f"named_at_noise_{noise:.2f}"] = round(right / total, 3)
    return out


def _run(args: argparse.Namespace) -> int:
    doc = {"codec": measure_codec(args.frames), "pty": measure_bench(args.requests, args.seconds),
           "firmware": measure_firmware(args.firmware_seconds)}
    if args.status:
        doc["status"] = measure_status(args.status)
    if args.json:
        print(json.dumps(doc))
    else:
        for group, figures in doc.items():
            for key, value in figures.items():
                print(f"{group:<8} {key:<24} {value}")
    return 0


def _count(minimum: int) -> Any:
    """An argparse type for a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value

    return parse


def register(sub: Any) -> None:
    parser = sub.add_parser("bench", help="bench protocol: codec speed, pty round trip, streams",
                            description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=_count(1), default=2000, help="frames through the codec")
    parser.add_argument("--requests", type=_count(1), default=500, help="IDENTIFY round trips")
    parser.add_argument("--seconds", type=number_type(zero_ok=False), default=2.0,
                        help="seconds of 20 kHz stream")
    parser.add_argument("--firmware-seconds", type=number_type(zero_ok=False), default=5.0,
                        help="bench seconds of streams through the firmware on a virtual clock")
    parser.add_argument("--status", type=_count(0), default=0, metavar="TRIALS",
                        help="also: status-LED looks named right per noise level (TRIALS each)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=_run)
