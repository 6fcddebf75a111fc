"""The status LED: an explicit state machine with a recorded timeline.

Every state of IMP_FACTS §3 has a colour and a repeating on/off pattern in ms
(first segment lit, every period starting lit); the table of looks lives in
``protocol/statusled.py``, shared with the bench's status decoder. Events from
the rest of the impOS (connection stages, BlinkUp, impOS update, bless) move the
machine through one table,
``(state, event) -> (next state, action)``; an event with no row is a
``LedEventError``, never silence.

The 3 s green after a good BlinkUp is modelled as its own state: connection
events arriving during it are *deferred* (the latest one wins) and shown when
the green ends; an impOS update or a bless cuts it short.

The timeline records only state changes ``(time, state)``; blink segments are
computed from the patterns on demand, so thousands of devices cost no timers::

    t=0.0 WAITING_BLINKUP  amber 500,500     -> ▮ ▮ ▮ ▮
    t=4.2 BLINKUP_OK       green solid 3 s   -> ▮▮▮▮▮▮
    t=7.2 SEARCHING_WIFI   red 500,500,500,250,250,250
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from impfactory.clock import Clock, TimerHandle
from impfactory.firmware.errors import LedEventError
from impfactory.protocol.statusled import COLOURS_RGB, LOOKS, LedState, Look

if TYPE_CHECKING:
    import numpy as np

BLINKUP_GREEN_S = 3.0

__all__ = ["COLOURS_RGB", "LOOKS", "TABLE", "Action", "LedEvent", "LedState", "Look", "StatusLed"]


class LedEvent(enum.Enum):
    """What the impOS tells the LED."""

    POWER_OFF = "power_off"
    UNCONFIGURED = "unconfigured"
    BLINKUP_START = "blinkup_start"
    BLINKUP_GOOD = "blinkup_good"
    BLINKUP_BAD = "blinkup_bad"
    GREEN_DONE = "green_done"
    SEARCH = "search"
    JOIN = "join"
    GET_IP = "get_ip"
    RESOLVE = "resolve"
    CONNECT = "connect"
    ONLINE = "online"
    PROXY_WRONG = "proxy_wrong"
    PROXY_AUTH = "proxy_auth"
    WPS = "wps"
    UPDATE_START = "update_start"
    UPDATE_DONE = "update_done"
    BLESSED = "blessed"
    TEST_FAILED = "test_failed"
    NEW_CODE = "new_code"
    POWER_PROBLEM = "power_problem"


class Action(enum.Enum):
    """What a transition does besides changing state."""

    SHOW = "show"  # show the next state now
    DEFER = "defer"  # keep showing; remember the event's state for later
    RESUME = "resume"  # show the deferred state (or the row's state when none)
    START_GREEN = "start_green"  # show, and end the green after BLINKUP_GREEN_S
    KEEP = "keep"  # nothing visible changes


# Connection-stage events and the state each shows.
_NET: dict[LedEvent, LedState] = {
    LedEvent.UNCONFIGURED: LedState.WAITING_BLINKUP,
    LedEvent.SEARCH: LedState.SEARCHING_WIFI,
    LedEvent.JOIN: LedState.JOINING_WIFI,
    LedEvent.GET_IP: LedState.GETTING_IP,
    LedEvent.RESOLVE: LedState.RESOLVING,
    LedEvent.CONNECT: LedState.CONNECTING,
    LedEvent.ONLINE: LedState.ONLINE,
    LedEvent.PROXY_WRONG: LedState.PROXY_WRONG,
    LedEvent.PROXY_AUTH: LedState.PROXY_AUTH,
    LedEvent.WPS: LedState.WPS,
}
# States in which the connection manager is in charge of the LED.
_NET_STATES = (
    LedState.OFF,
    LedState.BLINKUP_FAILED,
    *dict.fromkeys(_NET.values()),
)
# States that hold the LED against connection events (shown later, on resume).
_HOLDING = (
    LedState.BLINKUP_RECEIVING,
    LedState.BLINKUP_OK,
    LedState.UPDATING,
    LedState.BLESSED,
    LedState.TEST_FAILED,
)

Row = tuple[LedState, Action]


def _build_table() -> dict[tuple[LedState, LedEvent], Row]:
    """The whole table, spelled out per group of states so every row is visible here."""
    t: dict[tuple[LedState, LedEvent], Row] = {}
    for s in LedState:
        t[s, LedEvent.POWER_OFF] = (LedState.OFF, Action.SHOW)
        t[s, LedEvent.POWER_PROBLEM] = (LedState.POWER_PROBLEM, Action.SHOW)
    for s in _NET_STATES:
        for ev, nxt in _NET.items():
            t[s, ev] = (nxt, Action.SHOW)
        t[s, LedEvent.BLINKUP_START] = (LedState.BLINKUP_RECEIVING, Action.SHOW)
        t[s, LedEvent.UPDATE_START] = (LedState.UPDATING, Action.SHOW)
        t[s, LedEvent.BLESSED] = (LedState.BLESSED, Action.SHOW)
        t[s, LedEvent.TEST_FAILED] = (LedState.TEST_FAILED, Action.SHOW)
        t[s, LedEvent.NEW_CODE] = (s, Action.KEEP)
    for s in _HOLDING:
        for ev in _NET:
            t[s, ev] = (s, Action.DEFER)
        t[s, LedEvent.NEW_CODE] = (s, Action.KEEP)
    # BlinkUp reception.
    rx = LedState.BLINKUP_RECEIVING
    t[rx, LedEvent.BLINKUP_START] = (rx, Action.KEEP)
    t[rx, LedEvent.BLINKUP_GOOD] = (LedState.BLINKUP_OK, Action.START_GREEN)
    t[rx, LedEvent.BLINKUP_BAD] = (LedState.BLINKUP_FAILED, Action.SHOW)
    # The 3 s green: resumes the deferred connection state; update or bless cut it short.
    ok = LedState.BLINKUP_OK
    t[ok, LedEvent.GREEN_DONE] = (LedState.SEARCHING_WIFI, Action.RESUME)
    t[ok, LedEvent.UPDATE_START] = (LedState.UPDATING, Action.SHOW)
    t[ok, LedEvent.BLESSED] = (LedState.BLESSED, Action.SHOW)
    t[ok, LedEvent.TEST_FAILED] = (LedState.TEST_FAILED, Action.SHOW)
    t[ok, LedEvent.BLINKUP_START] = (rx, Action.SHOW)
    # impOS update: solid green for its whole length; the restart that follows
    # shows whatever the connection manager says next (OFF until then).
    up = LedState.UPDATING
    t[up, LedEvent.UPDATE_DONE] = (LedState.OFF, Action.SHOW)
    t[up, LedEvent.UPDATE_START] = (up, Action.KEEP)
    # After bless the LED holds solid green/red until new code runs.
    for s in (LedState.BLESSED, LedState.TEST_FAILED):
        t[s, LedEvent.BLESSED] = (LedState.BLESSED, Action.SHOW)
        t[s, LedEvent.TEST_FAILED] = (LedState.TEST_FAILED, Action.SHOW)
        t[s, LedEvent.NEW_CODE] = (LedState.ONLINE, Action.RESUME)
        t[s, LedEvent.UPDATE_START] = (LedState.UPDATING, Action.SHOW)
    # A late green timer after something else took over is harmless.
    for s in LedState:
        t.setdefault((s, LedEvent.GREEN_DONE), (s, Action.KEEP))
    return t


TABLE: dict[tuple[LedState, LedEvent], Row] = _build_table()


@dataclass(frozen=True)
class Segment:
    """One stretch of the LED: lit (``on``) in ``colour`` from ``start`` to ``end`` seconds."""

    start: float
    end: float
    colour: str
    on: bool
    state: LedState


class StatusLed:
    """The LED of one device: feed it events, read its timeline."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.state = LedState.OFF
        self.timeline: list[tuple[float, LedState]] = [(clock.now(), LedState.OFF)]
        self._deferred: LedState | None = None
        self._green: TimerHandle | None = None
        self.listeners: list[Callable[[float, LedState], Any]] = []

    def handle(self, event: LedEvent) -> LedState:
        """Apply ``event``; return the state now shown. Unknown pairs raise ``LedEventError``."""
        row = TABLE.get((self.state, event))
        if row is None:
            raise LedEventError(f"LED has no transition for {event.name} in {self.state.name}")
        nxt, action = row
        if action is Action.KEEP:
            return self.state
        if action is Action.DEFER:
            self._deferred = _NET[event]
            return self.state
        if action is Action.RESUME:
            nxt = self._deferred or nxt
        if self._green is not None:
            self._green.cancel()
            self._green = None
        self._deferred = None
        if action is Action.START_GREEN:
            self._green = self.clock.call_later(BLINKUP_GREEN_S, self._green_done)
        self._show(nxt)
        return self.state

    def _green_done(self) -> None:
        self._green = None
        self.handle(LedEvent.GREEN_DONE)

    def _show(self, state: LedState) -> None:
        if state is self.state:
            return
        now = self.clock.now()
        self.state = state
        if self.timeline and self.timeline[-1][0] == now:
            self.timeline[-1] = (now, state)
        else:
            self.timeline.append((now, state))
        for listener in list(self.listeners):
            listener(now, state)

    # --- reading the timeline -------------------------------------------------

    def states(self) -> list[LedState]:
        """The states shown, in order, without repeats (what a test compares)."""
        out: list[LedState] = []
        for _, s in self.timeline:
            if not out or out[-1] is not s:
                out.append(s)
        return out

    def state_at(self, t: float) -> LedState:
        """The state shown at time ``t``."""
        current = self.timeline[0][1]
        for start, s in self.timeline:
            if start > t:
                break
            current = s
        return current

    def colour_at(self, t: float) -> str:
        """The colour lit at ``t``, or ``"off"`` (inside a pattern's dark segment too)."""
        for seg in self.segments(t, t + 1e-9):
            return seg.colour if seg.on else "off"
        return "off"

    def segments(self, t0: float | None = None, t1: float | None = None) -> list[Segment]:
        """The (start, end, colour, on) stretches between ``t0`` and ``t1`` (default: now)."""
        start_all = self.timeline[0][0] if t0 is None else t0
        end_all = self.clock.now() if t1 is None else t1
        out: list[Segment] = []
        bounds = [*self.timeline, (float("inf"), LedState.OFF)]
        for (start, state), (nxt, _) in itertools.pairwise(bounds):
            lo, hi = max(start, start_all), min(nxt, end_all)
            if hi <= lo:
                continue
            out.extend(_expand(state, start, lo, hi))
        return out

    def brightness(self, t0: float, t1: float, sample_rate: float) -> np.ndarray:
        """The LED as a 0/1 light signal sampled at ``sample_rate`` (for a sensor over it)."""
        import numpy as np

        n = max(0, round((t1 - t0) * sample_rate))
        times = t0 + np.arange(n) / sample_rate
        out = np.zeros(n, dtype=np.float32)
        for seg in self.segments(t0, t1):
            if seg.on:
                out[(times >= seg.start) & (times < seg.end)] = 1.0
        return out

    def render_png(self, path: str | Path, t0: float | None = None, t1: float | None = None,
                   title: str = "status LED") -> Path:
        """Draw the timeline as coloured segments over time and save it as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if t1 is None and self.state is LedState.OFF and len(self.timeline) > 1:
            t1 = min(self.clock.now(), self.timeline[-1][0] + 2.0)  # no long dark tail
        segs = self.segments(t0, t1)
        fig, ax = plt.subplots(figsize=(12, 2.2), dpi=PNG_DPI)  # labels measured as saved
        try:
            for seg in segs:
                colour = COLOURS_RGB[seg.colour] if seg.on else COLOURS_RGB["off"]
                ax.broken_barh([(seg.start, seg.end - seg.start)], (0, 1), facecolors=colour)
            shown = [(start, state) for start, state in self.timeline
                     if (t0 is None or start >= t0) and (t1 is None or start <= t1)]
            ax.set_yticks([])
            ax.set_xlabel("time (s)")
            ax.set_title(title, fontsize=9, loc="left")
            if segs:
                ax.set_xlim(segs[0].start, segs[-1].end)
            rows = max(3, _place_labels(fig, ax, shown))
            ax.set_ylim(0, LABEL_Y0 + LABEL_ROW * rows + 0.14)
            fig.set_size_inches(12, 2.2 + 0.2 * (rows - 3))  # the width (and x) unchanged
            out = Path(path)
            fig.savefig(out, dpi=PNG_DPI, bbox_inches="tight")
        finally:
            plt.close(fig)
        return out


PNG_DPI = 110
LABEL_Y0 = 1.05
"""Height (bar = 0..1) of the first row of state labels above the LED bar."""
LABEL_ROW = 0.22
"""Height between label rows."""


def _place_labels(fig: Any, ax: Any, shown: list[tuple[float, LedState]]) -> int:
    """Write each state's name above the bar where it starts, never over another name.

    Each label goes to the lowest row whose last label ends (as drawn, in display
    units) before this one begins; answers how many rows were used.
    """
    renderer = fig.canvas.get_renderer()
    row_ends: list[float] = []
    for start, state in shown:
        text = ax.text(start, LABEL_Y0, state.value, fontsize=6)
        box = text.get_window_extent(renderer)
        gap = box.height  # about one character
        row = next((i for i, end in enumerate(row_ends) if box.x0 > end + gap), len(row_ends))
        if row == len(row_ends):
            row_ends.append(box.x1)
        row_ends[row] = box.x1
        text.set_y(LABEL_Y0 + LABEL_ROW * row)
    return len(row_ends)


def _expand(state: LedState, origin: float, lo: float, hi: float) -> Iterator[Segment]:
    """The segments of ``state`` (pattern starting at ``origin``) clipped to [lo, hi)."""
    look = LOOKS[state]
    if not look.pattern or not look.lit:
        yield Segment(lo, hi, look.colour, look.lit, state)
        return
    period = sum(look.pattern) / 1000.0
    cycle = int((lo - origin) // period)
    t = origin + cycle * period
    while t < hi:
        for i, ms in enumerate(look.pattern):
            end = t + ms / 1000.0
            if end > lo and t < hi:
                yield Segment(max(t, lo), min(end, hi), look.colour, i % 2 == 0, state)
            t = end
            if t >= hi:
                break
