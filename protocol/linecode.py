"""BlinkUp line codes: how frame bytes become light, and the light model.

Two codes, both MSB first, both sampled (default 1 kHz, like the imp's tuning
firmware) into a :class:`Signal` of floats in sensor full-scale units (0..1).

**Tri-level** (phone or desktop screen, IMP_FACTS §2). Each bit is two frames: a
black clock frame, then grey (0) or white (1); six black frames end it. Levels
0x00, 0xBF, 0xFF. Self-clocking: it runs as fast as the screen can draw::

    bits      0         0         1         0          end
    frame   |blk|gry| |blk|gry| |blk|wht| |blk|gry| |blk x6 ...|
    white   .   .   . .   .   . .   +---+ .   .   . .
    grey    .   +---+ .   +---+ .   |   | .   +---+ .
    black   +---+   +-+---+   +-+---+   +-+---+   +-+------------

**Bi-level** (an LED on a fixture GPIO pin; our design, since the real one is not
public). One symbol per bit at a fixed symbol rate (60 Hz, or 142 Hz for
``BLINKUP_FAST``), the LED lit for a 1 (NRZ), with three parts; the frame
``00 00 00 2A 02 07 00 1D 41`` (clear configuration) starts::

    frame     00 00 00                2A                 02 (LEN) ...
    part      sync run, 48 symbols    start word         data: whitened, stuffed
    bits                                                 0 0 0 0 0 0 1 0
    PN9                                                  0 0 0 0 0 1 1 1
    whitened                                             0 0 0 0 0 1 0 1
    symbols   1 0 1 0 ... 1 0 1 0     0 0 1 1 0 1 0 0    0 0 1 0 0 0 1 0 1 ...
    LED       # . # . ... # . # .     . . # # . # . .    . . # . . . # . # ...
                                                             ^ stuffed: four dark symbols

* **Sync run**: the preamble's three zero bytes are 48 alternating symbols, lit
  first: the max/min run whose peaks and troughs set the receiver's threshold and
  whose period is the sender's true rate, so a clock error (±5% or more) is
  measured, not tolerated.
* **Start word**: the magic 0x2A is the 8 symbols ``0 0 1 1 0 1 0 0``. Read with the
  last 8 symbols of the sync run, these 16 symbols differ in at least 4 places from
  every earlier 16-symbol window of the line, and from every inverted one, so the
  receiver finds where the data starts (allowing one wrong symbol) and whether the
  light is inverted (an active-low LED, or a ``BLINKUP_ACTIVEHIGH`` flag that
  disagrees with the wiring): polarity never matters.
* **Data**: LEN, the TLVs and the CRC, then a **line check** (the packet's
  CRC-16/CCITT, 2 bytes, :func:`bilevel_check`), one symbol per bit, MSB first, **bit
  stuffed**: after ``BILEVEL_RUN_LIMIT`` (4) equal symbols on the line (counting the
  start word's last ones) and before the next data bit, one opposite symbol is
  inserted, which the receiver drops. No run of light or dark is longer than 4
  symbols, so the receiver re-times itself on an edge at least every 4 symbols. A
  full factory payload (124-byte frame) takes 1,099 symbols: 7.7 s at 142 Hz
  (Manchester took 14 s), 18.3 s at 60 Hz. The data is whitened first (XOR PN9,
  :data:`BILEVEL_WHITENING`), so the stuffing costs about 6% whatever the bytes
  (unwhitened, all 00 or FF would cost 25%).
* **Why a line check**: one symbol per bit, two faint bits can both be wrong near the
  noise limit, and the BlinkUp CRC cannot see two wrong bits a multiple of 128 bits
  apart; the line check can, and it keeps the receiver's CRC-aided repair of
  sampler slips (protocol/repair.py) from taking a wrong guess.

The threshold is the midpoint of the sync run's levels, fixed for the frame: it
needs no DC balance, so any ambient offset and gain are fine.

The light model is linear with clipping: ``light = ambient + gain * level``,
clipped to the sensor's range ``[0, 1]``. Impairments (sender clock error, noise,
sampling phase) are parameters of :func:`render_symbols`, which renders any list of
emitter levels so other channels (hw/optical.py) can reuse it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import crcmod.predefined
import numpy as np
import numpy.typing as npt

from .blinkup import MAX_PACKET, PREAMBLE, BlinkUpError
from .screen import Screen, emitted_light, sdk_frame_times

FloatArray = npt.NDArray[np.float64]


class LineCodeError(BlinkUpError):
    """A signal or rendering parameter that makes no sense (a rate <= 0, ...)."""


class LineCheckError(BlinkUpError):
    """The bi-level line check (CRC-16/CCITT of the packet) does not match."""

    def __init__(self, expected: int, received: int) -> None:
        super().__init__(
            f"line check is {received:#06x}, the packet gives {expected:#06x}", "line check"
        )
        self.expected = expected
        self.received = received


BILEVEL_RATE = 60.0
"""Symbols per second of a fixture LED by default."""
BILEVEL_FAST_RATE = 142.0
"""Symbols per second with ``BLINKUP_FAST``."""
BILEVEL_SYNC_RUN = (1, 0) * 24
"""The bi-level preamble (00 00 00): 48 alternating symbols, lit first."""
BILEVEL_START_WORD = (0, 0, 1, 1, 0, 1, 0, 0)
"""The bi-level magic (2A): with the sync run's last 8 symbols, at least 4 symbols
away from any earlier window of the line, either polarity."""
BILEVEL_RUN_LIMIT = 4
"""Equal symbols after which one opposite symbol is stuffed before the next data bit."""
_ccitt = crcmod.predefined.mkPredefinedCrcFun("crc-ccitt-false")


def _pn9(count: int) -> tuple[int, ...]:
    """PN9 (x^9 + x^5 + 1), seed 0x1FF: each bit is bit 8 xor bit 4 of the state, then
    shifted in at the bottom. Starts 0000 0111 1011 1110 0010 1110 0110 0100."""
    state, out = 0x1FF, []
    for _ in range(count):
        bit = ((state >> 8) ^ (state >> 4)) & 1
        state = ((state << 1) | bit) & 0x1FF
        out.append(bit)
    return tuple(out)


BILEVEL_WHITENING = _pn9(8 * (1 + MAX_PACKET + 2 + 2))
"""XOR-ed onto the data bits (LEN to the line check) before stuffing: any bytes, even
all 00 or FF, look random on the line, so stuffing costs about the same (6%) and a
full payload takes about the same time, whatever it carries."""


def bilevel_whiten(bits: Sequence[int]) -> list[int]:
    """Data bits XOR the whitening sequence (its own inverse)."""
    return [bit ^ pn for bit, pn in zip(bits, BILEVEL_WHITENING, strict=False)]


def bilevel_check(packet: bytes) -> bytes:
    """The bi-level line check sent after the packet (LEN .. CRC): its CRC-16/CCITT
    (poly 0x1021, init 0xFFFF), high byte first. A true CRC: it sees every error of
    up to three bits, where the BlinkUp CRC misses bit pairs 128 bits apart."""
    value: int = _ccitt(bytes(packet))
    return value.to_bytes(2, "big")
TRILEVEL_RATE = 60.0
"""Frames per second of a phone screen."""
DEFAULT_SAMPLE_RATE = 1000.0
"""The imp samples its light sensor at about 1 kHz."""

BLACK = 0.0
GREY = 0xBF / 0xFF
WHITE = 1.0
TRILEVEL_END_FRAMES = 6
MAX_SAMPLES = 50_000_000
"""The most samples one rendered signal may hold (400 MB of floats): a bad sample
rate is an error, not an exhausted memory."""


@dataclass(frozen=True)
class Signal:
    """Samples of light (sensor full-scale units) stamped with their rate in Hz."""

    samples: FloatArray
    sample_rate: float = DEFAULT_SAMPLE_RATE

    def __post_init__(self) -> None:
        array = np.asarray(self.samples, dtype=np.float64).reshape(-1)
        object.__setattr__(self, "samples", array)
        if not self.sample_rate > 0:
            raise LineCodeError(f"sample_rate must be > 0, got {self.sample_rate}", "sample_rate")

    def __len__(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        """Length of the capture in seconds."""
        return len(self) / self.sample_rate


@dataclass(frozen=True)
class LightModel:
    """``light = ambient + gain * level``, clipped to the sensor range if ``clip``."""

    gain: float = 1.0
    ambient: float = 0.0
    clip: bool = True


def _bits(frame: bytes) -> list[int]:
    return [(byte >> (7 - i)) & 1 for byte in frame for i in range(8)]


def bilevel_symbols(frame: bytes) -> list[int]:
    """LED state (1 = lit) for each symbol period of ``frame`` (preamble included):
    the sync run, the start word, then the bits of the packet and its line check,
    whitened and stuffed."""
    if bytes(frame[: len(PREAMBLE)]) != PREAMBLE:
        raise LineCodeError(
            f"a bi-level frame starts with the preamble {PREAMBLE.hex()}", "frame"
        )
    packet = bytes(frame[len(PREAMBLE) :])
    out = list(BILEVEL_SYNC_RUN + BILEVEL_START_WORD)
    last, run = out[-1], 2  # the start word ends with two dark symbols
    for bit in bilevel_whiten(_bits(packet + bilevel_check(packet))):
        if run >= BILEVEL_RUN_LIMIT:
            last, run = 1 - last, 1
            out.append(last)  # stuffed: an edge at least every RUN_LIMIT symbols
        out.append(bit)
        if bit == last:
            run += 1
        else:
            last, run = bit, 1
    return out


class Destuffed(NamedTuple):
    """The data bits of a bi-level symbol stream, and where they came from."""

    bits: list[int]
    positions: list[int]
    """Index of each bit's symbol in the stream."""
    violations: list[int]
    """Indices of stuffed symbols that did not differ from the run before them: a
    line-code violation, which no sender makes."""


def bilevel_destuff(symbols: Sequence[int]) -> Destuffed:
    """The (whitened) data bits of the symbols after the start word (polarity
    corrected): the inverse of :func:`bilevel_symbols`' stuffing."""
    out = Destuffed([], [], [])
    last, run = BILEVEL_START_WORD[-1], 2
    for i, symbol in enumerate(symbols):
        if run >= BILEVEL_RUN_LIMIT:
            if symbol == last:
                out.violations.append(i)
            last, run = symbol, 1
            continue
        out.bits.append(symbol)
        out.positions.append(i)
        if symbol == last:
            run += 1
        else:
            last, run = symbol, 1
    return out


def trilevel_levels(frame: bytes) -> list[float]:
    """Screen level for each frame of ``frame``: black + grey/white per bit, 6 black."""
    out: list[float] = []
    for bit in _bits(frame):
        out += (BLACK, WHITE if bit else GREY)
    out += [BLACK] * TRILEVEL_END_FRAMES
    return out


def _check_common(
    sample_rate: float, lead: float, tail: float, noise: float, phase: float,
    light: LightModel | None,
) -> LightModel:
    if not 0 < sample_rate < math.inf:
        raise LineCodeError(f"sample_rate must be finite and > 0, got {sample_rate}",
                            "sample_rate")
    for name, value in (("lead", lead), ("tail", tail), ("noise", noise), ("phase", phase)):
        if not 0 <= value < math.inf:
            raise LineCodeError(f"{name} must be finite and >= 0, got {value}", name)
    model = light or LightModel()
    if not (math.isfinite(model.gain) and math.isfinite(model.ambient)):
        raise LineCodeError("light gain and ambient must be finite", "light")
    return model


def _sample_count(total: float, sample_rate: float) -> int:
    count = max(0, math.ceil(total * sample_rate))
    if count > MAX_SAMPLES:
        raise LineCodeError(
            f"{count} samples ({total:.1f} s at {sample_rate:g} Hz) is more than "
            f"{MAX_SAMPLES:,} in one signal",
            "sample_rate",
        )
    return count


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _finish(
    table: FloatArray, index: npt.NDArray[np.int64], model: LightModel, noise: float,
    seed: int | np.random.Generator | None, sample_rate: float,
) -> Signal:
    samples = model.ambient + model.gain * table[index]
    if noise > 0:
        samples = samples + _rng(seed).normal(0.0, noise, index.shape[0])
    if model.clip:
        samples = np.clip(samples, 0.0, 1.0)
    return Signal(samples, sample_rate)


def render_symbols(
    levels: Sequence[float] | npt.ArrayLike,
    *,
    symbol_rate: float,
    sample_rate: float = DEFAULT_SAMPLE_RATE,
    light: LightModel | None = None,
    idle_level: float = 0.0,
    lead: float = 0.1,
    tail: float = 0.1,
    clock_error: float = 0.0,
    phase: float = 0.0,
    noise: float = 0.0,
    seed: int | np.random.Generator | None = None,
) -> Signal:
    """Sample a list of emitter levels (0..1) as a light sensor would.

    ``clock_error`` is the sender's clock error (0.05: it runs 5% fast);
    ``phase`` (0..1) shifts the sampling instants by a fraction of a sample;
    ``lead``/``tail`` are seconds of ``idle_level`` before and after;
    ``noise`` is the standard deviation of additive gaussian noise, added before
    clipping, drawn from ``seed`` (an int or a numpy Generator).
    """
    if not 0 < symbol_rate < math.inf:
        raise LineCodeError(f"symbol_rate must be finite and > 0, got {symbol_rate}",
                            "symbol_rate")
    model = _check_common(sample_rate, lead, tail, noise, phase, light)
    if not -0.5 < clock_error < 0.5:
        raise LineCodeError(f"clock_error {clock_error} is outside (-0.5, 0.5)", "clock_error")
    table = np.append(np.asarray(levels, dtype=np.float64).reshape(-1), idle_level)
    nsym = table.shape[0] - 1
    rate = symbol_rate * (1.0 + clock_error)
    count = _sample_count(lead + nsym / rate + tail, sample_rate)
    t = (np.arange(count, dtype=np.float64) + phase) / sample_rate - lead
    index = np.floor(t * rate).astype(np.int64)
    index[(index < 0) | (index >= nsym)] = nsym
    return _finish(table, index, model, noise, seed, sample_rate)


def render_timed(
    levels: Sequence[float] | npt.ArrayLike,
    times: Sequence[float] | npt.ArrayLike,
    *,
    sample_rate: float = DEFAULT_SAMPLE_RATE,
    light: LightModel | None = None,
    idle_level: float = 0.0,
    lead: float = 0.1,
    tail: float = 0.1,
    phase: float = 0.0,
    noise: float = 0.0,
    seed: int | np.random.Generator | None = None,
) -> Signal:
    """Like :func:`render_symbols`, but level ``i`` shows from ``times[i]`` to
    ``times[i + 1]`` (seconds from the first; ``len(levels) + 1`` increasing
    instants): symbols of irregular length, such as a screen's paced frames."""
    model = _check_common(sample_rate, lead, tail, noise, phase, light)
    table = np.append(np.asarray(levels, dtype=np.float64).reshape(-1), idle_level)
    nsym = table.shape[0] - 1
    edges = np.asarray(times, dtype=np.float64).reshape(-1)
    if edges.shape[0] != nsym + 1 or (nsym and not np.all(np.diff(edges) > 0)):
        raise LineCodeError(f"times must be {nsym + 1} increasing instants", "times")
    if not np.all(np.isfinite(edges)):
        raise LineCodeError("times must be finite", "times")
    span = float(edges[-1] - edges[0]) if nsym else 0.0
    count = _sample_count(lead + span + tail, sample_rate)
    t = (np.arange(count, dtype=np.float64) + phase) / sample_rate - lead + edges[0]
    # the first sample of each level (and the end): O(levels log samples), not the
    # other way round
    first = np.searchsorted(t, edges, side="left")
    index = np.full(count, nsym, dtype=np.int64)
    index[first[0] : first[-1]] = np.repeat(np.arange(nsym, dtype=np.int64), np.diff(first))
    return _finish(table, index, model, noise, seed, sample_rate)


def render_bilevel(
    frame: bytes,
    *,
    symbol_rate: float = BILEVEL_RATE,
    sample_rate: float = DEFAULT_SAMPLE_RATE,
    active_high: bool = True,
    light: LightModel | None = None,
    **impairments: float | int | np.random.Generator | None,
) -> Signal:
    """Render ``frame`` as the bi-level LED signal (:func:`bilevel_symbols`).

    ``active_high=False`` renders the level of an active-low pin, which is also what
    the sensor sees when the fixture's polarity flag disagrees with its wiring: the
    light inverted, idling lit. The decoder accepts either.
    """
    levels = np.asarray(bilevel_symbols(frame), dtype=np.float64)
    idle = 0.0
    if not active_high:
        levels = 1.0 - levels
        idle = 1.0
    return render_symbols(
        levels,
        symbol_rate=symbol_rate,
        sample_rate=sample_rate,
        light=light,
        idle_level=idle,
        **impairments,  # type: ignore[arg-type]
    )


def render_trilevel(
    frame: bytes,
    *,
    frame_rate: float = TRILEVEL_RATE,
    sample_rate: float = DEFAULT_SAMPLE_RATE,
    light: LightModel | None = None,
    screen: Screen | None = None,
    seed: int | np.random.Generator | None = None,
    **impairments: float,
) -> Signal:
    """Render ``frame`` as the tri-level screen signal of IMP_FACTS §2.

    ``screen=None``: an ideal screen, every frame exactly ``1 / frame_rate`` long
    (``clock_error`` stretches them all) and light linear in the level (grey 0.75).
    With a :class:`~.screen.Screen`, frames are paced as the SDK paces them on that
    display (whole refreshes, jitter, dropped refreshes) and the levels go through
    its gamma (sRGB grey is 0.52 of white); the pacing and the noise are drawn from
    ``seed``.
    """
    levels = np.asarray(trilevel_levels(frame), dtype=np.float64)
    if screen is None:
        return render_symbols(
            levels, symbol_rate=frame_rate, sample_rate=sample_rate, light=light,
            idle_level=BLACK, seed=seed, **impairments,
        )
    if "clock_error" in impairments:
        raise LineCodeError("a paced screen takes no clock_error (its refresh rate is "
                            "the clock)", "clock_error")
    rng = _rng(seed)
    times = sdk_frame_times(levels.shape[0], frame_rate, screen, rng)
    return render_timed(
        emitted_light(levels, screen.gamma), times, sample_rate=sample_rate, light=light,
        idle_level=BLACK, seed=rng, **impairments,
    )


def drop_and_repeat(
    samples: FloatArray, drop: float, repeat: float, seed: int | np.random.Generator | None
) -> FloatArray:
    """A sampler that slips: each sample is lost with probability ``drop`` or read
    twice with probability ``repeat`` (a late or an early tick of the sample clock),
    so the signal's timing jumps by one sample at random instants."""
    for name, value in (("drop", drop), ("repeat", repeat)):
        if not 0.0 <= value <= 0.5:
            raise LineCodeError(f"{name} must be within 0..0.5, got {value}", name)
    rng = _rng(seed)
    x = np.asarray(samples, dtype=np.float64)
    u = rng.random(x.shape[0])
    copies = np.where(u < drop, 0, np.where(u < drop + repeat, 2, 1))
    out: FloatArray = np.repeat(x, copies)
    return out
