"""Status-LED decoding: RGB samples of an imp's status LED → the named states.

A colour sensor over a DUT's status LED gives RGB samples at a known rate. The
states of IMP_FACTS §3 are told apart by the repeating on/off pattern (segments
in ms, first one lit) and, where two share a pattern, by colour::

    RGB samples → 50 ms moving average → colour per sample → segments (lit/dark,
                colour, ms) → match the last few segments against every pattern,
                longest first → a named state, reported when it changes

Rules, and why:

* Sensor noise is averaged down first (``SMOOTH_S``), then a change of lit/dark
  or colour must last ``GLITCH_S`` to start a new segment, so a noisy sample
  never splits one. With noise of 6 % of full scale per channel every state is
  still named (tests/test_bench_status.py); at 10 % about one in a hundred is
  missed.

* A pattern of L segments (shown as ``Pattern.shape``: every period starts lit)
  is recognised when the last ``2 L`` (at least 6) segments, two whole periods,
  fit it in some rotation, each within ``TOLERANCE_MS``. Less is ambiguous:
  500,500 lives inside 500,500,500,250, joining's five 250 ms segments hold a
  fast flash, and nine segments of joining fit proxy_auth. Trying longer
  patterns first does the rest. The first stretch of a recording is cut short
  by its start and is never matched. The smallest step between patterns is
  250 ms, so a tolerance of 90 ms leaves a wide margin for a sensor's sampling and a LED's jitter.
* A lit stretch longer than ``SOLID_S`` is solid; solid green that ends after
  about 3 s right after a dark stretch (the LED stops flashing while a BlinkUp
  is received) is the "BlinkUp received" green, longer solid green is an impOS
  update or a blessed device. Dark for longer than ``DARK_S`` is ``off`` (no
  power, or a BlinkUp being received: the LED stops flashing then).
* Where IMP_FACTS gives two states the same look (getting an IP address and
  resolving the server name; a failed BlinkUp and a power problem) the state is
  reported with both names, joined by ``/``: no sensor can tell them apart.

The looks (patterns, colours, state names) come from ``protocol/statusled.py``,
the one table the emulated imp shows too, so a bench report and an emulated run
read the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from impfactory.errors import ImpFactoryError

from .statusled import ALSO_SOLID, LOOKS, LedState, shown_cycle

FloatArray = npt.NDArray[np.float64]

TOLERANCE_MS = 90.0
MIN_WINDOW = 6
SOLID_S = 1.0
DARK_S = 1.5
BLINKUP_GREEN_S = (2.5, 3.5)
RECEIVE_DARK_MS = 750.0
"""The BlinkUp green follows the dark of a reception: longer than any pattern's dark."""
SMOOTH_S = 0.05
"""RGB samples are averaged over this long (a centred moving window) before classifying."""
GLITCH_S = 0.05
"""A change of lit/dark shorter than this is a glitch (sensor noise), not a segment."""
LIT_THRESHOLD = 40.0
"""Brightness (max of R, G, B on a 0..255 scale) above which the LED counts as lit."""


class StatusDecodeError(ImpFactoryError, ValueError):
    """Samples that cannot be status-LED readings (wrong shape, bad rate)."""


@dataclass(frozen=True)
class Pattern:
    """One look of the status LED: the states showing it, colours and segments in ms."""

    names: tuple[str, ...]
    pattern: tuple[int, ...]
    colours: frozenset[str] = frozenset()
    """Colours it may show in; empty means any (the pattern alone identifies it)."""

    @property
    def name(self) -> str:
        return "/".join(self.names)

    @property
    def shape(self) -> tuple[int, ...]:
        """The steady lit/dark cycle this pattern shows as (``statusled.shown_cycle``).

        Every period starts lit, so an odd pattern's last lit segment runs into
        the next period's first: 500,250,250 shows as on 750, off 250.
        """
        return shown_cycle(self.pattern)


def _patterns() -> tuple[Pattern, ...]:
    """The blinking looks of ``statusled.LOOKS``, grouped as a sensor can tell them apart.

    States sharing a pattern are split by colour where IMP_FACTS states their
    colours and those differ (amber waiting for BlinkUp, green online);
    otherwise they are one look named by all of them (getting_ip/resolving).
    A stated colour constrains the look; an unstated one (the emulator's
    choice) does not.
    """
    groups: dict[tuple[tuple[int, ...], str], list[LedState]] = {}
    for state, look in LOOKS.items():
        if look.pattern:
            groups.setdefault((look.pattern, look.colour if look.stated else ""), []).append(state)
    return tuple(
        Pattern(tuple(s.value for s in states), pattern,
                frozenset({colour}) if colour else frozenset())
        for (pattern, colour), states in groups.items()
    )


def _solid() -> dict[str, tuple[str, ...]]:
    """Solid colour -> the states it may be (the 3 s BlinkUp green is told apart by length)."""
    out: dict[str, list[str]] = {}
    for state, look in LOOKS.items():
        if look.lit and not look.pattern and state is not LedState.BLINKUP_OK:
            out.setdefault(look.colour, []).append(state.value)
    for state, colour in ALSO_SOLID.items():
        out.setdefault(colour, []).append(state.value)
    return {colour: tuple(names) for colour, names in out.items()}


PATTERNS: tuple[Pattern, ...] = _patterns()
_BY_LENGTH = sorted(PATTERNS, key=lambda p: -len(p.pattern))
SOLID: dict[str, tuple[str, ...]] = _solid()


@dataclass(frozen=True)
class Segment:
    """A stretch of the LED: lit or dark, its colour, from ``start`` for ``ms``."""

    start: float
    ms: float
    on: bool
    colour: str


@dataclass(frozen=True)
class StatusReading:
    """A state recognised at ``start`` seconds (sample time of the stream)."""

    start: float
    state: str
    colour: str
    pattern: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "state": self.state,
            "colour": self.colour,
            "pattern": list(self.pattern),
        }


def classify(rgb: npt.ArrayLike, threshold: float = LIT_THRESHOLD) -> list[str]:
    """The colour name of each RGB sample: off, red, amber, green, blue or unknown (NaN)."""
    x = np.asarray(rgb, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3:
        raise StatusDecodeError(f"RGB samples must have shape (n, 3), got {x.shape}")
    out: list[str] = []
    for r, g, b in x:
        if np.isnan(r) or np.isnan(g) or np.isnan(b):
            out.append("unknown")
        elif max(r, g, b) < threshold:
            out.append("off")
        elif b > max(r, g):
            out.append("blue")
        elif g > 1.2 * r:
            out.append("green")
        elif g >= 0.35 * r:
            out.append("amber")
        else:
            out.append("red")
    return out


@dataclass
class _Change:
    """A change being confirmed: what it changes to, where it began, the votes."""

    key: str
    start: int
    counts: dict[str, int] = field(default_factory=dict)
    against: int = 0


@dataclass
class StatusDecoder:
    """Streaming decoder: ``feed`` RGB chunks of any size, get state changes out."""

    sample_rate: float
    threshold: float = LIT_THRESHOLD
    segments: list[Segment] = field(default_factory=list)
    readings: list[StatusReading] = field(default_factory=list)
    _n: int = 0
    _run_start: int = 0
    _run_key: str | None = None
    """The current run's colour name, ``off`` when dark."""
    _new: list[StatusReading] = field(default_factory=list)
    _change: _Change | None = None
    _tail: FloatArray | None = None
    _closed_any: bool = False
    _last: Segment | None = None

    def __post_init__(self) -> None:
        if not (self.sample_rate > 0 and np.isfinite(self.sample_rate)):
            raise StatusDecodeError(f"sample rate must be > 0, got {self.sample_rate}")

    @property
    def state(self) -> str | None:
        return self.readings[-1].state if self.readings else None

    def feed(self, rgb: npt.ArrayLike) -> list[StatusReading]:
        """Decode a chunk; return the states recognised in it, in order.

        A solid green first reads as ``updating/blessed``; when it ends after
        about three seconds the same stretch is named again, ``blinkup_ok``,
        which replaces the first reading in ``readings``.
        """
        self._new = []
        solid = round(SOLID_S * self.sample_rate)
        dark = round(DARK_S * self.sample_rate)
        confirm = max(1, round(GLITCH_S * self.sample_rate))
        for colour in classify(self._smooth(rgb), self.threshold):
            if colour == "unknown":  # a lost sample: keep the run going
                self._n += 1
                continue
            if self._run_key is None:
                self._run_key, self._run_start = colour, self._n
                self._n += 1
                continue
            on = colour != "off"
            candidate: str | None = None
            if on != (self._run_key != "off"):
                candidate = "lit" if on else "off"  # any colour counts toward going lit
            elif on and colour != self._run_key:
                candidate = colour  # a new colour must hold steady on its own
            change = self._change
            if candidate is None:
                if change is not None:
                    # samples like the run's outvote the change: it was a glitch
                    change.against += 1
                    if change.against > sum(change.counts.values()):
                        self._change = None
            else:
                # a change counts once GLITCH_S of samples vote for it (noise may
                # interrupt), and then it starts where it began
                if change is None or change.key != candidate:
                    change = self._change = _Change(candidate, self._n)
                change.counts[colour] = change.counts.get(colour, 0) + 1
                if sum(change.counts.values()) >= confirm:
                    self._close_run(change.start)
                    lit = {k: v for k, v in change.counts.items() if k != "off"}
                    self._run_key = max(lit, key=lit.__getitem__) if on else "off"
                    self._run_start, self._change = change.start, None
                self._n += 1
                continue
            self._n += 1
            if self._n - self._run_start == (dark if colour == "off" else solid):
                self._check_open_run()
        return self._new

    def _smooth(self, rgb: npt.ArrayLike) -> FloatArray:
        """A moving average over SMOOTH_S, continued across chunks (sensor noise / sqrt(n)).

        Each output sample is the mean of the window centred on it, so times stay
        where they were; a NaN (a lost sample) makes its window unknown.
        """
        x = np.asarray(rgb, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != 3:
            raise StatusDecodeError(f"RGB samples must have shape (n, 3), got {x.shape}")
        width = max(1, round(SMOOTH_S * self.sample_rate)) | 1
        if self._tail is None:
            self._tail = np.zeros((0, 3))
            self._n = -(width // 2)  # the first output belongs to the window's centre
        joined = np.concatenate([self._tail, x])
        if len(joined) < width:
            self._tail = joined
            return np.zeros((0, 3))
        lost = np.isnan(joined).any(axis=1)
        clean = np.where(lost[:, None], 0.0, joined)
        sums = np.cumsum(np.vstack([np.zeros((1, 3)), clean]), axis=0)
        gaps = np.cumsum(np.concatenate([[0], lost]))
        out: FloatArray = (sums[width:] - sums[:-width]) / width
        out[(gaps[width:] - gaps[:-width]) > 0] = np.nan
        self._tail = joined[len(joined) - width + 1 :]
        return out

    def _close_run(self, end: int) -> None:
        seg = self._open_segment(end)
        if seg is None:
            return
        before, self._last = self._last, seg
        if not self._closed_any:
            self._closed_any = True
            return  # the recording began inside this stretch: its length is unknown
        if seg.on and seg.ms >= SOLID_S * 1000:
            green = seg.colour == "green" and BLINKUP_GREEN_S[0] * 1000 <= seg.ms
            received = before is not None and not before.on and before.ms >= RECEIVE_DARK_MS
            if green and received and seg.ms <= BLINKUP_GREEN_S[1] * 1000:
                self._report(StatusReading(seg.start, "blinkup_ok", seg.colour))
            self.segments.clear()  # a solid stretch breaks any pattern
            return
        if not seg.on and seg.ms >= DARK_S * 1000:
            self.segments.clear()
            return
        self.segments.append(seg)
        del self.segments[:-32]
        self._match()

    def _open_segment(self, end: int | None = None) -> Segment | None:
        if self._run_key is None:
            return None
        ms = ((self._n if end is None else end) - self._run_start) * 1000.0 / self.sample_rate
        on = self._run_key != "off"
        return Segment(self._run_start / self.sample_rate, ms, on, self._run_key)

    def _check_open_run(self) -> None:
        seg = self._open_segment()
        if seg is None:
            return
        if seg.on and seg.ms >= SOLID_S * 1000:
            names = SOLID.get(seg.colour, (f"solid_{seg.colour}",))
            self._report(StatusReading(seg.start, "/".join(names), seg.colour))
        elif not seg.on and seg.ms >= DARK_S * 1000:
            self._report(StatusReading(seg.start, "off", "off"))

    def _match(self) -> None:
        for pat in _BY_LENGTH:
            length = len(pat.pattern)
            window = max(MIN_WINDOW, 2 * length)
            if len(self.segments) < window:
                continue
            segs = self.segments[-window:]
            lit = {s.colour for s in segs if s.on}
            if pat.colours and not lit <= pat.colours:
                continue
            if _fits(segs, pat.shape):
                colour = "/".join(sorted(lit))
                self._report(StatusReading(segs[0].start, pat.name, colour, pat.pattern))
                return

    def _report(self, reading: StatusReading) -> None:
        last = self.readings[-1] if self.readings else None
        if last is not None and last.state == reading.state:
            return
        if last is not None and last.start == reading.start and not last.pattern:
            self.readings[-1] = reading  # the same solid stretch, now named better
        else:
            self.readings.append(reading)
        self._new.append(reading)


def _fits(segs: Sequence[Segment], pattern: tuple[int, ...]) -> bool:
    """Whether ``segs`` is a stretch of ``pattern`` repeating, in some rotation."""
    n = len(pattern)
    # segments alternate lit/dark from the pattern's first (lit) one, so with an
    # odd length the lit one flips each period: rotations run over two periods
    for rot in range(2 * n):
        if all(
            seg.on == ((rot + i) % 2 == 0) and abs(seg.ms - pattern[(rot + i) % n]) <= TOLERANCE_MS
            for i, seg in enumerate(segs)
        ):
            return True
    return False


def decode_status(rgb: npt.ArrayLike, sample_rate: float) -> list[StatusReading]:
    """Every state change in a whole recording."""
    decoder = StatusDecoder(sample_rate)
    decoder.feed(rgb)
    return decoder.readings
