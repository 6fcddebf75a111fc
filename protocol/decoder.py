"""A streaming BlinkUp decoder: light samples in, BlinkUp packets (or typed failures) out.

Feed it sample chunks of any size, from one sample to a whole capture; the result
does not depend on how the stream was cut (the same outcomes, to the bit, once all
of it is fed and flushed): a feed decides only what no later sample can change (see
EDGE_REACH), a reception noticed to end in a later feed hands the samples after its
end back to the sync search, and sums run across feeds. Pipeline, one stage per job::

    samples -> moving average -> slicer -> edges -> line code -> bits -> bytes -> packet
               (noise)           |         |        (bi-level     (LEN,    (decode_frame:
                                 |         |        or tri-level)  checks)  CRC, TLVs)
                                 |         +- where the light crossed the midpoint
                                 +- IDLE: threshold = midpoint of a sliding max/min,
                                    hunting a max/min sync run
                                 +- SYNC/FRAME: thresholds fixed from the sync run's
                                    averaged peaks and troughs, with hysteresis

**Bi-level** (protocol/linecode.py: one symbol per bit, stuffed) decides softly once
locked: each symbol is the mean light of its inner 70% against the threshold
(integrate and dump, from prefix sums), on a symbol grid that re-anchors on the edge
where the light changed (a sampler that slips moves edges by whole samples) and
counts a symbol squeezed shorter than its window. The grid hunts the sync word (the
sync run's end and the start word, either polarity), then de-stuffs and unwhitens
the data bits. A frame whose line check or CRC fails gets a few more symbols and the
CRC-aided repair (protocol/repair.py) of the runs whose length was ambiguous.

**Tri-level** (screens) never times a frame: the SDK's pacing (protocol/screen.py)
makes frames whole display refreshes, uneven. The sync run is steady black and grey
runs of any length within a frame rate's band; each lit run after it is a bit; the
magic is found jointly in the last eight lit runs, where the white level (the
screen's gamma) is measured; grey/white is then split midway between the measured
levels, which follow the frame.

States and events (an explicit table, ``TRANSITIONS``)::

    IDLE --sync run found--> SYNC --magic 0x2A--> FRAME --frame read--> IDLE
                              |                    |
                              +------failed--------+----------------------> IDLE

``state`` is ``SYNC`` or ``FRAME`` while a BlinkUp is being received (an imp stops
flashing its status LED then). Where the extension is built (``COMPILED``), the
per-sample and per-symbol work runs compiled (protocol/_bilevel.c through
protocol/bilevel_kernel.py: the idle slicer and sync runs' means for both codes; the
whole bi-level sync search and reception, a feed being one call; the tri-level runs'
timing, glitches and light) with the same arithmetic in the same order, so the same
bits; Python handles each outcome, failure and state change, and reads each tri-level
lit run as a bit. Otherwise the slicing is vectorised with numpy per chunk (the
slicer's flips found by ``bytes.find`` on its comparisons) and Python runs once per
transition and once per symbol (bi-level) or frame (tri-level). A chunk has a fixed
cost on top of its samples, so chunks shorter than the shortest symbol period accepted
are gathered first: ``state`` then lags the light by less than one symbol, and
:meth:`BlinkUpDecoder.flush` decodes what waits at the end of a capture.

Errors: ``feed`` *returns* outcomes: a :class:`DecodeResult` for each frame that
completed, or a :class:`BlinkUpDecodeError` (lost sync, bad magic, corrupt frame)
for each reception that failed after a sync run was found. Noise while idle is not
a failure and returns nothing. ``feed`` *raises* only :class:`BadSamplesError`, when
the input is not a 1-D run of finite numbers within ±1e6 x full scale (and then
changes no state).

Samples are in sensor full-scale units (0..1 by default, ``full_scale`` otherwise);
positions in results are sample indices counted from the first sample fed since
construction or :meth:`BlinkUpDecoder.reset`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from . import bilevel_kernel
from .bilevel_kernel import Event
from .blinkup import PREAMBLE, BlinkUpConfig, BlinkUpError, decode_frame
from .linecode import (
    BILEVEL_FAST_RATE,
    BILEVEL_RATE,
    BILEVEL_RUN_LIMIT,
    BILEVEL_START_WORD,
    BILEVEL_SYNC_RUN,
    BILEVEL_WHITENING,
    LineCheckError,
    bilevel_check,
)
from .repair import CHECK_BYTES, Reception, repair

FloatArray = npt.NDArray[np.float64]
LineCode = Literal["bilevel", "trilevel"]

SYNC_TRANSITIONS = 16
"""Regular transitions needed to lock: 8 bits of the 24-bit zero preamble."""
TRILEVEL_MIN_FPS = 10.0
TRILEVEL_MAX_FPS = 75.0
"""Frame rates a tri-level sync run may have when none is given (old phones, desktops)."""
MIN_SAMPLES_PER_SYMBOL = 3.5
"""Fewer samples per symbol than this leave too little to average (142 Hz needs >= 500 Hz)."""
IDLE_BLOCK = 2048
"""Samples sliced per step while hunting a sync run."""
SILENCE_SYMBOLS = BILEVEL_RUN_LIMIT + 2.0
"""Symbols without a transition after which a bi-level reception is lost (the line
never holds a level longer than BILEVEL_RUN_LIMIT symbols)."""
SYNC_WORD = BILEVEL_SYNC_RUN[-8:] + BILEVEL_START_WORD
"""Bi-level symbols the receiver hunts: the sync run's end and the start word."""
SLIPPED_SYNC_WORDS = (SYNC_WORD[:8] + SYNC_WORD[9:], (*SYNC_WORD[:8], 0, *SYNC_WORD[8:]))
"""The sync word with its longest run (the sync run's last dark symbol and the start
word's first two) one symbol shorter or longer, as slips of the sampler may make it
look: hunted too, but only exactly (the sync word itself: one symbol wrong at most)."""
HUNT_PATTERNS = tuple(
    (len(word), int("".join(map(str, word)), 2), wrong)
    for word, wrong in ((SYNC_WORD, 1), *((w, 0) for w in SLIPPED_SYNC_WORDS))
)
"""(length, the word as an int, symbols allowed wrong) of each word hunted."""
SYMBOL_GUARD = 0.15
"""Bi-level: each end of a symbol left out of its mean light (the inner 70% count)."""
WEAK_SYMBOL = 0.15
"""Bi-level: a symbol whose light is within this fraction of the sync swing of the
threshold is faint (a clean one is half the swing away); four in a row end it."""
STEER_PHASE = 0.75
"""Bi-level: share of an edge's offset from the symbol grid corrected at once."""
STEER_REACH = 0.7
"""Bi-level: how far (in periods) from a symbol's expected start the edge that marks a
change may lie: past half a period, a sampler that slipped a few samples has made the
run before it ambiguous, and re-anchoring on the edge keeps the grid."""
SQUEEZED = 0.35
"""Bi-level: light that changes and changes back this many periods later (or more, up
to one) is a symbol, squeezed by a sampler that dropped samples."""
DECIDE_AFTER = 1.5
"""Bi-level: a symbol is decided once this many periods after its start are sampled
(its start may move half a period to the edge that marks it)."""
STEER_PERIOD = 0.02
"""Bi-level: share of an edge's offset that goes into the symbol period."""
OVERTIME_SYMBOLS = 4
"""Bi-level: symbols still decided after a frame fails its CRC, for the repair (an edit
that drops a symbol needs the one after the frame)."""
BACKFILL_SYMBOLS = 8
"""Symbols before the sync run's first edge where the bi-level grid starts (a late lock)."""
HUNT_SYMBOLS = 112
"""Symbols after a bi-level lock within which the start word must appear."""
MEASURED_RUNS = 12
"""Sync runs (the latest) whose period and levels set the thresholds."""
MAX_SAMPLE = 1e6
"""Samples beyond ± this many times full scale are not light: a BadSamplesError."""
TRILEVEL_MIN_FRAME_S = 0.0049
"""The shortest frame a screen shows: one refresh of a 144 Hz display (6.9 ms) less
two milliseconds of refresh jitter. The SDK's pacing (protocol/screen.py) makes frames
whole refreshes, irregular, 1 to 3 refreshes long and shorter than the mean after a
dropped refresh, so the tri-level receiver never times a frame: each lit run is a bit.
The tri-level moving average spans 0.6 of it (3 samples at 1 kHz)."""
TRILEVEL_GLITCH = 0.2
"""Tri-level runs shorter than this fraction of the mean frame are noise. A paced frame
is at least one refresh, and shorter than the mean only by the lateness of the frame
before it (a refresh or two): 60 fps on 144 Hz after a dropped refresh, 6.9 ms less
jitter, 0.29 of the mean, is the shortest of the common schedules."""
TRILEVEL_SPREAD = (0.3, 3.5)
"""A tri-level sync run's intervals may each be this fraction or multiple of their mean."""
TRILEVEL_SILENCE = 5.0
"""Mean frames without a transition after which a tri-level reception is lost."""
CROSSING_LOOKBACK = 4
"""Samples an edge's midpoint crossing is looked for before the slicer's flip."""
EDGE_REACH = CROSSING_LOOKBACK + 1
"""How far before the first sample not yet fed an edge not yet seen may be timed: its
slicer flip is on a sample still to come, and its crossing is looked for up to
CROSSING_LOOKBACK samples before that, interpolated from the sample before those.
What needs to know that no edge came by some time (a tri-level run proven no glitch, a
run outlasting the silence limit, a bi-level symbol and the edges that steer it) is
decided only once that time is more than this far behind the input: later, whatever
the feed sizes, so the same however the stream is cut."""
MANY_EDGES = 24
"""Edges in a chunk from which their crossings are timed by numpy, all at once
(fewer: one by one, where a few numpy calls would cost more than the Python)."""
MAGIC_BITS = tuple((0x2A >> (7 - i)) & 1 for i in range(8))
"""The magic's bits, MSB first: the tri-level receiver hunts them in its lit runs."""
MAGIC_GAP = 0.15
"""Tri-level: the magic's white runs must all stand this fraction of the black-to-grey
swing above all its grey runs. White is 0.33 of it above grey on a linear screen and
0.92 on an sRGB one (grey 0.75 or 0.52 of white): the screen's gamma is measured on
the magic, not assumed."""
TRILEVEL_HUNT_BITS = 48
"""Lit runs after a tri-level lock within which the magic must appear (the preamble
has 24 bits; the lock takes 8 of them)."""
TWO_LEVELS = 6.0
"""A tri-level sync run's black and grey levels must lie this many times the spread of
the light within its runs apart: a real one at noise 0.05 of the swing, about 20
times; sliced noise, hardly ever over 5."""
LEVEL_TRACKING = 0.125
"""Weight of each new grey or white run in the tri-level level estimates."""
COMPILED = bilevel_kernel.available(
    {
        "SYMBOL_GUARD": SYMBOL_GUARD,
        "DECIDE_AFTER": DECIDE_AFTER,
        "STEER_REACH": STEER_REACH,
        "STEER_PHASE": STEER_PHASE,
        "STEER_PERIOD": STEER_PERIOD,
        "SQUEEZED": SQUEEZED,
        "CROSSING_LOOKBACK": CROSSING_LOOKBACK,
        "BILEVEL_RUN_LIMIT": BILEVEL_RUN_LIMIT,
        "CHECK_BYTES": CHECK_BYTES,
        "HUNT_SYMBOLS": HUNT_SYMBOLS,
        "HUNT_KEEP": len(SYNC_WORD) + 1,
        "SYNC_TRANSITIONS": SYNC_TRANSITIONS,
    }
)
"""Whether decoders made from now on run the bi-level receiver's loops compiled
(protocol/_bilevel.c, built at install when a C compiler is there, with the same
constants) or in Python: the same decisions either way, tested equal."""
_WHITENING = np.array(BILEVEL_WHITENING, dtype=np.uint8)
_WHITENING.flags.writeable = False


# --------------------------------------------------------------------------- errors


class BlinkUpDecodeError(BlinkUpError):
    """A reception that started (a sync run was found) and failed.

    ``stats`` holds what the decoder had measured, for plotting; ``data`` the bytes
    after the magic that were read before the failure.
    """

    def __init__(
        self, message: str, field: str = "signal", stats: DecodeStats | None = None
    ) -> None:
        super().__init__(message, field)
        self.stats = stats
        self.data = b""


class SyncLostError(BlinkUpDecodeError):
    """The signal stopped or broke its line code before the frame was complete."""


class BadMagicError(BlinkUpDecodeError):
    """A sync run was followed by something other than the magic 0x2A."""


class CorruptFrameError(BlinkUpDecodeError):
    """All bytes arrived but the packet is wrong; ``cause`` is the packet error."""

    def __init__(self, cause: BlinkUpError, frame: bytes, stats: DecodeStats) -> None:
        super().__init__(f"corrupt frame: {cause}", cause.field, stats)
        self.cause = cause
        self.frame = frame


class BadSamplesError(BlinkUpDecodeError):
    """What was fed is not a 1-D sequence of finite numbers."""


class DecoderStateError(BlinkUpDecodeError):
    """An event the state table does not allow in the current state (a bug)."""


# --------------------------------------------------------------------------- results


@dataclass
class DecodeStats:
    """What the decoder measured, in input sample positions, for people and plots."""

    line_code: str
    sample_rate: float
    symbol_period: float = 0.0
    """Samples per symbol measured on the sync run (and tracked after)."""
    levels: tuple[float, float] = (0.0, 0.0)
    """Dark and lit (bi-level) or black and grey (tri-level) levels of the sync run."""
    thresholds: tuple[float, ...] = ()
    """Slicing thresholds: the midpoint, then (tri-level) the grey/white threshold as
    measured on the magic."""
    hysteresis: float = 0.0
    inverted: bool = False
    sync_start: float = 0.0
    lock: float = 0.0
    end: float = 0.0
    bit_starts: list[float] = field(default_factory=list)
    """Start of every bit from the magic on: bi-level, each symbol of the start word
    then every data bit; tri-level, each bit of the magic from its first 1, then
    every data bit."""
    repaired: int = 0
    """Bi-level: edits the CRC-aided repair (protocol/repair.py) made to the symbols
    decided; 0 when the frame decoded as received."""

    @property
    def symbol_rate(self) -> float:
        """The sender's symbol rate as measured (Hz)."""
        return self.sample_rate / self.symbol_period if self.symbol_period else 0.0


@dataclass
class DecodeResult:
    """One decoded BlinkUp: the packet, the frame it came from, and the measurements."""

    config: BlinkUpConfig
    frame: bytes
    stats: DecodeStats


Outcome = DecodeResult | BlinkUpDecodeError


# --------------------------------------------------------------------------- states


class DecoderState(enum.Enum):
    """Where the decoder is in a reception."""

    IDLE = "idle"
    SYNC = "sync"
    FRAME = "frame"


class DecoderEvent(enum.Enum):
    """What moves the decoder between states."""

    SYNC_FOUND = "sync found"
    MAGIC_FOUND = "magic found"
    FRAME_DONE = "frame done"
    FAILED = "failed"


TRANSITIONS: dict[tuple[DecoderState, DecoderEvent], DecoderState] = {
    (DecoderState.IDLE, DecoderEvent.SYNC_FOUND): DecoderState.SYNC,
    (DecoderState.SYNC, DecoderEvent.MAGIC_FOUND): DecoderState.FRAME,
    (DecoderState.SYNC, DecoderEvent.FAILED): DecoderState.IDLE,
    (DecoderState.FRAME, DecoderEvent.FRAME_DONE): DecoderState.IDLE,
    (DecoderState.FRAME, DecoderEvent.FAILED): DecoderState.IDLE,
}


class _Done(Exception):
    """Internal: the current reception ended (with an outcome) at a transition."""


def _hysteresis(above: bytes, below: bytes, prev: int) -> tuple[list[int], list[int], int]:
    """Two-threshold slicer: a sample above the upper threshold sets 1, below the lower
    one sets 0, between keeps the last level. ``above`` and ``below`` hold one byte
    per sample (1 where it is past that threshold: numpy's comparisons, as bytes).
    Returns the indices where the level flips, the level after each flip, and the
    level after the last sample (``prev``, -1 for "not yet decided", before the
    first). Every sample is looked at, in C: each flip is one ``bytes.find`` for the
    next sample past the opposite threshold, so a chunk costs two comparisons and a
    find per flip, however long it is."""
    changes: list[int] = []
    levels: list[int] = []
    level = prev
    at = 0
    if level < 0:
        up, down = above.find(1), below.find(1)
        if up < 0 and down < 0:
            return changes, levels, prev
        level, at = (1, up) if down < 0 or 0 <= up < down else (0, down)
    find_up, find_down = above.find, below.find
    while True:
        at = find_down(1, at) if level else find_up(1, at)
        if at < 0:
            return changes, levels, level
        level ^= 1
        changes.append(at)
        levels.append(level)


_smallest, _largest = np.minimum.reduce, np.maximum.reduce
_accumulate = np.add.accumulate


def _median(values: list[float]) -> float:
    """The median of a few floats, as ``np.median`` computes it (the mean of the middle
    two of an even count), without its dozen calls."""
    ordered = sorted(values)
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2


def _sliding_extreme(a: FloatArray, w: int, largest: bool) -> FloatArray:
    """Max (or min) of every ``w`` consecutive samples of ``a`` (``len(a) - w + 1`` of
    them), exact, in O(len(a)) by van Herk / Gil-Werman: the prefix extreme within
    blocks of ``w`` and the suffix extreme, one of each per window."""
    n = a.shape[0] - w + 1
    blocks = -(-a.shape[0] // w)
    ufunc = np.maximum if largest else np.minimum
    padded = np.full(blocks * w, -np.inf if largest else np.inf)
    padded[: a.shape[0]] = a
    grid = padded.reshape(blocks, w)
    prefix = ufunc.accumulate(grid, axis=1).ravel()
    suffix = ufunc.accumulate(grid[:, ::-1], axis=1)[:, ::-1].ravel()
    out: FloatArray = ufunc(suffix[:n], prefix[w - 1 : w - 1 + n])
    return out


def _crossings(
    hist: FloatArray,
    first: int,
    changes: list[int],
    levels: list[int],
    mid: float,
    origin: int,
) -> list[float]:
    """Where the light crossed ``mid`` on its way to each flip's level (1: up), given
    that sample ``first + c`` of ``hist`` is the first past the hysteresis for each
    ``c`` of ``changes``: the crossing lies a sample or so earlier (at most
    CROSSING_LOOKBACK), interpolated between the samples either side of it. In
    absolute positions (``hist[0]`` is sample ``origin``), the same bits however the
    stream was cut. One comparison for the chunk; per flip, a ``bytes.rfind`` for
    the last sample on the far side of ``mid`` and two samples read."""
    lo = max(first - CROSSING_LOOKBACK, 0)
    if len(changes) > MANY_EDGES:
        return _crossings_array(hist, lo, first, changes, levels, mid, origin)
    side = np.greater(hist[lo:], mid).tobytes()
    item, back = hist.item, CROSSING_LOOKBACK
    out: list[float] = []
    for c, level in zip(changes, levels, strict=True):
        i = first + c
        start = i - back if i > back else 0
        # the last sample before i, within the lookback, still on the old side
        k = side.rfind(level ^ 1, start - lo, i - lo)
        j = k + lo + 1 if k >= 0 else start
        before = item(j - 1) if j > 0 else item(0)
        step = item(j) - before
        frac = min(max((mid - before) / step, 0.0), 1.0) if step != 0.0 else 0.0
        out.append((origin + j - 1) + frac)
    return out


_LOOKBACK = np.arange(1, CROSSING_LOOKBACK + 1)


def _crossings_array(
    hist: FloatArray,
    lo: int,
    first: int,
    changes: list[int],
    levels: list[int],
    mid: float,
    origin: int,
) -> list[float]:
    """:func:`_crossings` for many flips at once, in under two dozen numpy calls:
    the same arithmetic on the same samples, so the same bits."""
    i = np.add(changes, first)
    behind = i[:, None] - _LOOKBACK  # the samples looked back at, nearest first
    near_start = first <= CROSSING_LOOKBACK  # the walk may reach hist[0]
    # still on the old side of mid (a sample before hist[0] ends the walk)
    same = np.greater(hist[np.maximum(behind, lo) if near_start else behind], mid)
    same = same == np.array(levels, dtype=bool)[:, None]
    if near_start:
        same &= behind >= 0
    j = i - np.logical_and.accumulate(same, axis=1).sum(axis=1)
    before = hist[np.maximum(j - 1, 0) if near_start else j - 1]
    step = hist[j] - before
    frac = np.zeros(step.shape[0])
    np.divide(mid - before, step, out=frac, where=step != 0.0)
    np.minimum(np.maximum(frac, 0.0, out=frac), 1.0, out=frac)
    out: list[float] = ((j + (origin - 1)) + frac).tolist()
    return out


_IDLE = DecoderState.IDLE
_feed2 = bilevel_kernel.feed2


class BlinkUpDecoder:
    """Streaming decoder for one light sensor. See the module docstring."""

    def __init__(
        self,
        sample_rate: float = 1000.0,
        line_code: LineCode = "bilevel",
        symbol_rate: float | None = None,
        *,
        full_scale: float = 1.0,
        min_swing: float = 0.03,
    ) -> None:
        """``symbol_rate`` (symbols or frames per second) narrows the sync search to
        within -20%/+25% of it; ``None`` accepts the standard rates: bi-level 60 or
        142 Hz (each -20%/+25%), tri-level 10 to 75 frames per second. Lamp flicker
        (100 or 120 Hz light) is outside every band. ``min_swing`` (fraction of
        ``full_scale``) is the smallest swing the sync search considers a signal."""
        if line_code not in ("bilevel", "trilevel"):
            raise BadSamplesError(f"unknown line code {line_code!r}", "line_code")
        if not (sample_rate > 0 and math.isfinite(sample_rate)):
            raise BadSamplesError(f"sample_rate must be > 0, got {sample_rate}", "sample_rate")
        if not (0 < full_scale < math.inf and 0 <= min_swing < math.inf):
            raise BadSamplesError(
                f"full_scale must be > 0 and min_swing >= 0, got {full_scale}, {min_swing}",
                "full_scale",
            )
        fastest_allowed = sample_rate / MIN_SAMPLES_PER_SYMBOL
        if symbol_rate is not None and not 0 < symbol_rate <= fastest_allowed:
            raise BadSamplesError(
                f"symbol_rate {symbol_rate} must be > 0 and <= {fastest_allowed:g} "
                f"(sample_rate / {MIN_SAMPLES_PER_SYMBOL})",
                "symbol_rate",
            )
        self.sample_rate = float(sample_rate)
        self.line_code: LineCode = line_code
        self.symbol_rate = symbol_rate
        fs = self.sample_rate
        # symbol periods (in samples) a sync run may have: -20%/+25% around a rate
        if symbol_rate is not None:
            rates = [symbol_rate]
        elif line_code == "bilevel":
            rates = [BILEVEL_RATE, BILEVEL_FAST_RATE]
        else:
            rates = []
        self._bands = [(fs / (1.25 * r), fs / (0.8 * r)) for r in rates]
        if not rates:  # screens draw as fast as they can: 10 to 75 frames per second
            self._bands = [(fs / TRILEVEL_MAX_FPS, fs / TRILEVEL_MIN_FPS)]
        self._band_array = np.array(self._bands, dtype=np.float64).ravel()
        self._t_min = min(lo for lo, _hi in self._bands)
        self._t_max = max(hi for _lo, hi in self._bands)
        fastest = fs / self._t_min / 1.25
        self._taps = max(1, round(0.3 * fs / fastest))
        self._glitch = 0.5  # runs shorter than this many symbol periods are noise
        if line_code == "trilevel":
            # a paced frame may be as short as one refresh of a fast display
            self._glitch = TRILEVEL_GLITCH
            self._taps = max(1, min(self._taps, round(0.6 * TRILEVEL_MIN_FRAME_S * fs)))
        self._delay = (self._taps - 1) / 2.0
        self._window = max(4, math.ceil(3.5 * self._t_max))
        self._min_swing = min_swing * full_scale
        self._full_scale = full_scale
        self._history_len = (
            math.ceil((SYNC_TRANSITIONS + BACKFILL_SYMBOLS + 8) * self._t_max) + self._window
        )
        # Chunks shorter than the shortest symbol the decoder accepts are gathered
        # first: every feed costs a fixed few dozen numpy calls, and a symbol is
        # the finest grain ``state`` needs (it then lags the input by less than one).
        self._min_step = max(1, math.floor(self._t_min))
        self._ones = np.ones(self._taps)
        # the compiled loops (see COMPILED): made at the first bi-level lock
        self._compiled = COMPILED
        # a bi-level reception's feeds, filtered and received in one compiled call
        self._fused = COMPILED and self._taps == 2 and line_code == "bilevel"
        self._kernel: bilevel_kernel.Kernel | None = None
        self._limit = MAX_SAMPLE * self._full_scale
        self.reset()

    # ------------------------------------------------------------------ public

    @property
    def state(self) -> DecoderState:
        """IDLE, or SYNC/FRAME while a BlinkUp is being received."""
        return self._state

    @property
    def receiving(self) -> bool:
        """True while a BlinkUp is being received (the status LED pauses)."""
        return self._state is not DecoderState.IDLE

    def reset(self) -> None:
        """Forget everything: back to IDLE at sample position 0."""
        self._state = DecoderState.IDLE
        self._base = 0  # absolute index of the next sample fed
        self._raw_tail = np.zeros(0)
        self._raw_last: float | None = None  # taps == 2: the last raw sample
        self._pending: list[FloatArray] = []
        self._pending_n = 0
        # the history is a view of a buffer that grows in place (amortised appends)
        self._buf = np.zeros(4 * self._history_len + 4096)
        self._buf_lo = self._buf_hi = 0
        self._hist = self._buf[0:0]
        self._hist_start = 0
        self._received_from = 0  # the sample after the lock of the latest reception
        self._reset_idle()

    def feed(self, samples: Sequence[float] | npt.ArrayLike) -> list[Outcome]:
        """Decode a chunk; return the outcome of every reception whose end this chunk
        made certain (the end itself may lie a few samples before it).

        Samples that do not yet make up the shortest symbol period the decoder
        accepts wait for the next feed (or :meth:`flush`), so ``state`` lags the input
        by less than one symbol; outcomes and positions do not depend on it."""
        if self._fused and self._state is not _IDLE and not self._pending:
            done = self._feed_fused(samples)
            if done is not None:
                return done
        x = self._validate(samples)
        if x.shape[0] == 0:
            return []
        if self._pending_n + x.shape[0] < self._min_step:
            self._pending.append(x.copy())
            self._pending_n += x.shape[0]
            return []
        if self._pending:
            x = np.concatenate((*self._pending, x))
            self._pending.clear()
            self._pending_n = 0
        return self._process(x)

    def _feed_fused(self, samples: Sequence[float] | npt.ArrayLike) -> list[Outcome] | None:
        """A bi-level reception's feed in one compiled call (_take and _receive's work:
        the same history, the same decisions), or None when this chunk takes the
        general path (not a plain run of floats, a bad sample, too short, or the
        history's buffer must move): nothing was changed then."""
        try:
            x = np.asarray(samples, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            return None  # _validate says why
        if x.ndim != 1 or x.shape[0] < self._min_step:
            return None
        n = x.shape[0]
        buf_lo, buf_hi = self._buf_lo, self._buf_hi
        lo = buf_hi - self._history_len
        if lo > buf_lo:  # what _take keeps (the same whatever comes next)
            self._hist_start += lo - buf_lo
            self._buf_lo = buf_lo = lo
        buf = self._buf
        if buf_hi + n > buf.shape[0]:
            return None
        kernel = self._kernel
        assert kernel is not None and _feed2 is not None
        base = self._base
        event: int = _feed2(
            x,
            buf,
            buf_lo,
            buf_hi,
            self._raw_last,
            self._limit,
            self._hist_start,
            base,
            kernel.bound,
        )
        if event < 0:
            return None
        hi = buf_hi + n
        self._buf_hi = hi
        self._hist = buf[buf_lo:hi]
        self._raw_last = x.item(-1)
        stop = base + n
        if event == Event.NONE:
            self._base = stop
            return []
        outcomes: list[Outcome] = []
        self._decode(self._receive_compiled(base, stop, outcomes, event), stop, outcomes)
        return outcomes

    def flush(self) -> list[Outcome]:
        """Decode the samples still gathered (fewer than a symbol): the end of a capture."""
        if not self._pending:
            return []
        x = np.concatenate(self._pending)
        self._pending.clear()
        self._pending_n = 0
        return self._process(x)

    def _process(self, x: FloatArray) -> list[Outcome]:
        """Decode a chunk, in absolute sample positions: a reception that ends before
        this chunk (where the end became certain, noticed only now) hands the samples
        after its end back to the sync search, which reads them from the history."""
        outcomes: list[Outcome] = []
        stop = self._base + int(self._take(x).shape[0])
        self._decode(self._base, stop, outcomes)
        return outcomes

    def _decode(self, at: int, stop: int, outcomes: list[Outcome]) -> None:
        """Decode the history from sample ``at`` to ``stop`` (the end of the input)."""
        while at < stop:
            if self._state is DecoderState.IDLE:
                at = self._scan_idle(at, stop)
            else:
                at = self._receive(at, stop, outcomes)
        self._base = stop

    # ------------------------------------------------------------------ input

    def _validate(self, samples: Sequence[float] | npt.ArrayLike) -> FloatArray:
        try:
            x = np.asarray(samples, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as err:
            raise BadSamplesError(f"samples are not numbers: {err}", "samples") from err
        if x.ndim == 0:
            x = x.reshape(1)
        if x.ndim != 1:
            raise BadSamplesError(f"samples must be 1-D, got shape {x.shape}", "samples")
        if x.shape[0] == 0:
            return x
        # two reductions check it all: NaN makes both comparisons false, and a bound
        # far outside any sensor keeps the arithmetic below from overflowing (compiled:
        # one pass, and a chunk that passes is a contiguous run for smooth2)
        limit = self._limit
        if self._compiled:
            verdict = bilevel_kernel.check(x, limit)
            if verdict == 0:
                return x
            if verdict == 2:
                x = np.ascontiguousarray(x)
                if bilevel_kernel.check(x, limit) == 0:
                    return x
        low, high = float(_smallest(x)), float(_largest(x))
        if not (-limit <= low and high <= limit):
            raise BadSamplesError(
                f"samples must be finite and within ±{MAX_SAMPLE:g} x full scale "
                f"(got {low:g}..{high:g})",
                "samples",
            )
        return x

    def _take(self, x: FloatArray) -> FloatArray:
        """Filter a chunk into the history (moving average over ``taps`` samples,
        continued across chunks) and return it there: the last ``history_len``
        samples before it are kept, in a buffer that grows in place."""
        n = x.shape[0]
        lo = max(self._buf_lo, self._buf_hi - self._history_len)
        self._hist_start += lo - self._buf_lo
        self._buf_lo = lo
        if self._buf_hi + n > self._buf.shape[0]:
            keep = self._buf[self._buf_lo : self._buf_hi].copy()
            if keep.shape[0] + n > self._buf.shape[0]:
                self._buf = np.zeros(2 * (keep.shape[0] + n))
            self._buf[: keep.shape[0]] = keep
            self._buf_lo, self._buf_hi = 0, keep.shape[0]
        hi = self._buf_hi + n
        y = self._buf[self._buf_hi : hi]
        self._buf_hi = hi
        self._hist = self._buf[self._buf_lo : hi]
        taps = self._taps
        if taps == 1:
            y[:] = x
        elif taps == 2:
            # the common case (142 Hz possible): the same sums as below, fewer calls
            # the last sample before the chunk as a float (the same sum, no numpy scalars)
            first = x.item(0)
            if self._compiled:  # the same sums, one call
                bilevel_kernel.smooth2(x, y, first if self._raw_last is None else self._raw_last)
            else:
                y[0] = (first if self._raw_last is None else self._raw_last) + first
                np.add(x[1:], x[:-1], out=y[1:])
                y *= 0.5
            self._raw_last = x.item(-1)
        else:
            if self._raw_tail.shape[0] == 0:
                self._raw_tail = np.full(taps - 1, x[0])
            joined = np.concatenate((self._raw_tail, x))
            self._raw_tail = joined[-(taps - 1) :].copy()
            # a direct sum (not a running cumsum) gives the same bits however it is cut
            y[:] = np.convolve(joined, self._ones, "valid") / taps
        return y

    def _hist_slice(self, start: int, stop: int) -> FloatArray:
        lo = max(start - self._hist_start, 0)
        hi = max(stop - self._hist_start, lo)
        return self._hist[lo:hi]

    # ------------------------------------------------------------------ idle

    def _reset_idle(self) -> None:
        self._level = -1
        self._sync_times: list[int] = []

    def _scan_idle(self, a0: int, stop: int) -> int:
        """Slice adaptively from sample ``a0`` (absolute, in the history) and hunt a sync
        run; return where the lock happened or where this block ended (blocks bound the
        sliding max/min work done past a lock)."""
        n = min(stop, a0 + IDLE_BLOCK)
        if self._compiled and self.line_code == "bilevel":
            # the slicing and the sync search (_sync_transition), compiled
            found = bilevel_kernel.idle_sync(
                self._hist,
                a0 - self._hist_start,
                n - self._hist_start,
                self._window,
                self._min_swing,
                self._level,
                a0,
                self._sync_times,
                self._t_min,
                self._t_max,
                self._band_array,
            )
            if found is None:
                return n  # no window holds a swing: nothing is sliced, the level stays
            c, self._level = found
            if c < 0:
                return n
            self._lock(self._level)
            self._received_from = a0 + c + 1
            return self._received_from
        sliced = (
            bilevel_kernel.idle_slice(  # the same slicing, compiled
                self._hist,
                a0 - self._hist_start,
                n - self._hist_start,
                self._window,
                self._min_swing,
                self._level,
            )
            if self._compiled
            else self._idle_slice(a0, n)
        )
        if sliced is None:
            return n  # no window holds a swing: nothing is sliced, the level stays
        changes, levels, last = sliced
        for c, level in zip(changes, levels, strict=True):
            if self._sync_transition(a0 + c, level):
                self._level = level
                self._received_from = a0 + c + 1
                return self._received_from
        self._level = last
        return n

    def _idle_slice(self, a0: int, n: int) -> tuple[list[int], list[int], int] | None:
        """Slice samples ``a0`` to ``n`` with adaptive thresholds: the flips (from
        ``a0``), their levels, and the level after; None when no window holds a swing."""
        w = self._window
        seg = self._hist_slice(a0 - w + 1, n)
        need = (n - a0) + w - 1
        if seg.shape[0] < need:
            seg = np.concatenate((np.full(need - seg.shape[0], seg[0]), seg))
        if float(seg.max() - seg.min()) < self._min_swing:
            return None
        if w <= 8 or n - a0 <= 2 * w:
            stride = seg.strides[0]  # a windowed view (sliding_window_view, minus its checks)
            view = np.lib.stride_tricks.as_strided(
                seg, (seg.shape[0] - w + 1, w), (stride, stride), writeable=False
            )
            top, bottom = view.max(axis=1), view.min(axis=1)
        else:
            top, bottom = _sliding_extreme(seg, w, True), _sliding_extreme(seg, w, False)
        mid = (top + bottom) * 0.5
        band = (top - bottom) * 0.15
        band[(top - bottom) < self._min_swing] = np.inf
        part = self._hist[a0 - self._hist_start : n - self._hist_start]
        return _hysteresis(
            np.greater(part, mid + band).tobytes(),
            np.less(part, mid - band).tobytes(),
            self._level,
        )

    def _sync_transition(self, t: int, level: int) -> bool:
        """Another idle edge: lock once SYNC_TRANSITIONS regular intervals line up."""
        times = self._sync_times
        if not times:
            times.append(t)
            return False
        d = t - times[-1]
        if self.line_code == "trilevel":
            return self._screen_sync_transition(t, level, d)
        if d < 0.5 * self._t_min:
            # a glitch: this edge and the one before it are noise, not the sync run
            times.pop()
            return False
        # single intervals get a wide berth (noise moves edges); the grid and the
        # period over the whole run are what must be right
        if not 0.7 * self._t_min <= d <= 1.3 * self._t_max:
            times[:] = [t]
            return False
        if len(times) >= 2:
            # on the grid the run so far defines? (noise moves single edges, not the grid)
            period = (times[-1] - times[0]) / (len(times) - 1)
            if abs(t - times[0] - len(times) * period) > 0.4 * period:
                times[:] = [times[-1], t]
                return False
        times.append(t)
        if len(times) - 1 < SYNC_TRANSITIONS:
            return False
        period = (times[-1] - times[0]) / (len(times) - 1)
        if not any(lo <= period <= hi for lo, hi in self._bands):
            del times[0]
            return False
        self._lock(level)
        return True

    def _screen_sync_transition(self, t: int, level: int, d: int) -> bool:
        """Tri-level idle edge: a screen's frames last whole refreshes, unevenly (the
        SDK's pacing), so no grid: lock on SYNC_TRANSITIONS intervals that each stay
        within TRILEVEL_SPREAD of their mean, when the mean is a frame rate's."""
        times = self._sync_times
        if d < self._glitch * self._t_min:
            times.pop()  # a glitch: this edge and the one before it are noise
            return False
        if d > TRILEVEL_SPREAD[1] * self._t_max:
            times[:] = [t]
            return False
        if len(times) >= 3:
            mean = (times[-1] - times[0]) / (len(times) - 1)
            if not TRILEVEL_SPREAD[0] * mean <= d <= TRILEVEL_SPREAD[1] * mean:
                times[:] = [times[-1], t]
                return False
        times.append(t)
        if len(times) - 1 < SYNC_TRANSITIONS:
            return False
        period = (times[-1] - times[0]) / (len(times) - 1)
        if not any(lo <= period <= hi for lo, hi in self._bands) or not self._two_levels(level):
            del times[0]
            return False
        self._lock(level)
        return True

    def _run_means(
        self, level: int, spread_too: bool = True
    ) -> tuple[list[float], list[float], float]:
        """Mean light of the inner half of the latest MEASURED_RUNS sync runs, dark
        runs and lit runs apart (``level``: the level after the last edge), and the
        pooled spread (standard deviation) of the light within those runs (0 unless
        ``spread_too``)."""
        times = self._sync_times[-(MEASURED_RUNS + 1) :]
        if self._compiled:  # the same sums (numpy's order), compiled
            return bilevel_kernel.run_means(self._hist, self._hist_start, times, level, spread_too)
        add = np.add.reduce
        means: tuple[list[float], list[float]] = ([], [])
        spread, count = 0.0, 0
        run_level = 1 - level  # the level of the run that ended at the last edge
        for j in range(len(times) - 1, 0, -1):
            start, stop = times[j - 1], times[j]
            q = (stop - start) / 4.0
            part = self._hist_slice(math.ceil(start + q), math.floor(stop - q) + 1)
            if part.shape[0]:
                mean = float(add(part)) / part.shape[0]  # part.mean(), one call
                means[run_level].append(mean)
                if spread_too:
                    spread += float(add(np.square(part - mean)))
                    count += part.shape[0]
            run_level = 1 - run_level
        return means[0], means[1], math.sqrt(spread / max(count, 1))

    def _two_levels(self, level: int) -> bool:
        """Tri-level: do the sync runs show two steady levels (black and grey)? An
        irregular run's timing is weak evidence, so sliced noise must not pass: the
        light within the runs must be steady (spread under a TWO_LEVELS-th of the
        levels' distance) and every lit run brighter than every dark one by half
        that distance."""
        dark, lit, spread = self._run_means(level)
        if len(dark) < 3 or len(lit) < 3:
            return False
        gap = _median(lit) - _median(dark)
        return (
            gap > self._min_swing and gap > TWO_LEVELS * spread and min(lit) - max(dark) > 0.5 * gap
        )

    def _lock(self, level: int) -> None:
        """Measure the sync run: symbol period, lit and dark levels; fix thresholds."""
        # Only the latest MEASURED_RUNS runs: the first transitions of a lock may be
        # noise that happened to fall in step just before the real sync run.
        times = self._sync_times[-(MEASURED_RUNS + 1) :]
        # the period: a least-squares line through all the sync run's edges
        index = np.arange(len(self._sync_times), dtype=np.float64)
        period = float(np.polyfit(index, np.asarray(self._sync_times, dtype=np.float64), 1)[0])
        *means, _spread = self._run_means(level, spread_too=False)
        # the median of the run means: one odd run cannot move a threshold
        dark = _median(means[0]) if means[0] else 0.0
        lit = _median(means[1]) if means[1] else 0.0
        swing = lit - dark
        thresholds: tuple[float, ...] = ((dark + lit) / 2.0,)
        self._magic_runs: list[tuple[float, float]] = []
        self._grey_level = lit
        self._white_level = math.nan  # tri-level: measured on the magic
        self._thr = thresholds
        self._swing = abs(swing)
        self._hyst = (0.1 if self.line_code == "trilevel" else 0.2) * self._swing
        self._period = period
        self.stats = DecodeStats(
            line_code=self.line_code,
            sample_rate=self.sample_rate,
            symbol_period=period,
            levels=(dark, lit),
            thresholds=thresholds,
            hysteresis=self._hyst,
            sync_start=self._sync_times[0] - self._delay,
            lock=times[-1] - self._delay,
        )
        # runs: the open one (start, level) and the last closed one, awaiting commit
        self._open_start = float(times[-1])
        self._open_level = level
        self._slice_level = level
        self._last: tuple[float, float, int] | None = None
        self._light: list[float] = []  # tri-level: light since the oldest open run
        self._light_origin = 0
        # bi-level: soft decisions on a symbol grid that starts BACKFILL_SYMBOLS before
        # the sync run's first edge (those samples are still in the history, unless the
        # stream began later), so the 16-symbol sync word fits even when noise delayed
        # the lock
        self._soft = self.line_code == "bilevel"
        self._hunting = self._soft
        self._next_bit = max(  # the next symbol to decide
            self._sync_times[0] - BACKFILL_SYMBOLS * period, self._hist_start + period
        )
        self._edge_time = float(times[-1])
        self._silence_at = self._edge_time + SILENCE_SYMBOLS * period
        self._slots: list[tuple[float, float]] = []
        self._hunt_bits = 0
        self._hunted = 0
        # bi-level edges (time, level after it), oldest first; those before
        # ``_edge_first`` are spent
        self._edge_t = [float(t) for t in self._sync_times]
        self._edge_level = [
            (level + len(self._sync_times) - 1 - i) % 2 for i in range(len(self._sync_times))
        ]
        self._edge_first = 0
        self._weak_bits = 0
        self._raw = -1  # the last symbol's light (1 lit), -1 before the first
        self._run = (0, 0)  # data: the line's current run (symbol, length), for stuffing
        # every symbol decided (raw level, and where it began: the edge when one marked
        # it), kept for the repair
        self._trail: tuple[list[int], list[float]] = ([], [])
        self._overtime = -1  # symbols still to decide after a failed check (-1: none)
        self._data_bits = 0  # bi-level: data bits so far (the whitening's position)
        self._corrupt: CorruptFrameError | None = None
        # bi-level: a running prefix sum of the history from the grid's first symbol on
        self._cs_origin = max(math.floor(self._next_bit - period), self._hist_start)
        self._cs: list[float] = [0.0]
        if self._soft and self._compiled:
            self._start_kernel(level)
        elif self._soft:
            self._cs += _accumulate(self._hist[self._cs_origin - self._hist_start :]).tolist()
        self._inverted = False
        self._cur = 0
        self._nbits = 0
        self._bytes = bytearray()
        self._event(DecoderEvent.SYNC_FOUND)

    def _start_kernel(self, level: int) -> None:
        """Bi-level, compiled: the lock's state, in the kernel's arrays."""
        if self._kernel is None:
            self._kernel = bilevel_kernel.Kernel(_WHITENING, HUNT_PATTERNS, BILEVEL_START_WORD)
        K = bilevel_kernel
        self._kernel.start(
            self._hist[self._cs_origin - self._hist_start :],
            self._cs_origin,
            self._sync_times,
            self._edge_level,
            level,
            {
                K.F_PERIOD: self._period,
                K.F_NEXT: self._next_bit,
                K.F_MID: self._thr[0],
                K.F_HYST: self._hyst,
                K.F_WEAK: WEAK_SYMBOL * self._swing,
                K.F_DELAY: self._delay,
                K.F_SILENCE_AT: self._silence_at,
                K.F_EDGE_TIME: self._edge_time,
                K.F_GAP: SILENCE_SYMBOLS * self.stats.symbol_period,
            },
        )

    # ------------------------------------------------------------------ receive

    def _receive(self, a0: int, stop: int, outcomes: list[Outcome]) -> int:
        """Slice with the fixed thresholds from sample ``a0`` (absolute) to the end of the
        input; feed runs to the line code until done."""
        if self._soft and self._compiled:
            return self._receive_compiled(a0, stop, outcomes)
        mid = self._thr[0]
        part = self._hist[a0 - self._hist_start :]
        changes, levels, last = _hysteresis(
            np.greater(part, mid + self._hyst).tobytes(),
            np.less(part, mid - self._hyst).tobytes(),
            self._slice_level,
        )
        # where the signal crossed the midpoint (the slicer flips a little later,
        # past the hysteresis)
        hist = self._hist
        precise = _crossings(hist, a0 - self._hist_start, changes, levels, mid, self._hist_start)
        lo = 0
        if not self._soft:
            # tri-level runs are averaged from the light since the oldest run still
            # open (summing a slice gives the same bits however cut)
            first = self._last[0] if self._last is not None else self._open_start
            lo = max(math.floor(first) - 1 - self._hist_start, 0)
            if not self._compiled:  # as plain floats
                self._light, self._light_origin = hist[lo:].tolist(), self._hist_start + lo
        try:
            if self._soft:
                self._gather_edges(precise, levels)
            elif self._compiled:
                self._runs_compiled(precise, levels, lo, stop)
                self._slice_level = last
                return stop
            else:
                for t, level in zip(precise, levels, strict=True):
                    self._transition(t, level)
            self._end_of_chunk(stop)
        except _Done as done:
            return self._ended(done, stop, outcomes)
        self._slice_level = last
        return stop

    def _ended(self, done: _Done, stop: int, outcomes: list[Outcome]) -> int:
        """A reception ends where its end became certain, whichever feed noticed it (an
        earlier one's samples, maybe); the hunt for the next sync run resumes there
        (the decoder is IDLE now), not before the lock."""
        outcomes.append(done.args[0])
        end = float(done.args[1])
        self._after_done()
        return max(self._received_from, min(stop, math.ceil(end)))

    def _receive_compiled(
        self, a0: int, stop: int, outcomes: list[Outcome], event: int | None = None
    ) -> int:
        """Bi-level, compiled: the kernel slices, times and gathers the edges and
        decides the settled symbols (the same as _gather_edges, _end_of_chunk and
        _symbols); each event it stops at is handled here, then it resumes. ``event``:
        where feed2 stopped on this chunk already (ROOM: it did not start)."""
        kernel = self._kernel
        assert kernel is not None
        a0 -= self._hist_start
        try:
            if event is None or event == Event.ROOM:
                event = kernel.receive(self._hist, a0, self._hist_start, stop, False)
            while event:
                self._kernel_event(event)
                event = kernel.receive(self._hist, a0, self._hist_start, stop, True)
        except _Done as done:
            return self._ended(done, stop, outcomes)
        return stop

    def _kernel_event(self, event: int) -> None:
        """What the Python loop does at this point of _symbols or _gather_edges, with
        the kernel's state copied where that code reads it. Raises _Done when the
        reception ends."""
        kernel = self._kernel
        assert kernel is not None
        K = bilevel_kernel
        fs, ns = kernel.F, kernel.I
        if event == Event.FOUND:  # the start word: the magic, and the polarity
            self._inverted = self.stats.inverted = bool(ns.item(K.I_INVERTED))
            self._event(DecoderEvent.MAGIC_FOUND)
            return
        self._period, self._next_bit = fs.item(K.F_PERIOD), fs.item(K.F_NEXT)
        self._edge_time, self._silence_at = fs.item(K.F_EDGE_TIME), fs.item(K.F_SILENCE_AT)
        self._inverted = bool(ns.item(K.I_INVERTED))
        self._overtime = ns.item(K.I_OVERTIME)
        if event != Event.COMPLETE:  # the symbols decided, for the repair of a failure
            trail = ns.item(K.I_NTRAIL)
            self._trail = (
                ns[K.I_LEVELS : K.I_LEVELS + trail].tolist(),
                fs[K.F_MARKS : K.F_MARKS + trail].tolist(),
            )
        self._bytes = bytearray(kernel.data[: ns.item(K.I_NDATA)].tobytes())
        bits = ns.item(K.I_NBIT_STARTS)
        self.stats.bit_starts = fs[K.F_BIT_STARTS : K.F_BIT_STARTS + bits].tolist()
        at = fs.item(K.F_AT)
        if event == Event.COMPLETE:
            self._complete(at)  # returns when the check failed: a few more symbols
            ns[K.I_OVERTIME] = self._overtime
        elif event == Event.WEAK:
            self._fail(self._weak_error(at), at)
        elif event == Event.HUNT_FAIL:
            self._fail(self._no_start_word(), at)
        elif event == Event.OVERTIME_END and self._corrupt is not None:
            self._fail(self._corrupt, at)
        elif event == Event.SILENCE:
            self._fail(self._silence_error(), self._silence_at)
        else:
            raise DecoderStateError(f"the compiled receiver stopped at {event!r}", "state")

    def _gather_edges(self, times: list[float], levels: list[int]) -> None:
        """Bi-level: edges are gathered; the symbols are decided once per chunk (each
        looks only at edges within DECIDE_AFTER periods of its start). An edge that
        comes SILENCE_SYMBOLS after the one before it comes too late: the reception
        was lost in between."""
        gap = SILENCE_SYMBOLS * self.stats.symbol_period
        silence_at = self._silence_at
        heard = 0
        for t in times:
            if t > silence_at:
                break
            silence_at = t + gap
            heard += 1
        if heard:
            self._edge_t += times[:heard] if heard < len(times) else times
            self._edge_level += levels[:heard] if heard < len(times) else levels
            self._edge_time, self._silence_at = times[heard - 1], silence_at
        if heard < len(times):
            self._silence()

    def _transition(self, t: float, level: int) -> None:
        """A flip at absolute sample ``t`` to ``level``: close the open run."""
        d = t - self._open_start
        if d < self._glitch * self._period and self._last is not None:
            # a glitch: the open run is noise; reopen the run before it
            start, _end, lvl = self._last
            self._open_start, self._open_level = start, lvl
            self._last = None
            return
        if self._last is not None:
            last = self._last
            self._last = None
            self._commit(*last)
        self._check_open_length(t)
        self._last = (self._open_start, float(t), self._open_level)
        self._open_start, self._open_level = float(t), level

    def _runs_compiled(self, times: list[float], levels: list[int], lo: int, stop: int) -> None:
        """Tri-level, compiled: the runs of a chunk's flips timed and committed as
        _transition and _end_of_chunk do (glitches, the mean frame period, the open
        run's length limit), in C; each lit run committed comes back with its light
        and is read here, in order (a reception that ends at one ends there)."""
        out = np.empty(4 * (len(times) + 1))
        count, self._open_start, self._open_level, self._last, self._period, lost = (
            bilevel_kernel.tri_runs(
                times, levels, self._hist, lo, self._hist_start + lo, self._open_start,
                self._open_level, self._last, self._period, self._glitch, TRILEVEL_SILENCE,
                float(stop - EDGE_REACH), out,
            )
        )
        runs = out[: 4 * count].tolist()
        for k in range(0, 4 * count, 4):
            self._lit_run(runs[k + 2] if runs[k + 3] else self._grey_level, runs[k], runs[k + 1])
        if lost is not None:
            self._open_lost(lost)

    def _check_open_length(self, t: float) -> None:
        """Tri-level: no transition until ``t`` (or before it): lost once the open run
        outlasts TRILEVEL_SILENCE mean frames, at that moment (not when the news
        arrived)."""
        deadline = self._open_start + TRILEVEL_SILENCE * self._period
        if t > deadline:
            self._open_lost(deadline)

    def _open_lost(self, deadline: float) -> None:
        self._fail(
            SyncLostError(
                f"no transition for {TRILEVEL_SILENCE:g} frames after sample "
                f"{self._open_start - self._delay:.0f}: the signal stopped or broke "
                f"its line code"
            ),
            deadline,
        )

    def _end_of_chunk(self, now: int) -> None:
        """All samples before ``now`` are in, so every edge before ``now - EDGE_REACH``
        is known: decide what that settles, no more (an edge sliced in the next feed
        may be timed a few samples before ``now``)."""
        settled = now - EDGE_REACH
        if self._soft:
            if settled > self._silence_at:
                self._silence()
            self._symbols(settled)
            return
        if self._last is not None and settled - self._open_start >= self._glitch * self._period:
            # the open run has proven real: commit the one before it
            last = self._last
            self._last = None
            self._commit(*last)
        self._check_open_length(settled)

    def _commit(self, start: float, end: float, level: int) -> None:
        """A tri-level run is over: a lit run is one bit, grey or white, whatever its
        length (a paced frame lasts one to a few refreshes)."""
        dur = end - start
        if level == 1:
            # white or grey: the mean light of the run's inner 60% against the threshold
            q = 0.2 * dur
            lo = max(math.ceil(start + q) - self._light_origin, 0)
            inner = self._light[lo : max(math.floor(end - q) + 1 - self._light_origin, lo + 1)]
            light = sum(inner) / len(inner) if inner else self._grey_level
            self._lit_run(light, start - self._period, end)
        mean = self._period
        self._period += 0.05 * (min(max(dur, 0.5 * mean), 2.0 * mean) - mean)

    def _lit_run(self, light: float, t: float, end: float) -> None:
        """A lit run committed (its bit begins at ``t``): the magic's hunt, or a bit."""
        if self._state is DecoderState.SYNC:
            self._screen_magic(light, t, end)
        else:
            white = light > self._thr[1]
            self._track_levels(light, white)
            self._bit(int(white), t, end)

    def _screen_magic(self, light: float, t: float, end: float) -> None:
        """Tri-level, after the lock: hunt the magic 0x2A in the light of the last 8
        lit runs, jointly: the dimmest of its three white runs brighter than the
        brightest of its five grey ones by MAGIC_GAP of the swing. A noisy grey before
        it is no white bit that breaks the hunt, and the white level, hence the
        screen's gamma, is measured there."""
        runs = self._magic_runs
        runs.append((light, t))
        del runs[: -len(MAGIC_BITS)]
        if len(runs) == len(MAGIC_BITS):
            whites = [v for (v, _t), bit in zip(runs, MAGIC_BITS, strict=True) if bit]
            greys = [v for (v, _t), bit in zip(runs, MAGIC_BITS, strict=True) if not bit]
            white, grey = sum(whites) / len(whites), sum(greys) / len(greys)
            if min(whites) - max(greys) > MAGIC_GAP * self._swing:
                self._grey_level, self._white_level = grey, white
                self._thr = (self._thr[0], 0.5 * (grey + white))
                self.stats.thresholds = self._thr
                self.stats.bit_starts += [t0 - self._delay for _v, t0 in runs[2:]]
                self._event(DecoderEvent.MAGIC_FOUND)
                return
        self._hunted += 1
        if self._hunted > TRILEVEL_HUNT_BITS:
            self._fail(
                BadMagicError(
                    f"no magic 0x2A within {TRILEVEL_HUNT_BITS} frames of the sync run "
                    f"locked at sample {self.stats.lock:.0f}",
                    "magic",
                ),
                end,
            )

    def _track_levels(self, light: float, white: bool) -> None:
        """Follow the grey and white levels from the decided runs; grey/white is
        decided at their midpoint, whatever the screen's gamma."""
        if white:
            self._white_level += LEVEL_TRACKING * (light - self._white_level)
        else:
            self._grey_level += LEVEL_TRACKING * (light - self._grey_level)
        self._thr = (self._thr[0], 0.5 * (self._grey_level + self._white_level))

    # Bi-level, soft decisions: each symbol is the mean light of its inner 70% against
    # the threshold (integrate and dump, from prefix sums), on a symbol grid steered by
    # the edge where the light changed. The start word fixes where data begins and the
    # polarity; then every data bit is a symbol, less the stuffed ones.

    def _silence(self) -> None:
        """Bi-level: no edge for SILENCE_SYMBOLS after the last one. Symbols due by
        then are decided, then the reception fails there, however the stream was cut."""
        self._symbols(self._silence_at)
        self._fail(self._silence_error(), self._silence_at)

    def _silence_error(self) -> SyncLostError:
        return SyncLostError(
            f"no transition for {SILENCE_SYMBOLS:g} symbols after sample "
            f"{self._edge_time - self._delay:.0f}: the signal stopped"
        )

    def _weak_error(self, start: float) -> SyncLostError:
        return SyncLostError(f"the light stopped carrying bits at sample {start - self._delay:.0f}")

    def _no_start_word(self) -> BadMagicError:
        return BadMagicError(
            f"no start word within {HUNT_SYMBOLS} symbols of the sync run "
            f"locked at sample {self.stats.lock:.0f}",
            "magic",
        )

    def _prefix_sums(self) -> tuple[list[float], int]:
        """Prefix sums of the history (``cs[i]``: the samples before ``origin + i``,
        from where the reception's symbol grid began), extended by the samples fed
        since the last call. One running sum (numpy's accumulate adds in order), so a
        symbol's light is the same bits however the stream was cut: sums restarted per
        feed would round differently."""
        cs = self._cs
        hist = self._hist
        # the last sample summed (begun at the lock; still in the history, which keeps
        # many symbols before each feed)
        k = self._cs_origin + len(cs) - 2 - self._hist_start
        if k + 1 < hist.shape[0]:
            # the sum so far in place of that sample, for one accumulate (cheaper than a
            # copy with the sum in front); then the sample back
            sample = hist.item(k)
            hist[k] = cs[-1]
            cs[-1:] = _accumulate(hist[k:]).tolist()
            hist[k] = sample
        # the sums a symbol before the pending one are spent: dropped at once (a long
        # list of them made the decoder measurably slower)
        spent = math.floor(self._next_bit - self._period) - self._cs_origin
        if spent > 0:
            del cs[:spent]
            self._cs_origin += spent
        return cs, self._cs_origin

    def _symbols(self, until: float) -> None:
        """Decide every symbol sampled by ``until``: hunt the sync word, then data.

        The hot loop of the bi-level receiver (one pass per symbol, the only Python
        that runs per symbol): state lives in locals, the data stage (de-stuffing,
        unwhitening, bytes) is inlined, and state goes back to ``self`` before
        anything that may read it (the hunt, a completed frame, a failure)."""
        period = self._period
        start = self._next_bit
        if start + DECIDE_AFTER * period + 1.0 > until:
            return
        cs, origin = self._prefix_sums()
        mid = self._thr[0]
        edge_t, edge_level = self._edge_t, self._edge_level
        count = len(edge_t)
        levels, marks = self._trail
        levels_append, marks_append = levels.append, marks.append
        weak = WEAK_SYMBOL * self._swing
        ceil, floor = math.ceil, math.floor
        first = self._edge_first
        previous = self._raw
        weak_bits = self._weak_bits
        symbol_guard, decide_after, steer_reach = SYMBOL_GUARD, DECIDE_AFTER, STEER_REACH
        steer_phase, steer_period, squeezed = STEER_PHASE, STEER_PERIOD, SQUEEZED
        # the data stage, in locals too
        run_symbol, run = self._run
        cur, nbits, data_bits = self._cur, self._nbits, self._data_bits
        inverted = int(self._inverted)
        whitening, run_limit = BILEVEL_WHITENING, BILEVEL_RUN_LIMIT
        data = self._bytes
        frame_bytes = data[0] + 3 + CHECK_BYTES if data else -1
        bit_starts_append = self.stats.bit_starts.append
        delay = self._delay
        # what the symbols are for: the hunt, a few more after a failed check, or data
        hunting, overtime = self._hunting, self._overtime > 0
        try:
            while start + decide_after * period + 1.0 <= until:
                guard = symbol_guard * period
                a = ceil(start + guard) - origin
                b = floor(start + period - guard) + 1 - origin
                light = (cs[b] - cs[a]) / (b - a) - mid
                raw = 1 if light > 0 else 0
                before = start - period
                while first < count and edge_t[first] < before:
                    first += 1
                # where the light changed near here, this symbol starts at that edge (a
                # sampler that slipped moved it): measured again from there, and if the
                # change holds, the grid follows
                change = 1 - previous if previous >= 0 else raw
                # an edge past half a period is this symbol's start only if it looks
                # changed
                reach = (steer_reach if raw == change else 0.5) * period
                error = None
                at = k = first
                after = start + reach
                while k < count and edge_t[k] <= after:
                    if edge_level[k] == change:
                        off = edge_t[k] - start
                        if off >= -reach and (error is None or abs(off) < abs(error)):
                            error, at = off, k
                    k += 1
                mark = start
                following = start + period
                if error is not None:
                    moved = start + steer_phase * error
                    longer = period + steer_period * error
                    a = ceil(moved + guard) - origin
                    b = floor(moved + longer - guard) + 1 - origin
                    steered = (cs[b] - cs[a]) / (b - a) - mid
                    if (steered > 0) == (change == 1):
                        mark, light, raw = start + error, steered, change
                        period = longer
                        following = moved + period
                    else:
                        # the light changed and changed back within less than a symbol:
                        # a symbol that slips squeezed, if it lasted long enough
                        edge = start + error
                        seen = start + decide_after * period  # later edges may be missing
                        k = at + 1
                        while k < count and edge_t[k] <= seen and edge_level[k] == change:
                            k += 1
                        if k < count and edge_t[k] <= seen:
                            back = edge_t[k]
                            if squeezed * period <= back - edge < period:
                                mark, raw, following = edge, change, back
                levels_append(raw)
                marks_append(mark)
                previous = raw
                if first > 512:  # spent edges: drop them now and then
                    del edge_t[:first], edge_level[:first]
                    count -= first
                    first = 0
                if -weak < light < weak:
                    weak_bits += 1
                    if weak_bits >= 4:
                        self._raw, self._period, self._next_bit = raw, period, following
                        self._fail(self._weak_error(start), start)
                else:
                    weak_bits = 0
                if hunting:
                    self._raw, self._period, self._next_bit = raw, period, following
                    self._hunt(start, light)
                    hunting = self._hunting
                    if not hunting:  # the start word: data from here
                        run_symbol, run = self._run
                        inverted = int(self._inverted)
                elif overtime:
                    self._overtime -= 1
                    if self._overtime == 0 and self._corrupt is not None:
                        self._raw, self._period, self._next_bit = raw, period, following
                        self._fail(self._corrupt, start + period)
                    overtime = self._overtime > 0
                else:
                    # a data symbol (polarity corrected): dropped if stuffed, else a bit
                    symbol = raw ^ inverted
                    if run >= run_limit:
                        # stuffed: dropped (one that does not differ breaks the line
                        # code: the CRC fails and the repair may find the misjudged run)
                        run_symbol, run = symbol, 1
                    else:
                        if symbol == run_symbol:
                            run += 1
                        else:
                            run_symbol, run = symbol, 1
                        bit_starts_append(start - delay)
                        cur = (cur << 1) | (symbol ^ whitening[data_bits])
                        data_bits += 1
                        nbits += 1
                        if nbits == 8:
                            data.append(cur)
                            cur = nbits = 0
                            if frame_bytes < 0:
                                frame_bytes = data[0] + 3 + CHECK_BYTES
                            if len(data) == frame_bytes:
                                self._raw, self._period, self._next_bit = raw, period, following
                                self._complete(start + period)
                                overtime = self._overtime > 0  # a failed check: the repair
                start = following
        finally:
            self._raw, self._period, self._next_bit = previous, period, start
            self._edge_first, self._weak_bits = first, weak_bits
            self._run = (run_symbol, run)
            self._cur, self._nbits, self._data_bits = cur, nbits, data_bits

    def _found_start(self, inverted: bool, start_word: int) -> None:
        """The sync word ends here; its last ``start_word`` symbols (8, or 7 or 9 when
        slips squeezed or stretched its longest run) are the start word."""
        self._hunting = False
        self._inverted = inverted
        self.stats.inverted = inverted
        # the start word (the magic 2A) starts at these symbols
        self.stats.bit_starts += [t - self._delay for t, _v in self._slots[-start_word:]]
        # the start word as sent begins what the repair sees (the longest run set right)
        levels, marks = self._trail
        del marks[:-start_word]
        while len(marks) < len(BILEVEL_START_WORD):
            marks.insert(0, marks[0])
        del marks[: len(marks) - len(BILEVEL_START_WORD)]
        levels[:] = [bit ^ inverted for bit in BILEVEL_START_WORD]
        self._run = (BILEVEL_START_WORD[-1], 2)  # it ends with two dark symbols
        self._event(DecoderEvent.MAGIC_FOUND)

    def _hunt(self, start: float, light: float) -> None:
        """After a lock: wait until the last 16 symbols are the sync word (the sync
        run's end and the start word), either polarity, one symbol wrong at most; or,
        exactly, one of the SLIPPED_SYNC_WORDS."""
        slots = self._slots
        slots.append((start, light))
        keep = len(SYNC_WORD) + 1
        del slots[:-keep]
        for kept in self._trail:
            del kept[:-keep]
        self._hunted += 1
        # the latest decisions as bits of an int: a word compares in one popcount
        self._hunt_bits = ((self._hunt_bits << 1) | (light > 0)) & ((1 << keep) - 1)
        for size, pattern, wrong in HUNT_PATTERNS:
            if len(slots) < size:
                continue
            differ = (self._hunt_bits & ((1 << size) - 1) ^ pattern).bit_count()
            if differ <= wrong or differ >= size - wrong:
                self._found_start(inverted=differ >= size - wrong, start_word=size - 8)
                return
        if self._hunted > HUNT_SYMBOLS:
            self._fail(self._no_start_word(), self._next_bit)

    def _bit(self, bit: int, t: float, end: float) -> None:
        """A data bit (after the magic): bytes, and the frame once LEN says it is done."""
        self.stats.bit_starts.append(t - self._delay)
        self._cur = (self._cur << 1) | bit
        self._nbits += 1
        if self._nbits < 8:
            return
        self._bytes.append(self._cur)
        self._cur = 0
        self._nbits = 0
        if len(self._bytes) == self._bytes[0] + 3 + (CHECK_BYTES if self._soft else 0):
            self._complete(end)

    def _complete(self, end: float) -> None:
        data = bytes(self._bytes)
        if self._soft:  # bi-level: the packet, then its line check
            data, check = data[:-CHECK_BYTES], data[-CHECK_BYTES:]
        frame = PREAMBLE + data
        self.stats.end = end - self._delay
        try:
            if self._soft and bilevel_check(data) != check:
                raise LineCheckError(
                    int.from_bytes(bilevel_check(data), "big"), int.from_bytes(check, "big")
                )
            config = decode_frame(frame)
        except BlinkUpError as err:
            corrupt = CorruptFrameError(err, frame, self.stats)
            if not self._soft:
                self._fail(corrupt, end)
            # bi-level: decide a few more symbols, then try the repair
            self._corrupt, self._overtime = corrupt, OVERTIME_SYMBOLS
            return
        self._event(DecoderEvent.FRAME_DONE)
        raise _Done(DecodeResult(config, frame, self.stats), end)

    def _repaired(self, end: float) -> None:
        """Bi-level, a reception that failed: try the CRC-aided repair of the symbols
        decided; a frame it makes whole ends the reception as decoded, here."""
        levels, marks = self._trail
        if len(levels) <= len(BILEVEL_START_WORD):
            return
        reception = Reception([level ^ self._inverted for level in levels], marks, self._period)

        def accept(frame: bytes) -> BlinkUpConfig | None:
            try:
                return decode_frame(frame)
            except BlinkUpError:
                return None

        found = repair(reception, accept)
        if found is None:
            return
        frame, config, edits = found
        self.stats.repaired = len(edits)
        self.stats.end = end - self._delay
        self._event(DecoderEvent.FRAME_DONE)
        raise _Done(DecodeResult(config, frame, self.stats), end)  # type: ignore[arg-type]

    def _fail(self, err: BlinkUpDecodeError, end: float) -> None:
        if self._state is DecoderState.FRAME and self._soft:
            self._repaired(end)
        err.stats = self.stats
        err.data = bytes(self._bytes)
        self.stats.end = end - self._delay
        self._event(DecoderEvent.FAILED)
        raise _Done(err, end)

    def _after_done(self) -> None:
        self._reset_idle()

    def _event(self, event: DecoderEvent) -> None:
        try:
            self._state = TRANSITIONS[(self._state, event)]
        except KeyError:
            raise DecoderStateError(
                f"event {event.value!r} is not allowed in state {self._state.value!r}", "state"
            ) from None
