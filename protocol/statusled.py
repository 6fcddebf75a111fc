"""The imp's status-LED looks (IMP_FACTS §3): one table, read by the emulated imp and the bench.

The emulated imp (``firmware/led.py``) shows these looks; the bench's status
decoder (``protocol/bench_status.py``) names a real or emulated LED by them. Both
read this module, so the two can never disagree about a pattern or a colour.

A look is a colour and a repeating on/off pattern in ms, first segment lit
(``()`` = solid). How a pattern repeats, settled here for both: **every period
starts lit**, as the pattern is drawn in Electric Imp's LED-code table (one
picture per period, repeated). With an odd number of segments the last one is
lit, so it runs into the next period's first lit segment: 500,250,250 shows as
on 500, off 250, on 250, then (on 250 + on 500), off 250, ... ``shown_cycle``
gives that steady cycle; the very first period starts with ``pattern[0]`` alone.

Colours IMP_FACTS states are marked ``stated``; the others are ours, chosen once
(red for the WiFi stages, amber for the server and proxy stages).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class LedState(enum.Enum):
    """Every status the LED can show (IMP_FACTS §3), plus off and a BlinkUp being received."""

    OFF = "off"
    WAITING_BLINKUP = "waiting_blinkup"
    BLINKUP_RECEIVING = "blinkup_receiving"
    BLINKUP_OK = "blinkup_ok"
    BLINKUP_FAILED = "blinkup_failed"
    SEARCHING_WIFI = "searching_wifi"
    JOINING_WIFI = "joining_wifi"
    GETTING_IP = "getting_ip"
    RESOLVING = "resolving"
    CONNECTING = "connecting"
    ONLINE = "online"
    PROXY_WRONG = "proxy_wrong"
    PROXY_AUTH = "proxy_auth"
    WPS = "wps"
    UPDATING = "updating"
    BLESSED = "blessed"
    TEST_FAILED = "test_failed"
    POWER_PROBLEM = "power_problem"


@dataclass(frozen=True)
class Look:
    """How a state looks: colour and on/off segments in ms (``()`` = solid).

    ``stated``: IMP_FACTS gives this colour, so a sensor may rely on it to tell
    looks apart; otherwise the colour is only the emulator's choice.
    """

    colour: str
    pattern: tuple[int, ...] = ()
    stated: bool = False

    @property
    def lit(self) -> bool:
        return self.colour != "off"


LOOKS: dict[LedState, Look] = {
    LedState.OFF: Look("off"),
    LedState.WAITING_BLINKUP: Look("amber", (500, 500), stated=True),
    LedState.BLINKUP_RECEIVING: Look("off"),  # the LED stops flashing while receiving
    LedState.BLINKUP_OK: Look("green", stated=True),  # solid, 3 s
    LedState.BLINKUP_FAILED: Look("red", (250, 250), stated=True),  # "fast red flash"
    LedState.SEARCHING_WIFI: Look("red", (500, 500, 500, 250, 250, 250)),  # "red family"
    LedState.JOINING_WIFI: Look("red", (500, 500, 500, 250, 250, 250, 250, 250), stated=True),
    LedState.GETTING_IP: Look("red", (500, 250, 250)),
    LedState.RESOLVING: Look("red", (500, 250, 250)),
    LedState.CONNECTING: Look("amber", (500, 500, 500, 250)),  # "red / amber"
    LedState.ONLINE: Look("green", (500, 500), stated=True),
    LedState.PROXY_WRONG: Look("amber", (500, 500, 250, 250, 250, 250)),
    LedState.PROXY_AUTH: Look("amber", (500, 500, 250, 250, 250, 250, 250)),
    LedState.WPS: Look("amber", (500, 250, 250, 250)),
    LedState.UPDATING: Look("green", stated=True),
    LedState.BLESSED: Look("green", stated=True),
    LedState.TEST_FAILED: Look("red", stated=True),
    LedState.POWER_PROBLEM: Look("red", (250, 250), stated=True),
}

ALSO_SOLID: dict[LedState, str] = {LedState.POWER_PROBLEM: "red"}
"""States IMP_FACTS also allows as solid ("solid or fast-flashing red"); the emulator flashes."""

COLOURS_RGB: dict[str, str] = {
    "off": "#202020",
    "amber": "#ffb000",
    "green": "#20c040",
    "red": "#e02020",
}
"""The RGB each colour name is drawn (and, on the emulated bench, shone) in."""


def shown_cycle(pattern: tuple[int, ...]) -> tuple[int, ...]:
    """One steady period as lit/dark segments, lit first, always an even count.

    Every period starts lit, so an odd pattern's last (lit) segment merges with
    the next period's first: (500, 250, 250) -> (750, 250).
    """
    if len(pattern) % 2 == 0:
        return pattern
    return (pattern[-1] + pattern[0], *pattern[1:-1])
