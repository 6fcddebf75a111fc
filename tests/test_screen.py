"""The screen model: the SDK's frame pacing on real displays, and display gamma.

The pacing is checked against an independent, literal rendering of the SDK's loop
(``Flasher.js``: a callback per refresh; draw when ``delta > interval``, then
``last = time - delta % interval``), and by the shapes it must have: whole
refreshes, irregular when the rates do not divide, the frame rate kept on average."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impfactory.protocol.linecode import (
    GREY,
    LightModel,
    LineCodeError,
    render_timed,
    render_trilevel,
    trilevel_levels,
)
from impfactory.protocol.screen import (
    Screen,
    ScreenError,
    emitted_light,
    frame_budget,
    refresh_times,
    sdk_frame_times,
    srgb_light,
)


def sdk_loop(frames: int, fps: float, refresh: np.ndarray, last: float) -> list[float]:
    """The SDK's sendbit loop, literally: one call per refresh callback."""
    interval = 1.0 / fps
    drawn: list[float] = []
    for time in refresh:
        delta = time - last
        if delta > interval or not drawn:
            last = time - math.fmod(delta, interval)
            drawn.append(float(time))
            if len(drawn) == frames:
                break
    return drawn


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([20.0, 30.0, 60.0]), st.sampled_from([60.0, 90.0, 120.0, 144.0]),
       st.floats(0.0, 0.0015), st.floats(0.0, 0.05), st.integers(0, 2**32 - 1))
def test_pacing_is_the_sdk_loop(
    fps: float, hz: float, jitter: float, drop: float, seed: int
) -> None:
    screen = Screen(hz, jitter, drop)
    frames = 300
    times = sdk_frame_times(frames, fps, screen, np.random.default_rng(seed))
    # replay the same random draws (refreshes, then the lattice offset) through the loop
    rng = np.random.default_rng(seed)
    budget = frame_budget(frames, fps, screen)
    while True:  # the model draws more refreshes when too few were drawn
        refresh = refresh_times(budget, screen, rng)
        offset = float(rng.uniform(0.0, 1.0 / fps))
        expected = sdk_loop(frames + 1, fps, refresh, -offset)
        if len(expected) == frames + 1:
            break
        budget *= 2.0
    assert np.allclose(times, expected, atol=1e-9)


@pytest.mark.parametrize(("fps", "hz", "refreshes"), [  # the table in docs/blinkup.md
    (60.0, 60.0, {1}), (60.0, 90.0, {1, 2}), (60.0, 120.0, {2}), (60.0, 144.0, {2, 3}),
    (30.0, 60.0, {2}), (30.0, 90.0, {3}), (30.0, 120.0, {4}), (30.0, 144.0, {4, 5}),
    (20.0, 60.0, {3}), (20.0, 90.0, {4, 5}), (20.0, 120.0, {6}), (20.0, 144.0, {7, 8}),
])
def test_frames_are_whole_refreshes_and_keep_the_rate(
    fps: float, hz: float, refreshes: set[int]
) -> None:
    rng = np.random.default_rng(1)
    times = sdk_frame_times(2000, fps, Screen(hz), rng)
    lengths = np.diff(times) * hz
    assert np.allclose(lengths, np.round(lengths), atol=1e-6)
    # after the first frame (as short as the lattice's offset makes it): these counts
    assert set(np.round(lengths[1:]).astype(int)) == refreshes
    assert (times[-1] - times[0]) / 2000 == pytest.approx(1 / fps, rel=0.002)


def test_60_fps_on_90_hz_alternates_one_and_two_refreshes() -> None:
    times = sdk_frame_times(600, 60.0, Screen(90.0), np.random.default_rng(3))
    lengths = np.round(np.diff(times)[1:] * 90.0).astype(int)
    assert set(lengths) == {1, 2}
    assert abs(int(np.sum(lengths == 1)) - int(np.sum(lengths == 2))) <= 1


def test_dropped_refreshes_hold_a_frame_and_the_next_catches_up() -> None:
    clean = sdk_frame_times(3000, 60.0, Screen(144.0), np.random.default_rng(4))
    dropped = sdk_frame_times(3000, 60.0, Screen(144.0, drop=0.05), np.random.default_rng(4))
    refreshes = np.round(np.diff(dropped) * 144.0).astype(int)
    assert refreshes.max() >= 4 and refreshes.min() == 1  # held, then short to catch up
    assert set(np.round(np.diff(clean)[1:] * 144.0).astype(int)) == {2, 3}
    # the lattice keeps the average: no frame rate is lost to drops
    assert (dropped[-1] - dropped[0]) / 3000 == pytest.approx(1 / 60, rel=0.01)


def test_jitter_moves_frame_edges_by_at_most_the_jitter() -> None:
    times = sdk_frame_times(500, 30.0, Screen(120.0, jitter=0.001), np.random.default_rng(5))
    off = (times * 120.0 - np.round(times * 120.0)) / 120.0
    assert np.abs(off).max() <= 0.001 + 1e-12
    assert np.abs(off).max() > 0.0005


def test_srgb_grey_is_about_half_of_white() -> None:
    assert float(srgb_light(0xBF / 0xFF)) == pytest.approx(0.52, abs=0.005)
    assert float(srgb_light(0.0)) == 0.0 and float(srgb_light(1.0)) == 1.0
    assert emitted_light(np.array([GREY]), "linear")[0] == pytest.approx(0.749, abs=0.001)
    assert emitted_light(np.array([GREY]), 2.2)[0] == pytest.approx(0.53, abs=0.01)


def test_a_paced_screen_renders_srgb_light_on_refresh_edges() -> None:
    frame = b"\x00\x00\x00\x2a\x02\x07\x00\x1d\x41"
    sig = render_trilevel(frame, frame_rate=60.0, screen=Screen(90.0), seed=2,
                          light=LightModel(gain=1.0), lead=0.0, tail=0.0)
    levels = set(np.round(sig.samples, 3))
    assert levels == {0.0, round(float(srgb_light(GREY)), 3), 1.0}
    # runs of one level last whole refreshes: 11 or 22 samples (90 Hz at 1 kHz)
    x = sig.samples
    edges = np.flatnonzero(np.diff(x) != 0) + 1
    runs = np.diff(edges)
    assert set(np.round(runs / (1000 / 90)).astype(int)) <= {1, 2}
    assert len(frame) * 16 + 6 == len(trilevel_levels(frame))


def test_render_timed_places_each_level_between_its_instants() -> None:
    sig = render_timed([1.0, 0.0, 0.5], [0.0, 0.005, 0.007, 0.012], lead=0.0, tail=0.0)
    assert list(sig.samples) == [1.0] * 5 + [0.0] * 2 + [0.5] * 5


@pytest.mark.parametrize("bad", [
    {"refresh_hz": 0.0}, {"refresh_hz": math.nan}, {"jitter": -0.001}, {"jitter": 0.01},
    {"drop": 0.9}, {"gamma": "vivid"}, {"gamma": 0.0},
])
def test_screen_nonsense_is_a_typed_error(bad: dict[str, object]) -> None:
    with pytest.raises(ScreenError) as err:
        Screen(**bad)  # type: ignore[arg-type]
    [field] = bad
    assert err.value.field == field


def test_pacing_nonsense_is_a_typed_error() -> None:
    with pytest.raises(ScreenError, match="fps"):
        sdk_frame_times(10, 0.0, Screen(), np.random.default_rng())
    with pytest.raises(LineCodeError, match="times"):
        render_timed([1.0, 0.0], [0.0, 0.002, 0.001])
    with pytest.raises(LineCodeError, match="clock_error"):
        render_trilevel(b"\x00", screen=Screen(), clock_error=0.01)
