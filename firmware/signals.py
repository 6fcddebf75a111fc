"""What a fixture's ``server.factoryblinkup`` puts on its LED pin.

The fixture builds the BlinkUp frame (WiFi settings plus the factory enrolment
token the server gave it), turns it into bi-level symbols (protocol.linecode) and
drives its LED pin with them at 60 symbols/s (142 with ``BLINKUP_FAST``).
``FixtureFlash`` is that event, handed to whoever listens to the pin (the line
turns ``light_symbols`` into sensor samples through ``hw.optical``)::

    pin level   = light symbol            (BLINKUP_ACTIVEHIGH)
                = 1 - light symbol        (active low, the default)
    light       = LED lit (1) / dark (0) per symbol, whatever the polarity
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from impfactory.protocol.blinkup import BlinkUpConfig, encode_frame
from impfactory.protocol.linecode import (
    BILEVEL_FAST_RATE,
    BILEVEL_RATE,
    DEFAULT_SAMPLE_RATE,
    Signal,
    bilevel_symbols,
    render_bilevel,
)


@dataclass(frozen=True)
class FixtureFlash:
    """One factory BlinkUp flashed on a pin."""

    device_id: str
    pin: str
    frame: bytes
    config: BlinkUpConfig
    symbol_rate: float
    active_high: bool
    start: float
    light_symbols: np.ndarray

    @property
    def duration(self) -> float:
        """Seconds the LED flashes (Squirrel is suspended this long)."""
        return len(self.light_symbols) / self.symbol_rate

    @property
    def pin_levels(self) -> np.ndarray:
        """The electrical level of the pin per symbol."""
        return self.light_symbols if self.active_high else 1.0 - self.light_symbols

    def signal(self, sample_rate: float = DEFAULT_SAMPLE_RATE, **impairments: Any) -> Signal:
        """The light as a sensor right against the LED would sample it (no optics)."""
        return render_bilevel(self.frame, symbol_rate=self.symbol_rate, sample_rate=sample_rate,
                              **impairments)


def render_fixture_flash(ssid: str, password: str, plan_id: str, token: str, pin: str, *,
                         fast: bool, active_high: bool, start: float,
                         device_id: str) -> FixtureFlash:
    """Build the frame for a DUT and the symbols the fixture's LED shows."""
    config = BlinkUpConfig(
        ssid=ssid.encode() if ssid else None,
        password=password.encode() if ssid and password else None,
        plan_id=plan_id,
        token=token,
    )
    frame = encode_frame(config)
    symbols = np.asarray(bilevel_symbols(frame), dtype=np.float64)
    return FixtureFlash(
        device_id=device_id, pin=pin, frame=frame, config=config,
        symbol_rate=BILEVEL_FAST_RATE if fast else BILEVEL_RATE,
        active_high=active_high, start=start, light_symbols=symbols,
    )
