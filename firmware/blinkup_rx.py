"""The BlinkUp receiver: light-sensor samples in, a decoded configuration out.

Samples (fractions of full scale, from ``hw.optical`` or a capture file) go to
the streaming decoder of ``protocol.decoder`` in whatever chunks they arrive. The
receiver turns the decoder's answers into three callbacks: a transmission has
started (the LED stops flashing), a frame decoded (a ``BlinkUpConfig``), or a
frame failed (a typed ``BlinkUpError``). It never touches settings itself, so a
bad packet cannot leave them half-written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from impfactory.protocol.blinkup import BlinkUpConfig, BlinkUpError


class BlinkUpReceiver:
    """Feeds samples to one streaming decoder and reports what it found."""

    def __init__(self, sample_rate: float, symbol_rate: float,
                 on_start: Callable[[], Any],
                 on_config: Callable[[BlinkUpConfig], Any],
                 on_error: Callable[[BlinkUpError], Any]) -> None:
        from impfactory.protocol.decoder import BlinkUpDecoder

        self.sample_rate = float(sample_rate)
        self.symbol_rate = float(symbol_rate)
        self._make = lambda: BlinkUpDecoder(self.sample_rate, "bilevel", self.symbol_rate)
        self._decoder = self._make()
        self._on_start, self._on_config, self._on_error = on_start, on_config, on_error
        self.receiving = False

    def feed(self, samples: np.ndarray) -> None:
        """Feed light samples (0..1); callbacks fire as frames start, decode or fail."""
        try:
            result = self._decoder.feed(np.asarray(samples, dtype=np.float64))
        except BlinkUpError as err:
            self._finish()
            self._on_error(err)
            return
        if not self.receiving and str(getattr(self._decoder, "state", "")).endswith("receiving"):
            self.receiving = True
            self._on_start()
        if result is None:
            return
        if isinstance(result, BlinkUpError):
            self._finish()
            self._on_error(result)
            return
        config = result if isinstance(result, BlinkUpConfig) else getattr(result, "config", None)
        if not isinstance(config, BlinkUpConfig):
            failure = getattr(result, "error", None)
            self._finish()
            self._on_error(failure if isinstance(failure, BlinkUpError)
                           else BlinkUpError(f"decoder gave {result!r}"))
            return
        self._finish()
        self._on_config(config)

    def _finish(self) -> None:
        if not self.receiving:
            self._on_start()
        self.receiving = False
        self._decoder = self._make()
