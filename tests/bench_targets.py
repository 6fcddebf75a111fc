"""A dark bench for tests: the ``BenchTarget`` every bench test starts from.

Nothing is lit, nothing answers, the DUT ignores everything. Tests subclass it
and override only the part of the bench they exercise (a UART console, a DUT
sensor that decodes BlinkUp, ...), so the rest of the Protocol is written once.
"""

from __future__ import annotations

import numpy as np


class DarkBench:
    """Nothing lit anywhere; the DUT ignores everything."""

    def set_power(self, on: bool) -> None: ...

    def light_to_dut(self, t0: float, levels: np.ndarray, rate_hz: float) -> None: ...

    def dut_status_rgb(self, times: np.ndarray) -> np.ndarray:
        return np.zeros((len(times), 3))

    def press_button(self, seconds: float) -> None: ...

    def fixture_light(self, times: np.ndarray) -> np.ndarray:
        return np.zeros(len(times))

    def uart_to_dut(self, data: bytes) -> None: ...

    def uart_from_dut(self) -> bytes:
        return b""
