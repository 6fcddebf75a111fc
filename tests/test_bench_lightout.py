"""The light-out player's table: every (state, event) pair, chunking, timing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from impfactory.hw.bench_lightout import (
    TABLE,
    LightOutPlayer,
    LightOutStateError,
    PlayEvent,
    PlayState,
    chunk_event,
)
from impfactory.protocol import bench as bp

START, END = int(bp.LightOutFlag.START), int(bp.LightOutFlag.END)


def chunks(data: bytes, cuts: list[int], rate_mhz: int = 60_000) -> list[bp.LightOut]:
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    out = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        flags = (START if i == 0 else 0) | (END if b == len(data) else 0)
        out.append(bp.LightOut(rate_mhz, flags, a, data[a:b]))
    return out


def test_every_pair_has_a_row_or_is_an_error() -> None:
    player = LightOutPlayer()
    for state in PlayState:
        for event in PlayEvent:
            player.state = state
            if (state, event) in TABLE:
                assert player.step(event) == TABLE[state, event]
            else:
                with pytest.raises(LightOutStateError):
                    player.step(event)
    assert (PlayState.IDLE, PlayEvent.PLAYED) not in TABLE


@pytest.mark.parametrize(
    ("flags", "event"),
    [(START, PlayEvent.FIRST), (START | END, PlayEvent.ONLY), (0, PlayEvent.NEXT),
     (END, PlayEvent.LAST), (END | int(bp.LightOutFlag.ACTIVE_HIGH), PlayEvent.LAST)],
)
def test_chunk_events(flags: int, event: PlayEvent) -> None:
    assert chunk_event(flags) is event


@given(st.binary(min_size=1, max_size=3000), st.lists(st.integers(0, 3000), max_size=6))
@settings(max_examples=100, deadline=None)
def test_any_chunking_loads_the_whole_stream(data: bytes, cuts: list[int]) -> None:
    player = LightOutPlayer()
    for i, chunk in enumerate(chunks(data, cuts)):
        assert player.chunk(7 + i, chunk, now=1.0) is None
    assert player.state is PlayState.PLAYING
    assert bytes(player.symbols) == data
    assert player.end == pytest.approx(1.0 + len(data) / 60.0)


def test_refusals() -> None:
    player = LightOutPlayer()
    assert player.chunk(1, bp.LightOut(60_000, 0, 0, b"\xff"), 0.0) is bp.ErrorCode.BAD_SEQUENCE
    assert player.chunk(1, bp.LightOut(60_000, START, 0, b"\xff" * 4), 0.0) is None
    gap = bp.LightOut(60_000, END, 5, b"\x00")
    assert player.chunk(2, gap, 0.0) is bp.ErrorCode.BAD_SEQUENCE
    other_rate = bp.LightOut(142_000, END, 4, b"\x00")
    assert player.chunk(2, other_rate, 0.0) is bp.ErrorCode.BAD_SEQUENCE
    assert player.state is PlayState.LOADING
    assert player.chunk(3, bp.LightOut(60_000, END, 4, b"\x00"), 0.0) is None
    probe = bp.LightOut(60_000, START, 0, b"")
    assert player.chunk(4, probe, 0.01) is bp.ErrorCode.BUSY  # still playing


def test_levels_and_finish_follow_the_clock() -> None:
    player = LightOutPlayer()
    assert player.chunk(9, bp.LightOut(10_000, START | END, 0, bytes([255, 0, 51])), 2.0) is None
    times = np.array([1.99, 2.0, 2.05, 2.11, 2.25, 2.31])
    assert player.levels(times).tolist() == [0.0, 1.0, 1.0, 0.0, 0.2, 0.0]
    assert player.finish(2.29) is None
    done = player.finish(2.3)
    assert done == bp.LightOutDone(3) and player.state is PlayState.IDLE
    assert player.finish(5.0) is None
    assert player.levels(times).tolist() == [0.0] * 6
