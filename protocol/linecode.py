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
public). Manchester code at a fixed symbol rate (60 Hz, or 142 Hz for
``BLINKUP_FAST``), two symbols per bit, IEEE 802.3 convention: 0 = on,off and
1 = off,on, so every bit has a transition in its middle::

    bits       0     0     0   ...   0     0     1     0     1     0     1     0
    symbols  [1 0] [1 0] [1 0] ... [1 0] [1 0] [0 1] [1 0] [0 1] [1 0] [0 1] [1 0]
    LED on   +-+ +-+ +-+ +-+       +-+ +-+ +     +-+ +     +-+ +     +-+ +
    LED off  + +-+ +-+ +-+ +- ... -+ +-+ +---+ +-+   +-+ +-+   +-+ +-+   +-+ +...
             |<--- preamble 00 00 00: a max/min sync run --->|<--- 0x2A --->|

Why this design:

* The preamble's 24 zero bits become 48 alternating symbols: the max/min sync run
  the receiver averages to set its threshold (peaks and troughs), and whose
  period gives the sender's real symbol rate, so a clock mismatch (±5% or more)
  is measured rather than tolerated.
* Every run of light or dark lasts one or two symbols, so the receiver only has to
  tell T from 2T (a decision boundary at 1.5T, a wide margin against jitter and
  noise), re-times itself on every bit, and never sees a long run that would hide
  the clock.
* The code is DC balanced, so any ambient offset and any gain leave the threshold
  (the midpoint of the sync levels) valid for the whole frame.
* The first two-symbol run is the first 0->1 of the magic 0x2A and marks a bit
  boundary, which fixes the bit phase. An inverted light (an active-low LED or a
  wrongly set ``BLINKUP_ACTIVEHIGH``) flips every bit; the receiver sees the first
  long run lit instead of dark and inverts, so polarity never matters.

The light model is linear with clipping: ``light = ambient + gain * level``,
clipped to the sensor's range ``[0, 1]``. Impairments (sender clock error, noise,
sampling phase) are parameters of :func:`render_symbols`, which renders any list of
emitter levels so other channels (hw/optical.py) can reuse it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .blinkup import BlinkUpError
from .screen import Screen, emitted_light, sdk_frame_times

FloatArray = npt.NDArray[np.float64]


class LineCodeError(BlinkUpError):
    """A signal or rendering parameter that makes no sense (a rate <= 0, ...)."""

BILEVEL_RATE = 60.0
"""Symbols per second of a fixture LED by default."""
BILEVEL_FAST_RATE = 142.0
"""Symbols per second with ``BLINKUP_FAST``."""
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
    """LED state (1 = lit) for each symbol period of ``frame``: Manchester, 0 = 1,0."""
    out: list[int] = []
    for bit in _bits(frame):
        out += (0, 1) if bit else (1, 0)
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
    index = np.searchsorted(edges, t, side="right") - 1
    index[(index < 0) | (index >= nsym)] = nsym
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
    """Render ``frame`` as the bi-level (Manchester) LED signal.

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
