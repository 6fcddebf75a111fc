"""The compiled bi-level receiver (protocol/_bilevel.c) is built, is used, and takes
whatever the Python path takes.

tests/test_decoder_equivalence.py holds both paths to the reference decoder, bit for
bit; here: the extension is there (CI builds it at ``pip install``: a missing compiler
must not pass unnoticed), it is refused when built with other constants or when the
environment asks for the Python loops, and a reception fed chunks of any form (lists,
other dtypes, strided views, bad samples) decodes as when fed plain float64 arrays.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any

import numpy as np
import pytest

from impfactory.protocol import bilevel_kernel
from impfactory.protocol import decoder as decoder_module
from impfactory.protocol.blinkup import BlinkUpConfig, encode_frame
from impfactory.protocol.decoder import BadSamplesError, BlinkUpDecoder
from impfactory.protocol.linecode import LightModel, render_bilevel

CFG = BlinkUpConfig(ssid=b"compiled", password=b"same bits")


def _key(outcome: Any) -> tuple[Any, ...]:
    return (
        type(outcome).__name__,
        str(outcome),
        dataclasses.asdict(outcome.stats),
        getattr(outcome, "frame", None),
        getattr(outcome, "data", None),
    )


def _samples() -> np.ndarray:
    return render_bilevel(
        encode_frame(CFG),
        symbol_rate=142.0,
        seed=3,
        noise=0.03,
        light=LightModel(gain=0.4, ambient=0.2),
    ).samples


def _decode(chunks: list[Any]) -> list[Any]:
    decoder = BlinkUpDecoder(1000.0, "bilevel")
    out: list[Any] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return [_key(o) for o in out + decoder.flush()]


@pytest.mark.skipif(
    os.environ.get("IMPFACTORY_PURE_DECODER", "") not in ("", "0"),
    reason="the Python loops were asked for",
)
def test_the_extension_is_built_and_used() -> None:
    assert bilevel_kernel._bilevel is not None, "protocol/_bilevel.c was not built"
    assert decoder_module.COMPILED
    decoder = BlinkUpDecoder(1000.0, "bilevel")
    assert decoder._fused
    assert [o.config for o in decoder.feed(_samples()) + decoder.flush()] == [CFG]
    assert decoder._kernel is not None  # the reception ran in the kernel


def test_refused_with_other_constants_or_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    if bilevel_kernel._bilevel is None:
        pytest.skip("not built")
    assert not bilevel_kernel.available({"SYMBOL_GUARD": 0.2})
    assert bilevel_kernel.available({"SYMBOL_GUARD": decoder_module.SYMBOL_GUARD})
    monkeypatch.setenv("IMPFACTORY_PURE_DECODER", "1")
    assert not bilevel_kernel.available({})


def test_chunks_of_any_form_decode_as_float64_arrays() -> None:
    x = _samples()
    cuts = [*range(0, x.shape[0], 97), x.shape[0]]
    plain = [x[a:b] for a, b in itertools.pairwise(cuts)]
    expected = _decode(plain)
    assert [o[0] for o in expected] == ["DecodeResult"]
    doubled = np.repeat(x, 2)
    forms: list[Any] = []
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        form = i % 4
        if form == 0:
            forms.append(x[a:b].tolist())  # a list of floats
        elif form == 1:
            forms.append(doubled[2 * a : 2 * b : 2])  # a strided view
        elif form == 2:
            forms.append(x[a:b].astype(np.longdouble))  # another dtype, the same values
        else:
            forms.append(x[a:b])
    assert _decode(forms) == expected


@pytest.mark.parametrize("bad", [np.nan, np.inf, -2e6])
def test_a_bad_chunk_in_a_reception_raises_and_changes_nothing(bad: float) -> None:
    x = _samples()
    expected = _decode([x[:1000], x[1000:]])
    decoder = BlinkUpDecoder(1000.0, "bilevel")
    out = decoder.feed(x[:1000])
    assert decoder.receiving
    chunk = x[1000:1200].copy()
    chunk[150] = bad
    with pytest.raises(BadSamplesError):
        decoder.feed(chunk)
    out += decoder.feed(x[1000:]) + decoder.flush()
    assert [_key(o) for o in out] == expected
