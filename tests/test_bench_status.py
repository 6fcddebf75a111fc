"""Status-LED decoding from RGB samples: every state of IMP_FACTS §3.

The patterns below are typed from IMP_FACTS §3 here, not imported, so the test
checks the decoder's table against the source. The RGB values are a colour
sensor's view of the emulated imp's colours, with noise and a random phase.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impfactory.protocol.bench_status import StatusDecodeError, StatusDecoder, decode_status

RATE = 100.0
RGB = {"amber": (255, 176, 0), "green": (32, 192, 64), "red": (224, 32, 32), "off": (4, 4, 4)}

# state → (colour, pattern in ms) as IMP_FACTS §3 gives them
FACTS = {
    "waiting_blinkup": ("amber", (500, 500)),
    "searching_wifi": ("red", (500, 500, 500, 250, 250, 250)),
    "joining_wifi": ("red", (500, 500, 500, 250, 250, 250, 250, 250)),
    "getting_ip/resolving": ("red", (500, 250, 250)),
    "connecting": ("amber", (500, 500, 500, 250)),
    "online": ("green", (500, 500)),
    "proxy_wrong": ("amber", (500, 500, 250, 250, 250, 250)),
    "proxy_auth": ("amber", (500, 500, 250, 250, 250, 250, 250)),
    "wps": ("amber", (500, 250, 250, 250)),
    "blinkup_failed/power_problem": ("red", (250, 250)),
}


def render(parts: list[tuple[str, tuple[int, ...], float]], rng: np.random.Generator,
           noise: float = 6.0, phase_ms: float = 0.0) -> np.ndarray:
    """RGB samples at RATE for (colour, pattern, seconds) parts; () means solid.

    Every period starts lit (protocol/statusled.py settles this for the emulated
    imp and the decoder alike), so an odd pattern's last lit segment runs into
    the next period's first.
    """
    out = []
    for colour, pattern, seconds in parts:
        n = round(seconds * RATE)
        t = (np.arange(n) / RATE * 1000.0 + phase_ms)
        if pattern:
            period = sum(pattern)
            edges = np.cumsum(pattern)
            idx = np.searchsorted(edges, t % period, side="right")
            lit = idx % 2 == 0
        else:
            lit = np.ones(n, dtype=bool)
        rgb = np.where(lit[:, None], RGB[colour], RGB["off"]).astype(np.float64)
        out.append(rgb)
    samples = np.concatenate(out)
    return np.clip(samples + rng.normal(0, noise, samples.shape), 0, 255)


@pytest.mark.parametrize("state", sorted(FACTS))
@given(
    phase=st.floats(0, 4000),
    chunk=st.integers(1, 200),
    seed=st.integers(0, 2**16),
    noise=st.floats(0, 15),
)
@settings(max_examples=12, deadline=None)
def test_each_pattern_is_recognised(
    state: str, phase: float, chunk: int, seed: int, noise: float
) -> None:
    """Any phase, any chunking, sensor noise up to 6 % of full scale on each channel."""
    colour, pattern = FACTS[state]
    rng = np.random.default_rng(seed)
    seconds = 3 * sum(pattern) / 1000 + 1.5
    rgb = render([(colour, pattern, seconds)], rng, noise=noise, phase_ms=phase)
    decoder = StatusDecoder(RATE)
    for i in range(0, len(rgb), chunk):
        decoder.feed(rgb[i : i + chunk])
    assert [r.state for r in decoder.readings] == [state]
    assert decoder.readings[0].colour == colour
    assert decoder.readings[0].pattern == pattern


def test_a_blinkup_sequence_reads_in_order() -> None:
    rng = np.random.default_rng(1)
    rgb = render(
        [
            ("amber", (500, 500), 4.0),
            ("off", (), 2.0),  # receiving: the LED stops flashing
            ("green", (), 3.0),
            ("red", (500, 500, 500, 250, 250, 250), 6.75),
            ("red", (500, 500, 500, 250, 250, 250, 250, 250), 8.25),
            ("amber", (500, 500, 500, 250), 5.25),
            ("green", (500, 500), 4.0),
            ("green", (), 5.0),
        ],
        rng,
    )
    states = [r.state for r in decode_status(rgb, RATE)]
    live = StatusDecoder(RATE)
    seen = [r.state for i in range(0, len(rgb), 7) for r in live.feed(rgb[i : i + 7])]
    assert [r.state for r in live.readings] == states
    assert seen[2:4] == ["updating/blessed", "blinkup_ok"]
    assert states == [
        "waiting_blinkup",
        "off",
        "blinkup_ok",  # read "updating/blessed" until it ended after three seconds
        "searching_wifi",
        "joining_wifi",
        "connecting",
        "online",
        "updating/blessed",
    ]


def test_solid_red_and_lost_samples() -> None:
    rng = np.random.default_rng(2)
    rgb = render([("red", (), 2.0)], rng)
    rgb[50:60] = np.nan  # a lost frame of samples does not split the stretch
    assert [r.state for r in decode_status(rgb, RATE)] == ["test_failed/power_problem"]


def test_bad_input_is_a_typed_error() -> None:
    with pytest.raises(StatusDecodeError):
        StatusDecoder(0)
    with pytest.raises(StatusDecodeError):
        StatusDecoder(RATE).feed(np.zeros((4, 2)))


def test_decoder_and_emulated_imp_share_one_table() -> None:
    """The looks the decoder names are exactly those IMP_FACTS lists (typed above)
    and those the emulated imp shows: one table in protocol/statusled.py."""
    from impfactory.firmware.led import LOOKS as SHOWN
    from impfactory.protocol.bench_status import PATTERNS

    assert {p.name: p.pattern for p in PATTERNS} == {k: v[1] for k, v in FACTS.items()}
    for p in PATTERNS:
        for name in p.names:
            look = next(v for k, v in SHOWN.items() if k.value == name)
            assert look.pattern == p.pattern and (not p.colours or look.colour in p.colours)


def test_an_odd_pattern_read_as_alternating_is_not_getting_ip() -> None:
    """500,250,250 with lit and dark alternating across periods is not the settled look."""
    rng = np.random.default_rng(3)
    rgb = render([("red", (500, 250, 250) * 2, 6.0)], rng, noise=2.0)  # alternating = doubled
    assert "getting_ip/resolving" not in [r.state for r in decode_status(rgb, RATE)]
