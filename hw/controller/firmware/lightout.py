# The light-out player's table (MicroPython): LIGHT_OUT chunks in, a stream to play out.
#
# A light-out stream arrives in chunks and plays from the controller's own timer
# once its last chunk is in. One explicit table, (state, event) -> (next, action)
# or the error code to refuse the chunk with:
#
#     state     event                  next      action
#     IDLE      first chunk (START)    LOADING   begin
#     IDLE      only chunk (START|END) PLAYING   begin and play
#     IDLE      next / last chunk      -         refuse BAD_SEQUENCE (no stream begun)
#     LOADING   first chunk            LOADING   begin (a half-received stream is dropped)
#     LOADING   only chunk             PLAYING   begin and play
#     LOADING   next chunk             LOADING   append
#     LOADING   last chunk (END)       PLAYING   append and play
#     PLAYING   any chunk              -         refuse BUSY
#     PLAYING   played (timer)         IDLE      finish: send LIGHT_OUT_DONE
#
# A pair with no row raises ValueError: a bug, never silence. Appending checks
# that the chunk's offset is the next symbol and its rate the stream's
# (BAD_SEQUENCE otherwise). An empty first chunk while playing is how a host asks
# whether a light-out still plays (BUSY) after a lost LIGHT_OUT_DONE.
import wire
from micropython import const

IDLE = const(0)
LOADING = const(1)
PLAYING = const(2)
STATE_NAMES = ("IDLE", "LOADING", "PLAYING")

FIRST = const(0)
ONLY = const(1)
NEXT = const(2)
LAST = const(3)
PLAYED = const(4)
EVENT_NAMES = ("FIRST", "ONLY", "NEXT", "LAST", "PLAYED")

BEGIN = const(0)
BEGIN_AND_PLAY = const(1)
APPEND = const(2)
APPEND_AND_PLAY = const(3)
FINISH = const(4)

START_FLAG = const(0x02)
END_FLAG = const(0x04)

# (state, event) -> (next state, action), or a negative error code to refuse with
TABLE = {
    (IDLE, FIRST): (LOADING, BEGIN),
    (IDLE, ONLY): (PLAYING, BEGIN_AND_PLAY),
    (IDLE, NEXT): -wire.BAD_SEQUENCE,
    (IDLE, LAST): -wire.BAD_SEQUENCE,
    (LOADING, FIRST): (LOADING, BEGIN),
    (LOADING, ONLY): (PLAYING, BEGIN_AND_PLAY),
    (LOADING, NEXT): (LOADING, APPEND),
    (LOADING, LAST): (PLAYING, APPEND_AND_PLAY),
    (PLAYING, FIRST): -wire.BUSY,
    (PLAYING, ONLY): -wire.BUSY,
    (PLAYING, NEXT): -wire.BUSY,
    (PLAYING, LAST): -wire.BUSY,
    (PLAYING, PLAYED): (IDLE, FINISH),
}


def chunk_event(flags):
    """Which event a LIGHT_OUT chunk is, from its START and END flags."""
    if flags & START_FLAG:
        return ONLY if flags & END_FLAG else FIRST
    return LAST if flags & END_FLAG else NEXT


class Player:
    """One bench LED's light-out: symbols loaded into a buffer made once, then played."""

    def __init__(self, capacity):
        self.symbols = bytearray(capacity)
        self.n = 0
        self.state = IDLE
        self.rate_mhz = 0
        self.seq = 0

    def step(self, event):
        row = TABLE.get((self.state, event))
        if row is None:
            raise ValueError("light-out has no row for " + EVENT_NAMES[event] + " in "
                             + STATE_NAMES[self.state])
        return row

    def chunk(self, seq, rate_mhz, flags, offset, data, start, end):
        """Take symbols data[start:end]; 0 when accepted, else the error code.

        Returns 0 and leaves ``state`` PLAYING when this chunk completes the stream:
        the caller starts the symbol clock.
        """
        row = self.step(chunk_event(flags))
        if not isinstance(row, tuple):
            return -row
        nxt, action = row
        n = self.n
        if action in (BEGIN, BEGIN_AND_PLAY):
            self.rate_mhz = rate_mhz
            n = 0
        if offset != n or rate_mhz != self.rate_mhz:
            return wire.BAD_SEQUENCE
        count = end - start
        if n + count > len(self.symbols):
            return wire.BAD_PAYLOAD
        self.symbols[n:n + count] = data[start:end]
        self.n = n + count
        if action in (BEGIN_AND_PLAY, APPEND_AND_PLAY):
            self.seq = seq
        self.state = nxt
        return 0

    def played(self):
        """The symbol clock ran out: PLAYING -> IDLE; returns how many symbols played."""
        nxt, _ = self.step(PLAYED)
        self.state = nxt
        return self.n
