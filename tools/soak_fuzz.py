"""The soak's fuzz: hostile bytes into every wire decoder, only typed errors allowed out.

Each case takes a valid message of one wire format (a BlinkUp frame, a bench
frame, a cloud-link message, a registration request), mutates it with the seeded
generator (flipped bits, bytes inserted, cut or repeated, garbage, empty input)
and decodes it. A decoder may answer, or raise its format's typed error (every
one is an ``ImpFactoryError``); anything else (an ``IndexError``, a
``UnicodeDecodeError``, a hang) is a finding, kept with the bytes that caused it.

``fuzz(cases, seed)`` runs them, and the targets of tools/fuzz.py
(``fuzz_blinkup``, ``fuzz_bench_frames``: frames and byte streams built case by
case) with as many cases each.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from impfactory.errors import ImpFactoryError
from impfactory.protocol import bench, blinkup, linksec
from impfactory.protocol import cloudlink as cl
from impfactory.tools import fuzz as project_fuzz


@dataclass
class FuzzResult:
    cases: int = 0
    rejected: int = 0
    """Cases a decoder refused with its typed error (the expected answer to garbage)."""
    findings: list[str] = field(default_factory=list)
    """Cases that raised anything else: each a bug."""
    per_format: dict[str, int] = field(default_factory=dict)


def _seeds() -> dict[str, tuple[bytes, Callable[[bytes], object]]]:
    """One valid encoding of each format, and the decoder that reads it back."""
    frame = blinkup.encode_frame(blinkup.BlinkUpConfig(
        ssid=b"factory-wifi", password=b"factory-password",
        plan_id="0123456789abcdef", token="fedcba9876543210"))
    topic, payload = cl.encode(cl.BlessRequest("0123456789abcdef", req=3, passed=True,
                                               attempt="00112233aabbccdd"))
    hello_topic, hello = cl.encode(cl.Hello("0123456789abcdef", req=1, mac="0c2a69000001",
                                            session="ab" * 16))
    request = linksec.RegisterRequest("enrol-007", "cd" * 16, "0123456789abcdef",
                                      "x" * 32, "ef" * 32)
    reg_topic, reg = linksec.encode_request(request)
    bench_frame = bench.encode(7, bench.Identify())
    return {
        "blinkup": (frame, blinkup.decode_frame),
        "bench": (bench_frame, lambda b: bench.decode(b.rstrip(b"\0"))),
        "cloudlink_bless": (payload, lambda b: cl.decode(topic, b)),
        "cloudlink_hello": (hello, lambda b: cl.decode(hello_topic, b)),
        "registration": (reg, lambda b: linksec.decode_request(reg_topic, b)),
    }


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One hostile variant of ``data``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(7)
        at = rng.randrange(len(out) + 1)
        if kind == 0 and out:
            out[at % len(out)] ^= 1 << rng.randrange(8)
        elif kind == 1:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif kind == 2:
            del out[at:at + rng.randint(1, 16)]
        elif kind == 3 and out:
            out[at % len(out)] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x22, 0x5C, 0x7B))
        elif kind == 4:
            out[at:at] = out[:rng.randint(1, 32)]
        elif kind == 5:
            out = bytearray(bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))))
        else:
            out = out[:at]
    return bytes(out)


def fuzz(cases: int, seed: int = 0) -> FuzzResult:
    """``cases`` hostile inputs spread over every format; findings are bugs."""
    rng = random.Random(seed)
    result = FuzzResult()
    seeds = _seeds()
    names = sorted(seeds)
    for n in range(cases):
        name = names[n % len(names)]
        valid, decode = seeds[name]
        data = mutate(valid, rng)
        result.cases += 1
        result.per_format[name] = result.per_format.get(name, 0) + 1
        try:
            decode(data)
        except ImpFactoryError:
            result.rejected += 1
        except Exception as err:  # a decoder that fails untyped: a finding
            result.findings.append(f"{name}: {type(err).__name__}: {err} on {data[:64]!r}")
    _external(cases, seed, result)
    return result


def _external(cases: int, seed: int, result: FuzzResult) -> None:
    """The fuzz targets of tools/fuzz.py (BlinkUp frames and bench byte streams built
    case by case, beside the mutations here), each with ``cases`` cases."""
    for entry in (project_fuzz.fuzz_blinkup, project_fuzz.fuzz_bench_frames):
        outcome = entry(cases, seed)
        name = f"fuzz.{outcome.target}"
        result.cases += outcome.cases
        result.rejected += outcome.cases - outcome.decoded - outcome.failed
        result.per_format[name] = outcome.cases
        result.findings += [f"{name}: {error} on {case[:128]}"
                            for case, error in outcome.failures]
