"""Fuzzing the wire decoders: BlinkUp frames and bench serial frames.

The rule under test (docs/protocol.md, DESIGN "bad input gets a typed error"): a
decoder given any bytes at all either decodes them, into something that encodes
back to what decodes the same, or raises its own typed error (``BlinkUpError``,
``BenchProtocolError``); the bench's streaming ``FrameDecoder`` never raises, it
returns faults. Anything else (an ``IndexError``, a ``construct`` error leaking
out, a hang) is a failure.

``fuzz_blinkup(cases, seed)`` and ``fuzz_bench_frames(cases, seed)`` run that many
cases drawn from a seeded ``random.Random``, so a run is repeatable from its seed
and a failure from its case's hex. Random bytes alone would almost never get past
a preamble and a CRC, so most cases are built to reach the inner parsers::

    25%  random bytes (any length up to a few hundred)
    40%  a valid frame mutated (bit flips, bytes replaced, inserted, deleted,
         truncated, extended), half of them with LEN and CRC made right again
    35%  a frame around random TLVs / a random payload of a random frame type,
         with LEN, CRC (and COBS) right, so the field parsers see garbage

(The bench cases also cut each stream at random points and feed it to a
``FrameDecoder`` in those pieces.) The CI tests (tests/test_fuzz.py) run a few
thousand cases here and the same properties under hypothesis; ``impfactory
soak`` runs the long count. A generator and not hypothesis drives the long runs:
it needs no test extras and runs ~10x faster per case.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import crcmod.predefined

from impfactory.protocol import bench
from impfactory.protocol.blinkup import (
    PREAMBLE,
    TLV_NAMES,
    BlinkUpConfig,
    BlinkUpError,
    ProxyConfig,
    StaticNetwork,
    decode_frame,
    encode_frame,
)
from impfactory.protocol.crc16 import crc16

_BENCH_CRC = crcmod.predefined.mkPredefinedCrcFun("crc-ccitt-false")  # bench.py's CRC
KEPT_FAILURES = 20
"""Failing cases kept in a result (all are counted)."""


@dataclass
class FuzzResult:
    """What one fuzz run tried and what broke."""

    target: str
    seed: int
    cases: int = 0
    decoded: int = 0  # cases that decoded (the rest were refused with a typed error)
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (case hex, what broke)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_json(self) -> dict[str, object]:
        return {"target": self.target, "seed": self.seed, "cases": self.cases,
                "decoded": self.decoded, "failed": self.failed,
                "failures": [{"case": c, "error": e} for c, e in self.failures],
                "seconds": round(self.seconds, 3)}


def fuzz_blinkup(cases: int, seed: int = 0) -> FuzzResult:
    """Run ``cases`` BlinkUp frames through ``decode_frame``."""
    return _run("blinkup", cases, seed, _blinkup_case, check_blinkup)


def fuzz_bench_frames(cases: int, seed: int = 0) -> FuzzResult:
    """Run ``cases`` bench byte streams through ``decode`` and a ``FrameDecoder``."""
    return _run("bench", cases, seed, _bench_case, check_bench)


def _run(target: str, cases: int, seed: int, make: Callable[[random.Random], bytes],
         check: Callable[[bytes, random.Random], bool]) -> FuzzResult:
    if cases < 0:
        raise ValueError(f"cases must be >= 0, not {cases}")
    rng = random.Random(seed)
    result = FuzzResult(target, seed)
    started = time.perf_counter()
    for _ in range(cases):
        case = make(rng)
        result.cases += 1
        try:
            result.decoded += check(case, rng)
        except Exception as err:  # the point: anything untyped is a failure, recorded
            result.failed += 1
            if len(result.failures) < KEPT_FAILURES:
                result.failures.append((case.hex(), f"{type(err).__name__}: {err}"))
    result.seconds = time.perf_counter() - started
    return result


class UntypedError(AssertionError):
    """A decoder broke the rule: wrong exception, or a round trip that changed."""


# ---------------------------------------------------------------- BlinkUp


def check_blinkup(frame: bytes, _rng: random.Random | None = None) -> bool:
    """True when ``frame`` decoded (and re-encodes to the same config, unless it is
    the empty one), False when it was refused with a ``BlinkUpError``; raises
    ``UntypedError`` otherwise."""
    try:
        config = decode_frame(frame)
    except BlinkUpError:
        return False
    except Exception as err:
        raise UntypedError(f"decode_frame raised {type(err).__name__}: {err}") from err
    if config == BlinkUpConfig():
        # TLVs that all mean "absent" (an empty SSID is no SSID, as the SDK sends it):
        # a frame that changes nothing, which the encoder will not build
        return True
    again = decode_frame(encode_frame(config))
    if again != config:
        raise UntypedError(f"round trip changed {config!r} into {again!r}")
    return True


def blinkup_frame(body: bytes) -> bytes:
    """A frame around TLV bytes ``body`` with LEN and CRC right (LEN modulo 256)."""
    packet = bytes((len(body) & 0xFF,)) + body
    return PREAMBLE + packet + crc16(packet).to_bytes(2, "big")


def _text(rng: random.Random, most: int) -> bytes:
    return rng.randbytes(rng.randint(0, most))


def _valid_frame(rng: random.Random) -> bytes:
    while True:
        try:
            return encode_frame(_maybe_config(rng))
        except (BlinkUpError, ValueError):  # an empty or over-long config: draw again
            continue


def _maybe_config(rng: random.Random) -> BlinkUpConfig:
    def ip() -> str:
        return ".".join(str(rng.randint(0, 255)) for _ in range(4))

    enrol = rng.random() < 0.6
    return BlinkUpConfig(
        ssid=_text(rng, 32) or None if rng.random() < 0.8 else None,
        password=_text(rng, 64) if rng.random() < 0.6 else None,
        plan_id=rng.randbytes(8).hex() if enrol else None,
        token=rng.randbytes(8).hex() if enrol else None,
        static_network=StaticNetwork(ip(), ip(), ip(), ip(), ip()) if rng.random() < 0.2
        else None,
        proxy=ProxyConfig(ip(), rng.randint(1, 65535), _text(rng, 20).hex()[:20] or None,
                          _text(rng, 20).hex()[:20] or None) if rng.random() < 0.2 else None,
        clear=rng.random() < 0.1,
    )


def _random_tlvs(rng: random.Random) -> bytes:
    out = bytearray()
    for _ in range(rng.randint(0, 6)):
        kind = rng.choice(list(TLV_NAMES)) if rng.random() < 0.85 else rng.randrange(256)
        value = rng.randbytes(rng.choice((0, 1, 2, 4, 8, 16, rng.randint(0, 40))))
        length = len(value) if rng.random() < 0.9 else rng.randrange(256)
        out += bytes((kind, length)) + value
    return bytes(out)


def _blinkup_case(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.25:
        data = rng.randbytes(rng.randint(0, 300))
        return PREAMBLE + data if rng.random() < 0.5 else data
    if roll < 0.65:
        frame = _mutate(rng, _valid_frame(rng))
        if rng.random() < 0.5 and len(frame) >= len(PREAMBLE) + 3:
            frame = blinkup_frame(frame[len(PREAMBLE) + 1 : -2])
        return frame
    return blinkup_frame(_random_tlvs(rng))


# ---------------------------------------------------------------- bench frames


def check_bench(stream: bytes, rng: random.Random | None = None) -> bool:
    """True when ``stream`` decoded as one frame (and re-encodes to the same packet),
    False when refused with a ``BenchProtocolError``; raises ``UntypedError`` otherwise.
    The stream is also fed to a ``FrameDecoder`` (cut at random points when ``rng``
    is given), which must never raise and must find, whole, the frame ``decode`` did."""
    decoded: bench.Packet | None = None
    try:
        decoded = bench.decode(stream)
    except bench.BenchProtocolError:
        pass
    except Exception as err:
        raise UntypedError(f"decode raised {type(err).__name__}: {err}") from err
    if decoded is not None:
        again = bench.decode(bench.encode(decoded.seq, decoded.message))
        if again != decoded:
            raise UntypedError(f"round trip changed {decoded!r} into {again!r}")
    decoder = bench.FrameDecoder()
    cuts = sorted(rng.sample(range(len(stream) + 1), min(3, len(stream) + 1))) if rng else []
    out: list[bench.Packet | bench.Fault] = []
    try:
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            out += decoder.feed(stream[start:end])
        out += decoder.feed(bench.DELIMITER)
    except Exception as err:
        raise UntypedError(f"FrameDecoder.feed raised {type(err).__name__}: {err}") from err
    if any(not isinstance(item, bench.Packet | bench.Fault) for item in out):
        raise UntypedError(f"FrameDecoder gave {out!r}")
    if decoded is not None and bench.DELIMITER not in stream.rstrip(bench.DELIMITER) \
            and out != [decoded]:
        raise UntypedError(f"decode found {decoded!r}, the stream decoder {out!r}")
    return decoded is not None


def bench_frame(type_code: int, seq: int, payload: bytes, version: int = bench.PROTOCOL_VERSION
                ) -> bytes:
    """A wire frame around ``payload`` with CRC and COBS right."""
    head = bytes((version, type_code, seq)) + payload
    body = head + _BENCH_CRC(head).to_bytes(2, "big")
    return bench.cobs_encode(body) + bench.DELIMITER


def _bench_case(rng: random.Random) -> bytes:
    roll = rng.random()
    types = [int(t) for t in bench.FrameType]
    if roll < 0.25:
        return rng.randbytes(rng.randint(0, 300))
    payload = rng.randbytes(rng.choice((0, 1, 2, 3, 4, 6, 8, rng.randint(0, 64),
                                        rng.randint(0, bench.MAX_PAYLOAD + 8))))
    type_code = rng.choice(types) if rng.random() < 0.9 else rng.randrange(256)
    version = bench.PROTOCOL_VERSION if rng.random() < 0.95 else rng.randrange(256)
    frame = bench_frame(type_code, rng.randrange(256), payload, version)
    if roll < 0.65:
        frame = _mutate(rng, frame)
    return frame


# ---------------------------------------------------------------- mutations


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        at = rng.randint(0, len(out))
        if op == 0 and out:
            i = min(at, len(out) - 1)
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif op == 2:
            out[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 3 and out:
            del out[at:at + rng.randint(1, 8)]
        elif op == 4:
            del out[at:]
        else:
            out += rng.randbytes(rng.randint(1, 16))
    return bytes(out)
