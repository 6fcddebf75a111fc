"""The controller's light-out player: LIGHT_OUT chunks in, LED levels over time out.

A light-out stream arrives in chunks and plays from the controller's own timer
once its last chunk is in. The player is one explicit table, the part of a
controller most worth porting exactly to a microcontroller::

    state     event                  next      action
    IDLE      first chunk (START)    LOADING   begin
    IDLE      only chunk (START|END) PLAYING   begin and play
    IDLE      next / last chunk      -         refuse BAD_SEQUENCE (no stream begun)
    LOADING   first chunk            LOADING   begin (a half-received stream is dropped)
    LOADING   only chunk             PLAYING   begin and play
    LOADING   next chunk             LOADING   append
    LOADING   last chunk (END)       PLAYING   append and play
    PLAYING   any chunk              -         refuse BUSY
    PLAYING   played (time is up)    IDLE      finish: send LIGHT_OUT_DONE

Any other (state, event) pair is a ``LightOutStateError``. Appending also checks
that the chunk's offset is the next symbol and its rate is the stream's
(``BAD_SEQUENCE`` otherwise). An empty first chunk while playing is how a host
asks whether a light-out is still playing (``BUSY``) after a lost
``LIGHT_OUT_DONE``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
from impfactory.protocol import bench as bp

from impfactory.errors import ImpFactoryError


class LightOutStateError(ImpFactoryError, RuntimeError):
    """An event the light-out table has no row for: a bug, never silence."""


class PlayState(enum.Enum):
    IDLE = "idle"
    LOADING = "loading"
    PLAYING = "playing"


class PlayEvent(enum.Enum):
    FIRST = "first chunk"
    ONLY = "only chunk"
    NEXT = "next chunk"
    LAST = "last chunk"
    PLAYED = "played"


class PlayAction(enum.Enum):
    BEGIN = "begin"
    BEGIN_AND_PLAY = "begin and play"
    APPEND = "append"
    APPEND_AND_PLAY = "append and play"
    FINISH = "finish"


S, E, A = PlayState, PlayEvent, PlayAction
Row: TypeAlias = tuple[PlayState, PlayAction] | bp.ErrorCode
TABLE: dict[tuple[PlayState, PlayEvent], Row] = {
    (S.IDLE, E.FIRST): (S.LOADING, A.BEGIN),
    (S.IDLE, E.ONLY): (S.PLAYING, A.BEGIN_AND_PLAY),
    (S.IDLE, E.NEXT): bp.ErrorCode.BAD_SEQUENCE,
    (S.IDLE, E.LAST): bp.ErrorCode.BAD_SEQUENCE,
    (S.LOADING, E.FIRST): (S.LOADING, A.BEGIN),
    (S.LOADING, E.ONLY): (S.PLAYING, A.BEGIN_AND_PLAY),
    (S.LOADING, E.NEXT): (S.LOADING, A.APPEND),
    (S.LOADING, E.LAST): (S.PLAYING, A.APPEND_AND_PLAY),
    (S.PLAYING, E.FIRST): bp.ErrorCode.BUSY,
    (S.PLAYING, E.ONLY): bp.ErrorCode.BUSY,
    (S.PLAYING, E.NEXT): bp.ErrorCode.BUSY,
    (S.PLAYING, E.LAST): bp.ErrorCode.BUSY,
    (S.PLAYING, E.PLAYED): (S.IDLE, A.FINISH),
}


def chunk_event(flags: int) -> PlayEvent:
    """Which event a LIGHT_OUT chunk is, from its START and END flags."""
    start, end = bool(flags & bp.LightOutFlag.START), bool(flags & bp.LightOutFlag.END)
    if start:
        return PlayEvent.ONLY if end else PlayEvent.FIRST
    return PlayEvent.LAST if end else PlayEvent.NEXT


@dataclass
class LightOutPlayer:
    """One bench LED's light-out: load chunks, then play them on the clock."""

    state: PlayState = PlayState.IDLE
    rate_mhz: int = 0
    symbols: bytearray = field(default_factory=bytearray)
    seq: int = 0
    t0: float = 0.0

    def step(self, event: PlayEvent) -> Row:
        row = TABLE.get((self.state, event))
        if row is None:
            raise LightOutStateError(f"light-out has no row for {event.name} in {self.state.name}")
        return row

    def chunk(self, seq: int, msg: bp.LightOut, now: float) -> bp.ErrorCode | None:
        """Take one chunk; ``None`` when accepted, else the code to refuse it with."""
        row = self.step(chunk_event(msg.flags))
        if isinstance(row, bp.ErrorCode):
            return row
        nxt, action = row
        if action in (PlayAction.BEGIN, PlayAction.BEGIN_AND_PLAY):
            self.rate_mhz, self.symbols = msg.rate_mhz, bytearray()
        if msg.offset != len(self.symbols) or msg.rate_mhz != self.rate_mhz:
            return bp.ErrorCode.BAD_SEQUENCE
        self.symbols += msg.symbols
        if action in (PlayAction.BEGIN_AND_PLAY, PlayAction.APPEND_AND_PLAY):
            self.seq, self.t0 = seq, now
        self.state = nxt
        return None

    @property
    def end(self) -> float:
        """When the last symbol ends (clock seconds); meaningful while PLAYING."""
        return self.t0 + len(self.symbols) * 1000.0 / self.rate_mhz

    def levels(self, times: np.ndarray) -> np.ndarray:
        """The LED's brightness (0..1) at ``times``: dark outside a playing stream."""
        out = np.zeros(len(times))
        if self.state is not PlayState.PLAYING or not self.symbols:
            return out
        idx = np.floor((times - self.t0) * self.rate_mhz / 1000.0).astype(np.int64)
        inside = (idx >= 0) & (idx < len(self.symbols))
        out[inside] = np.frombuffer(bytes(self.symbols), dtype=np.uint8)[idx[inside]] / 255.0
        return out

    def finish(self, now: float) -> bp.LightOutDone | None:
        """The LIGHT_OUT_DONE to send once the stream has played by ``now``, else None."""
        if self.state is not PlayState.PLAYING or now < self.end:
            return None
        row = self.step(PlayEvent.PLAYED)
        if isinstance(row, bp.ErrorCode):  # pragma: no cover - the table says otherwise
            raise LightOutStateError(f"light-out refused PLAYED with {row.name}")
        self.state = row[0]
        return bp.LightOutDone(len(self.symbols))
