"""The optical channel: what a DUT's light sensor sees while a fixture flashes at it.

A BlinkUp fixture drives an LED with a symbol stream (light on / light off at a
fixed symbol rate); the DUT in front of it samples a phototransistor at its own
rate (about 1 kHz on an imp). Between the two sits physics, modelled here::

    symbols (0/1, fixture clock)                       samples (0..1 of full scale)
        |                                                   ^
        v                                                   |
    LED --(distance: inverse square)--(misplacement: gaussian beam)--> sensor + ambient
                                                             (+ mains flicker, noise,
                                                              clipping at full scale)

* **Gain**: ``led_peak`` full-scale units at ``reference_mm`` on axis, falling with
  the square of the distance beyond it and as a gaussian of the lateral offset
  (``beam_radius_mm``). A DUT that is not in place (``present=False``) sees no
  LED at all: gain 0.
* **Ambient light**: a constant offset, optionally flickering at mains frequency.
* **Noise**: additive gaussian, ``noise_rms`` full-scale units.
* **Clock drift**: the fixture's symbol clock runs ``1 + drift`` times as fast as
  the DUT's sample clock, so a symbol lasts ``1 / (rate * (1 + drift))`` DUT seconds.
  The DUT's sampling phase against the first symbol edge is random.
* **Lead-in and tail**: the DUT samples idle light (LED off) before and after the
  flash, as a real receiver does while it waits.

Every random choice comes from the ``numpy`` generator passed in (or made from a
seed), so a line run is reproducible from its seed. The channel knows nothing of
BlinkUp: it carries any symbol stream, which is what lets the same model serve the
tri-level and bi-level codes and the bench. Sampling a symbol stream at a drifting
rate is ``protocol.linecode.render_symbols``; this module adds the optics, the
room's light and the sensor's noise around it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from impfactory.errors import ImpFactoryError
from impfactory.protocol.linecode import LightModel, render_symbols

#: Full scale of ``hardware.lightlevel()`` on an imp (16-bit reading).
LIGHTLEVEL_FULL_SCALE = 65535
#: Highest sensor sample rate (Hz) and longest idle lead-in or tail (s) a channel
#: accepts: beyond them one flash's samples would not fit in memory, and no light
#: sensor or BlinkUp needs them (an imp samples about 1 kHz, a bench stream 20 kHz).
MAX_SAMPLE_RATE = 100_000.0
MAX_IDLE_S = 600.0


class OpticalError(ImpFactoryError, ValueError):
    """An optical channel was configured or driven with values that make no sense."""


@dataclass(frozen=True)
class OpticalConfig:
    """One run's optical set-up between a fixture LED and a DUT's light sensor.

    Units: lengths in mm, light in fractions of the sensor's full scale, time in s.
    """

    distance_mm: float = 5.0
    offset_mm: float = 0.0
    present: bool = True
    led_peak: float = 0.8
    reference_mm: float = 5.0
    beam_radius_mm: float = 4.0
    ambient: float = 0.05
    flicker: float = 0.0
    flicker_hz: float = 100.0
    noise_rms: float = 0.01
    drift: float = 0.0
    sample_rate: float = 1000.0
    lead_s: float = 0.25
    tail_s: float = 0.25

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (self.distance_mm > 0, "distance_mm must be > 0"),
            (self.offset_mm >= 0, "offset_mm must be >= 0"),
            (0 <= self.led_peak <= 1, "led_peak must be within 0..1"),
            (self.reference_mm > 0, "reference_mm must be > 0"),
            (self.beam_radius_mm > 0, "beam_radius_mm must be > 0"),
            (0 <= self.ambient <= 1, "ambient must be within 0..1"),
            (0 <= self.flicker <= 1, "flicker must be within 0..1"),
            (self.flicker_hz > 0, "flicker_hz must be > 0"),
            (self.noise_rms >= 0, "noise_rms must be >= 0"),
            (-0.5 < self.drift < 0.5, "drift must be within -0.5..0.5"),
            (0 < self.sample_rate <= MAX_SAMPLE_RATE,
             f"sample_rate must be within 0..{MAX_SAMPLE_RATE:g} Hz"),
            (0 <= self.lead_s <= MAX_IDLE_S and 0 <= self.tail_s <= MAX_IDLE_S,
             f"lead_s and tail_s must be within 0..{MAX_IDLE_S:g} s"),
        ]
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise OpticalError(f"optical config: {f.name} must be finite, got {value}")
        for ok, message in checks:
            if not ok:
                raise OpticalError(f"optical config: {message}")

    @property
    def gain(self) -> float:
        """Full-scale swing the LED produces at the sensor (0 when no DUT is in place)."""
        if not self.present:
            return 0.0
        falloff = min(1.0, (self.reference_mm / self.distance_mm) ** 2)
        beam = math.exp(-((self.offset_mm / self.beam_radius_mm) ** 2))
        return self.led_peak * falloff * beam

    def with_spec(self, spec: str) -> OpticalConfig:
        """This config with ``"name=value,name=value"`` overrides (a CLI's ``--optical``)."""
        known = {f.name: f.type for f in fields(self)}
        changes: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, text = item.partition("=")
            name = name.strip()
            if not sep or name not in known:
                raise OpticalError(
                    f"optical setting {item!r}: expected NAME=VALUE with NAME one of "
                    + ", ".join(known)
                )
            if name == "present":
                if text.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise OpticalError(f"optical setting present={text!r}: expected true/false")
                changes[name] = text.strip().lower() in ("true", "1", "yes")
                continue
            try:
                changes[name] = float(text)
            except ValueError as err:
                raise OpticalError(f"optical setting {name}={text!r}: not a number") from err
        return replace(self, **changes)


#: Named set-ups a line run or a test can ask for by name.
PRESETS: dict[str, OpticalConfig] = {
    "clean": OpticalConfig(noise_rms=0.0, ambient=0.0),
    "typical": OpticalConfig(),
    # A DUT pushed 10 mm off the emitter's axis: the swing drops to about 0.15 % of
    # full scale, far under the noise and under what any receiver can slice.
    "misplaced": OpticalConfig(offset_mm=10.0),
    "absent": OpticalConfig(present=False),
}


class OpticalChannel:
    """Carries a fixture's symbol stream to the samples a DUT's light sensor reads."""

    def __init__(self, config: OpticalConfig | None = None,
                 rng: np.random.Generator | int | None = None) -> None:
        self.config = config or OpticalConfig()
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def transmit(self, symbols: Sequence[float] | np.ndarray, symbol_rate: float) -> np.ndarray:
        """Light levels (0..1, one per symbol, fixture clock) → sensor samples (0..1).

        ``symbols`` are LED brightness values as the emitter shows them (1 = lit);
        pin polarity (active high or low) is the fixture's business, not the light's.
        """
        cfg = self.config
        levels = np.asarray(symbols, dtype=np.float64)
        if levels.ndim != 1:
            raise OpticalError("symbols must be a one-dimensional sequence")
        if levels.size and (not np.all(np.isfinite(levels)) or levels.min() < 0
                            or levels.max() > 1):
            raise OpticalError("symbol levels must be within 0..1")
        if not (symbol_rate > 0 and math.isfinite(symbol_rate)):
            raise OpticalError(f"symbol rate must be a positive number, got {symbol_rate}")
        signal = render_symbols(
            levels, symbol_rate=symbol_rate, sample_rate=cfg.sample_rate,
            light=LightModel(gain=cfg.gain, ambient=0.0, clip=False),
            lead=cfg.lead_s, tail=cfg.tail_s, clock_error=cfg.drift,
            phase=float(self.rng.uniform(0.0, 1.0)),
        )
        light = signal.samples
        t = np.arange(light.size, dtype=np.float64) / cfg.sample_rate
        light = light + self._ambient(t)
        if cfg.noise_rms > 0:
            light += self.rng.normal(0.0, cfg.noise_rms, light.size)
        clipped: np.ndarray = np.clip(light, 0.0, 1.0)
        return clipped

    def idle(self, seconds: float) -> np.ndarray:
        """What the sensor reads with the LED dark for ``seconds`` (ambient + noise)."""
        dark = OpticalChannel(replace(self.config, lead_s=max(0.0, seconds), tail_s=0.0), self.rng)
        return dark.transmit([], 1.0)

    def _ambient(self, t: np.ndarray) -> np.ndarray:
        cfg = self.config
        if cfg.flicker == 0 or cfg.ambient == 0:
            return np.full(t.shape, cfg.ambient)
        phi = float(self.rng.uniform(0.0, 2 * math.pi))
        return cfg.ambient * (1.0 + cfg.flicker * np.sin(2 * math.pi * cfg.flicker_hz * t + phi))


def to_lightlevel(samples: np.ndarray) -> np.ndarray:
    """Full-scale fractions → the 16-bit integers ``hardware.lightlevel()`` returns."""
    levels: np.ndarray = np.rint(np.clip(samples, 0.0, 1.0) * LIGHTLEVEL_FULL_SCALE)
    return levels.astype(np.uint16)
