"""Issue 13: the BlinkUp and bench frame decoders give only typed errors, whatever bytes.

Two drivers of the same checks (tools/fuzz.py): the seeded generator, which builds
cases that reach the inner parsers (valid frames mutated, garbage behind a right
LEN/CRC/COBS) and runs ``--fuzz-cases`` of each (3,000 here; ``pytest
tests/test_fuzz.py --fuzz-cases 100000`` or ``impfactory soak`` for the long run),
and hypothesis, which shrinks what it finds. A decoder that breaks the rule is
shown to be caught.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impfactory.protocol import bench, blinkup
from impfactory.tools import fuzz

EXAMPLES = settings(max_examples=300, deadline=None)


@pytest.fixture
def cases(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--fuzz-cases"))


@pytest.mark.parametrize("run", [fuzz.fuzz_blinkup, fuzz.fuzz_bench_frames],
                         ids=["blinkup", "bench"])
def test_the_decoders_refuse_every_fuzzed_case_with_a_typed_error(run, cases: int) -> None:
    result = run(cases, seed=13)
    assert result.cases == cases and result.ok, result.failures
    assert 0 < result.decoded < cases  # the cases reach past the envelope, and fail too


def test_a_run_is_repeatable_from_its_seed() -> None:
    one, two = fuzz.fuzz_bench_frames(300, seed=5), fuzz.fuzz_bench_frames(300, seed=5)
    assert (one.decoded, one.failed) == (two.decoded, two.failed)


def test_a_decoder_that_breaks_the_rule_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real = blinkup.decode_frame

    def leaky(data: bytes) -> blinkup.BlinkUpConfig:
        if len(data) % 7 == 3:
            raise IndexError("a bug")
        return real(data)

    monkeypatch.setattr(fuzz, "decode_frame", leaky)
    result = fuzz.fuzz_blinkup(500, seed=1)
    assert not result.ok and len(result.failures) == min(result.failed, fuzz.KEPT_FAILURES)
    assert result.failures[0][1].startswith("UntypedError: decode_frame raised IndexError")
    assert bytes.fromhex(result.failures[0][0])  # the case, to replay
    monkeypatch.setattr(bench, "cobs_decode", lambda data: data[5])  # not bytes: a TypeError
    assert not fuzz.fuzz_bench_frames(200, seed=1).ok


@EXAMPLES
@given(st.binary(max_size=300))
def test_any_bytes_are_a_blinkup_or_a_blinkup_error(data: bytes) -> None:
    fuzz.check_blinkup(data)
    fuzz.check_blinkup(blinkup.PREAMBLE + data)
    fuzz.check_blinkup(fuzz.blinkup_frame(data[:255]))


@EXAMPLES
@given(st.sampled_from([int(t) for t in bench.FrameType]), st.integers(0, 255),
       st.binary(max_size=80), st.binary(max_size=40))
def test_any_payload_is_a_bench_packet_or_a_bench_error(kind: int, seq: int, payload: bytes,
                                                        noise: bytes) -> None:
    fuzz.check_bench(fuzz.bench_frame(kind, seq, payload))
    fuzz.check_bench(noise)
    fuzz.check_bench(noise + fuzz.bench_frame(kind, seq, payload))
