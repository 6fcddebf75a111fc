"""The compiled bi-level receiver (protocol/_bilevel.c): its state arrays and events.

protocol/decoder.py decides what a reception means; the C loops do its per-sample
and per-symbol work (slicing, edge timing, prefix sums, the symbol grid, the sync
word hunt, the data stage) with the same arithmetic in the same order, so the same
bits. A reception's state lives in two arrays (``F``: doubles, ``I``: int64) laid
out as _bilevel.c's enums say (mirrored here, checked at import); what needs Python
(an outcome, an error, a state change) comes back as an :class:`Event`, and the
decoder resumes the loop after handling it.

Without a C compiler at install (the extension is optional) or with
``IMPFACTORY_PURE_DECODER=1`` in the environment, :data:`AVAILABLE` is False and
the decoder runs the same loops in Python (the two are tested equal)."""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from types import ModuleType

import numpy as np
import numpy.typing as npt

_bilevel: ModuleType | None
try:
    from . import _bilevel  # type: ignore[attr-defined,no-redef]
except ImportError:  # built without a C compiler: the decoder's Python loops run
    _bilevel = None

# F: doubles (see _bilevel.c)
F_PERIOD, F_NEXT, F_MID, F_HYST, F_WEAK, F_DELAY, F_SILENCE_AT, F_EDGE_TIME = range(8)
F_GAP, F_UNTIL, F_AT = range(8, 11)
F_SCALARS = 16
SLOT_CAP = 32
F_MARKS = F_SCALARS + 2 * SLOT_CAP
TRAIL_CAP = 4096
F_BIT_STARTS = F_MARKS + TRAIL_CAP
F_SIZE = F_BIT_STARTS + 4096
# I: int64
(
    I_SLICE_LEVEL,
    I_FIRST,
    I_COUNT,
    I_PREV,
    I_WEAK_BITS,
    I_RUN_SYMBOL,
    I_RUN,
    I_CUR,
    I_NBITS,
    I_DATA_BITS,
    I_INVERTED,
    I_HUNTING,
    I_OVERTIME,
    I_NDATA,
    I_HUNTED,
    I_HUNT_BITS,
    I_NSLOTS,
    I_NTRAIL,
    I_NBIT_STARTS,
    I_CS_ORIGIN,
    I_CS_LEN,
) = range(21)
I_SCALARS = 32
I_PATTERNS = I_SCALARS
I_START_WORD = I_PATTERNS + 9
I_LEVELS = I_START_WORD + 8
I_SIZE = I_LEVELS + TRAIL_CAP
DATA_CAP = 512


class Event(enum.IntEnum):
    """Why the compiled loop came back before deciding all it could."""

    NONE = 0
    WEAK = 1  # four faint symbols in a row: the light stopped carrying bits
    FOUND = 2  # the start word: the magic was found
    HUNT_FAIL = 3  # no start word within HUNT_SYMBOLS
    OVERTIME_END = 4  # the symbols after a failed check are in: repair or fail
    COMPLETE = 5  # all the frame's bytes are in
    SILENCE = 6  # no edge for SILENCE_SYMBOLS: lost
    FULL = 7  # a state array is full (a bug: the capacities cover the longest frame)
    ROOM = 8  # internal: the arrays must grow before this chunk


def _layout_matches(constants: dict[str, float]) -> bool:
    if _bilevel is None:
        return False
    built = _bilevel.layout()
    ours = {
        "F_SIZE": F_SIZE,
        "I_SIZE": I_SIZE,
        "F_SLOT_T": F_SCALARS,
        "F_MARKS": F_MARKS,
        "F_BIT_STARTS": F_BIT_STARTS,
        "I_PATTERNS": I_PATTERNS,
        "I_START_WORD": I_START_WORD,
        "I_LEVELS": I_LEVELS,
        "DATA_CAP": DATA_CAP,
        **constants,
    }
    return all(built.get(name) == value for name, value in ours.items())


def available(constants: dict[str, float]) -> bool:
    """Can the compiled loops run, built with these constants of the decoder?"""
    if os.environ.get("IMPFACTORY_PURE_DECODER", "") not in ("", "0"):
        return False
    return _layout_matches(constants)


class Kernel:
    """One decoder's compiled bi-level state: allocated once, started at each lock."""

    def __init__(
        self,
        whitening: npt.NDArray[np.uint8],
        patterns: Sequence[tuple[int, int, int]],
        start_word: Sequence[int],
    ) -> None:
        """``whitening``: the data bits' whitening sequence, one byte a bit (an array
        made once: it is never written)."""
        # (every entry is written before it is read: start() sets the scalars)
        self.F = np.empty(F_SIZE)
        self.I = np.empty(I_SIZE, dtype=np.int64)
        self.cs = np.empty(4096)
        self.eta = np.empty(4096)
        self.ela = np.empty(4096, dtype=np.int8)
        self.data = np.empty(DATA_CAP, dtype=np.uint8)
        self.whitening = whitening
        self._patterns = [value for pattern in patterns for value in pattern]
        self._start_word = list(start_word)
        self._arrays()

    def start(
        self,
        sums_from: npt.NDArray[np.float64],
        cs_origin: int,
        edges: Sequence[int],
        edge_levels: Sequence[int],
        level: int,
        scalars: dict[int, float],
    ) -> None:
        """A lock: the running prefix sum from ``sums_from`` (the history from sample
        ``cs_origin``), the sync run's edges, the slicer's level, and ``scalars``
        (F index: value)."""
        fs, ns = self.F, self.I
        fs[:F_SCALARS] = 0.0
        for index, value in scalars.items():
            fs[index] = value
        ns[:I_SCALARS] = 0
        ns[I_SLICE_LEVEL] = level
        ns[I_PREV] = -1
        ns[I_HUNTING] = 1
        ns[I_OVERTIME] = -1
        ns[I_PATTERNS : I_PATTERNS + 9] = self._patterns
        ns[I_START_WORD : I_START_WORD + 8] = self._start_word
        n = len(edges)
        if n > self.eta.shape[0]:
            self.eta, self.ela = np.empty(2 * n), np.empty(2 * n, dtype=np.int8)
        self.eta[:n] = edges
        self.ela[:n] = edge_levels
        ns[I_COUNT] = n
        m = sums_from.shape[0]
        if m + 1 > self.cs.shape[0]:
            self.cs = np.empty(2 * (m + 1))
        self._arrays()
        self.cs[0] = 0.0
        np.add.accumulate(sums_from, out=self.cs[1 : m + 1])
        ns[I_CS_ORIGIN] = cs_origin
        ns[I_CS_LEN] = m + 1

    def _arrays(self) -> None:
        """``arrays``: the state arrays, in the order _bilevel's functions take them,
        and ``bound``, the same for feed2 (made again whenever one is replaced)."""
        self.arrays = (self.F, self.I, self.cs, self.eta, self.ela, self.data, self.whitening)
        assert _bilevel is not None
        self.bound = _bilevel.bind(*self.arrays)

    def receive(
        self,
        hist: npt.NDArray[np.float64],
        a0: int,
        hist_start: int,
        stop: int,
        resume: bool,
    ) -> int:
        """Slice ``hist[a0:]`` (the chunk; ``hist[0]`` is sample ``hist_start``), time
        and gather its edges, and decide the symbols settled by ``stop`` (the sample
        after the chunk); or, ``resume``, go on deciding after an event. Returns the
        :class:`Event` (as an int; NONE when all is decided)."""
        assert _bilevel is not None
        event: int = _bilevel.receive(hist, a0, hist_start, stop, resume, *self.arrays)
        if event == Event.ROOM:
            self._grow(hist.shape[0] - a0, hist.shape[0])
            event = _bilevel.receive(hist, a0, hist_start, stop, resume, *self.arrays)
        return event

    def _grow(self, new_edges: int, new_sums: int) -> None:
        count, cs_len = int(self.I[I_COUNT]), int(self.I[I_CS_LEN])
        if count + new_edges > self.eta.shape[0]:
            size = 2 * (count + new_edges)
            eta, ela = np.empty(size), np.empty(size, dtype=np.int8)
            eta[:count], ela[:count] = self.eta[:count], self.ela[:count]
            self.eta, self.ela = eta, ela
        if cs_len + new_sums > self.cs.shape[0]:
            cs = np.empty(2 * (cs_len + new_sums))
            cs[:cs_len] = self.cs[:cs_len]
            self.cs = cs
        self._arrays()


feed2 = _bilevel.feed2 if _bilevel is not None else None
"""``feed2(x, buf, lo, hi, prev, limit, hist_start, base, Kernel.bound)``: a whole
feed of a bi-level reception in one call (see _bilevel.c): the event, or -1 (a bad
sample) or -2 (not a float64 run), and then nothing was written."""


def check(x: npt.NDArray[np.float64], limit: float) -> int:
    """0 when every sample is finite and within ±``limit``, 1 when not, 2 when ``x``
    is not a contiguous float64 run (then numpy must check it)."""
    assert _bilevel is not None
    result: int = _bilevel.check(x, limit)
    return result


def idle_slice(
    hist: npt.NDArray[np.float64],
    lo: int,
    hi: int,
    window: int,
    min_swing: float,
    level: int,
) -> tuple[list[int], list[int], int] | None:
    """The idle slicer over ``hist[lo:hi]``: thresholds midway between the max and min
    of the ``window`` samples up to each, hysteresis 0.15 of their spread (none under
    ``min_swing``). The flips (from ``lo``), their levels, and the level after the
    last sample (``level``: before the first, -1 undecided); None when no window holds
    a swing."""
    assert _bilevel is not None
    result: tuple[list[int], list[int], int] | None = _bilevel.idle_slice(
        hist, lo, hi, window, min_swing, level
    )
    return result


def idle_sync(
    hist: npt.NDArray[np.float64],
    lo: int,
    hi: int,
    window: int,
    min_swing: float,
    level: int,
    a0: int,
    times: list[int],
    t_min: float,
    t_max: float,
    bands: npt.NDArray[np.float64],
) -> tuple[int, int] | None:
    """Bi-level: :func:`idle_slice`'s flips (``hist[lo]`` is sample ``a0``) to the sync
    search, ``times`` (the decoder's sync edges) kept as the decoder's
    ``_sync_transition`` keeps them, until it locks: (the flip from ``lo``, the level
    after it), or (-1, the level after the last sample); None when no window holds a
    swing. ``bands``: (shortest, longest) symbol periods, flat."""
    assert _bilevel is not None
    result: tuple[int, int] | None = _bilevel.idle_sync(
        hist, lo, hi, window, min_swing, level, a0, times, t_min, t_max, bands
    )
    return result


def run_means(
    hist: npt.NDArray[np.float64],
    hist_start: int,
    times: list[int],
    level: int,
    spread_too: bool,
) -> tuple[list[float], list[float], float]:
    """The mean light of the inner half of each run between consecutive ``times``
    (``hist[0]`` is sample ``hist_start``; ``level`` after the last), dark and lit
    apart, latest first, and the pooled standard deviation within them (0.0 unless
    ``spread_too``): numpy's sums, in numpy's order."""
    assert _bilevel is not None
    result: tuple[list[float], list[float], float] = _bilevel.run_means(
        hist, hist_start, times, level, spread_too
    )
    return result


def tri_runs(
    times: list[float],
    levels: list[int],
    hist: npt.NDArray[np.float64],
    lo: int,
    light_origin: int,
    open_start: float,
    open_level: int,
    last: tuple[float, float, int] | None,
    period: float,
    glitch: float,
    silence: float,
    settled: float,
    out: npt.NDArray[np.float64],
) -> tuple[int, float, int, tuple[float, float, int] | None, float, float | None]:
    """Tri-level: the runs of a chunk's flips (``times``, absolute, ``levels`` after
    each) and its end (``settled``), timed and committed as the decoder's
    ``_transition`` and ``_end_of_chunk`` do: the lit runs committed go to ``out``,
    four doubles each (their bit's start, end, mean light of the inner 60 % of
    ``hist[lo:]``, whose first sample is ``light_origin``, and 1.0; or 0.0, 0.0 when
    that holds no sample). Returns (lit runs, open run's start and level, the run
    held before it, the mean frame period, the moment the open run outlasted
    ``silence`` frames or None)."""
    assert _bilevel is not None
    result: tuple[int, float, int, tuple[float, float, int] | None, float, float | None] = (
        _bilevel.tri_runs(times, levels, hist, lo, light_origin, open_start, open_level,
                          last, period, glitch, silence, settled, out)
    )
    return result


def smooth2(x: npt.NDArray[np.float64], out: npt.NDArray[np.float64], prev: float) -> None:
    """``out[i] = (x[i] + x[i - 1]) * 0.5``, ``x[-1]`` being ``prev``."""
    assert _bilevel is not None
    _bilevel.smooth2(x, out, prev)
