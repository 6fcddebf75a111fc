"""``impfactory bench``: drive a bench controller over USB serial, or emulate one.

Every subcommand but ``emulate`` opens a controller by ``--port`` (a device path
such as ``/dev/ttyUSB0``, the pty ``emulate`` prints, or any pyserial URL) and
speaks the bench protocol (docs/bench.md) through ``hw.bench.BenchDriver``, so
the same commands drive a real bench and the emulated one::

    impfactory bench emulate --scale 10 &        # prints "port: /dev/pts/N"
    impfactory bench probe --port /dev/pts/N --json
    impfactory bench blinkup --port /dev/pts/N --ssid factory --password secret
    impfactory bench capture --port /dev/pts/N --press -o fixture.csv
    impfactory bench watch --port /dev/pts/N
    impfactory bench uart --port /dev/pts/N --send "hello imp"
    impfactory bench run --port /dev/pts/N --broker URL   # the line (tools/bench_run.py)

``emulate`` puts an emulated imp (``firmware.bench_target.EmulatedImpBench``) on
the emulated bench as the DUT: the bench LED feeds its light sensor, the colour
sensor reads its status LED, the power switch powers it, its UART carries its log
lines. The fixture on the emulated bench is a stand-in: pressing its button
flashes one factory BlinkUp of the ``--fixture-*`` settings on its LED (an
emulated fixture imp would need a cloud for its enrolment token; that is the
line's job, ``bench run``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from impfactory.clock import Clock, RealClock, ScaledClock
from impfactory.firmware.bench_target import (
    EXAMPLE_PLAN_ID,
    EXAMPLE_TOKEN,
    NOWHERE,
    EmulatedImpBench,
)
from impfactory.firmware.fleet import FACTORY_PASSWORD, FACTORY_SSID
from impfactory.hw.bench import (
    BenchDriver,
    BenchError,
    BenchLinkError,
    BenchTimeoutError,
    SampleBuffer,
    StreamStall,
    UartLines,
)
from impfactory.hw.bench_emulated import EmulatedBenchController
from impfactory.hw.controller.flash import flash, load_config
from impfactory.protocol import bench as bp
from impfactory.protocol.bench_status import StatusDecoder, StatusReading
from impfactory.protocol.blinkup import BlinkUpConfig, encode_frame
from impfactory.protocol.linecode import (
    BILEVEL_FAST_RATE,
    BILEVEL_RATE,
    TRILEVEL_RATE,
    Signal,
    bilevel_symbols,
    trilevel_levels,
)
from impfactory.tools import bench_run

STATUS_RATE = 100.0
LIGHT_IN_RATE = 1000.0


class BenchCommandError(BenchError, ValueError):
    """A bench command was asked for something it cannot do (exit status 2)."""


class BenchRunFailed(BenchError):
    """A controller that answered at first failed during the command (exit status 1)."""

    exit_code = 1


def number_type(*, zero_ok: bool) -> Callable[[str], float]:
    """An argparse type for a finite number above zero (or from zero, for durations)."""
    bound = "of zero or more" if zero_ok else "above zero"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(value) and (value > 0 or (zero_ok and value == 0))):
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
        return value

    return parse


_positive = number_type(zero_ok=False)  # rates, speed-ups, timeouts, waits
_seconds = number_type(zero_ok=True)  # durations where 0 means "none" or "until stopped"


def _baud(text: str) -> int:
    """argparse type: a UART baud rate that fits the protocol's u32 (0 turns the UART off)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"baud rate {value} is outside 0..4294967295")
    return value


# ---------------------------------------------------------------- the emulated bench


async def _emulate(args: argparse.Namespace) -> int:
    clock: Clock = ScaledClock(args.scale) if args.scale != 1 else RealClock()
    fixture = {"plan_id": args.plan_id, "token": args.token, "fast": args.fast}
    if args.fixture_ssid is not None:
        fixture["ssid"] = args.fixture_ssid
    if args.fixture_password is not None:
        fixture["password"] = args.fixture_password
    target = EmulatedImpBench.build(
        clock, serial=args.serial, wifi=(args.wifi_ssid, args.wifi_password),
        server=args.server, fixture=fixture,
    )
    device = target.device
    uart_lines = UartLines()

    def show_uart(data: bytes) -> None:
        for line in uart_lines.feed(data):
            print(f"uart to DUT: {line}", file=sys.stderr, flush=True)

    target.on_uart = show_uart
    # the controller's DUT power pin starts as the DUT does (a board's power_at_boot)
    settings = {**args.settings, "power_at_boot": 0 if args.unpowered else 1}
    controller = EmulatedBenchController(target, clock, serial=f"EMU-{device.device_id}",
                                         config=settings)
    path = await controller.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if not args.unpowered:
        device.power_on()
    print(f"port: {path}", flush=True)
    print(
        f"serving the bench protocol v{bp.PROTOCOL_VERSION} for DUT {device.device_id} "
        f"(clock x{args.scale:g}); stop with Ctrl-C",
        file=sys.stderr,
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await controller.stop()
        await device.power_off()
    print(f"served {controller.requests} requests", file=sys.stderr)
    return 0


def _cmd_emulate(args: argparse.Namespace) -> int:
    from impfactory.brokerurl import parse_url

    parse_url(args.server)  # a typo here would leave the DUT connecting forever, silently
    args.settings = load_config(args.config) if args.config else {}
    return asyncio.run(_emulate(args))


def _cmd_flash(args: argparse.Namespace) -> int:
    """Copy the controller firmware to a Pico with mpremote (hw/controller/flash.py)."""
    settings = load_config(args.config) if args.config else {}
    command = flash(args.port, settings, dry_run=args.dry_run)
    if args.dry_run:
        print(shlex.join(command))
    else:
        print(f"flashed the bench controller firmware to {args.port}; it runs now "
              f"(impfactory bench probe --port {args.port})", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- host commands


@contextlib.contextmanager
def _open(args: argparse.Namespace) -> Iterator[BenchDriver]:
    """The controller on ``--port``, closed afterwards.

    Exit statuses follow the command line's rule: a port where no controller ever
    answers is bad input (2); a controller that answered and then went silent or
    lost its link failed the run (1).
    """
    with BenchDriver.open(args.port, timeout=args.timeout, retries=args.retries) as driver:
        try:
            yield driver
        except (BenchTimeoutError, BenchLinkError) as err:
            if driver.greeted:
                raise BenchRunFailed(str(err)) from err
            raise


def _cmd_probe(args: argparse.Namespace) -> int:
    with _open(args) as bench:
        ident = bench.identify()
    caps = [c.name for c in bp.Capability if c is not bp.Capability.ALL and ident.capabilities & c]
    doc = {
        "port": args.port,
        "protocol_version": ident.protocol_version,
        "name": ident.name,
        "serial": ident.serial,
        "capabilities": [str(c).lower() for c in caps],
        "max_payload": ident.max_payload,
    }
    if args.json:
        print(json.dumps(doc))
    else:
        for key, value in doc.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            print(f"{key:<17} {shown}")
    return 0


def _stream_seconds(buffer: SampleBuffer) -> float:
    return float(buffer.count() / buffer.rate_hz) if buffer.rate_hz else 0.0


def _wait_stream(bench: BenchDriver, buffer: SampleBuffer, seconds: float) -> None:
    """Wait until ``seconds`` of stream time arrived (bench time, so a scaled bench is quick).

    A stream that stops is caught by :class:`StreamStall`; one that trickles (a controller
    slower than the rate it accepted) by a wall limit of the stream's length plus 30 s.
    """
    stall = StreamStall(bench, buffer)
    wall_limit = seconds - _stream_seconds(buffer) + 30
    deadline = time.monotonic() + wall_limit
    while _stream_seconds(buffer) < seconds:
        stall.check()
        if time.monotonic() > deadline:
            raise BenchRunFailed(
                f"the controller sent {_stream_seconds(buffer):.1f} s of samples in "
                f"{wall_limit:.0f} s; expected {seconds:.1f} s"
            )
        time.sleep(0.02)


def _cmd_blinkup(args: argparse.Namespace) -> int:
    config = BlinkUpConfig(
        ssid=args.ssid.encode() if args.ssid else None,
        password=args.password.encode() if args.ssid and args.password else None,
        plan_id=args.plan_id,
        token=args.token,
    )
    frame = encode_frame(config)
    if args.line_code == "trilevel":
        if args.fast:
            raise BenchCommandError("--fast is a bi-level rate; a tri-level screen runs at 60 Hz")
        # a phone screen's black/grey/white, as LED brightness (the protocol's 0..255)
        symbols = bytes(round(level * 255) for level in trilevel_levels(frame))
        rate = TRILEVEL_RATE
    else:
        symbols = bytes(255 if s else 0 for s in bilevel_symbols(frame))
        rate = BILEVEL_FAST_RATE if args.fast else BILEVEL_RATE
    with _open(args) as bench:
        ident = bench.identify()
        cycle = args.power_cycle
        if cycle is None:  # as an operator does: power the DUT up in front of the light
            cycle = bool(ident.capabilities & bp.Capability.POWER)
        if cycle:
            bench.power(False)
            bench.power(True)
        status = bench.start_status(STATUS_RATE)
        _wait_stream(bench, status, args.settle)
        started = _stream_seconds(status)
        duration = bench.light_out(symbols, rate, active_high=args.active_high)
        _wait_stream(bench, status, started + duration + args.watch)
        bench.stop(bp.Stream.STATUS)
        rgb = status.all()
    readings = StatusDecoder(STATUS_RATE)
    readings.feed(rgb)
    states = [r.state for r in readings.readings]
    ok = "blinkup_ok" in states
    if args.json:
        doc = {
            "frame": frame.hex(),
            "symbols": len(symbols),
            "symbol_rate": rate,
            "seconds": round(duration, 3),
            "blinkup_ok": ok,
            "power_cycled": cycle,
            "status": [r.to_json() for r in readings.readings],
            "lost_samples": status.lost,
        }
        print(json.dumps(doc))
    else:
        if cycle:
            print("switched the DUT off and on: its BlinkUp window is open")
        print(f"flashed {len(frame)}-byte frame: {len(symbols)} symbols at {rate:g} Hz "
              f"({duration:.1f} s)")
        for r in readings.readings:
            print(_reading_line(r))
        if ok:
            print("DUT acknowledged the BlinkUp")
        elif cycle:
            print("DUT did not show the BlinkUp green")
        else:
            how = ("leave out --no-power-cycle" if args.power_cycle is False else
                   "this controller does not switch DUT power: switch it off and on")
            print("DUT did not show the BlinkUp green (an imp listens for BlinkUp for 60 s "
                  f"after power-on: {how})")
    return 0 if ok else 1


def _cmd_capture(args: argparse.Namespace) -> int:
    from impfactory.tools.cmd_blinkup import write_capture

    output = Path(args.output)
    # checked before recording, so a long capture is never recorded only to be lost
    if not output.parent.is_dir():
        raise BenchCommandError(f"cannot write {output}: {output.parent} is not a directory")
    if output.suffix.lower() == ".wav" and args.rate != round(args.rate):
        raise BenchCommandError(f"a .wav capture needs a whole --rate, not {args.rate:g}")
    with _open(args) as bench:
        light = bench.start_light_in(args.rate)
        if args.press:
            bench.press_button(args.press_seconds)
        _wait_stream(bench, light, args.seconds)
        bench.stop(bp.Stream.LIGHT_IN)
        data = light.all()[:, 0]
    if light.lost and not args.allow_gaps:
        raise BenchRunFailed(
            f"{light.lost} samples were lost on the wire; nothing written "
            "(--allow-gaps keeps the capture, holding the last level across gaps)"
        )
    if light.lost:
        for i in np.flatnonzero(np.isnan(data)):
            data[i] = data[i - 1] if i else 0.0
    levels = data / 65535.0
    meta = {"source": "bench", "port": args.port, "lost": light.lost}
    write_capture(output, Signal(levels, args.rate), meta)
    print(f"captured {len(levels)} samples ({len(levels) / args.rate:.2f} s at "
          f"{args.rate:g} Hz) to {args.output}", file=sys.stderr)
    return 0


def _reading_line(r: StatusReading) -> str:
    pattern = ",".join(map(str, r.pattern)) if r.pattern else "solid" if r.colour != "off" else ""
    return f"{r.start:9.2f} s  {r.state:<28} {r.colour:<7} {pattern}".rstrip()


@contextlib.contextmanager
def _until_stopped() -> Iterator[threading.Event]:
    """An event set by SIGTERM; Ctrl-C ends the block quietly. For live commands
    (watch, uart) that stop on a signal and still finish what they started."""
    stop = threading.Event()
    old = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        yield stop
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)


def _cmd_watch(args: argparse.Namespace) -> int:
    decoder = StatusDecoder(args.rate)

    def show(samples: np.ndarray) -> None:
        for r in decoder.feed(samples):
            print(json.dumps(r.to_json()) if args.json else _reading_line(r), flush=True)

    with _open(args) as bench:
        status = bench.start_status(args.rate)
        stall = StreamStall(bench, status)
        with _until_stopped() as stop:
            while not stop.wait(0.05):
                show(status.take())
                stall.check()
                if args.seconds and _stream_seconds(status) >= args.seconds:
                    break
        bench.stop(bp.Stream.STATUS)
        show(status.take())
    return 0


def _cmd_uart(args: argparse.Namespace) -> int:
    """The DUT's UART as a console: optional lines out first, then its lines live."""
    lines = UartLines()
    with _open(args) as bench:
        bench.identify()
        if args.baud is not None:
            bench.uart_config(args.baud)
        for text in args.send or []:
            bench.uart_write(text.encode() + b"\r\n")
        deadline = time.monotonic() + args.seconds if args.seconds else math.inf
        with _until_stopped() as stop:
            while not stop.is_set() and time.monotonic() < deadline:
                for line in lines.feed(bench.uart_read(0.05)):
                    print(line, flush=True)
        for line in lines.feed(bench.uart_read(0.0)) + lines.rest():
            print(line, flush=True)
    return 0


def _cmd_power(args: argparse.Namespace) -> int:
    with _open(args) as bench:
        if args.state == "cycle":
            bench.power(False)
            bench.power(True)
        else:
            bench.power(args.state == "on")
    return 0


# ---------------------------------------------------------------- parser


def _port_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", required=True,
                        help="controller: /dev/ttyUSB0, a pty path, or a pyserial URL")
    parser.add_argument("--timeout", type=_positive, default=0.5,
                        help="seconds to wait for each answer (default 0.5)")
    parser.add_argument("--retries", type=int, default=3,
                        help="resends before the controller counts as gone (default 3)")


def _host_command(cmds: Any, name: str, help: str, func: Any) -> argparse.ArgumentParser:
    """A subcommand that opens a controller by ``--port``."""
    parser: argparse.ArgumentParser = cmds.add_parser(name, help=help)
    _port_options(parser)
    parser.set_defaults(func=func)
    return parser


def register(sub: Any) -> None:
    parser = sub.add_parser("bench", help="drive a bench controller over serial, or emulate one",
                            description=__doc__.split("\n\n")[0])
    cmds = parser.add_subparsers(dest="bench_command", metavar="SUBCOMMAND", required=True)

    emu = cmds.add_parser("emulate", help="serve an emulated bench (imp DUT) on a pty")
    emu.add_argument("--scale", type=_positive, default=1.0,
                     help="bench clock speed-up (10 runs the bench ten times faster)")
    emu.add_argument("--wifi-ssid", default=FACTORY_SSID, help="the network the DUT can join")
    emu.add_argument("--wifi-password", default=FACTORY_PASSWORD)
    emu.add_argument("--server", default=NOWHERE,
                     help="the DUT's impCloud MQTT URL (default: nowhere, so it keeps connecting)")
    emu.add_argument("--serial", type=int, default=1, help="the DUT's serial number (identity)")
    emu.add_argument("--fast", action="store_true",
                     help="the stand-in fixture flashes with BLINKUP_FAST (142 Hz)")
    emu.add_argument("--unpowered", action="store_true", help="start with the DUT switched off")
    emu.add_argument("--fixture-ssid", help="what the stand-in fixture flashes (default: wifi)")
    emu.add_argument("--fixture-password")
    emu.add_argument("--plan-id", default=EXAMPLE_PLAN_ID)
    emu.add_argument("--token", default=EXAMPLE_TOKEN)
    emu.add_argument("--config", metavar="FILE",
                     help="controller settings (bench_config.json), as a board would have")
    emu.set_defaults(func=_cmd_emulate)

    fl = cmds.add_parser("flash", help="copy the controller firmware to a Raspberry Pi Pico")
    fl.add_argument("--port", required=True, help="the Pico's serial port, e.g. /dev/ttyACM0")
    fl.add_argument("--config", metavar="FILE",
                    help="controller settings (bench_config.json): pins of a board wired "
                         "differently, the colour calibration")
    fl.add_argument("--dry-run", action="store_true",
                    help="print the mpremote command instead of running it")
    fl.set_defaults(func=_cmd_flash)

    probe = _host_command(cmds, "probe", "identify the controller", _cmd_probe)
    probe.add_argument("--json", action="store_true")

    blink = _host_command(cmds, "blinkup", "BlinkUp the DUT through the bench LED", _cmd_blinkup)
    blink.add_argument("--ssid", required=True)
    blink.add_argument("--password", default="")
    blink.add_argument("--plan-id")
    blink.add_argument("--token")
    blink.add_argument("--fast", action="store_true", help="142 symbols/s (BLINKUP_FAST)")
    blink.add_argument("--line-code", choices=["bilevel", "trilevel"], default="bilevel",
                       help="bilevel: a fixture's LED (default); trilevel: a phone screen's "
                            "black, grey and white at 60 frames/s, as LED brightness")
    blink.add_argument("--active-high", action="store_true", help="bench LED lit on a high pin")
    blink.add_argument("--power-cycle", action=argparse.BooleanOptionalAction, default=None,
                       help="switch the DUT off and on first, which opens its BlinkUp window "
                            "(an imp listens for 60 s after power-on); default: when the "
                            "controller switches DUT power")
    for name, default, when in (("--settle", 1.0, "before"), ("--watch", 8.0, "after")):
        blink.add_argument(name, type=_seconds, default=default,
                           help=f"bench seconds of status LED to read {when} flashing")
    blink.add_argument("--json", action="store_true")

    cap = _host_command(cmds, "capture", "record the fixture's LED into a capture file",
                        _cmd_capture)
    cap.add_argument("-o", "--output", required=True, help="capture file (.csv or .wav)")
    cap.add_argument("--seconds", type=_positive, default=20.0,
                     help="bench seconds to record (default 20; longer than the flash)")
    cap.add_argument("--rate", type=_positive, default=LIGHT_IN_RATE, help="samples per second")
    cap.add_argument("--press", action="store_true", help="press the fixture button first")
    cap.add_argument("--press-seconds", type=_positive, default=0.2)
    cap.add_argument("--allow-gaps", action="store_true",
                     help="write the capture even when samples were lost on the wire")

    watch = _host_command(cmds, "watch", "name the DUT's status-LED states as they show",
                          _cmd_watch)
    watch.add_argument("--rate", type=_positive, default=STATUS_RATE,
                       help="RGB samples per second")
    watch.add_argument("--seconds", type=_seconds, default=0.0,
                       help="stop after this many bench seconds (default: until Ctrl-C)")
    watch.add_argument("--json", action="store_true", help="one JSON object per state")

    uart = _host_command(cmds, "uart", "the DUT's UART through the bench: print its lines live",
                         _cmd_uart)
    uart.add_argument("--send", action="append", metavar="TEXT",
                      help="send TEXT and a CR LF to the DUT first (repeatable)")
    uart.add_argument("--baud", type=_baud,
                      help="set the pass-through's baud rate first (0 turns it off)")
    uart.add_argument("--seconds", type=_seconds, default=0.0,
                      help="stop after this many wall seconds (default: until Ctrl-C)")

    power = _host_command(cmds, "power", "switch the DUT's power", _cmd_power)
    power.add_argument("state", choices=["on", "off", "cycle"])

    bench_run.register(cmds, _positive)
