"""The BlinkUp receiver: light-sensor samples in, a decoded configuration out.

Samples (fractions of full scale, from ``hw.optical`` or a capture file) go to the
streaming decoder of ``protocol.decoder`` in whatever chunks they arrive. The
receiver turns the decoder's outcomes into three callbacks: a transmission has
started (the LED stops flashing), a frame decoded (a ``BlinkUpConfig``), or a
reception failed (a typed ``BlinkUpError``). It never touches settings itself, so
a bad packet cannot leave them half-written. Any symbol rate the decoder can lock
to is accepted (60 Hz, 142 Hz with ``BLINKUP_FAST``, or a drifting fixture).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from impfactory.protocol.blinkup import BlinkUpConfig, BlinkUpError
from impfactory.protocol.decoder import BlinkUpDecoder, DecodeResult


class BlinkUpReceiver:
    """Feeds samples to one streaming decoder and reports what it found."""

    def __init__(self, sample_rate: float,
                 on_start: Callable[[], Any],
                 on_config: Callable[[BlinkUpConfig], Any],
                 on_error: Callable[[BlinkUpError], Any],
                 symbol_rate: float | None = None) -> None:
        self.sample_rate = float(sample_rate)
        self._decoder = BlinkUpDecoder(self.sample_rate, "bilevel", symbol_rate)
        self._on_start, self._on_config, self._on_error = on_start, on_config, on_error
        self.receiving = False
        self.results: list[DecodeResult] = []

    def feed(self, samples: np.ndarray) -> None:
        """Feed light samples (0..1); callbacks fire as receptions start, decode or fail.

        Samples that are not a 1-D run of finite numbers raise ``BadSamplesError``
        (a ``BlinkUpError``) and change nothing.
        """
        outcomes = self._decoder.feed(samples)
        for outcome in outcomes:
            if not self.receiving:
                self._on_start()
            self.receiving = False
            if isinstance(outcome, DecodeResult):
                self.results.append(outcome)
                self._on_config(outcome.config)
            else:
                self._on_error(outcome)
        if self._decoder.receiving and not self.receiving:
            self.receiving = True
            self._on_start()
