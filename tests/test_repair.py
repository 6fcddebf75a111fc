"""The CRC-aided repair of bi-level runs that a slipping sampler made ambiguous.

The receptions here are built by hand from the true symbols: one or two runs counted
a symbol short or long, and the edges (marks) where the light really changed, as the
decoder would have measured them."""

from __future__ import annotations

import itertools

import pytest

from impfactory.protocol.blinkup import BlinkUpConfig, decode_frame, encode_frame
from impfactory.protocol.linecode import bilevel_symbols
from impfactory.protocol.repair import (
    AMBIGUOUS,
    MAX_CANDIDATES,
    Reception,
    apply,
    candidates,
    frame_from_symbols,
    repair,
)

CFG = BlinkUpConfig(ssid=b"line-7", password=b"secret", plan_id="00112233aabbccdd",
                    token="1" * 16)
FRAME = encode_frame(CFG)
TRUE = bilevel_symbols(FRAME)[48:]  # the start word, then data as sent
PERIOD = 7.0


def runs(symbols: list[int]) -> list[tuple[int, int]]:
    """(first index, length) of each run."""
    out, i = [], 0
    for _level, group in itertools.groupby(symbols):
        n = len(list(group))
        out.append((i, n))
        i += n
    return out


def received(miscount: dict[int, int], squeeze: float = 0.45) -> Reception:
    """The reception of TRUE with the runs starting at the given indices counted
    ``+1``/``-1`` symbol wrong; each such run's edges moved by ``squeeze`` of a symbol
    towards the wrong count (the slips that fooled the decoder), the others exact."""
    symbols: list[int] = []
    marks: list[float] = []
    t = 0.0
    for first, length in runs(TRUE):
        level = TRUE[first]
        delta = miscount.get(first, 0)
        measured = length + delta * squeeze
        counted = length + delta
        for k in range(counted):
            symbols.append(level)
            marks.append(t + k * measured / counted * PERIOD)
        t += measured * PERIOD
    return Reception(symbols, marks, PERIOD)


def accept(frame: bytes) -> BlinkUpConfig | None:
    try:
        return decode_frame(frame)
    except ValueError:
        return None


def data_runs(length: int) -> list[int]:
    """First indices of data runs of a given length (away from the ends)."""
    return [i for i, n in runs(TRUE) if n == length and 12 < i < len(TRUE) - 20]


def test_the_true_symbols_carry_the_frame() -> None:
    assert frame_from_symbols(TRUE) == FRAME


@pytest.mark.parametrize(("length", "delta"), [(3, -1), (2, +1), (4, -1), (1, +1)])
def test_one_miscounted_run_is_found(length: int, delta: int) -> None:
    rec = received({data_runs(length)[0]: delta})
    assert frame_from_symbols(rec.symbols) is None  # the line check fails
    found = repair(rec, accept)
    assert found is not None
    frame, config, edits = found
    assert frame == FRAME and config == CFG
    assert edits == [("longer" if delta < 0 else "shorter", edits[0][1])]


def test_two_miscounted_runs_are_found() -> None:
    first, second = data_runs(2)[0], data_runs(3)[1]
    rec = received({first: +1, second: -1})
    found = repair(rec, accept)
    assert found is not None and found[0] == FRAME and len(found[2]) == 2


def test_a_run_counted_right_is_not_a_candidate() -> None:
    # a run measured within AMBIGUOUS of its count is not touched
    # (a run that really was a symbol short: the repair only looks where slips could
    # have fooled the decoder, and here they could not have)
    rec = received({data_runs(3)[0]: -1}, squeeze=1.0 - AMBIGUOUS / 2)
    assert candidates(rec) == []
    assert repair(rec, accept) is None


def test_the_candidates_are_bounded() -> None:
    many = {first: (1 if n < 4 else -1) for first, n in runs(TRUE)[3:-3]}
    assert len(candidates(received(many))) <= MAX_CANDIDATES


def test_edits_change_a_run_by_one_symbol() -> None:
    assert apply([0, 0, 1, 1, 1, 0], [("longer", 1)]) == [0, 0, 0, 1, 1, 1, 0]
    assert apply([0, 0, 1, 1, 1, 0], [("shorter", 4), ("longer", 1)]) == [0, 0, 0, 1, 1, 0]


def test_nothing_is_taken_that_the_checks_refuse() -> None:
    rec = received({data_runs(3)[0]: -1})
    assert repair(rec, lambda frame: None) is None
