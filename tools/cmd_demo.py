"""``impfactory demo``: the main job on embedded defaults.

For now (first version) it is the BlinkUp path a factory fixture and a DUT share: a
factory BlinkUp (WiFi settings and an enrolment token) is encoded, flashed as the
bi-level ``BLINKUP_FAST`` light signal through a noisy light model (weak swing,
ambient light, sensor noise, a sender clock off by a few percent), decoded by the
streaming decoder fed in 100 ms chunks as an imp would sample it, and compared
with what was sent. Later versions grow it into a whole factory line.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np
from impfactory.protocol.blinkup import BlinkUpConfig, encode_frame
from impfactory.protocol.decoder import BlinkUpDecoder, DecodeResult
from impfactory.protocol.linecode import BILEVEL_FAST_RATE, LightModel, render_bilevel


def _run(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(args.seed)
    sent = BlinkUpConfig(
        ssid="FactoryFloor-2.4G",
        password="blinkup-demo-password",
        plan_id=rng.bytes(8).hex(),
        token=rng.bytes(8).hex(),
    )
    frame = encode_frame(sent)
    swing, ambient, noise = 0.25, 0.3, 0.02
    clock_error = float(rng.uniform(-0.05, 0.05))
    sample_rate = 1000.0
    signal = render_bilevel(
        frame,
        symbol_rate=BILEVEL_FAST_RATE,
        sample_rate=sample_rate,
        light=LightModel(gain=swing, ambient=ambient),
        clock_error=clock_error,
        phase=float(rng.random()),
        noise=noise,
        seed=rng,
    )
    snr = 20 * math.log10(swing / (2 * noise))
    decoder = BlinkUpDecoder(sample_rate, "bilevel", BILEVEL_FAST_RATE)
    chunk = int(sample_rate // 10)
    outcomes: list[Any] = []
    start = time.perf_counter()
    for i in range(0, len(signal), chunk):
        outcomes += decoder.feed(signal.samples[i : i + chunk])
    elapsed = time.perf_counter() - start
    result = next((o for o in outcomes if isinstance(o, DecodeResult)), None)
    ok = result is not None and result.config == sent
    summary: dict[str, Any] = {
        "ok": ok,
        "sent": sent.to_json(),
        "frame_bytes": len(frame),
        "signal_s": round(signal.duration, 3),
        "channel": {
            "swing": swing,
            "ambient": ambient,
            "noise_sigma": noise,
            "snr_db": round(snr, 1),
            "clock_error": round(clock_error, 4),
        },
        "decode_ms": round(elapsed * 1e3, 2),
        "x_realtime": round(signal.duration / elapsed, 1),
    }
    if result is not None:
        summary["received"] = result.config.to_json()
        summary["measured_symbol_rate"] = round(result.stats.symbol_rate, 2)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0 if ok else 1
    print("impfactory demo: a factory BlinkUp through a noisy light model")
    print(
        f"  sent      ssid={sent.to_json()['ssid']!r} password=*** "
        f"plan_id={sent.plan_id} token={sent.token}"
    )
    print(
        f"  light     {len(frame)}-byte frame, bi-level Manchester at "
        f"{BILEVEL_FAST_RATE:g} Hz: {signal.duration:.2f} s sampled at {sample_rate:g} Hz"
    )
    print(
        f"  channel   swing {swing:.0%} of full scale over {ambient:.0%} ambient, "
        f"noise sigma {noise} (SNR {snr:.1f} dB), sender clock {clock_error:+.1%}"
    )
    if ok and result is not None:
        print(
            f"  decoded   in {elapsed * 1e3:.1f} ms ({signal.duration / elapsed:.0f}x real "
            f"time), sender rate measured {result.stats.symbol_rate:.1f} Hz: "
            "every field matches"
        )
        return 0
    failure = outcomes[0] if outcomes else "no BlinkUp found"
    print(f"  FAILED    {failure}")
    return 1


def register(sub: Any) -> None:
    parser = sub.add_parser("demo", help="run the main job on embedded defaults")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: fresh)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    parser.set_defaults(func=_run)
