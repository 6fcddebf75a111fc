"""``impfactory blinkup encode|decode|plot``: BlinkUp frames and light captures by hand.

Captures are files a person can open elsewhere, each carrying its sample rate:

* ``.wav``: mono 16-bit PCM at the capture's sample rate; 0..32767 is 0..1 of the
  sensor's full scale (Audacity, sox, any DAW opens it).
* ``.csv`` (or anything else): a ``# impfactory capture sample_rate=1000.0 ...``
  comment line, a ``time_s,level`` header, then one row per sample.
* ``decode`` also accepts a text file holding a frame as hex.
"""

from __future__ import annotations

import argparse
import json
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np

from impfactory.protocol.blinkup import BlinkUpConfig, BlinkUpError, decode_frame, encode_frame
from impfactory.protocol.decoder import (
    BlinkUpDecodeError,
    BlinkUpDecoder,
    DecodeResult,
    DecodeStats,
)
from impfactory.protocol.linecode import (
    BILEVEL_FAST_RATE,
    BILEVEL_RATE,
    TRILEVEL_RATE,
    LightModel,
    LineCodeError,
    Signal,
    bilevel_symbols,
    render_bilevel,
    render_trilevel,
)
from impfactory.protocol.screen import Screen
from impfactory.tools.capture_stream import (
    WAV_FULL_SCALE,
    CaptureError,
    LineCode,
    NoBlinkUpError,
    decode_capture,
    open_capture,
)

__all__ = ["CaptureError", "NoBlinkUpError", "decode_signal", "read_capture", "write_capture"]

HEX_FILE_LIMIT = 64 * 1024
"""Bytes a file may have to be read as a hex frame (a frame is at most 262 bytes)."""


# --------------------------------------------------------------------------- files


def write_capture(path: Path, signal: Signal, meta: dict[str, Any] | None = None) -> None:
    """Write ``signal`` as WAV (by extension) or CSV, with its sample rate inside."""
    if path.suffix.lower() == ".wav":
        rate = round(signal.sample_rate)
        if rate != signal.sample_rate:
            raise CaptureError(f"WAV needs an integer sample rate, not {signal.sample_rate}")
        pcm = np.round(np.clip(signal.samples, 0.0, 1.0) * WAV_FULL_SCALE).astype("<i2")
        # the file first: a bad path fails before ``wave`` holds a half-made writer
        with path.open("wb") as raw, wave.open(raw, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(pcm.tobytes())
        return
    info = " ".join(f"{k}={v}" for k, v in (meta or {}).items())
    lines = [f"# impfactory capture sample_rate={signal.sample_rate!r} {info}".rstrip()]
    lines.append("time_s,level")
    times = np.arange(len(signal)) / signal.sample_rate
    pairs = zip(times.tolist(), signal.samples.tolist(), strict=True)
    lines += [f"{t:.6f},{v:.6f}" for t, v in pairs]
    path.write_text("\n".join(lines) + "\n")


def read_capture(path: Path) -> tuple[Signal, dict[str, str]]:
    """Read a whole capture written by :func:`write_capture` (or any mono WAV / 1-2
    column CSV) into memory (``capture_stream.open_capture`` reads it in chunks)."""
    with open_capture(path) as capture:
        parts = list(capture.chunks())
        return Signal(np.concatenate(parts), capture.sample_rate), capture.meta


def _hex_frame(path: Path) -> bytes | None:
    """The frame in ``path`` if the file is a hex dump (one or more lines of hex)."""
    try:
        if path.stat().st_size > HEX_FILE_LIMIT:
            return None
        text = path.read_text().strip()
    except (UnicodeDecodeError, OSError):
        return None
    compact = "".join(text.split())
    if not compact or len(compact) % 2 or any(c not in "0123456789abcdefABCDEF" for c in compact):
        return None
    return bytes.fromhex(compact)


# --------------------------------------------------------------------------- decoding


def decode_signal(
    signal: Signal, line_code: str = "auto", symbol_rate: float | None = None
) -> DecodeResult | BlinkUpDecodeError:
    """Decode a whole capture; the first BlinkUp found, else the first failure."""
    codes = ("bilevel", "trilevel") if line_code == "auto" else (line_code,)
    failures: list[BlinkUpDecodeError] = []
    for code in codes:
        decoder = BlinkUpDecoder(signal.sample_rate, code, symbol_rate)  # type: ignore[arg-type]
        for outcome in decoder.feed(signal.samples) + decoder.flush():
            if isinstance(outcome, DecodeResult):
                return outcome
            failures.append(outcome)
    if failures:
        return failures[0]
    return NoBlinkUpError(f"no BlinkUp sync run found in {signal.duration:.4g} s of signal")


def _config_from_args(args: argparse.Namespace) -> BlinkUpConfig:
    return BlinkUpConfig(
        ssid=args.ssid,
        password=args.password,
        plan_id=args.plan_id,
        token=args.token,
        clear=args.clear,
    )


def _render(frame: bytes, args: argparse.Namespace) -> tuple[Signal, dict[str, Any]]:
    light = LightModel(gain=args.gain, ambient=args.ambient)
    impair: dict[str, Any] = {"noise": args.noise, "seed": args.seed}
    if args.line_code == "trilevel":
        rate = args.symbol_rate or TRILEVEL_RATE
        screen = None
        if args.screen is not None:
            screen = Screen(args.screen, jitter=args.jitter / 1000.0)
        signal = render_trilevel(
            frame, frame_rate=rate, sample_rate=args.sample_rate, light=light, screen=screen,
            **impair,
        )
    else:
        if args.screen is not None:
            raise LineCodeError("--screen paces a screen: use it with --line-code trilevel",
                                "screen")
        rate = args.symbol_rate or (BILEVEL_FAST_RATE if args.fast else BILEVEL_RATE)
        signal = render_bilevel(
            frame,
            symbol_rate=rate,
            sample_rate=args.sample_rate,
            active_high=not args.active_low,
            light=light,
            **impair,
        )
    return signal, {"line_code": args.line_code, "symbol_rate": rate}


# --------------------------------------------------------------------------- commands


def _encode(args: argparse.Namespace) -> int:
    cfg = _config_from_args(args)
    frame = encode_frame(cfg)
    if args.format == "hex":
        _emit(frame.hex() + "\n", args.output)
    elif args.format == "json":
        doc: dict[str, Any] = {"frame": frame.hex(), "length": len(frame), **cfg.to_json()}
        if args.line_code == "bilevel":
            doc["symbol_rate"] = BILEVEL_FAST_RATE if args.fast else BILEVEL_RATE
            doc["symbols"] = "".join(map(str, bilevel_symbols(frame)))
        _emit(json.dumps(doc, indent=2) + "\n", args.output)
    else:
        signal, meta = _render(frame, args)
        if args.output is None:
            if sys.stdout.isatty():
                raise CaptureError("--format samples needs -o FILE (.wav or .csv)")
            write_capture(Path("/dev/stdout"), signal, meta)
        else:
            write_capture(Path(args.output), signal, meta)
            print(
                f"wrote {args.output}: {len(signal)} samples at {signal.sample_rate:g} Hz "
                f"({signal.duration:.2f} s, {meta['line_code']} {meta['symbol_rate']:g} Hz)",
                file=sys.stderr,
            )
    return 0


def _emit(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        Path(output).write_text(text)


def _load_and_decode(args: argparse.Namespace) -> tuple[Signal, DecodeResult | BlinkUpError]:
    signal, meta = read_capture(Path(args.file))
    return signal, decode_signal(signal, _line_code(args, meta), args.symbol_rate)


def _line_code(args: argparse.Namespace, meta: dict[str, str]) -> LineCode:
    """``--line-code``, else the capture's own ``line_code=``, else ``auto``."""
    code = args.line_code if args.line_code != "auto" else meta.get("line_code", "auto")
    if code == "bilevel":
        return "bilevel"
    return "trilevel" if code == "trilevel" else "auto"


def _hex_file_config(path: Path) -> tuple[BlinkUpConfig, bytes] | None:
    """The decoded frame if ``path`` is a hex dump of one (raises if it is a bad one)."""
    frame = _hex_frame(path) if path.suffix.lower() != ".wav" else None
    if frame is None or frame[:4] != b"\x00\x00\x00\x2a":
        return None
    return decode_frame(frame), frame


def _hex_argument(text: str) -> tuple[BlinkUpConfig, bytes] | None:
    """The decoded frame if ``text`` (no such file) is itself a frame in hex."""
    compact = text.replace(" ", "").lower()
    if Path(text).exists() or not compact.startswith("0000002a") or len(compact) % 2:
        return None
    try:
        frame = bytes.fromhex(compact)
    except ValueError:
        return None
    return decode_frame(frame), frame


def _decode(args: argparse.Namespace) -> int:
    from_hex = _hex_argument(args.file) or _hex_file_config(Path(args.file))
    stats: DecodeStats | None = None
    if from_hex is not None:
        config, frame = from_hex
    else:
        with open_capture(Path(args.file)) as capture:  # read in chunks: any length
            outcome = decode_capture(capture, _line_code(args, capture.meta), args.symbol_rate)
        if isinstance(outcome, BlinkUpError):
            raise outcome
        config, frame, stats = outcome.config, outcome.frame, outcome.stats
    doc = config.to_json()
    if args.json:
        if stats is not None:
            doc["signal"] = {
                "line_code": stats.line_code,
                "symbol_rate": round(stats.symbol_rate, 3),
                "inverted": stats.inverted,
                "levels": [round(v, 5) for v in stats.levels],
                "thresholds": [round(v, 5) for v in stats.thresholds],
                "start_s": round(stats.sync_start / stats.sample_rate, 4),
                "end_s": round(stats.end / stats.sample_rate, 4),
            }
        doc["frame"] = frame.hex()
        print(json.dumps(doc, indent=2))
        return 0
    width = max(len(k) for k in doc) if doc else 0
    for key, value in doc.items():
        print(f"{key:<{width}}  {json.dumps(value) if not isinstance(value, str) else value}")
    if stats is not None:
        print(
            f"({stats.line_code} at {stats.symbol_rate:.1f} Hz measured"
            f"{', inverted' if stats.inverted else ''}; "
            f"{stats.sync_start / stats.sample_rate:.3f}-{stats.end / stats.sample_rate:.3f} s; "
            f"frame {frame.hex()})"
        )
    return 0


def without_passwords(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (a ``BlinkUpConfig.to_json()``) with every password shown as ``***``.

    A plot is shared (a bug report, a chat): it names the network, never its key.
    """
    out = dict(doc)
    for key in ("password", "password_hex"):
        if out.get(key) is not None:
            out[key] = "***"
    if isinstance(out.get("proxy"), dict):
        out["proxy"] = without_passwords(out["proxy"])
    return out


def _plot(args: argparse.Namespace) -> int:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise CaptureError("plotting needs matplotlib: pip install 'impfactory[plot]'") from err
    if _hex_frame(Path(args.file)) is not None:
        raise CaptureError("plot needs a capture (.wav or .csv), not a hex frame")
    signal, outcome = _load_and_decode(args)
    stats = outcome.stats if isinstance(outcome, DecodeResult) else getattr(outcome, "stats", None)
    t = np.arange(len(signal)) / signal.sample_rate
    fig, (full, zoom) = plt.subplots(2, 1, figsize=(14, 7), constrained_layout=True)
    for ax in (full, zoom):
        ax.plot(t, signal.samples, lw=0.7, color="tab:blue", label="light")
        ax.set_ylabel("light (full scale)")
        if stats is not None:
            for i, thr in enumerate(stats.thresholds):
                ax.axhline(thr, color="tab:red" if i == 0 else "tab:purple", lw=0.8, ls="--")
            for level in stats.levels:
                ax.axhline(level, color="grey", lw=0.5, ls=":")
    full.set_xlabel("time (s)")
    zoom.set_xlabel("time (s)")
    if isinstance(outcome, DecodeResult):
        shown = without_passwords(outcome.config.to_json())
        title = f"BlinkUp decoded: {json.dumps(shown)[:110]}"
    else:
        title = f"decode failed: {outcome}"
    full.set_title(title, fontsize=9)
    if stats is not None and stats.bit_starts:
        fs = stats.sample_rate
        full.axvspan(stats.sync_start / fs, stats.end / fs, color="tab:green", alpha=0.1)
        bits = stats.bit_starts
        frame = outcome.frame if isinstance(outcome, DecodeResult) else b"\x00\x00\x00\x2a"
        lo = stats.sync_start / fs
        hi = min(stats.end / fs, bits[min(len(bits) - 1, 6 + 8 * 4)] / fs)
        zoom.set_xlim(lo, hi)
        top = float(np.max(signal.samples))
        for b in bits:
            if lo <= b / fs <= hi:
                zoom.axvline(b / fs, color="tab:orange", lw=0.5, alpha=0.7)
        bit_len = (bits[1] - bits[0]) if len(bits) > 1 else stats.symbol_period
        labels = [(bits[0] - 2 * bit_len, "2A")] + [
            (bits[6 + 8 * k], f"{byte:02X}")
            for k, byte in enumerate(frame[4:])
            if 6 + 8 * k < len(bits)
        ]
        for pos, text in labels:
            if lo <= pos / fs <= hi:
                zoom.text(pos / fs, top, text, fontsize=8, va="bottom", family="monospace")
        zoom.set_title(
            "sync run, magic and first bytes: bit starts (orange), thresholds (dashed), "
            "sync levels (dotted)",
            fontsize=9,
        )
    fig.savefig(args.output, dpi=110)
    plt.close(fig)
    print(f"wrote {args.output}", file=sys.stderr)
    if isinstance(outcome, BlinkUpError):
        print(f"impfactory: error: {outcome}", file=sys.stderr)
        return outcome.exit_code
    return 0


def _add_decode_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", help="capture (.wav or .csv), a file holding a hex frame, or the hex itself"
    )
    parser.add_argument(
        "--line-code", choices=["auto", "bilevel", "trilevel"], default="auto",
        help="line code of the capture (default: from the file, else try both)",
    )
    parser.add_argument(
        "--symbol-rate", type=float, default=None,
        help="expected symbol rate in Hz (default: measured from the sync run)",
    )


def register(sub: Any) -> None:
    parser = sub.add_parser("blinkup", help="encode, decode and plot BlinkUp frames and signals")
    cmds = parser.add_subparsers(dest="blinkup_command", metavar="ACTION")

    enc = cmds.add_parser("encode", help="build a BlinkUp frame, print it or render its light")
    enc.add_argument("--ssid", help="WiFi SSID (UTF-8, up to 32 bytes)")
    enc.add_argument("--password", help="WiFi password (UTF-8, up to 64 bytes)")
    enc.add_argument("--plan-id", help="enrolment plan ID, 16 hex characters")
    enc.add_argument("--token", help="enrolment token, 16 hex characters")
    enc.add_argument("--clear", action="store_true", help="clear the configuration")
    enc.add_argument("--line-code", choices=["bilevel", "trilevel"], default="bilevel")
    enc.add_argument("--fast", action="store_true", help="bi-level at 142 Hz (BLINKUP_FAST)")
    enc.add_argument("--active-low", action="store_true", help="render an active-low pin")
    enc.add_argument("--symbol-rate", type=float, default=None, help="override the rate (Hz)")
    enc.add_argument("--sample-rate", type=float, default=1000.0, help="Hz (default 1000)")
    enc.add_argument("--format", choices=["hex", "json", "samples"], default="hex")
    enc.add_argument("-o", "--output", help="write to FILE (.wav or .csv for samples)")
    enc.add_argument("--gain", type=float, default=1.0, help="light model gain (swing)")
    enc.add_argument("--ambient", type=float, default=0.0, help="ambient light offset")
    enc.add_argument("--noise", type=float, default=0.0, help="noise std dev (full scale)")
    enc.add_argument("--seed", type=int, default=None, help="noise (and pacing) seed")
    enc.add_argument(
        "--screen", type=float, default=None, metavar="HZ",
        help="tri-level: pace the frames as Electric Imp's SDK does on a display refreshing "
             "at HZ, with sRGB gamma (default: an ideal screen)",
    )
    enc.add_argument("--jitter", type=float, default=0.0, metavar="MS",
                     help="with --screen: refresh jitter, ± milliseconds (0)")
    enc.set_defaults(func=_encode)

    dec = cmds.add_parser("decode", help="decode a capture or hex frame and print its fields")
    _add_decode_options(dec)
    dec.add_argument("--json", action="store_true", help="print a JSON object")
    dec.set_defaults(func=_decode)

    plot = cmds.add_parser("plot", help="draw a capture with its decoded bits and thresholds")
    _add_decode_options(plot)
    plot.add_argument("-o", "--output", default="signal.png", help="image file (signal.png)")
    plot.set_defaults(func=_plot)

    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
