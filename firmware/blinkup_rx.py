"""The BlinkUp receiver: light-sensor samples in, a decoded configuration out.

Samples (fractions of full scale, from ``hw.optical`` or a capture file) go to the
streaming decoder of ``protocol.decoder`` in whatever chunks they arrive. The
receiver turns the decoder's outcomes into three callbacks: a transmission has
started (the LED stops flashing), a frame decoded (a ``BlinkUpConfig``), or a
reception failed (a typed ``BlinkUpError``). It never touches settings itself, so
a bad packet cannot leave them half-written. Any symbol rate the decoder can lock
to is accepted (60 Hz, 142 Hz with ``BLINKUP_FAST``, or a drifting fixture).

The decoder gathers less than a symbol before deciding and decides a bit a few
samples after it ends, so the last bits of a stream that stops right after the
CRC would wait forever. ``end()`` says the light is over (the fixture's flash
ended, a capture's last sample): it flushes the decoders and, while one is still
mid-frame, lets them see the last light level held, as the sensor does once the
LED stops changing, until each decodes or reports the signal stopped. A held
level has no edges, so it cannot make up a bit that was not fully seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from impfactory.protocol.blinkup import BlinkUpConfig, BlinkUpError
from impfactory.protocol.decoder import (
    BlinkUpDecoder,
    DecodeResult,
    LineCode,
    Outcome,
    SyncLostError,
)

END_HOLD_S = 2.0
"""Longest the last light level is held after ``end()``: well past the six silent
symbols at the slowest bi-level rate (48 Hz) that end a bi-level reception."""
END_STEP_S = 0.1
"""The held light is fed in steps this long, so a settled reception stops the hold."""


class BlinkUpReceiver:
    """Feeds samples to one streaming decoder and reports what it found."""

    def __init__(self, sample_rate: float,
                 on_start: Callable[[], Any],
                 on_config: Callable[[BlinkUpConfig], Any],
                 on_error: Callable[[BlinkUpError], Any],
                 symbol_rate: float | None = None,
                 line_codes: tuple[LineCode, ...] = ("bilevel",)) -> None:
        """``line_codes``: ``("bilevel",)`` for a factory fixture's LED; add
        ``"trilevel"`` to also accept a phone's screen (an end user's BlinkUp)."""
        self.sample_rate = float(sample_rate)
        self._decoders = [BlinkUpDecoder(self.sample_rate, code, symbol_rate)
                          for code in line_codes]
        self._on_start, self._on_config, self._on_error = on_start, on_config, on_error
        self.receiving = False
        self.results: list[DecodeResult] = []
        self._last: float | None = None

    def feed(self, samples: np.ndarray) -> None:
        """Feed light samples (0..1); callbacks fire as receptions start, decode or fail.

        Samples that are not a 1-D run of finite numbers raise ``BadSamplesError``
        (a ``BlinkUpError``) and change nothing.
        """
        data = np.asarray(samples, dtype=np.float64)
        self._handle([decoder.feed(data) for decoder in self._decoders])
        if data.size:
            self._last = float(data[-1])

    def end(self) -> None:
        """The light stream is over: decode what waits; a reception still under way
        sees the last level held until it decodes or fails (at most ``END_HOLD_S``)."""
        self._handle([decoder.flush() for decoder in self._decoders])
        level = self._last
        if level is None:
            return
        step = max(1, round(END_STEP_S * self.sample_rate))
        held = 0
        while self._busy() and held < END_HOLD_S * self.sample_rate:
            hold = np.full(step, level)
            self._handle([decoder.feed(hold) for decoder in self._decoders])
            held += step
        if self._busy():  # a decoder that never settles: the light is gone all the same
            for decoder in self._decoders:
                decoder.reset()
            self.receiving = False
            self._on_error(SyncLostError("the light ended in the middle of a BlinkUp"))

    def _busy(self) -> bool:
        return any(decoder.receiving for decoder in self._decoders)

    def _handle(self, per_decoder: list[list[Outcome]]) -> None:
        decoded = [o for outcomes in per_decoder for o in outcomes
                   if isinstance(o, DecodeResult)]
        failed = [o for outcomes in per_decoder for o in outcomes
                  if not isinstance(o, DecodeResult)]
        if decoded or failed:
            if not self.receiving:
                self._on_start()
            self.receiving = False
        if decoded:
            # One packet, whichever line code carried it; the other decoders' view
            # of the same light (a failure to lock to a foreign code) is moot.
            for decoder in self._decoders:
                if decoder.receiving:
                    decoder.reset()
            for result in decoded:
                self.results.append(result)
                self._on_config(result.config)
            return
        if failed and not any(d.receiving for d in self._decoders):
            self._on_error(failed[-1])
        if any(d.receiving for d in self._decoders) and not self.receiving:
            self.receiving = True
            self._on_start()
