"""CRC-aided repair of a bi-level reception: the runs a slipping sampler misjudges.

An imp's light sampler may drop a sample or read one twice (``linecode.drop_and_repeat``
models it). Each slip moves every later edge by one sample, a seventh of a symbol at
142 Hz; three or four slips the same way within one run of light or dark make its
length land about halfway between two whole numbers of symbols, and no receiver can
tell which it was: the decoder takes the nearer and is wrong about half the time. At
1 % dropped and 1 % repeated samples, that spoils about one full payload in twenty.

The checks tell a wrong guess, and a guess can be redone. The decoder keeps each
symbol it decided after the start word and where each run of light or dark began
(the edge that marked it). When the frame fails, :func:`repair` makes the runs whose
measured length lay furthest from a whole number of symbols (at least ``AMBIGUOUS``
of a symbol away) one symbol longer or shorter, one run at a time, then two at a
time, then three, and keeps the first symbol stream that carries a whole frame (LEN and as many
bytes as it says, no stuffing broken) whose line check (CRC-16/CCITT) matches; the
decoder then also wants its BlinkUp CRC and TLVs right. At most ``MAX_CANDIDATES``
streams are tried, so a frame that is really corrupt passes both CRCs by chance with
a probability of about ``MAX_CANDIDATES`` in four billion.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .blinkup import PREAMBLE
from .linecode import BILEVEL_START_WORD, bilevel_check, bilevel_destuff, bilevel_whiten

AMBIGUOUS = 0.2
"""A run whose measured length is at least this fraction of a symbol from a whole number
of symbols is a candidate for one symbol more or less."""
SINGLE_RUNS = 16
"""The most ambiguous runs tried one at a time."""
PAIRED_RUNS = 8
"""The most ambiguous runs tried two at a time."""
TRIPLED_RUNS = 5
"""The most ambiguous runs tried three at a time."""
MAX_CANDIDATES = (
    SINGLE_RUNS + PAIRED_RUNS * (PAIRED_RUNS - 1) // 2
    + TRIPLED_RUNS * (TRIPLED_RUNS - 1) * (TRIPLED_RUNS - 2) // 6
)
"""Symbol streams tried at most per failed reception (54)."""
CHECK_BYTES = 2
"""The line check after the packet."""


@dataclass(frozen=True)
class Reception:
    """What the decoder decided from the start word on.

    ``symbols``: the start word then the data symbols, polarity corrected.
    ``marks``: where each symbol began (the edge where the light changed, when one
    did). ``period``: the symbol period, in the units of ``marks``.
    """

    symbols: Sequence[int]
    marks: Sequence[float]
    period: float


Edit = tuple[str, int]
"""("longer" | "shorter", index of the last symbol of a run)."""


def frame_from_symbols(symbols: Sequence[int]) -> bytes | None:
    """The frame (preamble included) that the symbols (start word first) carry, when
    they carry a whole one: as many bytes as LEN asks for and the line check after
    them, matching, and no stuffing broken on the way; else None."""
    line, positions, violations = bilevel_destuff(symbols[len(BILEVEL_START_WORD) :])
    bits = bilevel_whiten(line)
    if len(bits) < 8:
        return None
    length = int("".join(map(str, bits[:8])), 2)
    need = 8 * (length + 3 + CHECK_BYTES)
    if len(bits) < need or (violations and violations[0] < positions[need - 1]):
        return None
    data = bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, need, 8))
    packet, check = data[:-CHECK_BYTES], data[-CHECK_BYTES:]
    if bilevel_check(packet) != check:
        return None
    return PREAMBLE + packet


def _runs(rec: Reception) -> list[tuple[int, int, float]]:
    """(index of the first and of the last symbol, measured length in symbols) of
    every run that ends at an edge (where the next run starts) in the data, or right
    where it begins (one more symbol of the start word's last run is data)."""
    out = []
    start = 0
    for i in range(1, len(rec.symbols)):
        if rec.symbols[i] != rec.symbols[i - 1]:
            if i >= len(BILEVEL_START_WORD):
                out.append((start, i - 1, (rec.marks[i] - rec.marks[start]) / rec.period))
            start = i
    return out


def candidates(rec: Reception) -> list[list[Edit]]:
    """The edits to try, likeliest first (at most MAX_CANDIDATES)."""
    ambiguous: list[tuple[float, Edit]] = []
    for first, last, measured in _runs(rec):
        off = measured - (last - first + 1)
        if off >= AMBIGUOUS:
            ambiguous.append((off, ("longer", last)))
        elif off <= -AMBIGUOUS and last > first and last >= len(BILEVEL_START_WORD):
            ambiguous.append((-off, ("shorter", last)))
    ambiguous.sort(key=lambda item: -item[0])
    runs = [edit for _off, edit in ambiguous]
    out: list[list[Edit]] = [[edit] for edit in runs[:SINGLE_RUNS]]
    out += [list(pair) for pair in itertools.combinations(runs[:PAIRED_RUNS], 2)]
    out += [list(three) for three in itertools.combinations(runs[:TRIPLED_RUNS], 3)]
    return out


def apply(symbols: Sequence[int], edits: Sequence[Edit]) -> list[int]:
    """The symbols with each edited run one symbol longer or shorter."""
    out = list(symbols)
    for kind, last in sorted(edits, key=lambda edit: edit[1], reverse=True):
        if kind == "longer":
            out.insert(last + 1, out[last])
        else:
            del out[last]
    return out


def repair(
    rec: Reception, accept: Callable[[bytes], object | None]
) -> tuple[bytes, object, list[Edit]] | None:
    """Try the candidate edits: the first whole frame with a matching line check that
    ``accept`` takes (it returns what it made of the frame, or None), what it made of
    it, and the edits; None when there is none."""
    for edits in candidates(rec):
        frame = frame_from_symbols(apply(rec.symbols, edits))
        if frame is None:
            continue
        result = accept(frame)
        if result is not None:
            return frame, result, edits
    return None
