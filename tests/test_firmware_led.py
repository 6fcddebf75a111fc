"""The status LED state machine follows IMP_FACTS §3 and records an honest timeline."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impfactory.clock import VirtualClock
from impfactory.firmware.errors import LedEventError
from impfactory.firmware.led import (
    LOOKS,
    TABLE,
    LedEvent,
    LedState,
    StatusLed,
)

S = LedState
E = LedEvent


def make() -> tuple[VirtualClock, StatusLed]:
    clock = VirtualClock()
    return clock, StatusLed(clock)


def test_documented_patterns_and_colours() -> None:
    # Patterns copied from IMP_FACTS §3, independently of the module's table.
    documented = {
        S.WAITING_BLINKUP: ("amber", (500, 500)),
        S.SEARCHING_WIFI: ("red", (500, 500, 500, 250, 250, 250)),
        S.JOINING_WIFI: ("red", (500, 500, 500, 250, 250, 250, 250, 250)),
        S.GETTING_IP: (None, (500, 250, 250)),
        S.RESOLVING: (None, (500, 250, 250)),
        S.CONNECTING: (None, (500, 500, 500, 250)),
        S.ONLINE: ("green", (500, 500)),
        S.PROXY_WRONG: (None, (500, 500, 250, 250, 250, 250)),
        S.PROXY_AUTH: (None, (500, 500, 250, 250, 250, 250, 250)),
        S.WPS: (None, (500, 250, 250, 250)),
        S.UPDATING: ("green", ()),
        S.BLESSED: ("green", ()),
        S.TEST_FAILED: ("red", ()),
        S.BLINKUP_OK: ("green", ()),
    }
    for state, (colour, pattern) in documented.items():
        look = LOOKS[state]
        assert look.pattern == pattern, state
        if colour is not None:
            assert look.colour == colour, state
        assert all(ms % 250 == 0 for ms in look.pattern)
    assert set(LOOKS) == set(LedState)


def test_good_blinkup_shows_three_seconds_green_then_deferred_connection_state() -> None:
    clock, led = make()
    led.handle(E.UNCONFIGURED)
    clock.advance_sync(2.0)
    led.handle(E.BLINKUP_START)
    clock.advance_sync(1.0)
    led.handle(E.BLINKUP_GOOD)
    led.handle(E.SEARCH)  # connection manager starts at once; LED holds green
    clock.advance_sync(1.0)
    led.handle(E.JOIN)
    assert led.state is S.BLINKUP_OK
    clock.advance_sync(1.99)
    assert led.colour_at(clock.now()) == "green"
    clock.advance_sync(0.02)
    assert led.state is S.JOINING_WIFI
    assert led.states() == [S.WAITING_BLINKUP, S.BLINKUP_RECEIVING, S.BLINKUP_OK, S.JOINING_WIFI]
    green = [seg for seg in led.segments() if seg.state is S.BLINKUP_OK]
    assert sum(seg.end - seg.start for seg in green) == pytest.approx(3.0)


def test_update_cuts_the_green_short_and_timer_does_not_resurrect_it() -> None:
    clock, led = make()
    led.handle(E.BLINKUP_START)
    led.handle(E.BLINKUP_GOOD)
    clock.advance_sync(1.0)
    led.handle(E.UPDATE_START)
    clock.advance_sync(5.0)
    assert led.state is S.UPDATING
    led.handle(E.UPDATE_DONE)
    assert led.state is S.OFF


def test_bad_blinkup_shows_failure_and_blink_pattern_times() -> None:
    clock, led = make()
    led.handle(E.UNCONFIGURED)
    led.handle(E.BLINKUP_START)
    clock.advance_sync(0.5)
    led.handle(E.BLINKUP_BAD)
    t = clock.now()
    assert led.colour_at(t + 0.1) == "red"
    assert led.colour_at(t + 0.3) == "off"
    assert led.colour_at(t + 0.6) == "red"


def test_blink_segments_follow_pattern_exactly() -> None:
    clock, led = make()
    led.handle(E.SEARCH)
    clock.advance_sync(10.0)
    segs = led.segments(0.0, 5.5)
    lengths = [round((s.end - s.start) * 1000) for s in segs]
    pattern = list(LOOKS[S.SEARCHING_WIFI].pattern)
    expected = list(itertools.islice(itertools.cycle(pattern), len(lengths)))
    assert lengths[:-1] == expected[:-1]
    assert [s.on for s in segs] == [i % 2 == 0 for i in range(len(segs))]
    signal = led.brightness(0.0, 2.25, 1000)
    assert signal[:500].min() == 1 and signal[500:1000].max() == 0
    assert signal[1000:1500].min() == 1 and signal[1500:1750].max() == 0


def test_bless_holds_solid_until_new_code() -> None:
    clock, led = make()
    led.handle(E.ONLINE)
    led.handle(E.BLESSED)
    led.handle(E.CONNECT)  # link flaps: LED holds solid green
    assert led.state is S.BLESSED
    led.handle(E.ONLINE)
    led.handle(E.NEW_CODE)
    assert led.state is S.ONLINE
    led.handle(E.TEST_FAILED)
    assert led.colour_at(clock.now()) == "red"


def test_unknown_event_is_a_typed_error() -> None:
    _, led = make()
    with pytest.raises(LedEventError):
        led.handle(E.BLINKUP_GOOD)  # no BlinkUp was being received
    with pytest.raises(LedEventError):  # (a ValueError too)
        led.handle(E.UPDATE_DONE)


def test_every_state_reachable_and_power_off_everywhere() -> None:
    reachable = {S.OFF}
    frontier = [S.OFF]
    while frontier:
        s = frontier.pop()
        for (src, _), (dst, _) in TABLE.items():
            if src is s and dst not in reachable:
                reachable.add(dst)
                frontier.append(dst)
    assert reachable == set(LedState)
    assert all(TABLE[s, E.POWER_OFF][0] is S.OFF for s in LedState)


def test_render_png(tmp_path: Path) -> None:
    clock, led = make()
    led.handle(E.UNCONFIGURED)
    clock.advance_sync(1.0)
    led.handle(E.SEARCH)
    clock.advance_sync(2.0)
    out = led.render_png(tmp_path / "led.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_png_labels_never_overlap(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A life as a DUT has it: a long wait for BlinkUp, then stages that follow each
    other quickly (every 0.3 s here): each state's name is still readable on its own."""
    from matplotlib.figure import Figure

    boxes: list[tuple[str, float, float, float, float]] = []
    save = Figure.savefig

    def spy(fig: Figure, *args: object, **kwargs: object) -> None:
        renderer = fig.canvas.get_renderer()
        for text in fig.axes[0].texts:
            b = text.get_window_extent(renderer)
            boxes.append((text.get_text(), b.x0, b.x1, b.y0, b.y1))
        save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    clock, led = make()
    steps = [E.UNCONFIGURED, E.BLINKUP_START, E.BLINKUP_GOOD, E.GREEN_DONE,
             E.SEARCH, E.JOIN, E.GET_IP, E.RESOLVE, E.CONNECT, E.ONLINE, E.UPDATE_START,
             E.UPDATE_DONE, E.SEARCH, E.JOIN, E.GET_IP, E.RESOLVE, E.CONNECT, E.ONLINE,
             E.TEST_FAILED]
    for event in steps:
        led.handle(event)
        clock.advance_sync(10.0 if event is E.UNCONFIGURED else 0.3)
    clock.advance_sync(2.0)
    led.render_png(tmp_path / "led.png")
    assert len(boxes) == len(led.timeline) >= 15
    for i, (a, ax0, ax1, ay0, ay1) in enumerate(boxes):
        for b, bx0, bx1, by0, by1 in boxes[i + 1:]:
            apart = ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0
            assert apart, f"labels {a!r} and {b!r} overlap"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(LedEvent)), st.floats(0, 5)), max_size=40))
def test_any_event_sequence_either_follows_the_table_or_is_refused(steps) -> None:
    clock, led = make()
    for event, gap in steps:
        before = led.state
        row = TABLE.get((before, event))
        if row is None:
            with pytest.raises(LedEventError):
                led.handle(event)
            assert led.state is before  # a refused event changes nothing
        else:
            led.handle(event)
        clock.advance_sync(gap)
    times = [t for t, _ in led.timeline]
    assert times == sorted(times)
    segs = led.segments()
    assert all(a.end == pytest.approx(b.start) for a, b in itertools.pairwise(segs))
    for seg in segs:
        look = LOOKS[seg.state]
        assert seg.colour == look.colour
