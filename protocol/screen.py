"""How a phone or desktop screen really shows the tri-level BlinkUp: pacing and gamma.

Electric Imp's JavaScript SDK (``Flasher.js``) does not get a frame per tick of its
frame rate. It asks the browser for a callback on every display refresh
(``requestAnimationFrame``) and draws the next frame only when more than
``1000 / fps`` ms have passed since its last frame time, which it then moves to
``time - delta % interval``, i.e. onto a fixed lattice of frame times (60 fps on
phones, 30 on old iOS, 20 on desktops). So:

* a frame shows for a **whole number of refreshes**: the next frame is drawn at the
  first refresh strictly after the next lattice point;
* when the display rate is not a multiple of the frame rate the frames are
  **irregular**: 60 fps on a 90 Hz display alternates 1 and 2 refreshes (11.1 and
  22.2 ms), on 144 Hz 2 and 3 (13.9 and 20.8 ms);
* when a lattice point falls within the refresh jitter of a refresh (60 fps on a
  60 or 120 Hz display with the lattice near a refresh), which refresh draws it is
  a coin toss, so frames of 1, 2 and 3 refreshes mix;
* a refresh whose callback is missed (the browser was busy: a **dropped** refresh)
  holds the frame on screen one refresh longer, and the lattice makes the next
  frame short to catch up (down to one refresh).

:func:`sdk_frame_times` turns a frame count into the instants each frame starts on
screen, from that rule; :class:`Screen` holds the display (refresh rate, jitter of
each refresh instant, drop probability, gamma). The jitter moves each refresh
instant both as the SDK's callback sees it and as the light changes (the harsher
reading of "jitter" for a receiver).

**Gamma.** A screen turns the level 0xBF into light through its transfer curve, not
linearly: on an sRGB screen grey is about 0.52 of white (``srgb_light(0xBF/0xFF)``),
not 0.75. :func:`emitted_light` maps levels to light for ``gamma="srgb"``,
``"linear"`` or a power law.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .blinkup import BlinkUpError

FloatArray = npt.NDArray[np.float64]

SDK_FPS_PHONE = 60.0
"""Frames per second the SDK uses on phones."""
SDK_FPS_OLD_IOS = 30.0
"""... on iOS before 7 and non-Retina iPhones."""
SDK_FPS_DESKTOP = 20.0
"""... on desktop browsers."""
SDK_FRAME_RATES = (SDK_FPS_DESKTOP, SDK_FPS_OLD_IOS, SDK_FPS_PHONE)
DISPLAY_RATES = (60.0, 90.0, 120.0, 144.0)
"""Common display refresh rates (Hz)."""


class ScreenError(BlinkUpError):
    """A screen or pacing parameter that makes no sense; ``field`` names it."""


@dataclass(frozen=True)
class Screen:
    """A display showing the SDK's frames.

    ``refresh_hz``: refreshes per second. ``jitter``: seconds; each refresh instant
    moves uniformly within ``±jitter`` (less than half a refresh). ``drop``: the
    probability that a refresh's callback is missed. ``gamma``: ``"srgb"`` (the
    sRGB transfer curve), ``"linear"``, or a number (light = level ** gamma).
    """

    refresh_hz: float = 60.0
    jitter: float = 0.0
    drop: float = 0.0
    gamma: str | float = "srgb"

    def __post_init__(self) -> None:
        if not 1.0 <= self.refresh_hz <= 1000.0:
            raise ScreenError(
                f"refresh_hz must be within 1..1000, got {self.refresh_hz}", "refresh_hz"
            )
        if not 0.0 <= self.jitter < 0.5 / self.refresh_hz:
            raise ScreenError(
                f"jitter must be >= 0 and under half a refresh, got {self.jitter}", "jitter"
            )
        if not 0.0 <= self.drop <= 0.5:
            raise ScreenError(f"drop must be within 0..0.5, got {self.drop}", "drop")
        if isinstance(self.gamma, str):
            if self.gamma not in ("srgb", "linear"):
                raise ScreenError(f"gamma must be 'srgb', 'linear' or a number, got "
                                  f"{self.gamma!r}", "gamma")
        elif not 0.1 <= float(self.gamma) <= 10.0:
            raise ScreenError(f"gamma must be within 0.1..10, got {self.gamma}", "gamma")


def srgb_light(level: FloatArray | float) -> FloatArray:
    """Light (0..1 of white) an sRGB display emits for a level (0..1 code value)."""
    c = np.clip(np.asarray(level, dtype=np.float64), 0.0, 1.0)
    out: FloatArray = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return out


def emitted_light(levels: FloatArray, gamma: str | float) -> FloatArray:
    """Map screen levels (0..1) to emitted light (0..1) through the transfer curve."""
    levels = np.asarray(levels, dtype=np.float64)
    if gamma == "linear":
        return levels
    if gamma == "srgb":
        return srgb_light(levels)
    out: FloatArray = np.clip(levels, 0.0, 1.0) ** float(gamma)
    return out


def refresh_times(
    duration: float, screen: Screen, rng: np.random.Generator
) -> FloatArray:
    """Instants (s, from 0) of the refreshes whose callback runs within ``duration``:
    a regular grid, each instant jittered, dropped ones removed."""
    period = 1.0 / screen.refresh_hz
    count = math.ceil(duration / period) + 2
    times = np.arange(count, dtype=np.float64) * period
    if screen.jitter > 0:
        times += rng.uniform(-screen.jitter, screen.jitter, count)
        times[0] = 0.0  # the first callback starts the flash
    if screen.drop > 0:
        keep = rng.random(count) >= screen.drop
        keep[0] = True
        times = times[keep]
    return times


def frame_budget(frames: int, fps: float, screen: Screen) -> float:
    """Seconds of refreshes drawn to show ``frames`` frames: each frame waits at most
    an interval and a refresh, plus its share of dropped refreshes (rarely too little:
    :func:`sdk_frame_times` then doubles it)."""
    refresh_period = 1.0 / screen.refresh_hz
    slack = 1.0 + 4.0 * screen.drop
    return (frames + 2) * (1.0 / fps + refresh_period) * slack + 2.0 * refresh_period


def sdk_frame_times(
    frames: int, fps: float, screen: Screen, rng: np.random.Generator
) -> FloatArray:
    """When each of ``frames`` frames appears (s from the first), plus when the last
    one is replaced: ``frames + 1`` increasing instants, as the SDK paces them.

    The first frame is drawn at the first refresh; the SDK's frame-time lattice
    lies at a random offset before it (its first timestamp modulo the interval).
    Frame ``n`` then waits for the first lattice point after frame ``n - 1`` and
    is drawn at the first refresh strictly after that point. Equivalently, every
    lattice point is served by the first refresh after it, and lattice points that
    share a refresh collapse into one frame.
    """
    if frames < 0:
        raise ScreenError(f"frames must be >= 0, got {frames}", "frames")
    if not 1.0 <= fps <= 1000.0:
        raise ScreenError(f"fps must be within 1..1000, got {fps}", "fps")
    interval = 1.0 / fps
    budget = frame_budget(frames, fps, screen)
    while True:
        refresh = refresh_times(budget, screen, rng)
        lattice0 = -float(rng.uniform(0.0, interval))
        points = lattice0 + interval * np.arange(1, math.ceil(budget / interval) + 2)
        served = np.searchsorted(refresh, points, side="right")
        served = served[served < refresh.shape[0]]
        draws = np.concatenate(([0.0], refresh[np.unique(served)]))
        if draws.shape[0] >= frames + 1:
            return draws[: frames + 1]
        budget *= 2.0  # very unlucky drops: try again with more time
